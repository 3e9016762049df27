// Optimizers as graph rewrites: the update of every parameter is written as TTIR ops appended to
// the gradient function, so the whole training step (forward, backward, update) is one function
// that -O2 fuses: each parameter's update becomes one elementwise kernel reading the parameter,
// its gradient and its slots. Formulas (IR-specs/training.md), with g the (clipped) gradient,
// lr the learning rate fed per step, t the 1-based step number:
//   sgd        p -= lr g
//   momentum   v = mu v + g;            p -= lr v                      (nesterov: p -= lr (g + mu v))
//   adagrad    a += g^2;                p -= lr g / (sqrt(a) + eps)     (a starts at 0.1)
//   rmsprop    s = rho s + (1-rho) g^2; p -= lr g / (sqrt(s) + eps)
//   adam       m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2
//              p -= a m / (sqrt(v) + e),  a = lr sqrt(1 - b2^t) / (1 - b1^t),  e = eps sqrt(1 - b2^t)
//              (= lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps) exactly in real arithmetic; the
//              bias corrections move into two per-step scalars, so each element costs one sqrt and
//              one divide instead of three divides and a sqrt: the divider bounds this loop)
//   adamw      adam, then p -= lr wd p (decoupled weight decay, applied to the pre-update p)
// Global-norm clipping: g *= c / max(c, sqrt(sum over all params of sum(g^2))).

import TTIR
import TTPasses

/// A dense optimizer and its hyper-parameters; the update is compiled into the training step
/// (formulas in IR-specs/training.md). Only the fields of the chosen kind matter.
public struct OptimizerConfig: Sendable, Equatable {
  /// The optimizer, by its `ttfc train --optimizer` name.
  public enum Kind: String, CaseIterable, Sendable { case sgd, momentum, nesterov, adagrad, rmsprop, adam, adamw }
  public var kind: Kind
  /// Momentum and Nesterov: the velocity's decay.
  public var momentum = 0.9
  /// Adam and AdamW: the decay of the first and second moments.
  public var beta1 = 0.9
  public var beta2 = 0.999
  /// RMSProp: the decay of the mean square.
  public var rho = 0.9
  /// Added to the denominator (1e-7 for Adagrad and RMSProp, 1e-8 otherwise).
  public var epsilon = 1e-8
  /// AdamW: decoupled weight decay.
  public var weightDecay = 1e-4
  /// Adagrad: the accumulator's starting value.
  public var initialAccumulator = 0.1
  /// Clip gradients to this global L2 norm (nil: no clipping).
  public var clipNorm: Double? = nil

  /// `kind` with its default hyper-parameters.
  public init(_ kind: Kind) {
    self.kind = kind
    if kind == .adagrad || kind == .rmsprop { epsilon = 1e-7 }
  }

  /// The optimizer's slots per parameter, with their initial value.
  public var slots: [(name: String, initial: Double)] {
    switch kind {
    case .sgd: return []
    case .momentum, .nesterov: return [("velocity", 0)]
    case .adagrad: return [("accumulator", initialAccumulator)]
    case .rmsprop: return [("mean_square", 0)]
    case .adam, .adamw: return [("m", 0), ("v", 0)]
    }
  }
}

/// The training step as a TTIR function `@<loss>.train_step`:
///   arguments: the loss function's inputs, %lr : f32[], %step : f32[] (1-based), every parameter,
///              then every slot (for each parameter, its slots in OptimizerConfig.slots order)
///   results:   the loss, the updated parameters, the updated slots (same order)
public enum TrainStep {
  public static func slotName(_ slot: String, of param: String) -> String { "\(slot).\(param)" }

  /// The step of `loss` (whose embedding lookups `EmbeddingLowering` has already turned into row
  /// inputs `rowInputs`): `(inputs..., lr, step, params..., slots...) -> (loss, params'...,
  /// slots'..., row gradients...)`. `params` are all the module's parameters, `state` included
  /// (its new value is the loss function's matching extra result); slots are the trained
  /// parameters' only.
  ///
  /// With `mixedPrecision`, the loss function is first inlined and rewritten by the `amp` pass
  /// (its context's `ampType` is the half type, and its `ampExplanations` collect the
  /// decisions); the step then takes one more argument after the slots, `%loss_scale`, and
  /// returns one more result after the row gradients, `%finite` (1 or 0 in the loss's type):
  /// the gradient is taken of loss x loss_scale and multiplied by 1 / loss_scale, and when the
  /// loss or any gradient is not finite the step returns the parameters and slots unchanged
  /// (each update is a `select` on `%finite`), so a loss-scale overflow skips exactly that update.
  public static func build(_ module: Module, loss: String, optimizer: OptimizerConfig, rowInputs: [Int] = [],
                           mixedPrecision: PassContext? = nil) throws(AutodiffError) -> Module {
    guard let lossFunction = module.function(named: loss) else { throw .unknownFunction(loss) }
    let states = module.stateParams
    if !states.isEmpty {
      let expected = states.map { "'@\($0.name)' \($0.type)" }.joined(separator: ", ")
      guard lossFunction.resultTypes.count == 1 + states.count,
            zip(lossFunction.resultTypes.dropFirst(), states).allSatisfy({ $0.0 == $0.1.type }) else {
        throw .invalid("'@\(loss)' must return the loss and then the new value of every state, in declaration order (\(expected)); it returns \(lossFunction.resultTypes.map(\.description).joined(separator: ", "))")
      }
    }
    var source = module
    if let context = mixedPrecision {
      _ = Inlining.pass.run(&source, PassContext())
      guard let index = source.functions.firstIndex(where: { $0.name == loss }) else { throw .unknownFunction(loss) }
      var function = source.functions[index]
      AutomaticMixedPrecision.rewrite(&function, context: context)
      // The scaled loss: loss x %loss_scale, the function's last argument (the states' new
      // values, if any, follow unscaled).
      if function.resultTypes.count == 1 + states.count, function.resultTypes[0].rank == 0 {
        let type = function.resultTypes[0]
        let scale = function.addArgument(name: "loss_scale", type: type)
        function.returnValues[0] = function.appendValue(.mul, [function.returnValues[0], scale], type: type)
      }
      source.functions[index] = function
    }
    let withGrad = try Autodiff.gradient(of: source, function: loss, inputs: rowInputs)
    let grad = withGrad.function(named: loss + ".grad")!
    let floatType = grad.resultTypes[0].dtype
    var step = Function(name: loss + ".train_step", location: lossFunction.location)
    var map: [ValueID: ValueID] = [:]
    let scaled = mixedPrecision != nil
    for a in grad.arguments.dropLast(scaled ? 1 : 0) { map[a] = step.addArgument(name: grad[a].name, type: grad.type(of: a)) }
    let (lr, t, paramArguments, slotArguments) = addUpdateArguments(to: &step, module: module, optimizer: optimizer, floatType: floatType)
    let lossScale = scaled ? step.addArgument(name: "loss_scale", type: .scalar(floatType)) : nil
    if let lossScale { map[grad.arguments.last!] = lossScale }
    copyBody(of: grad, into: &step, map: &map, paramArguments: paramArguments)
    var b = UpdateBuilder(function: step, dtype: floatType)
    // grad returns (loss, trained-parameter gradients, row gradients, new state values).
    let newStates = grad.returnValues.suffix(states.count).map { map[$0]! }
    var rowGradients = grad.returnValues.dropLast(states.count).suffix(rowInputs.count).map { map[$0]! }
    var gradients = grad.returnValues.dropFirst().dropLast(rowInputs.count + states.count).map { map[$0]! }
    var reportedLoss = map[grad.returnValues[0]]!
    var finite: ValueID? = nil
    if let lossScale {
      // Unscale (1 / loss_scale, in each gradient's type), then test everything for finiteness:
      // max |x| over the loss and every gradient is NaN or inf exactly when one of them is
      // (reduce_max propagates NaN), and `lt inf` is false for both.
      let scalar = TensorType.scalar(floatType)
      reportedLoss = b.emit(.div, [reportedLoss, lossScale], scalar)
      let inverse = b.emit(.div, [b.scalar(1), lossScale], scalar)
      func unscale(_ g: ValueID, _ b: inout UpdateBuilder) -> ValueID {
        let dtype = b.function.type(of: g).dtype
        guard dtype.isFloat else { return g }
        return b.op(.mul, g, dtype == floatType ? inverse : b.emit(.cast, [inverse], .scalar(dtype)))
      }
      gradients = gradients.map { unscale($0, &b) }
      rowGradients = rowGradients.map { unscale($0, &b) }
      var largest = b.emit(.abs, [reportedLoss], scalar)
      for g in gradients + rowGradients where b.function.type(of: g).dtype.isFloat {
        let dtype = b.function.type(of: g).dtype
        var m = b.emit(.reduceMax, [b.emit(.abs, [g], b.function.type(of: g))], .scalar(dtype))
        if dtype != floatType { m = b.emit(.cast, [m], scalar) }
        largest = b.emit(.max, [largest, m], scalar)
      }
      finite = b.emit(.lt, [largest, b.scalar(.infinity)], .scalar(.i1))
    }
    let (newParams, newSlots) = appendUpdates(&b, module: module, optimizer: optimizer, gradients: gradients, params: paramArguments,
                                              slots: slotArguments, newStates: newStates, lr: lr, step: t, floatType: floatType, finite: finite)
    step = b.function
    step.returnValues = [reportedLoss] + newParams + newSlots + rowGradients
    if let finite { step.returnValues.append(step.appendValue(.cast, [finite], type: .scalar(floatType))) }
    step.resultTypes = step.returnValues.map { step.type(of: $0) }
    return try Autodiff.installing(step, in: module, what: "the training step")
  }

  /// The training step in two functions, for data-parallel training (the gradients are summed
  /// over the ranks between them):
  ///   `@<loss>.grad_step(inputs..., rows..., params...) -> (loss, gradients..., row gradients...)`
  ///   `@<loss>.apply_step(gradients..., loss, lr, step, params..., slots...) -> (loss, params'..., slots'...)`
  /// with one gradient per trained parameter (OptimizerConfig's order) and the update exactly as
  /// `build` appends it (clipping included, on the summed gradient). `apply_step` passes the loss
  /// through, so its results line up with `train_step`'s. Modules with `state` parameters are
  /// refused (their new values would be per-rank statistics).
  public static func buildSplit(_ module: Module, loss: String, optimizer: OptimizerConfig,
                                rowInputs: [Int] = []) throws(AutodiffError) -> Module {
    guard module.function(named: loss) != nil else { throw .unknownFunction(loss) }
    guard module.stateParams.isEmpty else {
      throw .invalid("distributed training does not support state parameters (\(module.stateParams.map { "'@\($0.name)'" }.joined(separator: ", ")): their new values are statistics of each rank's examples)")
    }
    let withGrad = try Autodiff.gradient(of: module, function: loss, inputs: rowInputs)
    let grad = withGrad.function(named: loss + ".grad")!
    let floatType = grad.resultTypes[0].dtype
    var forward = Function(name: loss + ".grad_step", location: grad.location)
    var map: [ValueID: ValueID] = [:]
    for a in grad.arguments { map[a] = forward.addArgument(name: grad[a].name, type: grad.type(of: a)) }
    var paramArguments: [String: ValueID] = [:]
    for p in module.params { paramArguments[p.name] = forward.addArgument(name: p.name, type: p.type) }
    copyBody(of: grad, into: &forward, map: &map, paramArguments: paramArguments)
    forward.returnValues = grad.returnValues.map { map[$0]! }
    forward.resultTypes = forward.returnValues.map { forward.type(of: $0) }
    let gradientTypes = Array(grad.resultTypes.dropFirst().prefix(grad.resultTypes.count - 1 - rowInputs.count))
    var apply = Function(name: loss + ".apply_step", location: grad.location)
    let gradients = gradientTypes.enumerated().map { apply.addArgument(name: "grad.\($0.offset)", type: $0.element) }
    let lossIn = apply.addArgument(name: "loss", type: .scalar(floatType))
    let (lr, t, applyParams, slotArguments) = addUpdateArguments(to: &apply, module: module, optimizer: optimizer, floatType: floatType)
    var b = UpdateBuilder(function: apply, dtype: floatType)
    let (newParams, newSlots) = appendUpdates(&b, module: module, optimizer: optimizer, gradients: gradients, params: applyParams,
                                              slots: slotArguments, newStates: [], lr: lr, step: t, floatType: floatType, finite: nil)
    apply = b.function
    apply.returnValues = [lossIn] + newParams + newSlots
    apply.resultTypes = apply.returnValues.map { apply.type(of: $0) }
    let installed = try Autodiff.installing(forward, in: module, what: "the gradient step")
    return try Autodiff.installing(apply, in: installed, what: "the update step")
  }

  /// Clipping (when configured) and every parameter's update, appended to `b`'s function: the
  /// new parameters (all of the module's, in order; a state parameter takes its value from
  /// `newStates`) and the new slots. `finite` (mixed steps) selects the old values when false.
  /// The update's arguments, in the calling convention of `train_step` and `apply_step`: lr, step,
  /// every parameter (by name), then each trained parameter's optimizer slots.
  static func addUpdateArguments(to function: inout Function, module: Module, optimizer: OptimizerConfig, floatType: DType)
    -> (lr: ValueID, step: ValueID, params: [String: ValueID], slots: [[ValueID]]) {
    let lr = function.addArgument(name: "lr", type: .scalar(floatType))
    let step = function.addArgument(name: "step", type: .scalar(floatType))
    var params: [String: ValueID] = [:]
    for p in module.params { params[p.name] = function.addArgument(name: p.name, type: p.type) }
    let slots = module.trainedParams.map { p in
      optimizer.slots.map { function.addArgument(name: slotName($0.name, of: p.name), type: p.type) }
    }
    return (lr, step, params, slots)
  }

  /// Appends `grad`'s ops to `target`, reading each module global from `paramArguments` (the
  /// target's argument of that name) and each of `grad`'s values through `map`, which the caller
  /// seeds with `grad`'s arguments and which ends up holding every result.
  static func copyBody(of grad: Function, into target: inout Function, map: inout [ValueID: ValueID],
                       paramArguments: [String: ValueID]) {
    for (k, v) in grad.values.enumerated() {
      if case .global(let name) = v.definition { map[ValueID(k)] = paramArguments[name]! }
    }
    for id in grad.body {
      let op = grad[id]
      let new = target.append(op.code, op.operands.map { map[$0]! }, resultTypes: op.results.map { grad.type(of: $0) },
                              resultNames: op.results.map { grad[$0].name }, attributes: op.attributes, location: op.location)
      for (o, n) in zip(op.results, target[new].results) { map[o] = n }
    }
  }

  static func appendUpdates(_ b: inout UpdateBuilder, module: Module, optimizer: OptimizerConfig, gradients: [ValueID],
                            params paramArguments: [String: ValueID], slots slotArguments: [[ValueID]], newStates: [ValueID],
                            lr: ValueID, step t: ValueID, floatType: DType, finite: ValueID?) -> ([ValueID], [ValueID]) {
    let states = module.stateParams
    var gradients = gradients
    if let clip = optimizer.clipNorm {
      var total: ValueID? = nil
      // The norm is summed in the loss's float type, whatever each gradient's type.
      for gv in gradients where b.function.type(of: gv).dtype.isFloat {
        let gradientType = b.function.type(of: gv).dtype
        let squares = b.op(.mul, gv, gv)
        var sum = b.emit(.reduceSum, [squares], .scalar(gradientType))
        if gradientType != floatType { sum = b.emit(.cast, [sum], .scalar(floatType)) }
        total = total.map { b.emit(.add, [$0, sum], .scalar(floatType)) } ?? sum
      }
      let norm = b.emit(.sqrt, [total!], .scalar(floatType))
      let c = b.scalar(clip)
      let scale = b.emit(.div, [c, b.emit(.max, [c, norm], .scalar(floatType))], .scalar(floatType))
      gradients = gradients.map { gv in
        let gradientType = b.function.type(of: gv).dtype
        guard gradientType.isFloat else { return gv }
        return b.op(.mul, gv, gradientType == floatType ? scale : b.emit(.cast, [scale], .scalar(gradientType)))
      }
    }
    var newParams: [ValueID] = []
    var newSlots: [ValueID] = []
    var trained = 0
    for p in module.params {
      if p.isState {
        // A skipped (non-finite) mixed step keeps the state as it was, like the parameters.
        let updated = newStates[states.firstIndex { $0.name == p.name }!]
        newParams.append(finite.map { b.emit(.select, [$0, updated, paramArguments[p.name]!], p.type) } ?? updated)
        continue
      }
      let k = trained
      trained += 1
      // Each parameter updates in its own type (an f16 or f64 parameter of an f32 loss): the
      // learning rate and step count are cast to it. Integer parameters are not trained.
      let parameterType = p.type.dtype
      guard parameterType.isFloat else {
        newParams.append(paramArguments[p.name]!)
        newSlots += slotArguments[k]
        continue
      }
      b.dtype = parameterType
      let (parameterLR, parameterStep) = parameterType == floatType ? (lr, t)
        : (b.emit(.cast, [lr], .scalar(parameterType)), b.emit(.cast, [t], .scalar(parameterType)))
      var (param, slots) = b.update(optimizer, param: paramArguments[p.name]!, gradient: gradients[k],
                                    slots: slotArguments[k], lr: parameterLR, step: parameterStep)
      if let finite {
        param = b.emit(.select, [finite, param, paramArguments[p.name]!], p.type)
        slots = zip(slots, slotArguments[k]).map { b.emit(.select, [finite, $0, $1], p.type) }
      }
      newParams.append(param)
      newSlots += slots
    }
    return (newParams, newSlots)
  }
}

struct UpdateBuilder {
  var function: Function
  /// The float type of the parameter being updated (its scalars are made in it).
  var dtype: DType

  mutating func emit(_ code: OpCode, _ operands: [ValueID], _ type: TensorType) -> ValueID {
    function.appendValue(code, operands, type: type)
  }
  /// A binary op whose result has the first operand's type (the second is that type or a scalar).
  mutating func op(_ code: OpCode, _ a: ValueID, _ b: ValueID) -> ValueID { emit(code, [a, b], function.type(of: a)) }
  mutating func scalar(_ x: Double) -> ValueID {
    function.appendValue(.constant, [], type: .scalar(dtype),
                         attributes: Attributes(["value": .tensor(Tensor(dtype, shape: [], floats: [x]))]))
  }

  mutating func update(_ o: OptimizerConfig, param p: ValueID, gradient g: ValueID, slots: [ValueID],
                       lr: ValueID, step t: ValueID) -> (ValueID, [ValueID]) {
    let scalarType = TensorType.scalar(dtype)
    switch o.kind {
    case .sgd:
      return (op(.sub, p, op(.mul, g, lr)), [])
    case .momentum, .nesterov:
      let v = op(.add, op(.mul, slots[0], scalar(o.momentum)), g)
      let direction = o.kind == .momentum ? v : op(.add, g, op(.mul, v, scalar(o.momentum)))
      return (op(.sub, p, op(.mul, direction, lr)), [v])
    case .adagrad:
      let a = op(.add, slots[0], op(.mul, g, g))
      let denominator = op(.add, emit(.sqrt, [a], function.type(of: a)), scalar(o.epsilon))
      return (op(.sub, p, op(.mul, op(.div, g, denominator), lr)), [a])
    case .rmsprop:
      let s = op(.add, op(.mul, slots[0], scalar(o.rho)), op(.mul, op(.mul, g, g), scalar(1 - o.rho)))
      let denominator = op(.add, emit(.sqrt, [s], function.type(of: s)), scalar(o.epsilon))
      return (op(.sub, p, op(.mul, op(.div, g, denominator), lr)), [s])
    case .adam, .adamw:
      let m = op(.add, op(.mul, slots[0], scalar(o.beta1)), op(.mul, g, scalar(1 - o.beta1)))
      let v = op(.add, op(.mul, slots[1], scalar(o.beta2)), op(.mul, op(.mul, g, g), scalar(1 - o.beta2)))
      let correction1 = emit(.sub, [scalar(1), emit(.pow, [scalar(o.beta1), t], scalarType)], scalarType)
      let correction2 = emit(.sub, [scalar(1), emit(.pow, [scalar(o.beta2), t], scalarType)], scalarType)
      let rootCorrection2 = emit(.sqrt, [correction2], scalarType)
      let stepSize = emit(.div, [emit(.mul, [lr, rootCorrection2], scalarType), correction1], scalarType)
      let epsilonHat = emit(.mul, [scalar(o.epsilon), rootCorrection2], scalarType)
      let denominator = op(.add, emit(.sqrt, [v], function.type(of: v)), epsilonHat)
      var next = op(.sub, p, op(.div, op(.mul, m, stepSize), denominator))
      if o.kind == .adamw { next = op(.sub, next, op(.mul, op(.mul, p, scalar(o.weightDecay)), lr)) }
      return (next, [m, v])
    }
  }
}
