// Fused attention (IR-specs/ops/nn.md, passes.md "attention-fusion"): the attention chain written
// in primitives, compiled fused (attention / attention_grad routines) and unfused, forward and
// gradients, against each other and the interpreter's reference, across tile boundaries, with
// masks, dropout, symbolic axes and both scale spellings; the cases the pass must leave alone;
// and the named errors of differentiating what the op does not differentiate.
import Foundation
import Testing
import TTIR
import TTInterp
import TTPasses
import TTRuntime
import TTCompiler
@testable import TTTrain

struct AttentionCase: Sendable, CustomTestStringConvertible {
  var dtype: DType
  var batch: Int, heads: Int, tq: Int, tk: Int, d: Int, dv: Int
  var rate = 0.0
  var mask = true
  /// `mul %s0, 0.125` or `div %s0, 8.0`; and `transpose_b` or an explicit transpose of k.
  var divide = false
  var explicitTranspose = false
  var testDescription: String {
    "\(dtype) [\(batch), \(heads)] \(tq)x\(tk) d \(d) dv \(dv) rate \(rate)\(mask ? " mask" : "")\(divide ? " div" : "")\(explicitTranspose ? " transpose" : "")"
  }

  /// @loss(q, k, v, lengths, step, w) = sum(attention(q, k, v) * w), B and the lengths symbolic.
  var module: String {
    let t = dtype.rawValue
    let (q, k, v) = ("\(t)[B, \(heads), \(tq), \(d)]", "\(t)[B, \(heads), \(tk), \(d)]", "\(t)[B, \(heads), \(tk), \(dv)]")
    let scores = "\(t)[B, \(heads), \(tq), \(tk)]"
    var body: [String] = []
    if explicitTranspose {
      body.append("%kt = transpose %k {perm = [0, 1, 3, 2]} : \(t)[B, \(heads), \(d), \(tk)]")
      body.append("%s0 = matmul %q, %kt : \(scores)")
    } else {
      body.append("%s0 = matmul %q, %k {transpose_b = true} : \(scores)")
    }
    body.append(divide ? "%c = constant 8.0 : \(t)[]" : "%c = constant 0.125 : \(t)[]")
    body.append("%s1 = \(divide ? "div" : "mul") %s0, %c : \(scores)")
    if mask {
      body.append("%m = sequence_mask %lengths {masked_value = -10000.0} : \(t)[B, 1, 1, \(tk)]")
      body.append("%s = add %s1, %m : \(scores)")
    }
    body.append("%p = softmax \(mask ? "%s" : "%s1") {axis = 3} : \(scores)")
    if rate > 0 {
      body.append("%pd = dropout %p, %step {rate = \(rate), seed = 5, stream = 2} : \(scores)")
      body.append("%o = matmul %pd, %v : \(t)[B, \(heads), \(tq), \(dv)]")
    } else {
      body.append("%o = matmul %p, %v : \(t)[B, \(heads), \(tq), \(dv)]")
    }
    body.append("%ow = mul %o, %w : \(t)[B, \(heads), \(tq), \(dv)]")
    body.append("%l = reduce_sum %ow : \(t)[]")
    return """
      module @attention {
        func @loss(%q: \(q), %k: \(k), %v: \(v), %lengths: i32[B], %step: i64[], %w: \(t)[B, \(heads), \(tq), \(dv)]) -> \(t)[] {
      \(body.map { "    " + $0 }.joined(separator: "\n"))
          return %l
        }
      }
      """
  }

  func inputs() -> [Tensor] {
    func random(_ shape: [Int], _ seed: UInt64) -> Tensor {
      Tensor(dtype, shape: shape, floats: (0..<shape.reduce(1, *)).map { SeededRandom.normal(seed, UInt64($0), 0) })
    }
    let lengths = (0..<batch).map { Int64(max(1, tk - 7 * $0)) }
    return [random([batch, heads, tq, d], 1), random([batch, heads, tk, d], 2), random([batch, heads, tk, dv], 3),
            Tensor(.i32, shape: [batch], ints: lengths), Tensor(.i64, shape: [], ints: [41]), random([batch, heads, tq, dv], 4)]
  }
}

let attentionCases: [AttentionCase] = [
  AttentionCase(dtype: .f64, batch: 2, heads: 2, tq: 8, tk: 8, d: 4, dv: 4),
  AttentionCase(dtype: .f64, batch: 2, heads: 2, tq: 65, tk: 130, d: 16, dv: 8, rate: 0.2),
  AttentionCase(dtype: .f64, batch: 1, heads: 3, tq: 64, tk: 64, d: 8, dv: 12, divide: true, explicitTranspose: true),
  AttentionCase(dtype: .f32, batch: 3, heads: 2, tq: 100, tk: 37, d: 64, dv: 64, rate: 0.1),
  AttentionCase(dtype: .f32, batch: 2, heads: 1, tq: 129, tk: 129, d: 32, dv: 32, explicitTranspose: true),
  AttentionCase(dtype: .f32, batch: 2, heads: 2, tq: 16, tk: 16, d: 8, dv: 8, mask: false),
]

struct AttentionTests {
  static let unfusedPipeline = Pipeline([.pass(Inlining.pass), .pass(CompositeLowering.pass), Pipelines.canonicalize,
                                         .pass(Fusion.pass), .pass(DeadCodeElimination.pass), .pass(UpdateScheduling.pass)])

  static func gradientModule(_ module: Module, fused: Bool) throws -> Module {
    var options = PassOptions()
    options.fuseAttention = fused
    return try Autodiff.gradient(of: module, function: "loss", inputs: [0, 1, 2], passOptions: options)
  }

  static func close(_ a: [Tensor], _ b: [Tensor], tolerance: Double) -> Double {
    var worst = 0.0
    for (x, y) in zip(a, b) {
      let scale = max(y.doubles.map(abs).max() ?? 0, 1e-30)
      for (u, v) in zip(x.doubles, y.doubles) { worst = max(worst, abs(u - v) / scale) }
    }
    return worst
  }

  @Test(arguments: attentionCases)
  func fusedMatchesUnfusedAndTheInterpreter(_ c: AttentionCase) throws {
    let module = try Parser.parseAndVerify(c.module)
    let inputs = c.inputs()
    let fused = try Self.gradientModule(module, fused: true)
    let unfused = try Self.gradientModule(module, fused: false)
    let fusedStep = try Executable(module: fused, function: "loss.grad")
    let unfusedStep = try Executable(module: unfused, function: "loss.grad", pipeline: Self.unfusedPipeline)
    let listing = fusedStep.thunkListing.joined(separator: "\n")
    #expect(listing.contains("attention_grad"), "\(listing)")
    #expect(!unfusedStep.thunkListing.joined().contains("attention"))
    let got = try fusedStep.run(inputs)
    let want = try unfusedStep.run(inputs)
    let tolerance = c.dtype == .f64 ? 1e-12 : 2e-5
    #expect(Self.close(got, want, tolerance: tolerance) <= tolerance, "fused vs unfused compiled")
    // The interpreter on the fused module (the attention ops' reference semantics) and on the
    // unfused one agree too: the op's definition is the chain's.
    if c.tq * c.tk <= 64 * 64 {
      let interpretedFused = try Interpreter(module: fused).run("loss.grad", inputs)
      let interpretedUnfused = try Interpreter(module: unfused).run("loss.grad", inputs)
      #expect(Self.close(interpretedFused, interpretedUnfused, tolerance: tolerance) <= tolerance)
      #expect(Self.close(got, interpretedFused, tolerance: tolerance) <= tolerance, "compiled vs interpreted")
    }
  }

  /// A sliding window of ±8 keys written with −inf: rows from 72 on have whole 64-key tiles of
  /// −inf before their first finite score, and one row is masked entirely (NaN, as softmax).
  @Test(arguments: [DType.f32, .f64])
  func masksThatHideWholeTiles(_ dtype: DType) throws {
    let (t, n) = (dtype.rawValue, 150)
    let module = try Parser.parseAndVerify("""
      module @window {
        func @f(%q: \(t)[2, \(n), 8], %k: \(t)[2, \(n), 8], %v: \(t)[2, \(n), 4], %mask: \(t)[1, \(n), \(n)]) -> \(t)[2, \(n), 4] {
          %s0 = matmul %q, %k {transpose_b = true} : \(t)[2, \(n), \(n)]
          %s = add %s0, %mask : \(t)[2, \(n), \(n)]
          %p = softmax %s {axis = 2} : \(t)[2, \(n), \(n)]
          %o = matmul %p, %v : \(t)[2, \(n), 4]
          return %o
        }
      }
      """)
    func random(_ shape: [Int], _ seed: UInt64) -> Tensor {
      Tensor(dtype, shape: shape, floats: (0..<shape.reduce(1, *)).map { SeededRandom.normal(seed, UInt64($0), 0) })
    }
    let mask = Tensor(dtype, shape: [1, n, n], floats: (0..<(n * n)).map { e in
      let (i, j) = (e / n, e % n)
      return i == 3 || abs(i - j) > 8 ? -Double.infinity : 0
    })
    let inputs = [random([2, n, 8], 1), random([2, n, 8], 2), random([2, n, 4], 3), mask]
    let fused = try Executable(module: module, function: "f")
    #expect(fused.thunkListing.contains { $0.contains("attention") })
    let got = try fused.run(inputs)[0].doubles
    let want = try Executable(module: module, function: "f", pipeline: Self.unfusedPipeline).run(inputs)[0].doubles
    let tolerance = dtype == .f64 ? 1e-12 : 1e-5
    for (k, (a, b)) in zip(got, want).enumerated() {
      if (k / 4) % n == 3 { #expect(a.isNaN && b.isNaN); continue }
      #expect(abs(a - b) <= tolerance * max(1, abs(b)), "element \(k): fused \(a), unfused \(b)")
    }
  }

  @Test func sameBitsOnAnyThreadCount() throws {
    let c = AttentionCase(dtype: .f32, batch: 3, heads: 2, tq: 70, tk: 90, d: 16, dv: 16, rate: 0.1)
    let grad = try Self.gradientModule(try Parser.parseAndVerify(c.module), fused: true)
    let one = try Executable(module: grad, function: "loss.grad", pool: ThreadPool(threads: 1)).run(c.inputs())
    let three = try Executable(module: grad, function: "loss.grad", pool: ThreadPool(threads: 3)).run(c.inputs())
    #expect(one == three)
  }

  @Test func forwardOnlyFunctionsFuseInTheCodegenPipeline() throws {
    let c = AttentionCase(dtype: .f32, batch: 2, heads: 2, tq: 33, tk: 33, d: 8, dv: 8)
    let module = try Parser.parseAndVerify(c.module)
    let fused = try Executable(module: module, function: "loss")
    #expect(fused.thunkListing.contains { $0.contains("attention") })
    let unfused = try Executable(module: module, function: "loss", pipeline: Self.unfusedPipeline)
    let (a, b) = (try fused.run(c.inputs())[0].doubles[0], try unfused.run(c.inputs())[0].doubles[0])
    #expect(abs(a - b) <= 1e-5 * max(abs(b), 1))
  }

  /// The pass leaves alone: probabilities read twice, a mask computed from a parameter, a
  /// softmax over another axis, broadcast batch axes, tiny static scores.
  @Test(arguments: [
    ("probabilities also returned", """
      func @f(%q: f32[2, 16, 8], %k: f32[2, 16, 8], %v: f32[2, 16, 8]) -> (f32[2, 16, 8], f32[2, 16, 16]) {
        %s = matmul %q, %k {transpose_b = true} : f32[2, 16, 16]
        %p = softmax %s : f32[2, 16, 16]
        %o = matmul %p, %v : f32[2, 16, 8]
        return %o, %p
      }
      """),
    ("mask from a parameter", """
      func @f(%q: f32[2, 16, 8], %k: f32[2, 16, 8], %v: f32[2, 16, 8]) -> f32[2, 16, 8] {
        %s0 = matmul %q, %k {transpose_b = true} : f32[2, 16, 16]
        %s = add %s0, @bias : f32[2, 16, 16]
        %p = softmax %s : f32[2, 16, 16]
        %o = matmul %p, %v : f32[2, 16, 8]
        return %o
      }
      """),
    ("softmax over the rows", """
      func @f(%q: f32[2, 16, 8], %k: f32[2, 16, 8], %v: f32[2, 16, 8]) -> f32[2, 16, 8] {
        %s = matmul %q, %k {transpose_b = true} : f32[2, 16, 16]
        %p = softmax %s {axis = 1} : f32[2, 16, 16]
        %o = matmul %p, %v : f32[2, 16, 8]
        return %o
      }
      """),
    ("v broadcast over the batch", """
      func @f(%q: f32[2, 16, 8], %k: f32[2, 16, 8], %v: f32[16, 8]) -> f32[2, 16, 8] {
        %s = matmul %q, %k {transpose_b = true} : f32[2, 16, 16]
        %p = softmax %s : f32[2, 16, 16]
        %o = matmul %p, %v : f32[2, 16, 8]
        return %o
      }
      """),
    ("tiny scores", """
      func @f(%q: f32[2, 4, 8], %k: f32[2, 4, 8], %v: f32[2, 4, 8]) -> f32[2, 4, 8] {
        %s = matmul %q, %k {transpose_b = true} : f32[2, 4, 4]
        %p = softmax %s : f32[2, 4, 4]
        %o = matmul %p, %v : f32[2, 4, 8]
        return %o
      }
      """),
  ])
  func passLeavesAlone(_ name: String, _ function: String) throws {
    var module = try Parser.parseAndVerify("module @m {\n  param @bias : f32[16, 16] = zeros\n\(function)\n}")
    let changed = AttentionFusion.pass.run(&module, PassContext())
    #expect(!changed, "\(name)")
    #expect(!module.functions[0].body.contains { module.functions[0][$0].code == .attention })
  }

  @Test func fusesTheBertLayerAndKeepsItsResults() throws {
    let path = #filePath.replacingOccurrences(of: "Tests/TTTrainTests/AttentionTests.swift", with: "examples/bert_tiny.ttir")
    var module = try Parser.parseAndVerify(try String(contentsOfFile: path, encoding: .utf8))
    _ = Inlining.pass.run(&module, PassContext())
    func count(_ code: OpCode) -> Int { module.functions.map { f in f.body.filter { f[$0].code == code }.count }.reduce(0, +) }
    let softmaxes = count(.softmax)
    let context = PassContext()
    _ = AttentionFusion.pass.run(&module, context)
    // Every layer's attention, in every function (with and without dropout), and nothing else.
    #expect(softmaxes >= 8 && context.statistics["attention-fusion"]?["fused"] == softmaxes)
    #expect(count(.softmax) == 0 && count(.attention) == softmaxes)
    #expect(Verifier.verify(module).isEmpty)
    let loss = try #require(module.function(named: "loss"))
    let fused = loss.body.filter { loss[$0].code == .attention }
    #expect(fused.count == 2 && fused.allSatisfy { loss[$0].attributes.double("rate") == 0.1 && loss[$0].attributes.double("scale") == 0.125 })
  }

  @Test func differentiatingWhatTheOpDoesNotIsANamedError() throws {
    let maskFromParameter = """
      module @m {
        param @q : f64[1, 4, 8] = normal(seed: 1)
        param @bias : f64[1, 4, 4] = zeros
        func @loss(%k: f64[1, 4, 8], %v: f64[1, 4, 8], %s: i64[]) -> f64[] {
          %o, %lse = attention @q, %k, %v, @bias, %s {scale = 0.5} : f64[1, 4, 8], f64[1, 4]
          %l = reduce_sum %o : f64[]
          return %l
        }
      }
      """
    #expect { _ = try Autodiff.gradient(of: try Parser.parseAndVerify(maskFromParameter), function: "loss") } throws: {
      "\($0)".contains("mask depends on a trained parameter")
    }
    let lseRead = """
      module @m {
        param @q : f64[1, 4, 8] = normal(seed: 1)
        func @loss(%k: f64[1, 4, 8], %v: f64[1, 4, 8], %m: f64[1, 1, 4], %s: i64[]) -> f64[] {
          %o, %lse = attention @q, %k, %v, %m, %s {scale = 0.5} : f64[1, 4, 8], f64[1, 4]
          %l = reduce_sum %lse : f64[]
          return %l
        }
      }
      """
    #expect { _ = try Autodiff.gradient(of: try Parser.parseAndVerify(lseRead), function: "loss") } throws: {
      "\($0)".contains("log-sum-exp")
    }
  }

  @Test(arguments: [
    ("%o, %l = attention %q, %k, %v, %m, %s : f32[2, 4, 8], f32[2, 4]", "scale"),
    ("%o, %l = attention %q, %k, %v, %m, %s {scale = 1.0, rate = 1.0} : f32[2, 4, 8], f32[2, 4]", "rate must lie in [0, 1)"),
    ("%o, %l = attention %q, %q, %v, %m, %s {scale = 1.0} : f32[2, 4, 8], f32[2, 4]", "v must have k's"),
    ("%o, %l = attention %q, %k, %v, %bad, %s {scale = 1.0} : f32[2, 4, 8], f32[2, 4]", "does not broadcast"),
    ("%o, %l = attention %q, %k, %v, %m, %m {scale = 1.0} : f32[2, 4, 8], f32[2, 4]", "step"),
  ])
  func verifierErrors(_ line: String, _ message: String) {
    let text = """
      module @m {
        func @f(%q: f32[2, 4, 8], %k: f32[2, 6, 8], %v: f32[2, 6, 8], %m: f32[2, 1, 6], %bad: f32[2, 4, 5], %s: i64[]) -> f32[2, 4, 8] {
          \(line)
          return %o
        }
      }
      """
    #expect { _ = try Parser.parseAndVerify(text) } throws: { "\($0)".contains(message) }
  }
}
