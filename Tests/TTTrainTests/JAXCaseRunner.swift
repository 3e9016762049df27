// The runner shared by VisionJAXTests and TransformerJAXTests: a directory of JAX cases written by
// tools/jax_cases.py (NAME.ttir with @forward and @loss, NAME.npz with in<i>, ct<k>, out<k>,
// grad<i>), each run forward and through ttfc's autodiff, on the interpreter and compiled, and
// compared with JAX's float64 values.
import Foundation
import Testing
import TTCompiler
import TTIR
import TTInterp
import TTRuntime
import TTTrain

struct JAXCaseSet: Sendable {
  let directory: URL
  let names: [String]

  /// The cases in `environment`'s directory when it is set (tools/test writes a fresh random
  /// set), else the committed ones in `committed` beside this file.
  init(environment: String, committed: String) {
    if let given = ProcessInfo.processInfo.environment[environment], !given.isEmpty {
      directory = URL(fileURLWithPath: given)
    } else {
      directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent(committed)
    }
    let files = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
    names = files.filter { $0.hasSuffix(".ttir") }.map { String($0.dropLast(5)) }.sorted()
  }

  /// What a case's compiled runs were, for a suite's own checks of them.
  struct Run {
    let forward: Function
    let executable: Executable
    let gradient: Executable
  }

  /// Runs case `name` and records every output and gradient farther than `tolerance` (relative
  /// to the expected array's largest magnitude) from JAX's.
  func check(_ name: String, tolerance: Double = 1e-10) throws -> Run {
    let source = try String(contentsOf: directory.appendingPathComponent(name + ".ttir"), encoding: .utf8)
    let module = try Parser.parseAndVerify(source)
    var arrays: [String: Tensor] = [:]
    for (key, tensor) in try NpzArchive.read(path: directory.appendingPathComponent(name + ".npz").path) { arrays[key] = tensor }
    let forward = try #require(module.function(named: "forward"))
    let inputs = (0..<forward.arguments.count).map { arrays["in\($0)"]! }
    let cotangents = (0..<forward.resultTypes.count).map { arrays["ct\($0)"]! }
    func compare(_ results: [Tensor], _ prefix: String, _ what: String) {
      for (k, result) in results.enumerated() {
        let expected = arrays["\(prefix)\(k)"]!
        if let e = relativeError(result, expected) {
          #expect(e <= tolerance, "\(name) \(what) \(prefix)\(k): relative error \(e)")
        } else {
          Issue.record("\(name) \(what) \(prefix)\(k): shape \(result.shape) vs expected \(expected.shape)")
        }
      }
    }
    compare(try Interpreter(module: module).run("forward", inputs), "out", "interpreted")
    let executable = try Executable(module: module, function: "forward")
    compare(try executable.run(inputs), "out", "compiled")
    let withGrad = try Autodiff.gradient(of: module, function: "loss", inputs: Array(inputs.indices))
    let gradInputs = inputs + cotangents
    // loss.grad returns the loss, then one gradient per input.
    compare(Array(try Interpreter(module: withGrad).run("loss.grad", gradInputs).dropFirst()), "grad", "interpreted gradient")
    let gradient = try Executable(module: withGrad, function: "loss.grad")
    compare(Array(try gradient.run(gradInputs).dropFirst()), "grad", "compiled gradient")
    return Run(forward: forward, executable: executable, gradient: gradient)
  }
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
