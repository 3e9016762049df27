// Batched compilation (KernelCache.precompile): kernels compiled as one LLVM module compute what
// they compute alone; their disk entries share the batch object, which a later cache links once;
// and kernels found in different batch objects never clash (each batch names its own symbols).
import Foundation
import Testing
import TTCodegen
import TTIR

struct KernelBatchTests {
  /// y = x * c + k over [flat_n], a different constant k per kernel.
  static func body(_ k: Double) throws -> Function {
    let module = try Parser.parseAndVerify("""
      module @m {
        func @f(%x: f32[flat_n], %c: f32[]) -> f32[flat_n] {
          %k = constant \(k) : f32[]
          %a = mul %x, %c : f32[flat_n]
          %y = add %a, %k : f32[flat_n]
          return %y
        }
      }
      """)
    return module.functions[0]
  }

  static func run(_ kernel: CompiledKernel, n: Int) -> [Float] {
    var x = (0..<n).map { Float($0) }
    var c: Float = 2
    var y = [Float](repeating: .nan, count: n)
    let symbols: [Int64] = [Int64(n)]
    x.withUnsafeMutableBufferPointer { xp in
      withUnsafeMutablePointer(to: &c) { cp in
        y.withUnsafeMutableBufferPointer { yp in
          var buffers: [UnsafeMutableRawPointer?] = [UnsafeMutableRawPointer(xp.baseAddress!), UnsafeMutableRawPointer(cp),
                                                     UnsafeMutableRawPointer(yp.baseAddress!)]
          symbols.withUnsafeBufferPointer { s in buffers.withUnsafeMutableBufferPointer { kernel.entry($0.baseAddress!, s.baseAddress!, 0, Int64(n)) } }
        }
      }
    }
    return y
  }

  static func directory() -> String {
    FileManager.default.temporaryDirectory.appendingPathComponent("ttfc-batch-\(UUID().uuidString)").path
  }

  @Test func batchesComputeWhatSingleKernelsDoAndShareTheirObjectThroughTheDisk() throws {
    // Constants unique to this test, so no other test's kernels are in the process already.
    let ks = [1.0 / 3, 2.0 / 7, 5.0 / 11]
    let bodies = try ks.map(Self.body)
    let requests = bodies.map { KernelCache.Request($0) }
    let dirA = Self.directory()
    let a = KernelCache(disk: KernelDiskCache(root: dirA, identity: "batch-test"))
    a.precompile(Array(requests[0..<2]), threads: 1)                 // one batch of two
    let batched = try bodies[0..<2].map { try a.kernel(for: $0) }
    #expect(batched.allSatisfy { $0.name.contains("_b") } && Set(batched.map(\.name)).count == 2)
    #expect(a.counters.compiled == 2 && a.counters.diskHits == 0)

    // Another cache on the same disk: both from the batch object (linked once), the third alone.
    let b = KernelCache(disk: KernelDiskCache(root: dirA, identity: "batch-test"))
    b.precompile(requests, threads: 1)
    #expect(b.counters.diskHits == 2 && b.counters.compiled == 1)

    // A fresh disk: kernels 2 and 3 as a new batch, beside the first batch's kernel 2.
    let c = KernelCache(disk: KernelDiskCache(root: Self.directory(), identity: "batch-test"))
    c.precompile(Array(requests[1...]), threads: 1)
    let second = try c.kernel(for: bodies[1])
    #expect(second.name != batched[1].name && second.name.contains("_b"))

    for (k, body) in zip(ks, bodies) {
      let alone = KernelCache(disk: nil)
      let expected = (0..<37).map { Float(Float($0) * 2 + Float(k)) }
      #expect(Self.run(try alone.kernel(for: body), n: 37) == expected)
      for cache in [a, b, c] where (try? cache.kernel(for: body)) != nil {
        #expect(Self.run(try cache.kernel(for: body), n: 37) == expected)
      }
    }
  }
}
