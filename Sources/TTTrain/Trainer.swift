// Trainer — drives a compiled training step. It owns the training state (parameters and optimizer
// slots in native f32/f64 layout, the step count), compiles `@<loss>.train_step` once (symbolic
// batch sizes included) with parameters and slots donated, so the update usually lands in place;
// each step writes the batch, the learning rate and the step number, runs the step, and moves any
// state output that did not land in place back into the state buffers.

import Foundation
import TTIR
import TTInterp
import TTRuntime

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
  /// Parameters then slots, in the step function's argument order.
  public private(set) var state: [Tensor]
  public private(set) var stateNames: [String]
  public private(set) var stepCount = 0
  var prepared: [[Int]: Executable.PreparedRun] = [:]

  public init(module: Module, loss: String, optimizer: OptimizerConfig, params: [String: Tensor] = [:]) throws(TrainingError) {
    self.module = module
    self.lossName = loss
    self.optimizer = optimizer
    guard let lossFunction = module.function(named: loss) else { throw .setup("no function named '@\(loss)'") }
    inputTypes = lossFunction.argumentTypes
    do { stepModule = try TrainStep.build(module, loss: loss, optimizer: optimizer) }
    catch { throw .setup("\(error)") }
    let interpreter: Interpreter
    do { interpreter = try Interpreter(module: module, params: params) } catch { throw .setup("\(error)") }
    state = module.params.map { interpreter.params[$0.name]! }
    stateNames = module.params.map(\.name)
    for p in module.params {
      for slot in optimizer.slots {
        state.append(Tensor.filled(p.type.dtype, shape: p.type.staticShape!, value: slot.initial))
        stateNames.append(TrainStep.slotName(slot.name, of: p.name))
      }
    }
    // Reorder slots to the step's order: all slots of param 0, then of param 1, ...
    let first = inputTypes.count + 2
    do {
      executable = try Executable(module: stepModule, function: loss + ".train_step",
                                  donating: Set(first..<(first + state.count)))
    } catch { throw .setup("\(error)") }
  }

  /// Sets the training state (e.g. from a checkpoint): tensors by name, and the step count.
  public func restore(_ tensors: [String: Tensor], step: Int) throws(TrainingError) {
    for (i, name) in stateNames.enumerated() {
      guard let t = tensors[name] else { throw .setup("the checkpoint has no tensor '\(name)'") }
      guard t.type == state[i].type else { throw .setup("'\(name)' is \(t.type) in the checkpoint but \(state[i].type) in the model") }
      state[i] = t
    }
    stepCount = step
  }

  public var params: [String: Tensor] {
    Dictionary(uniqueKeysWithValues: module.params.enumerated().map { ($0.element.name, state[$0.offset]) })
  }

  /// One training step on `batch` (one tensor per loss input) at learning rate `lr`; returns the loss.
  @discardableResult
  public func step(_ batch: [Tensor], lr: Double) throws(TrainingError) -> Double {
    let dtype = state.first?.dtype ?? .f32
    let inputs = batch + [Tensor.scalar(lr, dtype), Tensor.scalar(Double(stepCount + 1), dtype)] + state
    let key = batch.flatMap(\.shape)
    let run: Executable.PreparedRun
    if let cached = prepared[key] { run = cached }
    else {
      do { run = try executable.prepare(inputTypes: inputs.map(\.type)) } catch { throw .step("\(error)") }
      prepared[key] = run
    }
    for (i, t) in inputs.enumerated() { RawTensor.write(t, to: run.inputs[i]) }
    do { try run.execute() } catch { throw .step("\(error)") }
    let loss = RawTensor.read(dtype, shape: [], from: run.outputs[0]).doubles[0]
    for i in state.indices {
      state[i] = RawTensor.read(state[i].dtype, shape: state[i].shape, from: run.outputs[1 + i])
    }
    stepCount += 1
    return loss
  }
}
