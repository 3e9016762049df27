// GEMMs split over the thread pool (ParallelGemm) by rows of C, or by columns when rows are few:
// every transpose combination, sizes that do not divide evenly, matrix-vector products (GEMV),
// f32 and f64, against a plain triple loop; and the split rule.
import Testing
@testable import TTRuntime

struct ParallelGemmTests {
  /// One pool for every case: each new thread that calls OpenBLAS gets buffers of its own.
  static let pool = ThreadPool(threads: 3)

  /// C = op(A) op(B) in f64 from row-major storage.
  static func reference(_ a: [Double], _ b: [Double], m: Int, n: Int, k: Int, ta: Bool, tb: Bool) -> [Double] {
    var c = [Double](repeating: 0, count: m * n)
    for i in 0..<m {
      for j in 0..<n {
        var sum = 0.0
        for p in 0..<k { sum += (ta ? a[p * m + i] : a[i * k + p]) * (tb ? b[j * k + p] : b[p * n + j]) }
        c[i * n + j] = sum
      }
    }
    return c
  }

  /// (transpose A, transpose B, m, n, k, the split expected on 3 threads)
  static let cases: [(Bool, Bool, Int, Int, Int, ParallelGemm.Split)] = [false, true].flatMap { ta in [false, true].flatMap { tb in [
    (ta, tb, 203, 131, 300, ParallelGemm.Split.rows(3)),       // 16 MFLOP: 3 parts of 64+ rows, not multiples of 16
    (ta, tb, 37, 389, 290, ParallelGemm.Split.columns(3)),     // a small batch: few rows, many columns
    (ta, tb, 300, 1, 1000, ParallelGemm.Split.rows(3)),        // matrix times vector (GEMV), split by rows
    (ta, tb, 1, 700, 400, ParallelGemm.Split.columns(3)),      // vector times matrix (GEMV), split by columns
    (ta, tb, 50, 1, 30, ParallelGemm.Split.none),              // a small GEMV, one call
  ] } }

  @Test(arguments: cases)
  func splitGemmsMatchAPlainLoop(_ ta: Bool, _ tb: Bool, _ m: Int, _ n: Int, _ k: Int, _ expected: ParallelGemm.Split) {
    let pool = Self.pool
    #expect(ParallelGemm.split(m: m, n: n, k: k, pool: pool) == expected)
    let a = (0..<(m * k)).map { Double(($0 * 37) % 101) / 50 - 1 }
    let b = (0..<(k * n)).map { Double(($0 * 53) % 97) / 48 - 1 }
    let want = Self.reference(a, b, m: m, n: n, k: k, ta: ta, tb: tb)
    let af = a.map(Float.init), bf = b.map(Float.init)
    var cf = [Float](repeating: .nan, count: m * n)
    af.withUnsafeBufferPointer { pa in bf.withUnsafeBufferPointer { pb in cf.withUnsafeMutableBufferPointer { pc in
      ParallelGemm.gemm(transposeA: ta, transposeB: tb, m: m, n: n, k: k, a: pa.baseAddress!, lda: ta ? m : k,
                         b: pb.baseAddress!, ldb: tb ? k : n, c: pc.baseAddress!, pool: pool)
    } } }
    #expect(zip(cf, want).allSatisfy { abs(Double($0) - $1) <= 1e-4 * Double(k) })
    var cd = [Double](repeating: .nan, count: m * n)
    a.withUnsafeBufferPointer { pa in b.withUnsafeBufferPointer { pb in cd.withUnsafeMutableBufferPointer { pc in
      ParallelGemm.gemm(transposeA: ta, transposeB: tb, m: m, n: n, k: k, a: pa.baseAddress!, lda: ta ? m : k,
                         b: pb.baseAddress!, ldb: tb ? k : n, c: pc.baseAddress!, pool: pool)
    } } }
    #expect(zip(cd, want).allSatisfy { abs($0 - $1) <= 1e-10 })
  }

  @Test func theSplitRule() {
    let pool = ThreadPool(threads: 2)
    #expect(ParallelGemm.split(m: 128, n: 1, k: 512, pool: pool) == .none)         // 0.1 MFLOP, 64 K elements
    #expect(ParallelGemm.split(m: 256, n: 1, k: 1024, pool: pool) == .rows(2))     // a matrix-vector product reading 1 MB
    #expect(ParallelGemm.split(m: 100, n: 1024, k: 1024, pool: pool) == .columns(2))
    #expect(ParallelGemm.split(m: 256, n: 1024, k: 512, pool: pool) == .rows(2))
    #expect(ParallelGemm.split(m: 100, n: 100, k: 2048, pool: pool) == .none)      // neither has 2 x 64
    #expect(ParallelGemm.split(m: 4096, n: 4096, k: 64, pool: ThreadPool(threads: 1)) == .none)
  }
}
