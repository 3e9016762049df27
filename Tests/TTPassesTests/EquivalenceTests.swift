// Semantics are preserved, shown by execution: random graphs (and the example models) run through
// the reference interpreter before and after each pass and after the -O1 and -O2 pipelines, on two
// different batch sizes. Every default rewrite is IEEE-exact, so results must be bitwise identical
// (NaN matches NaN). 500 graphs per run; TTFC_RANDOM_GRAPHS=N runs more.
import Foundation
import Testing
import TTIR
import TTInterp
import TTPasses
import TTFuzz

enum Equivalence {
  static var graphCount: Int { Int(ProcessInfo.processInfo.environment["TTFC_RANDOM_GRAPHS"] ?? "") ?? 500 }

  static let pipelines: [(String, Pipeline)] = {
    // lower-composites replaces softmax & co. by their formulas, which round differently: it is
    // checked against the interpreter within tolerance by TTRuntimeTests, not bit for bit here.
    // amp changes precision on purpose (its lit cases and the mixed-precision training tests
    // check it). fold-batch-norm rescales a filter, which rounds differently: BatchNormFoldingTests
    // checks it within a tolerance.
    var list: [(String, Pipeline)] = Pipelines.passes.filter { !["lower-composites", "amp", "fold-batch-norm"].contains($0.name) }
      .map { ($0.name, Pipeline([.pass($0)])) }
    list.append(("-O1", Pipelines.standard(level: 1)))
    list.append(("-O2", Pipelines.standard(level: 2)))
    return list
  }()

  static func inputs(for function: Function, batch: Int, seed: UInt64) -> [Tensor] {
    function.argumentTypes.enumerated().map { i, type in
      let shape = type.dims.map { $0.staticSize ?? batch }
      let count = elementCount(shape)!
      // Mostly ordinary values, a few specials, so NaN/inf/-0.0 flow through the graph.
      let values = (0..<count).map { k -> Double in
        let u = SeededRandom.uniform(seed, UInt64(i * 1000 + k), 1)
        if u < 0.04 { return [Double.nan, .infinity, -.infinity, -0.0][Int(u * 100) % 4] }
        return SeededRandom.normal(seed, UInt64(i * 1000 + k), 0) * 2
      }
      return Tensor(type.dtype, shape: shape, floats: values)
    }
  }

  /// nil when both runs agree bit for bit (or fail with the same error), else what differs.
  static func difference(_ a: Module, _ b: Module, function: String, inputs: [Tensor]) -> String? {
    let ra: Result<[Tensor], InterpreterError> = Result { () throws(InterpreterError) in try Interpreter(module: a).run(function, inputs) }
    let rb: Result<[Tensor], InterpreterError> = Result { () throws(InterpreterError) in try Interpreter(module: b).run(function, inputs) }
    switch (ra, rb) {
    case (.success(let x), .success(let y)):
      for (i, (p, q)) in zip(x, y).enumerated() where !p.isIdentical(to: q) {
        return "result \(i): before \(p) after \(q)"
      }
      return x.count == y.count ? nil : "result counts differ"
    case (.failure(let e), .failure(let f)):
      return e == f ? nil : "errors differ: \(e) vs \(f)"
    case (.success, .failure(let e)): return "only the optimized module fails: \(e)"
    case (.failure(let e), .success): return "only the original module fails: \(e)"
    }
  }
}

struct EquivalenceTests {
  @Test func randomGraphsAreUnchangedBitForBitByEveryPassAndPipeline() throws {
    var checked = 0, changedByPipeline = 0
    var statistics: [String: Int] = [:]
    for seed in 0..<UInt64(Equivalence.graphCount) {
      var builder = RandomGraphBuilder(seed: seed &* 7919 &+ 1)
      let module = builder.build(ops: Int(seed % 26) + 5)
      let problems = Verifier.verify(module)
      try #require(problems.isEmpty, "generator made an invalid graph (seed \(seed)): \(problems)\n\(Printer.print(module))")
      let function = module.functions[0]
      let runs = [1, 3].map { Equivalence.inputs(for: function, batch: $0, seed: seed) }
      for (name, pipeline) in Equivalence.pipelines {
        var optimized = module
        let context = PassContext()
        do { try PassManager(verifyEach: true).run(pipeline, on: &optimized, context: context) }
        catch { Issue.record("\(name) broke the verifier on seed \(seed): \(error)\n\(Printer.print(module))"); continue }
        if name == "-O2" && optimized != module { changedByPipeline += 1 }
        if name == "-O2" { for (_, counters) in context.statistics { for (k, v) in counters { statistics[k, default: 0] += v } } }
        for inputs in runs {
          if let difference = Equivalence.difference(module, optimized, function: "main", inputs: inputs) {
            Issue.record("\(name) changed the results of seed \(seed): \(difference)\nbefore:\n\(Printer.print(module))after:\n\(Printer.print(optimized))")
            break
          }
        }
      }
      checked += 1
    }
    print("equivalence: \(checked) random graphs x \(Equivalence.pipelines.count) pipelines x 2 batch sizes; -O2 changed \(changedByPipeline); rewrites \(statistics.sorted { $0.key < $1.key })")
    #expect(checked == Equivalence.graphCount)
    #expect(changedByPipeline > checked / 2, "the generator should give the passes work")
  }

  @Test(arguments: ["mlp.ttir", "logreg.ttir", "wide_deep.ttir"])
  func examplesAreUnchangedByO2(_ file: String) throws {
    let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
      .deletingLastPathComponent().appendingPathComponent("examples/\(file)")
    let module = try Parser.parseAndVerify(String(contentsOf: url, encoding: .utf8))
    var optimized = module
    try PassManager(verifyEach: true).run(Pipelines.standard(level: 2), on: &optimized, context: PassContext())
    #expect(Printer.print(optimized).contains("fusion("))
    for function in module.functions {
      let inputs = function.argumentTypes.enumerated().map { i, type -> Tensor in
        let shape = type.dims.map { $0.staticSize ?? 5 }
        let n = elementCount(shape)!
        if type.dtype.isFloat { return Tensor(type.dtype, shape: shape, floats: (0..<n).map { SeededRandom.normal(9, UInt64($0), UInt64(i)) }) }
        return Tensor(type.dtype, shape: shape, ints: (0..<n).map { Int64($0 % 2) })
      }
      #expect(Equivalence.difference(module, optimized, function: function.name, inputs: inputs) == nil, "@\(function.name)")
    }
  }
}
