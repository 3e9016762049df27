// Training end to end: the example models learn their synthetic data; a run interrupted by a
// checkpoint and resumed is bit-identical to an uninterrupted one; damaged checkpoints are refused
// with a named error and a failed save leaves the previous checkpoint intact.
import Foundation
import Testing
import TTIR
import TTInterp
import TTRuntime
@testable import TTTrain

enum TrainingFixtures {
  static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

  static func module(_ name: String) throws -> Module {
    try Parser.parseAndVerify(String(contentsOf: root.appendingPathComponent("examples/\(name)"), encoding: .utf8))
  }

  /// A logistic-regression problem with a known teacher (seeded), for logreg.ttir.
  static func logregData(count: Int, seed: UInt64) throws -> Dataset {
    let teacher = (0..<16).map { SeededRandom.normal(99, UInt64($0), 0) }
    var x: [Double] = [], y: [Double] = []
    for i in 0..<count {
      let row = (0..<16).map { SeededRandom.normal(seed, UInt64(i * 16 + $0), 1) }
      let z = zip(row, teacher).reduce(0) { $0 + $1.0 * $1.1 }
      x += row
      y.append(SeededRandom.uniform(seed, UInt64(i), 2) < 1 / (1 + exp(-z)) ? 1 : 0)
    }
    return try Dataset(columns: ["x": Tensor(.f32, shape: [count, 16], floats: x), "y": Tensor(.f32, shape: [count], floats: y)])
  }

  static func temporaryDirectory() -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("ttfc-train-\(UUID().uuidString)").path
    try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
  }
}

struct TrainingTests {
  @Test func logisticRegressionLearnsItsTeacher() throws {
    var options = TrainingOptions()
    options.batch = 64
    options.epochs = 4
    options.learningRate = 0.05
    options.evalEvery = Int.max
    let loop = try TrainingLoop(module: TrainingFixtures.module("logreg.ttir"), loss: "loss", optimizer: OptimizerConfig(.adam),
                                data: TrainingFixtures.logregData(count: 2048, seed: 1),
                                evalData: TrainingFixtures.logregData(count: 512, seed: 2), options: options)
    var evaluation: [String: Double] = [:]
    _ = try loop.run { if $0.kind == .evaluation { evaluation = $0.metrics } }
    let firstLosses = loop.losses.prefix(8).reduce(0, +) / 8
    let lastLosses = loop.losses.suffix(8).reduce(0, +) / 8
    #expect(lastLosses < firstLosses * 0.7, "loss \(firstLosses) -> \(lastLosses)")
    // The teacher itself reaches an AUC of about 0.93 on this data; the student must get close.
    #expect((evaluation["auc"] ?? 0) > 0.88, "eval \(evaluation)")
    #expect((evaluation["loss"] ?? 1) < 0.45, "eval \(evaluation)")
  }

  /// Evaluation executables are built once and given the trained parameters at each evaluation:
  /// the metrics after training equal those of a loop built fresh on the trained parameters.
  /// Parameters are drawn straight into the step's buffers on the first step: the values are the
  /// interpreter's (`ParamInitializer.materialize`), bit for bit, before and after that step.
  @Test func initialParametersAreTheInitializersValues() throws {
    let module = try TrainingFixtures.module("mlp_w4.ttir")
    let trainer = try Trainer(module: module, loss: "loss", optimizer: OptimizerConfig(.sgd))
    let expected = Dictionary(uniqueKeysWithValues: try module.params.map { p in
      (p.name, try ParamInitializer.materialize(p.initializer!, type: p.type, name: p.name))
    })
    for (name, t) in trainer.params { #expect(t.isIdentical(to: expected[name]!), "\(name) before the first step") }
    let x = Tensor(.f32, shape: [4, 512], floats: (0..<2048).map { Double($0 % 7) / 7 })
    let y = Tensor(.f32, shape: [4], floats: [0, 1, 1, 0])
    try trainer.step([x, y], lr: 0)   // p - 0 * g = p
    for (name, t) in trainer.params { #expect(t.isIdentical(to: expected[name]!), "\(name) in the step's buffers") }
  }

  @Test func evaluationFollowsTheTrainedParameters() throws {
    let module = try TrainingFixtures.module("logreg.ttir")
    var options = TrainingOptions()
    options.batch = 64
    options.steps = 6
    options.learningRate = 0.05
    options.evalEvery = Int.max
    let data = try TrainingFixtures.logregData(count: 1024, seed: 3), evalData = try TrainingFixtures.logregData(count: 256, seed: 4)
    let loop = try TrainingLoop(module: module, loss: "loss", optimizer: OptimizerConfig(.adam), data: data, evalData: evalData, options: options)
    let before = try loop.evaluate()
    _ = try loop.run { _ in }
    let after = try loop.evaluate()
    var fresh = options
    fresh.initialParams = loop.trainer.params
    let reference = try TrainingLoop(module: module, loss: "loss", optimizer: OptimizerConfig(.adam), data: data, evalData: evalData,
                                     options: fresh).evaluate()
    #expect(before["loss"] != after["loss"])
    #expect(after == reference, "cached \(after) vs fresh \(reference)")
    let cached = try #require(loop.evaluationExecutables["loss"])
    _ = try loop.evaluate()
    #expect(loop.evaluationExecutables["loss"] === cached)
  }

  @Test func resumingIsBitIdentical() throws {
    let module = try TrainingFixtures.module("logreg.ttir")
    let data = try TrainingFixtures.logregData(count: 300, seed: 5)   // 300/64: the epoch ends mid-batch
    func options(_ steps: Int, _ directory: String?) -> TrainingOptions {
      var o = TrainingOptions()
      o.batch = 64; o.steps = steps; o.learningRate = 0.03; o.schedule = .init(.cosine(finalFraction: 0.1), warmup: 3)
      o.seed = 11; o.checkpointDirectory = directory
      return o
    }
    // 2N steps straight.
    let straight = try TrainingLoop(module: module, loss: "loss", optimizer: OptimizerConfig(.adam), data: data, options: options(12, nil))
    _ = try straight.run { _ in }
    // The same run interrupted after N steps (as Ctrl-C does: it saves a checkpoint), then a new
    // loop resumes from the checkpoint and runs the N remaining steps.
    let directory = TrainingFixtures.temporaryDirectory()
    let first = try TrainingLoop(module: module, loss: "loss", optimizer: OptimizerConfig(.adam), data: data, options: options(12, directory))
    first.stopRequested = { first.trainer.stepCount >= 6 }
    #expect(try first.run { _ in } == false)
    let second = try TrainingLoop(module: module, loss: "loss", optimizer: OptimizerConfig(.adam), data: data, options: options(12, directory))
    #expect(try second.resume())
    #expect(second.trainer.stepCount == 6)
    _ = try second.run { _ in }
    for (a, b) in zip(straight.trainer.state, second.trainer.state) { #expect(a.isIdentical(to: b)) }
    #expect(straight.losses.suffix(6) == second.losses[...])
  }

  @Test func damagedCheckpointsAreRefusedByName() throws {
    let module = try TrainingFixtures.module("logreg.ttir")
    let directory = TrainingFixtures.temporaryDirectory()
    var options = TrainingOptions()
    options.batch = 32; options.steps = 3; options.checkpointDirectory = directory
    let loop = try TrainingLoop(module: module, loss: "loss", optimizer: OptimizerConfig(.sgd),
                                data: TrainingFixtures.logregData(count: 100, seed: 3), options: options)
    _ = try loop.run { _ in }
    let path = directory + "/checkpoint.safetensors"
    let good = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
    #expect(try Checkpoint.decode(good, path: path).tensors.count == 2)

    var flipped = good
    flipped[flipped.count - 3] ^= 0x40
    #expect(throws: CheckpointError.self) { try Checkpoint.decode(flipped, path: path) }
    do { _ = try Checkpoint.decode(flipped, path: path) } catch { #expect("\(error)".contains("CRC-32")) }
    do { _ = try Checkpoint.decode(Array(good.dropLast(10)), path: path) } catch { #expect("\(error)".contains("truncated")) }
    do { _ = try Checkpoint.decode(Array(good.prefix(5)), path: path) } catch { #expect("\(error)".contains("shorter than")) }
    #expect(throws: CheckpointError.notFound(directory + "/nothing.safetensors")) { try Checkpoint.read(from: directory + "/nothing.safetensors") }

    // Another model (different layer size) refuses the checkpoint.
    let other = try Parser.parseAndVerify(Printer.print(module).replacingOccurrences(of: "param @b : f32[1] = zeros", with: "param @b : f32[1] = ones"))
    var otherOptions = options
    otherOptions.steps = 6
    let mismatched = try TrainingLoop(module: other, loss: "loss", optimizer: OptimizerConfig(.sgd),
                                      data: TrainingFixtures.logregData(count: 100, seed: 3), options: otherOptions)
    do { try mismatched.resume(); Issue.record("resume should fail") } catch { #expect("\(error)".contains("another model")) }
  }

  @Test func aFailedSaveKeepsThePreviousCheckpoint() throws {
    let directory = TrainingFixtures.temporaryDirectory()
    let path = directory + "/checkpoint.safetensors"
    let first = Checkpoint(tensors: [("w", Tensor(.f32, shape: [2], floats: [1, 2]))], metadata: ["step": "1"])
    try first.write(to: path)
    // A writer killed mid-save leaves only its temporary file behind; the checkpoint is untouched.
    try Data([1, 2, 3]).write(to: URL(fileURLWithPath: path + ".tmp-99999"))
    #expect(try Checkpoint.read(from: path).metadata["step"] == "1")
    // Saving into an unwritable place fails by name and leaves the old file as it was.
    let blocked = directory + "/blocked"
    try Data().write(to: URL(fileURLWithPath: blocked))          // a file where a directory is needed
    #expect(throws: CheckpointError.self) { try first.write(to: blocked + "/checkpoint.safetensors") }
    let second = Checkpoint(tensors: [("w", Tensor(.f32, shape: [2], floats: [3, 4]))], metadata: ["step": "2"])
    try second.write(to: path)
    #expect(try Checkpoint.read(from: path).tensors[0].tensor.doubles == [3, 4])
    let leftovers = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.contains(".tmp-") && !$0.hasSuffix("99999") }
    #expect(leftovers.isEmpty)
  }

  @Test func aucAndSchedules() {
    #expect(TrainingLoop.auc(scores: [0.1, 0.4, 0.35, 0.8], labels: [0, 0, 1, 1]) == 0.75)
    #expect(TrainingLoop.auc(scores: [0.5, 0.5], labels: [0, 1]) == 0.5)
    let cosine = LearningRateSchedule.parse("warmup:10+cosine")!
    #expect(cosine.rate(base: 1, step: 5, total: 110) == 0.5)
    #expect(abs(cosine.rate(base: 1, step: 110, total: 110)) < 1e-12)
    #expect(LearningRateSchedule.parse("step:100:0.5")!.rate(base: 1, step: 201, total: 1000) == 0.25)
    #expect(LearningRateSchedule.parse("bogus") == nil)
  }
}
