// The compiler's passes stay near-linear on a deep model's training step (issue 23): the step of
// SyntheticModels.deepMLP (L layers of matmul + bias + tanh, MSE, Adam) has 2L parameters, so
// 6L same-shaped optimizer updates for multi-output fusion to merge and the scheduler to move
// across the backward pass. Each pass counts the steps of its shape-dependent searches
// (PassContext.work: fusion's candidate tries and cycle-check visits, multi-output fusion's
// sweeps, the scheduler's operand and reader visits); four times the layers must cost at most
// 4.5 times the work. Work is counted, not timed, so the test means the same on a loaded host.
import Testing
import TTIR
@testable import TTPasses
import TTTrain

struct CompileLinearityTests {
  /// The codegen pipeline on the deep MLP's Adam step: (work, ops before, ops after, schedule moves).
  static func optimizeStep(layers: Int) throws -> (work: Int, opsBefore: Int, opsAfter: Int, moved: Int) {
    let module = try Parser.parseAndVerify(SyntheticModels.deepMLP(layers: layers))
    var step = try TrainStep.build(module, loss: "loss", optimizer: OptimizerConfig(.adam))
    let before = step.functions.reduce(0) { $0 + $1.body.count }
    let context = PassContext()
    _ = try PassManager().run(Pipelines.codegen, on: &step, context: context)
    #expect(Verifier.verify(step).isEmpty)
    let function = step.functions.first { $0.name.hasSuffix(".train_step") }!
    return (context.work, before, function.body.count, context.statistics["schedule"]?["updates-moved"] ?? 0)
  }

  @Test func deepMLPStepPassesGrowLinearlyWithDepth() throws {
    let small = try Self.optimizeStep(layers: 64)
    let large = try Self.optimizeStep(layers: 256)
    let growth = Double(large.work) / Double(max(small.work, 1))
    print("compile linearity: deep MLP step, 64 layers: work \(small.work) over \(small.opsBefore) ops; 256 layers: work \(large.work) over \(large.opsBefore) ops (\(String(format: "%.2f", growth))x)")
    // The searches ran: the scheduler moved updates, and the work is more than one visit per op.
    #expect(small.moved > 0 && large.moved >= 4 * small.moved - 8)
    #expect(large.work > large.opsBefore)
    #expect(growth <= 4.5, "4x the layers took \(growth)x the passes' work")
    // And in absolute terms: a small multiple of the step's size.
    #expect(large.work <= 40 * large.opsBefore, "work \(large.work) for \(large.opsBefore) ops")
  }

  /// The scheduler's linear rewrite orders the step exactly as the array-insertion version it
  /// replaced (kept here as the oracle): each update right after the last op it must follow,
  /// moved ops in program order.
  @Test(arguments: [1, 3, 17])
  func linearSchedulingMatchesTheInsertionOracle(_ layers: Int) throws {
    let module = try Parser.parseAndVerify(SyntheticModels.deepMLP(layers: layers))
    for optimizer in [OptimizerConfig(.adam), OptimizerConfig(.sgd), OptimizerConfig(.rmsprop)] {
      var step = try TrainStep.build(module, loss: "loss", optimizer: optimizer)
      let unscheduled = Pipeline(Array(Pipelines.codegen.steps.dropLast()))
      _ = try PassManager().run(unscheduled, on: &step, context: PassContext())
      let function = step.functions.first { $0.name.hasSuffix(".train_step") }!
      var steps = 0
      let linear = UpdateScheduling.schedule(function, steps: &steps)
      let oracle = Self.insertionSchedule(function)
      #expect((linear?.body ?? function.body) == oracle.body, "\(layers) layers, \(optimizer.kind)")
      #expect((linear?.moved ?? 0) == oracle.moved)
      #expect(oracle.moved > 0)
    }
  }

  /// The bound can fail: the array-insertion scheduler's renumbering steps grow more than 4.5x
  /// from 64 to 256 layers (each update crosses the backward pass), where the linear one's
  /// counted steps grow about 4x.
  @Test func theInsertionSchedulersStepsWouldFailTheBound() throws {
    func steps(_ layers: Int) throws -> (insertion: Int, linear: Int) {
      let module = try Parser.parseAndVerify(SyntheticModels.deepMLP(layers: layers))
      var step = try TrainStep.build(module, loss: "loss", optimizer: OptimizerConfig(.adam))
      _ = try PassManager().run(Pipeline(Array(Pipelines.codegen.steps.dropLast())), on: &step, context: PassContext())
      let function = step.functions.first { $0.name.hasSuffix(".train_step") }!
      var linear = 0
      _ = UpdateScheduling.schedule(function, steps: &linear)
      return (Self.insertionSchedule(function).renumbered, linear)
    }
    let small = try steps(64), large = try steps(256)
    let insertionGrowth = Double(large.insertion) / Double(small.insertion)
    let linearGrowth = Double(large.linear) / Double(small.linear)
    print("schedule steps 64 -> 256 layers: insertion \(small.insertion) -> \(large.insertion) (\(insertionGrowth)x), linear \(small.linear) -> \(large.linear) (\(linearGrowth)x)")
    #expect(insertionGrowth > 4.5)
    #expect(linearGrowth <= 4.5)
  }

  /// The scheduler before issue 23: each move an array removal and insertion, positions
  /// renumbered (`renumbered` counts the positions rewritten).
  static func insertionSchedule(_ input: Function) -> (body: [OpID], moved: Int, renumbered: Int) {
    var function = input
    let returned = Set(function.returnValues)
    var moved = 0, renumbered = 0
    var movedOps = Set<OpID>()
    var users: [ValueID: [OpID]] = [:]
    for other in function.body { for v in function[other].operands { users[v, default: []].append(other) } }
    var position: [OpID: Int] = [:]
    for (i, other) in function.body.enumerated() { position[other] = i }
    for id in function.body {
      let op = function[id]
      guard !op.code.info.hasSideEffects else { continue }
      let update = UpdateScheduling.isStateUpdate(op, function: function, returned: returned)
      guard update || UpdateScheduling.isSmall(op, function: function) else { continue }
      let resultTypes = Set(op.results.map { function.type(of: $0) })
      var last = -1
      for v in op.operands {
        if case .result(let producer, _) = function[v].definition, let p = position[producer] { last = max(last, p) }
        guard update, resultTypes.contains(function.type(of: v)), case .argument = function[v].definition else { continue }
        for reader in users[v] ?? [] where reader != id { last = max(last, position[reader]!) }
      }
      let current = position[id]!
      var target = last + 1
      while target < current && movedOps.contains(function.body[target]) { target += 1 }
      guard target < current else { continue }
      function.body.remove(at: current)
      function.body.insert(id, at: target)
      for i in target...current { position[function.body[i]] = i }
      renumbered += current - target + 1
      movedOps.insert(id)
      moved += 1
    }
    return (function.body, moved, renumbered)
  }
}
