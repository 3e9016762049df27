// fold-batch-norm changes rounding, not meaning: the folded model equals the unfolded one within a
// stated tolerance on random inputs, parameters and running statistics (reference interpreter).
// The tolerance: every output element within 1e-5 · max(1, max |output|) of the unfolded result
// (f32; the fold rounds w·k to f32 once per filter element, where the unfolded model rounds the
// convolution and then normalizes in f64).
import Foundation
import Testing
import TTIR
import TTInterp
import TTPasses

struct BatchNormFoldingTests {
  static let examples = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("examples")

  /// Random values for every param and state: filters N(0, 0.5), scales in [0.5, 1.5), offsets and
  /// means N(0, 0.5), variances in [0.2, 2.2) (away from the initial ones, so the fold has work).
  static func randomParams(_ module: Module, seed: UInt64) -> [String: Tensor] {
    var params: [String: Tensor] = [:]
    for (p, param) in module.params.enumerated() {
      let shape = param.type.staticShape!
      let n = shape.reduce(1, *)
      let values = (0..<n).map { k -> Double in
        let u = SeededRandom.uniform(seed, UInt64(k), UInt64(p))
        if param.name.hasSuffix("var") { return 0.2 + 2 * u }
        if param.name.hasSuffix("gamma") { return 0.5 + u }
        return SeededRandom.normal(seed, UInt64(k), UInt64(p)) * 0.5
      }
      params[param.name] = Tensor(param.type.dtype, shape: shape, floats: values)
    }
    return params
  }

  @Test(arguments: ["resnet_small.ttir", "inception_small.ttir"])
  func foldedModelMatchesWithinTolerance(_ file: String) throws {
    let source = try String(contentsOf: Self.examples.appendingPathComponent(file), encoding: .utf8)
    let module = try Parser.parseAndVerify(source)
    var folded = module
    let context = PassContext()
    try PassManager(verifyEach: true).run(Pipeline(Pipelines.inference), on: &folded, context: context)
    let printed = Printer.print(folded)
    let logits = folded.functions.first { $0.name == "logits" }!
    // Every inference-mode norm of @logits was folded.
    #expect(!logits.body.contains { logits[$0].code == .batchNormInference }, "\(printed)")
    #expect((context.statistics["fold-batch-norm"]?["folded"] ?? 0) > 0)
    let params = Self.randomParams(module, seed: 3)
    let inputType = module.functions.first { $0.name == "logits" }!.argumentTypes[0]
    let shape = inputType.dims.map { $0.staticSize ?? 6 }
    let x = Tensor(.f32, shape: shape, floats: (0..<shape.reduce(1, *)).map { SeededRandom.uniform(11, UInt64($0), 0) })
    let before = try Interpreter(module: module, params: params).run("logits", [x])[0].doubles
    let after = try Interpreter(module: folded, params: params).run("logits", [x])[0].doubles
    let scale = max(1, before.map(abs).max()!)
    let worst = zip(before, after).map { abs($0 - $1) }.max()!
    print("fold-batch-norm \(file): max |folded - unfolded| = \(worst), max |output| = \(scale)")
    #expect(worst <= 1e-5 * scale, "max difference \(worst) at output scale \(scale)")
    #expect(before != after, "the fold should round differently somewhere (else the test checks nothing)")
  }
}
