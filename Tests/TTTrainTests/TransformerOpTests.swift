// The transformer ops beyond their finite-difference cases (GradientTests) and JAX cases
// (TransformerJAXTests): gather / scatter_add out-of-range indices as named errors on the
// interpreter and compiled, scatter_add's verifier errors, and the compiled RowKernels routines
// (layer_norm, layer_norm_grad, integer-label softmax_cross_entropy) against the interpreter,
// forward and gradient, with nothing left to the interpreter in the compiled step.
import Foundation
import Testing
import TTCompiler
import TTIR
import TTInterp
import TTRuntime
import TTTrain

struct TransformerOpTests {
  static func random(_ dtype: DType, _ shape: [Int], seed: UInt64, shift: Double = 0, scale: Double = 1) -> Tensor {
    let n = shape.reduce(1, *)
    return Tensor(dtype, shape: shape, floats: (0..<n).map { shift + scale * SeededRandom.normal(seed, UInt64($0), 0) })
  }

  /// The largest |a - b| / max(1, max |b|).
  static func error(_ a: Tensor, _ b: Tensor) -> Double {
    guard a.shape == b.shape else { return .infinity }
    let x = a.doubles, y = b.doubles
    let scale = max(1, y.map(abs).max() ?? 0)
    return zip(x, y).map { abs($0 - $1) / scale }.max() ?? 0
  }

  // MARK: gather and scatter_add

  @Test(arguments: ["gather", "scatter_add"], [7, -1])
  func outOfRangeIndicesAreNamedErrors(_ op: String, _ index: Int) throws {
    let line = op == "gather" ? "%y = gather %x, %i : f64[3, 2]" : "%y = scatter_add %x, %i, %u : f64[4, 2]"
    let result = op == "gather" ? "f64[3, 2]" : "f64[4, 2]"
    let source = """
      module @m {
        func @f(%x: f64[4, 2], %i: i32[3], %u: f64[3, 2]) -> \(result) {
          \(line)
          return %y
        }
      }
      """
    let module = try Parser.parseAndVerify(source)
    let inputs = [Self.random(.f64, [4, 2], seed: 1), Tensor(.i32, shape: [3], ints: [0, Int64(index), 2]), Self.random(.f64, [3, 2], seed: 2)]
    let message = "\(op): index \(index) is out of range [0, 4)"
    #expect { _ = try Interpreter(module: module).run("f", inputs) } throws: { "\($0)" == message }
    #expect { _ = try Executable(module: module, function: "f").run(inputs) } throws: { "\($0)" == message }
  }

  @Test func scatterAddSumsRepeatedIndicesAndKeepsTheOperand() throws {
    let module = try Parser.parseAndVerify("""
      module @m {
        func @f(%x: i64[3], %u: i64[4]) -> i64[3] {
          %i = constant [2, 0, 2, 2] : i32[4]
          %y = scatter_add %x, %i, %u : i64[3]
          return %y
        }
      }
      """)
    let out = try Interpreter(module: module).run("f", [Tensor(.i64, shape: [3], ints: [100, 200, 300]), Tensor(.i64, shape: [4], ints: [1, 2, 3, 4])])
    #expect(out[0].int64s == [102, 200, 308])
  }

  @Test(arguments: [
    ("%y = scatter_add %x, %i, %u : f32[4, 2]", "f32[3, 2]", "i32[3]", "element type"),
    ("%y = scatter_add %x, %i, %u : f64[4, 2]", "f64[2, 2]", "i32[3]", "the gather shape"),
    ("%y = scatter_add %x, %i, %u : f64[4, 2]", "f64[3, 2]", "f32[3]", "indices must be i32 or i64"),
    ("%y = scatter_add %x, %i, %u {axis = 2} : f64[4, 2]", "f64[3, 2]", "i32[3]", "axis"),
  ])
  func scatterAddVerifierErrors(_ line: String, _ updates: String, _ indices: String, _ expected: String) {
    let source = """
      module @m {
        func @f(%x: f64[4, 2], %i: \(indices), %u: \(updates)) -> f64[4, 2] {
          \(line)
          return %y
        }
      }
      """
    #expect { _ = try Parser.parseAndVerify(source) } throws: { "\($0)".contains(expected) }
  }

  // MARK: layer_norm

  static func layerNormModule(_ dtype: DType, width: Int) -> String {
    let t = "\(dtype)[B, S, \(width)]", c = "\(dtype)[\(width)]"
    return """
      module @ln {
        param @s : \(c) = normal(1.0, 0.1, seed: 1)
        param @o : \(c) = normal(0.0, 0.1, seed: 2)
        func @forward(%x: \(t)) -> \(t) {
          %y = layer_norm %x, @s, @o {epsilon = 0.0001} : \(t)
          return %y
        }
        func @loss(%x: \(t), %w: \(t)) -> \(dtype)[] {
          %y = layer_norm %x, @s, @o {epsilon = 0.0001} : \(t)
          %p = mul %y, %w : \(t)
          %l = reduce_sum %p : \(dtype)[]
          return %l
        }
      }
      """
  }

  /// Forward and gradient compiled (RowKernels, split over the pool when large) against the
  /// interpreter; a row mean of 1e4 checks the one-pass statistics do not cancel the variance.
  @Test(arguments: [(DType.f64, 2, 3, 8, 0.0), (.f64, 4, 90, 96, 0.0), (.f32, 4, 90, 96, 0.0), (.f32, 3, 5, 64, 1e4), (.f64, 2, 50, 200, 1e4)])
  func layerNormCompiledMatchesInterpreter(_ dtype: DType, _ b: Int, _ s: Int, _ d: Int, _ shift: Double) throws {
    let module = try Parser.parseAndVerify(Self.layerNormModule(dtype, width: d))
    let x = Self.random(dtype, [b, s, d], seed: 3, shift: shift, scale: shift == 0 ? 1 : 0.5)
    let w = Self.random(dtype, [b, s, d], seed: 4)
    // A row mean of 1e4 costs the subtraction x - mean its last digits in either computation
    // (an ulp of 1e4 is 2e-12 in f64): the two agree to that, not to the f64 rounding of y.
    let tolerance = dtype == .f64 ? (shift == 0 ? 1e-12 : 1e-10) : 2e-5
    let interpreted = try Interpreter(module: module).run("forward", [x])
    let forward = try Executable(module: module, function: "forward")
    let forwardError = Self.error(try forward.run([x])[0], interpreted[0])
    #expect(forwardError <= tolerance, "forward: \(forwardError)")
    #expect(forward.statistics.rowRoutines == 1 && forward.statistics.interpretedOpCount == 0, "\(forward.statistics.interpretedOps)")

    let withGrad = try Autodiff.gradient(of: module, function: "loss", inputs: [0])
    let expected = try Interpreter(module: withGrad).run("loss.grad", [x, w])
    let step = try Executable(module: withGrad, function: "loss.grad")
    let got = try step.run([x, w])
    for k in 1..<expected.count {
      #expect(Self.error(got[k], expected[k]) <= tolerance * 10, "result \(k): \(Self.error(got[k], expected[k]))")
    }
    #expect(step.statistics.rowRoutines == 2 && step.statistics.interpretedOpCount == 0, "\(step.statistics.interpretedOps)")
  }

  /// layer_norm_grad's column sums (dscale, doffset) do not depend on the thread count.
  @Test func layerNormGradientIsTheSameOnAnyThreadCount() throws {
    // f64: sums in another order differ in their last bits (f32 would round most differences away).
    let module = try Parser.parseAndVerify(Self.layerNormModule(.f64, width: 96))
    let withGrad = try Autodiff.gradient(of: module, function: "loss", inputs: [0])
    let x = Self.random(.f64, [8, 100, 96], seed: 5), w = Self.random(.f64, [8, 100, 96], seed: 6)
    let one = try Executable(module: withGrad, function: "loss.grad", pool: ThreadPool(threads: 1)).run([x, w])
    let three = try Executable(module: withGrad, function: "loss.grad", pool: ThreadPool(threads: 3)).run([x, w])
    for k in one.indices { #expect(one[k].isIdentical(to: three[k]), "result \(k)") }
  }

  @Test func layerNormVerifierErrors() {
    for (line, expected) in [("%y = layer_norm %x, %s, %s {epsilon = -1.0} : f64[2, 3]", "epsilon"),
                             ("%y = layer_norm %x, %t, %s : f64[2, 3]", "scale must have shape [3]")] {
      let source = """
        module @m {
          func @f(%x: f64[2, 3], %s: f64[3], %t: f64[2]) -> f64[2, 3] {
            \(line)
            return %y
          }
        }
        """
      #expect { _ = try Parser.parseAndVerify(source) } throws: { "\($0)".contains(expected) }
    }
  }

  // MARK: integer-label softmax_cross_entropy

  static func classifier(_ dtype: DType, labels: DType) -> String {
    """
    module @clf {
      param @w : \(dtype)[16, 10] = glorot_uniform(seed: 5)
      func @loss(%x: \(dtype)[B, 16], %y: \(labels)[B]) -> \(dtype)[] {
        %l = matmul %x, @w : \(dtype)[B, 10]
        %ce = softmax_cross_entropy %l, %y : \(dtype)[B]
        %m = reduce_mean %ce {axes = [0]} : \(dtype)[]
        return %m
      }
    }
    """
  }

  /// The compiled training step of a classifier with integer labels runs nothing on the
  /// interpreter, and matches it (loss and gradient); a bad label is the interpreter's error.
  @Test(arguments: [(DType.f64, DType.i32, 7), (.f32, .i64, 700)])
  func sparseCrossEntropyCompiles(_ dtype: DType, _ labels: DType, _ batch: Int) throws {
    let module = try Parser.parseAndVerify(Self.classifier(dtype, labels: labels))
    let withGrad = try Autodiff.gradient(of: module, function: "loss")
    let x = Self.random(dtype, [batch, 16], seed: 6, scale: 3)
    let y = Tensor(labels, shape: [batch], ints: (0..<batch).map { Int64(($0 * 7) % 10) })
    let expected = try Interpreter(module: withGrad).run("loss.grad", [x, y])
    let step = try Executable(module: withGrad, function: "loss.grad")
    let got = try step.run([x, y])
    let tolerance = dtype == .f64 ? 1e-12 : 1e-5
    for k in expected.indices { #expect(Self.error(got[k], expected[k]) <= tolerance, "result \(k)") }
    #expect(step.statistics.interpretedOpCount == 0, "\(step.statistics.interpretedOps)")
    #expect(step.statistics.rowRoutines == 1)
    var bad = y.int64s
    bad[batch - 1] = 10
    let message = "softmax_cross_entropy: index 10 is out of range [0, 10)"
    #expect { _ = try step.run([x, Tensor(labels, shape: [batch], ints: bad)]) } throws: { "\($0)" == message }
    #expect { _ = try Interpreter(module: withGrad).run("loss.grad", [x, Tensor(labels, shape: [batch], ints: bad)]) } throws: { "\($0)" == message }
  }
}

/// dropout and random_bits (IR-specs/ops/random.md): keyed by (seed, step, stream, element), so
/// a step is reproducible, the backward pass regenerates the forward's mask, and training that
/// keeps its step in a `state` counter resumes exactly.
struct DropoutTests {
  static func run(_ source: String, _ function: String, _ inputs: [Tensor]) throws -> [Tensor] {
    try Interpreter(module: try Parser.parseAndVerify(source)).run(function, inputs)
  }

  static let module = """
    module @d {
      func @f(%x: f64[400, 250], %step: i64[]) -> f64[400, 250] {
        %y = dropout %x, %step {rate = 0.3, seed = 7, stream = 1} : f64[400, 250]
        return %y
      }
      func @bits(%step: i32[]) -> (i32[4, 5], i64[20]) {
        %a = random_bits %step {seed = 3} : i32[4, 5]
        %b = random_bits %step {seed = 3} : i64[20]
        return %a, %b
      }
    }
    """

  /// About 1 - rate of the elements are kept (within 5 standard deviations), each scaled by
  /// exactly 1/(1 - rate); the same step gives the same mask, another step or stream another.
  @Test func keepsAboutOneMinusRateAndIsKeyedByStep() throws {
    let n = 400 * 250
    let x = Tensor(.f64, shape: [400, 250], floats: (0..<n).map { 1 + Double($0 % 13) })
    func step(_ s: Int64) throws -> [Double] { try Self.run(Self.module, "f", [x, Tensor(.i64, shape: [], ints: [s])])[0].doubles }
    let y = try step(5)
    let kept = y.indices.filter { y[$0] != 0 }
    let expected = 0.7 * Double(n), sd = (Double(n) * 0.3 * 0.7).squareRoot()
    #expect(abs(Double(kept.count) - expected) < 5 * sd, "kept \(kept.count) of \(n)")
    let xs = x.doubles
    #expect(kept.allSatisfy { y[$0] == xs[$0] * (1 / 0.7) })
    #expect(try step(5) == y)
    let other = try step(6)
    let differing = y.indices.filter { (y[$0] == 0) != (other[$0] == 0) }.count
    // Two independent masks disagree on 2 p (1 - p) = 42% of the elements.
    #expect(abs(Double(differing) / Double(n) - 0.42) < 0.01, "\(differing)")
    let streamed = try Self.run(Self.module.replacingOccurrences(of: "stream = 1", with: "stream = 2"), "f",
                                [x, Tensor(.i64, shape: [], ints: [5])])[0].doubles
    #expect(streamed != y)
  }

  /// random_bits: the i32 bits are the low half of the i64 bits, element for element (their
  /// uniformity is checked through dropout's keep rate above).
  @Test func randomBitsI32IsTheLowHalfOfI64() throws {
    let out = try Self.run(Self.module, "bits", [Tensor(.i32, shape: [], ints: [9])])
    let narrow = out[0].int64s, wide = out[1].int64s
    #expect(narrow == wide.map { Int64(Int32(truncatingIfNeeded: $0)) })
    #expect(Set(wide).count == 20)
  }

  /// The compiled routines draw the interpreter's bits exactly, split over the pool or not.
  @Test(arguments: [Int64(0), 1, -5, 1 << 40])
  func compiledBitsAreTheInterpreters(_ step: Int64) throws {
    let module = try Parser.parseAndVerify(Self.module)
    let x = TransformerOpTests.random(.f64, [400, 250], seed: 9)
    let s64 = Tensor(.i64, shape: [], ints: [step]), s32 = Tensor(.i32, shape: [], ints: [Int64(Int32(truncatingIfNeeded: step))])
    let f = try Executable(module: module, function: "f")
    #expect(try f.run([x, s64]) == (try Interpreter(module: module).run("f", [x, s64])))
    #expect(f.statistics.interpretedOpCount == 0 && f.statistics.rowRoutines == 1)
    let bits = try Executable(module: module, function: "bits")
    #expect(try bits.run([s32]) == (try Interpreter(module: module).run("bits", [s32])))
    #expect(bits.statistics.interpretedOpCount == 0)
    let f32 = try Parser.parseAndVerify(Self.module.replacingOccurrences(of: "f64[400, 250]", with: "f32[400, 250]"))
    let x32 = TransformerOpTests.random(.f32, [400, 250], seed: 9)
    #expect(try Executable(module: f32, function: "f").run([x32, s64]) == (try Interpreter(module: f32).run("f", [x32, s64])))
  }

  @Test func verifierErrors() {
    for (line, expected) in [("%y = dropout %x, %s {rate = 1.0} : f64[3]", "rate must lie in [0, 1)"),
                             ("%y = dropout %x, %s : f64[3]", "rate"),
                             ("%y = dropout %x, %x {rate = 0.5} : f64[3]", "the step must be an i32 or i64 scalar"),
                             ("%y = random_bits %s : f64[3]", "random bits are i32 or i64")] {
      let source = "module @m {\n  func @f(%x: f64[3], %s: i64[]) -> f64[3] {\n    \(line)\n    return %y\n  }\n}\n"
      #expect { _ = try Parser.parseAndVerify(source) } throws: { "\($0)".contains(expected) }
    }
  }

  /// The gradient is dropout of the adjoint with the same key: zero where the forward dropped,
  /// 1/(1 - rate) where it kept — exactly the derivative, for any step.
  @Test func gradientRegeneratesTheMask() throws {
    let source = """
      module @g {
        param @w : f64[6, 8] = normal(0.0, 1.0, seed: 1)
        func @loss(%step: i64[]) -> f64[] {
          %y = dropout @w, %step {rate = 0.5, seed = 2} : f64[6, 8]
          %q = mul %y, %y : f64[6, 8]
          %l = reduce_sum %q : f64[]
          return %l
        }
      }
      """
    let module = try Parser.parseAndVerify(source)
    let withGrad = try Autodiff.gradient(of: module, function: "loss")
    for s in [Int64(1), 2, 3] {
      let step = Tensor(.i64, shape: [], ints: [s])
      let interpreter = try Interpreter(module: withGrad)
      let out = try interpreter.run("loss.grad", [step])
      let w = interpreter.params["w"]!.doubles
      // d/dw sum((m w / (1 - p))^2) = 2 m w / (1 - p)^2 with m the mask (0 or 1).
      let grad = out[1].doubles
      let masked = "module @f {\n  param @w : f64[6, 8] = normal(0.0, 1.0, seed: 1)\n  func @y(%step: i64[]) -> f64[6, 8] {\n" +
        "    %y = dropout @w, %step {rate = 0.5, seed = 2} : f64[6, 8]\n    return %y\n  }\n}\n"
      let forward = try Self.run(masked, "y", [step])[0].doubles
      for i in w.indices {
        let m = forward[i] == 0 ? 0.0 : 1.0
        #expect(abs(grad[i] - 2 * m * w[i] / 0.25) < 1e-12, "step \(s) element \(i)")
      }
      // Compiled (RowKernels' copy of the generator) agrees exactly.
      let compiled = try Executable(module: withGrad, function: "loss.grad").run([step])
      #expect(compiled[1].doubles == grad)
    }
  }

  static let trainingModule = """
    module @mlp {
      param @w : f32[8, 1] = glorot_uniform(seed: 1)
      state @step : i64[] = zeros
      func @loss(%x: f32[B, 8], %y: f32[B]) -> (f32[], i64[]) {
        %one = constant 1 : i64[]
        %next = add @step, %one : i64[]
        %h = dropout %x, %next {rate = 0.25, seed = 11} : f32[B, 8]
        %z = matmul %h, @w : f32[B, 1]
        %p = reshape %z : f32[B]
        %d = sub %p, %y : f32[B]
        %s = mul %d, %d : f32[B]
        %l = reduce_mean %s {axes = [0]} : f32[]
        return %l, %next
      }
    }
    """

  /// The step number comes from a `state` counter the loss advances (its new value is the
  /// loss's extra result), so it is saved and restored with the parameters: two runs give the
  /// same parameters bit for bit, and a run restored after 3 steps continues exactly.
  @Test func trainingIsReproducibleAndResumesExactly() throws {
    let module = try Parser.parseAndVerify(Self.trainingModule)
    let x = Tensor(.f32, shape: [16, 8], floats: (0..<128).map { SeededRandom.normal(1, UInt64($0), 0) })
    let y = Tensor(.f32, shape: [16], floats: (0..<16).map { SeededRandom.normal(2, UInt64($0), 0) })
    func train(_ trainer: Trainer, _ steps: Int) throws -> [Double] { try (0..<steps).map { _ in try trainer.step([x, y], lr: 0.05) } }
    let straight = try Trainer(module: module, loss: "loss", optimizer: OptimizerConfig(.adam))
    let losses = try train(straight, 6)
    let again = try Trainer(module: module, loss: "loss", optimizer: OptimizerConfig(.adam))
    #expect(try train(again, 6) == losses)
    #expect(again.params["w"]!.isIdentical(to: straight.params["w"]!))
    #expect(straight.params["step"]!.int64s == [6])

    let first = try Trainer(module: module, loss: "loss", optimizer: OptimizerConfig(.adam))
    _ = try train(first, 3)
    let snapshot = Dictionary(uniqueKeysWithValues: zip(first.stateNames, first.state))
    let resumed = try Trainer(module: module, loss: "loss", optimizer: OptimizerConfig(.adam), valuesFollow: true)
    try resumed.restore(snapshot, step: 3)
    #expect(try train(resumed, 3) == Array(losses.suffix(3)))
    #expect(resumed.params["w"]!.isIdentical(to: straight.params["w"]!))

    // A fixed batch at learning rate 0 still sees a new mask each step.
    let still = try Trainer(module: module, loss: "loss", optimizer: OptimizerConfig(.sgd))
    let frozen = try (0..<3).map { _ in try still.step([x, y], lr: 0) }
    #expect(Set(frozen).count == 3, "\(frozen)")
  }
}

/// Slices of symbolic axes (the CLS token x[:, 0, :] of [B, S, H]) and attention masks from
/// per-row lengths (`sequence_mask`), interpreted and compiled.
struct SymbolicSliceAndMaskTests {
  static let module = """
    module @enc {
      param @w : f64[4, 2] = glorot_uniform(seed: 1)
      func @cls(%x: f64[B, S, 4]) -> f64[B, 4] {
        %c = slice %x {axes = [1], limits = [1], starts = [0]} : f64[B, 1, 4]
        %r = reshape %c : f64[B, 4]
        return %r
      }
      func @loss(%x: f64[B, S, 4]) -> f64[] {
        %t = tanh %x : f64[B, S, 4]
        %c = slice %t {axes = [1], limits = [3], starts = [1], strides = [1]} : f64[B, 2, 4]
        %h = matmul %c, @w : f64[B, 2, 2]
        %q = mul %h, %h : f64[B, 2, 2]
        %l = reduce_sum %q : f64[]
        return %l
      }
    }
    """

  @Test func clsTokenCompiledMatchesInterpreter() throws {
    let module = try Parser.parseAndVerify(Self.module)
    for (b, s) in [(2, 5), (3, 1), (7, 9)] {
      let x = TransformerOpTests.random(.f64, [b, s, 4], seed: 1)
      let expected = Tensor(.f64, shape: [b, 4], floats: (0..<b).flatMap { r in (0..<4).map { x.doubles[r * s * 4 + $0] } })
      #expect(try Interpreter(module: module).run("cls", [x])[0] == expected)
      let executable = try Executable(module: module, function: "cls")
      #expect(try executable.run([x])[0] == expected)
      #expect(executable.statistics.interpretedOpCount == 0)
    }
  }

  /// The gradient of a slice of a symbolic axis scatters g back into zeros of the input's shape.
  @Test func gradientOfASymbolicSliceCompiledMatchesInterpreter() throws {
    let module = try Parser.parseAndVerify(Self.module)
    let withGrad = try Autodiff.gradient(of: module, function: "loss", inputs: [0])
    let x = TransformerOpTests.random(.f64, [3, 6, 4], seed: 2)
    let expected = try Interpreter(module: withGrad).run("loss.grad", [x])
    let got = try Executable(module: withGrad, function: "loss.grad").run([x])
    for k in expected.indices { #expect(TransformerOpTests.error(got[k], expected[k]) < 1e-12) }
    // Rows outside [1, 3) of S get no gradient.
    let dx = expected[2].doubles
    #expect((0..<3).allSatisfy { b in [0, 3, 4, 5].allSatisfy { s in (0..<4).allSatisfy { dx[(b * 6 + s) * 4 + $0] == 0 } } })
  }

  /// A sequence shorter than the slice's limit is a named error, interpreted and compiled.
  @Test func sliceBeyondTheBoundSizeIsANamedError() throws {
    let module = try Parser.parseAndVerify(Self.module)
    let x = TransformerOpTests.random(.f64, [2, 2, 4], seed: 3)
    let message = "slice: index 2 is out of range [0, 2)"
    #expect { _ = try Interpreter(module: module).run("loss", [x]) } throws: { "\($0)" == message }
    #expect { _ = try Executable(module: module, function: "loss").run([x]) } throws: { "\($0)" == message }
  }

  static let masks = """
    module @masks {
      func @f(%lengths: i32[B], %scores: f32[B, 2, S, S]) -> (f32[B, 1, 1, S], i1[B, S], f32[B, 2, S, S]) {
        %m = sequence_mask %lengths : f32[B, 1, 1, S]
        %b = sequence_mask %lengths : i1[B, S]
        %k = sequence_mask %lengths {masked_value = -10000.0} : f32[B, 1, 1, S]
        %s = add %scores, %k : f32[B, 2, S, S]
        return %m, %b, %s
      }
    }
    """

  @Test func sequenceMaskCompiledMatchesInterpreter() throws {
    let module = try Parser.parseAndVerify(Self.masks)
    let lengths = Tensor(.i32, shape: [3], ints: [2, 0, 7])   // 7 > S: every position valid
    let scores = TransformerOpTests.random(.f32, [3, 2, 4, 4], seed: 4)
    let interpreted = try Interpreter(module: module).run("f", [lengths, scores])
    #expect(interpreted[0].doubles == [0, 0, -1e9, -1e9, -1e9, -1e9, -1e9, -1e9, 0, 0, 0, 0].map { Double(Float($0)) })
    #expect(interpreted[1].int64s == [1, 1, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1])
    let executable = try Executable(module: module, function: "f")
    let compiled = try executable.run([lengths, scores])
    for k in interpreted.indices { #expect(compiled[k] == interpreted[k], "result \(k)") }
    #expect(executable.statistics.interpretedOpCount == 0, "\(executable.statistics.interpretedOps)")
  }

  @Test func sequenceMaskVerifierErrors() {
    for (result, lengths, expected) in [("f32[B, 2, 1, S]", "i32[B]", "must be [B, S] or [B, 1, 1, S]"),
                                        ("f32[B, S]", "f32[B]", "needs an integer"),
                                        ("i32[B, S]", "i32[B]", "the mask is i1 or a float type"),
                                        ("f32[C, S]", "i32[B]", "must be [B, S]")] {
      let source = "module @m {\n  func @f(%n: \(lengths), %x: f32[C, S]) -> \(result) {\n    %y = sequence_mask %n : \(result)\n    return %y\n  }\n}\n"
      #expect { _ = try Parser.parseAndVerify(source) } throws: { "\($0)".contains(expected) }
    }
  }
}
