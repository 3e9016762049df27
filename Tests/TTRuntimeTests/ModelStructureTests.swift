// Real-model structures against the oracle (issue 14): random graphs built with the structures
// plain random graphs rarely form (softmax and normalizations followed by batch reductions,
// several reductions over different axes in one region, residual steps, helpers with their own
// symbols called after -O2, negative zeros, B = 1) run compiled and on the interpreter; the same
// graphs optimized at -O2, printed and parsed back (what `ttfc opt` writes) must compile and run
// too. Every lit case in Passes/ is treated the same way: what `ttfc opt` prints is a program.
// 1,000 graphs per run; TTFC_RANDOM_GRAPHS=N runs more.
import Foundation
import Testing
import TTFuzz
import TTCompiler
import TTIR
import TTInterp
import TTPasses
@testable import TTRuntime

/// Where two tensors hold zeros of different signs (values otherwise compared by `compiledMismatch`).
func signedZeroMismatch(_ got: Tensor, _ expected: Tensor) -> String? {
  guard got.dtype.isFloat, got.shape == expected.shape else { return nil }
  let a = got.doubles, b = expected.doubles
  if let i = a.indices.first(where: { a[$0] == 0 && b[$0] == 0 && a[$0].sign != b[$0].sign }) {
    return "element \(i): \(a[i]) vs \(b[i]) (sign of zero)"
  }
  return nil
}

enum ModelStructures {
  static var graphCount: Int { Int(ProcessInfo.processInfo.environment["TTFC_RANDOM_GRAPHS"] ?? "") ?? 1000 }

  /// Mostly normal values, with -0.0, +0.0 and a few large ones (exp overflow) mixed in.
  static func inputs(_ function: Function, batch: Int, seed: UInt64) -> [Tensor] {
    function.argumentTypes.enumerated().map { i, type in
      let shape = type.dims.map { $0.staticSize ?? batch }
      let values = (0..<elementCount(shape)!).map { k -> Double in
        let u = SeededRandom.uniform(seed, UInt64(k), UInt64(i) + 50)
        if u < 0.08 { return -0.0 }
        if u < 0.12 { return 0.0 }
        if u < 0.14 { return 60 }
        return SeededRandom.normal(seed, UInt64(k), UInt64(i)) * 2
      }
      return Tensor(type.dtype, shape: shape, floats: values)
    }
  }

  /// Issues for every result of `executable` that differs from the interpreter on `reference`.
  static func compare(_ reference: Module, _ executable: Executable, label: String, seed: UInt64, batches: [Int], text: () -> String) throws {
    for batch in batches {
      let inputs = inputs(reference.functions[0], batch: batch, seed: seed)
      let expected = try Interpreter(module: reference).run(reference.functions[0].name, inputs)
      let got = try executable.run(inputs)
      for (i, (g, e)) in zip(got, expected).enumerated() {
        if let problem = compiledMismatch(g, e, rtol: 2e-3, atol: 1e-4) ?? signedZeroMismatch(g, e) {
          Issue.record("\(label), seed \(seed) B=\(batch) result \(i): \(problem)\n\(text())")
          return
        }
      }
    }
  }
}

struct ModelStructureTests {
  @Test func modelStructuresMatchTheInterpreterCompiledAndAfterOpt() throws {
    var kernels = 0, calls = 0
    for seed in 0..<UInt64(ModelStructures.graphCount) {
      var builder = RandomGraphBuilder(seed: seed &* 2_654_435_761 &+ 7)
      let module = builder.build(ops: Int(seed % 18) + 6, modelLike: true)
      try #require(Verifier.verify(module).isEmpty, "invalid graph, seed \(seed):\n\(Printer.print(module))")
      calls += module.functions.count - 1
      let executable = try Executable(module: module, function: "main")
      kernels += executable.statistics.kernels
      try ModelStructures.compare(module, executable, label: "compiled", seed: seed, batches: [1, 4]) { Printer.print(module) }
      // What `ttfc opt -O2` prints, parsed back and compiled: the runtime must accept it.
      var optimized = module
      _ = try PassManager().run(Pipelines.standard(level: 2), on: &optimized, context: PassContext())
      let printed = Printer.print(optimized)
      let reparsed = try Parser.parseAndVerify(printed)
      let fromOpt = try Executable(module: reparsed, function: "main")
      try ModelStructures.compare(module, fromOpt, label: "opt output", seed: seed, batches: [1, 3]) { Printer.print(module) + "\n-O2:\n" + printed }
    }
    print("model structures: \(ModelStructures.graphCount) graphs (\(calls) helpers called), \(kernels) kernels, compiled and from opt output")
    #expect(kernels > ModelStructures.graphCount, "the graphs should compile to kernels")
    #expect(calls > ModelStructures.graphCount / 20, "the generator should call helpers with their own symbols")
  }

  /// Issue 14, defect 1: exp feeding a last-axis sum, then a reduction over the batch.
  @Test func expRowSumThenBatchSum() throws {
    let module = try Parser.parseAndVerify("""
      module @m {
        func @f(%x: f32[2, 3]) -> f32[2, 3] {
          %e = exp %x : f32[2, 3]
          %s = reduce_sum %e {axes = [1], keepdims = true} : f32[2, 1]
          %p = sub %e, %s : f32[2, 3]
          %c = reduce_sum %p {axes = [0], keepdims = true} : f32[1, 3]
          %o = sub %p, %c : f32[2, 3]
          return %o
        }
        func @g(%x: f32[B, 5]) -> f32[B, 5] {
          %y = softmax %x : f32[B, 5]
          %m = reduce_min %y {axes = [0], keepdims = true} : f32[1, 5]
          %o = sub %y, %m : f32[B, 5]
          return %o
        }
      }
      """)
    let zeros = Tensor(.f32, shape: [2, 3], floats: [Double](repeating: 0, count: 6))
    let got = try Executable(module: module, function: "f").run([zeros])[0]
    #expect(got.doubles == [Double](repeating: 2, count: 6), "\(got.doubles)")
    for batch in [1, 2, 7, 64] {
      let x = ExecutableTests.randomInputs(module.function(named: "g")!, batch: batch, seed: 3)
      let expected = try Interpreter(module: module).run("g", x)[0]
      let compiled = try Executable(module: module, function: "g").run(x)[0]
      #expect(compiledMismatch(compiled, expected) == nil, "B=\(batch): \(compiledMismatch(compiled, expected) ?? "")")
    }
  }

  /// Issue 14, defect 2: a callee's fused reduction keeps the callee's symbols after -O2; the
  /// printed module must run (the symbols are bound to the caller's dims when inlined).
  @Test func optimizedCalleeWithItsOwnSymbolsRuns() throws {
    var module = try Parser.parseAndVerify("""
      module @m {
        func @center(%h: f32[N, D]) -> f32[N, D] {
          %mu = reduce_mean %h {axes = [1], keepdims = true} : f32[N, 1]
          %d = sub %h, %mu : f32[N, D]
          return %d
        }
        func @f(%x: f32[B, 4]) -> f32[B, 4] {
          %y = call @center(%x) : f32[B, 4]
          return %y
        }
      }
      """)
    let original = module
    _ = try PassManager().run(Pipelines.standard(level: 2), on: &module, context: PassContext())
    let printed = Printer.print(module)
    #expect(printed.contains("fusion"), "the callee's reduction should be fused:\n\(printed)")
    let reparsed = try Parser.parseAndVerify(printed)
    let x = Tensor(.f32, shape: [3, 4], floats: (0..<12).map(Double.init))
    let got = try Executable(module: reparsed, function: "f").run([x])[0]
    let expected = try Interpreter(module: original).run("f", [x])[0]
    #expect(got.isIdentical(to: expected) || compiledMismatch(got, expected) == nil)
    #expect(got.doubles == [-1.5, -0.5, 0.5, 1.5, -1.5, -0.5, 0.5, 1.5, -1.5, -0.5, 0.5, 1.5])
  }

  /// Issue 14, defect 3: tanh(-0.0) and a batch sum of -0.0 at B = 1 keep the sign, compiled
  /// as on the interpreter (and as with a static [1, 4] type); an empty sum is +0.0.
  @Test func signedZerosMatchTheInterpreter() throws {
    let module = try Parser.parseAndVerify("""
      module @m {
        func @f(%x: f32[B, 4]) -> (f32[B, 4], f32[4], f32[4], f32[B, 4]) {
          %t = tanh %x : f32[B, 4]
          %s = reduce_sum %x {axes = [0]} : f32[4]
          %m = reduce_mean %x {axes = [0]} : f32[4]
          %n = neg %x : f32[B, 4]
          return %t, %s, %m, %n
        }
        func @g(%x: f32[1, 4]) -> f32[4] {
          %s = reduce_sum %x {axes = [0]} : f32[4]
          return %s
        }
        func @empty(%x: f32[B, 4]) -> f32[4] {
          %s = reduce_sum %x {axes = [0]} : f32[4]
          return %s
        }
      }
      """)
    let x = Tensor(.f32, shape: [1, 4], floats: [-0.0, 0.0, -0.0, 0.0])
    let expected = try Interpreter(module: module).run("f", [x])
    let got = try Executable(module: module, function: "f").run([x])
    for (g, e) in zip(got, expected) {
      #expect(g.isIdentical(to: e), "\(g.doubles.map { $0.sign == .minus }) vs \(e.doubles.map { $0.sign == .minus })")
    }
    #expect(got[0].doubles[0].sign == .minus && got[1].doubles[0].sign == .minus && got[1].doubles[1].sign == .plus)
    let staticSum = try Executable(module: module, function: "g").run([x])[0]
    #expect(staticSum.isIdentical(to: got[1]))
    // Wider: a column sum over several negative zeros stays -0.0; any +0.0 makes it +0.0.
    let y = Tensor(.f32, shape: [3, 4], floats: [-0.0, -0.0, 0.0, -1, -0.0, 0.0, -0.0, 1, -0.0, -0.0, -0.0, 0])
    let sums = try Executable(module: module, function: "f").run([y])[1]
    #expect(sums.doubles.map { $0.sign == .minus } == [true, false, false, false] && sums.doubles[3] == 0)
    let none = Tensor(.f32, shape: [0, 4], floats: [])
    let empty = try Executable(module: module, function: "empty").run([none])[0]
    #expect(empty.doubles.allSatisfy { $0 == 0 && $0.sign == .plus }, "\(empty.doubles)")
  }

  /// Sparse-label cross entropy is logsumexp(l) - l[label]: +0.0 (not -0.0) where the label's
  /// logit dominates, compiled and interpreted.
  @Test func crossEntropyOfADominantLabelIsPositiveZero() throws {
    let module = try Parser.parseAndVerify("""
      module @m {
        func @f(%x: f32[B, 3], %y: i32[B]) -> f32[B] {
          %l = softmax_cross_entropy %x, %y : f32[B]
          return %l
        }
      }
      """)
    let x = Tensor(.f32, shape: [3, 3], floats: [1, -100, -100, 0, -200, -200, 5, 5, 5])
    let y = Tensor(.i32, shape: [3], ints: [0, 0, 1])
    for result in [try Interpreter(module: module).run("f", [x, y])[0], try Executable(module: module, function: "f").run([x, y])[0]] {
      #expect(result.doubles[0] == 0 && result.doubles[0].sign == .plus && result.doubles[1].sign == .plus, "\(result.doubles)")
      #expect(abs(result.doubles[2] - 1.0986123) < 1e-6)
    }
  }

  /// What `ttfc opt` prints for every lit case in Passes/ parses, compiles and matches the
  /// interpreter on the unoptimized case (opt output is a valid program, by test).
  @Test func everyOptOutputInThePassesSuiteRunsCompiled() throws {
    let passes = Repository.root.appendingPathComponent("Passes")
    let files = (FileManager.default.enumerator(atPath: passes.path)?.compactMap { $0 as? String } ?? [])
      .filter { $0.hasSuffix(".ttir") }.sorted()
    var cases = 0
    for file in files {
      let text = try String(contentsOf: passes.appendingPathComponent(file), encoding: .utf8)
      // The pipeline of the first `ttfc opt` RUN line: -O<n> or -p LIST.
      guard let run = text.split(separator: "\n").first(where: { $0.contains("RUN:") && $0.contains("opt") }) else { continue }
      let words = run.split(separator: " ").map(String.init)
      var pipeline = Pipelines.standard(level: 2)
      if let p = words.firstIndex(of: "-p"), p + 1 < words.count, case .success(let parsed) = Pipelines.parse(words[p + 1]) { pipeline = parsed }
      else if let level = words.first(where: { ["-O0", "-O1", "-O2"].contains($0) }) { pipeline = Pipelines.standard(level: Int(level.dropFirst(2))!) }
      for source in text.components(separatedBy: "// -----") {
        guard source.contains("module"), let module = try? Parser.parseAndVerify(source) else { continue }
        var optimized = module
        var options = PassOptions()
        options.fastMath = words.contains("--fast-math")
        guard (try? PassManager().run(pipeline, on: &optimized, context: PassContext(options: options))) != nil else { continue }
        let printed = Printer.print(optimized)
        let reparsed = try Parser.parseAndVerify(printed)
        for function in module.functions where function.argumentTypes.allSatisfy({ $0.dtype.isFloat }) {
          cases += 1
          let executable = try Executable(module: reparsed, function: function.name)
          for batch in [1, 3] {
            let inputs = ExecutableTests.randomInputs(function, batch: batch, seed: UInt64(cases))
            // Inputs the case's function rejects (indices out of range) are not a test of the compiler.
            // amp changes precision on purpose: its output is checked against the interpreter
            // running that output (compiled half code equals interpreted half code).
            let reference = pipeline.passNames.contains("amp") ? reparsed : module
            guard let expected = try? Interpreter(module: reference).run(function.name, inputs) else { continue }
            let got = try executable.run(inputs)
            for (i, (g, e)) in zip(got, expected).enumerated() {
              if let problem = compiledMismatch(g, e, rtol: 2e-3, atol: 1e-4) {
                Issue.record("\(file) @\(function.name) B=\(batch) result \(i): \(problem)\n\(printed)")
              }
            }
          }
        }
      }
    }
    print("opt output compiled: \(cases) functions from \(files.count) lit files")
    #expect(cases >= 20)
  }
}
