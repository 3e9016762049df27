// Every pass is near-linear in the function's size (issue 14, defect 6): -O2 on a 100,000-op
// chain, on residual chains (each value read twice: `h = tanh(h) + h`) and on chains that add a
// value to itself, which a pass spelling the graph out as a tree pays for exponentially. The
// passes count the steps of their shape-dependent searches (PassContext.work); the tests bound
// that count by a small multiple of the op count, and check the work grows linearly from one size
// to ten times it. Work is counted, not timed.
import Testing
import TTIR
import TTPasses

enum LongGraphs {
  /// `%x{i} = OP %x{i-1}` for i in 1...n, cycling through neg, abs, relu.
  static func chain(_ n: Int) -> Module {
    build(n) { function, previous, i in
      function.appendValue([.neg, .abs, .relu][i % 3], [previous], type: function.type(of: previous))
    }
  }

  /// `%t{i} = tanh %h{i-1}; %h{i} = add %t{i}, %h{i-1}`: n residual steps, 2n ops.
  static func residual(_ n: Int) -> Module {
    build(n) { function, previous, _ in
      let t = function.appendValue(.tanh, [previous], type: function.type(of: previous))
      return function.appendValue(.add, [t, previous], type: function.type(of: previous))
    }
  }

  /// `%x{i} = add %x{i-1}, %x{i-1}`.
  static func doubling(_ n: Int) -> Module {
    build(n) { function, previous, _ in function.appendValue(.add, [previous, previous], type: function.type(of: previous)) }
  }

  static func build(_ n: Int, _ step: (inout Function, ValueID, Int) -> ValueID) -> Module {
    var function = Function(name: "f")
    var value = function.addArgument(name: "x", type: TensorType(.f32, [.symbol("B"), .known(8)]))
    for i in 1...n { value = step(&function, value, i) }
    function.returnValues = [value]
    function.resultTypes = [function.type(of: value)]
    var module = Module(name: "long")
    module.functions = [function]
    return module
  }

  /// Runs -O2 and returns (work counted, live ops after).
  static func optimize(_ module: Module) throws -> (work: Int, ops: Int) {
    var optimized = module
    let context = PassContext()
    _ = try PassManager().run(Pipelines.standard(level: 2), on: &optimized, context: context)
    #expect(Verifier.verify(optimized).isEmpty)
    return (context.work, optimized.functions[0].body.count)
  }
}

struct LinearityTests {
  @Test func aHundredThousandOpChainOptimizesInLinearWork() throws {
    let n = 100_000
    let (work, ops) = try LongGraphs.optimize(LongGraphs.chain(n))
    print("linearity: -O2 on a \(n)-op chain: work \(work), \(ops) ops after")
    #expect(work <= 8 * n, "fusion work \(work) for \(n) ops")
    #expect(ops <= n / 100 + 2, "a chain of elementwise ops is fused in regions of up to 128 ops (\(ops) ops after)")
    let (smallWork, _) = try LongGraphs.optimize(LongGraphs.chain(n / 10))
    #expect(Double(work) / Double(max(smallWork, 1)) < 12, "10x the ops took \(Double(work) / Double(max(smallWork, 1)))x the work")
  }

  @Test(arguments: [26, 200, 2_000])
  func residualChainsOptimizeInLinearWork(_ steps: Int) throws {
    let (work, ops) = try LongGraphs.optimize(LongGraphs.residual(steps))
    #expect(work <= 12 * 2 * steps, "\(steps) residual steps: work \(work)")
    #expect(ops <= 2 * steps / 100 + 2)
  }

  @Test(arguments: [20, 1_000])
  func valuesReadTwiceDoNotMultiplyTheWork(_ n: Int) throws {
    let (work, ops) = try LongGraphs.optimize(LongGraphs.doubling(n))
    #expect(work <= 12 * n, "\(n) doublings: work \(work)")
    #expect(ops <= n / 100 + 2)
  }
}

/// A fixpoint group stopped by its cap while its passes still change the module says so
/// (a warning and a counter), instead of returning as if it had converged.
struct FixpointCapTests {
  @Test func aFixpointStoppedByItsCapIsReported() throws {
    let restless = Pass(name: "restless", summary: "always reports a change") { _, _ in true }
    var module = LongGraphs.chain(3)
    let context = PassContext()
    _ = try PassManager().run(Pipeline([.fixpoint(name: "loop", steps: [.pass(restless)], cap: 3)]), on: &module, context: context)
    #expect(context.statistics["loop"]?["cap-reached"] == 1)
    #expect(context.warnings == ["'loop' stopped at its cap of 3 rounds while its passes were still changing the module"])
    // The standard pipeline converges on real graphs: no warning.
    let converging = PassContext()
    var chain = LongGraphs.chain(50)
    _ = try PassManager().run(Pipelines.standard(level: 2), on: &chain, context: converging)
    #expect(converging.warnings.isEmpty)
  }
}
