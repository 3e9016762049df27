// ParallelGemm — every GEMM of an executable: f32 on ttfc's own GEMM (JitGemm), f64 and
// matrix-vector products on OpenBLAS; split by rows of C (or, for few rows, by columns) over
// ttfc's own thread pool instead of OpenBLAS's threads.
//
// Why the pool: after a call OpenBLAS's worker threads spin (sched_yield) for about 0.1 s waiting
// for the next one, and a training step runs its fused kernels between GEMMs: on a 2-core machine
// those spinning threads took a third of the kernels' time (W4: the kernels' share 76 -> 49 ms per
// 24 steps with them asleep), while letting them sleep made every GEMM pay for waking them. The
// pool's idle workers spin only 50 us. OpenBLAS parts are single-threaded calls, each packing its
// own copy of B, so a GEMM whose rows are few per thread is split by columns instead (a small
// batch's forward GEMM: each part packs its share of B, and A is small), and a small GEMM stays
// one call. JitGemm's row split packs B once for all threads (JitGemm.sgemm(..., pool:parts:)).
//
// OpenBLAS is set to one thread for the process before its first GEMM (`configured`).
// Code calling OpenBLAS directly for a multithreaded comparison (ttfc-bench W7) sets its thread
// count around that call.

import COpenBLAS
import Glibc
import TTCodegen

/// Every GEMM of an executable, split over the ``ThreadPool``: f32 on ``JitGemm``, f64 on OpenBLAS.
public enum ParallelGemm {
  /// Rows of C each part computes at least, and FLOPs below which a GEMM is not split.
  static let minimumRowsPerPart = 64
  static let minimumFlops = 8_000_000.0
  /// Operand elements from which a GEMM is split even when its FLOPs are few: a matrix-vector
  /// product (N = 1, as the W4 model's output layer and its gradient) is bound by reading the
  /// matrix, and two cores read faster than one.
  static let minimumElements = 1 << 18

  /// OpenBLAS runs single-threaded from now on (idempotent; called before every OpenBLAS GEMM,
  /// whatever the pool's size: with `--threads 1` OpenBLAS kept its own threads, so f64 results
  /// had other bits on one thread than on two, and one thread was not one).
  static let configured: Bool = {
    openblas_set_num_threads(1)
    return true
  }()

  /// How a GEMM is split over the pool: by rows of C when each part gets at least
  /// `minimumRowsPerPart` of them; else by columns (a forward GEMM of a small batch: few rows,
  /// many columns), each part then packing its own share of B; else not at all.
  enum Split: Equatable { case none, rows(Int), columns(Int) }

  static func split(m: Int, n: Int, k: Int, pool: ThreadPool) -> Split {
    guard pool.threadCount > 1,
          2.0 * Double(m) * Double(n) * Double(k) >= minimumFlops || m * k + k * n >= minimumElements else { return .none }
    let byRows = min(pool.threadCount, m / minimumRowsPerPart)
    if byRows > 1 { return .rows(byRows) }
    let byColumns = min(pool.threadCount, n / minimumRowsPerPart)
    return byColumns > 1 ? .columns(byColumns) : .none
  }

  /// Row-major C[m, n] = op(A) op(B) (alpha 1, beta 0) in f32 or f64, split over `pool` (`split`).
  /// `lda`/`ldb` are A's and B's row strides as stored (A is [m, k] or, transposed, [k, m]).
  /// f32 GEMMs go to ttfc's own GEMM (JitGemm) unless it is off or the product is a matrix-vector
  /// one; the rest, and f64, to OpenBLAS.
  public static func gemm<T: BLASFloat>(transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int,
                                        a: UnsafePointer<T>, lda: Int, b: UnsafePointer<T>, ldb: Int,
                                        c: UnsafeMutablePointer<T>, pool: ThreadPool) {
    if T.self == Float.self, JitGemm.enabled, JitGemm.suits(m: m, n: n) {
      jitGemm(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k,
              a: UnsafeRawPointer(a).assumingMemoryBound(to: Float.self), lda: lda,
              b: UnsafeRawPointer(b).assumingMemoryBound(to: Float.self), ldb: ldb,
              c: UnsafeMutableRawPointer(c).assumingMemoryBound(to: Float.self), pool: pool)
    } else {
      blasGemm(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, c: c, pool: pool)
    }
  }

  /// `gemm` through JitGemm (callers check `JitGemm.enabled`). A GEMM with rows enough for every
  /// thread is split by rows, B packed once for all threads; one with few rows and many columns
  /// (a small batch) into independent column ranges, each packing its own part of B. On W4's
  /// five shapes the row split beat the column split in every one (alternating calls, medians:
  /// 3-11% faster), B's shared packing outweighing the second pool job per block of k.
  public static func jitGemm(transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int,
                             a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                             c: UnsafeMutablePointer<Float>, pool: ThreadPool) {
    guard let routines = JitGemm.routines else { fatalError("ParallelGemm.jitGemm called without JitGemm's routines") }
    jitGemm(packers: routines.packers, transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k,
            a: UnsafeRawPointer(a), lda: lda, b: UnsafeRawPointer(b), ldb: ldb, c: c, pool: pool)
  }

  /// `jitGemm` over operands of the element type `packers` read (f32, or bf16/f16 widened as
  /// they are packed: HalfGemm's portable path).
  public static func jitGemm(packers: GemmKernels.Packers, transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int,
                             a: UnsafeRawPointer, lda: Int, b: UnsafeRawPointer, ldb: Int,
                             c: UnsafeMutablePointer<Float>, pool: ThreadPool) {
    let plan = split(m: m, n: n, k: k, pool: pool)
    // The shared packing holds B for all of k for at least one 16-column panel; a longer k (a
    // weight gradient over millions of rows) takes the independent parts below, whose packing
    // buffers are one block of k each.
    if case .rows(let parts) = plan, k * JitGemm.nr <= JitGemm.sharedPackingLimit {
      JitGemm.gemm(packers: packers, transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb,
                   c: c, ldc: n, pool: pool, parts: parts)
      return
    }
    _ = configured
    let (count, extent, byRows): (Int, Int, Bool) = switch plan {
      case .none: (1, m, true)
      case .rows(let p): (p, m, true)
      case .columns(let p): (p, n, false)
    }
    guard count > 1 else {
      JitGemm.gemm(packers: packers, transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb,
                   c: c, ldc: n)
      return
    }
    // As `run`: part boundaries on multiples of 16, the last part takes the rest.
    let size = packers.source.byteSize
    let aAddress = UInt(bitPattern: a), bAddress = UInt(bitPattern: b), cAddress = UInt(bitPattern: c)
    pool.parallelFor(count) { part in
      func boundary(_ p: Int) -> Int { p == count ? extent : (extent * p / count) / 16 * 16 }
      let lo = boundary(part), hi = boundary(part + 1)
      guard hi > lo else { return }
      let a0 = UnsafeRawPointer(bitPattern: aAddress)!, b0 = UnsafeRawPointer(bitPattern: bAddress)!
      let c0 = UnsafeMutablePointer<Float>(bitPattern: cAddress)!
      if byRows {
        JitGemm.gemm(packers: packers, transposeA: transposeA, transposeB: transposeB, m: hi - lo, n: n, k: k,
                     a: a0 + (transposeA ? lo : lo * lda) * size, lda: lda, b: b0, ldb: ldb, c: c0 + lo * n, ldc: n)
      } else {
        JitGemm.gemm(packers: packers, transposeA: transposeA, transposeB: transposeB, m: m, n: hi - lo, k: k,
                     a: a0, lda: lda, b: b0 + (transposeB ? lo * ldb : lo) * size, ldb: ldb, c: c0 + lo, ldc: n)
      }
    }
  }

  /// `gemm` through OpenBLAS, one single-threaded call per part. A part with one column (or one
  /// row) of C is a matrix-vector product and goes to GEMV, which reads the matrix once where
  /// OpenBLAS's GEMM would pack it first (W4's output layer and its weight gradient).
  public static func blasGemm<T: BLASFloat>(transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int,
                                            a: UnsafePointer<T>, lda: Int, b: UnsafePointer<T>, ldb: Int,
                                            c: UnsafeMutablePointer<T>, pool: ThreadPool) {
    let ta = transposeA ? CblasTrans : CblasNoTrans, tb = transposeB ? CblasTrans : CblasNoTrans
    let strideA = Int32(max(lda, 1)), strideB = Int32(max(ldb, 1))
    run(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, c: c, pool: pool) {
      rows, columns, a, b, c in
      if k > 0 && columns == 1 {
        // C[rows, 1] = op(A) b, b being op(B)'s one column (stride ldb, or 1 if B is [1, k]).
        let x = transposeB ? Int32(1) : strideB
        if transposeA {
          T.blasGemv(CblasTrans, Int32(k), Int32(rows), a, strideA, b, x, c, Int32(max(n, 1)))
        } else {
          T.blasGemv(CblasNoTrans, Int32(rows), Int32(k), a, strideA, b, x, c, Int32(max(n, 1)))
        }
      } else if k > 0 && rows == 1 {
        // C[1, columns] = a op(B), a being op(A)'s one row (stride 1, or lda if A is [k, 1]).
        let x = transposeA ? strideA : Int32(1)
        if transposeB {
          T.blasGemv(CblasNoTrans, Int32(columns), Int32(k), b, strideB, a, x, c, 1)
        } else {
          T.blasGemv(CblasTrans, Int32(k), Int32(columns), b, strideB, a, x, c, 1)
        }
      } else {
        T.blasGemm(ta, tb, Int32(rows), Int32(columns), Int32(k), a, strideA, b, strideB, c, Int32(max(n, 1)))
      }
    }
  }

  /// Calls `call(rows, columns, A part, B part, C part)` once per part of the split (C's row
  /// stride stays n). Part boundaries fall on multiples of 16 (OpenBLAS's register tiles); the
  /// last part takes the rest.
  static func run<T>(transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int,
                     a: UnsafePointer<T>, lda: Int, b: UnsafePointer<T>, ldb: Int, c: UnsafeMutablePointer<T>, pool: ThreadPool,
                     _ call: @escaping (Int, Int, UnsafePointer<T>, UnsafePointer<T>, UnsafeMutablePointer<T>) -> Void) {
    let plan = split(m: m, n: n, k: k, pool: pool)
    _ = configured
    guard plan != .none else { call(m, n, a, b, c); return }
    let aAddress = UInt(bitPattern: a), bAddress = UInt(bitPattern: b), cAddress = UInt(bitPattern: c)
    let (count, extent) = { if case .rows(let p) = plan { return (p, m) }; if case .columns(let p) = plan { return (p, n) }; return (1, m) }()
    let byRows = plan == .rows(count)
    pool.parallelFor(count) { part in
      func boundary(_ p: Int) -> Int { p == count ? extent : (extent * p / count) / 16 * 16 }
      let lo = boundary(part), hi = boundary(part + 1)
      guard hi > lo else { return }
      let a0 = UnsafePointer<T>(bitPattern: aAddress)!, b0 = UnsafePointer<T>(bitPattern: bAddress)!
      let c0 = UnsafeMutablePointer<T>(bitPattern: cAddress)!
      if byRows {
        // Rows lo..<hi of op(A): rows of A, or (transposed) columns of A.
        call(hi - lo, n, a0 + (transposeA ? lo : lo * lda), b0, c0 + lo * n)
      } else {
        // Columns lo..<hi of op(B): columns of B, or (transposed) rows of B.
        call(m, hi - lo, a0, b0 + (transposeB ? lo * ldb : lo), c0 + lo)
      }
    }
  }
}

/// The element types OpenBLAS multiplies, each with its row-major GEMM (alpha 1, beta 0).
public protocol BLASFloat {
  static func blasGemm(_ ta: CBLAS_TRANSPOSE, _ tb: CBLAS_TRANSPOSE, _ m: Int32, _ n: Int32, _ k: Int32,
                       _ a: UnsafePointer<Self>, _ lda: Int32, _ b: UnsafePointer<Self>, _ ldb: Int32,
                       _ c: UnsafeMutablePointer<Self>, _ ldc: Int32)
  /// y = op(A) x for row-major A [rows, columns] (alpha 1, beta 0).
  static func blasGemv(_ ta: CBLAS_TRANSPOSE, _ rows: Int32, _ columns: Int32, _ a: UnsafePointer<Self>, _ lda: Int32,
                       _ x: UnsafePointer<Self>, _ incx: Int32, _ y: UnsafeMutablePointer<Self>, _ incy: Int32)
}

extension Float: BLASFloat {
  public static func blasGemm(_ ta: CBLAS_TRANSPOSE, _ tb: CBLAS_TRANSPOSE, _ m: Int32, _ n: Int32, _ k: Int32,
                              _ a: UnsafePointer<Float>, _ lda: Int32, _ b: UnsafePointer<Float>, _ ldb: Int32,
                              _ c: UnsafeMutablePointer<Float>, _ ldc: Int32) {
    cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, 1, a, lda, b, ldb, 0, c, ldc)
  }
  public static func blasGemv(_ ta: CBLAS_TRANSPOSE, _ rows: Int32, _ columns: Int32, _ a: UnsafePointer<Float>, _ lda: Int32,
                              _ x: UnsafePointer<Float>, _ incx: Int32, _ y: UnsafeMutablePointer<Float>, _ incy: Int32) {
    cblas_sgemv(CblasRowMajor, ta, rows, columns, 1, a, lda, x, incx, 0, y, incy)
  }
}

extension Double: BLASFloat {
  public static func blasGemm(_ ta: CBLAS_TRANSPOSE, _ tb: CBLAS_TRANSPOSE, _ m: Int32, _ n: Int32, _ k: Int32,
                              _ a: UnsafePointer<Double>, _ lda: Int32, _ b: UnsafePointer<Double>, _ ldb: Int32,
                              _ c: UnsafeMutablePointer<Double>, _ ldc: Int32) {
    cblas_dgemm(CblasRowMajor, ta, tb, m, n, k, 1, a, lda, b, ldb, 0, c, ldc)
  }
  public static func blasGemv(_ ta: CBLAS_TRANSPOSE, _ rows: Int32, _ columns: Int32, _ a: UnsafePointer<Double>, _ lda: Int32,
                              _ x: UnsafePointer<Double>, _ incx: Int32, _ y: UnsafeMutablePointer<Double>, _ incy: Int32) {
    cblas_dgemv(CblasRowMajor, ta, rows, columns, 1, a, lda, x, incx, 0, y, incy)
  }
}
