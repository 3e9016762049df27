// Training from Swift through the public API only (no @testable import): parse a module, set
// TrainingOptions, run a TrainingLoop, read the losses, evaluate, and round-trip the checkpoint.
// This file does not compile if an entry point it uses is not public.
import Foundation
import Testing
import TTIR
import TTTrain

struct PublicAPITests {
  static let model = """
    module @classifier {
      param @w : f32[4, 1] = zeros
      param @b : f32[1] = zeros

      func @predict(%x: f32[B, 4]) -> f32[B] {
        %z = matmul %x, @w : f32[B, 1]
        %zb = add %z, @b : f32[B, 1]
        %z1 = reshape %zb : f32[B]
        %p = sigmoid %z1 : f32[B]
        return %p
      }

      func @loss(%x: f32[B, 4], %y: f32[B]) -> f32[] {
        %z = matmul %x, @w : f32[B, 1]
        %zb = add %z, @b : f32[B, 1]
        %z1 = reshape %zb : f32[B]
        %l = sigmoid_cross_entropy %z1, %y : f32[B]
        %m = reduce_mean %l : f32[]
        return %m
      }
    }
    """

  /// Points whose label is whether x0 + x1 - x2 > 0 (x3 is noise), from a fixed linear
  /// congruential sequence.
  static func data(count: Int, seed: UInt64) throws -> Dataset {
    var state = seed &* 6364136223846793005 &+ 1442695040888963407
    func uniform() -> Double {
      state = state &* 6364136223846793005 &+ 1442695040888963407
      return Double(state >> 11) / Double(1 << 53) * 2 - 1
    }
    var x: [Double] = [], y: [Double] = []
    for _ in 0..<count {
      let row = (0..<4).map { _ in uniform() }
      x += row
      y.append(row[0] + row[1] - row[2] > 0 ? 1 : 0)
    }
    return try Dataset(columns: ["x": Tensor(.f32, shape: [count, 4], floats: x), "y": Tensor(.f32, shape: [count], floats: y)])
  }

  @Test func trainsEvaluatesAndRoundTripsTheCheckpoint() throws {
    let module = try Parser.parseAndVerify(Self.model)
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("ttfc-public-api-\(UUID().uuidString)").path
    defer { try? FileManager.default.removeItem(atPath: directory) }
    var options = TrainingOptions()
    options.batch = 32
    options.epochs = 5
    options.learningRate = 0.05
    options.seed = 7
    options.checkpointDirectory = directory
    var optimizer = OptimizerConfig(.adam)
    optimizer.clipNorm = 10
    let trainData = try Self.data(count: 512, seed: 1)
    let evalData = try Self.data(count: 256, seed: 2)

    let loop = try TrainingLoop(module: module, loss: "loss", optimizer: optimizer, data: trainData, evalData: evalData, options: options)
    #expect(loop.totalSteps == 5 * 16)
    let untrained = try loop.evaluate()
    var steps = 0
    let finished = try loop.run { event in if event.kind == .step { steps += 1 } }
    #expect(finished)
    #expect(steps == loop.totalSteps && loop.losses.count == loop.totalSteps && loop.trainer.stepCount == loop.totalSteps)
    #expect(abs(loop.losses[0] - log(2.0)) < 1e-6, "zero weights start at log 2: \(loop.losses[0])")
    let first = loop.losses.prefix(8).reduce(0, +) / 8, last = loop.losses.suffix(8).reduce(0, +) / 8
    #expect(last < first * 0.5, "training loss \(first) -> \(last)")
    let trained = try loop.evaluate()
    #expect(trained["loss"]! < untrained["loss"]! * 0.5, "evaluation \(untrained) -> \(trained)")
    #expect(trained["auc"]! > 0.95, "evaluation \(trained)")

    // The checkpoint holds the parameters as trained, under their names, and the step.
    let path = try #require(loop.checkpointPath)
    #expect(path == (directory as NSString).appendingPathComponent("checkpoint.safetensors"))
    let checkpoint = try Checkpoint.read(from: path)
    let saved = Dictionary(uniqueKeysWithValues: checkpoint.tensors.map { ($0.name, $0.tensor) })
    let params = loop.trainer.params
    #expect(Set(params.keys) == ["w", "b"])
    for (name, value) in params { #expect(saved[name] == value, "'\(name)' in the checkpoint") }
    #expect(saved["m.w"] != nil && saved["v.b"] != nil, "Adam's slots: \(saved.keys.sorted())")
    #expect(checkpoint.metadata["step"] == String(loop.totalSteps))

    // A new loop resumes it: the same parameters and step, the same evaluation; after more steps
    // of the same run it goes on from there.
    let resumed = try TrainingLoop(module: module, loss: "loss", optimizer: optimizer, data: trainData, evalData: evalData, options: options)
    #expect(try resumed.resume())
    #expect(resumed.trainer.stepCount == loop.totalSteps)
    #expect(resumed.trainer.params == params)
    #expect(try resumed.evaluate() == trained)
    #expect(try resumed.run())
    #expect(resumed.losses.isEmpty, "every step was already taken")
  }

  /// A CSV file with a header trains the same model: `%x : f32[B, 4]` reads columns x_0 ... x_3.
  @Test func trainsOnACSVFile() throws {
    let module = try Parser.parseAndVerify(Self.model)
    let data = try Self.data(count: 256, seed: 3)
    let x = data.columns["x"]!.doubles, y = data.columns["y"]!.doubles
    var text = "x_0,x_1,x_2,x_3,y\n"
    for i in 0..<data.count { text += (x[(4 * i)..<(4 * i + 4)].map { "\($0)" } + ["\(Int(y[i]))"]).joined(separator: ",") + "\n" }
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("ttfc-public-api-\(UUID().uuidString).csv").path
    defer { try? FileManager.default.removeItem(atPath: path) }
    try text.write(toFile: path, atomically: true, encoding: .utf8)

    var options = TrainingOptions()
    options.batch = 16
    options.epochs = 4
    options.learningRate = 0.05
    let loop = try TrainingLoop(module: module, loss: "loss", optimizer: OptimizerConfig(.adam), data: Dataset.load(path), options: options)
    try loop.run()
    let first = loop.losses.prefix(8).reduce(0, +) / 8, last = loop.losses.suffix(8).reduce(0, +) / 8
    #expect(last < first * 0.6, "training loss \(first) -> \(last)")
  }
}
