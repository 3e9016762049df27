// GradientRules — the vector-Jacobian product of every differentiable op, one case per op: given
// the adjoint g of an op's result, the adjoints of its operands (GradientBuilder.accumulate sums
// them per value and undoes broadcasting). The formulas are tabled in IR-specs/training.md. Which ops
// pass no gradient (piecewise constant, integer-valued) and which cannot be differentiated yet
// (gather, reduce_prod) is each op's differentiability fact in TTIR/OpCode.swift.

import Foundation
import TTIR

enum GradientRules {
  static func apply(_ op: OpNode, result: ValueID, adjoint g: ValueID, into b: inout GradientBuilder) throws(AutodiffError) {
    let T = b.forward.type(of: result)
    let out = b.x(result)
    let ops = op.operands
    func x(_ i: Int) -> ValueID { b.x(ops[i]) }
    func tx(_ i: Int) -> TensorType { b.forward.type(of: ops[i]) }
    func c(_ v: Double, _ t: TensorType = .scalar(T.dtype)) -> ValueID { b.constant(v, t.with(dtype: T.dtype)) }
    func e(_ code: OpCode, _ operands: [ValueID], _ type: TensorType? = nil, _ attributes: [String: Attribute] = [:]) -> ValueID {
      b.emit(code, operands, type ?? T, attributes)
    }
    func bin(_ code: OpCode, _ l: ValueID, _ r: ValueID) -> ValueID {
        let dims = (try? ShapeRules.broadcast(b.type(l).dims, b.type(r).dims)) ?? T.dims
        return b.emit(code, [l, r], TensorType(b.type(l).dtype, dims))
    }
    func zerosLike(_ v: ValueID) -> ValueID { b.constant(0, b.type(v)) }

    switch op.code {
    case .add:
      b.accumulate(ops[0], g); b.accumulate(ops[1], g)
    case .sub:
      b.accumulate(ops[0], g); b.accumulate(ops[1], e(.neg, [g]))
    case .mul:
      b.accumulate(ops[0], bin(.mul, g, x(1))); b.accumulate(ops[1], bin(.mul, g, x(0)))
    case .div:
      b.accumulate(ops[0], bin(.div, g, x(1)))
      b.accumulate(ops[1], e(.neg, [bin(.div, bin(.mul, g, out), x(1))]))
    case .pow:
      // d/da a^b = b a^(b-1); d/db a^b = a^b log a.
      let bMinusOne = bin(.sub, x(1), c(1))
      b.accumulate(ops[0], bin(.mul, g, bin(.mul, x(1), bin(.pow, x(0), bMinusOne))))
      b.accumulate(ops[1], bin(.mul, bin(.mul, g, out), b.emit(.log, [x(0)], tx(0))))
    case .max, .min:
      // The gradient goes to the operand that was chosen (the first one on ties).
      let chose0 = b.emit(op.code == .max ? .ge : .le, [x(0), x(1)], TensorType(.i1, T.dims))
      let zero = c(0)
      b.accumulate(ops[0], b.emit(.where, [chose0, g, zero], T))
      b.accumulate(ops[1], b.emit(.where, [chose0, zero, g], T))
    case .neg:
      b.accumulate(ops[0], e(.neg, [g]))
    case .abs:
      b.accumulate(ops[0], e(.mul, [g, e(.sign, [x(0)])]))
    case .exp:
      b.accumulate(ops[0], e(.mul, [g, out]))
    case .log:
      b.accumulate(ops[0], e(.div, [g, x(0)]))
    case .log1p:
      b.accumulate(ops[0], e(.div, [g, bin(.add, x(0), c(1))]))
    case .sqrt:
      b.accumulate(ops[0], e(.div, [bin(.mul, g, c(0.5)), out]))
    case .rsqrt:
      // d/dx x^(-1/2) = -1/2 x^(-3/2) = -1/2 out^3.
      let cube = e(.mul, [e(.mul, [out, out]), out])
      b.accumulate(ops[0], e(.mul, [g, bin(.mul, cube, c(-0.5))]))
    case .tanh:
      b.accumulate(ops[0], e(.mul, [g, bin(.sub, c(1), e(.mul, [out, out]))]))
    case .sigmoid:
      b.accumulate(ops[0], e(.mul, [g, e(.mul, [out, bin(.sub, c(1), out)])]))
    case .relu:
      // relu(a) > 0 exactly when a > 0 (NaN and -0 included), so the mask is read from the
      // output: the pre-activation is then dead after the forward pass and a layer's bias add and
      // ReLU stay one GEMM epilogue (one kernel and one memory pass fewer per layer).
      let positive = b.emit(.gt, [out, c(0)], TensorType(.i1, T.dims))
      b.accumulate(ops[0], b.emit(.where, [positive, g, c(0)], T))
    case .erf:
      // d/dx erf(x) = 2/sqrt(pi) exp(-x^2).
      let gauss = e(.exp, [e(.neg, [e(.mul, [x(0), x(0)])])])
      b.accumulate(ops[0], e(.mul, [g, bin(.mul, gauss, c(2 / Double.pi.squareRoot()))]))
    case .gelu:
      let v = x(0)
      let derivative: ValueID
      if op.attributes.bool("approximate") ?? false {
        // y = 0.5 x (1 + t), t = tanh(k (x + a x^3)): y' = 0.5 (1 + t) + 0.5 x (1 - t^2) k (1 + 3 a x^2).
        let (k, a) = (0.7978845608028654, 0.044715)
        let x2 = e(.mul, [v, v])
        let inner = bin(.mul, bin(.add, v, bin(.mul, e(.mul, [x2, v]), c(a))), c(k))
        let t = e(.tanh, [inner])
        let left = bin(.mul, bin(.add, t, c(1)), c(0.5))
        let slope = bin(.mul, bin(.add, bin(.mul, x2, c(3 * a)), c(1)), c(k))
        let right = e(.mul, [bin(.mul, v, c(0.5)), e(.mul, [bin(.sub, c(1), e(.mul, [t, t])), slope])])
        derivative = e(.add, [left, right])
      } else {
        // y = x Phi(x): y' = Phi(x) + x phi(x), Phi(x) = (1 + erf(x/sqrt 2))/2, phi(x) = exp(-x^2/2)/sqrt(2 pi).
        let cdf = bin(.mul, bin(.add, e(.erf, [bin(.mul, v, c(1 / 2.0.squareRoot()))]), c(1)), c(0.5))
        let pdf = bin(.mul, e(.exp, [bin(.mul, e(.mul, [v, v]), c(-0.5))]), c(1 / (2 * Double.pi).squareRoot()))
        derivative = e(.add, [cdf, e(.mul, [v, pdf])])
      }
      b.accumulate(ops[0], e(.mul, [g, derivative]))
    case .softplus:
      // d/dx log(1 + e^x) = sigmoid(x).
      b.accumulate(ops[0], e(.mul, [g, e(.sigmoid, [x(0)])]))
    case .silu:
      // y = x s, s = sigmoid(x): y' = s + x s (1 - s) = s (1 + x (1 - s)).
      let s = e(.sigmoid, [x(0)])
      b.accumulate(ops[0], e(.mul, [g, e(.mul, [s, bin(.add, c(1), e(.mul, [x(0), bin(.sub, c(1), s)]))])]))
    case .sin:
      b.accumulate(ops[0], e(.mul, [g, e(.cos, [x(0)])]))
    case .cos:
      b.accumulate(ops[0], e(.neg, [e(.mul, [g, e(.sin, [x(0)])])]))
    case .select:
      let zero = zerosLike(g)
      b.accumulate(ops[1], b.emit(.select, [x(0), g, zero], T))
      b.accumulate(ops[2], b.emit(.select, [x(0), zero, g], T))
    case .where:
      let zero = c(0)
      b.accumulate(ops[1], b.emit(.where, [x(0), g, zero], T))
      b.accumulate(ops[2], b.emit(.where, [x(0), zero, g], T))
    case .cast:
      if tx(0).dtype.isFloat { b.accumulate(ops[0], b.emit(.cast, [g], tx(0))) }
    case .reduceSum, .reduceMean, .reduceMax, .reduceMin:
      let input = tx(0)
      let axes = (try? ShapeRules.reductionAxes(op.attributes, rank: input.rank)) ?? []
      let expanded = expand(g, over: axes, to: input, keepdims: op.attributes.bool("keepdims") ?? false, &b)
      switch op.code {
      case .reduceSum:
        b.accumulate(ops[0], expanded)
      case .reduceMean:
        b.accumulate(ops[0], b.emit(.div, [expanded, count(axes, of: input, &b)], input))
      default:
        // Split equally among the elements equal to the extremum (as JAX does).
        let extremum = expand(out, over: axes, to: input, keepdims: op.attributes.bool("keepdims") ?? false, &b)
        let hit = b.emit(.cast, [b.emit(.eq, [x(0), extremum], input.with(dtype: .i1))], input)
        let keepType = TensorType(input.dtype, input.dims.enumerated().map { axes.contains($0.offset) ? .known(1) : $0.element })
        let ties = b.emit(.reduceSum, [hit], keepType, ["axes": .ints(axes.map { Int64($0) }), "keepdims": .bool(true)])
        b.accumulate(ops[0], b.emit(.div, [b.emit(.mul, [expanded, hit], input), ties], input))
      }
    case .matmul:
      let ta = op.attributes.bool("transpose_a") ?? false, tb = op.attributes.bool("transpose_b") ?? false
      let (a, bb) = (x(0), x(1))
      let (da, db): (ValueID, ValueID)
      switch (ta, tb) {
      case (false, false): da = matmul(g, bb, false, true, &b); db = matmul(a, g, true, false, &b)
      case (true, false): da = matmul(bb, g, false, true, &b); db = matmul(a, g, false, false, &b)
      case (false, true): da = matmul(g, bb, false, false, &b); db = matmul(g, a, true, false, &b)
      case (true, true): da = matmul(bb, g, true, true, &b); db = matmul(g, a, true, true, &b)
      }
      b.accumulate(ops[0], da)
      b.accumulate(ops[1], db)
    case .transpose:
      let perm = op.attributes.ints("perm")!
      var inverse = [Int64](repeating: 0, count: perm.count)
      for (k, p) in perm.enumerated() { inverse[p] = Int64(k) }
      b.accumulate(ops[0], b.emit(.transpose, [g], tx(0), ["perm": .ints(inverse)]))
    case .reshape:
      b.accumulate(ops[0], b.emit(.reshape, [g], tx(0)))
    case .broadcastTo:
      b.accumulate(ops[0], g)
    case .slice:
      let input = tx(0)
      let axes = op.attributes.ints("axes")!, starts = op.attributes.ints("starts")!, limits = op.attributes.ints("limits")!
      guard (op.attributes.ints("strides") ?? []).allSatisfy({ $0 == 1 }) else {
        throw .notDifferentiable(op: "slice", reason: "strided slices are not differentiated yet")
      }
      var low = [Int64](repeating: 0, count: input.rank), high = low
      for (k, axis) in axes.enumerated() {
        let a = axis < 0 ? axis + input.rank : axis
        low[a] = Int64(starts[k]); high[a] = Int64(input.dims[a].staticSize! - limits[k])
      }
      b.accumulate(ops[0], b.emit(.pad, [g], input, ["low": .ints(low), "high": .ints(high)]))
    case .concat:
      let axis = { let a = op.attributes.int("axis")!; return a < 0 ? a + T.rank : a }()
      var offset = 0
      for (i, v) in ops.enumerated() {
        let n = tx(i).dims[axis].staticSize ?? 0
        let piece = ops.count == 1 ? g : b.emit(.slice, [g], tx(i), ["axes": .ints([Int64(axis)]), "starts": .ints([Int64(offset)]),
                                                                   "limits": .ints([Int64(offset + n)])])
        b.accumulate(v, piece)
        offset += n
      }
    case .pad:
      let input = tx(0)
      let low = op.attributes.ints("low")!
      let axes = (0..<input.rank).filter { input.dims[$0] != T.dims[$0] }
      let piece = axes.isEmpty ? g : b.emit(.slice, [g], input, [
        "axes": .ints(axes.map { Int64($0) }), "starts": .ints(axes.map { Int64(low[$0]) }),
        "limits": .ints(axes.map { Int64(low[$0] + input.dims[$0].staticSize!) })])
      b.accumulate(ops[0], piece)
    case .softmax, .logSoftmax:
      let axis = { let a = op.attributes.int("axis") ?? -1; return a < 0 ? a + T.rank : a }()
      var keepDims = T.dims
      keepDims[axis] = .known(1)
      let keepType = T.with(dims: keepDims)
      let sumAttributes: [String: Attribute] = ["axes": .ints([Int64(axis)]), "keepdims": .bool(true)]
      if op.code == .softmax {
        // dx = y (g - sum(g y)).
        let s = b.emit(.reduceSum, [e(.mul, [g, out])], keepType, sumAttributes)
        b.accumulate(ops[0], e(.mul, [out, bin(.sub, g, s)]))
      } else {
        // dx = g - exp(y) sum(g).
        let s = b.emit(.reduceSum, [g], keepType, sumAttributes)
        b.accumulate(ops[0], e(.sub, [g, bin(.mul, e(.exp, [out]), s)]))
      }
    case .softmaxCrossEntropy:
      let logitsType = tx(0)
      let classes = logitsType.rank - 1
      let p = b.emit(.softmax, [x(0)], logitsType)
      var keepDims = logitsType.dims
      keepDims[classes] = .known(1)
      let gExpanded = b.emit(.reshape, [g], logitsType.with(dims: keepDims))
      if tx(1).dtype.isFloat {
        let labelSum = b.emit(.reduceSum, [x(1)], logitsType.with(dims: keepDims), ["axes": .ints([Int64(classes)]), "keepdims": .bool(true)])
        let dlogits = bin(.sub, bin(.mul, p, labelSum), x(1))
        b.accumulate(ops[0], bin(.mul, dlogits, gExpanded))
        let logp = b.emit(.logSoftmax, [x(0)], logitsType)
        b.accumulate(ops[1], e(.neg, [bin(.mul, logp, gExpanded)], logitsType))
      } else {
        guard let depth = logitsType.dims[classes].staticSize else {
          throw .notDifferentiable(op: "softmax_cross_entropy", reason: "the class dimension must be static")
        }
        let onehot = b.emit(.oneHot, [x(1)], logitsType, ["depth": .int(Int64(depth))])
        b.accumulate(ops[0], bin(.mul, bin(.sub, p, onehot), gExpanded))
      }
    case .sigmoidCrossEntropy:
      let s = b.emit(.sigmoid, [x(0)], tx(0))
      b.accumulate(ops[0], bin(.mul, g, bin(.sub, s, x(1))))
      b.accumulate(ops[1], bin(.mul, g, b.emit(.neg, [x(0)], tx(0))))
    case .floor, .ceil, .sign, .iota, .constant, .oneHot, .argmax, .argmin, .eq, .ne, .lt, .le, .gt, .ge, .and, .or, .not,
         .reduceProd, .gather, .embeddingLookup, .embeddingLookupPooled, .call, .fusion:
      // No rule: the op's differentiability fact (OpInfo) says it passes no gradient or why it
      // cannot be differentiated. (Embedding lookups never reach here in a training step:
      // EmbeddingLowering replaces each by a row input whose gradient is summed per row.)
      if case .notDifferentiable(let reason) = op.code.info.differentiability {
        throw .notDifferentiable(op: op.code.rawValue, reason: reason)
      }
    }
  }

  /// g (the reduced shape) broadcast back over the reduced axes to `input`'s shape.
  static func expand(_ g: ValueID, over axes: [Int], to input: TensorType, keepdims: Bool, _ b: inout GradientBuilder) -> ValueID {
    let keepType = TensorType(b.type(g).dtype, input.dims.enumerated().map { axes.contains($0.offset) ? .known(1) : $0.element })
    let kept = keepdims ? g : b.emit(.reshape, [g], keepType)
    return b.emit(.broadcastTo, [kept], input.with(dtype: b.type(g).dtype))
  }

  /// The number of elements reduced over `axes`, as a scalar of input's float type (computed at
  /// run time when an axis is symbolic: the sum of ones over those axes).
  static func count(_ axes: [Int], of input: TensorType, _ b: inout GradientBuilder) -> ValueID {
    if axes.allSatisfy({ input.dims[$0].staticSize != nil }) {
      return b.constant(Double(axes.reduce(1) { $0 * input.dims[$1].staticSize! }), .scalar(input.dtype))
    }
    let ones = b.constant(1, input)
    let keepType = TensorType(input.dtype, input.dims.enumerated().map { axes.contains($0.offset) ? .known(1) : $0.element })
    return b.emit(.reduceSum, [ones], keepType, ["axes": .ints(axes.map { Int64($0) }), "keepdims": .bool(true)])
  }

  static func matmul(_ l: ValueID, _ r: ValueID, _ ta: Bool, _ tb: Bool, _ b: inout GradientBuilder) -> ValueID {
    let attributes: [String: Attribute] = ["transpose_a": .bool(ta), "transpose_b": .bool(tb)]
    let input = ShapeRuleInput(operands: [b.type(l), b.type(r)], attributes: Attributes(attributes), declared: [])
    let type = (try? ShapeRules.matmulRule(input))?.first ?? b.type(l)
    return b.emit(.matmul, [l, r], type, attributes)
  }
}
