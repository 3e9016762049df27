// RowKernels — compiled routines over rows, split over the thread pool where it pays:
// layer_norm (one pass per row for mean and variance, one to normalize), layer_norm_grad (per
// row: statistics, the two row sums of the gradient, then dx; dscale and doffset summed per chunk
// of rows, chunks fixed by the row count, then in chunk order: the same bits on any number of
// threads), and integer-label softmax_cross_entropy (per row: max, sum of
// exponentials, the label's log-probability; a label outside [0, classes) is a named error).
// f32 and f64; row sums accumulate in Double and follow the interpreter's formulas, so results
// agree with it within rounding (IR-specs/ops/nn.md). Also the ops that index memory or draw
// random numbers: dropout and random_bits (the counter-based generator of IR-specs/ops/random.md,
// bit for bit), gather (row copies, any element type) and scatter_add (f32, f64, i32, i64; in
// the interpreter's order, so f32 sums of repeated indices round per addition where the
// interpreter rounds once), each index checked first: a bad one is the interpreter's error.

import Foundation

/// Which routine a `rows` thunk runs.
public enum RowRoutine: Sendable, CustomStringConvertible {
  case layerNorm(epsilon: Double)
  case layerNormGrad(epsilon: Double)
  case sparseSoftmaxCrossEntropy
  case dropout(rate: Double, seed: Int64, stream: Int64)
  case randomBits(seed: Int64, stream: Int64)
  case gather(axis: Int)
  case scatterAdd(axis: Int)
  /// Fused scaled dot-product attention and its gradient (AttentionKernels).
  case attention(scale: Double, rate: Double, seed: Int64, stream: Int64)
  case attentionGrad(scale: Double, rate: Double, seed: Int64, stream: Int64)

  public var description: String {
    switch self {
    case .attention: return "attention"
    case .attentionGrad: return "attention_grad"
    case .dropout: return "dropout"
    case .randomBits: return "random_bits"
    case .gather: return "gather"
    case .scatterAdd: return "scatter_add"
    case .layerNorm: return "layer_norm"
    case .layerNormGrad: return "layer_norm_grad"
    case .sparseSoftmaxCrossEntropy: return "softmax_cross_entropy (integer labels)"
    }
  }
}

public protocol RowElement: BinaryFloatingPoint, RowExponential {}
extension Float: RowElement {}
extension Double: RowElement {}

public enum RowKernels {
  /// Elements below which a routine runs on the calling thread alone.
  static let parallelThreshold = 1 << 14

  /// How many chunks `rows` rows of `width` elements are split into.
  static func chunkCount(rows: Int, width: Int, pool: ThreadPool) -> Int {
    guard rows >= 2, rows * max(width, 1) >= parallelThreshold, pool.threadCount > 1 else { return 1 }
    return min(rows, pool.threadCount * 4)
  }

  /// Rows [lo, hi) of chunk c out of `chunks`.
  static func bounds(_ c: Int, of chunks: Int, rows: Int) -> (Int, Int) { (rows * c / chunks, rows * (c + 1) / chunks) }

  /// One row's mean and 1/sqrt(variance + epsilon) in one pass: sums of x - x0 and its square,
  /// shifted by the row's first element so a large mean does not cancel the variance away.
  @inline(__always)
  static func statistics<T: RowElement>(_ x: UnsafePointer<T>, _ d: Int, _ epsilon: Double) -> (mean: Double, inverse: Double) {
    let shift = Double(x[0])
    var s1 = 0.0, s2 = 0.0
    for k in 0..<d { let v = Double(x[k]) - shift; s1 += v; s2 += v * v }
    let m = s1 / Double(d)
    let variance = max(s2 / Double(d) - m * m, 0)
    return (shift + m, 1 / (variance + epsilon).squareRoot())
  }

  /// y = (x - mean) inverse scale + offset for `rows` rows of d elements.
  public static func layerNorm<T: RowElement>(rows: Int, width d: Int, epsilon: Double, x: UnsafePointer<T>, scale: UnsafePointer<T>,
                                              offset: UnsafePointer<T>, y: UnsafeMutablePointer<T>, pool: ThreadPool) {
    guard d > 0 else { return }
    let chunks = chunkCount(rows: rows, width: d, pool: pool)
    let (xa, sa, oa, ya) = (UInt(bitPattern: x), UInt(bitPattern: scale), UInt(bitPattern: offset), UInt(bitPattern: y))
    pool.parallelFor(chunks) { c in
      let x = UnsafePointer<T>(bitPattern: xa)!, scale = UnsafePointer<T>(bitPattern: sa)!
      let offset = UnsafePointer<T>(bitPattern: oa)!, y = UnsafeMutablePointer<T>(bitPattern: ya)!
      let (lo, hi) = bounds(c, of: chunks, rows: rows)
      for r in lo..<hi {
        let row = x + r * d, out = y + r * d
        let (mean, inverse) = statistics(row, d, epsilon)
        for k in 0..<d { out[k] = T((Double(row[k]) - mean) * inverse * Double(scale[k]) + Double(offset[k])) }
      }
    }
  }

  /// dx per row, dscale = sum(dy xhat) and doffset = sum(dy) over rows.
  public static func layerNormGrad<T: RowElement>(rows: Int, width d: Int, epsilon: Double, x: UnsafePointer<T>, scale: UnsafePointer<T>,
                                                  dy: UnsafePointer<T>, dx: UnsafeMutablePointer<T>, dscale: UnsafeMutablePointer<T>,
                                                  doffset: UnsafeMutablePointer<T>, pool: ThreadPool) {
    guard d > 0 else { return }
    // Chunks of a row count that depends on the rows alone (at least 64, at most 256 chunks):
    // dscale and doffset are then the same sums, in the same order, on any number of threads.
    let rowsPerChunk = max(64, (rows + 255) / 256)
    let chunks = max(1, (rows + rowsPerChunk - 1) / rowsPerChunk)
    // Per chunk: d partial sums of dy xhat, then d of dy.
    let partials = UnsafeMutablePointer<Double>.allocate(capacity: chunks * 2 * d)
    defer { partials.deallocate() }
    partials.initialize(repeating: 0, count: chunks * 2 * d)
    let (xa, sa, ga, da, pa) = (UInt(bitPattern: x), UInt(bitPattern: scale), UInt(bitPattern: dy), UInt(bitPattern: dx),
                                UInt(bitPattern: partials))
    pool.parallelFor(chunks) { c in
      let x = UnsafePointer<T>(bitPattern: xa)!, scale = UnsafePointer<T>(bitPattern: sa)!
      let dy = UnsafePointer<T>(bitPattern: ga)!, dx = UnsafeMutablePointer<T>(bitPattern: da)!
      let sumScale = UnsafeMutablePointer<Double>(bitPattern: pa)! + c * 2 * d, sumOffset = sumScale + d
      let (lo, hi) = bounds(c, of: chunks, rows: rows)
      for r in lo..<hi {
        let row = x + r * d, g = dy + r * d, out = dx + r * d
        let (mean, inverse) = statistics(row, d, epsilon)
        var meanG = 0.0, meanGX = 0.0
        for k in 0..<d {
          let xhat = (Double(row[k]) - mean) * inverse, gk = Double(g[k])
          let scaled = gk * Double(scale[k])
          meanG += scaled
          meanGX += scaled * xhat
          sumScale[k] += gk * xhat
          sumOffset[k] += gk
        }
        meanG /= Double(d); meanGX /= Double(d)
        for k in 0..<d {
          let xhat = (Double(row[k]) - mean) * inverse
          out[k] = T(inverse * (Double(g[k]) * Double(scale[k]) - meanG - xhat * meanGX))
        }
      }
    }
    for k in 0..<d {
      var s = 0.0, o = 0.0
      for c in 0..<chunks { s += partials[c * 2 * d + k]; o += partials[c * 2 * d + d + k] }
      dscale[k] = T(s); doffset[k] = T(o)
    }
  }

  /// loss[r] = logsumexp(logits[r]) - logits[r, label[r]], or the first (lowest-row) label
  /// outside [0, classes) with nothing promised about the loss.
  public static func sparseSoftmaxCrossEntropy<T: RowElement>(rows: Int, classes c: Int, logits: UnsafePointer<T>,
                                                              labels: UnsafeRawPointer, labelsAreInt64: Bool, loss: UnsafeMutablePointer<T>,
                                                              pool: ThreadPool) -> Int64? {
    @inline(__always) func label(_ p: UnsafeRawPointer, _ r: Int) -> Int64 {
      labelsAreInt64 ? p.assumingMemoryBound(to: Int64.self)[r] : Int64(p.assumingMemoryBound(to: Int32.self)[r])
    }
    if c == 0 { return rows == 0 ? nil : label(labels, 0) }
    let chunks = chunkCount(rows: rows, width: c, pool: pool)
    let bad = UnsafeMutablePointer<Int64>.allocate(capacity: chunks)
    let badRow = UnsafeMutablePointer<Int>.allocate(capacity: chunks)
    defer { bad.deallocate(); badRow.deallocate() }
    badRow.initialize(repeating: Int.max, count: chunks)
    bad.initialize(repeating: 0, count: chunks)
    let (la, oa, ba, ra) = (UInt(bitPattern: logits), UInt(bitPattern: loss), UInt(bitPattern: bad), UInt(bitPattern: badRow))
    let ya = UInt(bitPattern: labels)
    pool.parallelFor(chunks) { ch in
      let logits = UnsafePointer<T>(bitPattern: la)!, loss = UnsafeMutablePointer<T>(bitPattern: oa)!
      let (lo, hi) = bounds(ch, of: chunks, rows: rows)
      for r in lo..<hi {
        let label = label(UnsafeRawPointer(bitPattern: ya)!, r)
        guard label >= 0 && label < c else {
          if UnsafeMutablePointer<Int>(bitPattern: ra)![ch] == Int.max {
            UnsafeMutablePointer<Int>(bitPattern: ra)![ch] = r
            UnsafeMutablePointer<Int64>(bitPattern: ba)![ch] = label
          }
          continue
        }
        let row = logits + r * c
        // The row's maximum by selects (vectorized); a NaN is skipped here but makes the sum of
        // exponentials below NaN, so the loss is NaN, as in the interpreter.
        var rowMax = -T.infinity
        for k in 0..<c { let v = row[k]; rowMax = v > rowMax ? v : rowMax }
        let m = Double(rowMax)
        // f32: FastExp eight lanes at a time, summed in Double (RowExponential).
        let s = T.sumOfExponentials(row, c, subtracting: T(m))
        // As the interpreter: the label's log-probability (x - max) - log(sum), negated as 0 - lp.
        loss[r] = T(0 - ((Double(row[Int(label)]) - m) - Foundation.log(s)))
      }
    }
    for ch in 0..<chunks where badRow[ch] != Int.max { return bad[ch] }
    return nil
  }
}

/// The counter-based generator of random_bits and dropout, as IR-specs/ops/random.md states it
/// (the interpreter's CounterRandom is the reference; tests compare the two bit for bit).
public enum CounterBits {
  @inline(__always) static func mix(_ z0: UInt64) -> UInt64 {
    var z = z0 &+ 0x9E37_79B9_7F4A_7C15
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }
  @inline(__always) public static func key(seed: Int64, step: Int64, stream: Int64) -> UInt64 {
    mix(mix(mix(UInt64(bitPattern: seed) ^ 0x5851_F42D_4C95_7F2D) ^ UInt64(bitPattern: step)) ^ UInt64(bitPattern: stream))
  }
  @inline(__always) public static func bits(key: UInt64, index: Int) -> UInt64 { mix(key ^ mix(UInt64(index))) }
}

extension RowKernels {
  /// y[i] = x[i] / (1 - rate) where (bits(i) >> 11) 2^-53 >= rate, else 0; chunks of the pool.
  public static func dropout<T: RowElement>(count: Int, rate: Double, key: UInt64, x: UnsafePointer<T>, y: UnsafeMutablePointer<T>,
                                            pool: ThreadPool) {
    let chunks = count >= parallelThreshold && pool.threadCount > 1 ? pool.threadCount * 4 : 1
    let scale = 1 / (1 - rate)
    // Kept iff bits >> 11 >= rate 2^53, compared as integers (exact: rate 2^53 is an integer
    // rounded up, and bits >> 11 is below 2^53).
    let threshold = UInt64((rate * 0x1.0p53).rounded(.up))
    let (xa, ya) = (UInt(bitPattern: x), UInt(bitPattern: y))
    pool.parallelFor(chunks) { c in
      let x = UnsafePointer<T>(bitPattern: xa)!, y = UnsafeMutablePointer<T>(bitPattern: ya)!
      let (lo, hi) = bounds(c, of: chunks, rows: count)
      for i in lo..<hi {
        y[i] = CounterBits.bits(key: key, index: i) >> 11 >= threshold ? T(Double(x[i]) * scale) : 0
      }
    }
  }

  /// random_bits: the 64 bits of each element (i64), or their low half (i32).
  public static func randomBits(count: Int, key: UInt64, wide: Bool, out: UnsafeMutableRawPointer, pool: ThreadPool) {
    let chunks = count >= parallelThreshold && pool.threadCount > 1 ? pool.threadCount * 4 : 1
    let oa = UInt(bitPattern: out)
    pool.parallelFor(chunks) { c in
      let (lo, hi) = bounds(c, of: chunks, rows: count)
      if wide {
        let p = UnsafeMutablePointer<Int64>(bitPattern: oa)!
        for i in lo..<hi { p[i] = Int64(bitPattern: CounterBits.bits(key: key, index: i)) }
      } else {
        let p = UnsafeMutablePointer<Int32>(bitPattern: oa)!
        for i in lo..<hi { p[i] = Int32(truncatingIfNeeded: CounterBits.bits(key: key, index: i)) }
      }
    }
  }
}

extension RowKernels {
  /// The first index outside [0, bound), in order, or nil.
  static func firstOutOfRange(_ indices: UnsafeRawPointer, count: Int, wide: Bool, bound: Int) -> Int64? {
    for j in 0..<count {
      let i = wide ? indices.assumingMemoryBound(to: Int64.self)[j] : Int64(indices.assumingMemoryBound(to: Int32.self)[j])
      if i < 0 || i >= bound { return i }
    }
    return nil
  }

  @inline(__always) static func index(_ indices: UnsafeRawPointer, _ j: Int, wide: Bool) -> Int {
    wide ? Int(indices.assumingMemoryBound(to: Int64.self)[j]) : Int(indices.assumingMemoryBound(to: Int32.self)[j])
  }

  /// gather along an axis of params [outer, bound, inner] (`elementBytes` per element): each
  /// index's row of inner elements copied, for each outer slab. Returns a bad index (nothing
  /// written then) or nil.
  public static func gather(outer: Int, bound: Int, inner: Int, elementBytes: Int, params: UnsafeRawPointer,
                            indices: UnsafeRawPointer, count: Int, wide: Bool, out: UnsafeMutableRawPointer) -> Int64? {
    if let bad = firstOutOfRange(indices, count: count, wide: wide, bound: bound) { return bad }
    let row = inner * elementBytes
    var target = out
    for o in 0..<outer {
      for j in 0..<count {
        memcpy(target, params + (o * bound + index(indices, j, wide: wide)) * row, row)
        target += row
      }
    }
    return nil
  }

  /// out = operand, then out[o, indices[j], :] += updates[o, j, :] in that order (repeated
  /// indices sum). Returns a bad index (nothing written then) or nil.
  public static func scatterAdd<T: Numeric>(_: T.Type, outer: Int, bound: Int, inner: Int, operand: UnsafePointer<T>,
                                            indices: UnsafeRawPointer, count: Int, wide: Bool, updates: UnsafePointer<T>,
                                            out: UnsafeMutablePointer<T>, wrapping: (T, T) -> T) -> Int64? {
    if let bad = firstOutOfRange(indices, count: count, wide: wide, bound: bound) { return bad }
    out.update(from: operand, count: outer * bound * inner)
    var source = updates
    for o in 0..<outer {
      for j in 0..<count {
        let target = out + (o * bound + index(indices, j, wide: wide)) * inner
        for k in 0..<inner { target[k] = wrapping(target[k], source[k]) }
        source += inner
      }
    }
    return nil
  }
}
