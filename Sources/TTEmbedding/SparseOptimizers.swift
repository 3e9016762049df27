// SparseOptimizers — gradients of embedding lookups and the optimizers that apply them to the
// touched rows only. A lookup's gradient is sparse: the unique rows that were read and, for
// each, the sum of the gradients of every position that read it — never a table-sized tensor.
// Formulas (IR-specs/embeddings.md states them with the same names); t is the global step,
// counted from 1; every optimizer keeps its slots beside the rows:
//   SGD        w -= lr g
//   Adagrad    a += g^2;  w -= lr g / sqrt(a)                          (a starts at 0.1, as TF)
//   FTRL       n' = n + g^2;  z += g - (n'^-p - n^-p)/lr w;  n = n'     (p = learning-rate power)
//              w = 0 if |z| <= l1, else -(z - sign(z) l1) / (n^-p / lr + 2 l2)
//   Adam       dense semantics: every row, touched or not (g = 0), every step:
//              m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;  w -= lr (m/(1-b1^t)) / (sqrt(v/(1-b2^t)) + eps)
//   LazyAdam   the Adam formulas on touched rows only, bias-corrected with the global t: a row
//              that skips steps keeps a stale m and v and is corrected as if it had not
//   SparseAdam touched rows only, each row knowing the step of its last update; three variants
//              (published, rowcount, catchup), in SparseAdam.swift

import CSupport
import Dispatch
import Glibc

/// The rows a lookup touched and their summed gradients (`rows.count` x dim floats).
public struct SparseGradient: Sendable {
  public var rows: [Int32] = []
  public var values: [Float] = []
  public init() {}
}

extension EmbeddingTable {
  /// Sums the gradient `grad` (positions x dim) of a lookup whose rows were `rows` (from
  /// `lookup(rowsOut:)`; -1 positions read the default and get no gradient) per unique row.
  public func sparseGradient(rows: UnsafeBufferPointer<Int32>, grad: UnsafePointer<Float>) -> SparseGradient {
    var result = SparseGradient()
    result.rows.reserveCapacity(rows.count)
    result.values.reserveCapacity(rows.count * dim)
    // position of each touched row in the result, via a table-sized scratch cleared afterwards.
    if scratchPosition.count < rowCapacity { scratchPosition = [Int32](repeating: -1, count: rowCapacity) }
    scratchPosition.withUnsafeMutableBufferPointer { position in
      for (i, r) in rows.enumerated() where r >= 0 {
        var p = Int(position[Int(r)])
        if p < 0 {
          p = result.rows.count
          position[Int(r)] = Int32(p)
          result.rows.append(r)
          result.values.append(contentsOf: UnsafeBufferPointer(start: grad + i * dim, count: dim))
        } else {
          let base = p * dim
          result.values.withUnsafeMutableBufferPointer { v in
            for j in 0..<dim { v[base + j] += grad[i * dim + j] }
          }
        }
      }
      for r in result.rows { position[Int(r)] = -1 }
    }
    return result
  }
}

/// An optimizer of embedding rows, applied by ``EmbeddingTable/apply(_:_:step:lr:)`` to the rows
/// a batch touched (formulas in the file header and IR-specs/embeddings.md).
public enum SparseOptimizer: Equatable, Sendable {
  case sgd
  case adagrad(initialAccumulator: Float)
  case ftrl(l1: Float, l2: Float, learningRatePower: Float, initialAccumulator: Float)
  /// Dense Adam semantics: every row decays every step, touched or not.
  case adam(beta1: Float, beta2: Float, epsilon: Float)
  /// Adam on touched rows only, bias-corrected with the global step.
  case lazyAdam(beta1: Float, beta2: Float, epsilon: Float)
  case sparseAdam(beta1: Float, beta2: Float, epsilon: Float, variant: SparseAdamVariant)

  public static let defaultAdagrad = SparseOptimizer.adagrad(initialAccumulator: 0.1)
  public static let defaultFTRL = SparseOptimizer.ftrl(l1: 0, l2: 0, learningRatePower: -0.5, initialAccumulator: 0.1)
  public static let defaultAdam = SparseOptimizer.adam(beta1: 0.9, beta2: 0.999, epsilon: 1e-8)
  public static let defaultLazyAdam = SparseOptimizer.lazyAdam(beta1: 0.9, beta2: 0.999, epsilon: 1e-8)
  /// SparseAdam with Adam's default hyper-parameters and the given variant.
  public static func sparseAdam(_ variant: SparseAdamVariant) -> SparseOptimizer {
    .sparseAdam(beta1: 0.9, beta2: 0.999, epsilon: 1e-8, variant: variant)
  }
  /// What the name `sparseadam` means: the variant the NCF experiment supports, published
  /// (IR-specs/embeddings.md, "Which SparseAdam is `sparseadam`").
  public static let defaultSparseAdam = SparseOptimizer.sparseAdam(SparseAdamVariant.default)

  /// The initial value of each slot of a row (each slot is `dim` floats).
  public var slotInitialValues: [Float] {
    switch self {
    case .sgd: return []
    case .adagrad(let a): return [a]
    case .ftrl(_, _, _, let a): return [a, 0]     // n (the accumulator), z
    case .adam, .lazyAdam, .sparseAdam: return [0, 0]  // m, v
    }
  }

  /// Every name `init(name:)` reads, in the order help texts list them.
  public static let names = ["sgd", "adagrad", "ftrl", "adam", "lazyadam", "sparseadam"] + SparseAdamVariant.allCases.map(\.name)

  /// Parses the names in `names` (default hyper-parameters), ignoring case, `-` and `_`
  /// (`lazy_adam`, `sparse_adam_catchup` and `SparseAdam-RowCount` read too).
  public init?(name: String) {
    func key(_ text: String) -> String { String(text.lowercased().filter { $0 != "-" && $0 != "_" }) }
    switch key(name) {
    case "sgd": self = .sgd
    case "adagrad": self = .defaultAdagrad
    case "ftrl": self = .defaultFTRL
    case "adam": self = .defaultAdam
    case "lazyadam": self = .defaultLazyAdam
    case "sparseadam": self = .defaultSparseAdam
    case let spelled:
      guard let variant = SparseAdamVariant.allCases.first(where: { key($0.name) == spelled }) else { return nil }
      self = .sparseAdam(variant)
    }
  }

  /// The canonical name (a SparseAdam names its variant: `sparseadam-published`, ...).
  public var name: String {
    switch self {
    case .sgd: return "sgd"
    case .adagrad: return "adagrad"
    case .ftrl: return "ftrl"
    case .adam: return "adam"
    case .lazyAdam: return "lazyadam"
    case .sparseAdam(_, _, _, let variant): return variant.name
    }
  }
}

extension EmbeddingTable {
  /// Applies one optimizer step `t` (global, from 1) with learning rate `lr` to the rows of
  /// `gradient` (for dense Adam: to every row). The table must have been made with the
  /// optimizer's slot count.
  public func apply(_ optimizer: SparseOptimizer, _ gradient: SparseGradient, step t: Int64, lr: Float) throws(EmbeddingError) {
    guard optimizer.slotInitialValues.count == slotCount else {
      throw .invalid("the optimizer needs \(optimizer.slotInitialValues.count) slots per row, the table has \(slotCount)")
    }
    guard t >= 1 else { throw .invalid("optimizer steps count from 1, got \(t)") }
    let count = gradient.rows.count
    if case .adam = optimizer {
      applyRows(optimizer, gradient, 0..<count, step: t, lr: lr)
    } else if count >= 4096 {
      // The rows of a sparse gradient are distinct, so threads updating disjoint ranges of them
      // never touch the same row, slot or metadata.
      let chunks = 4
      let table = SharedReference(object: self)
      DispatchQueue.concurrentPerform(iterations: chunks) { c in
        table.object.applyRows(optimizer, gradient, (count * c / chunks)..<(count * (c + 1) / chunks), step: t, lr: lr)
      }
    } else {
      applyRows(optimizer, gradient, 0..<count, step: t, lr: lr)
    }
  }

  /// Updates the rows `gradient.rows[range]` (dense Adam: every row, whatever the range).
  func applyRows(_ optimizer: SparseOptimizer, _ gradient: SparseGradient, _ range: Range<Int>, step t: Int64, lr: Float) {
    let n = dim
    withUnsafeTemporaryAllocation(of: Float.self, capacity: n) { wBuffer in
      let w = wBuffer.baseAddress!
      gradient.values.withUnsafeBufferPointer { gBuffer in
        @inline(__always) func update(_ r: Int, _ g: UnsafePointer<Float>, _ body: (UnsafeMutablePointer<Float>, UnsafePointer<Float>) -> Void) {
          updateRow(r, g, step: t, scratch: w, body)
        }
        switch optimizer {
        case .sgd:
          for k in range {
            let r = gradient.rows[k]
            update(Int(r), gBuffer.baseAddress! + k * n) { w, g in for j in 0..<n { w[j] -= lr * g[j] } }
          }
        case .adagrad:
          for k in range {
            let r = gradient.rows[k]
            let a = slot(0, of: Int(r))
            update(Int(r), gBuffer.baseAddress! + k * n) { w, g in
              for j in 0..<n {
                a[j] += g[j] * g[j]
                w[j] -= lr * g[j] / a[j].squareRoot()
              }
            }
          }
        case .ftrl(let l1, let l2, let power, _):
          for k in range {
            let r = gradient.rows[k]
            let accumulator = slot(0, of: Int(r)), z = slot(1, of: Int(r))
            update(Int(r), gBuffer.baseAddress! + k * n) { w, g in
              for j in 0..<n {
                let old = accumulator[j], new = old + g[j] * g[j]
                let sigma = (powf(new, -power) - powf(old, -power)) / lr
                z[j] += g[j] - sigma * w[j]
                accumulator[j] = new
                let quadratic = powf(new, -power) / lr + 2 * l2
                w[j] = abs(z[j]) <= l1 ? 0 : -(z[j] - (z[j] < 0 ? -l1 : l1)) / quadratic
              }
            }
          }
        case .adam(let b1, let b2, let eps):
          // Dense semantics: untouched rows see a zero gradient.
          let c1 = 1 - Float(pow(Double(b1), Double(t))), c2 = 1 - Float(pow(Double(b2), Double(t)))
          var touched = [Int32](repeating: -1, count: highWater)
          for k in range { touched[Int(gradient.rows[k])] = Int32(k) }
          withUnsafeTemporaryAllocation(of: Float.self, capacity: n) { zero in
            zero.initialize(repeating: 0)
            for r in 0..<highWater where meta[r].updates >= 0 {
              let g = touched[r] >= 0 ? UnsafePointer(gBuffer.baseAddress! + Int(touched[r]) * n) : UnsafePointer(zero.baseAddress!)
              let m = slot(0, of: r), v = slot(1, of: r)
              update(r, g) { w, g in Self.adamRow(w, m, v, g, n, b1: b1, b2: b2, decay1: b1, decay2: b2, c1: c1, c2: c2, lr: lr, eps: eps) }
            }
          }
        case .lazyAdam(let b1, let b2, let eps):
          let c1 = 1 - Float(pow(Double(b1), Double(t))), c2 = 1 - Float(pow(Double(b2), Double(t)))
          for k in range {
            let r = gradient.rows[k]
            let m = slot(0, of: Int(r)), v = slot(1, of: Int(r))
            update(Int(r), gBuffer.baseAddress! + k * n) { w, g in
              Self.adamRow(w, m, v, g, n, b1: b1, b2: b2, decay1: b1, decay2: b2, c1: c1, c2: c2, lr: lr, eps: eps)
            }
          }
        case .sparseAdam(let b1, let b2, let eps, let variant):
          applySparseAdam(variant, b1: b1, b2: b2, eps: eps, rows: gradient.rows, range, gradients: gBuffer.baseAddress!,
                          step: t, lr: lr, scratch: w)
        }
      }
    }
  }

  /// Runs `body` on row `r`'s values (f32 rows where they are, bf16 rows through the f32
  /// `scratch`) and its gradient `g`, then counts the update at step `t`.
  @inline(__always)
  func updateRow(_ r: Int, _ g: UnsafePointer<Float>, step t: Int64, scratch w: UnsafeMutablePointer<Float>,
                 _ body: (UnsafeMutablePointer<Float>, UnsafePointer<Float>) -> Void) {
    if storage == .f32 {
      body(f32Row(r), g)
    } else {
      read(row: r, into: w)
      body(w, g)
      write(row: r, from: w)
    }
    meta[r].updates &+= 1
    meta[r].lastUpdate = t
  }

  /// Prefetches what an optimizer update of `row` touches: its metadata, values and slots.
  @inline(__always) func prefetchRow(_ row: Int) {
    ttfc_prefetch_for_write(meta + row)
    let values = rowSlab.base! + row * rowBytes
    for offset in stride(from: 0, to: rowBytes, by: 64) { ttfc_prefetch_for_write(values + offset) }
    let slots = slotSlab.base! + row * slotBytesPerRow
    for offset in stride(from: 0, to: slotBytesPerRow, by: 64) { ttfc_prefetch_for_write(slots + offset) }
  }

  /// b^0, b^1, ..., b^4095 (by repeated multiplication in f64: within a few ulps of pow).
  static func powers(_ b: Double) -> [Double] {
    var table = [Double](repeating: 1, count: 4096)
    for k in 1..<table.count { table[k] = table[k - 1] * b }
    return table
  }

  /// m = decay1 m + (1-b1) g; v = decay2 v + (1-b2) g^2; w -= lr (m/c1) / (sqrt(v/c2) + eps),
  /// eight lanes at a time (Swift cannot prove that w, m, v and g do not alias, so the scalar
  /// loop would not vectorize on its own).
  @inline(__always)
  static func adamRow(_ w: UnsafeMutablePointer<Float>, _ m: UnsafeMutablePointer<Float>, _ v: UnsafeMutablePointer<Float>,
                      _ g: UnsafePointer<Float>, _ n: Int, b1: Float, b2: Float, decay1: Float, decay2: Float,
                      c1: Float, c2: Float, lr: Float, eps: Float) {
    let step = lr / c1, inverseC2 = 1 / c2
    var j = 0
    while j + 8 <= n {
      let gv = UnsafeRawPointer(g + j).loadUnaligned(as: SIMD8<Float>.self)
      var mv = UnsafeRawPointer(m + j).loadUnaligned(as: SIMD8<Float>.self)
      var vv = UnsafeRawPointer(v + j).loadUnaligned(as: SIMD8<Float>.self)
      var wv = UnsafeRawPointer(w + j).loadUnaligned(as: SIMD8<Float>.self)
      mv = decay1 * mv + (1 - b1) * gv
      vv = decay2 * vv + (1 - b2) * gv * gv
      wv -= step * mv / ((vv * inverseC2).squareRoot() + eps)
      UnsafeMutableRawPointer(m + j).storeBytes(of: mv, as: SIMD8<Float>.self)
      UnsafeMutableRawPointer(v + j).storeBytes(of: vv, as: SIMD8<Float>.self)
      UnsafeMutableRawPointer(w + j).storeBytes(of: wv, as: SIMD8<Float>.self)
      j += 8
    }
    while j < n {
      m[j] = decay1 * m[j] + (1 - b1) * g[j]
      v[j] = decay2 * v[j] + (1 - b2) * g[j] * g[j]
      w[j] -= step * m[j] / ((v[j] * inverseC2).squareRoot() + eps)
      j += 1
    }
  }
}
