// GradientRules — the vector-Jacobian product of every differentiable op, one case per op: given
// the adjoint g of an op's result, the adjoints of its operands (GradientBuilder.accumulate sums
// them per value and undoes broadcasting). The formulas are tabled in IR-specs/training.md. Which ops
// pass no gradient (piecewise constant, integer-valued) and which cannot be differentiated yet
// (reduce_prod) is each op's differentiability fact in TTIR/OpCode.swift.

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
      let strides = op.attributes.ints("strides") ?? [Int](repeating: 1, count: axes.count)
      var low = [Int64](repeating: 0, count: input.rank), high = low
      var spread = g
      // Symbolic axes are restored last, by a scatter-add of their rows into zeros (a pad to a
      // symbolic size has no static amount); until then they keep the slice's static size.
      var symbolic: [(axis: Int, rows: [Int64])] = []
      var staticDims = input.dims
      for (k, axis) in axes.enumerated() {
        let a = axis < 0 ? axis + input.rank : axis
        guard let size = input.dims[a].staticSize else {
          staticDims[a] = T.dims[a]
          symbolic.append((a, (0..<(T.dims[a].staticSize ?? 0)).map { Int64(starts[k] + $0 * strides[k]) }))
          continue
        }
        if strides[k] == 1 {
          low[a] = Int64(starts[k]); high[a] = Int64(size - limits[k])
        } else {
          // Strided: each of the n gradient rows is followed by stride - 1 zero rows (reshape to
          // [.., n, 1, ..], pad the new axis to the stride, merge), cut to the input rows from the
          // start on, then padded at both ends to the input's size.
          spread = spreadStrided(spread, axis: a, stride: strides[k], start: starts[k], size: size, &b)
        }
      }
      var padded = low.allSatisfy({ $0 == 0 }) && high.allSatisfy({ $0 == 0 }) ? spread
        : b.emit(.pad, [spread], input.with(dims: staticDims), ["low": .ints(low), "high": .ints(high)])
      for (a, rows) in symbolic {
        var dims = b.type(padded).dims
        dims[a] = input.dims[a]
        let target = input.with(dims: dims)
        let indices = b.g.appendValue(.constant, [], type: TensorType(.i64, [.known(rows.count)]),
                                      attributes: Attributes(["value": .tensor(Tensor(.i64, shape: [rows.count], ints: rows))]))
        padded = b.emit(.scatterAdd, [b.constant(0, target), indices, padded], target, ["axis": .int(Int64(a))])
      }
      b.accumulate(ops[0], padded)
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
    case .gather:
      // The adjoint of a gather is a scatter-add of g into zeros of the table's type: a row read
      // k times receives the sum of its k adjoints. Indices are integers: no gradient.
      let table = tx(0)
      let attributes: [String: Attribute] = ["axis": .int(Int64(op.attributes.int("axis") ?? 0))]
      b.accumulate(ops[0], b.emit(.scatterAdd, [b.constant(0, table), x(1), g], table, attributes))
    case .scatterAdd:
      // out = operand + scatter(updates): d operand = g, d updates = gather(g, indices).
      let attributes: [String: Attribute] = ["axis": .int(Int64(op.attributes.int("axis") ?? 0))]
      b.accumulate(ops[0], g)
      b.accumulate(ops[2], b.emit(.gather, [g, x(1)], tx(2), attributes))
    case .sigmoidCrossEntropy:
      let s = b.emit(.sigmoid, [x(0)], tx(0))
      b.accumulate(ops[0], bin(.mul, g, bin(.sub, s, x(1))))
      b.accumulate(ops[1], bin(.mul, g, b.emit(.neg, [x(0)], tx(0))))
    case .conv2d:
      b.accumulate(ops[0], b.emit(.conv2dBackpropInput, [g, x(1)], tx(0), op.attributes.storage))
      b.accumulate(ops[1], b.emit(.conv2dBackpropFilter, [x(0), g], tx(1), op.attributes.storage))
    case .maxPool:
      b.accumulate(ops[0], b.emit(.maxPoolGrad, [x(0), g], tx(0), op.attributes.storage))
    case .avgPool:
      b.accumulate(ops[0], b.emit(.avgPoolGrad, [g], tx(0), op.attributes.storage))
    case .batchNormInference:
      // y = (x - mean) r scale + offset with r = (variance + epsilon)^(-1/2), per channel (last axis).
      let (scale, mean, variance) = (x(1), x(3), x(4))
      let r = e(.rsqrt, [bin(.add, variance, c(op.attributes.double("epsilon") ?? 0.001))], tx(4))
      let centered = bin(.sub, x(0), mean)
      let dx = bin(.mul, g, bin(.mul, scale, r))
      b.accumulate(ops[0], dx)
      b.accumulate(ops[1], bin(.mul, bin(.mul, g, centered), r))
      b.accumulate(ops[2], g)
      b.accumulate(ops[3], e(.neg, [dx]))
      // d/dvariance of r = -r^3 / 2.
      let r3 = bin(.mul, bin(.mul, r, r), r)
      b.accumulate(ops[4], bin(.mul, bin(.mul, g, centered), bin(.mul, bin(.mul, scale, r3), c(-0.5))))
    case .dropout:
      // The backward pass regenerates the mask: the same op (seed, stream, step) on g keeps and
      // scales exactly the elements the forward kept (IR-specs/ops/random.md).
      b.accumulate(ops[0], b.emit(.dropout, [g, x(1)], T, op.attributes.storage))
    case .layerNorm:
      // One layer_norm_grad op gives all three adjoints (fused per row when compiled).
      let (input, channel) = (tx(0), tx(1))
      let gradOp = b.g.append(.layerNormGrad, [x(0), x(1), g], resultTypes: [input, channel, channel],
                              attributes: Attributes(["epsilon": .float(op.attributes.double("epsilon") ?? 1e-5)]))
      let results = b.g[gradOp].results
      b.accumulate(ops[0], results[0])
      b.accumulate(ops[1], results[1])
      b.accumulate(ops[2], results[2])
    case .batchNormTraining, .layerNormGrad, .attention, .attentionGrad:
      throw .invalid("\(op.code) has several results; its rule is GradientRules.applyMultiple")
    case .conv2dBackpropInput, .conv2dBackpropFilter, .maxPoolGrad, .avgPoolGrad,
         .floor, .ceil, .sign, .iota, .randomBits, .sequenceMask, .constant, .oneHot, .argmax, .argmin, .eq, .ne, .lt, .le, .gt, .ge, .and, .or, .not,
         .reduceProd, .embeddingLookup, .embeddingLookupPooled, .call, .fusion:
      // No rule: the op's differentiability fact (OpInfo) says it passes no gradient or why it
      // cannot be differentiated. (Embedding lookups never reach here in a training step:
      // EmbeddingLowering replaces each by a row input whose gradient is summed per row.)
      if case .notDifferentiable(let reason) = op.code.info.differentiability {
        throw .notDifferentiable(op: op.code.rawValue, reason: reason)
      }
    }
  }

  /// The vector-Jacobian product of an op with several results, given the adjoint of each result
  /// (nil: the loss does not depend on it).
  static func applyMultiple(_ op: OpNode, adjoints: [ValueID?], into b: inout GradientBuilder) throws(AutodiffError) {
    switch op.code {
    case .attention:
      // One attention_grad op recomputes the probabilities from q, k, the mask and lse, tile by
      // tile (TTRuntime/AttentionKernels.swift), and gives dq, dk and dv. The mask and lse are
      // not differentiated: a mask that depends on a trained parameter, or a loss that reads
      // lse, is a named error rather than a silently missing gradient.
      if adjoints[1] != nil {
        throw .notDifferentiable(op: "attention", reason: "its log-sum-exp result (lse) is not differentiated; use the unfused softmax")
      }
      guard let g = adjoints[0] else { return }
      if b.dependsOnTrained(op.operands[3]) {
        throw .notDifferentiable(op: "attention", reason: "its mask depends on a trained parameter, and the mask gets no gradient")
      }
      let types = op.operands[0...2].map { b.forward.type(of: $0) }
      let operands = op.operands.map { b.x($0) } + [b.x(op.results[0]), b.x(op.results[1]), g]
      let gradOp = b.g.append(.attentionGrad, operands, resultTypes: types, attributes: op.attributes)
      for (k, result) in b.g[gradOp].results.enumerated() { b.accumulate(op.operands[k], result) }
    case .batchNormTraining:
      // y = xhat scale + offset, xhat = (x - mean) r, r = (variance + epsilon)^(-1/2), mean and
      // (biased) variance over the M elements of each channel. With gy, gm, gv the adjoints of y,
      // mean and variance:
      //   dx = scale r (gy - mean(gy) - xhat mean(gy xhat)) + gm / M + gv 2 (x - mean) / M
      //   dscale = sum(gy xhat), doffset = sum(gy).
      let input = b.forward.type(of: op.operands[0])
      let channel = b.forward.type(of: op.results[1])
      let (x, scale) = (b.x(op.operands[0]), b.x(op.operands[1]))
      let (mean, variance) = (b.x(op.results[1]), b.x(op.results[2]))
      let axes = Array(0..<(input.rank - 1))
      let axesAttribute: [String: Attribute] = ["axes": .ints(axes.map { Int64($0) })]
      let epsilon = b.constant(op.attributes.double("epsilon") ?? 0.001, .scalar(input.dtype))
      let r = b.emit(.rsqrt, [b.emit(.add, [variance, epsilon], channel)], channel)
      let centered = b.emit(.sub, [x, mean], input)
      let xhat = b.emit(.mul, [centered, r], input)
      var dx: ValueID? = nil
      func add(_ term: ValueID, _ b: inout GradientBuilder) { dx = dx.map { b.emit(.add, [$0, term], input) } ?? term }
      if let gy = adjoints[0] {
        let meanG = b.emit(.reduceMean, [gy], channel, axesAttribute)
        let meanGX = b.emit(.reduceMean, [b.emit(.mul, [gy, xhat], input)], channel, axesAttribute)
        let inner = b.emit(.sub, [b.emit(.sub, [gy, meanG], input), b.emit(.mul, [xhat, meanGX], input)], input)
        add(b.emit(.mul, [inner, b.emit(.mul, [scale, r], channel)], input), &b)
        b.accumulate(op.operands[1], b.emit(.mul, [gy, xhat], input))
        b.accumulate(op.operands[2], gy)
      }
      let m = count(axes, of: input, &b)
      if let gm = adjoints[1] {
        let dims = (try? ShapeRules.broadcast(channel.dims, b.type(m).dims)) ?? channel.dims
        add(b.emit(.broadcastTo, [b.emit(.div, [gm, m], input.with(dims: dims))], input), &b)
      }
      if let gv = adjoints[2] {
        let twice = b.emit(.mul, [centered, b.constant(2, .scalar(input.dtype))], input)
        let scaled = b.emit(.mul, [twice, gv], input)
        add(b.emit(.div, [scaled, m], input), &b)
      }
      if let dx { b.accumulate(op.operands[0], dx) }
    default:
      throw .invalid("'\(op.code)' has \(op.results.count) results and no gradient rule for them")
    }
  }

  /// The gradient `g` of a slice with stride `stride` > 1 along `axis` spread back over that
  /// axis of the input (`size` rows): row k of g lands on row start + k * stride, zeros elsewhere.
  static func spreadStrided(_ g: ValueID, axis: Int, stride: Int, start: Int, size: Int, _ b: inout GradientBuilder) -> ValueID {
    let t = b.type(g)
    let n = t.dims[axis].staticSize!
    var expanded = t.dims
    expanded.insert(.known(1), at: axis + 1)
    var low = [Int64](repeating: 0, count: t.rank + 1), high = low
    high[axis + 1] = Int64(stride - 1)
    var spreadDims = expanded
    spreadDims[axis + 1] = .known(stride)
    let column = b.emit(.reshape, [g], t.with(dims: expanded))
    let spread = b.emit(.pad, [column], t.with(dims: spreadDims), ["low": .ints(low), "high": .ints(high)])
    var merged = t.dims
    merged[axis] = .known(n * stride)
    var rows = b.emit(.reshape, [spread], t.with(dims: merged))
    // Rows from `start` on: n * stride may run past the input's end by up to stride - 1 zero rows.
    let kept = Swift.min(n * stride, size - start)
    if kept < n * stride {
      var keptDims = merged
      keptDims[axis] = .known(kept)
      rows = b.emit(.slice, [rows], t.with(dims: keptDims), ["axes": .ints([Int64(axis)]), "starts": .ints([0]), "limits": .ints([Int64(kept)])])
    }
    var lowPad = [Int64](repeating: 0, count: t.rank), highPad = lowPad
    lowPad[axis] = Int64(start)
    highPad[axis] = Int64(size - start - kept)
    var full = merged
    full[axis] = .known(size)
    return b.emit(.pad, [rows], t.with(dims: full), ["low": .ints(lowPad), "high": .ints(highPad)])
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
