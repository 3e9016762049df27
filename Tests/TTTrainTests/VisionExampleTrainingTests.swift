// examples/resnet_small.ttir and examples/inception_small.ttir train (the path `ttfc train`
// takes: TrainingLoop over the compiled step): a few Adam steps on separable synthetic 8x8 digits
// lower the training loss, the running statistics move, and evaluation (@eval_loss on them,
// @accuracy) runs. The real-data run (scikit-learn's digits, >= 97% test accuracy) is documented in
// IR-specs/training.md; it takes minutes on the interpreter's convolutions.
import Foundation
import Testing
import TTIR
import TTInterp
import TTTrain

struct VisionExampleTrainingTests {
  static let examples = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("examples")

  /// Ten classes of 8x8 images: class c lights row c % 8 (c < 8) or a diagonal (8, 9), plus noise.
  static func data(count: Int, seed: UInt64) throws -> Dataset {
    var pixels: [Double] = [], labels: [Int64] = []
    for i in 0..<count {
      let label = i % 10
      for r in 0..<8 {
        for c in 0..<8 {
          let on = label < 8 ? r == label : (label == 8 ? r == c : r == 7 - c)
          pixels.append((on ? 1.0 : 0.0) + 0.2 * SeededRandom.normal(seed, UInt64(i * 64 + r * 8 + c), 0))
        }
      }
      labels.append(Int64(label))
    }
    return try Dataset(columns: ["x": Tensor(.f32, shape: [count, 8, 8, 1], floats: pixels),
                                 "y": Tensor(.i32, shape: [count], ints: labels)])
  }

  @Test(arguments: ["resnet_small.ttir", "inception_small.ttir"])
  func aFewStepsLowerTheLoss(_ file: String) throws {
    let module = try Parser.parseAndVerify(String(contentsOf: Self.examples.appendingPathComponent(file), encoding: .utf8))
    var options = TrainingOptions()
    options.batch = 20; options.steps = 12; options.learningRate = 0.01; options.seed = 1
    let loop = try TrainingLoop(module: module, loss: "loss", optimizer: OptimizerConfig(.adam),
                                data: try Self.data(count: 60, seed: 2), evalData: try Self.data(count: 20, seed: 3),
                                options: options)
    _ = try loop.run { _ in }
    let losses = loop.losses
    #expect(losses.count == 12)
    let first = losses.prefix(3).reduce(0, +) / 3, last = losses.suffix(3).reduce(0, +) / 3
    #expect(last < 0.8 * first, "training loss \(losses)")
    // The running statistics left their initial values (zeros, ones) and evaluation reads them.
    let states = module.params.filter(\.isState).map(\.name)
    #expect(!states.isEmpty)
    for name in states where name.hasSuffix("mean") {
      #expect(loop.trainer.params[name]!.doubles.contains { $0 != 0 }, "\(name) never updated")
    }
    let metrics = try loop.evaluate()
    #expect(metrics["loss"]!.isFinite)
    #expect(metrics["accuracy"] != nil)
  }
}
