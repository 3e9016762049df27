// Training on a stream of varying batch sizes: with every bucket policy the parameters after each
// step equal, bit for bit, those of a trainer that runs every batch in an exact-shape layout, and
// closely those of a trainer recompiled for each static shape (XLA's way: a different compile,
// so the same math in possibly another association order). Gradients through bucketed layouts
// equal exact-shape gradients too.
import Foundation
import Testing
import TTCompiler
import TTIR
import TTInterp
import TTRuntime
import TTTrain

struct BucketedTrainingTests {
  static func batch(_ size: Int, step: Int) -> [Tensor] {
    let x = (0..<(size * 784)).map { SeededRandom.uniform(UInt64(step), UInt64($0), 1) * 255 }
    let y = (0..<size).map { Int64(SeededRandom.uniform(UInt64(step), UInt64($0), 2) * 10) }
    return [Tensor(.f32, shape: [size, 784], floats: x), Tensor(.i32, shape: [size], ints: y)]
  }

  static let sizes = [32, 7, 1, 19, 32, 3, 26, 12, 31, 5, 17, 2]

  @Test(arguments: [BucketPolicy.powersOfTwo, .adaptive, .list([8, 32]), .geometric(ratio: 2.5)])
  func varyingBatchesTrainExactlyAsExactShapes(_ policy: BucketPolicy) throws {
    let module = try TrainingFixtures.module("mlp.ttir")
    let bucketed = try Trainer(module: module, loss: "loss", optimizer: OptimizerConfig(.adam), bucketPolicy: policy)
    let exact = try Trainer(module: module, loss: "loss", optimizer: OptimizerConfig(.adam), bucketPolicy: .exact)
    for (step, size) in Self.sizes.enumerated() {
      let b = Self.batch(size, step: step)
      let l1 = try bucketed.step(b, lr: 1e-3)
      let l2 = try exact.step(b, lr: 1e-3)
      #expect(l1 == l2, "step \(step) B=\(size): loss \(l1) vs \(l2)")
    }
    for (a, b) in zip(bucketed.state, exact.state) { #expect(a.isIdentical(to: b)) }
    let stats = bucketed.shapes.statistics
    #expect(stats.runs == Self.sizes.count)
    #expect(bucketed.shapes.executable.layoutBytes.count < Set(Self.sizes).count, "\(policy): \(bucketed.shapes.executable.layoutBytes.keys)")
    #expect(bucketed.compileStatistics.kernels == exact.compileStatistics.kernels)
  }

  @Test func varyingBatchesMatchAStaticCompilePerShape() throws {
    let module = try TrainingFixtures.module("mlp.ttir")
    let text = Printer.print(module)
    let bucketed = try Trainer(module: module, loss: "loss", optimizer: OptimizerConfig(.adam), bucketPolicy: .powersOfTwo)
    var state: [String: Tensor]? = nil
    for (step, size) in Self.sizes.prefix(6).enumerated() {
      let b = Self.batch(size, step: step)
      let lossBucketed = try bucketed.step(b, lr: 1e-3)
      // The XLA way: this shape's own static compile, continuing from the previous state.
      let staticModule = try Parser.parseAndVerify(text.replacingOccurrences(of: "[B", with: "[\(size)"))
      let specialized = try Trainer(module: staticModule, loss: "loss", optimizer: OptimizerConfig(.adam))
      if let state { try specialized.restore(state, step: step) }
      let lossStatic = try specialized.step(b, lr: 1e-3)
      #expect(abs(lossBucketed - lossStatic) <= 1e-6 * abs(lossStatic), "step \(step): \(lossBucketed) vs \(lossStatic)")
      state = Dictionary(uniqueKeysWithValues: zip(specialized.stateNames, specialized.state))
      for (name, t) in zip(bucketed.stateNames, bucketed.state) {
        let reference = state![name]!
        let worst = zip(t.doubles, reference.doubles).map { abs($0 - $1) / max(abs($1), 1e-3) }.max() ?? 0
        #expect(worst < 1e-4, "step \(step) \(name): relative difference \(worst)")
      }
      // Continue both from identical state so differences cannot accumulate.
      try bucketed.restore(state!, step: step + 1)
    }
  }

  @Test func gradientsInBucketsEqualExactShapeGradients() throws {
    for file in ["mlp.ttir", "wide_deep.ttir", "logreg.ttir"] {
      let module = try TrainingFixtures.module(file)
      let gradients = try Autodiff.gradient(of: module, function: "loss")
      let function = gradients.function(named: "loss.grad")!
      let bucketed = ShapeSpecializer(try Executable(module: gradients, function: "loss.grad"), policy: .powersOfTwo)
      let exact = try Executable(module: gradients, function: "loss.grad")
      for size in [40, 9, 1, 33, 16] {
        let inputs = function.argumentTypes.enumerated().map { i, type -> Tensor in
          let shape = type.dims.map { $0.staticSize ?? size }
          let n = elementCount(shape)!
          if type.dtype.isFloat { return Tensor(type.dtype, shape: shape, floats: (0..<n).map { SeededRandom.uniform(UInt64(size), UInt64($0), UInt64(i)) }) }
          return Tensor(type.dtype, shape: shape, ints: (0..<n).map { Int64(SeededRandom.uniform(UInt64(size), UInt64($0), UInt64(i)) * 2) })
        }
        let run = try bucketed.prepare(inputTypes: inputs.map(\.type))
        for (i, t) in inputs.enumerated() { RawTensor.write(t, to: run.inputs[i]) }
        try run.execute()
        let expected = try exact.run(inputs)
        for (k, e) in expected.enumerated() {
          let got = RawTensor.read(e.dtype, shape: run.outputShapes[k], from: run.outputs[k])
          #expect(got.isIdentical(to: e), "\(file) B=\(size) gradient \(k)")
        }
      }
      bucketed.waitForBackgroundBuilds()
    }
  }
}

/// An attention-pooled sequence model (softmax over the middle axis T): its compiled gradient, whose
/// fused kernels hoist reductions over T out of the T loop, against the interpreter.
struct SequenceGradientTests {
  static let model = """
    module @seq {
      param @w1 : f32[6, 5] = glorot_uniform(seed: 1)
      param @q : f32[5, 1] = glorot_uniform(seed: 2)
      param @w2 : f32[5, 1] = glorot_uniform(seed: 3)
      func @loss(%x: f32[B, T, 6], %y: f32[B]) -> f32[] {
        %h0 = matmul %x, @w1 : f32[B, T, 5]
        %h = tanh %h0 : f32[B, T, 5]
        %s0 = matmul %h, @q : f32[B, T, 1]
        %s = reshape %s0 : f32[B, T]
        %a = softmax %s {axis = 1} : f32[B, T]
        %a1 = reshape %a : f32[B, T, 1]
        %wh = mul %h, %a1 : f32[B, T, 5]
        %p = reduce_sum %wh {axes = [1]} : f32[B, 5]
        %z0 = matmul %p, @w2 : f32[B, 1]
        %z = reshape %z0 : f32[B]
        %l = sigmoid_cross_entropy %z, %y : f32[B]
        %m = reduce_mean %l : f32[]
        return %m
      }
    }
    """

  @Test func compiledGradientMatchesTheInterpreter() throws {
    let module = try Autodiff.gradient(of: Parser.parseAndVerify(Self.model), function: "loss")
    let executable = try Executable(module: module, function: "loss.grad")
    // The weight gradients of the per-token layers are single GEMMs over the flattened batch.
    #expect(executable.thunkListing.filter { $0.contains("gemm sum over batch") }.count == 2, "\(executable.thunkListing)")
    for (b, t) in [(3, 5), (2, 17), (4, 1), (1, 33), (0, 4)] {
      let x = Tensor(.f32, shape: [b, t, 6], floats: (0..<(b * t * 6)).map { SeededRandom.normal(UInt64(t), UInt64($0), 1) })
      let y = Tensor(.f32, shape: [b], floats: (0..<b).map { Double($0 % 2) })
      let expected = try Interpreter(module: module).run("loss.grad", [x, y])
      let got = try executable.run([x, y])
      for (k, (g, e)) in zip(got, expected).enumerated() {
        // An empty batch's mean is 0/0: NaN on both sides must match too.
        let worst = zip(g.doubles, e.doubles).map { $0.isNaN && $1.isNaN ? 0 : abs($0 - $1) / max(1e-3, abs($1)) }.max() ?? 0
        #expect(worst < 1e-4, "B=\(b) T=\(t) result \(k): relative difference \(worst)")
      }
    }
  }
}
