// fold-batch-norm — the serving rewrite of TF-TRT and Grappler's `FoldBatchNorms`: an
// inference-mode batch norm after a convolution becomes the convolution with a rescaled filter
// plus a per-channel bias.
//
//   y = (conv(x, w) + b - mean) · k + offset,   k = scale / sqrt(variance + eps)
//     = conv(x, w · k) + ((b - mean) · k + offset)      (k broadcast over the filter's last axis)
//
// The folded filter and bias are written as IR ops on the original operands (`add`, `rsqrt`,
// `mul`, `sub`), so nothing here computes numbers: when the operands are constants (a frozen
// model), `constant-fold` evaluates them once at compile time; when they are `param`s or `state`s,
// they are a few ops on [C]- and filter-sized tensors per call (KH·KW·Cin·Cout multiplies against
// the convolution's N·OH·OW times as many). The pass therefore requires that the filter, the
// optional bias and all four batch-norm operands be constants or module globals (`param`, `state`):
// values that do not depend on the function's inputs. A statistic computed from the batch
// (`batch_norm_training`, or an inference norm fed by argument values) is left alone.
//
// Other conditions (each a must-not-fire case in Passes/fold-batch-norm/):
// - the batch norm's input is a `conv2d` result read only by it, or `add(conv2d, b)` with `b` of
//   shape [Cout] and both the conv and the add read only by the next op (folding a conv read
//   elsewhere would compute it twice);
// - f32 or f64 (half types would round the folded filter to the half type);
// - batch norm normalizes the last axis, which is conv2d's output channel axis (NHWC), so the
//   per-channel factor multiplies the filter's last (O of HWIO) axis for any `groups`.
//
// Not exact: the folded model rounds differently (w·k is rounded once to f32 before the sums).
// Like `lower-composites` it is excluded from the bitwise-identity checks; the tolerance test is
// in Tests/TTPassesTests/BatchNormFoldingTests.swift. It runs only when asked: `-p fold-batch-norm`
// or the `inference` pipeline (`ttfc opt --inference`), never in training's codegen pipeline.

import TTIR

public enum BatchNormFolding {
  public static let pass = Pass.perFunction(
    name: "fold-batch-norm",
    summary: "fold inference-mode batch norm on constants/parameters into the preceding conv2d's filter and a bias"
  ) { function, context in
    // Uses of every value (operands of body ops, plus returns).
    var uses: [ValueID: Int] = [:]
    for id in function.body { for v in function[id].operands { uses[v, default: 0] += 1 } }
    for v in function.returnValues { uses[v, default: 0] += 1 }

    func isFixed(_ v: ValueID) -> Bool {
      switch function[v].definition {
      case .global: return true
      case .result(let op, _): return function[op].code == .constant
      case .argument: return false
      }
    }
    func producer(_ v: ValueID) -> OpNode? {
      if case .result(let op, _) = function[v].definition { return function[op] }
      return nil
    }

    var rewriter = Rewriter(function)
    var folded = 0
    // The conv2d (and bias add) a fold replaced: read only by the folded norm, so dropped with it.
    var dropped = Set<OpID>()
    for id in function.body {
      let op = rewriter.prepare(id)
      guard op.code == .batchNormInference else { rewriter.keep(id); continue }
      // Keeps the norm when a guard below does not hold.
      defer { if !dropped.contains(id) { rewriter.keep(id) } }
      let type = function.type(of: op.results[0])
      guard type.dtype == .f32 || type.dtype == .f64 else { continue }
      let (input, scale, offset, mean, variance) = (op.operands[0], op.operands[1], op.operands[2], op.operands[3], op.operands[4])
      guard [scale, offset, mean, variance].allSatisfy(isFixed) else { continue }
      // conv2d, or add(conv2d, bias) with a [C] bias.
      var convValue = input
      var bias: ValueID? = nil
      if let add = producer(input), add.code == .add, uses[input] == 1 {
        let channels = type.dims.last!
        let candidates = [(add.operands[0], add.operands[1]), (add.operands[1], add.operands[0])]
        guard let (c, b) = candidates.first(where: { c, b in
          producer(c)?.code == .conv2d && isFixed(b) && function.type(of: b).dims == [channels]
            && function.type(of: c) == type
        }) else { continue }
        convValue = c; bias = b
      }
      guard let conv = producer(convValue), conv.code == .conv2d, uses[convValue] == 1,
            function.type(of: convValue) == type else { continue }
      let filter = conv.operands[1]
      guard isFixed(filter) else { continue }
      let normName = function[op.results[0]].name, convName = function[convValue].name

      // Emit the folded filter and bias right here (the conv's operands are all defined earlier).
      let channelType = function.type(of: scale)
      let scalar = TensorType.scalar(type.dtype)
      let eps = rewriter.emitConstant(.scalar(op.attributes.double("epsilon") ?? 0.001, type.dtype), type: scalar)
      let shifted = rewriter.emit(.add, [variance, eps], type: channelType)
      let r = rewriter.emit(.rsqrt, [shifted], type: channelType)
      let k = rewriter.emit(.mul, [scale, r], type: channelType)
      let filterType = function.type(of: filter)
      let newFilter = rewriter.emit(.mul, [filter, k], type: filterType, name: "\(convName).filter")
      let meanK = rewriter.emit(.mul, [mean, k], type: channelType)
      var newBias = rewriter.emit(.sub, [offset, meanK], type: channelType, name: bias == nil ? "\(normName).bias" : nil)
      if let bias {
        let biasK = rewriter.emit(.mul, [bias, k], type: channelType)
        newBias = rewriter.emit(.add, [newBias, biasK], type: channelType, name: "\(normName).bias")
      }
      let newConv = rewriter.emit(.conv2d, [conv.operands[0], newFilter], type: type,
                                  attributes: conv.attributes, name: "\(convName).folded", location: conv.location)
      let result = rewriter.emit(.add, [newConv, newBias], type: type, name: "\(normName).folded", location: op.location)
      rewriter.replace(op.results[0], with: result)
      dropped.insert(id)
      if case .result(let c, _) = function[convValue].definition { dropped.insert(c) }
      if convValue != input, case .result(let a, _) = function[input].definition { dropped.insert(a) }
      folded += 1
    }
    guard folded > 0 else { return false }
    function = rewriter.finish()
    function.body.removeAll { dropped.contains($0) }
    context.count("fold-batch-norm", "folded", by: folded)
    return true
  }
}
