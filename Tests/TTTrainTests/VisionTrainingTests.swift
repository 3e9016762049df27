// Training a small convolutional network with batch norm: non-trained state (`state`) updated by
// the step's own results (running statistics with momentum), untouched by the optimizer, kept in
// checkpoints and resumed bit for bit, and read by evaluation (batch_norm_inference).
import Foundation
import Testing
import TTIR
import TTInterp
import TTTrain

enum VisionFixtures {
  static let source = """
    module @cnn {
      param @w1 : f32[3, 3, 1, 4] = he_normal(seed: 1)
      param @gamma : f32[4] = ones
      param @beta : f32[4] = zeros
      state @bn.mean : f32[4] = zeros
      state @bn.var : f32[4] = ones
      param @w2 : f32[4, 3] = glorot_uniform(seed: 2)

      func @head(%n: f32[B, 6, 6, 4], %y: i32[B]) -> f32[] {
        %r = relu %n : f32[B, 6, 6, 4]
        %p = max_pool %r {padding = "SAME", strides = [2, 2], window = [3, 3]} : f32[B, 3, 3, 4]
        %g = reduce_mean %p {axes = [1, 2]} : f32[B, 4]
        %l = matmul %g, @w2 : f32[B, 3]
        %ce = softmax_cross_entropy %l, %y : f32[B]
        %loss = reduce_mean %ce : f32[]
        return %loss
      }

      func @loss(%x: f32[B, 6, 6, 1], %y: i32[B]) -> (f32[], f32[4], f32[4]) {
        %c = conv2d %x, @w1 {padding = "SAME"} : f32[B, 6, 6, 4]
        %n, %m, %v = batch_norm_training %c, @gamma, @beta {epsilon = 0.001} : f32[B, 6, 6, 4], f32[4], f32[4]
        %loss = call @head(%n, %y) : f32[]
        %keep = constant 0.9 : f32[]
        %take = constant 0.1 : f32[]
        %m0 = mul @bn.mean, %keep : f32[4]
        %m1 = mul %m, %take : f32[4]
        %mean = add %m0, %m1 : f32[4]
        %v0 = mul @bn.var, %keep : f32[4]
        %v1 = mul %v, %take : f32[4]
        %var = add %v0, %v1 : f32[4]
        return %loss, %mean, %var
      }

      func @eval_loss(%x: f32[B, 6, 6, 1], %y: i32[B]) -> f32[] {
        %c = conv2d %x, @w1 {padding = "SAME"} : f32[B, 6, 6, 4]
        %n = batch_norm_inference %c, @gamma, @beta, @bn.mean, @bn.var {epsilon = 0.001} : f32[B, 6, 6, 4]
        %loss = call @head(%n, %y) : f32[]
        return %loss
      }
    }
    """

  static func data(count: Int, seed: UInt64) throws -> Dataset {
    // Three classes: a bright row, a bright column, or noise, on 6x6 images.
    var pixels: [Double] = [], labels: [Int64] = []
    for i in 0..<count {
      let label = Int64(i % 3)
      for r in 0..<6 {
        for c in 0..<6 {
          let noise = 0.3 * SeededRandom.normal(seed, UInt64(i * 36 + r * 6 + c), 0)
          let bright = (label == 0 && r == 2) || (label == 1 && c == 3)
          pixels.append((bright ? 1.5 : 0) + noise)
        }
      }
      labels.append(label)
    }
    return try Dataset(columns: ["x": Tensor(.f32, shape: [count, 6, 6, 1], floats: pixels),
                                 "y": Tensor(.i32, shape: [count], ints: labels)])
  }
}

struct VisionTrainingTests {
  @Test func stateDeclarationsRoundTripAndAreNotTrained() throws {
    let module = try Parser.parseAndVerify(VisionFixtures.source)
    #expect(module.stateParams.map(\.name) == ["bn.mean", "bn.var"])
    #expect(module.trainedParams.map(\.name) == ["w1", "gamma", "beta", "w2"])
    let printed = Printer.print(module)
    #expect(printed.contains("  state @bn.mean : f32[4] = zeros\n"))
    #expect(Printer.print(try Parser.parseAndVerify(printed)) == printed)
    // The gradient function returns the trained parameters' gradients, then the new state.
    let grad = try #require(try Autodiff.gradient(of: module, function: "loss").function(named: "loss.grad"))
    #expect(grad.resultTypes.map(\.description) == ["f32[]", "f32[3, 3, 1, 4]", "f32[4]", "f32[4]", "f32[4, 3]", "f32[4]", "f32[4]"])
  }

  @Test func aStepUpdatesTheRunningStatisticsWithMomentum() throws {
    let module = try Parser.parseAndVerify(VisionFixtures.source)
    let trainer = try Trainer(module: module, loss: "loss", optimizer: OptimizerConfig(.sgd))
    #expect(trainer.stateNames == ["w1", "gamma", "beta", "bn.mean", "bn.var", "w2"])   // SGD: no slots
    let data = try VisionFixtures.data(count: 12, seed: 3)
    let batch = [try data.column(for: "x", type: TensorType(.f32, [.symbol("B"), .known(6), .known(6), .known(1)])),
                 try data.column(for: "y", type: TensorType(.i32, [.symbol("B")]))]
    let before = trainer.params
    let expected = try Interpreter(module: module, params: before).run("loss", batch)
    let loss = try trainer.step(batch, lr: 0.1)
    #expect(abs(loss - expected[0].doubles[0]) < 1e-5)
    let after = trainer.params
    for (k, name) in ["bn.mean", "bn.var"].enumerated() {
      let got = after[name]!.doubles, want = expected[k + 1].doubles
      for i in got.indices { #expect(abs(got[i] - want[i]) <= 1e-6 * max(1, abs(want[i])), "\(name)[\(i)]: \(got[i]) vs \(want[i])") }
      #expect(got != before[name]!.doubles)
    }
    #expect(after["w1"]!.doubles != before["w1"]!.doubles)
    #expect(after["gamma"]!.doubles != before["gamma"]!.doubles)
  }

  @Test func stateIsCheckpointedResumedBitForBitAndUsedByEvaluation() throws {
    let module = try Parser.parseAndVerify(VisionFixtures.source)
    let data = try VisionFixtures.data(count: 40, seed: 5)
    let evalData = try VisionFixtures.data(count: 9, seed: 6)
    func options(_ directory: String?) -> TrainingOptions {
      var o = TrainingOptions()
      o.batch = 8; o.steps = 10; o.learningRate = 0.05; o.seed = 2; o.checkpointDirectory = directory
      return o
    }
    let straight = try TrainingLoop(module: module, loss: "loss", optimizer: OptimizerConfig(.adam), data: data, evalData: evalData,
                                    options: options(nil))
    _ = try straight.run { _ in }
    let directory = TrainingFixtures.temporaryDirectory()
    let first = try TrainingLoop(module: module, loss: "loss", optimizer: OptimizerConfig(.adam), data: data, evalData: evalData,
                                 options: options(directory))
    first.stopRequested = { first.trainer.stepCount >= 4 }
    #expect(try first.run { _ in } == false)
    let saved = try Checkpoint.read(from: directory + "/checkpoint.safetensors")
    let savedNames = Set(saved.tensors.map(\.name))
    #expect(savedNames.isSuperset(of: ["bn.mean", "bn.var", "m.w1", "v.gamma"]))
    #expect(!savedNames.contains("m.bn.mean") && !savedNames.contains("v.bn.var"))   // no optimizer slots for state
    let second = try TrainingLoop(module: module, loss: "loss", optimizer: OptimizerConfig(.adam), data: data, evalData: evalData,
                                  options: options(directory))
    #expect(try second.resume())
    _ = try second.run { _ in }
    #expect(second.trainer.stateNames == straight.trainer.stateNames)
    for (a, b) in zip(straight.trainer.state, second.trainer.state) { #expect(a.isIdentical(to: b)) }
    // Evaluation runs @eval_loss on the running statistics the training kept.
    let metrics = try second.evaluate()
    let params = second.trainer.params
    let columns = [try evalData.column(for: "x", type: TensorType(.f32, [.symbol("B"), .known(6), .known(6), .known(1)])),
                   try evalData.column(for: "y", type: TensorType(.i32, [.symbol("B")]))]
    let interpreted = try Interpreter(module: module, params: params).run("eval_loss", columns)[0].doubles[0]
    let got = try #require(metrics["loss"])
    #expect(abs(got - interpreted) < 1e-5 * max(1, abs(interpreted)), "\(got) vs \(interpreted)")
    var frozen = params
    frozen["bn.mean"] = Tensor.filled(.f32, shape: [4], value: 0)
    frozen["bn.var"] = Tensor.filled(.f32, shape: [4], value: 1)
    let withInitialStatistics = try Interpreter(module: module, params: frozen).run("eval_loss", columns)[0].doubles[0]
    #expect(abs(withInitialStatistics - interpreted) > 1e-4)
  }

  @Test func aSmallConvNetLearnsAndEvaluatesOnItsRunningStatistics() throws {
    let module = try Parser.parseAndVerify(VisionFixtures.source)
    let data = try VisionFixtures.data(count: 48, seed: 8)
    let evalData = try VisionFixtures.data(count: 30, seed: 9)
    var options = TrainingOptions()
    options.batch = 16; options.steps = 60; options.learningRate = 0.05; options.seed = 4
    let loop = try TrainingLoop(module: module, loss: "loss", optimizer: OptimizerConfig(.adam), data: data, evalData: evalData,
                                options: options)
    let before = try #require(try loop.evaluate()["loss"])
    _ = try loop.run { _ in }
    let after = try #require(try loop.evaluate()["loss"])
    #expect(after < 0.5 * before, "evaluation loss \(before) -> \(after)")
  }

  /// Mixed precision (the amp rewrite: convolutions in the half type, batch norm in f32): the
  /// running statistics still follow the batch statistics of the step, and a step that loss
  /// scaling skips (an overflowing scale in f16) leaves them as they were, like the parameters.
  @Test(arguments: [DType.bf16, .f16])
  func mixedPrecisionStepsUpdateTheStateAndSkippedOnesKeepIt(_ half: DType) throws {
    let module = try Parser.parseAndVerify(VisionFixtures.source)
    let precision = MixedPrecisionOptions(halfType: half, lossScaling: half == .f16 ? .dynamic(initial: 1e30, growth: 2, backoff: 0.5, interval: 2000, minimum: 1, maximum: 1e30) : nil,
                                          policy: try MixedPrecisionOptions.policy(named: "fixed:\(half)"))
    let trainer = try Trainer(module: module, loss: "loss", optimizer: OptimizerConfig(.sgd), mixedPrecision: precision)
    let data = try VisionFixtures.data(count: 12, seed: 3)
    let batch = [try data.column(for: "x", type: TensorType(.f32, [.symbol("B"), .known(6), .known(6), .known(1)])),
                 try data.column(for: "y", type: TensorType(.i32, [.symbol("B")]))]
    let before = trainer.params
    let expected = try Interpreter(module: module, params: before).run("loss", batch)
    try trainer.step(batch, lr: 0.1)
    let after = trainer.params
    if half == .f16 {
      // A loss scale of 1e30 overflows f16: dynamic scaling skips the update, state included.
      #expect(trainer.lastStep?.updateSkipped == true)
      #expect(after["bn.mean"]!.isIdentical(to: before["bn.mean"]!) && after["bn.var"]!.isIdentical(to: before["bn.var"]!))
      #expect(after["w1"]!.isIdentical(to: before["w1"]!))
    } else {
      // The convolution ran in bf16 (8 bits of mantissa): the statistics agree to about 1%.
      for (k, name) in ["bn.mean", "bn.var"].enumerated() {
        let got = after[name]!.doubles, want = expected[k + 1].doubles
        for i in got.indices { #expect(abs(got[i] - want[i]) <= 0.02 * max(1, abs(want[i])), "\(name)[\(i)]: \(got[i]) vs \(want[i])") }
      }
      #expect(after["w1"]!.doubles != before["w1"]!.doubles)
    }
  }

  @Test func aLossThatDoesNotReturnTheStateIsRefusedByName() throws {
    let source = VisionFixtures.source
      .replacingOccurrences(of: "-> (f32[], f32[4], f32[4]) {", with: "-> (f32[], f32[4]) {")
      .replacingOccurrences(of: "return %loss, %mean, %var", with: "return %loss, %mean")
    let module = try Parser.parseAndVerify(source)
    do {
      _ = try Trainer(module: module, loss: "loss", optimizer: OptimizerConfig(.sgd))
      Issue.record("a loss without every state's new value must be refused")
    } catch {
      #expect("\(error)".contains("must return the loss and then the new value of every state, in declaration order ('@bn.mean' f32[4], '@bn.var' f32[4]); it returns f32[], f32[4]"), "\(error)")
    }
  }
}
