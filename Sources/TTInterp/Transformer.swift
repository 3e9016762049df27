// Transformer — reference semantics of layer normalization over the last axis and of its
// gradient op, row by row in Double: mean and biased variance of each row of D elements, then
// y = (x - mean) / sqrt(variance + epsilon) * scale + offset; of attention and its gradient, by
// the definition (whole rows of scores, no tiling); and of the counter-based random ops
// (IR-specs/ops/nn.md, random.md).

import Foundation
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

extension Transformer {
  /// The geometry of an attention op's operands: batch count, Tq, Tk, D, Dv, and the mask's
  /// offset for (batch n, row i, column j) with broadcast axes read at index 0.
  struct AttentionShape {
    let batch: Int, tq: Int, tk: Int, d: Int, dv: Int
    let maskBase: [Int], maskRowStride: Int, maskColumnStride: Int

    init(q: [Int], k: [Int], v: [Int], mask: [Int]) {
      let rank = q.count
      batch = q.dropLast(2).reduce(1, *)
      (tq, d, tk, dv) = (q[rank - 2], q[rank - 1], k[rank - 2], v[rank - 1])
      var strides = [Int](repeating: 0, count: rank)
      var running = 1
      for a in stride(from: rank - 1, through: 0, by: -1) {
        strides[a] = mask[a] == 1 ? 0 : running
        running *= mask[a]
      }
      maskRowStride = strides[rank - 2]
      maskColumnStride = strides[rank - 1]
      let batchDims = Array(q.dropLast(2))
      maskBase = (0..<batch).map { n in
        var rest = n, offset = 0
        for a in stride(from: batchDims.count - 1, through: 0, by: -1) {
          offset += (rest % batchDims[a]) * strides[a]
          rest /= batchDims[a]
        }
        return offset
      }
    }

    func mask(_ n: Int, _ i: Int, _ j: Int) -> Int { maskBase[n] + i * maskRowStride + j * maskColumnStride }
  }

  /// The scaled, masked scores of row i of batch n.
  static func scores(_ s: AttentionShape, _ q: [Double], _ k: [Double], _ mask: [Double], scale: Double, n: Int, i: Int) -> [Double] {
    (0..<s.tk).map { j in
      var dot = 0.0
      for e in 0..<s.d { dot += q[(n * s.tq + i) * s.d + e] * k[(n * s.tk + j) * s.d + e] }
      return dot * scale + mask[s.mask(n, i, j)]
    }
  }

  /// Dropout's factor for score element (n, i, j): 1/(1 - rate) where kept, 0 where dropped, 1
  /// without dropout (the dropout op's rule on the scores' row-major index).
  static func keepFactor(_ s: AttentionShape, _ key: UInt64, rate: Double, n: Int, i: Int, j: Int) -> Double {
    guard rate > 0 else { return 1 }
    let u = Double(CounterRandom.bits(key: key, index: (n * s.tq + i) * s.tk + j) >> 11) * 0x1.0p-53
    return u >= rate ? 1 / (1 - rate) : 0
  }

  /// (o, lse): o = dropout(softmax(q kᵀ scale + mask)) v and lse = log Σ exp(scores), per row.
  static func attention(_ t: [Tensor], _ a: Attributes, dtype: DType) -> [Tensor] {
    let s = AttentionShape(q: t[0].shape, k: t[1].shape, v: t[2].shape, mask: t[3].shape)
    let (q, k, v, mask) = (t[0].doubles, t[1].doubles, t[2].doubles, t[3].doubles)
    let scale = a.double("scale") ?? 1, rate = a.double("rate") ?? 0
    let key = CounterRandom.key(t[4], a)
    var o = [Double](repeating: 0, count: s.batch * s.tq * s.dv)
    var lse = [Double](repeating: -.infinity, count: s.batch * s.tq)
    for n in 0..<s.batch {
      for i in 0..<s.tq where s.tk > 0 {
        let row = scores(s, q, k, mask, scale: scale, n: n, i: i)
        let m = row.max()!
        let e = row.map { Foundation.exp($0 - m) }
        let l = e.reduce(0, +)
        lse[n * s.tq + i] = m + Foundation.log(l)
        for j in 0..<s.tk {
          let p = e[j] / l * keepFactor(s, key, rate: rate, n: n, i: i, j: j)
          for c in 0..<s.dv { o[(n * s.tq + i) * s.dv + c] += p * v[(n * s.tk + j) * s.dv + c] }
        }
      }
    }
    let lseShape = Array(t[0].shape.dropLast())
    return [Kernels.make(dtype, Array(t[0].shape.dropLast()) + [s.dv], o), Kernels.make(dtype, lseShape, lse)]
  }

  /// (dq, dk, dv) given o, lse and do, with p = exp(scores − lse) and pd its dropped-out form:
  /// dv = pdᵀ do, dp = dropout(do vᵀ), ds = p (dp − Σⱼ p dp), dq = ds k scale, dk = dsᵀ q scale.
  static func attentionGrad(_ t: [Tensor], _ a: Attributes, dtype: DType) -> [Tensor] {
    let s = AttentionShape(q: t[0].shape, k: t[1].shape, v: t[2].shape, mask: t[3].shape)
    let (q, k, v, mask) = (t[0].doubles, t[1].doubles, t[2].doubles, t[3].doubles)
    let (lse, dout) = (t[6].doubles, t[7].doubles)
    let scale = a.double("scale") ?? 1, rate = a.double("rate") ?? 0
    let key = CounterRandom.key(t[4], a)
    var dq = [Double](repeating: 0, count: q.count), dk = [Double](repeating: 0, count: k.count)
    var dvOut = [Double](repeating: 0, count: v.count)
    for n in 0..<s.batch {
      for i in 0..<s.tq where s.tk > 0 {
        let row = scores(s, q, k, mask, scale: scale, n: n, i: i)
        let p = row.map { Foundation.exp($0 - lse[n * s.tq + i]) }
        var dp = [Double](repeating: 0, count: s.tk)
        for j in 0..<s.tk {
          let keep = keepFactor(s, key, rate: rate, n: n, i: i, j: j)
          var dot = 0.0
          for c in 0..<s.dv {
            dot += dout[(n * s.tq + i) * s.dv + c] * v[(n * s.tk + j) * s.dv + c]
            dvOut[(n * s.tk + j) * s.dv + c] += p[j] * keep * dout[(n * s.tq + i) * s.dv + c]
          }
          dp[j] = dot * keep
        }
        var total = 0.0
        for j in 0..<s.tk { total += p[j] * dp[j] }
        for j in 0..<s.tk {
          let ds = p[j] * (dp[j] - total) * scale
          for e in 0..<s.d {
            dq[(n * s.tq + i) * s.d + e] += ds * k[(n * s.tk + j) * s.d + e]
            dk[(n * s.tk + j) * s.d + e] += ds * q[(n * s.tq + i) * s.d + e]
          }
        }
      }
    }
    return [Kernels.make(dtype, t[0].shape, dq), Kernels.make(dtype, t[1].shape, dk), Kernels.make(dtype, t[2].shape, dvOut)]
  }
}
