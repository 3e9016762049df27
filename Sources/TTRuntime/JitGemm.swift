// JitGemm — ttfc's own f32 GEMM around the JIT-compiled 6x16 microkernel and packing routines
// (TTCodegen/GemmKernels.swift), in the blocked layout of Goto's and BLIS's GEMMs:
//
//   for each block of NC columns of C:
//     for each block of KC steps of k:     pack B[k block, column block] into 16-column panels (B̃)
//       for each block of MC rows of C:    pack A[row block, k block] into 6-row panels (Ã)
//         for each 16-column panel of B̃, for each 6-row panel of Ã: the microkernel
//
// Sizes and why: a B̃ panel (KC x 16 floats = 16 KiB at KC 256) stays in the 32 KiB L1 while the
// microkernel walks every Ã panel of the row block against it; the Ã block (MC x KC = 144 KiB)
// stays in the 512 KiB L2; the B̃ block (KC x NC, 2 MiB) in L3. Packing makes every load of the
// inner loop sequential and lets op(A) and op(B) be transposed or not at no cost to the kernel.
// Edge tiles (fewer than 6 rows or 16 columns) are computed into a scratch tile from zero-padded
// panels and copied out, so C is never written outside its extent.
//
// Threads (ParallelGemm decides the split): `sgemm(..., pool:parts:)` shares one packed B among
// the pool's threads (packed for all of k in one pool job, then C's tiles shared out evenly in a
// second); the single-threaded `sgemm` serves column ranges split by ParallelGemm. Each call
// takes a workspace (packing buffers) from a shared free list, so concurrent calls never share
// one and steady state allocates nothing.
//
// Order of summation: each element of C is the sum, in order of k, of the products within each
// KC block (one rounding per fused multiply-add), the blocks added to C in order of k; the same
// whichever thread computes it. bf16 and f16 operands (HalfGemm's portable path) go through the
// same loops with packers that widen them to f32 as they pack (`gemm(packers:...)`).

import Glibc
import Synchronization
import TTCodegen
import TTSupport

/// ttfc's own f32 GEMM: packed panels around a JIT-compiled microkernel.
public enum JitGemm {
  // The microkernel's tile (GemmKernels.rows x .columns), as literals so the packing loops
  // see constants (a global from another module is read through its lazy initializer).
  static let mr = 6
  static let nr = 16
  // Block sizes: KC 192-384 and MC 72-288 measured within the host's noise of these on W4's
  // GEMMs; these are BLIS's for Zen.
  static let kcBlock = 256
  static let mcBlock = 144   // a multiple of mr
  static let ncBlock = 2048  // a multiple of nr

  /// The microkernel and packing routines, compiled on first use (nil if LLVM could not).
  static let routines: GemmKernels.Entries? = {
    let start = DispatchClock.now()
    defer { compileNanoseconds.store(Int((DispatchClock.now() - start) * 1e9), ordering: .relaxed) }
    return try? GemmKernels.compiled()
  }()
  private static let compileNanoseconds = Atomic<Int>(0)
  /// Seconds compiling the routines took in this process (0 until they are compiled), for
  /// `--stats`' compile phases.
  public static var compileSeconds: Double { Double(compileNanoseconds.load(ordering: .relaxed)) / 1e9 }

  /// Compiles the routines on a new thread (once per process); whoever reads `enabled` or
  /// `routines` meanwhile waits for it (a global's initializer runs once).
  public static func compileInBackground() {
    guard !started.exchange(true, ordering: .relaxed) else { return }
    var thread = pthread_t()
    if pthread_create(&thread, nil, { _ in _ = JitGemm.enabled; return nil }, nil) == 0 {
      pthread_detach(thread)
    }
  }
  private static let started = Atomic<Bool>(false)

  /// Whether f32 GEMMs go through this code (`TTFC_GEMM=openblas` selects OpenBLAS for all).
  public static let enabled: Bool = {
    if let text = getenv("TTFC_GEMM"), String(cString: text) == "openblas" { return false }
    return routines != nil
  }()

  /// Shapes this GEMM takes: a matrix-vector product (one row or column of C) would pack a whole
  /// operand to use it once, so it stays with OpenBLAS's GEMV (ParallelGemm.blasGemm).
  public static func suits(m: Int, n: Int) -> Bool { m >= 4 && n >= 8 }

  /// Row-major C[m, n] (row stride ldc) = op(A) op(B), alpha 1, beta 0, on the calling thread.
  /// A is [m, k] (row stride lda) or, transposed, [k, m]; B is [k, n] or, transposed, [n, k].
  public static func sgemm(transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int,
                           a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                           c: UnsafeMutablePointer<Float>, ldc: Int) {
    guard let routines = prepare(m: m, n: n, k: k, c: c, ldc: ldc) else { return }
    gemm(packers: routines.packers, transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k,
         a: UnsafeRawPointer(a), lda: lda, b: UnsafeRawPointer(b), ldb: ldb, c: c, ldc: ldc)
  }

  /// `sgemm` over operands of the element type `packers` read (f32, or bf16/f16 widened to f32
  /// as they are packed: the same order of summation on the widened values).
  public static func gemm(packers: GemmKernels.Packers, transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int,
                          a: UnsafeRawPointer, lda: Int, b: UnsafeRawPointer, ldb: Int,
                          c: UnsafeMutablePointer<Float>, ldc: Int) {
    guard let routines = prepare(m: m, n: n, k: k, c: c, ldc: ldc) else { return }
    let workspace = Workspace.take()
    defer { Workspace.give(workspace) }
    let packedB = workspace.packedB(capacity: kcBlock * ncBlock)
    for jc in stride(from: 0, to: n, by: ncBlock) {
      let nc = min(ncBlock, n - jc)
      for pc in stride(from: 0, to: k, by: kcBlock) {
        let kc = min(kcBlock, k - pc)
        packB(packers, transposed: transposeB, b: b, ldb: ldb, k0: pc, kc: kc, j0: jc, nc: nc, into: packedB)
        let columnPanels = (nc + nr - 1) / nr
        multiply(tiles: 0..<((m + mr - 1) / mr * columnPanels), columnPanels: columnPanels, m: m, routines: routines,
                 packers: packers, transposeA: transposeA, a: a, lda: lda, pc: pc, kc: kc, packedB: packedB, jc: jc, nc: nc,
                 c: c, ldc: ldc, workspace: workspace)
      }
    }
  }

  /// `sgemm` split over `parts` threads of `pool`, which share the packed B: for each block of B
  /// the threads pack a share of its panels each, then each computes an even share of C's tiles,
  /// mostly whole rows (the two phases are two pool jobs, the end of the first a barrier). This is
  /// how a GEMM with many rows beats splitting it into independent GEMMs, each of which packs
  /// all of B for itself (W4's 1024-column GEMMs: 158 against 133 GFLOP/s with OpenBLAS's own
  /// threads, which share B the same way).
  public static func sgemm(transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int,
                           a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                           c: UnsafeMutablePointer<Float>, ldc: Int, pool: ThreadPool, parts: Int,
                           packingLimit: Int = sharedPackingLimit) {
    guard let routines = prepare(m: m, n: n, k: k, c: c, ldc: ldc) else { return }
    gemm(packers: routines.packers, transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, a: UnsafeRawPointer(a), lda: lda,
         b: UnsafeRawPointer(b), ldb: ldb, c: c, ldc: ldc, pool: pool, parts: parts, packingLimit: packingLimit)
  }

  /// The split `sgemm` over operands of the element type `packers` read.
  public static func gemm(packers: GemmKernels.Packers, transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int,
                          a: UnsafeRawPointer, lda: Int, b: UnsafeRawPointer, ldb: Int,
                          c: UnsafeMutablePointer<Float>, ldc: Int, pool: ThreadPool, parts: Int,
                          packingLimit: Int = sharedPackingLimit) {
    guard parts > 1 else {
      gemm(packers: packers, transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: ldc)
      return
    }
    guard let routines = prepare(m: m, n: n, k: k, c: c, ldc: ldc) else { return }
    let shared = Workspace.take()
    defer { Workspace.give(shared) }
    // B is packed for every block of k at once, so each thread then runs through all of them
    // without waiting for the others: two synchronizations per block of columns, not two per
    // block of k. On this shared host a thread is sometimes descheduled for milliseconds, and
    // every synchronization can wait that long (W4's step went from 18 to 28 ms in such
    // periods with one per block of k). The columns per block are bounded so the packed B stays
    // within `packingLimit` floats.
    let columnsPerBlock = sharedBlockColumns(k: k, packingLimit: packingLimit)
    let rowPanels = (m + mr - 1) / mr
    for jc in stride(from: 0, to: n, by: columnsPerBlock) {
      let panels = packShared(packers: packers, transposed: transposeB, b: b, ldb: ldb, k: k, jc: jc, nc: min(columnsPerBlock, n - jc),
                              into: shared, pool: pool, parts: parts)
      // The block's 6x16 tiles, numbered row panel by row panel, are shared out evenly: a
      // thread's share is whole row panels plus, at either end, part of one. (Whole row panels
      // alone leave one thread a panel more when their count is odd: 43 for W4's 256 rows, 22
      // against 21.)
      let tiles = rowPanels * panels.columnPanels
      pool.parallelFor(parts) { part in
        let first = tiles * part / parts, last = tiles * (part + 1) / parts
        guard last > first else { return }
        let workspace = Workspace.take()
        multiply(tiles: first..<last, m: m, panels: panels, routines: routines, packers: packers, transposeA: transposeA,
                 a: a, lda: lda, c: c, ldc: ldc, workspace: workspace)
        Workspace.give(workspace)
      }
    }
  }

  // MARK: B packed once, shared by many products

  /// A block of columns jc ..< jc+nc of op(B) packed for all of k: for each block of KC steps,
  /// its 16-column panels, as `multiply` reads them. Shared by every product that multiplies
  /// it: the split GEMM's threads, and a convolution's chunks of im2col rows (ConvKernels),
  /// which would otherwise each pack the whole filter again.
  struct SharedPanels {
    let pointer: UnsafeMutablePointer<Float>
    let k: Int, jc: Int, nc: Int
    var columnPanels: Int { (nc + nr - 1) / nr }
  }

  /// Columns of B in one shared block: at most NC, and all of k for them within `packingLimit` floats.
  static func sharedBlockColumns(k: Int, packingLimit: Int = sharedPackingLimit) -> Int {
    max(nr, min(ncBlock, packingLimit / max(k, 1) / nr * nr))
  }

  /// Packs op(B)[0 ..< k, jc ..< jc+nc] into `workspace`'s B buffer, its panels shared out over
  /// `parts` threads of `pool` (one pool job; one thread when `parts` is 1).
  static func packShared(packers: GemmKernels.Packers, transposed: Bool, b: UnsafeRawPointer, ldb: Int, k: Int, jc: Int, nc: Int,
                         into workspace: Workspace, pool: ThreadPool, parts: Int) -> SharedPanels {
    let packed = workspace.packedB(capacity: k * ((nc + nr - 1) / nr) * nr)
    return packPanels(packers: packers, transposed: transposed, b: b, ldb: ldb, k: k, jc: jc, nc: nc, into: packed, pool: pool, parts: parts)
  }

  /// Floats `packPanels` writes for op(B)[0 ..< k, 0 ..< n].
  static func panelFloats(k: Int, n: Int) -> Int { k * ((n + nr - 1) / nr) * nr }

  /// Packs op(B)[0 ..< k, jc ..< jc+nc] into `packed` (`panelFloats(k:n: nc)` floats), its panels
  /// shared out over `parts` threads of `pool`: a buffer the caller owns (PackedFilters keeps
  /// one across runs).
  static func packPanels(packers: GemmKernels.Packers, transposed: Bool, b: UnsafeRawPointer, ldb: Int, k: Int, jc: Int, nc: Int,
                         into packed: UnsafeMutablePointer<Float>, pool: ThreadPool, parts: Int) -> SharedPanels {
    let columnPanels = (nc + nr - 1) / nr
    func pack(_ part: Int) {
      let first = columnPanels * part / parts, last = columnPanels * (part + 1) / parts
      guard last > first else { return }
      let j0 = first * nr, j1 = min(nc, last * nr)
      for pc in stride(from: 0, to: k, by: kcBlock) {
        let kc = min(kcBlock, k - pc)
        packB(packers, transposed: transposed, b: b, ldb: ldb, k0: pc, kc: kc, j0: jc + j0, nc: j1 - j0,
              into: packed + pc * columnPanels * nr + j0 * kc)
      }
    }
    if parts > 1 { pool.parallelFor(parts) { pack($0) } } else { pack(0) }
    return SharedPanels(pointer: packed, k: k, jc: jc, nc: nc)
  }

  /// The tiles `tiles` of C[:, jc ..< jc+nc] = op(A) B̃ over all of k, B̃ the shared `panels`;
  /// only those in column panels `panelRange` when given (a split by columns: each thread reads
  /// its share of B̃ and all of A, for products with few rows and a large B).
  static func multiply(tiles: Range<Int>, m: Int, panels: SharedPanels, routines: GemmKernels.Entries, packers: GemmKernels.Packers,
                       transposeA: Bool, a: UnsafeRawPointer, lda: Int, c: UnsafeMutablePointer<Float>, ldc: Int, workspace: Workspace,
                       panelRange: Range<Int>? = nil) {
    let columnPanels = panels.columnPanels
    for pc in stride(from: 0, to: panels.k, by: kcBlock) {
      multiply(tiles: tiles, columnPanels: columnPanels, m: m, routines: routines, packers: packers, transposeA: transposeA,
               a: a, lda: lda, pc: pc, kc: min(kcBlock, panels.k - pc), packedB: panels.pointer + pc * columnPanels * nr,
               jc: panels.jc, nc: panels.nc, c: c, ldc: ldc, workspace: workspace, panelRange: panelRange ?? 0..<columnPanels)
    }
  }

  /// A filter (or any B) packed once for f32 products run from any thread: `packWhole` packs all
  /// of op(B) [k, n] (nil when it is larger than one shared block, or JitGemm is off), `multiply`
  /// computes C[m, n] = A · B̃ for a plain row-major A on the calling thread, `release` gives the
  /// buffer back.
  struct WholeB {
    let panels: SharedPanels
    let workspace: Workspace
    let routines: GemmKernels.Entries
  }

  static func packWhole(transposeB: Bool, k: Int, n: Int, b: UnsafePointer<Float>, ldb: Int, pool: ThreadPool) -> WholeB? {
    guard enabled, k > 0, n >= 8, n <= sharedBlockColumns(k: k), let routines = Self.routines else { return nil }
    let workspace = Workspace.take()
    let panels = packShared(packers: routines.packers, transposed: transposeB, b: UnsafeRawPointer(b), ldb: ldb, k: k, jc: 0, nc: n,
                            into: workspace, pool: pool, parts: min(pool.threadCount, (n + nr - 1) / nr))
    return WholeB(panels: panels, workspace: workspace, routines: routines)
  }

  static func multiply(_ whole: WholeB, m: Int, a: UnsafePointer<Float>, lda: Int, c: UnsafeMutablePointer<Float>, ldc: Int) {
    guard m > 0 else { return }
    let workspace = Workspace.take()
    defer { Workspace.give(workspace) }
    multiply(tiles: 0..<((m + mr - 1) / mr * whole.panels.columnPanels), m: m, panels: whole.panels, routines: whole.routines,
             packers: whole.routines.packers, transposeA: false, a: UnsafeRawPointer(a), lda: lda, c: c, ldc: ldc, workspace: workspace)
  }

  static func release(_ whole: WholeB) { Workspace.give(whole.workspace) }

  /// Floats of B packed at once by a split GEMM (16 MiB): all of K for 1024+ columns of W4-sized
  /// operands.
  public static let sharedPackingLimit = 1 << 22

  /// The compiled routines, after handling the products with nothing to sum (nil: C is done).
  static func prepare(m: Int, n: Int, k: Int, c: UnsafeMutablePointer<Float>, ldc: Int) -> GemmKernels.Entries? {
    guard m > 0, n > 0 else { return nil }
    guard k > 0 else {
      for i in 0..<m { (c + i * ldc).update(repeating: 0, count: n) }
      return nil
    }
    guard let routines = Self.routines else { fatalError("JitGemm.sgemm called without compiled routines (check JitGemm.enabled)") }
    return routines
  }

  /// The tiles `tiles` of C[:, jc ..< jc+nc] (+)= op(A)[:, pc ..< pc+kc] B̃, tile t being row
  /// panel t / columnPanels and column panel t % columnPanels: their rows in blocks of MC, each
  /// packed into the workspace's Ã, then for each panel of the packed B block (kept in L1) every
  /// row panel of the block (streamed from L2).
  static func multiply(tiles: Range<Int>, columnPanels: Int, m: Int, routines: GemmKernels.Entries, packers: GemmKernels.Packers,
                       transposeA: Bool, a: UnsafeRawPointer, lda: Int, pc: Int, kc: Int, packedB: UnsafeMutablePointer<Float>,
                       jc: Int, nc: Int, c: UnsafeMutablePointer<Float>, ldc: Int, workspace: Workspace,
                       panelRange: Range<Int>? = nil) {
    let kernel = routines.microkernel
    let accumulate = pc > 0 ? 1 : 0
    let firstRow = tiles.lowerBound / columnPanels * mr
    let endRow = min(m, ((tiles.upperBound - 1) / columnPanels + 1) * mr)
    for ic in stride(from: firstRow, to: endRow, by: mcBlock) {
      let mc = min(mcBlock, endRow - ic)
      packA(packers, transposed: transposeA, a: a, lda: lda, i0: ic, mc: mc, k0: pc, kc: kc, into: workspace.packedA)
      for jr in panelRange ?? 0..<columnPanels {
        let columns = min(nr, nc - jr * nr)
        let bPanel = UnsafePointer(packedB + jr * nr * kc)
        for ir in stride(from: 0, to: mc, by: mr) {
          let tile = (ic + ir) / mr * columnPanels + jr
          guard tiles.contains(tile) else { continue }
          let tileRows = min(mr, mc - ir)
          let aPanel = UnsafePointer(workspace.packedA + ir * kc)
          let target = c + (ic + ir) * ldc + jc + jr * nr
          if tileRows == mr && columns == nr {
            kernel(kc, aPanel, bPanel, target, ldc, accumulate)
            continue
          }
          // An edge tile: computed whole from the zero-padded panels, its valid part copied out.
          kernel(kc, aPanel, bPanel, workspace.tile, nr, 0)
          for r in 0..<tileRows {
            let source = workspace.tile + r * nr, row = target + r * ldc
            if accumulate != 0 {
              for s in 0..<columns { row[s] += source[s] }
            } else {
              row.update(from: source, count: columns)
            }
          }
        }
      }
    }
  }

  /// Packs op(A)[i0 ..< i0+mc, k0 ..< k0+kc] into 6-row panels: panel p holds, for each k, the
  /// six values of rows 6p ..< 6p+6 (zero past the last row). Whole panels are packed by the
  /// JIT-compiled routines; a last, partial one here.
  static func packA(_ packers: GemmKernels.Packers, transposed: Bool, a: UnsafeRawPointer, lda: Int,
                    i0: Int, mc: Int, k0: Int, kc: Int, into out: UnsafeMutablePointer<Float>) {
    let fullPanels = mc / mr, size = packers.source.byteSize
    if transposed {
      if fullPanels > 0 { packers.transposedA(kc, fullPanels, a + (k0 &* lda &+ i0) &* size, lda, out) }
    } else {
      for q in 0..<fullPanels {
        packers.plainA(kc, a + ((i0 &+ q &* mr) &* lda &+ k0) &* size, lda, out + q &* mr &* kc)
      }
    }
    let first = i0 &+ fullPanels &* mr
    packEdgePanel(width: mr, count: mc &- fullPanels &* mr, kc: kc, from: a, source: packers.source, into: out + fullPanels &* mr &* kc) { r, kk in
      let i = first &+ r, k = k0 &+ kk
      return transposed ? k &* lda &+ i : i &* lda &+ k
    }
  }

  /// A last, partial panel of `width` (6 rows of A or 16 columns of B) of which `count` are real:
  /// for each k the real values, elements `position(index, k)` of `base` (widened to f32 from
  /// `source`), then zeros.
  @inline(__always)
  static func packEdgePanel(width: Int, count: Int, kc: Int, from base: UnsafeRawPointer, source: GemmKernels.Source,
                            into panel: UnsafeMutablePointer<Float>, _ position: (Int, Int) -> Int) {
    guard count > 0 else { return }
    panel.update(repeating: 0, count: kc &* width)
    @inline(__always) func fill(_ value: (Int) -> Float) {
      for index in 0..<count {
        for kk in 0..<kc { panel[kk &* width &+ index] = value(position(index, kk)) }
      }
    }
    switch source {
    case .f32:
      let p = base.assumingMemoryBound(to: Float.self)
      fill { p[$0] }
    case .bf16:
      let p = base.assumingMemoryBound(to: UInt16.self)
      fill { Float(bitPattern: UInt32(p[$0]) << 16) }
    case .f16:
      let p = base.assumingMemoryBound(to: UInt16.self)
      fill { Float(Float16(bitPattern: p[$0])) }
    }
  }

  /// Packs op(B)[k0 ..< k0+kc, j0 ..< j0+nc] into 16-column panels: panel q holds, for each k,
  /// the sixteen values of columns 16q ..< 16q+16 (zero past the last column). Whole panels are
  /// packed by the JIT-compiled routines; a last, partial one here.
  static func packB(_ packers: GemmKernels.Packers, transposed: Bool, b: UnsafeRawPointer, ldb: Int,
                    k0: Int, kc: Int, j0: Int, nc: Int, into out: UnsafeMutablePointer<Float>) {
    let fullPanels = nc / nr, size = packers.source.byteSize
    if transposed {
      for q in 0..<fullPanels {
        packers.transposedB(kc, b + ((j0 &+ q &* nr) &* ldb &+ k0) &* size, ldb, out + q &* nr &* kc)
      }
    } else if fullPanels > 0 {
      packers.plainB(kc, fullPanels, b + (k0 &* ldb &+ j0) &* size, ldb, out)
    }
    let first = j0 &+ fullPanels &* nr
    packEdgePanel(width: nr, count: nc &- fullPanels &* nr, kc: kc, from: b, source: packers.source, into: out + fullPanels &* nr &* kc) { s, kk in
      let j = first &+ s, k = k0 &+ kk
      return transposed ? j &* ldb &+ k : k &* ldb &+ j
    }
  }

  /// Packing buffers for one call, 64-byte aligned, kept on a free list between calls.
  final class Workspace: @unchecked Sendable {
    let packedA: UnsafeMutablePointer<Float>
    let tile: UnsafeMutablePointer<Float>

    init() {
      func allocate(_ count: Int) -> UnsafeMutablePointer<Float> {
        var raw: UnsafeMutableRawPointer?
        guard posix_memalign(&raw, 64, count * MemoryLayout<Float>.stride) == 0, let raw else {
          fatalError("JitGemm: cannot allocate \(count * 4) bytes of packing buffers")
        }
        return raw.bindMemory(to: Float.self, capacity: count)
      }
      packedA = allocate(JitGemm.mcBlock * JitGemm.kcBlock + 8)   // + the plain-A packer's overhang
      tile = allocate(JitGemm.mr * JitGemm.nr)
    }
    deinit {
      free(packedA); free(tile); free(packedBBuffer)
    }

    /// The buffer for packed B, grown on demand: one block of k and columns (KC x NC) on the
    /// calling thread, or all of k for a split GEMM's shared packing. Allocated only by the
    /// workspaces that pack B (a split GEMM's per-thread workspaces pack only A).
    private var packedBBuffer: UnsafeMutablePointer<Float>?
    private var packedBCapacity = 0
    func packedB(capacity: Int) -> UnsafeMutablePointer<Float> {
      if capacity > packedBCapacity {
        free(packedBBuffer)
        var raw: UnsafeMutableRawPointer?
        guard posix_memalign(&raw, 64, capacity * MemoryLayout<Float>.stride) == 0, let raw else {
          fatalError("JitGemm: cannot allocate \(capacity * 4) bytes for packing B")
        }
        packedBBuffer = raw.bindMemory(to: Float.self, capacity: capacity)
        packedBCapacity = capacity
      }
      return packedBBuffer!
    }

    private static let lock = NSLockish()
    nonisolated(unsafe) private static var spare: [Workspace] = []

    static func take() -> Workspace {
      lock.withLock { spare.popLast() } ?? Workspace()
    }
    static func give(_ workspace: Workspace) {
      lock.withLock { spare.append(workspace) }
    }
  }
}
