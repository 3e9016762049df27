// SparseAdam — Adam on the rows a batch touched, each row knowing the step L of its last update
// and its update count n (row metadata). t is the global step (from 1), k = t - L (1 when the row
// was updated at the step before: it skipped k - 1 steps), b1, b2, eps are Adam's. Three variants,
// stated with the same names in IR-specs/embeddings.md ("SparseAdam"):
//   published  m = b1^k m + (1-b1) g;  v = b2^k v + (1-b2) g^2   (the skipped steps' decay at once),
//              then LazyAdam's step with the global correction:
//              w -= lr (m/(1-b1^t)) / (sqrt(v/(1-b2^t)) + eps)          (k = 1: exactly LazyAdam)
//   rowcount   the same m and v, corrected by the row's own count c = n + 1 instead of t:
//              w -= lr (m/(1-b1^c)) / (sqrt(v/(1-b2^c)) + eps)
//   catchup    first the movement dense Adam makes on the skipped steps s = L + j, j = 1..k-1
//              (zero gradient; m and v as the update at L left them):
//              w -= sum_j lr (b1^j m/(1-b1^s)) / (sqrt(b2^j v/(1-b2^s)) + eps),
//              then the published update: dense Adam, paid for when the row is next touched.
//              The sum stops after `catchUpHorizon` terms; the rest is below 2^-30 lr.
// A training step first catches up the rows it is about to read (`catchUp(_:ids:...)`, through
// the previous step), so that its gradient is taken where dense Adam has the row, and the
// update then has no skipped step left; an evaluation or export catches up every row
// (`catchUp(_:throughStep:lr:)`).

import CSupport
import Glibc

/// Which SparseAdam: the published definition, the row-count correction, or the exact catch-up.
public enum SparseAdamVariant: CaseIterable, Sendable {
  case published
  case rowCount
  case catchUp

  /// The optimizer name (`--sparse-optimizer`, `ttfc ncf --optimizers`).
  public var name: String {
    switch self {
    case .published: return "sparseadam-published"
    case .rowCount: return "sparseadam-rowcount"
    case .catchUp: return "sparseadam-catchup"
    }
  }

  /// The variant the name `sparseadam` stands for: the published definition, which the NCF
  /// experiment found never behind LazyAdam and ahead of it on sparse data at longer budgets
  /// (IR-specs/embeddings.md, "Which SparseAdam is `sparseadam`").
  public static let `default` = SparseAdamVariant.published
}

extension EmbeddingTable {
  /// Catch-up coefficients computed per chunk of skipped steps.
  static let catchUpChunk = 64

  /// Updates the rows `rows[range]` (gradients `dim` floats each, in the same order) with
  /// SparseAdam `variant` at step `t`; `scratch` holds `dim` floats (bf16 rows are updated there).
  func applySparseAdam(_ variant: SparseAdamVariant, b1: Float, b2: Float, eps: Float, rows: [Int32], _ range: Range<Int>,
                       gradients: UnsafePointer<Float>, step t: Int64, lr: Float, scratch: UnsafeMutablePointer<Float>) {
    let n = dim
    // Powers b^k for the skipped steps k, the counts c and the catch-up terms j, from tables (one
    // multiplication per entry) instead of pow calls per row.
    let powers1 = Self.powers(Double(b1)), powers2 = Self.powers(Double(b2))
    // The global correction exactly as LazyAdam computes it, so that k = 1 gives LazyAdam's bits.
    let global1 = 1 - Float(pow(Double(b1), Double(t))), global2 = 1 - Float(pow(Double(b2), Double(t)))
    let horizon = Self.catchUpHorizon(b1: Double(b1), b2: Double(b2))
    let ahead = 8
    rows.withUnsafeBufferPointer { rowList in
      withUnsafeTemporaryAllocation(of: Float.self, capacity: 2 * Self.catchUpChunk) { coefficients in
        for k in range {
          if k + ahead < range.upperBound { prefetchRow(Int(rowList[k + ahead])) }
          let row = Int(rowList[k])
          let last = meta[row].lastUpdate, skipped = t - last
          let decay1 = Float(Self.power(powers1, Double(b1), skipped)), decay2 = Float(Self.power(powers2, Double(b2), skipped))
          var c1 = global1, c2 = global2
          if variant == .rowCount {
            let c = Int64(meta[row].updates) + 1
            c1 = 1 - Float(Self.power(powers1, Double(b1), c))
            c2 = 1 - Float(Self.power(powers2, Double(b2), c))
          }
          // A row never updated has m = v = 0: its skipped steps moved nothing.
          let catchUpSteps = variant == .catchUp && meta[row].updates > 0 ? min(skipped - 1, horizon) : 0
          let m = slot(0, of: row), v = slot(1, of: row)
          updateRow(row, gradients + k * n, step: t, scratch: scratch) { w, g in
            if catchUpSteps > 0 {
              Self.moveThroughSkippedSteps(w, m, v, n, after: last, steps: catchUpSteps, b1: Double(b1), b2: Double(b2), eps: eps,
                                           lr: lr, powers1: powers1, powers2: powers2, coefficients: coefficients.baseAddress!)
            }
            Self.adamRow(w, m, v, g, n, b1: b1, b2: b2, decay1: decay1, decay2: decay2, c1: c1, c2: c2, lr: lr, eps: eps)
          }
        }
      }
    }
  }

  /// For a `sparseadam-catchup` table: brings every updated row that is behind step `t` to the
  /// state dense Adam would have after step t (the skipped steps' movement with rate `lr`, m and
  /// v decayed, the row's last update set to t). Other optimizers' tables are left alone.
  public func catchUp(_ optimizer: SparseOptimizer, throughStep t: Int64, lr: Float) {
    catchUpRows(optimizer, throughStep: t, lr: lr) { visit in
      for row in 0..<highWater { visit(row) }
    }
  }

  /// The same for the rows of `ids` only (ids without a row are skipped): a training step
  /// calls it with step t - 1 before it reads the rows, so that it sees and differentiates
  /// them where dense Adam would have them.
  public func catchUp(_ optimizer: SparseOptimizer, ids: UnsafeBufferPointer<Int64>, throughStep t: Int64, lr: Float) {
    catchUpRows(optimizer, throughStep: t, lr: lr) { visit in
      for id in ids {
        let row = row(of: id)
        if row >= 0 { visit(row) }
      }
    }
  }

  /// Catches up the rows `rows` hands to its visitor (each at most once in effect: a row caught
  /// up to t is not behind any more).
  func catchUpRows(_ optimizer: SparseOptimizer, throughStep t: Int64, lr: Float, _ rows: ((Int) -> Void) -> Void) {
    guard case .sparseAdam(let b1, let b2, let eps, .catchUp) = optimizer, slotCount == 2, t >= 1 else { return }
    let n = dim
    let powers1 = Self.powers(Double(b1)), powers2 = Self.powers(Double(b2))
    let horizon = Self.catchUpHorizon(b1: Double(b1), b2: Double(b2))
    withUnsafeTemporaryAllocation(of: Float.self, capacity: n + 2 * Self.catchUpChunk) { buffer in
      let scratch = buffer.baseAddress!, coefficients = buffer.baseAddress! + n
      rows { row in
        guard meta[row].updates > 0 && meta[row].lastUpdate < t else { return }
        let last = meta[row].lastUpdate, skipped = t - last
        let m = slot(0, of: row), v = slot(1, of: row)
        let w: UnsafeMutablePointer<Float>
        if storage == .f32 { w = f32Row(row) } else { read(row: row, into: scratch); w = scratch }
        Self.moveThroughSkippedSteps(w, m, v, n, after: last, steps: min(skipped, horizon), b1: Double(b1), b2: Double(b2), eps: eps,
                                     lr: lr, powers1: powers1, powers2: powers2, coefficients: coefficients)
        if storage != .f32 { write(row: row, from: scratch) }
        let decay1 = Float(Self.power(powers1, Double(b1), skipped)), decay2 = Float(Self.power(powers2, Double(b2), skipped))
        for j in 0..<n {
          m[j] *= decay1
          v[j] *= decay2
        }
        meta[row].lastUpdate = t
      }
    }
  }

  /// b^k from `table` (b^0 ... b^4095) when k is in it, else from pow.
  @inline(__always) static func power(_ table: [Double], _ base: Double, _ k: Int64) -> Double {
    k >= 0 && k < Int64(table.count) ? table[Int(k)] : pow(base, Double(k))
  }

  /// How many skipped steps the catch-up sums before the rest is negligible. Adam's moments obey
  /// |m| <= B sqrt(v) with B = (1-b1) / sqrt((1-b2)(1-r^2)), r = b1/sqrt(b2) (Cauchy-Schwarz over
  /// the gradients that made them), and the corrections obey sqrt(1-b2^s)/(1-b1^s) <= 1/(1-b1);
  /// so skipped step j moves a value by at most lr B r^j / (1-b1), and every step after the
  /// first J by at most lr B r^(J+1) / ((1-b1)(1-r)) in all. J is the least count that makes
  /// this at most 2^-30 lr (261 for b1 = 0.9, b2 = 0.999); with r >= 1 the sum is never cut.
  static func catchUpHorizon(b1: Double, b2: Double) -> Int64 {
    guard b1 >= 0, b1 < 1, b2 > 0, b2 < 1 else { return Int64.max }
    let r = b1 / b2.squareRoot()
    guard r < 1 else { return Int64.max }
    guard r > 0 else { return 0 }  // b1 = 0: m is 0 after the first skipped step's decay
    let bound = (1 - b1) / ((1 - b2) * (1 - r * r)).squareRoot()
    let target = 0x1p-30 * (1 - b1) * (1 - r) / bound
    return max(0, Int64((log(target) / log(r)).rounded(.up)) - 1)
  }

  /// w -= sum over j = 1...steps of lr (b1^j m / (1-b1^(L+j))) / (sqrt(b2^j v / (1-b2^(L+j))) + eps),
  /// L = `after`: the movement of `steps` zero-gradient Adam steps after an update at step L,
  /// with m and v as that update left them. `coefficients` holds 2 * catchUpChunk floats.
  static func moveThroughSkippedSteps(_ w: UnsafeMutablePointer<Float>, _ m: UnsafePointer<Float>, _ v: UnsafePointer<Float>, _ n: Int,
                                      after last: Int64, steps: Int64, b1: Double, b2: Double, eps: Float, lr: Float,
                                      powers1: [Double], powers2: [Double], coefficients: UnsafeMutablePointer<Float>) {
    let base1 = power(powers1, b1, last), base2 = power(powers2, b2, last)
    let rates = coefficients, roots = coefficients + catchUpChunk
    var done: Int64 = 0
    while done < steps {
      let count = Int(min(steps - done, Int64(catchUpChunk)))
      for i in 0..<count {
        let j = done + Int64(i) + 1
        let p1 = power(powers1, b1, j), p2 = power(powers2, b2, j)
        rates[i] = Float(Double(lr) * p1 / (1 - base1 * p1))     // lr b1^j / (1 - b1^(L+j))
        roots[i] = Float((p2 / (1 - base2 * p2)).squareRoot())   // sqrt(b2^j / (1 - b2^(L+j)))
      }
      catchUpRow(w, m, v, n, rates: rates, roots: roots, count: count, eps: eps)
      done += Int64(count)
    }
  }

  /// w -= sum over i < count of rates[i] m / (roots[i] sqrt(v) + eps), eight lanes at a time
  /// (sqrt(v) once per element, not once per skipped step).
  @inline(__always)
  static func catchUpRow(_ w: UnsafeMutablePointer<Float>, _ m: UnsafePointer<Float>, _ v: UnsafePointer<Float>, _ n: Int,
                         rates: UnsafePointer<Float>, roots: UnsafePointer<Float>, count: Int, eps: Float) {
    var e = 0
    while e + 8 <= n {
      let mv = UnsafeRawPointer(m + e).loadUnaligned(as: SIMD8<Float>.self)
      let rootV = UnsafeRawPointer(v + e).loadUnaligned(as: SIMD8<Float>.self).squareRoot()
      var moved = SIMD8<Float>(repeating: 0)
      for i in 0..<count { moved += rates[i] * mv / (roots[i] * rootV + eps) }
      let wv = UnsafeRawPointer(w + e).loadUnaligned(as: SIMD8<Float>.self) - moved
      UnsafeMutableRawPointer(w + e).storeBytes(of: wv, as: SIMD8<Float>.self)
      e += 8
    }
    while e < n {
      let rootV = v[e].squareRoot()
      var moved: Float = 0
      for i in 0..<count { moved += rates[i] * m[e] / (roots[i] * rootV + eps) }
      w[e] -= moved
      e += 1
    }
  }
}
