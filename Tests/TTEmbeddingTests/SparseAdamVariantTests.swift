// The SparseAdam variants against closed forms written out by hand in Double for a row updated
// at step 1 and again after skipping 0, 1 or several steps (while another row is updated every
// step, so the global step moves on), and the properties that define them: the published
// variant with no skipped steps is LazyAdam bit for bit; the catch-up variant is dense Adam on a
// row whose gradient is zero on the steps it skips, before and after a catch-up of the table.
import Foundation
import Testing
@testable import TTEmbedding

struct SparseAdamVariantTests {
  static let b1 = 0.9, b2 = 0.999, eps = 1e-8, lr = 0.01
  static let g1: [Double] = [0.5, -0.25, 2.0], g2: [Double] = [-0.75, 0.125, 1.5]

  /// The row of id 7 (initial value 1 everywhere) after an update with g1 at step 1 and one
  /// with g2 at step 2 + skipped, computed by the implementation; id 8 is updated every step.
  static func implementation(_ variant: SparseAdamVariant, skipped: Int64) throws -> [Double] {
    let optimizer = SparseOptimizer.sparseAdam(variant)
    let table = try EmbeddingTable(dim: 3, optimizer: optimizer, initializer: .constant(1))
    for t in Int64(1)...(2 + skipped) {
      var ids: [Int64] = [8], grad: [Float] = [0.1, 0.2, -0.3]
      if t == 1 { ids.append(7); grad += g1.map(Float.init) }
      if t == 2 + skipped { ids.append(7); grad += g2.map(Float.init) }
      try SparseOptimizerTests.step(table, optimizer, ids: ids, grad: grad, t: t, lr: Float(lr))
    }
    return table.lookup([7], training: false).map(Double.init)
  }

  /// The same row by the closed forms of IR-specs/embeddings.md, element by element.
  static func handReference(_ variant: SparseAdamVariant, skipped: Int64) -> [Double] {
    let t2 = 2 + skipped, k = Double(t2 - 1)
    return (0..<3).map { j in
      // Step 1 (the row's first update: m = v = 0 before it; every variant corrects with 1).
      let m1 = (1 - b1) * g1[j], v1 = (1 - b2) * g1[j] * g1[j]
      var w = 1 - lr * (m1 / (1 - b1)) / ((v1 / (1 - b2)).squareRoot() + eps)
      // The catch-up: dense Adam's zero-gradient steps s = 1 + i, i = 1...skipped.
      if variant == .catchUp && skipped > 0 {
        for i in 1...skipped {
          let s = Double(1 + i), m = pow(b1, Double(i)) * m1, v = pow(b2, Double(i)) * v1
          w -= lr * (m / (1 - pow(b1, s))) / ((v / (1 - pow(b2, s))).squareRoot() + eps)
        }
      }
      // Step t2: decay by b^k for k = t2 - 1, then the variant's correction.
      let m2 = pow(b1, k) * m1 + (1 - b1) * g2[j], v2 = pow(b2, k) * v1 + (1 - b2) * g2[j] * g2[j]
      let c = variant == .rowCount ? 2.0 : Double(t2)
      w -= lr * (m2 / (1 - pow(b1, c))) / ((v2 / (1 - pow(b2, c))).squareRoot() + eps)
      return w
    }
  }

  @Test(arguments: SparseAdamVariant.allCases, [Int64(0), 1, 7, 40, 600])
  func matchesTheClosedFormWhenARowSkipsSteps(_ variant: SparseAdamVariant, skipped: Int64) throws {
    let got = try Self.implementation(variant, skipped: skipped), want = Self.handReference(variant, skipped: skipped)
    for j in 0..<3 {
      #expect(abs(got[j] - want[j]) <= 2e-6 * max(1, abs(want[j])), "\(variant.name), \(skipped) skipped, [\(j)]: \(got[j]) vs \(want[j])")
    }
  }

  @Test func theVariantsDifferOnceARowSkipsSteps() throws {
    // Otherwise the closed forms above would not tell the variants apart.
    let published = Self.handReference(.published, skipped: 7), rowCount = Self.handReference(.rowCount, skipped: 7)
    let catchUp = Self.handReference(.catchUp, skipped: 7)
    #expect(abs(published[0] - rowCount[0]) > 1e-3 && abs(published[0] - catchUp[0]) > 1e-3 && abs(rowCount[0] - catchUp[0]) > 1e-3)
    // With no skipped step, published and catch-up are the same update.
    #expect(Self.handReference(.published, skipped: 0) == Self.handReference(.catchUp, skipped: 0))
  }

  @Test func publishedWithoutSkippedStepsIsLazyAdamBitForBit() throws {
    // Every row touched at every step (k = 1 always): same values, slots and metadata.
    let published = try EmbeddingTable(dim: 10, optimizer: .sparseAdam(.published), seed: 4)
    let lazy = try EmbeddingTable(dim: 10, optimizer: .defaultLazyAdam, seed: 4)
    var rng = Rng(state: 9)
    for t in Int64(1)...30 {
      let ids: [Int64] = [3, 1, 4, 1, 5]
      let grad = (0..<(ids.count * 10)).map { _ in Float.random(in: -2...2, using: &rng) }
      try SparseOptimizerTests.step(published, .sparseAdam(.published), ids: ids, grad: grad, t: t, lr: 0.02)
      try SparseOptimizerTests.step(lazy, .defaultLazyAdam, ids: ids, grad: grad, t: t, lr: 0.02)
    }
    #expect(published.serialized() == lazy.serialized())
    // Once a row skips a step they part: the published variant decays its moments by b^k.
    try SparseOptimizerTests.step(published, .sparseAdam(.published), ids: [3], grad: Array(repeating: 0.5, count: 10), t: 32, lr: 0.02)
    try SparseOptimizerTests.step(lazy, .defaultLazyAdam, ids: [3], grad: Array(repeating: 0.5, count: 10), t: 32, lr: 0.02)
    #expect(published.lookup([3], training: false) != lazy.lookup([3], training: false))
  }

  @Test func catchUpIsDenseAdamWhenSkippedStepsHaveZeroGradient() throws {
    // Row 7 is touched at steps 1, 2, 9, 10 and 400 (skipping 6 and then 389 steps, past the
    // catch-up horizon); rows 8 and 9 every step. Dense Adam moves row 7 on every step with a
    // zero gradient; the catch-up variant must agree whenever row 7 has just been updated,
    // and for every row after `catchUp` at a step no row was touched.
    let dense = try EmbeddingTable(dim: 12, optimizer: .defaultAdam, seed: 2)
    let lazy = try EmbeddingTable(dim: 12, optimizer: .sparseAdam(.catchUp), seed: 2)
    var rng = Rng(state: 5)
    func compare(_ ids: [Int64], _ what: String) {
      for id in ids {
        let a = dense.lookup([id], training: false), b = lazy.lookup([id], training: false)
        for j in 0..<12 where abs(a[j] - b[j]) > 1e-5 * max(1, abs(a[j])) {
          Issue.record("\(what): id \(id)[\(j)]: dense \(a[j]), catch-up \(b[j])")
          return
        }
      }
    }
    for t in Int64(1)...400 {
      let ids: [Int64] = [1, 2, 9, 10, 400].contains(t) ? [8, 7, 9] : [8, 9]
      let grad = (0..<(ids.count * 12)).map { _ in Float.random(in: -1...1, using: &rng) }
      try SparseOptimizerTests.step(dense, .defaultAdam, ids: ids, grad: grad, t: t, lr: 0.01)
      try SparseOptimizerTests.step(lazy, .sparseAdam(.catchUp), ids: ids, grad: grad, t: t, lr: 0.01)
      if ids.contains(7) { compare([7, 8, 9], "step \(t)") }
    }
    // 50 steps in which no row is touched; then the catch-up brings every row to step 450.
    for t in Int64(401)...450 { try dense.apply(.defaultAdam, SparseGradient(), step: t, lr: 0.01) }
    #expect(dense.lookup([7], training: false) != lazy.lookup([7], training: false), "the catch-up variant is behind until caught up")
    lazy.catchUp(.sparseAdam(.catchUp), throughStep: 450, lr: 0.01)
    compare([7, 8, 9], "after catchUp(throughStep: 450)")
    // A catch-up is idempotent and moves on correctly: touch row 7 again at step 460.
    lazy.catchUp(.sparseAdam(.catchUp), throughStep: 450, lr: 0.01)
    for t in Int64(451)...459 { try dense.apply(.defaultAdam, SparseGradient(), step: t, lr: 0.01) }
    let grad = (0..<12).map { _ in Float.random(in: -1...1, using: &rng) }
    try SparseOptimizerTests.step(dense, .defaultAdam, ids: [7], grad: grad, t: 460, lr: 0.01)
    try SparseOptimizerTests.step(lazy, .sparseAdam(.catchUp), ids: [7], grad: grad, t: 460, lr: 0.01)
    compare([7], "step 460 after a catch-up at 450")
  }

  @Test func catchUpWorksOnBF16Rows() throws {
    // The same as f32 within bf16's rounding of the stored values.
    let f32 = try EmbeddingTable(dim: 4, optimizer: .sparseAdam(.catchUp), initializer: .constant(0.5))
    let bf16 = try EmbeddingTable(dim: 4, optimizer: .sparseAdam(.catchUp), storage: .bf16, initializer: .constant(0.5))
    for table in [f32, bf16] {
      try SparseOptimizerTests.step(table, .sparseAdam(.catchUp), ids: [1, 2], grad: [1, -1, 0.5, 2, 1, 1, 1, 1], t: 1, lr: 0.01)
      try SparseOptimizerTests.step(table, .sparseAdam(.catchUp), ids: [1], grad: [0.5, 0.5, 0.5, 0.5], t: 20, lr: 0.01)
      table.catchUp(.sparseAdam(.catchUp), throughStep: 30, lr: 0.01)
    }
    for id: Int64 in [1, 2] {
      let a = f32.lookup([id], training: false), b = bf16.lookup([id], training: false)
      for j in 0..<4 { #expect(abs(a[j] - b[j]) <= 0.01 * abs(a[j]), "id \(id)[\(j)]: \(a[j]) vs \(b[j])") }
      #expect(a[0] < 0.5 - 0.05, "the skipped steps moved row \(id) well beyond one step (\(a[0]))")
    }
    #expect(bf16.metadata(of: 2)?.lastUpdate == 30)
  }

  @Test func theCatchUpHorizonBoundsTheNeglectedTail() {
    let b1 = Self.b1, b2 = Self.b2, lr = Self.lr
    let horizon = EmbeddingTable.catchUpHorizon(b1: b1, b2: b2)
    #expect(horizon == 261)
    // The worst case of the bound: m/sqrt(v) at its largest, the corrections at step 1. The
    // terms past the horizon (summed in Double over many more steps) stay below 2^-30 lr.
    let r = b1 / b2.squareRoot()
    let bound = (1 - b1) / ((1 - b2) * (1 - r * r)).squareRoot()
    var tail = 0.0
    for j in (horizon + 1)...(horizon + 20_000) {
      let term: Double = lr * bound * pow(r, Double(j)) / (1 - b1)
      tail += term
    }
    #expect(tail <= 0x1p-30 * lr)
    #expect(tail > 0x1p-32 * lr, "the horizon is the least such count, not far beyond it")
    // The bound on |m| / sqrt(v) holds, and is reached by gradients growing like (b2/b1)^step.
    var m = 0.0, v = 0.0, ratio = 0.0
    for i in 0..<2000 {
      let g: Double = pow(b2 / b1, Double(i))
      m = b1 * m + (1 - b1) * g
      v = b2 * v + (1 - b2) * g * g
      ratio = max(ratio, abs(m) / v.squareRoot())
    }
    #expect(ratio <= bound * (1 + 1e-12) && ratio > 0.99 * bound)
    #expect(EmbeddingTable.catchUpHorizon(b1: 0.99, b2: 0.9) == Int64.max, "b1^2 >= b2: the sum is never cut")
    #expect(EmbeddingTable.catchUpHorizon(b1: 0, b2: 0.999) == 0)
  }
}
