// ParallelGemm — GEMMs split by rows of C over ttfc's own thread pool, each part one
// single-threaded OpenBLAS call, instead of OpenBLAS's own threads.
//
// Why: after a call OpenBLAS's worker threads spin (sched_yield) for about 0.1 s waiting for the
// next one, and a training step runs its fused kernels between GEMMs: on a 2-core machine those
// spinning threads took a third of the kernels' time (W4: the kernels' share 76 -> 49 ms per 24
// steps with them asleep), while letting them sleep made every GEMM pay for waking them. With the
// rows of C split over the pool (whose idle workers spin only 50 us), both costs go: the halves
// computed by single-threaded calls ran as fast as OpenBLAS's 2-thread calls on the W4 shapes
// (measured 123-144 GFLOP/s against 126-145). Each part packs its own copy of B (OpenBLAS's
// threads share one), which costs more as B grows relative to the rows computed; so a GEMM whose
// rows are few per thread, or that is small, stays one call.
//
// OpenBLAS is set to one thread for the process once ttfc's pool has several (`configure`).
// Code calling OpenBLAS directly for a multithreaded comparison (ttfc-bench W7) sets its thread
// count around that call.

import COpenBLAS
import Glibc

public enum ParallelGemm {
  /// Rows of C each part computes at least, and FLOPs below which a GEMM is not split.
  static let minimumRowsPerPart = 64
  static let minimumFlops = 8_000_000.0

  /// OpenBLAS runs single-threaded from now on (idempotent; called before every split GEMM).
  static let configured: Bool = {
    openblas_set_num_threads(1)
    return true
  }()

  /// How many row parts a GEMM producing `m` rows is split into on `pool`.
  static func parts(m: Int, n: Int, k: Int, pool: ThreadPool) -> Int {
    guard pool.threadCount > 1, 2.0 * Double(m) * Double(n) * Double(k) >= minimumFlops else { return 1 }
    return max(1, min(pool.threadCount, m / minimumRowsPerPart))
  }

  /// Row-major C[m, n] = op(A) op(B) (alpha 1, beta 0), rows of C split over `pool`.
  /// `lda`/`ldb` are A's and B's row strides as stored (A is [m, k] or, transposed, [k, m]).
  public static func sgemm(transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int,
                           a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                           c: UnsafeMutablePointer<Float>, pool: ThreadPool) {
    let count = parts(m: m, n: n, k: k, pool: pool)
    let ta = transposeA ? CblasTrans : CblasNoTrans, tb = transposeB ? CblasTrans : CblasNoTrans
    if count == 1 {
      if pool.threadCount > 1 { _ = configured }
      cblas_sgemm(CblasRowMajor, ta, tb, Int32(m), Int32(n), Int32(k), 1, a, Int32(max(lda, 1)), b, Int32(max(ldb, 1)), 0, c, Int32(max(n, 1)))
      return
    }
    _ = configured
    let aAddress = UInt(bitPattern: a), bAddress = UInt(bitPattern: b), cAddress = UInt(bitPattern: c)
    pool.parallelFor(count) { part in
      // Part boundaries on multiples of 16 rows (OpenBLAS's register tiles), the last takes the rest.
      func boundary(_ p: Int) -> Int { p == count ? m : (m * p / count) / 16 * 16 }
      let lo = boundary(part), hi = boundary(part + 1)
      guard hi > lo else { return }
      // Rows lo..<hi of op(A): rows of A, or (transposed) columns of A.
      let aPart = UnsafePointer<Float>(bitPattern: aAddress)! + (transposeA ? lo : lo * lda)
      let cPart = UnsafeMutablePointer<Float>(bitPattern: cAddress)! + lo * n
      cblas_sgemm(CblasRowMajor, ta, tb, Int32(hi - lo), Int32(n), Int32(k), 1, aPart, Int32(max(lda, 1)),
                  UnsafePointer<Float>(bitPattern: bAddress)!, Int32(max(ldb, 1)), 0, cPart, Int32(max(n, 1)))
    }
  }

  /// The same for f64.
  public static func dgemm(transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int,
                           a: UnsafePointer<Double>, lda: Int, b: UnsafePointer<Double>, ldb: Int,
                           c: UnsafeMutablePointer<Double>, pool: ThreadPool) {
    let count = parts(m: m, n: n, k: k, pool: pool)
    let ta = transposeA ? CblasTrans : CblasNoTrans, tb = transposeB ? CblasTrans : CblasNoTrans
    if count == 1 {
      if pool.threadCount > 1 { _ = configured }
      cblas_dgemm(CblasRowMajor, ta, tb, Int32(m), Int32(n), Int32(k), 1, a, Int32(max(lda, 1)), b, Int32(max(ldb, 1)), 0, c, Int32(max(n, 1)))
      return
    }
    _ = configured
    let aAddress = UInt(bitPattern: a), bAddress = UInt(bitPattern: b), cAddress = UInt(bitPattern: c)
    pool.parallelFor(count) { part in
      func boundary(_ p: Int) -> Int { p == count ? m : (m * p / count) / 16 * 16 }
      let lo = boundary(part), hi = boundary(part + 1)
      guard hi > lo else { return }
      let aPart = UnsafePointer<Double>(bitPattern: aAddress)! + (transposeA ? lo : lo * lda)
      let cPart = UnsafeMutablePointer<Double>(bitPattern: cAddress)! + lo * n
      cblas_dgemm(CblasRowMajor, ta, tb, Int32(hi - lo), Int32(n), Int32(k), 1, aPart, Int32(max(lda, 1)),
                  UnsafePointer<Double>(bitPattern: bAddress)!, Int32(max(ldb, 1)), 0, cPart, Int32(max(n, 1)))
    }
  }
}
