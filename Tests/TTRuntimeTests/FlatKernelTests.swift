// Flattened elementwise kernels (FlatKernels): one compiled kernel serves the same elementwise
// arithmetic at every shape and under any value names, and computes what the interpreter does.
import Testing
import TTCodegen
import TTCompiler
import TTIR
import TTInterp
@testable import TTRuntime

struct FlatKernelTests {
  static func module(_ shape: String, names: (String, String)) throws -> Module {
    try Parser.parseAndVerify("""
      module @m {
        func @f(%\(names.0): f32[\(shape)], %\(names.1): f32[\(shape)], %s: f32[]) -> f32[\(shape)] {
          %p = mul %\(names.0), %\(names.1) : f32[\(shape)]
          %q = mul %p, %s : f32[\(shape)]
          %r = tanh %q : f32[\(shape)]
          return %r
        }
      }
      """)
  }

  @Test func oneKernelServesEveryShapeAndName() throws {
    var kernelNames = Set<String>()
    for (shape, names) in [("3, 5", ("a", "b")), ("1031", ("grad", "moment")), ("2, 3, 129", ("x", "y")), ("B, 17", ("u", "v"))] {
      let module = try Self.module(shape, names: names)
      let executable = try Executable(module: module, function: "f")
      #expect(executable.kernels.count == 1 && executable.kernels.allSatisfy(\.isFlat))
      kernelNames.formUnion(executable.kernels.map(\.name))
      let dims = shape == "B, 17" ? [9, 17] : shape.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces))! }
      let n = dims.reduce(1, *)
      let x = Tensor(.f32, shape: dims, floats: (0..<n).map { Double($0 % 23) / 7 - 1.5 })
      let y = Tensor(.f32, shape: dims, floats: (0..<n).map { Double($0 % 11) / 5 - 1 })
      let s = Tensor.scalar(0.75)
      let got = try executable.run([x, y, s])[0]
      let want = try Interpreter(module: module).run("f", [x, y, s])[0]
      #expect(compiledMismatch(got, want) == nil)
    }
    #expect(kernelNames.count == 1)
  }

  @Test func broadcastsAndLayoutOpsAreNotFlattened() throws {
    let module = try Parser.parseAndVerify("""
      module @m {
        func @bias(%x: f32[4, 8], %b: f32[8]) -> f32[4, 8] {
          %y = add %x, %b : f32[4, 8]
          return %y
        }
        func @same(%x: f32[4, 8], %one: f32[1, 1]) -> f32[4, 8] {
          %y = add %x, %one : f32[4, 8]
          return %y
        }
      }
      """)
    #expect(FlatKernels.flattened(module.function(named: "bias")!) == nil)
    let flat = try #require(FlatKernels.flattened(module.function(named: "same")!))
    #expect(flat.argumentTypes == [TensorType(.f32, [.symbol(FlatKernels.symbol)]), TensorType(.f32, [])])
    #expect(FlatKernels.flattened(flat) == nil)
  }

  /// Elementwise loops carry no dependence between iterations, in place or not: one vectorized
  /// loop without run-time overlap checks serves both, and donated operands are overwritten in
  /// place with the same results.
  @Test func elementwiseLoopsAreParallelAndRunInPlace() throws {
    let cache = KernelCache(disk: nil)
    cache.keepListings = true
    let module = try Self.module("1031", names: ("a", "b"))
    let kernel = try cache.kernel(for: FlatKernels.flattened(module.functions[0])!)
    let ir = kernel.llvmIR ?? ""
    #expect(ir.contains("llvm.loop.parallel_accesses") && (ir.contains("<8 x float>") || ir.contains("<16 x float>")))
    #expect(!ir.contains("vector.memcheck") && !ir.contains("in_place"))
    let x = Tensor(.f32, shape: [1031], floats: (0..<1031).map { Double($0 % 19) / 4 - 2 })
    let y = Tensor(.f32, shape: [1031], floats: (0..<1031).map { Double($0 % 7) / 3 - 1 })
    let s = Tensor.scalar(1.25)
    let donating = try Executable(module: module, function: "f", donating: [0, 1])
    let want = try Interpreter(module: module).run("f", [x, y, s])[0]
    for _ in 0..<3 { #expect(compiledMismatch(try donating.run([x, y, s])[0], want) == nil) }
    #expect(donating.statisticsReused > 0)
  }
}
