// Sparse optimizers against hand-written references over sequences in which rows skip steps and
// ids repeat within a batch (their gradients must be summed); the property that sets the
// row-count SparseAdam apart (a row's update depends on its own history, not on how many global
// steps passed while it was not seen); and the SparseAdam variants against closed forms for a
// row that skips 0, 1 or several steps (SparseAdamVariantTests).
import Foundation
import Testing
@testable import TTEmbedding

/// Per-id state of the reference: the row and up to two slots, the last update step and count.
struct ReferenceRow {
  var w: [Double]
  var s0: [Double]
  var s1: [Double]
  var last: Int64 = 0
  var count = 0
}

/// Whether the optimizer means dense Adam: every row every step (the catch-up SparseAdam is
/// dense Adam by definition, computed when a row is next touched).
func updatesEveryRow(_ optimizer: SparseOptimizer) -> Bool {
  if case .adam = optimizer { return true }
  if case .sparseAdam(_, _, _, .catchUp) = optimizer { return true }
  return false
}

func referenceStep(_ optimizer: SparseOptimizer, _ rows: inout [Int64: ReferenceRow], _ grads: [Int64: [Double]], t: Int64, lr: Double) {
  let ids = updatesEveryRow(optimizer) ? Array(rows.keys) : Array(grads.keys)
  for id in ids {
    var r = rows[id]!
    let g = grads[id] ?? [Double](repeating: 0, count: r.w.count)
    for j in r.w.indices {
      switch optimizer {
      case .sgd: r.w[j] -= lr * g[j]
      case .adagrad:
        r.s0[j] += g[j] * g[j]
        r.w[j] -= lr * g[j] / r.s0[j].squareRoot()
      case .ftrl(let l1, let l2, let p, _):
        let n = r.s0[j] + g[j] * g[j]
        let sigma = (pow(n, Double(-p)) - pow(r.s0[j], Double(-p))) / lr
        r.s1[j] += g[j] - sigma * r.w[j]
        r.s0[j] = n
        let z = r.s1[j]
        r.w[j] = abs(z) <= Double(l1) ? 0 : -(z - (z < 0 ? -1 : 1) * Double(l1)) / (pow(n, Double(-p)) / lr + 2 * Double(l2))
      case .adam(let b1, let b2, let eps), .lazyAdam(let b1, let b2, let eps), .sparseAdam(let b1, let b2, let eps, .catchUp):
        r.s0[j] = Double(b1) * r.s0[j] + (1 - Double(b1)) * g[j]
        r.s1[j] = Double(b2) * r.s1[j] + (1 - Double(b2)) * g[j] * g[j]
        let c1 = 1 - pow(Double(b1), Double(t)), c2 = 1 - pow(Double(b2), Double(t))
        r.w[j] -= lr * (r.s0[j] / c1) / ((r.s1[j] / c2).squareRoot() + Double(eps))
      case .sparseAdam(let b1, let b2, let eps, let variant):
        // published: the global correction; rowcount: the row's own count.
        let k = Double(t - r.last), c = variant == .rowCount ? Double(r.count + 1) : Double(t)
        r.s0[j] = pow(Double(b1), k) * r.s0[j] + (1 - Double(b1)) * g[j]
        r.s1[j] = pow(Double(b2), k) * r.s1[j] + (1 - Double(b2)) * g[j] * g[j]
        r.w[j] -= lr * (r.s0[j] / (1 - pow(Double(b1), c))) / ((r.s1[j] / (1 - pow(Double(b2), c))).squareRoot() + Double(eps))
      }
    }
    r.last = t
    r.count += 1
    rows[id] = r
  }
}

struct SparseOptimizerTests {
  static let optimizers: [SparseOptimizer] = [
    .sgd, .defaultAdagrad, .ftrl(l1: 0.01, l2: 0.1, learningRatePower: -0.5, initialAccumulator: 0.1),
    .defaultAdam, .defaultLazyAdam, .sparseAdam(.published), .sparseAdam(.rowCount), .sparseAdam(.catchUp),
  ]

  /// One training step on the table: look up `ids`, back-propagate `grad` per position.
  static func step(_ table: EmbeddingTable, _ optimizer: SparseOptimizer, ids: [Int64], grad: [Float], t: Int64, lr: Float) throws {
    var rows = [Int32](repeating: 0, count: ids.count)
    var out = [Float](repeating: 0, count: ids.count * table.dim)
    ids.withUnsafeBufferPointer { i in _ = table.lookup(i, into: &out, training: true, step: t, rowsOut: &rows) }
    let sparse = rows.withUnsafeBufferPointer { r in grad.withUnsafeBufferPointer { table.sparseGradient(rows: r, grad: $0.baseAddress!) } }
    try table.apply(optimizer, sparse, step: t, lr: lr)
  }

  @Test(arguments: optimizers)
  func matchesTheReferenceWhenRowsSkipSteps(_ optimizer: SparseOptimizer) throws {
    let dim = 4
    let table = try EmbeddingTable(dim: dim, optimizer: optimizer, initializer: .uniform(scale: 0.5), seed: 1)
    var reference: [Int64: ReferenceRow] = [:]
    var rng = Rng(state: 42)
    let lr = 0.05
    for t in Int64(1)...25 {
      // A few ids per step from a small pool, with repeats; most ids skip most steps.
      let ids = (0..<6).map { _ in Int64.random(in: 0..<10, using: &rng) }
      let grad = (0..<(ids.count * dim)).map { _ in Float.random(in: -1...1, using: &rng) }
      for id in ids where reference[id] == nil {
        let w = (0..<dim).map { Double(table.initialValue(id: id, element: $0)) }
        let slots = optimizer.slotInitialValues.map(Double.init)
        reference[id] = ReferenceRow(w: w, s0: [Double](repeating: slots.first ?? 0, count: dim),
                                     s1: [Double](repeating: slots.count > 1 ? slots[1] : 0, count: dim))
      }
      var summed: [Int64: [Double]] = [:]
      for (i, id) in ids.enumerated() {
        var s = summed[id] ?? [Double](repeating: 0, count: dim)
        for j in 0..<dim { s[j] += Double(grad[i * dim + j]) }
        summed[id] = s
      }
      referenceStep(optimizer, &reference, summed, t: t, lr: lr)
      try Self.step(table, optimizer, ids: ids, grad: grad, t: t, lr: Float(lr))
      // The catch-up SparseAdam is behind on rows this step did not touch until they are
      // touched again: compare the touched rows, and every row after a catch-up every 5 steps.
      if t % 5 == 0 { table.catchUp(optimizer, throughStep: t, lr: Float(lr)) }
      for (id, r) in reference where t % 5 == 0 || !updatesEveryRow(optimizer) || summed[id] != nil || optimizer == .defaultAdam {
        let got = table.lookup([id], training: false)
        for j in 0..<dim where abs(Double(got[j]) - r.w[j]) > 2e-5 * max(1, abs(r.w[j])) {
          Issue.record("\(optimizer) step \(t) id \(id)[\(j)]: \(got[j]) vs \(r.w[j])")
          return
        }
      }
    }
  }

  @Test func rowCountSparseAdamDependsOnTheRowsHistoryNotTheGlobalStep() throws {
    // The same row history (updates with the same gradients at the same gaps), at global steps
    // 1, 2, 3 or 1001, 1002, 1003: the row-count SparseAdam moves the row identically, LazyAdam
    // (and the published SparseAdam, whose correction is LazyAdam's) does not.
    func finalRow(_ optimizer: SparseOptimizer, offset: Int64) throws -> [Float] {
      let table = try EmbeddingTable(dim: 2, optimizer: optimizer, initializer: .constant(1))
      for t in Int64(1)...3 { try Self.step(table, optimizer, ids: [7], grad: [0.5, -0.25], t: offset + t, lr: 0.1) }
      return table.lookup([7], training: false)
    }
    let rowCount = SparseOptimizer.sparseAdam(.rowCount)
    let early = try finalRow(rowCount, offset: 0), late = try finalRow(rowCount, offset: 1000)
    // The first update of a row decays nothing (its m and v are zero), so the histories match.
    for (a, b) in zip(early, late) { #expect(abs(a - b) < 1e-6) }
    let lazyEarly = try finalRow(.defaultLazyAdam, offset: 0), lazyLate = try finalRow(.defaultLazyAdam, offset: 1000)
    #expect(abs(lazyEarly[0] - lazyLate[0]) > 1e-3, "LazyAdam's correction uses the global step: \(lazyEarly) vs \(lazyLate)")
  }

  @Test func gradientsOfRepeatedIdsAreSummedAndDefaultsGetNone() throws {
    let table = try EmbeddingTable(dim: 2, admission: .minimumCount(2))
    _ = table.lookup([1], training: true)      // seen once: not admitted yet
    _ = table.lookup([1, 2, 2], training: true)  // 1 admitted now; 2 seen twice within the batch: admitted at its second sighting
    var rows = [Int32](repeating: 0, count: 4)
    var out = [Float](repeating: 0, count: 8)
    let ids: [Int64] = [2, 3, 2, 1]
    ids.withUnsafeBufferPointer { i in _ = table.lookup(i, into: &out, training: true, rowsOut: &rows) }
    #expect(rows[1] == -1, "id 3 is not admitted and reads the default")
    let grad: [Float] = [1, 2, 100, 100, 3, 4, 5, 6]
    let sparse = rows.withUnsafeBufferPointer { r in grad.withUnsafeBufferPointer { table.sparseGradient(rows: r, grad: $0.baseAddress!) } }
    #expect(sparse.rows.count == 2)
    let byRow = Dictionary(uniqueKeysWithValues: sparse.rows.enumerated().map { ($0.element, Array(sparse.values[($0.offset * 2)..<($0.offset * 2 + 2)])) })
    #expect(byRow[rows[0]] == [4, 6])
    #expect(byRow[rows[3]] == [5, 6])
  }

  @Test func wrongSlotsOrStepsAreNamedErrors() throws {
    let table = try EmbeddingTable(dim: 2)
    #expect(throws: EmbeddingError.self) { try table.apply(.defaultAdam, SparseGradient(), step: 1, lr: 0.1) }
    let adam = try EmbeddingTable(dim: 2, optimizer: .defaultAdam)
    #expect(throws: EmbeddingError.self) { try adam.apply(.defaultAdam, SparseGradient(), step: 0, lr: 0.1) }
    #expect(throws: EmbeddingError.self) { try EmbeddingTable(dim: 0) }
    #expect(SparseOptimizer(name: "sparseadam") == .defaultSparseAdam)
    #expect(SparseOptimizer(name: "nope") == nil)
    #expect(SparseOptimizer(name: "sparseadam-lazy") == nil && SparseOptimizer(name: "sparseadamx") == nil)
    #expect(SparseOptimizer(name: "Lazy_Adam") == .defaultLazyAdam && SparseOptimizer(name: "sparse_adam_catchup") == .sparseAdam(.catchUp))
    // Every listed name reads, and every optimizer's canonical name reads back to it.
    for name in SparseOptimizer.names { #expect(SparseOptimizer(name: name) != nil, "\(name)") }
    for variant in SparseAdamVariant.allCases {
      #expect(SparseOptimizer(name: variant.name) == .sparseAdam(variant))
      #expect(SparseOptimizer(name: variant.name.uppercased().replacingOccurrences(of: "-", with: "_")) == .sparseAdam(variant))
      #expect(SparseOptimizer.sparseAdam(variant).name == variant.name)
    }
  }
}

/// Large batches take the parallel paths (lookups split across threads, the update split by
/// rows); they must give exactly what the same work gives in small serial pieces.
struct ParallelPathTests {
  @Test(arguments: [SparseOptimizer.sparseAdam(.rowCount), .sparseAdam(.published), .sparseAdam(.catchUp), .defaultLazyAdam, .defaultAdagrad, .sgd])
  func largeBatchesEqualSmallSerialPieces(_ optimizer: SparseOptimizer) throws {
    let dim = 8
    let whole = try EmbeddingTable(dim: dim, optimizer: optimizer, seed: 3, admission: .minimumCount(2))
    let pieces = try EmbeddingTable(dim: dim, optimizer: optimizer, seed: 3, admission: .minimumCount(2))
    var rng = Rng(state: 77)
    for t in Int64(1)...4 {
      let ids = (0..<20_000).map { _ in Int64.random(in: 0..<12_000, using: &rng) }
      let grad = (0..<(ids.count * dim)).map { _ in Float.random(in: -1...1, using: &rng) }
      // Whole batch: parallel lookup and parallel update.
      var rowsWhole = [Int32](repeating: 0, count: ids.count)
      var outWhole = [Float](repeating: 0, count: ids.count * dim)
      ids.withUnsafeBufferPointer { i in _ = whole.lookup(i, into: &outWhole, training: true, step: t, rowsOut: &rowsWhole) }
      let sparseWhole = rowsWhole.withUnsafeBufferPointer { r in grad.withUnsafeBufferPointer { whole.sparseGradient(rows: r, grad: $0.baseAddress!) } }
      #expect(sparseWhole.rows.count >= 4096, "the update takes the parallel path")
      try whole.apply(optimizer, sparseWhole, step: t, lr: 0.01)
      // Pieces of 1,000 ids for the lookups; the gradient summed over the whole batch, applied
      // in pieces of 500 rows.
      var rowsPieces = [Int32](repeating: 0, count: ids.count)
      var outPieces = [Float](repeating: 0, count: ids.count * dim)
      for start in stride(from: 0, to: ids.count, by: 1000) {
        ids[start..<(start + 1000)].withUnsafeBufferPointer { i in
          rowsPieces.withUnsafeMutableBufferPointer { r in
            outPieces.withUnsafeMutableBufferPointer { o in
              _ = pieces.lookup(i, into: o.baseAddress! + start * dim, training: true, step: t, rowsOut: r.baseAddress! + start)
            }
          }
        }
      }
      #expect(outWhole == outPieces, "step \(t): lookups")
      #expect(rowsWhole == rowsPieces)
      let sparsePieces = rowsPieces.withUnsafeBufferPointer { r in grad.withUnsafeBufferPointer { pieces.sparseGradient(rows: r, grad: $0.baseAddress!) } }
      for start in stride(from: 0, to: sparsePieces.rows.count, by: 500) {
        var part = SparseGradient()
        let end = min(start + 500, sparsePieces.rows.count)
        part.rows = Array(sparsePieces.rows[start..<end])
        part.values = Array(sparsePieces.values[(start * dim)..<(end * dim)])
        try pieces.apply(optimizer, part, step: t, lr: 0.01)
      }
    }
    #expect(whole.serialized() == pieces.serialized())
    #expect(whole.statistics == pieces.statistics)
  }
}
