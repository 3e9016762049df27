// Streaming (non-temporal) output stores: large function results are written around the caches;
// and the next-row prefetch of row-reduction kernels.
// The kernels must still compute exactly what the ordinary kernels compute, on every thread split
// (rank-1 slices start at aligned elements, odd lengths end in scalar code), and the stores must
// really be non-temporal, fenced, and used only where the executable allows them.
import Testing
import TTCodegen
import TTCompiler
import TTIR
import TTInterp
@testable import TTRuntime

struct StreamingStoreTests {
  /// Elements of f32 at the streaming threshold (8 MiB unless the host's cache says otherwise).
  static let threshold = Compiler.streamingThreshold / 4

  static func randomTensor(_ shape: [Int], seed: UInt64) -> Tensor {
    var state = seed
    let n = shape.reduce(1, *)
    let values = (0..<n).map { _ -> Double in
      state = state &* 6364136223846793005 &+ 1442695040888963407
      return Double(Int64(bitPattern: state >> 11) % 20_000) / 1000.0 - 10.0
    }
    return Tensor(.f32, shape: shape, floats: values)
  }

  @Test(arguments: [[threshold / 1000 + 1, 1000], [threshold + 17]])
  func softmaxAndElementwiseResultsMatchTheInterpreter(_ shape: [Int]) throws {
    let type = "f32[\(shape.map(String.init).joined(separator: ", "))]"
    let body = shape.count == 2
      ? "%y = softmax %x : \(type)"
      : "%a = mul %x, %x : \(type)\n    %y = tanh %a : \(type)"
    let module = try Parser.parseAndVerify("module @m {\n  func @f(%x: \(type)) -> \(type) {\n    \(body)\n    return %y\n  }\n}\n")
    let executable = try Executable(module: module, function: "f")
    #expect(executable.kernels.count == 1 && executable.kernels.allSatisfy(\.streamingOutput))
    let input = Self.randomTensor(shape, seed: 7)
    let got = try executable.run([input])[0]
    let want = try Interpreter(module: module).run("f", [input])[0]
    #expect(compiledMismatch(got, want) == nil)
  }

  @Test func smallOrReadBackResultsAreNotStreamed() throws {
    let n = Self.threshold
    let module = try Parser.parseAndVerify("""
      module @m {
        func @small(%x: f32[1000]) -> f32[1000] {
          %y = tanh %x : f32[1000]
          return %y
        }
        func @readBack(%x: f32[\(n)]) -> (f32[\(n)], f32[]) {
          %y = tanh %x : f32[\(n)]
          %s = reduce_sum %y : f32[]
          return %y, %s
        }
      }
      """)
    #expect(try Executable(module: module, function: "small").kernels.allSatisfy { !$0.streamingOutput })
    let readBack = try Executable(module: module, function: "readBack")
    #expect(readBack.kernels.contains { !$0.streamingOutput && $0.signature.output.rank == 1 })
  }

  @Test func storesAreNonTemporalAndFenced() throws {
    let cache = KernelCache(disk: nil)
    cache.keepListings = true
    // Softmax as the optimizer leaves it (the fused region's body).
    let module = try Parser.parseAndVerify("""
      module @m {
        func @f(%x: f32[64, 1024]) -> f32[64, 1024] {
          %m = reduce_max %x {axes = [1], keepdims = true} : f32[64, 1]
          %d = sub %x, %m : f32[64, 1024]
          %e = exp %d : f32[64, 1024]
          %s = reduce_sum %e {axes = [1], keepdims = true} : f32[64, 1]
          %y = div %e, %s : f32[64, 1024]
          return %y
        }
      }
      """)
    let body = module.functions[0]
    let streaming = try cache.kernel(for: body, streamingOutput: true)
    let ordinary = try cache.kernel(for: body)
    let asm = streaming.assembly ?? ""
    #expect(asm.contains("vmovntps") && asm.contains("sfence"))
    #expect(!(ordinary.assembly ?? "").contains("vmovnt"))
    // The value softmax reuses (its exp) lives in a stack row, so the output is written once.
    #expect((streaming.llvmIR ?? "").contains("row_scratch"))
    // Row kernels touch the next row's lines while computing this one (both versions).
    #expect((ordinary.llvmIR ?? "").contains("@llvm.prefetch") && asm.contains("prefetcht0"))
  }
}
