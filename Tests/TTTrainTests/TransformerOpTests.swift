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
