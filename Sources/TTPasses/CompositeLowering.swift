// lower-composites — rewrites composite ops into primitives the code generator fuses:
//   softmax(x)            = e / sum(e),        e = exp(x - max(x))            (keepdims reductions)
//   log_softmax(x)        = (x - max(x)) - log(sum(exp(x - max(x))))
//   softmax_cross_entropy = -sum(labels * log_softmax(logits))              (dense labels only)
//   sigmoid_cross_entropy = max(x, 0) - x*z + log1p(exp(-|x|))
//   batch_norm_training   = mean and (biased) variance by reduce_mean over all axes but the last,
//                           then (x - mean) * (rsqrt(variance + epsilon) * scale) + offset
//   batch_norm_inference  = the same with the given mean and variance
//   sequence_mask(n)      = iota(last axis) < n[:, None...]  (i1), or where(that, 0, masked_value)
// These are the interpreter's own formulas, so results agree within rounding (f32, f64; f16 and
// bf16 composites are kept whole). Sparse-label
// softmax_cross_entropy is kept: an out-of-range label must be an error, not a silent zero.
// Runs in the codegen pipeline (Pipelines.codegen: ttfc run and train, compile --emit=thunks|llvm|asm),
// after inline and before canonicalization and fusion; -O1 and -O2 keep composites whole.

import TTIR

public enum CompositeLowering {
  public static let pass = Pass.perFunction(
    name: "lower-composites", summary: "expand softmax, log_softmax and the losses into fusible primitives"
  ) { function, context in
    var rewriter = Rewriter(function)
    var lowered = 0
    for id in function.body {
      let op = rewriter.prepare(id)
      let result = op.results[0]
      let type = rewriter.type(result)
      func emit(_ code: OpCode, _ operands: [ValueID], _ t: TensorType, _ attributes: [String: Attribute] = [:]) -> ValueID {
        rewriter.emit(code, operands, type: t, attributes: Attributes(attributes), location: op.location)
      }
      func splat(_ x: Double, _ dtype: DType) -> ValueID {
        rewriter.emitConstant(Tensor(dtype, shape: [], floats: [x]), type: .scalar(dtype), location: op.location)
      }
      /// (x - max(x), sum(exp(x - max(x)))) along `axis`, both keepdims-shaped where reduced.
      func shiftedAndSum(_ x: ValueID, axis: Int) -> (ValueID, ValueID, ValueID) {
        let t = rewriter.type(x)
        var reduced = t.dims
        reduced[axis] = .known(1)
        let keep: [String: Attribute] = ["axes": .ints([Int64(axis)]), "keepdims": .bool(true)]
        let m = emit(.reduceMax, [x], t.with(dims: reduced), keep)
        let d = emit(.sub, [x, m], t)
        let e = emit(.exp, [d], t)
        let s = emit(.reduceSum, [e], t.with(dims: reduced), keep)
        return (d, e, s)
      }
      // 16-bit floats keep the composite: each expanded step would round to 11 (or 8) bits where
      // the composite rounds once, and those types are not compiled to kernels yet anyway.
      if type.dtype == .f16 || type.dtype == .bf16 { rewriter.keep(id); continue }
      switch op.code {
      case .softmax, .logSoftmax:
        let x = op.operands[0]
        let rank = rewriter.type(x).rank
        let axis = { let a = op.attributes.int("axis") ?? -1; return a < 0 ? a + rank : a }()
        let (d, e, s) = shiftedAndSum(x, axis: axis)
        if op.code == .softmax {
          rewriter.replace(result, with: emit(.div, [e, s], type))
        } else {
          let l = emit(.log, [s], rewriter.type(s))
          rewriter.replace(result, with: emit(.sub, [d, l], type))
        }
      case .softmaxCrossEntropy where rewriter.type(op.operands[1]).dtype.isFloat:
        let (logits, labels) = (op.operands[0], op.operands[1])
        let t = rewriter.type(logits)
        let (d, _, s) = shiftedAndSum(logits, axis: t.rank - 1)
        let l = emit(.log, [s], rewriter.type(s))
        let logProbabilities = emit(.sub, [d, l], t)
        let weighted = emit(.mul, [labels, logProbabilities], t)
        let total = emit(.reduceSum, [weighted], type, ["axes": .ints([Int64(t.rank - 1)])])
        rewriter.replace(result, with: emit(.neg, [total], type))
      case .sequenceMask:
        // valid = iota(last axis) < lengths (as [B, 1] or [B, 1, 1, 1]); an i1 mask is valid
        // itself, a float one where(valid, 0, masked_value).
        let lengths = op.operands[0]
        let lengthType = rewriter.type(lengths)
        let positions = emit(.iota, [], TensorType(lengthType.dtype, type.dims), ["dim": .int(Int64(type.rank - 1))])
        let column = emit(.reshape, [lengths], TensorType(lengthType.dtype, [type.dims[0]] + Array(repeating: .known(1), count: type.rank - 1)))
        let valid = emit(.lt, [positions, column], TensorType(.i1, type.dims))
        if type.dtype == .i1 {
          rewriter.replace(result, with: valid)
        } else {
          let masked = splat(op.attributes.double("masked_value") ?? -1e9, type.dtype)
          rewriter.replace(result, with: emit(.where, [valid, splat(0, type.dtype), masked], type))
        }
      case .sigmoidCrossEntropy:
        let (x, z) = (op.operands[0], op.operands[1])
        let dtype = type.dtype
        let zero = splat(0, dtype)
        let positive = emit(.max, [x, zero], rewriter.type(x))
        let xz = emit(.mul, [x, z], type)
        let a = emit(.abs, [x], rewriter.type(x))
        let na = emit(.neg, [a], rewriter.type(x))
        let e = emit(.exp, [na], rewriter.type(x))
        let softplus = emit(.log1p, [e], rewriter.type(x))
        let difference = emit(.sub, [positive, xz], type)
        rewriter.replace(result, with: emit(.add, [difference, softplus], type))
      case .batchNormTraining, .batchNormInference:
        let (x, scale, offset) = (op.operands[0], op.operands[1], op.operands[2])
        let t = rewriter.type(x)
        let channel = rewriter.type(scale)
        let statistics: (mean: ValueID, variance: ValueID)
        if op.code == .batchNormTraining {
          // An empty batch is a named error (IR-specs/ops/vision.md): with every reduced dim
          // known, a zero count keeps the op for the interpreter to refuse; with symbolic dims,
          // the executable checks their product before each new binding runs.
          let reduced = Array(t.dims.dropLast())
          if reduced.contains(.known(0)) { rewriter.keep(id); continue }
          if reduced.contains(where: { $0.staticSize == nil }) {
            context.nonEmptyRequirements.append(NonEmptyRequirement(dims: reduced, op: op.code.rawValue))
          }
          let over: [String: Attribute] = ["axes": .ints((0..<(t.rank - 1)).map { Int64($0) })]
          let mean = emit(.reduceMean, [x], channel, over)
          let d = emit(.sub, [x, mean], t)
          let variance = emit(.reduceMean, [emit(.mul, [d, d], t)], channel, over)
          statistics = (mean, variance)
          rewriter.replace(op.results[1], with: mean)
          rewriter.replace(op.results[2], with: variance)
        } else {
          statistics = (op.operands[3], op.operands[4])
        }
        // y = (x - mean) * (rsqrt(variance + epsilon) * scale) + offset: the per-channel factor
        // once per channel, then one multiply-add per element (fused with what follows).
        let epsilon = splat(op.attributes.double("epsilon") ?? 0.001, channel.dtype)
        let factor = emit(.mul, [emit(.rsqrt, [emit(.add, [statistics.variance, epsilon], channel)], channel), scale], channel)
        let centered = emit(.sub, [x, statistics.mean], t)
        rewriter.replace(result, with: emit(.add, [emit(.mul, [centered, factor], t), offset], t))
      default:
        rewriter.keep(id)
        continue
      }
      lowered += 1
    }
    guard lowered > 0 else { return false }
    function = rewriter.finish()
    context.count("lower-composites", "lowered", by: lowered)
    return true
  }
}
