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
