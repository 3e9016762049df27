// The vision ops against JAX (tools/gen_vision_jax.py): random conv2d (strides, dilations, groups,
// SAME/VALID/EXPLICIT), max/avg pooling, batch norm in both modes and strided slices, each with
// JAX's float64 outputs and vector-Jacobian products. Each case runs forward on the interpreter
// and compiled, and its gradient (ttfc's autodiff, i.e. the gradient rules and gradient ops) on
// the interpreter and compiled. The committed cases are in JAXVision/; tools/test writes a fresh
// random set with JAX and points TTFC_JAX_VISION_CASES at it.
import Foundation
import Testing
import TTCompiler
import TTIR
import TTInterp
import TTRuntime
import TTTrain

enum JAXVisionCases {
  static let directory: URL = {
    if let given = ProcessInfo.processInfo.environment["TTFC_JAX_VISION_CASES"], !given.isEmpty {
      return URL(fileURLWithPath: given)
    }
    return URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("JAXVision")
  }()
  static let names: [String] = {
    let files = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
    return files.filter { $0.hasSuffix(".ttir") }.map { String($0.dropLast(5)) }.sorted()
  }()
}

/// The largest difference between `got` and `expected`, relative to expected's largest magnitude
/// (at least 1), or nil when the shapes differ.
func relativeError(_ got: Tensor, _ expected: Tensor) -> Double? {
  guard got.shape == expected.shape else { return nil }
  let a = got.doubles, b = expected.doubles
  let scale = max(1, b.map(abs).max() ?? 0)
  var worst = 0.0
  for i in a.indices { worst = max(worst, abs(a[i] - b[i]) / scale) }
  return worst
}

struct VisionJAXTests {
  @Test func casesExist() {
    #expect(JAXVisionCases.names.count >= 30, "run tools/gen_vision_jax.py (\(JAXVisionCases.directory.path))")
    for family in ["conv2d", "max_pool", "avg_pool", "batch_norm_training", "batch_norm_inference", "strided_slice"] {
      #expect(JAXVisionCases.names.contains { $0.hasPrefix(family + "_") }, "no \(family) case")
    }
  }

  @Test(arguments: JAXVisionCases.names)
  func matchesJAX(_ name: String) throws {
    let source = try String(contentsOf: JAXVisionCases.directory.appendingPathComponent(name + ".ttir"), encoding: .utf8)
    let module = try Parser.parseAndVerify(source)
    var arrays: [String: Tensor] = [:]
    for (key, tensor) in try NpzArchive.read(path: JAXVisionCases.directory.appendingPathComponent(name + ".npz").path) { arrays[key] = tensor }
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
    // Every vision op compiles: convolutions (ConvKernels) and pools (PoolKernels) as routines,
    // batch norm expanded into swept statistics and fused loops; none runs on the interpreter.
    if let op = forward.body.map({ forward[$0].code }).first {
      let stats = executable.statistics
      #expect(stats.interpretedOpCount == 0, "\(name): \(stats.interpretedOps)")
      if op == .conv2d { #expect(stats.convolutions == 1, "\(name)") }
      if op == .maxPool || op == .avgPool { #expect(stats.poolings == 1, "\(name)") }
    }
    let withGrad = try Autodiff.gradient(of: module, function: "loss", inputs: Array(inputs.indices))
    let gradInputs = inputs + cotangents
    // loss.grad returns the loss, then one gradient per input.
    let interpreted = try Interpreter(module: withGrad).run("loss.grad", gradInputs)
    check(Array(interpreted.dropFirst()), "grad", "interpreted gradient")
    let compiled = try Executable(module: withGrad, function: "loss.grad").run(gradInputs)
    check(Array(compiled.dropFirst()), "grad", "compiled gradient")
  }
}
