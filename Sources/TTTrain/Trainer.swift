// Trainer — drives a compiled training step. It owns the training state (parameters and optimizer
// slots in native f32/f64 layout, the step count), compiles `@<loss>.train_step` once (symbolic
// batch sizes included) with parameters and slots donated, so the update usually lands in place;
// each step writes the batch, the learning rate and the step number, runs the step, and moves any
// state output that did not land in place back into the state buffers.

import Foundation
import TTIR
import TTInterp
import TTRuntime
import TTCodegen

public enum TrainingError: Error, CustomStringConvertible {
  case setup(String)
  case step(String)
  public var description: String {
    switch self { case .setup(let m): return m; case .step(let m): return m }
  }
}

public final class Trainer {
  public let module: Module
  public let lossName: String
  public let optimizer: OptimizerConfig
  public let stepModule: Module
  let executable: Executable
  let inputTypes: [TensorType]      // the loss function's inputs
  /// Parameter and slot names, in the step function's argument order.
  public private(set) var stateNames: [String]
  let stateTypes: [TensorType]
  /// The state before the first step (or after restore), until it moves into a run's buffers.
  var pendingState: [Tensor]?
  public private(set) var stepCount = 0
  /// Prepared runs by batch shape, bucketed by the shape policy.
  public let shapes: ShapeSpecializer
  /// The last run (its state inputs are the executable's pinned state buffers).
  var current: Executable.PreparedRun?
  let firstStateArgument: Int
  /// Seconds spent differentiating and building the step (compilation is in `executable.statistics`).
  public private(set) var buildSeconds = 0.0
  public var compileStatistics: ExecutableStatistics { executable.statistics }
  var staging: [UnsafeMutableRawPointer] = []

  public init(module: Module, loss: String, optimizer: OptimizerConfig, params: [String: Tensor] = [:],
              bucketPolicy: BucketPolicy = .powersOfTwo) throws(TrainingError) {
    self.module = module
    self.lossName = loss
    self.optimizer = optimizer
    guard let lossFunction = module.function(named: loss) else { throw .setup("no function named '@\(loss)'") }
    inputTypes = lossFunction.argumentTypes
    let phaseStart = DispatchClock.now()
    do { stepModule = try TrainStep.build(module, loss: loss, optimizer: optimizer) }
    catch { throw .setup("\(error)") }
    buildSeconds = DispatchClock.now() - phaseStart
    let interpreter: Interpreter
    do { interpreter = try Interpreter(module: module, params: params) } catch { throw .setup("\(error)") }
    var initial = module.params.map { interpreter.params[$0.name]! }
    var names = module.params.map(\.name)
    for p in module.params {
      for slot in optimizer.slots {
        initial.append(Tensor.filled(p.type.dtype, shape: p.type.staticShape!, value: slot.initial))
        names.append(TrainStep.slotName(slot.name, of: p.name))
      }
    }
    stateNames = names
    stateTypes = initial.map(\.type)
    pendingState = initial
    firstStateArgument = inputTypes.count + 2
    do {
      let first = inputTypes.count + 2
      let stateArguments = first..<(first + initial.count)
      executable = try Executable(module: stepModule, function: loss + ".train_step", donating: Set(stateArguments),
                                  aliasing: Dictionary(uniqueKeysWithValues: initial.indices.map { (1 + $0, first + $0) }))
    } catch { throw .setup("\(error)") }
    shapes = ShapeSpecializer(executable, policy: bucketPolicy)
    staging = stateTypes.map { t in
      var p: UnsafeMutableRawPointer?
      posix_memalign(&p, 64, max(1, (elementCount(t.staticShape!) ?? 0) * t.dtype.byteSize))
      return p!
    }
  }

  deinit { for p in staging { free(p) } }

  /// The compiled step's kernels, in execution order.
  public var kernelList: [CompiledKernel] { executable.kernels }

  /// Per-thunk times of the compiled step (when TTFC_PROFILE is set).
  public var profileReport: String { executable.profileReport }

  func bytes(_ i: Int) -> Int { (elementCount(stateTypes[i].staticShape!) ?? 0) * stateTypes[i].dtype.byteSize }

  /// The current parameters and slots, in `stateNames` order.
  public var state: [Tensor] {
    if let pendingState { return pendingState }
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
    pendingState = restored
    stepCount = step
  }

  public var params: [String: Tensor] {
    Dictionary(uniqueKeysWithValues: module.params.enumerated().map { ($0.element.name, state[$0.offset]) })
  }

  /// One training step on `batch` (one tensor per loss input) at learning rate `lr`; returns the loss.
  @discardableResult
  public func step(_ batch: [Tensor], lr: Double) throws(TrainingError) -> Double {
    let dtype = stateTypes.first?.dtype ?? .f32
    let run: Executable.PreparedRun
    do { run = try shapes.prepare(inputTypes: batch.map(\.type) + [.scalar(dtype), .scalar(dtype)] + stateTypes) }
    catch { throw .step("\(error)") }
    // State lives in the executable's pinned buffers, the same in every layout: a new batch shape
    // moves nothing. Only the first step (or a restore) writes it.
    if let pendingState {
      for (i, t) in pendingState.enumerated() { RawTensor.write(t, to: run.inputs[firstStateArgument + i]) }
      self.pendingState = nil
    }
    current = run
    for (i, t) in batch.enumerated() { RawTensor.write(t, to: run.inputs[i]) }
    RawTensor.write(Tensor.scalar(lr, dtype), to: run.inputs[batch.count])
    RawTensor.write(Tensor.scalar(Double(stepCount + 1), dtype), to: run.inputs[batch.count + 1])
    do { try run.execute() } catch { throw .step("\(error)") }
    let loss = RawTensor.read(dtype, shape: [], from: run.outputs[0]).doubles[0]
    // New state: outputs that did not land in their input's buffer are staged, then copied (an
    // output may sit in another state input's donated buffer, so copy-through avoids clobbering).
    let moved = stateTypes.indices.filter { run.outputs[1 + $0] != run.inputs[firstStateArgument + $0] }
    for i in moved { memcpy(staging[i], run.outputs[1 + i], bytes(i)) }
    for i in moved { memcpy(run.inputs[firstStateArgument + i], staging[i], bytes(i)) }
    stepCount += 1
    return loss
  }
}
