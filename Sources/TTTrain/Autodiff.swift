// Autodiff — reverse-mode differentiation as a graph transformation. From a function returning a
// scalar loss, `gradient(of:)` builds a new function returning (loss, d loss / d param for every
// parameter of the module, in declaration order). Calls are inlined first, so the transformation
// sees one flat function of primitives; then ops are visited in reverse and each op's gradient rule
// (GradientRules.swift, one rule per op) turns the adjoint of its result into adjoints of its
// operands. Adjoints of a value used several times are summed; operands that were broadcast get
// their adjoint summed back over the broadcast axes (`unbroadcast`). The result is ordinary TTIR:
// it prints, verifies, runs on the interpreter and goes through -O2 and fusion like any function.

import TTIR
import TTPasses

public enum AutodiffError: Error, CustomStringConvertible, Equatable {
  case unknownFunction(String)
  case notScalarLoss(String, TensorType)
  case notDifferentiable(op: String, reason: String)
  case invalid(String)
  public var description: String {
    switch self {
    case .unknownFunction(let f): return "no function named '@\(f)'"
    case .notScalarLoss(let f, let t): return "'@\(f)' must return one float scalar to be differentiated, it returns \(t)"
    case .notDifferentiable(let op, let reason): return "cannot differentiate '\(op)': \(reason)"
    case .invalid(let m): return m
    }
  }
}

public enum Autodiff {
  /// A module with a new function `@<name>.grad` returning (loss, gradients of every trained
  /// parameter). With `inputs`, the gradients of those inputs (by position) follow the
  /// parameters'; then the loss function's further results (new values of `state`), if any.
  /// Attention written in primitives is fused into `attention` ops first (unless
  /// `passOptions.fuseAttention` is off), so the backward pass gets `attention_grad`.
  public static func gradient(of module: Module, function name: String, inputs: [Int] = [],
                              passOptions: PassOptions = PassOptions()) throws(AutodiffError) -> Module {
    guard module.function(named: name) != nil else { throw .unknownFunction(name) }
    var flat = module
    _ = Inlining.pass.run(&flat, PassContext())
    _ = AttentionFusion.pass.run(&flat, PassContext(options: passOptions))
    let function = flat.function(named: name)!
    guard let lossType = function.resultTypes.first, lossType.rank == 0, lossType.dtype.isFloat,
          function.resultTypes.count == 1 || !module.stateParams.isEmpty else {
      throw .notScalarLoss(name, function.resultTypes.first ?? .scalar(.f32))
    }
    // Non-trained state (`state`) gets no gradient; a loss function of a module with state may
    // return more than the loss (the state's new values), passed through after the gradients.
    var builder = GradientBuilder(forward: function, params: module.trainedParams, inputs: inputs.map { function.arguments[$0] })
    let grad = try builder.build(name: name + ".grad")
    return try installing(grad, in: module, what: "the gradient (a bug in a gradient rule)")
  }

  /// `module` with `function` added (replacing one of the same name), verified: functions built by
  /// autodiff and the optimizer rewrites must be valid TTIR, or it is a bug in those builders.
  static func installing(_ function: Function, in module: Module, what: String) throws(AutodiffError) -> Module {
    var result = module
    result.functions.removeAll { $0.name == function.name }
    result.functions.append(function)
    if let first = Verifier.verify(result).first { throw .invalid("\(what) does not verify: \(first)") }
    return result
  }
}

/// Builds the gradient function: the forward ops, then the adjoint computation.
struct GradientBuilder {
  let forward: Function
  let params: [Param]
  /// Forward arguments whose gradients are returned too (embedding row inputs).
  let inputs: [ValueID]
  var g: Function
  /// Forward value (in `forward`) -> the same value in `g`.
  var primal: [ValueID: ValueID] = [:]
  /// Forward value -> its accumulated adjoint in `g`.
  var adjoint: [ValueID: ValueID] = [:]

  init(forward: Function, params: [Param], inputs: [ValueID] = []) {
    self.forward = forward
    self.params = params
    self.inputs = inputs
    g = Function(name: "", location: forward.location)
  }

  mutating func build(name: String) throws(AutodiffError) -> Function {
    g.name = name
    for a in forward.arguments { primal[a] = g.addArgument(name: forward[a].name, type: forward.type(of: a)) }
    for (k, v) in forward.values.enumerated() {
      if case .global(let p) = v.definition { primal[ValueID(k)] = g.globalValue(name: p, type: v.type) }
    }
    // Forward pass, copied.
    for id in forward.body {
      let op = forward[id]
      let new = g.append(op.code, op.operands.map { primal[$0]! }, resultTypes: op.results.map { forward.type(of: $0) },
                         resultNames: op.results.map { forward[$0].name }, attributes: op.attributes,
                         callee: op.callee, location: op.location, regions: op.regions)
      for (old, v) in zip(op.results, g[new].results) { primal[old] = v }
    }
    let loss = forward.returnValues[0]
    let lossType = forward.type(of: loss)
    adjoint[loss] = constant(1, lossType)
    // Backward pass.
    for id in forward.body.reversed() {
      let op = forward[id]
      if op.results.count > 1 {
        // Several results (batch_norm_training): one rule given every result's adjoint.
        let adjoints = op.results.map { forward.type(of: $0).dtype.isFloat ? adjoint[$0] : nil }
        guard adjoints.contains(where: { $0 != nil }) else { continue }
        switch op.code.info.differentiability {
        case .noGradient: continue
        case .notDifferentiable(let reason): throw .notDifferentiable(op: op.code.rawValue, reason: reason)
        case .differentiable: try GradientRules.applyMultiple(op, adjoints: adjoints, into: &self)
        }
        continue
      }
      guard op.results.count == 1, let gradient = adjoint[op.results[0]] else { continue }
      guard forward.type(of: op.results[0]).dtype.isFloat else { continue }
      // The op's differentiability fact (OpInfo) decides; GradientRules holds the rules.
      switch op.code.info.differentiability {
      case .noGradient: continue
      case .notDifferentiable(let reason): throw .notDifferentiable(op: op.code.rawValue, reason: reason)
      case .differentiable: try GradientRules.apply(op, result: op.results[0], adjoint: gradient, into: &self)
      }
    }
    // Outputs: the loss, then one gradient per parameter (zeros if the loss does not use it).
    var results = [primal[loss]!]
    var types = [lossType]
    for p in params {
      let global = forward.values.firstIndex { $0.definition == .global(p.name) }.map { ValueID($0) }
      if let global, let a = adjoint[global] { results.append(a) }
      else { results.append(constant(0, p.type)) }
      types.append(p.type)
    }
    for a in inputs {
      results.append(adjoint[a] ?? constant(0, forward.type(of: a)))
      types.append(forward.type(of: a))
    }
    for v in forward.returnValues.dropFirst() {
      results.append(primal[v]!)
      types.append(forward.type(of: v))
    }
    g.returnValues = results
    g.resultTypes = types
    return g
  }

  // MARK: helpers for the rules

  func type(_ v: ValueID) -> TensorType { g.type(of: v) }

  mutating func emit(_ code: OpCode, _ operands: [ValueID], _ type: TensorType, _ attributes: [String: Attribute] = [:]) -> ValueID {
    g.appendValue(code, operands, type: type, attributes: Attributes(attributes))
  }

  /// A splat constant of a static type, or a scalar broadcast to a symbolic one.
  mutating func constant(_ x: Double, _ t: TensorType) -> ValueID {
    let scalar = TensorType.scalar(t.dtype)
    let value = t.dtype.isFloat ? Tensor(t.dtype, shape: [], floats: [x]) : Tensor(t.dtype, shape: [], ints: [Int64(x)])
    let isStatic = t.isStatic
    let c = emit(.constant, [], isStatic ? t : scalar, ["value": .tensor(value)])
    return isStatic ? c : emit(.broadcastTo, [c], t)
  }

  /// Adds `gradient` to the adjoint of forward value `v` (after summing it back to v's shape).
  mutating func accumulate(_ v: ValueID, _ gradient: ValueID) {
    let target = forward.type(of: v)
    guard target.dtype.isFloat else { return }
    let fitted = unbroadcast(gradient, to: target)
    if let existing = adjoint[v] { adjoint[v] = emit(.add, [existing, fitted], target) }
    else { adjoint[v] = fitted }
  }

  /// Sums `gradient` over the axes along which a value of type `target` was broadcast.
  mutating func unbroadcast(_ gradient: ValueID, to target: TensorType) -> ValueID {
    let t = type(gradient)
    if t.dims == target.dims { return gradient }
    let offset = t.rank - target.rank
    var axes: [Int64] = (0..<offset).map { Int64($0) }
    for k in 0..<target.rank where target.dims[k] == .known(1) && t.dims[offset + k] != .known(1) {
      axes.append(Int64(offset + k))
    }
    var reducedDims: [Dim] = []
    for (k, d) in t.dims.enumerated() where !axes.contains(Int64(k)) { reducedDims.append(d) }
    let summed = axes.isEmpty ? gradient : emit(.reduceSum, [gradient], TensorType(t.dtype, reducedDims), ["axes": .ints(axes)])
    return type(summed).dims == target.dims ? summed : emit(.reshape, [summed], target.with(dtype: t.dtype))
  }

  /// Whether forward value `v` depends on a trained parameter or a differentiated input.
  func dependsOnTrained(_ v: ValueID) -> Bool {
    let trained = Set(params.map(\.name)), differentiated = Set(inputs)
    var stack = [v], seen = Set<ValueID>()
    while let value = stack.popLast() {
      guard seen.insert(value).inserted else { continue }
      if differentiated.contains(value) { return true }
      switch forward[value].definition {
      case .global(let name): if trained.contains(name) { return true }
      case .result(let op, _): stack += forward[op].operands
      case .argument: break
      }
    }
    return false
  }

  /// The primal (forward) value in `g` of a forward value.
  func x(_ v: ValueID) -> ValueID { primal[v]! }
}
