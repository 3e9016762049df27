// Trainer — drives a compiled training step. It owns the training state (parameters and optimizer
// slots in native f32/f64 layout, the step count), compiles `@<loss>.train_step` once (symbolic
// batch sizes included) with parameters and slots donated, so the update usually lands in place;
// each step writes the batch, the learning rate and the step number, runs the step, and moves any
// state output that did not land in place back into the state buffers.

import Foundation
import TTCompiler
import TTIR
import TTInterp
import TTRuntime
import TTCodegen
import TTSupport
import TTEmbedding
import TTPasses

/// Why training could not start or go on; the message names the cause.
public enum TrainingError: Error, CustomStringConvertible {
  /// The model, the data or the options cannot be trained (found before step 1).
  case setup(String)
  /// A step failed to run (wrong inputs, or a runtime error).
  case step(String)
  /// A non-finite loss, gradient or updated parameter at a step (1-based); the reason names it.
  case nonFinite(step: Int, reason: String)
  /// A path that training would write to cannot be written (checked before step 1).
  case unwritable(path: String, reason: String)
  /// Distributed training failed (a rank died or cannot be reached, the ranks disagree, ...).
  case distributed(DistributedError)
  public var description: String {
    switch self {
    case .setup(let m): return m
    case .step(let m): return m
    case .nonFinite(let step, let reason): return "training diverged at step \(step): \(reason)"
    case .unwritable(let path, let reason): return "cannot write '\(path)': \(reason)"
    case .distributed(let error): return error.description
    }
  }
}

/// What training does when a step's loss, gradients or updated state are not finite.
public enum NonFinitePolicy: String, CaseIterable, Sendable {
  /// Stop with `TrainingError.nonFinite`; the state is not saved (the last good checkpoint stays).
  case stop
  /// Undo the step's update (parameters and slots as before it, no table update) and go on.
  case skipStep = "skip-step"
}

/// The compiled training step of one loss function and the state it updates.
///
/// `Trainer` differentiates the loss function, appends the optimizer's update and compiles the
/// result once as `@<loss>.train_step` (every batch size included). It owns the parameters, the
/// optimizer slots, the step count and the module's embedding tables. ``step(_:lr:)`` trains on
/// one batch given as tensors; ``TrainingLoop`` adds data, schedules, evaluation and
/// checkpoints on top of it.
public final class Trainer {
  /// The module as given, and the name of its loss function.
  public let module: Module
  public let lossName: String
  public let optimizer: OptimizerConfig
  /// `module` with the training step function added (before optimization): the full-precision
  /// step when the trainer has one, else the mixed one.
  public let stepModule: Module
  /// The mixed-precision step's module (the `amp` rewrite of the loss), when the trainer has one.
  public let mixedStepModule: Module?
  /// The compiled steps: full precision (the loss as written) and mixed (its `amp` rewrite, one
  /// more argument, the loss scale, and one more result, whether the step was finite). Both
  /// read and update the same state buffers (pinned in the full step's executable).
  let fullStep: CompiledStep?
  let mixedStep: CompiledStep?
  struct CompiledStep {
    let executable: Executable
    let shapes: ShapeSpecializer
  }
  /// The first compiled step (full precision when there is one): statistics, kernels, --emit-ir.
  var executable: Executable { (fullStep ?? mixedStep!).executable }
  /// Mixed precision: the half type, loss scaling and the policy choosing each step's precision
  /// (nil: every step in full precision).
  public let mixedPrecision: MixedPrecisionOptions?
  /// The loss scale of mixed steps and its history.
  public private(set) var lossScaler = LossScaler(.none)
  /// The `amp` pass's decision for every op of the loss (for `--explain-amp`), and its counters.
  public private(set) var ampExplanations: [String] = []
  public private(set) var ampStatistics: [String: Int] = [:]
  /// Ops of the loss the rewrite lowered to the half type (0: mixed steps compute as fp32).
  public var ampLoweredOps: Int { ampStatistics.filter { $0.key.hasPrefix("ops-in-") }.values.reduce(0, +) }
  /// Whether the trainer compiled the full-precision step.
  public var hasFullProgram: Bool { fullStep != nil }
  /// The mixed step's shape buckets, when the trainer has one.
  public var mixedShapes: ShapeSpecializer? { mixedStep?.shapes }
  /// What the last step did.
  public internal(set) var lastStep: StepReport?
  /// A step's precision, loss scale, and whether its update was skipped by loss scaling or the
  /// precision policy (a non-finite mixed step that is theirs to handle).
  public struct StepReport: Sendable {
    public var step: Int
    public var precision: StepPrecision
    public var lossScale: Double?
    public var updateSkipped: Bool
    public var reason: String?
  }
  /// The learning rate of the last step run (what `lr-change` compares with).
  var previousLearningRate: Double?
  let inputTypes: [TensorType]      // the loss function's inputs
  /// Parameter and slot names, in the step function's argument order.
  public private(set) var stateNames: [String]
  let stateTypes: [TensorType]
  /// The state before the first step (or after restore), until it moves into a run's buffers.
  var pendingState: [PendingState]?
  /// A state tensor not yet in the run's buffers: given, or (fresh optimizer slots) one value
  /// everywhere, written straight into the buffer instead of built as a tensor first.
  /// A parameter's initializer is drawn straight into its buffer as well (W5's cold start spent
  /// 30 ms building 1.6M initial values as doubles, then a tensor, then copying them).
  enum PendingState {
    case tensor(Tensor)
    case filled(Double)
    case initializer(ParamInitializer.Generator, Initializer, name: String)
  }
  /// Steps taken (or restored from a checkpoint); the next step is `stepCount + 1`.
  public internal(set) var stepCount = 0
  /// Prepared runs by batch shape, bucketed by the shape policy (of the first compiled step).
  public var shapes: ShapeSpecializer { (fullStep ?? mixedStep!).shapes }
  /// The last run (its state inputs are the executable's pinned state buffers).
  var current: Executable.PreparedRun?
  let firstStateArgument: Int
  /// Seconds spent differentiating and building the step (compilation is in `executable.statistics`).
  public private(set) var buildSeconds = 0.0
  public var compileStatistics: ExecutableStatistics { executable.statistics }
  /// The mixed step's compile statistics, when the trainer has one.
  public var mixedCompileStatistics: ExecutableStatistics? { mixedStep?.executable.statistics }
  /// The compiled training step (its optimized module is what `ttfc train --emit-ir` writes).
  public var program: Program { executable.program }
  /// The compiled mixed-precision step, when the trainer has one.
  public var mixedProgram: Program? { mixedStep?.executable.program }
  var staging: [UnsafeMutableRawPointer] = []
  /// With `keepsPreviousState`, each step first copies the state here, so a non-finite step can be
  /// undone (`NonFinitePolicy.skipStep`).
  public var keepsPreviousState = false
  var previous: [UnsafeMutableRawPointer] = []
  /// Set when a step left non-finite state behind (not undone): such state is never saved.
  public internal(set) var stateIsNonFinite = false
  /// Parameters declared without an initializer and not given a value (the loss does not read
  /// them; they hold zeros until a checkpoint restores them).
  public private(set) var parametersWithoutValues: Set<String> = []


  /// Embedding tables, their sparse optimizer, and the lookups of the loss function.
  public let tables: [String: EmbeddingTable]
  public let sparseOptimizer: SparseOptimizer
  public let sites: [LookupSite]
  let rowInputCount: Int
  /// Data-parallel training: the split step and the buffers of its collectives (nil: one process).
  public internal(set) var distributed: DistributedStep?

  /// SparseAdam (`sparseadam`, the published definition: moments decayed over skipped steps) for Adam-family
  /// optimizers, the sparse form of SGD and Adagrad for those.
  public static func defaultSparseOptimizer(for kind: OptimizerConfig.Kind) -> SparseOptimizer {
    switch kind {
    case .sgd, .momentum, .nesterov: return .sgd
    case .adagrad: return .defaultAdagrad
    default: return .defaultSparseAdam
    }
  }

  /// Builds and compiles the training step of `module`'s function `loss` with `optimizer`.
  /// Parameters start from `params` where given, else from their declared initializers.
  /// `valuesFollow`: a checkpoint will supply every parameter (a resume), so a parameter
  /// without a value or initializer starts as zeros until it is restored.
  public init(module: Module, loss: String, optimizer: OptimizerConfig, params: [String: Tensor] = [:],
              bucketPolicy: BucketPolicy = .powersOfTwo, sparseOptimizer: SparseOptimizer? = nil,
              valuesFollow: Bool = false, verifyEach: Bool = CompileOptions.verifyEachByDefault,
              mixedPrecision: MixedPrecisionOptions? = nil, communicator: Communicator? = nil,
              shardTables: Bool = false) throws(TrainingError) {
    self.module = module
    self.lossName = loss
    self.optimizer = optimizer
    self.mixedPrecision = mixedPrecision
    // Which programs the policy can ask for: a fixed policy needs one, any other both.
    var needsFull = true, needsMixed = false
    if let mixedPrecision {
      guard mixedPrecision.halfType == .bf16 || mixedPrecision.halfType == .f16 else {
        throw .setup("mixed precision needs a half type, bf16 or f16 (got \(mixedPrecision.halfType))")
      }
      lossScaler = LossScaler(mixedPrecision.lossScaling)
      if let fixed = mixedPrecision.policy as? FixedPrecisionPolicy {
        needsFull = fixed.precision == .full
        needsMixed = fixed.precision == .mixed
      } else {
        needsMixed = true
      }
    }
    guard let lossFunction = module.function(named: loss) else { throw .setup("no function named '@\(loss)'") }
    if communicator != nil {
      if mixedPrecision != nil { throw .setup(DistributedError.unsupported("mixed precision (--precision) is not supported with --distributed yet").description) }
      needsFull = false
    }
    inputTypes = lossFunction.argumentTypes
    let phaseStart = DispatchClock.now()
    // Lookups become row inputs filled by the runtime; their gradients come back as step outputs.
    let sparse = sparseOptimizer ?? Self.defaultSparseOptimizer(for: optimizer.kind)
    self.sparseOptimizer = sparse
    var fullModule: Module? = nil, mixedModule: Module? = nil, splitModule: Module? = nil
    do {
      let (lowered, sites) = try EmbeddingLowering.lower(module, function: loss)
      self.sites = sites
      rowInputCount = sites.count
      if needsFull { fullModule = try TrainStep.build(lowered, loss: loss, optimizer: optimizer, rowInputs: sites.map(\.rowsInput)) }
      if communicator != nil { splitModule = try TrainStep.buildSplit(lowered, loss: loss, optimizer: optimizer, rowInputs: sites.map(\.rowsInput)) }
      if needsMixed, let mixedPrecision {
        var options = PassOptions()
        options.ampType = mixedPrecision.halfType
        let context = PassContext(options: options)
        mixedModule = try TrainStep.build(lowered, loss: loss, optimizer: optimizer, rowInputs: sites.map(\.rowsInput),
                                          mixedPrecision: context)
        ampExplanations = context.ampExplanations
        ampStatistics = context.statistics["amp"] ?? [:]
      }
    } catch { throw .setup("\(error)") }
    stepModule = (fullModule ?? mixedModule ?? splitModule)!
    if shardTables {
      guard communicator != nil else { throw .setup("sharded tables need distributed training (--distributed)") }
      if let pooled = sites.first(where: \.pooled) {
        throw .setup(DistributedError.unsupported("sharded tables do not support pooled lookups yet (table '@\(pooled.table)'); train without --shard-tables (tables replicated on every rank)").description)
      }
    }
    mixedStepModule = mixedModule
    var made: [String: EmbeddingTable] = [:]
    for decl in module.tables {
      do { made[decl.name] = try EmbeddingTable(declaration: decl, slotInitialValues: sparse.slotInitialValues) } catch { throw .setup("\(error)") }
    }
    tables = made
    buildSeconds = DispatchClock.now() - phaseStart
    // A parameter needs a value (given, or an initializer) only if the loss reads it (through
    // its calls too); the ones missing are named together. One the loss does not read starts as
    // zeros and is recorded in `parametersWithoutValues`: an evaluation function that reads it
    // is refused before training starts (TrainingLoop), never run on the zeros.
    for name in params.keys.sorted() {
      if let reason = module.unknownParameterReason(name) { throw .setup("the initial values name \(reason)") }
    }
    let read = module.parametersRead(by: loss)
    let missing = module.params.filter { params[$0.name] == nil && $0.initializer == nil && read.contains($0.name) }.map(\.name)
    parametersWithoutValues = Set(module.params.filter { params[$0.name] == nil && $0.initializer == nil }.map(\.name))
    if !missing.isEmpty && !valuesFollow {
      let list = missing.map { "'@\($0)'" }.joined(separator: ", ")
      throw .setup("parameter\(missing.count == 1 ? "" : "s") \(list) \(missing.count == 1 ? "has" : "have") no value and no initializer: give \(missing.count == 1 ? "it" : "them") with --init-params FILE.npz (or resume from a checkpoint)")
    }
    var initial: [PendingState] = []
    for p in module.params {
      do {
        if let given = params[p.name] {
          guard given.type == p.type else { throw InterpreterError.paramMismatch(name: p.name, expected: p.type, got: given.type) }
          initial.append(.tensor(given))
        } else if let initializer = p.initializer, initializer.kind == "zeros" {
          initial.append(.filled(0))
        } else if let initializer = p.initializer {
          initial.append(.initializer(try ParamInitializer.generator(initializer, type: p.type, name: p.name), initializer, name: p.name))
        } else {
          initial.append(.filled(0))   // unread, or restored from the checkpoint next (checked above)
        }
      } catch { throw .setup("\(error)") }
    }
    var names = module.params.map(\.name)
    var types = module.params.map(\.type)
    for p in module.trainedParams {   // `state` has no optimizer slots
      for slot in optimizer.slots {
        initial.append(.filled(slot.initial))
        names.append(TrainStep.slotName(slot.name, of: p.name))
        types.append(p.type)
      }
    }
    stateNames = names
    stateTypes = types
    pendingState = initial
    let gradientCount = module.trainedParams.count
    firstStateArgument = communicator == nil ? inputTypes.count + rowInputCount + 2 : gradientCount + 3
    do {
      let first = inputTypes.count + rowInputCount + 2
      let stateArguments = first..<(first + initial.count)
      let aliasing = Dictionary(uniqueKeysWithValues: initial.indices.map { (1 + $0, first + $0) })
      var full: Executable? = nil
      if let splitModule, let communicator {
        // Data-parallel: the gradient step (its run in `fullStep`, for statistics and shapes)
        // and the update step, which holds the state like the fused step does.
        let gradient = try Executable(module: splitModule, function: loss + ".grad_step", verifyEach: verifyEach)
        let first = gradientCount + 3
        let applyState = first..<(first + initial.count)
        let update = try Executable(module: splitModule, function: loss + ".apply_step", donating: Set(applyState),
                                    aliasing: Dictionary(uniqueKeysWithValues: initial.indices.map { (1 + $0, first + $0) }), verifyEach: verifyEach)
        full = gradient
        distributed = try DistributedStep(communicator: communicator, gradient: gradient, update: update, gradientCount: gradientCount,
                                          shardsTables: shardTables)
      } else if let fullModule {
        full = try Executable(module: fullModule, function: loss + ".train_step", donating: Set(stateArguments),
                              aliasing: aliasing, verifyEach: verifyEach)
      }
      fullStep = full.map { CompiledStep(executable: $0, shapes: ShapeSpecializer($0, policy: bucketPolicy)) }
      // The mixed step shares the full step's state buffers, so switching moves nothing.
      if let mixedModule {
        let mixed = try Executable(module: mixedModule, function: loss + ".train_step", donating: Set(stateArguments),
                                   aliasing: aliasing, verifyEach: verifyEach, sharingPinnedBuffersWith: full)
        mixedStep = CompiledStep(executable: mixed, shapes: ShapeSpecializer(mixed, policy: bucketPolicy))
      } else {
        mixedStep = nil
      }
    } catch { throw .setup("\(error)") }
    staging = stateTypes.map { t in
      var p: UnsafeMutableRawPointer?
      posix_memalign(&p, 64, max(1, (elementCount(t.staticShape!) ?? 0) * t.dtype.byteSize))
      return p!
    }
  }

  deinit { for p in staging + previous { free(p) } }

  /// The compiled step's kernels, in execution order.
  public var kernelList: [CompiledKernel] { executable.kernels }

  /// Per-thunk times of the compiled step (of the runs its trace recorded: TTFC_PROFILE, or
  /// `attachTrace`).
  public var profileReport: String { executable.profileReport }

  /// Records the compiled steps' runs (full and mixed precision) in `trace`; nil stops recording
  /// (a run then costs nothing extra). The trace's compile track gets the steps' compile phases
  /// the first time it is attached.
  public func attachTrace(_ trace: ExecutionTrace?) {
    if let trace, !tracesWithCompilePhases.contains(ObjectIdentifier(trace)) {
      tracesWithCompilePhases.insert(ObjectIdentifier(trace))
      if let full = fullStep { trace.addCompilePhases(full.executable.statistics, label: mixedStep == nil ? nil : "full step") }
      if let mixed = mixedStep { trace.addCompilePhases(mixed.executable.statistics, label: fullStep == nil ? nil : "mixed step") }
    }
    fullStep?.executable.trace = trace
    mixedStep?.executable.trace = trace
  }
  private var tracesWithCompilePhases = Set<ObjectIdentifier>()

  func bytes(_ i: Int) -> Int { (elementCount(stateTypes[i].staticShape!) ?? 0) * stateTypes[i].dtype.byteSize }

  /// The current parameters and slots, in `stateNames` order.
  public var state: [Tensor] {
    if let pendingState {
      return zip(pendingState, stateTypes).map { pending, type in
        switch pending {
        case .tensor(let t): return t
        case .filled(let value): return Tensor.filled(type.dtype, shape: type.staticShape!, value: value)
        case .initializer(_, let initializer, let name):
          // Checked when the trainer was made: materializing cannot fail now.
          return (try? ParamInitializer.materialize(initializer, type: type, name: name)) ?? Tensor.filled(type.dtype, shape: type.staticShape!, value: 0)
        }
      }
    }
    let run = current!
    return stateTypes.indices.map { RawTensor.read(stateTypes[$0].dtype, shape: stateTypes[$0].staticShape!, from: run.inputs[firstStateArgument + $0]) }
  }

  /// Sets the training state (e.g. from a checkpoint): tensors by name, and the step count.
  public func restore(_ tensors: [String: Tensor], step: Int) throws(TrainingError) {
    var restored: [Tensor] = []
    for (i, name) in stateNames.enumerated() {
      guard let t = tensors[name] else { throw .setup("the checkpoint has no tensor '\(name)'") }
      guard t.type == stateTypes[i] else { throw .setup("'\(name)' is \(t.type) in the checkpoint but \(stateTypes[i]) in the model") }
      restored.append(t)
    }
    pendingState = restored.map { .tensor($0) }
    stepCount = step
  }

  /// The current parameter values by name.
  public var params: [String: Tensor] {
    Dictionary(uniqueKeysWithValues: module.params.enumerated().map { ($0.element.name, state[$0.offset]) })
  }

  /// One training step on `batch` (one tensor per loss input) at learning rate `lr`; returns the
  /// loss. With mixed precision, the policy chooses the step's precision (``lastStep`` says which).
  @discardableResult
  public func step(_ batch: [Tensor], lr: Double) throws(TrainingError) -> Double {
    // Data-parallel: `batch` is the global batch; this rank computes its share.
    if distributed != nil { return try distributedStep(batch, lr: lr) }
    let precision = mixedPrecision.map {
      $0.policy.precision(for: PrecisionDecision(step: stepCount + 1, learningRate: lr, previousLearningRate: previousLearningRate))
    } ?? .full
    return try step(batch, lr: lr, precision: precision)
  }

  /// One training step in the given precision (the trainer must have compiled that step).
  @discardableResult
  public func step(_ batch: [Tensor], lr: Double, precision: StepPrecision) throws(TrainingError) -> Double {
    guard let compiled = precision == .full ? fullStep : mixedStep else {
      throw .step("this trainer has no \(precision == .full ? "full-precision" : "mixed-precision") step (its precision policy is \(mixedPrecision?.policy.description ?? "none"))")
    }
    let mixed = precision == .mixed
    // The learning rate and step count have the loss's float type (the step's `lr` argument).
    let dtype = compiled.executable.function.argumentTypes[firstStateArgument - 2].dtype
    guard batch.count == inputTypes.count else { throw .step("the step takes \(inputTypes.count) inputs, got \(batch.count)") }
    let rowTypes = sites.map { TensorType(.f32, shape: batch[$0.idsInput].shape + [$0.rowsType.dims.last!.staticSize!]) }
    let run: Executable.PreparedRun
    do {
      run = try compiled.shapes.prepare(inputTypes: batch.map(\.type) + rowTypes + [.scalar(dtype), .scalar(dtype)] + stateTypes
                                         + (mixed ? [.scalar(dtype)] : []))
    } catch { throw .step("\(error)") }
    // State lives in the executable's pinned buffers, the same in every layout: a new batch shape
    // moves nothing. Only the first step (or a restore) writes it.
    writePendingState(into: run)
    current = run
    if keepsPreviousState { keepState(of: run) }
    let t = Int64(stepCount + 1)
    for (i, tensor) in batch.enumerated() { RawTensor.write(tensor, to: run.inputs[i]) }
    // sparseadam-catchup: the rows this step reads first move through the steps they skipped,
    // so that the step reads and differentiates them where dense Adam would have them.
    if case .sparseAdam(_, _, _, .catchUp) = sparseOptimizer {
      for site in sites {
        batch[site.idsInput].int64s.withUnsafeBufferPointer { ids in
          tables[site.table]!.catchUp(sparseOptimizer, ids: ids, throughStep: t - 1, lr: Float(lr))
        }
      }
    }
    // Training lookups (new ids get rows) straight into the row inputs.
    let siteRows = sites.enumerated().map { k, site in
      lookUp(site, batch: batch, into: run.inputs[inputTypes.count + k].assumingMemoryBound(to: Float.self), step: t)
    }
    RawTensor.write(Tensor.scalar(lr, dtype), to: run.inputs[batch.count + rowInputCount])
    RawTensor.write(Tensor.scalar(Double(t), dtype), to: run.inputs[batch.count + rowInputCount + 1])
    let lossScale = mixed ? lossScaler.scale : nil
    if let lossScale { RawTensor.write(Tensor.scalar(lossScale, dtype), to: run.inputs[firstStateArgument + stateTypes.count]) }
    do { try run.execute() } catch { throw .step("\(error)") }
    previousLearningRate = lr
    let loss = RawTensor.read(dtype, shape: [], from: run.outputs[0]).doubles[0]
    // New state: outputs that did not land in their input's buffer are staged, then copied (an
    // output may sit in another state input's donated buffer, so copy-through avoids clobbering).
    let moved = stateTypes.indices.filter { run.outputs[1 + $0] != run.inputs[firstStateArgument + $0] }
    for i in moved { memcpy(staging[i], run.outputs[1 + i], bytes(i)) }
    for i in moved { memcpy(run.inputs[firstStateArgument + i], staging[i], bytes(i)) }
    // A mixed step whose loss or gradients were not finite returned the state as it was (its update
    // selects the old values). Loss scaling handles a gradient that overflowed while the loss was
    // finite, by backing off, as long as the scale can still go down; a non-finite loss (the
    // forward pass overflowed, or met NaN) is beyond it. The policy may handle either.
    let finite = !mixed || RawTensor.read(dtype, shape: [], from: run.outputs[1 + stateTypes.count + rowInputCount]).doubles[0] != 0
    let scalingHandles = !finite && loss.isFinite && lossScaler.canBackOff
    if mixed && (finite || scalingHandles) { lossScaler.update(finite: finite) }
    mixedPrecision?.policy.observe(StepOutcome(step: Int(t), precision: precision, loss: loss, finite: finite))
    lastStep = StepReport(step: Int(t), precision: precision, lossScale: lossScale, updateSkipped: false, reason: nil)
    if !finite {
      let half = mixedPrecision!.halfType
      var reason = loss.isFinite ? "a gradient is not finite in the \(half) step" : "the loss is \(loss) in the \(half) step"
      if let lossScale { reason += " (loss scale \(lossScale))" }
      reason += "; its update was skipped"
      if scalingHandles || mixedPrecision?.policy.handlesNonFiniteSteps == true {
        stepCount += 1
        lastStep?.updateSkipped = true
        lastStep?.reason = reason + (scalingHandles ? "; loss scale now \(lossScaler.scale)" : "; the precision policy takes over")
        return loss
      }
      if !loss.isFinite { reason += " (the forward pass overflowed \(half) or met NaN: loss scaling cannot help; try bf16, fp32 or --precision-policy loss:HOLD)" }
      else if lossScaler.isDynamic { reason += " (the loss scale is at its minimum)" }
      // Not theirs to handle: a divergence, but the state is intact (the update was skipped).
      if keepsPreviousState { stepCount += 1 }
      throw .nonFinite(step: Int(t), reason: reason)
    }
    // Divergence: the loss, the row gradients of the tables and the updated dense state (which a
    // non-finite gradient or learning rate makes non-finite) must all be finite.
    let firstRowGradient = 1 + stateTypes.count
    var problem: String? = loss.isFinite ? nil : "the loss is \(loss)"
    if problem == nil {
      for (k, site) in sites.enumerated() {
        let count = siteRows[k].count * (tables[site.table]?.dim ?? 0)
        if !Self.allFinite(.f32, run.outputs[firstRowGradient + k], count: count) { problem = "a gradient of table '@\(site.table)' is not finite"; break }
      }
    }
    // The parameters suffice: every optimizer carries a non-finite gradient or learning rate into
    // the parameter it updates (NaN, or inf/inf), and the slots (two thirds of Adam's state) are
    // scanned only before a checkpoint is written (`stateIsFinite`).
    if problem == nil, let bad = stateTypes.indices.prefix(module.params.count).first(where: {
      !Self.allFiniteOnThePool(stateTypes[$0].dtype, run.inputs[firstStateArgument + $0], count: elementCount(stateTypes[$0].staticShape!) ?? 0)
    }) {
      problem = "'\(stateNames[bad])' is not finite after the update (a non-finite gradient or learning rate \(lr))"
    }
    if let problem {
      if keepsPreviousState {
        for i in stateTypes.indices { memcpy(run.inputs[firstStateArgument + i], previous[i], bytes(i)) }
        stepCount += 1
      } else {
        stateIsNonFinite = true
      }
      throw .nonFinite(step: Int(t), reason: problem)
    }
    try applySparseUpdates(siteRows: siteRows, step: t, lr: lr) { UnsafePointer(run.outputs[firstRowGradient + $0].assumingMemoryBound(to: Float.self)) }
    stepCount += 1
    return loss
  }


  /// Writes the state not yet in the run's buffers (first step, or after a restore).
  func writePendingState(into run: Executable.PreparedRun) {
    guard let pendingState else { return }
    for (i, pending) in pendingState.enumerated() {
      let buffer = run.inputs[firstStateArgument + i]
      switch pending {
      case .tensor(let t): RawTensor.write(t, to: buffer)
      case .filled(let value): RawTensor.fill(stateTypes[i].dtype, count: elementCount(stateTypes[i].staticShape!) ?? 0, value: value, at: buffer)
      case .initializer(let generator, let initializer, let name):
        if !ParamInitializer.write(generator, dtype: stateTypes[i].dtype, to: buffer),
           let t = try? ParamInitializer.materialize(initializer, type: stateTypes[i], name: name) {
          RawTensor.write(t, to: buffer)
        }
      }
    }
    self.pendingState = nil
  }

  /// Copies the state before a step (`keepsPreviousState`), so a non-finite step can be undone.
  func keepState(of run: Executable.PreparedRun) {
    if previous.isEmpty {
      previous = stateTypes.indices.map { i in
        var p: UnsafeMutableRawPointer?
        posix_memalign(&p, 64, max(1, bytes(i)))
        return p!
      }
    }
    for i in stateTypes.indices { memcpy(previous[i], run.inputs[firstStateArgument + i], bytes(i)) }
  }

  /// Restores the state kept by `keepState`.
  func restoreKeptState(of run: Executable.PreparedRun) {
    for i in stateTypes.indices { memcpy(run.inputs[firstStateArgument + i], previous[i], bytes(i)) }
  }


  /// Sparse updates: per table, the row gradients of all its lookups (`gradient(k)`: site k's,
  /// one row of the table's width per position of `siteRows[k]`) summed per unique row.
  func applySparseUpdates(siteRows: [[Int32]], step t: Int64, lr: Double,
                          gradient: (Int) -> UnsafePointer<Float>) throws(TrainingError) {
    for (name, table) in tables.sorted(by: { $0.key < $1.key }) {
      var rows: [Int32] = [], grads: [Float] = []
      for (k, site) in sites.enumerated() where site.table == name {
        let count = siteRows[k].count
        rows += siteRows[k]
        grads += UnsafeBufferPointer(start: gradient(k), count: count * table.dim)
      }
      guard !rows.isEmpty else { continue }
      let summed = rows.withUnsafeBufferPointer { r in grads.withUnsafeBufferPointer { table.sparseGradient(rows: r, grad: $0.baseAddress!) } }
      do { try table.apply(sparseOptimizer, summed, step: t, lr: Float(lr)) } catch { throw .step("table '@\(name)': \(error)") }
    }
  }

  /// Brings every table row to the current step where the sparse optimizer defers work to a
  /// row's next update (`sparseadam-catchup`: the movement of the steps a row skipped, at rate
  /// `lr`); anything that reads table values outside a step (evaluation, export) calls it first.
  public func catchUpTables(lr: Double) {
    guard stepCount >= 1 else { return }
    for (_, table) in tables.sorted(by: { $0.key < $1.key }) {
      table.catchUp(sparseOptimizer, throughStep: Int64(stepCount), lr: Float(lr))
    }
  }

  /// Whether every parameter and optimizer slot is finite (checked before a checkpoint is written).
  public func stateIsFinite() -> Bool {
    guard !stateIsNonFinite else { return false }
    return state.allSatisfy { tensor in
      guard case .floats(let values) = tensor.storage else { return true }
      return values.allSatisfy(\.isFinite)
    }
  }

  /// Mixed-precision state for checkpoints: the setup (`precision`), the policy's state
  /// (`policy.KEY`) and the loss scale (`loss_scale.KEY`); empty without mixed precision.
  /// Numbers are written as Swift prints doubles, which read back exactly.
  public var precisionMetadata: [String: String] {
    guard let mixedPrecision else { return [:] }
    var m = ["precision": precisionSetting!]
    for (k, v) in mixedPrecision.policy.state { m["policy." + k] = "\(v)" }
    for (k, v) in lossScaler.state { m["loss_scale." + k] = "\(v)" }
    return m
  }

  /// The mixed-precision setup as one string (half type, policy, loss scaling): a resume compares it.
  public var precisionSetting: String? {
    mixedPrecision.map { "\($0.halfType) \($0.policy.description) loss-scale \($0.lossScaling)" }
  }

  /// Restores the policy's state and the loss scale from checkpoint metadata written by
  /// ``precisionMetadata`` under the same setup; a checkpoint without them (a full-precision run,
  /// or another setup) leaves both fresh.
  public func restorePrecision(from metadata: [String: String]) throws(PrecisionOptionError) {
    let hasState = metadata.keys.contains { $0.hasPrefix("policy.") || $0.hasPrefix("loss_scale.") }
    if hasState && metadata["precision"] == nil {
      throw PrecisionOptionError("the checkpoint has precision policy or loss scale state but no 'precision' setting")
    }
    guard let mixedPrecision, metadata["precision"] == precisionSetting else { return }
    func numbers(_ prefix: String) throws(PrecisionOptionError) -> [String: Double] {
      var values: [String: Double] = [:]
      for (k, v) in metadata where k.hasPrefix(prefix) {
        guard let x = decimalNumber(v) ?? (v == "nan" || v.hasSuffix("inf") ? Double(v) : nil) else {
          throw PrecisionOptionError("checkpoint entry '\(k)' is not a number: '\(v)'")
        }
        values[String(k.dropFirst(prefix.count))] = x
      }
      return values
    }
    do { try mixedPrecision.policy.restore(try numbers("policy.")) }
    catch let error as PrecisionOptionError { throw error }
    catch { throw PrecisionOptionError("the precision policy cannot restore its state: \(error)") }
    try lossScaler.restore(try numbers("loss_scale."))
  }

  /// Counts a step that was not run (its batch was rejected), so the step numbering goes on.
  public func skipStep() { stepCount += 1 }

  /// `allFinite`, split over the thread pool for buffers of a megabyte or more (a weight matrix
  /// of W4 is 4 MiB: one thread would add about half a millisecond to every step).
  static func allFiniteOnThePool(_ dtype: DType, _ pointer: UnsafeRawPointer, count: Int) -> Bool {
    let size = dtype.byteSize
    let pool = ThreadPool.shared
    guard count * size >= 1 << 20, pool.threadCount > 1 else { return allFinite(dtype, pointer, count: count) }
    let chunks = pool.threadCount * 2
    let verdicts = UnsafeMutableBufferPointer<Bool>.allocate(capacity: chunks)
    defer { verdicts.deallocate() }
    let base = UInt(bitPattern: pointer), results = UInt(bitPattern: verdicts.baseAddress!)
    pool.parallelFor(chunks) { c in
      let lo = count * c / chunks, hi = count * (c + 1) / chunks
      let ok = allFinite(dtype, UnsafeRawPointer(bitPattern: base)! + lo * size, count: hi - lo)
      UnsafeMutablePointer<Bool>(bitPattern: results)![c] = ok
    }
    return verdicts.allSatisfy { $0 }
  }

  /// Whether every element of a float buffer is finite (integer buffers always are).
  static func allFinite(_ dtype: DType, _ pointer: UnsafeRawPointer, count: Int) -> Bool {
    switch dtype {
    // Branch-free over the exponent bits (all ones: inf or NaN), so the scan vectorizes; it reads
    // the state once per step, as the optimizer update itself does.
    case .f32:
      let values = UnsafeBufferPointer(start: pointer.assumingMemoryBound(to: UInt32.self), count: count)
      var nonFinite: UInt32 = 0
      for bits in values { nonFinite |= (bits & 0x7f80_0000) == 0x7f80_0000 ? 1 : 0 }
      return nonFinite == 0
    case .f64:
      let values = UnsafeBufferPointer(start: pointer.assumingMemoryBound(to: UInt64.self), count: count)
      var nonFinite: UInt64 = 0
      for bits in values { nonFinite |= (bits & 0x7ff0_0000_0000_0000) == 0x7ff0_0000_0000_0000 ? 1 : 0 }
      return nonFinite == 0
    default:
      return true
    }
  }

  /// Training lookups of one site into `out`; returns the row of each position (-1: padding or not
  /// admitted, which read zeros and get no gradient).
  func lookUp(_ site: LookupSite, batch: [Tensor], into out: UnsafeMutablePointer<Float>, step: Int64) -> [Int32] {
    let table = tables[site.table]!
    let ids = batch[site.idsInput].int64s
    var rows = [Int32](repeating: -1, count: ids.count)
    if !site.pooled {
      ids.withUnsafeBufferPointer { i in rows.withUnsafeMutableBufferPointer { r in _ = table.lookup(i, into: out, training: true, step: step, rowsOut: r.baseAddress!) } }
      return rows
    }
    let width = batch[site.idsInput].shape[1]
    let lengths = site.lengthsInput.map { batch[$0].int64s }
    let valid = ids.indices.filter { p in
      EmbeddingTable.isValid(id: ids[p], position: p % max(width, 1), length: lengths?[p / max(width, 1)], paddingID: site.paddingID)
    }
    let compact = valid.map { ids[$0] }
    var values = [Float](repeating: 0, count: compact.count * table.dim)
    var compactRows = [Int32](repeating: -1, count: compact.count)
    compact.withUnsafeBufferPointer { i in
      values.withUnsafeMutableBufferPointer { v in
        compactRows.withUnsafeMutableBufferPointer { r in _ = table.lookup(i, into: v.baseAddress!, training: true, step: step, rowsOut: r.baseAddress!) }
      }
    }
    out.update(repeating: 0, count: ids.count * table.dim)
    for (k, p) in valid.enumerated() {
      rows[p] = compactRows[k]
      for j in 0..<table.dim { out[p * table.dim + j] = values[k * table.dim + j] }
    }
    return rows
  }
}
