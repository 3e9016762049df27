// The transformer ops against JAX (tools/gen_transformer_jax.py): random gathers with repeated
// indices, scatter-adds, layer norms, erf- and tanh-GELUs and integer-label softmax cross
// entropies, each with JAX's float64 outputs and vector-Jacobian products. Each case runs forward
// on the interpreter and compiled, and its gradient (ttfc's autodiff) on the interpreter and
// compiled; compiled code must not fall back to the interpreter for any of them (RowKernels,
// fused GELU kernels). TTFC_JAX_TRANSFORMER_CASES=DIR runs a fresh set.
import Foundation
import Testing
import TTCompiler
import TTIR
import TTInterp
import TTRuntime
import TTTrain

enum JAXTransformerCases {
  static let directory: URL = {
    if let given = ProcessInfo.processInfo.environment["TTFC_JAX_TRANSFORMER_CASES"], !given.isEmpty {
      return URL(fileURLWithPath: given)
    }
    return URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("JAXTransformer")
  }()
  static let names: [String] = {
    let files = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
    return files.filter { $0.hasSuffix(".ttir") }.map { String($0.dropLast(5)) }.sorted()
  }()
}

struct TransformerJAXTests {
  @Test func casesExist() {
    #expect(JAXTransformerCases.names.count >= 30, "run tools/gen_transformer_jax.py (\(JAXTransformerCases.directory.path))")
    for family in ["gather", "scatter_add", "layer_norm", "gelu_erf", "gelu_tanh", "sparse_cross_entropy"] {
      #expect(JAXTransformerCases.names.contains { $0.hasPrefix(family + "_") }, "no \(family) case")
    }
  }

  @Test(arguments: JAXTransformerCases.names)
  func matchesJAX(_ name: String) throws {
    let source = try String(contentsOf: JAXTransformerCases.directory.appendingPathComponent(name + ".ttir"), encoding: .utf8)
    let module = try Parser.parseAndVerify(source)
    var arrays: [String: Tensor] = [:]
    for (key, tensor) in try NpzArchive.read(path: JAXTransformerCases.directory.appendingPathComponent(name + ".npz").path) { arrays[key] = tensor }
    let forward = try #require(module.function(named: "forward"))
    let inputs = (0..<forward.arguments.count).map { arrays["in\($0)"]! }
    let cotangents = (0..<forward.resultTypes.count).map { arrays["ct\($0)"]! }
    let tolerance = 1e-10
    func check(_ results: [Tensor], _ prefix: String, _ what: String) {
      for (k, result) in results.enumerated() {
        let expected = arrays["\(prefix)\(k)"]!
        if let e = relativeError(result, expected) {
          #expect(e <= tolerance, "\(name) \(what) \(prefix)\(k): relative error \(e)")
        } else {
          Issue.record("\(name) \(what) \(prefix)\(k): shape \(result.shape) vs expected \(expected.shape)")
        }
      }
    }
    check(try Interpreter(module: module).run("forward", inputs), "out", "interpreted")
    let executable = try Executable(module: module, function: "forward")
    check(try executable.run(inputs), "out", "compiled")
    #expect(executable.statistics.interpretedOpCount == 0, "\(name): \(executable.statistics.interpretedOps)")
    let withGrad = try Autodiff.gradient(of: module, function: "loss", inputs: Array(inputs.indices))
    let gradInputs = inputs + cotangents
    // loss.grad returns the loss, then one gradient per input.
    let interpreted = try Interpreter(module: withGrad).run("loss.grad", gradInputs)
    check(Array(interpreted.dropFirst()), "grad", "interpreted gradient")
    let step = try Executable(module: withGrad, function: "loss.grad")
    check(Array(try step.run(gradInputs).dropFirst()), "grad", "compiled gradient")
    #expect(step.statistics.interpretedOpCount == 0, "\(name): \(step.statistics.interpretedOps)")
  }
}
