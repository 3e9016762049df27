// ttfc's own f32 GEMM (JitGemm around the JIT-compiled 6x16 microkernel): bit for bit against a
// scalar model of its summation order (fused multiply-adds in k order within each block of 256,
// blocks added to C in order), for edge tiles in rows and columns, k across block boundaries,
// every transpose, and a C whose row stride is wider than its columns (nothing outside the
// extent may be written); and ParallelGemm's f32 path giving the same bits when split.
import Testing
import TTCodegen
@testable import TTRuntime

struct JitGemmTests {
  /// What JitGemm computes for C[i, j], in its order: per block of `JitGemm.kcBlock` steps of k
  /// a chain of fused multiply-adds from zero, the block sums added to C one after another.
  static func model(_ a: [Float], _ b: [Float], m: Int, n: Int, k: Int, ta: Bool, tb: Bool) -> [Float] {
    var c = [Float](repeating: 0, count: m * n)
    for i in 0..<m {
      for j in 0..<n {
        var total: Float = 0
        for block in stride(from: 0, to: k, by: JitGemm.kcBlock) {
          var sum: Float = 0
          for p in block..<min(k, block + JitGemm.kcBlock) {
            sum = sum.addingProduct(ta ? a[p * m + i] : a[i * k + p], tb ? b[j * k + p] : b[p * n + j])
          }
          total = block == 0 ? sum : total + sum
        }
        c[i * n + j] = total
      }
    }
    return c
  }

  static func values(_ count: Int, seed: Int) -> [Float] {
    var state = UInt64(seed) &* 0x9E37_79B9_7F4A_7C15 | 1
    return (0..<count).map { _ in
      state ^= state << 13; state ^= state >> 7; state ^= state << 17
      return Float(Int(state % 2001) - 1000) / 997
    }
  }

  /// (m, n, k): rows around the 6-row tile and the 144-row block, columns around the 16-column
  /// tile, k around the 256-step block.
  static let shapes: [(Int, Int, Int)] = [
    (1, 1, 1), (6, 16, 256), (7, 17, 257), (5, 15, 3), (13, 33, 600), (150, 40, 100), (12, 48, 513),
  ]

  @Test(arguments: [false, true], [false, true])
  func matchesTheModelBitForBit(_ ta: Bool, _ tb: Bool) throws {
    try #require(JitGemm.routines != nil)
    for (m, n, k) in Self.shapes {
      let a = Self.values(m * k, seed: m + 7 * k), b = Self.values(k * n, seed: n + 11 * k)
      let want = Self.model(a, b, m: m, n: n, k: k, ta: ta, tb: tb)
      let ldc = n + 5
      var c = [Float](repeating: .nan, count: m * ldc)
      a.withUnsafeBufferPointer { pa in b.withUnsafeBufferPointer { pb in c.withUnsafeMutableBufferPointer { pc in
        JitGemm.sgemm(transposeA: ta, transposeB: tb, m: m, n: n, k: k, a: pa.baseAddress!, lda: ta ? m : k,
                      b: pb.baseAddress!, ldb: tb ? k : n, c: pc.baseAddress!, ldc: ldc)
      } } }
      for i in 0..<m {
        #expect(Array(c[(i * ldc)..<(i * ldc + n)]).map(\.bitPattern) == Array(want[(i * n)..<(i * n + n)]).map(\.bitPattern),
                "\(m)x\(n)x\(k) transposeA \(ta) transposeB \(tb), row \(i)")
        #expect(c[(i * ldc + n)..<(i * ldc + ldc)].allSatisfy { $0.isNaN }, "written outside C's columns")
      }
    }
  }

  /// Columns beyond one 2048-column block of packed B, and an empty k (C becomes zero).
  @Test func wideAndEmptyProducts() throws {
    try #require(JitGemm.routines != nil)
    let (m, n, k) = (9, 2100, 20)
    let a = Self.values(m * k, seed: 1), b = Self.values(k * n, seed: 2)
    var c = [Float](repeating: .nan, count: m * n)
    a.withUnsafeBufferPointer { pa in b.withUnsafeBufferPointer { pb in c.withUnsafeMutableBufferPointer { pc in
      JitGemm.sgemm(transposeA: false, transposeB: false, m: m, n: n, k: k, a: pa.baseAddress!, lda: k,
                    b: pb.baseAddress!, ldb: n, c: pc.baseAddress!, ldc: n)
    } } }
    #expect(c.map(\.bitPattern) == Self.model(a, b, m: m, n: n, k: k, ta: false, tb: false).map(\.bitPattern))
    c.withUnsafeMutableBufferPointer { pc in
      JitGemm.sgemm(transposeA: false, transposeB: false, m: 3, n: 4, k: 0, a: pc.baseAddress!, lda: 1,
                    b: pc.baseAddress!, ldb: 1, c: pc.baseAddress!, ldc: 4)
    }
    #expect(c[0..<12].allSatisfy { $0 == 0 })
  }

  /// A GEMM split over the pool gives the bits of one unsplit call, every element summed in the
  /// same order whichever thread computes it: by columns (few rows), and by rows with B packed
  /// jointly (several blocks of k, a partial last panel of B packed by one of the threads, 43 row
  /// panels times 13 column panels shared out with a row panel cut between the threads).
  @Test(arguments: [(70, 600, 300, false, ParallelGemm.Split.columns(2)), (256, 200, 600, true, ParallelGemm.Split.rows(2))])
  func splitOverThePoolGivesTheSameBits(_ m: Int, _ n: Int, _ k: Int, _ tb: Bool, _ expected: ParallelGemm.Split) throws {
    try #require(JitGemm.enabled)
    let pool = ThreadPool(threads: 2)
    #expect(ParallelGemm.split(m: m, n: n, k: k, pool: pool) == expected)
    let a = Self.values(m * k, seed: 3), b = Self.values(k * n, seed: 4)
    var c = [Float](repeating: .nan, count: m * n)
    a.withUnsafeBufferPointer { pa in b.withUnsafeBufferPointer { pb in c.withUnsafeMutableBufferPointer { pc in
      ParallelGemm.gemm(transposeA: true, transposeB: tb, m: m, n: n, k: k, a: pa.baseAddress!, lda: m,
                        b: pb.baseAddress!, ldb: tb ? k : n, c: pc.baseAddress!, pool: pool)
    } } }
    #expect(c.map(\.bitPattern) == Self.model(a, b, m: m, n: n, k: k, ta: true, tb: tb).map(\.bitPattern))
  }

  /// A split GEMM whose packed B is bounded to fewer columns than it has: several blocks of
  /// columns, each packed for all of k and then multiplied.
  @Test func splitGemmInSeveralBlocksOfColumns() throws {
    try #require(JitGemm.enabled)
    let pool = ThreadPool(threads: 2)
    let (m, n, k) = (40, 90, 300)
    let a = Self.values(m * k, seed: 5), b = Self.values(k * n, seed: 6)
    var c = [Float](repeating: .nan, count: m * n)
    a.withUnsafeBufferPointer { pa in b.withUnsafeBufferPointer { pb in c.withUnsafeMutableBufferPointer { pc in
      JitGemm.sgemm(transposeA: false, transposeB: false, m: m, n: n, k: k, a: pa.baseAddress!, lda: k, b: pb.baseAddress!,
                    ldb: n, c: pc.baseAddress!, ldc: n, pool: pool, parts: 2, packingLimit: 32 * k)
    } } }
    #expect(c.map(\.bitPattern) == Self.model(a, b, m: m, n: n, k: k, ta: false, tb: false).map(\.bitPattern))
  }
}
