// Multi-output kernels (fusion phase 3): an elementwise region that computes several results of
// one shape runs as one kernel storing each, the results are what the interpreter computes, and
// operands it overwrites in place go to one result each.
import Testing
import TTCodegen
import TTCompiler
import TTIR
import TTInterp
@testable import TTRuntime

struct MultiOutputKernelTests {
  static func values(_ n: Int, _ f: (Int) -> Double) -> Tensor { Tensor(.f32, shape: [n], floats: (0..<n).map(f)) }

  /// Adam's update as the optimizer rewrite writes it: new m and v are function results that the
  /// parameter update reads, so -O2 merges the three regions into one three-result kernel, and
  /// with p, m, v donated each result overwrites its old value in place.
  @Test func adamUpdateIsOneKernelWritingParameterAndSlotsInPlace() throws {
    let n = 1037
    let module = try Parser.parseAndVerify("""
      module @m {
        func @adam(%p: f32[\(n)], %m: f32[\(n)], %v: f32[\(n)], %g: f32[\(n)], %a: f32[], %e: f32[]) -> (f32[\(n)], f32[\(n)], f32[\(n)]) {
          %b1 = constant 0.9 : f32[]
          %c1 = constant 0.1 : f32[]
          %b2 = constant 0.999 : f32[]
          %c2 = constant 0.001 : f32[]
          %m1 = mul %m, %b1 : f32[\(n)]
          %g1 = mul %g, %c1 : f32[\(n)]
          %m2 = add %m1, %g1 : f32[\(n)]
          %v1 = mul %v, %b2 : f32[\(n)]
          %gg = mul %g, %g : f32[\(n)]
          %g2 = mul %gg, %c2 : f32[\(n)]
          %v2 = add %v1, %g2 : f32[\(n)]
          %r = sqrt %v2 : f32[\(n)]
          %d = add %r, %e : f32[\(n)]
          %s = mul %m2, %a : f32[\(n)]
          %q = div %s, %d : f32[\(n)]
          %p2 = sub %p, %q : f32[\(n)]
          return %p2, %m2, %v2
        }
      }
      """)
    let executable = try Executable(module: module, function: "adam", donating: [0, 1, 2, 3], aliasing: [0: 0, 1: 1, 2: 2])
    #expect(executable.kernels.count == 1)
    #expect(executable.kernels.first?.signature.outputs.count == 3)
    let inputs = [Self.values(n) { Double($0 % 17) / 8 - 1 }, Self.values(n) { Double($0 % 5) / 50 - 0.04 },
                  Self.values(n) { Double($0 % 13) / 1000 }, Self.values(n) { Double($0 % 29) / 10 - 1.4 },
                  Tensor.scalar(1e-3), Tensor.scalar(1e-8)]
    let want = try Interpreter(module: module).run("adam", inputs)
    for _ in 0..<3 {
      let got = try executable.run(inputs)
      // mul, add, sqrt, div and sub are correctly rounded in kernels too: bit for bit.
      for (g, w) in zip(got, want) { #expect(g.isIdentical(to: w)) }
    }
    #expect(executable.statisticsReused >= 3)
  }

  /// Two results may each take a dying operand's memory, but never the same operand: x is
  /// donated and dies in the merged kernel, and both results list it as a candidate.
  @Test func twoResultsNeverShareADyingOperandsMemory() throws {
    let module = try Parser.parseAndVerify("""
      module @m {
        func @f(%x: f32[B, 40]) -> (f32[B, 40], f32[B, 40]) {
          %three = constant 3.0 : f32[]
          %s = sqrt %x : f32[B, 40]
          %t = mul %s, %three : f32[B, 40]
          %u = div %t, %x : f32[B, 40]
          %y = add %u, %x : f32[B, 40]
          return %y, %t
        }
      }
      """)
    let executable = try Executable(module: module, function: "f", donating: [0])
    #expect(executable.kernels.count == 1 && executable.kernels[0].signature.outputs.count == 2)
    let x = Tensor(.f32, shape: [6, 40], floats: (0..<240).map { Double($0 % 31) / 4 + 0.5 })
    let want = try Interpreter(module: module).run("f", [x])
    let got = try executable.run([x])
    for (g, w) in zip(got, want) { #expect(g.isIdentical(to: w)) }
  }

  /// A bias gradient and the masked gradient it sums: one kernel sweeps the rows once, storing
  /// the masked value and accumulating the column sums; both match the interpreter (the mask
  /// bit for bit, the sums within reassociation), at batch sizes that split over threads.
  @Test func columnReductionStoresTheValueItReduces() throws {
    let module = try Parser.parseAndVerify("""
      module @m {
        func @f(%r: f32[B, 300], %up: f32[B, 300], %w: f32[300, 4]) -> (f32[300], f32[B, 4]) {
          %zero = constant 0.0 : f32[]
          %on = gt %r, %zero : i1[B, 300]
          %d = where %on, %up, %zero : f32[B, 300]
          %db = reduce_sum %d {axes = [0]} : f32[300]
          %dx = matmul %d, %w : f32[B, 4]
          return %db, %dx
        }
      }
      """)
    let executable = try Executable(module: module, function: "f")
    let kernel = try #require(executable.kernels.first { $0.signature.outputs.count == 2 })
    #expect(kernel.signature.outputs.map(\.dims) == [[.known(300)], [.symbol("B"), .known(300)]])
    #expect(executable.kernels.count == 1)
    for batch in [1, 7, 513] {
      let n = batch * 300
      let r = Tensor(.f32, shape: [batch, 300], floats: (0..<n).map { Double(($0 * 7) % 13) - 6 })
      let up = Tensor(.f32, shape: [batch, 300], floats: (0..<n).map { Double($0 % 29) / 8 - 1.7 })
      let w = Tensor(.f32, shape: [300, 4], floats: (0..<1200).map { Double($0 % 5) / 4 - 0.5 })
      let got = try executable.run([r, up, w])
      let want = try Interpreter(module: module).run("f", [r, up, w])
      #expect(compiledMismatch(got[0], want[0]) == nil)
      #expect(compiledMismatch(got[1], want[1]) == nil)
    }
  }
}
