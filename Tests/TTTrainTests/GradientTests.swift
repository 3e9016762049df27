// Every gradient rule against central finite differences in f64. Each case computes %y from
// parameters (the differentiated values) and inputs; the harness makes the loss
// sum(%y * %w) with random %w, so every element of the Jacobian is exercised. Inputs use the
// symbolic batch B = 3 where the case has one.
import Foundation
import Testing
import TTIR
import TTInterp
import TTTrain

struct GradientCase: Sendable, CustomTestStringConvertible {
  var name: String
  var params: [(String, String)]          // name, type
  var args: [(String, String)]            // name, type
  var body: [String]
  var y: String                            // type of %y
  var positive = false                     // draw params from (0.5, 2.5) instead of N(0, 1)
  /// Finite differences through an f32 rounding step are only good to about 1e-3.
  var tolerance = 1e-5
  var testDescription: String { name }

  var module: String {
    let paramLines = params.map { "  param @\($0.0) : \($0.1) = zeros" }.joined(separator: "\n")
    let argList = (args + [("w", y)]).map { "%\($0.0): \($0.1)" }.joined(separator: ", ")
    return """
      module @g {
      \(paramLines)
        func @loss(\(argList)) -> f64[] {
      \(body.map { "    " + $0 }.joined(separator: "\n"))
          %weighted = mul %y, %w : \(y)
          %l = reduce_sum %weighted : f64[]
          return %l
        }
      }
      """
  }
}

func gcase(_ name: String, params: [(String, String)], args: [(String, String)] = [], _ body: [String], y: String,
           positive: Bool = false) -> GradientCase {
  GradientCase(name: name, params: params, args: args, body: body, y: y, positive: positive)
}

let gradientCases: [GradientCase] = {
  var cases: [GradientCase] = []
  for op in ["add", "sub", "mul", "div", "max", "min"] {
    cases.append(gcase("\(op) broadcast", params: [("a", "f64[3, 1]"), ("b", "f64[4]")], ["%y = \(op) @a, @b : f64[3, 4]"], y: "f64[3, 4]", positive: op == "div"))
  }
  cases.append(gcase("pow", params: [("a", "f64[5]"), ("b", "f64[5]")], ["%y = pow @a, @b : f64[5]"], y: "f64[5]", positive: true))
  for op in ["neg", "abs", "exp", "tanh", "sigmoid", "relu", "gelu", "erf", "sin", "cos", "silu", "softplus"] {
    cases.append(gcase(op, params: [("a", "f64[2, 3]")], ["%y = \(op) @a : f64[2, 3]"], y: "f64[2, 3]"))
  }
  for op in ["log", "log1p", "sqrt", "rsqrt"] {
    cases.append(gcase(op, params: [("a", "f64[2, 3]")], ["%y = \(op) @a : f64[2, 3]"], y: "f64[2, 3]", positive: true))
  }
  cases.append(gcase("gelu approximate", params: [("a", "f64[6]")], ["%y = gelu @a {approximate = true} : f64[6]"], y: "f64[6]"))
  cases.append(gcase("select", params: [("a", "f64[4]"), ("b", "f64[4]")], args: [("c", "i1[4]")], ["%y = select %c, @a, @b : f64[4]"], y: "f64[4]"))
  cases.append(gcase("where broadcast", params: [("a", "f64[4]"), ("b", "f64[]")], args: [("c", "i1[3, 4]")], ["%y = where %c, @a, @b : f64[3, 4]"], y: "f64[3, 4]"))
  var cast = gcase("cast f64 to f32 and back", params: [("a", "f64[4]")], ["%f = cast @a : f32[4]", "%g = mul %f, %f : f32[4]", "%y = cast %g : f64[4]"], y: "f64[4]")
  cast.tolerance = 5e-3
  cases.append(cast)
  cases.append(gcase("reduce_sum keepdims", params: [("a", "f64[2, 3, 4]")], ["%y = reduce_sum @a {axes = [0, 2], keepdims = true} : f64[1, 3, 1]"], y: "f64[1, 3, 1]"))
  cases.append(gcase("reduce_mean over symbolic B", params: [("a", "f64[4]")], args: [("x", "f64[B, 4]")],
                     ["%s = add %x, @a : f64[B, 4]", "%q = mul %s, %s : f64[B, 4]", "%y = reduce_mean %q {axes = [0]} : f64[4]"], y: "f64[4]"))
  cases.append(gcase("reduce_max", params: [("a", "f64[3, 5]")], ["%y = reduce_max @a {axes = [1]} : f64[3]"], y: "f64[3]"))
  cases.append(gcase("reduce_min all", params: [("a", "f64[3, 5]")], ["%y = reduce_min @a : f64[]"], y: "f64[]"))
  for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
    let aType = ta ? "f64[4, 3]" : "f64[3, 4]", bType = tb ? "f64[5, 4]" : "f64[4, 5]"
    cases.append(gcase("matmul ta=\(ta) tb=\(tb)", params: [("a", aType), ("b", bType)],
                       ["%y = matmul @a, @b {transpose_a = \(ta), transpose_b = \(tb)} : f64[3, 5]"], y: "f64[3, 5]"))
  }
  cases.append(gcase("matmul batched broadcast", params: [("a", "f64[2, 3, 4]"), ("b", "f64[4, 2]")], ["%y = matmul @a, @b : f64[2, 3, 2]"], y: "f64[2, 3, 2]"))
  cases.append(gcase("matmul with symbolic batch", params: [("w", "f64[4, 2]")], args: [("x", "f64[B, 4]")], ["%y = matmul %x, @w : f64[B, 2]"], y: "f64[B, 2]"))
  cases.append(gcase("transpose", params: [("a", "f64[2, 3, 4]")], ["%y = transpose @a {perm = [2, 0, 1]} : f64[4, 2, 3]"], y: "f64[4, 2, 3]"))
  cases.append(gcase("reshape", params: [("a", "f64[2, 6]")], ["%y = reshape @a : f64[3, 4]"], y: "f64[3, 4]"))
  cases.append(gcase("broadcast_to", params: [("a", "f64[3, 1]")], ["%y = broadcast_to @a : f64[2, 3, 4]"], y: "f64[2, 3, 4]"))
  cases.append(gcase("slice", params: [("a", "f64[4, 5]")], ["%y = slice @a {axes = [1], limits = [4], starts = [1]} : f64[4, 3]"], y: "f64[4, 3]"))
  cases.append(gcase("concat", params: [("a", "f64[2, 1]"), ("b", "f64[2, 3]")], ["%y = concat @a, @b, @a {axis = 1} : f64[2, 5]"], y: "f64[2, 5]"))
  cases.append(gcase("pad", params: [("a", "f64[2, 3]")], ["%y = pad @a {high = [0, 2], low = [1, 0], value = 0.5} : f64[3, 5]"], y: "f64[3, 5]"))
  cases.append(gcase("softmax", params: [("a", "f64[3, 5]")], ["%y = softmax @a : f64[3, 5]"], y: "f64[3, 5]"))
  cases.append(gcase("softmax axis 0", params: [("a", "f64[3, 5]")], ["%y = softmax @a {axis = 0} : f64[3, 5]"], y: "f64[3, 5]"))
  cases.append(gcase("log_softmax", params: [("a", "f64[3, 5]")], ["%y = log_softmax @a : f64[3, 5]"], y: "f64[3, 5]"))
  cases.append(gcase("softmax_cross_entropy sparse", params: [("a", "f64[B, 5]")].map { ($0.0, "f64[3, 5]") }, args: [("labels", "i32[3]")],
                     ["%y = softmax_cross_entropy @a, %labels : f64[3]"], y: "f64[3]"))
  cases.append(gcase("softmax_cross_entropy dense", params: [("a", "f64[3, 5]"), ("p", "f64[3, 5]")],
                     ["%y = softmax_cross_entropy @a, @p : f64[3]"], y: "f64[3]"))
  cases.append(gcase("sigmoid_cross_entropy", params: [("a", "f64[6]"), ("z", "f64[6]")], ["%y = sigmoid_cross_entropy @a, @z : f64[6]"], y: "f64[6]"))
  cases.append(gcase("slice strided", params: [("a", "f64[7, 6]")],
                     ["%y = slice @a {axes = [0, 1], limits = [7, 5], starts = [1, 0], strides = [2, 3]} : f64[3, 2]"], y: "f64[3, 2]"))
  cases.append(gcase("slice strided past the end and unit-stride axis", params: [("a", "f64[5, 8]")],
                     ["%y = slice @a {axes = [1, 0], limits = [8, 4], starts = [1, 1], strides = [4, 1]} : f64[3, 2]"], y: "f64[3, 2]"))
  cases.append(gcase("slice strided over symbolic B", params: [("a", "f64[7]")], args: [("x", "f64[B, 7]")],
                     ["%s = mul %x, @a : f64[B, 7]", "%y = slice %s {axes = [1], limits = [7], starts = [2], strides = [2]} : f64[B, 3]"], y: "f64[B, 3]"))
  // Vision ops (IR-specs/ops/vision.md).
  cases.append(gcase("conv2d groups stride same", params: [("a", "f64[2, 5, 5, 4]"), ("b", "f64[3, 3, 2, 4]")],
                     ["%y = conv2d @a, @b {groups = 2, padding = \"SAME\", strides = [2, 2]} : f64[2, 3, 3, 4]"], y: "f64[2, 3, 3, 4]"))
  cases.append(gcase("conv2d dilated explicit", params: [("a", "f64[1, 6, 5, 2]"), ("b", "f64[2, 2, 2, 3]")],
                     ["%y = conv2d @a, @b {dilations = [2, 1], pads = [1, 0, 0, 2], strides = [1, 2]} : f64[1, 5, 3, 3]"], y: "f64[1, 5, 3, 3]"))
  cases.append(gcase("conv2d depthwise", params: [("a", "f64[2, 4, 4, 3]"), ("b", "f64[3, 3, 1, 6]")],
                     ["%y = conv2d @a, @b {groups = 3, padding = \"SAME\"} : f64[2, 4, 4, 6]"], y: "f64[2, 4, 4, 6]"))
  cases.append(gcase("conv2d symbolic batch", params: [("b", "f64[3, 3, 2, 2]")], args: [("x", "f64[B, 4, 4, 2]")],
                     ["%y = conv2d %x, @b : f64[B, 2, 2, 2]"], y: "f64[B, 2, 2, 2]"))
  cases.append(gcase("max_pool same overlapping", params: [("a", "f64[2, 5, 5, 2]")],
                     ["%y = max_pool @a {padding = \"SAME\", strides = [2, 2], window = [3, 3]} : f64[2, 3, 3, 2]"], y: "f64[2, 3, 3, 2]"))
  cases.append(gcase("max_pool symbolic batch", params: [("a", "f64[4, 4, 2]")], args: [("x", "f64[B, 4, 4, 2]")],
                     ["%s = mul %x, @a : f64[B, 4, 4, 2]", "%y = max_pool %s {strides = [1, 2], window = [2, 2]} : f64[B, 3, 2, 2]"], y: "f64[B, 3, 2, 2]"))
  cases.append(gcase("avg_pool same overlapping", params: [("a", "f64[2, 5, 5, 2]")],
                     ["%y = avg_pool @a {padding = \"SAME\", strides = [2, 2], window = [3, 3]} : f64[2, 3, 3, 2]"], y: "f64[2, 3, 3, 2]"))
  cases.append(gcase("avg_pool explicit counting padding", params: [("a", "f64[1, 4, 5, 2]")],
                     ["%y = avg_pool @a {count_include_pad = true, pads = [1, 1, 0, 1], strides = [1, 2], window = [2, 3]} : f64[1, 5, 2, 2]"], y: "f64[1, 5, 2, 2]"))
  cases.append(gcase("batch_norm_inference", params: [("a", "f64[3, 2, 2, 4]"), ("s", "f64[4]"), ("o", "f64[4]"), ("m", "f64[4]"), ("v", "f64[4]")],
                     ["%y = batch_norm_inference @a, @s, @o, @m, @v {epsilon = 0.01} : f64[3, 2, 2, 4]"], y: "f64[3, 2, 2, 4]", positive: true))
  cases.append(gcase("batch_norm_training output", params: [("a", "f64[3, 2, 2, 4]"), ("s", "f64[4]"), ("o", "f64[4]")],
                     ["%y, %m, %v = batch_norm_training @a, @s, @o {epsilon = 0.01} : f64[3, 2, 2, 4], f64[4], f64[4]"], y: "f64[3, 2, 2, 4]"))
  cases.append(gcase("batch_norm_training statistics", params: [("a", "f64[4, 3]"), ("s", "f64[3]"), ("o", "f64[3]")],
                     ["%n, %m, %v = batch_norm_training @a, @s, @o : f64[4, 3], f64[3], f64[3]", "%q = mul %m, %v : f64[3]",
                      "%t = add %q, %v : f64[3]", "%y = add %n, %t : f64[4, 3]"], y: "f64[4, 3]"))
  cases.append(gcase("batch_norm_training symbolic batch", params: [("s", "f64[2]"), ("o", "f64[2]"), ("a", "f64[3, 2]")], args: [("x", "f64[B, 3, 2]")],
                     ["%u = mul %x, @a : f64[B, 3, 2]", "%n, %m, %v = batch_norm_training %u, @s, @o : f64[B, 3, 2], f64[2], f64[2]",
                      "%q = mul %v, %m : f64[2]", "%y = add %n, %q : f64[B, 3, 2]"], y: "f64[B, 3, 2]"))
  // Transformer ops (IR-specs/ops/layout.md, nn.md): gather's scatter-add gradient with repeated
  // indices, scatter_add's own, layer_norm's fused gradient op.
  cases.append(gcase("gather repeated indices", params: [("a", "f64[4, 3]")],
                     ["%i = constant [[2, 0], [2, 2]] : i32[2, 2]", "%y = gather @a, %i : f64[2, 2, 3]"], y: "f64[2, 2, 3]"))
  cases.append(gcase("gather axis 1 over symbolic B", params: [("a", "f64[5]")], args: [("x", "f64[B, 5]")],
                     ["%s = mul %x, @a : f64[B, 5]", "%i = constant [4, 1, 4] : i64[3]", "%y = gather %s, %i {axis = 1} : f64[B, 3]"], y: "f64[B, 3]"))
  cases.append(gcase("scatter_add repeated indices", params: [("a", "f64[4, 3]"), ("u", "f64[2, 2, 3]")],
                     ["%i = constant [[2, 0], [2, 2]] : i32[2, 2]", "%y = scatter_add @a, %i, @u : f64[4, 3]"], y: "f64[4, 3]"))
  cases.append(gcase("scatter_add axis 1", params: [("a", "f64[2, 5]"), ("u", "f64[2, 3]")],
                     ["%i = constant [1, 1, 4] : i32[3]", "%y = scatter_add @a, %i, @u {axis = 1} : f64[2, 5]"], y: "f64[2, 5]"))
  cases.append(gcase("layer_norm", params: [("a", "f64[3, 5]"), ("s", "f64[5]"), ("o", "f64[5]")],
                     ["%y = layer_norm @a, @s, @o {epsilon = 0.01} : f64[3, 5]"], y: "f64[3, 5]"))
  cases.append(gcase("layer_norm symbolic batch", params: [("a", "f64[2, 4]"), ("s", "f64[4]"), ("o", "f64[4]")], args: [("x", "f64[B, 2, 4]")],
                     ["%u = mul %x, @a : f64[B, 2, 4]", "%n = layer_norm %u, @s, @o : f64[B, 2, 4]", "%y = mul %n, %u : f64[B, 2, 4]"], y: "f64[B, 2, 4]"))
  cases.append(gcase("dropout", params: [("a", "f64[4, 5]")], args: [("s", "i64[]")],
                     ["%y = dropout @a, %s {rate = 0.4, seed = 3, stream = 1} : f64[4, 5]"], y: "f64[4, 5]"))
  cases.append(gcase("slice of symbolic axes", params: [("a", "f64[4]")], args: [("x", "f64[B, S, 4]")],
                     ["%u = mul %x, @a : f64[B, S, 4]", "%y = slice %u {axes = [1, 0], limits = [3, 3], starts = [1, 0], strides = [1, 2]} : f64[2, 2, 4]"],
                     y: "f64[2, 2, 4]"))
  // Fused attention: the op itself (mask and dropout), and the chain that attention-fusion
  // replaces before differentiation (the loss evaluated unfused, the gradient fused).
  cases.append(gcase("attention", params: [("q", "f64[2, 3, 4]"), ("k", "f64[2, 5, 4]"), ("v", "f64[2, 5, 3]")], args: [("m", "f64[2, 1, 5]"), ("s", "i64[]")],
                     ["%y, %lse = attention @q, @k, @v, %m, %s {scale = 0.7, rate = 0.3, seed = 2, stream = 1} : f64[2, 3, 3], f64[2, 3]"], y: "f64[2, 3, 3]"))
  cases.append(gcase("attention chain fused", params: [("q", "f64[2, 8, 4]"), ("k", "f64[2, 8, 4]"), ("v", "f64[2, 8, 3]")], args: [("m", "f64[2, 1, 8]"), ("s", "i64[]")],
                     ["%s0 = matmul @q, @k {transpose_b = true} : f64[2, 8, 8]", "%c = constant 0.5 : f64[]", "%s1 = mul %s0, %c : f64[2, 8, 8]",
                      "%s2 = add %s1, %m : f64[2, 8, 8]", "%p = softmax %s2 : f64[2, 8, 8]", "%pd = dropout %p, %s {rate = 0.25, seed = 4} : f64[2, 8, 8]",
                      "%y = matmul %pd, @v : f64[2, 8, 3]"], y: "f64[2, 8, 3]"))
  cases.append(gcase("chain with reuse", params: [("a", "f64[4]")], ["%t = tanh @a : f64[4]", "%u = mul %t, @a : f64[4]", "%y = add %u, %t : f64[4]"], y: "f64[4]"))
  return cases
}()

struct GradientTests {
  static func randomTensor(_ type: TensorType, seed: UInt64, positive: Bool = false) -> Tensor {
    let shape = type.dims.map { $0.staticSize ?? 3 }
    let n = elementCount(shape)!
    if type.dtype.isFloat {
      return Tensor(type.dtype, shape: shape, floats: (0..<n).map {
        positive ? 0.5 + 2 * SeededRandom.uniform(seed, UInt64($0), 3) : SeededRandom.normal(seed, UInt64($0), 0)
      })
    }
    let range = type.dtype == .i1 ? 2.0 : 5.0
    return Tensor(type.dtype, shape: shape, ints: (0..<n).map { Int64(SeededRandom.uniform(seed, UInt64($0), 1) * range) })
  }

  /// Every op whose facts say it is differentiable has a case here (by the case name's first
  /// word), so a new op cannot land with an untested gradient rule.
  @Test func everyDifferentiableOpHasAFiniteDifferenceCase() {
    let covered = Set(gradientCases.map { String($0.name.split(separator: " ")[0]) })
    let untested = OpCode.allCases.filter { $0.info.differentiability == .differentiable && !covered.contains($0.rawValue) }
    #expect(untested.isEmpty, "no finite-difference case for \(untested)")
  }

  @Test(arguments: gradientCases)
  func matchesCentralDifferences(_ c: GradientCase) throws {
    let module = try Parser.parseAndVerify(c.module)
    let withGrad = try Autodiff.gradient(of: module, function: "loss")
    let grad = try #require(withGrad.function(named: "loss.grad"))
    let inputs = grad.argumentTypes.enumerated().map { Self.randomTensor($0.element, seed: UInt64(100 + $0.offset)) }
    var params: [String: Tensor] = [:]
    for (k, p) in module.params.enumerated() { params[p.name] = Self.randomTensor(p.type, seed: UInt64(k + 1), positive: c.positive) }
    let results = try Interpreter(module: withGrad, params: params).run("loss.grad", inputs)
    let loss = { (p: [String: Tensor]) throws -> Double in try Interpreter(module: module, params: p).run("loss", inputs)[0].doubles[0] }
    #expect(abs(results[0].doubles[0] - (try loss(params))) < 1e-12)
    let eps = 1e-6
    for (k, p) in module.params.enumerated() {
      let analytic = results[k + 1].doubles
      var values = params[p.name]!.doubles
      for i in values.indices {
        let original = values[i]
        values[i] = original + eps
        var plus = params; plus[p.name] = Tensor(p.type.dtype, shape: p.type.staticShape!, floats: values)
        values[i] = original - eps
        var minus = params; minus[p.name] = Tensor(p.type.dtype, shape: p.type.staticShape!, floats: values)
        values[i] = original
        let numeric = (try loss(plus) - (try loss(minus))) / (2 * eps)
        #expect(abs(numeric - analytic[i]) <= c.tolerance * max(1, abs(numeric)),
                "\(c.name): d/d@\(p.name)[\(i)] analytic \(analytic[i]) numeric \(numeric)")
      }
    }
  }

  @Test func calledFunctionsAreDifferentiatedThroughInlining() throws {
    let module = try Parser.parseAndVerify(String(contentsOf: URL(fileURLWithPath: #filePath).deletingLastPathComponent()
      .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("examples/mlp.ttir"), encoding: .utf8))
    let withGrad = try Autodiff.gradient(of: module, function: "loss")
    let grad = try #require(withGrad.function(named: "loss.grad"))
    #expect(grad.resultTypes.count == 1 + module.params.count)
    #expect(grad.resultTypes.dropFirst() == ArraySlice(module.params.map(\.type)))
    #expect(!grad.body.contains { grad[$0].code == .call })
  }

  @Test func errorsAreNamed() throws {
    let module = try Parser.parseAndVerify("module @m {\n  param @w : f32[3] = zeros\n  func @f(%x: f32[3]) -> f32[3] {\n    %y = mul %x, @w : f32[3]\n    return %y\n  }\n}\n")
    #expect(throws: AutodiffError.notScalarLoss("f", TensorType(.f32, shape: [3]))) { try Autodiff.gradient(of: module, function: "f") }
    #expect(throws: AutodiffError.unknownFunction("g")) { try Autodiff.gradient(of: module, function: "g") }
  }
}

import TTPasses

struct GradientOptimizationTests {
  /// Backward graphs are the optimizer's biggest customers: -O2 (with the verifier after every
  /// pass) must leave the gradient function's results bit for bit unchanged.
  @Test(arguments: ["mlp.ttir", "logreg.ttir", "wide_deep.ttir"])
  func gradientsSurviveO2Unchanged(_ file: String) throws {
    let module = try TrainingFixtures.module(file)
    let withGrad = try Autodiff.gradient(of: module, function: "loss")
    var optimized = withGrad
    try PassManager(verifyEach: true).run(Pipelines.standard(level: 2), on: &optimized, context: PassContext())
    #expect(Printer.print(optimized).contains("fusion("))
    let grad = withGrad.function(named: "loss.grad")!
    for batch in [1, 6] {
      let inputs = grad.argumentTypes.enumerated().map { GradientTests.randomTensor($0.element.with(dims: $0.element.dims.map { $0.isSymbolic ? .known(batch) : $0 }), seed: UInt64($0.offset + 7)) }
      let before = try Interpreter(module: withGrad).run("loss.grad", inputs)
      let after = try Interpreter(module: optimized).run("loss.grad", inputs)
      for (a, b) in zip(before, after) { #expect(a.isIdentical(to: b)) }
    }
  }
}
