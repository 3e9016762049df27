// Kernels — the meaning of each TTIR op on concrete tensors, written to be read: index arithmetic
// is spelled out, accumulation is sequential in row-major order and in Double (Int64 for integers).
// Result shapes come from the verified IR, with symbolic sizes already bound by the interpreter.
// The numerical conventions (NaN propagation, integer division by zero, empty reductions) are the
// ones documented in IR-specs/ops/; tests hold this file to them.

import Foundation
import TTIR

enum Kernels {
  static func apply(_ op: OpNode, _ x: [Tensor], result dtype: DType, shape: [Int]) throws(InterpreterError) -> Tensor {
    let name = op.code.rawValue
    guard let count = elementCount(shape), count <= maxInterpreterElements else {
      throw .tooLarge(op: name, elements: elementCount(shape) ?? Int.max)
    }
    let a = op.attributes
    switch op.code {
    case .constant:
      let value = op.constantValue!
      if value.shape == shape { return value }
      return broadcastTo(value, shape)
    case .iota:
      let dim = try axis(a.int("dim") ?? 0, shape.count)
      let strides = rowMajorStrides(shape)
      let values = (0..<count).map { Double(($0 / strides[dim]) % shape[dim]) }
      return make(dtype, shape, values)

    case .neg, .abs, .exp, .log, .log1p, .sqrt, .rsqrt, .tanh, .sigmoid, .relu, .gelu, .erf, .sin, .cos,
         .floor, .ceil, .sign, .not, .silu, .softplus:
      return try Elementwise.unary(op.code, x[0], approximateGelu: a.bool("approximate") ?? false)
    case .add, .sub, .mul, .div, .pow, .max, .min, .and, .or:
      return try Elementwise.binary(op.code, x[0], x[1], shape: shape)
    case .eq, .ne, .lt, .le, .gt, .ge:
      return try Elementwise.compare(op.code, x[0], x[1], shape: shape)
    case .select, .where:
      let c = broadcastTo(x[0], shape).int64s
      let t = broadcastTo(x[1], shape), f = broadcastTo(x[2], shape)
      switch (t.storage, f.storage) {
      case (.floats(let tv), .floats(let fv)):
        return Tensor(unchecked: dtype, shape: shape, storage: .floats((0..<count).map { c[$0] != 0 ? tv[$0] : fv[$0] }))
      case (.ints(let tv), .ints(let fv)):
        return Tensor(unchecked: dtype, shape: shape, storage: .ints((0..<count).map { c[$0] != 0 ? tv[$0] : fv[$0] }))
      default: throw .invalidModule("'\(op.code)' has branches of two element types")
      }
    case .cast:
      return cast(x[0], to: dtype)

    case .reduceSum, .reduceMean, .reduceMax, .reduceMin, .reduceProd:
      return try Reductions.reduce(op.code, x[0], axes: try reductionAxes(a, x[0].rank), keepdims: a.bool("keepdims") ?? false)
    case .argmax, .argmin:
      return try Reductions.argReduce(op.code, x[0], axis: try axis(a.int("axis") ?? 0, x[0].rank),
                                      keepdims: a.bool("keepdims") ?? false, dtype: dtype)
    case .matmul:
      return try Reductions.matmul(x[0], x[1], transposeA: a.bool("transpose_a") ?? false,
                               transposeB: a.bool("transpose_b") ?? false, shape: shape)
    case .softmax, .logSoftmax:
      return Reductions.softmax(x[0], axis: try axis(a.int("axis") ?? -1, x[0].rank), log: op.code == .logSoftmax)
    case .softmaxCrossEntropy:
      return try Reductions.softmaxCrossEntropy(x[0], x[1])
    case .sigmoidCrossEntropy:
      let z = broadcastTo(x[1], shape).doubles
      let l = broadcastTo(x[0], shape).doubles
      // max(l, 0) - l*z + log(1 + exp(-|l|)): stable for large |l| (TensorFlow's formula).
      return make(dtype, shape, (0..<count).map { i in
        Swift.max(l[i], 0) - l[i] * z[i] + Foundation.log1p(Foundation.exp(-Swift.abs(l[i])))
      })

    case .transpose:
      return Layout.transpose(x[0], perm: a.ints("perm") ?? [])
    case .reshape:
      return x[0].reshaped(shape)
    case .broadcastTo:
      return broadcastTo(x[0], shape)
    case .slice:
      return try Layout.slice(x[0], axes: a.ints("axes") ?? [], starts: a.ints("starts") ?? [],
                          limits: a.ints("limits") ?? [], strides: a.ints("strides"), shape: shape)
    case .concat:
      return Layout.concat(x, axis: try axis(a.int("axis") ?? 0, x[0].rank), shape: shape)
    case .pad:
      return Layout.pad(x[0], low: a.ints("low") ?? [], value: a.double("value") ?? 0, shape: shape)
    case .gather:
      return try Layout.gather(x[0], x[1], axis: try axis(a.int("axis") ?? 0, x[0].rank), shape: shape)
    case .scatterAdd:
      return try Layout.scatterAdd(x[0], x[1], x[2], axis: try axis(a.int("axis") ?? 0, x[0].rank))
    case .oneHot:
      let depth = a.int("depth") ?? 0
      let on = a.double("on_value") ?? 1, off = a.double("off_value") ?? 0
      let indices = x[0].int64s
      var values = [Double](repeating: off, count: count)
      for (i, index) in indices.enumerated() where index >= 0 && index < depth { values[i * depth + Int(index)] = on }
      return make(dtype, shape, values)
    case .conv2d:
      return try Vision.conv2d(x[0], x[1], a, dtype: dtype)
    case .conv2dBackpropInput:
      return try Vision.conv2dBackpropInput(x[0], x[1], a, shape: shape, dtype: dtype)
    case .conv2dBackpropFilter:
      return try Vision.conv2dBackpropFilter(x[0], x[1], a, shape: shape, dtype: dtype)
    case .maxPool:
      return try Vision.maxPool(x[0], a, dtype: dtype)
    case .maxPoolGrad:
      return try Vision.maxPoolGrad(x[0], x[1], a, dtype: dtype)
    case .avgPool:
      return try Vision.avgPool(x[0], a, dtype: dtype)
    case .avgPoolGrad:
      return try Vision.avgPoolGrad(x[0], a, shape: shape, dtype: dtype)
    case .batchNormInference:
      return Vision.batchNormInference(x, a, dtype: dtype)
    case .batchNormTraining, .layerNormGrad, .attention, .attentionGrad:
      throw .invalidModule("'\(op.code)' has several results; evaluate it with applyMultiple")
    case .layerNorm:
      return try Transformer.layerNorm(x, a, dtype: dtype)
    case .sequenceMask:
      return Transformer.sequenceMask(x[0], a, dtype: dtype, shape: shape)
    case .randomBits:
      return CounterRandom.randomBits(x[0], a, dtype: dtype, shape: shape)
    case .dropout:
      return CounterRandom.dropout(x[0], x[1], a, dtype: dtype)
    case .call, .fusion:
      throw .invalidModule("'\(op.code)' is evaluated by an Interpreter, which holds the callee or region")
    case .embeddingLookup, .embeddingLookupPooled:
      // They read table state, which only an Interpreter (or an executable) holds.
      throw .invalidModule("'\(op.code)' needs its table; evaluate it through an Interpreter")
    }
  }

  /// Evaluates an op with several results (`batch_norm_training`); `types` are the result types
  /// with symbols bound (`shapes`).
  static func applyMultiple(_ op: OpNode, _ x: [Tensor], dtypes: [DType], shapes: [[Int]]) throws(InterpreterError) -> [Tensor] {
    for shape in shapes {
      guard let count = elementCount(shape), count <= maxInterpreterElements else {
        throw .tooLarge(op: op.code.rawValue, elements: elementCount(shape) ?? Int.max)
      }
    }
    switch op.code {
    case .batchNormTraining: return try Vision.batchNormTraining(x, op.attributes, dtype: dtypes[0])
    case .layerNormGrad: return try Transformer.layerNormGrad(x, op.attributes, dtype: dtypes[0])
    case .attention: return Transformer.attention(x, op.attributes, dtype: dtypes[0])
    case .attentionGrad: return Transformer.attentionGrad(x, op.attributes, dtype: dtypes[0])
    default: throw .invalidModule("'\(op.code)' has \(shapes.count) results but one result")
    }
  }

  // MARK: shared helpers

  static func axis(_ value: Int, _ rank: Int) throws(InterpreterError) -> Int {
    do { return try ShapeRules.axis(value, rank: rank) } catch { throw .invalidModule("\(error)") }
  }
  static func reductionAxes(_ attributes: Attributes, _ rank: Int) throws(InterpreterError) -> [Int] {
    do { return try ShapeRules.reductionAxes(attributes, rank: rank) } catch { throw .invalidModule("\(error)") }
  }

  /// A tensor of `dtype` from doubles (integers converted by truncation, then wrapped).
  static func make(_ dtype: DType, _ shape: [Int], _ values: [Double]) -> Tensor {
    if dtype.isFloat { return Tensor(dtype, shape: shape, floats: values) }
    return Tensor(dtype, shape: shape, ints: values.map(integerFromDouble))
  }

  /// For each element of `outShape`, the flat index of the element of `inShape` it reads under
  /// numpy broadcasting (inShape right-aligned; size-1 dims repeat).
  static func broadcastIndices(from inShape: [Int], to outShape: [Int]) -> [Int] {
    let count = elementCount(outShape) ?? 0
    let offset = outShape.count - inShape.count
    let inStrides = rowMajorStrides(inShape)
    var strides = [Int](repeating: 0, count: outShape.count)
    for i in 0..<inShape.count where inShape[i] != 1 { strides[offset + i] = inStrides[i] }
    var indices = [Int](repeating: 0, count: count)
    Layout.forEachIndex(outShape) { flat, position in
      var source = 0
      for axis in 0..<outShape.count { source += position[axis] * strides[axis] }
      indices[flat] = source
    }
    return indices
  }

  static func broadcastTo(_ t: Tensor, _ shape: [Int]) -> Tensor {
    if t.shape == shape { return t }
    let indices = broadcastIndices(from: t.shape, to: shape)
    switch t.storage {
    case .floats(let v): return Tensor(unchecked: t.dtype, shape: shape, storage: .floats(indices.map { v[$0] }))
    case .ints(let v): return Tensor(unchecked: t.dtype, shape: shape, storage: .ints(indices.map { v[$0] }))
    }
  }

  /// Element type conversion: float->float rounds to nearest even; float->int truncates toward zero
  /// (saturating, NaN to 0) then wraps; anything->i1 is `x != 0`; int->float rounds.
  static func cast(_ t: Tensor, to dtype: DType) -> Tensor {
    if dtype == .i1 {
      switch t.storage {
      case .floats(let v): return Tensor(.i1, shape: t.shape, ints: v.map { $0 != 0 ? 1 : 0 })
      case .ints(let v): return Tensor(.i1, shape: t.shape, ints: v.map { $0 != 0 ? 1 : 0 })
      }
    }
    if dtype.isFloat, case .ints(let v) = t.storage, dtype != .f64 {
      // Integer to a float narrower than f64: one rounding to f32 (then, for a half type, to it),
      // not a rounding to f64 first, which can round a 64-bit integer a second time.
      return Tensor(dtype, shape: t.shape, floats: v.map { Double(Float($0)) })
    }
    if dtype.isFloat { return Tensor(dtype, shape: t.shape, floats: t.doubles) }
    return Tensor(dtype, shape: t.shape, ints: t.int64s)
  }
}
