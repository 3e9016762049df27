// Transformer — reference semantics of layer normalization over the last axis and of its
// gradient op, row by row in Double: mean and biased variance of each row of D elements, then
// y = (x - mean) / sqrt(variance + epsilon) * scale + offset (IR-specs/ops/nn.md).

import TTIR

enum Transformer {
  /// Each row's mean, 1/sqrt(variance + epsilon) and normalized values xhat.
  static func rowStatistics(_ x: [Double], width d: Int, epsilon: Double) -> (xhat: [Double], inverse: [Double]) {
    let rows = d == 0 ? 0 : x.count / d
    var xhat = [Double](repeating: 0, count: x.count)
    var inverse = [Double](repeating: 0, count: rows)
    for r in 0..<rows {
      var mean = 0.0
      for k in 0..<d { mean += x[r * d + k] }
      mean /= Double(d)
      var variance = 0.0
      for k in 0..<d { let c = x[r * d + k] - mean; variance += c * c }
      variance /= Double(d)
      let inv = 1 / (variance + epsilon).squareRoot()
      inverse[r] = inv
      for k in 0..<d { xhat[r * d + k] = (x[r * d + k] - mean) * inv }
    }
    return (xhat, inverse)
  }

  static func layerNorm(_ t: [Tensor], _ a: Attributes, dtype: DType) throws(InterpreterError) -> Tensor {
    let d = t[0].shape.last!
    // Rows of no elements have no mean; no rows at all is an empty result.
    guard d > 0 || elementCount(Array(t[0].shape.dropLast())) == 0 else { throw .emptyReduction(op: "layer_norm") }
    let epsilon = (try? ShapeRules.layerNormEpsilon(a)) ?? 1e-5
    let (xhat, _) = rowStatistics(t[0].doubles, width: d, epsilon: epsilon)
    let scale = t[1].doubles, offset = t[2].doubles
    let y = xhat.indices.map { xhat[$0] * scale[$0 % d] + offset[$0 % d] }
    return Kernels.make(dtype, t[0].shape, y)
  }

  /// (dx, dscale, doffset) for dy, per row with g = dy * scale:
  ///   dx = inverse (g - mean(g) - xhat mean(g xhat)), dscale = sum over rows of dy xhat,
  ///   doffset = sum over rows of dy.
  static func layerNormGrad(_ t: [Tensor], _ a: Attributes, dtype: DType) throws(InterpreterError) -> [Tensor] {
    let d = t[0].shape.last!
    let epsilon = (try? ShapeRules.layerNormEpsilon(a)) ?? 1e-5
    let (xhat, inverse) = rowStatistics(t[0].doubles, width: d, epsilon: epsilon)
    let scale = t[1].doubles, dy = t[2].doubles
    var dx = [Double](repeating: 0, count: xhat.count)
    var dscale = [Double](repeating: 0, count: d), doffset = dscale
    for r in 0..<inverse.count {
      var meanG = 0.0, meanGX = 0.0
      for k in 0..<d {
        let g = dy[r * d + k] * scale[k]
        meanG += g
        meanGX += g * xhat[r * d + k]
        dscale[k] += dy[r * d + k] * xhat[r * d + k]
        doffset[k] += dy[r * d + k]
      }
      meanG /= Double(d); meanGX /= Double(d)
      for k in 0..<d {
        let g = dy[r * d + k] * scale[k]
        dx[r * d + k] = inverse[r] * (g - meanG - xhat[r * d + k] * meanGX)
      }
    }
    return [Kernels.make(dtype, t[0].shape, dx), Kernels.make(dtype, [d], dscale), Kernels.make(dtype, [d], doffset)]
  }
}

/// The reference counter-based generator of `random_bits` and `dropout` (IR-specs/ops/random.md):
/// 64 bits for (seed, step, stream, element index), a pure function of the four, so a step's
/// numbers do not depend on evaluation order, threads, or which steps ran before.
enum CounterRandom {
  static func mix(_ z0: UInt64) -> UInt64 {
    var z = z0 &+ 0x9E37_79B9_7F4A_7C15
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }

  /// The key of one op in one step: mix(mix(mix(seed ^ C) ^ step) ^ stream).
  static func key(seed: Int64, step: Int64, stream: Int64) -> UInt64 {
    mix(mix(mix(UInt64(bitPattern: seed) ^ 0x5851_F42D_4C95_7F2D) ^ UInt64(bitPattern: step)) ^ UInt64(bitPattern: stream))
  }

  /// Element `index`'s bits: mix(key ^ mix(index)).
  static func bits(key: UInt64, index: Int) -> UInt64 { mix(key ^ mix(UInt64(index))) }

  /// The step operand's value and the op's (seed, stream) attributes as a key.
  static func key(_ step: Tensor, _ a: Attributes) -> UInt64 {
    key(seed: Int64(a.int("seed") ?? 0), step: step.int64s.first ?? 0, stream: Int64(a.int("stream") ?? 0))
  }

  static func randomBits(_ step: Tensor, _ a: Attributes, dtype: DType, shape: [Int]) -> Tensor {
    let k = key(step, a)
    let count = shape.reduce(1, *)
    let values: [Int64] = (0..<count).map { i in
      let b = bits(key: k, index: i)
      return dtype == .i32 ? Int64(Int32(truncatingIfNeeded: b)) : Int64(bitPattern: b)
    }
    return Tensor(dtype, shape: shape, ints: values)
  }

  /// Element i is kept when u = (bits >> 11) 2^-53 (uniform in [0, 1)) is at least `rate`, and
  /// then scaled by 1 / (1 - rate); dropped elements are 0.
  static func dropout(_ x: Tensor, _ step: Tensor, _ a: Attributes, dtype: DType) -> Tensor {
    let rate = a.double("rate") ?? 0
    let k = key(step, a)
    let scale = 1 / (1 - rate)
    let v = x.doubles
    let y = v.indices.map { i -> Double in
      let u = Double(bits(key: k, index: i) >> 11) * 0x1.0p-53
      return u >= rate ? v[i] * scale : 0
    }
    return Kernels.make(dtype, x.shape, y)
  }
}

extension Transformer {
  /// Position s of row b is valid when s < lengths[b]: i1 true, or 0 in a float (additive) mask;
  /// masked positions are false, or masked_value (default -1e9).
  static func sequenceMask(_ lengths: Tensor, _ a: Attributes, dtype: DType, shape: [Int]) -> Tensor {
    let n = lengths.int64s
    let s = shape.last!
    let count = shape.reduce(1, *)
    let rowSize = count / Swift.max(n.count, 1)
    let masked = a.double("masked_value") ?? -1e9
    let valid = (0..<count).map { i in Int64(i % s) < n[i / Swift.max(rowSize, 1)] }
    if dtype == .i1 { return Tensor(.i1, shape: shape, ints: valid.map { $0 ? 1 : 0 }) }
    return Kernels.make(dtype, shape, valid.map { $0 ? 0 : masked })
  }
}
