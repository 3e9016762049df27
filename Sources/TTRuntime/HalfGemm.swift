// HalfGemm — GEMMs of bf16 or f16 operands, accumulated in f32, the result stored as f32 or
// rounded once (nearest, ties to even) to bf16 or f16. Two paths (IR-specs/codegen.md, "Half
// precision GEMM"):
//
// - dot products (bf16 operands, a host with AVX512-BF16): Goto/BLIS blocking like JitGemm, but
//   the panels hold pairs of k as 32-bit words (Ã: six rows per pair, B̃: sixteen columns per
//   pair; the pair's first k in the high half) and the microkernel is HalfGemmKernels' vdpbf16ps
//   one. Each element of C is, per block of `kcBlock` k, a chain of f32 FMAs in k order from +0
//   with denormal inputs and results flushed to zero (the instruction's rounding), the block
//   sums added to C in order. Split over the pool by rows (the threads pack one shared B̃ per
//   block, each its own Ã) or columns (each part packs its own); the bits do not depend on the
//   split. The packers read their source in memory order (x86: little-endian words).
// - portable (f16 always; bf16 without the instruction or with TTFC_HALF_GEMM=portable): ttfc's
//   f32 GEMM (JitGemm: its summation order, bit for bit) with packers that widen the operands to
//   f32 (exactly) as they pack them; with TTFC_GEMM=openblas, widened copies and OpenBLAS.

import Glibc
import Synchronization
import TTCodegen
import TTIR
import TTSupport

/// ttfc's GEMM for f16 and bf16 operands (f32 accumulation).
public enum HalfGemm {
  public enum Path: Sendable, Equatable { case dotProducts, portable }

  // Block sizes of the dot-product path: KC in k (even; 256 pairs: a B̃ panel is 16 KiB, in L1),
  // MC and NC as JitGemm's.
  static let kcBlock = 512
  static let mcBlock = 144
  static let ncBlock = 2048
  static let mr = 6
  static let nr = 16

  /// The conversions and (on a host with AVX512-BF16) the dot-product microkernel.
  static let routines: HalfGemmKernels.Entries? = {
    let start = DispatchClock.now()
    defer { compileNanoseconds.store(Int((DispatchClock.now() - start) * 1e9), ordering: .relaxed) }
    return try? HalfGemmKernels.compiled()
  }()
  private static let compileNanoseconds = Atomic<Int>(0)
  /// Seconds compiling the routines took in this process (0 until they are compiled), for
  /// `--stats`' compile phases.
  public static var compileSeconds: Double { Double(compileNanoseconds.load(ordering: .relaxed)) / 1e9 }

  /// Whether half GEMMs can run here (LLVM compiled the routines).
  public static var available: Bool { routines != nil }

  /// Whether GEMMs of `dtype` operands run here: bf16 wherever the routines compiled, f16 where
  /// the CPU also has F16C.
  public static func supports(_ dtype: DType) -> Bool {
    guard let routines else { return false }
    return dtype == .bf16 || (dtype == .f16 && routines.f16Packers != nil)
  }

  /// Compiles the routines on a new thread (once per process), as JitGemm's: whoever reads
  /// `available` or `routines` meanwhile waits for it.
  public static func compileInBackground() {
    guard !started.exchange(true, ordering: .relaxed) else { return }
    var thread = pthread_t()
    if pthread_create(&thread, nil, { _ in _ = HalfGemm.routines; return nil }, nil) == 0 {
      pthread_detach(thread)
    }
  }
  private static let started = Atomic<Bool>(false)

  /// The path bf16 GEMMs take: the dot products where the host has them, unless
  /// `TTFC_HALF_GEMM=portable` (or `TTFC_GEMM=openblas`) asks for the portable one.
  public static let bf16Path: Path = {
    if let text = getenv("TTFC_HALF_GEMM"), String(cString: text) == "portable" { return .portable }
    return routines?.dotMicrokernel != nil && JitGemm.enabled ? .dotProducts : .portable
  }()

  /// Row-major C[m, n] = op(A) op(B), A and B of type `input` (bf16 or f16), C of type `output`
  /// (f32, or `input`'s type or the other half type: rounded once from the f32 sums). Strides as
  /// ParallelGemm.gemm's; C's row stride is n. `path` overrides the default (tests).
  public static func gemm(input: DType, output: DType, transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int,
                          a: UnsafeRawPointer, lda: Int, b: UnsafeRawPointer, ldb: Int, c: UnsafeMutableRawPointer,
                          pool: ThreadPool, path: Path? = nil) {
    precondition(input == .bf16 || input == .f16, "HalfGemm takes bf16 or f16 operands, not \(input)")
    precondition(output == .f32 || output == .bf16 || output == .f16, "HalfGemm writes f32, bf16 or f16, not \(output)")
    guard m > 0, n > 0 else { return }
    guard let routines, supports(input), output != .f16 || routines.narrowF16 != nil else {
      fatalError("HalfGemm.gemm called for \(input) -> \(output), which this host cannot run (check HalfGemm.supports)")
    }
    let chosen = input == .f16 ? .portable : (path ?? bf16Path)
    let result = output == .f32 ? Scratch?.none : Scratch.take(m * n)
    defer { result.map(Scratch.give) }
    let c32 = result?.pointer ?? c.assumingMemoryBound(to: Float.self)
    let pa = a.assumingMemoryBound(to: UInt16.self), pb = b.assumingMemoryBound(to: UInt16.self)
    if chosen == .dotProducts, let kernel = routines.dotMicrokernel {
      dotGemm(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, a: pa, lda: lda, b: pb, ldb: ldb, c: c32,
              pool: pool, kernel: kernel)
    } else if JitGemm.enabled {
      // The f32 GEMM, its packers widening the half operands as they pack them.
      ParallelGemm.jitGemm(packers: input == .bf16 ? routines.bf16Packers : routines.f16Packers!, transposeA: transposeA,
                           transposeB: transposeB, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, c: c32, pool: pool)
    } else {
      // TTFC_GEMM=openblas: whole stored operands (rows x row stride) widened, then OpenBLAS.
      let aCount = (transposeA ? k : m) * lda, bCount = (transposeB ? n : k) * ldb
      let wideA = Scratch.take(aCount), wideB = Scratch.take(bCount)
      defer { Scratch.give(wideA); Scratch.give(wideB) }
      widen(pa, count: aCount, input, into: wideA.pointer)
      widen(pb, count: bCount, input, into: wideB.pointer)
      ParallelGemm.blasGemm(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, a: UnsafePointer(wideA.pointer),
                            lda: lda, b: UnsafePointer(wideB.pointer), ldb: ldb, c: c32, pool: pool)
    }
    if let result {
      let narrow = output == .bf16 ? routines.narrowBF16 : routines.narrowF16!
      narrow(m * n, result.pointer, c.assumingMemoryBound(to: UInt16.self))
    }
  }

  /// The dot-product path over the pool, split as ParallelGemm splits (part boundaries on
  /// multiples of 16). Split by rows, the parts share one B̃ per block of B, packed by all the
  /// threads, and each packs its own Ã; split by columns, each part is a `dotGemm` of its own.
  static func dotGemm(transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int, a: UnsafePointer<UInt16>, lda: Int,
                      b: UnsafePointer<UInt16>, ldb: Int, c: UnsafeMutablePointer<Float>, pool: ThreadPool,
                      kernel: HalfGemmKernels.Microkernel) {
    let plan = ParallelGemm.split(m: m, n: n, k: k, pool: pool)
    let (parts, extent, byRows): (Int, Int, Bool) = switch plan {
      case .none: (1, m, true)
      case .rows(let p): (p, m, true)
      case .columns(let p): (p, n, false)
    }
    guard parts > 1, k > 0 else {
      dotGemm(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: n, kernel: kernel)
      return
    }
    func boundary(_ p: Int) -> Int { p == parts ? extent : (extent * p / parts) / 16 * 16 }
    let aAddress = UInt(bitPattern: a), bAddress = UInt(bitPattern: b), cAddress = UInt(bitPattern: c)
    guard byRows else {
      pool.parallelFor(parts) { part in
        let lo = boundary(part), hi = boundary(part + 1)
        guard hi > lo else { return }
        let b0 = UnsafePointer<UInt16>(bitPattern: bAddress)!
        dotGemm(transposeA: transposeA, transposeB: transposeB, m: m, n: hi - lo, k: k, a: UnsafePointer<UInt16>(bitPattern: aAddress)!,
                lda: lda, b: b0 + (transposeB ? lo * ldb : lo), ldb: ldb, c: UnsafeMutablePointer<Float>(bitPattern: cAddress)! + lo, ldc: n,
                kernel: kernel)
      }
      return
    }
    let packedB = Scratch.take(kcBlock / 2 * ncBlock)
    defer { Scratch.give(packedB) }
    let packedAddress = UInt(bitPattern: packedB.pointer)
    let operands = Operands(transposeA: transposeA, transposeB: transposeB, a: a, lda: lda, b: b, ldb: ldb)
    for jc in stride(from: 0, to: n, by: ncBlock) {
      let nc = min(ncBlock, n - jc), columnPanels = (nc + nr - 1) / nr
      for pc in stride(from: 0, to: k, by: kcBlock) {
        let kc = min(kcBlock, k - pc)
        // B̃'s panels shared out over the threads, then each part's rows against all of them.
        let packers = min(pool.threadCount, columnPanels)
        pool.parallelFor(packers) { part in
          let first = columnPanels * part / packers, last = columnPanels * (part + 1) / packers
          guard last > first else { return }
          let packed = UnsafeMutablePointer<UInt32>(bitPattern: packedAddress)!
          operands.packB(columns: (jc + first * nr)..<(jc + min(nc, last * nr)), pc: pc, kc: kc,
                         into: packed + first * nr * ((kc + 1) / 2))
        }
        pool.parallelFor(parts) { part in
          let lo = boundary(part), hi = boundary(part + 1)
          guard hi > lo else { return }
          let workspace = Workspace()
          defer { workspace.release() }
          operands.multiply(rows: lo..<hi, jc: jc, nc: nc, pc: pc, kc: kc,
                            packedB: UnsafePointer(UnsafeMutablePointer<UInt32>(bitPattern: packedAddress)!),
                            c: UnsafeMutablePointer<Float>(bitPattern: cAddress)!, ldc: n, workspace: workspace, kernel: kernel)
        }
      }
    }
  }

  /// C[m, n] (row stride ldc) = op(A) op(B) on the calling thread, through `kernel` (the JIT's
  /// vdpbf16ps microkernel, or in tests a model of it).
  public static func dotGemm(transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int, a: UnsafePointer<UInt16>, lda: Int,
                             b: UnsafePointer<UInt16>, ldb: Int, c: UnsafeMutablePointer<Float>, ldc: Int,
                             kernel: HalfGemmKernels.Microkernel) {
    guard m > 0, n > 0 else { return }
    guard k > 0 else {
      for i in 0..<m { (c + i * ldc).update(repeating: 0, count: n) }
      return
    }
    let operands = Operands(transposeA: transposeA, transposeB: transposeB, a: a, lda: lda, b: b, ldb: ldb)
    let packedB = UnsafeMutablePointer<UInt32>.allocate(capacity: kcBlock / 2 * ncBlock)
    let workspace = Workspace()
    defer { packedB.deallocate(); workspace.release() }
    for jc in stride(from: 0, to: n, by: ncBlock) {
      let nc = min(ncBlock, n - jc)
      for pc in stride(from: 0, to: k, by: kcBlock) {
        let kc = min(kcBlock, k - pc)
        operands.packB(columns: jc..<(jc + nc), pc: pc, kc: kc, into: packedB)
        operands.multiply(rows: 0..<m, jc: jc, nc: nc, pc: pc, kc: kc, packedB: packedB, c: c, ldc: ldc, workspace: workspace,
                          kernel: kernel)
      }
    }
  }

  /// A thread's Ã block and edge tile.
  struct Workspace {
    let packedA = UnsafeMutablePointer<UInt32>.allocate(capacity: kcBlock / 2 * mcBlock)
    let tile = UnsafeMutablePointer<Float>.allocate(capacity: mr * nr)
    func release() { packedA.deallocate(); tile.deallocate() }
  }

  /// A GEMM's two operands as stored, and the packing of their blocks.
  struct Operands: @unchecked Sendable {
    let transposeA: Bool, transposeB: Bool
    let a: UnsafePointer<UInt16>, lda: Int, b: UnsafePointer<UInt16>, ldb: Int

    /// B̃ for columns `columns` of op(B) and k in pc ..< pc + kc: panels of 16 columns.
    func packB(columns: Range<Int>, pc: Int, kc: Int, into packed: UnsafeMutablePointer<UInt32>) {
      if transposeB {
        packPairsAlongRows(b + columns.lowerBound * ldb + pc, ld: ldb, width: nr, count: columns.count, kc: kc, into: packed)
      } else {
        packPairsDownColumns(b + pc * ldb + columns.lowerBound, ld: ldb, width: nr, count: columns.count, kc: kc, into: packed)
      }
    }

    /// C[rows, jc ..< jc + nc] (+)= op(A)[rows, pc ..< pc + kc] B̃: Ã packed per block of
    /// `mcBlock` rows, the microkernel over each 6x16 tile (edge tiles through `workspace.tile`).
    func multiply(rows: Range<Int>, jc: Int, nc: Int, pc: Int, kc: Int, packedB: UnsafePointer<UInt32>, c: UnsafeMutablePointer<Float>,
                  ldc: Int, workspace: Workspace, kernel: HalfGemmKernels.Microkernel) {
      let pairs = (kc + 1) / 2, columnPanels = (nc + nr - 1) / nr
      let accumulate = pc > 0 ? 1 : 0
      let packedA = workspace.packedA, tile = workspace.tile
      for ic in stride(from: rows.lowerBound, to: rows.upperBound, by: mcBlock) {
        let mc = min(mcBlock, rows.upperBound - ic)
        if transposeA {
          packPairsDownColumns(a + pc * lda + ic, ld: lda, width: mr, count: mc, kc: kc, into: packedA)
        } else {
          packPairsAlongRows(a + ic * lda + pc, ld: lda, width: mr, count: mc, kc: kc, into: packedA)
        }
        for jr in 0..<columnPanels {
          let columns = min(nr, nc - jr * nr)
          let bPanel = packedB + jr * nr * pairs
          for ir in stride(from: 0, to: mc, by: mr) {
            let rows = min(mr, mc - ir)
            let aPanel = UnsafePointer(packedA + ir * pairs)
            let target = c + (ic + ir) * ldc + jc + jr * nr
            if rows == mr && columns == nr {
              kernel(pairs, aPanel, bPanel, target, ldc, accumulate)
              continue
            }
            kernel(pairs, aPanel, bPanel, tile, nr, 0)
            for r in 0..<rows {
              let source = tile + r * nr, row = target + r * ldc
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
  }

  // The packed form: `count` rows of A (or columns of B) over kc steps of k, in panels of
  // `width`; panel q holds, for each pair p of k, `width` words (value at 2p << 16 | value at
  // 2p+1), zero past `count` and past kc (an odd kc's last pair ends in zero). Two readers, by
  // which way k runs in memory, each reading its source in order.

  /// Calls `pack(panel, first index, real count)` for each panel of `width` indices out of
  /// `count`, a last partial panel zeroed first.
  @inline(__always)
  static func forEachPanel(width: Int, count: Int, pairs: Int, out: UnsafeMutablePointer<UInt32>,
                           _ pack: (UnsafeMutablePointer<UInt32>, Int, Int) -> Void) {
    for q in 0..<((count + width - 1) / width) {
      let panel = out + q &* width &* pairs
      let real = min(width, count &- q &* width)
      if real < width { panel.update(repeating: 0, count: width &* pairs) }
      pack(panel, q &* width, real)
    }
  }

  /// Element (i, kk) at source[kk·ld + i] (B, or a transposed A): per pair, two rows' runs of
  /// `width` values interleaved into words.
  static func packPairsDownColumns(_ source: UnsafePointer<UInt16>, ld: Int, width: Int, count: Int, kc: Int,
                                   into out: UnsafeMutablePointer<UInt32>) {
    let pairs = (kc + 1) / 2, fullPairs = kc / 2
    forEachPanel(width: width, count: count, pairs: pairs, out: out) { panel, index, real in
      let first = source + index
      for p in 0..<fullPairs {
        let high = first + 2 &* p &* ld, low = high + ld, target = panel + p &* width
        for s in 0..<real { target[s] = UInt32(high[s]) << 16 | UInt32(low[s]) }
      }
      if pairs > fullPairs {
        let high = first + (kc &- 1) &* ld, target = panel + fullPairs &* width
        for s in 0..<real { target[s] = UInt32(high[s]) << 16 }
      }
    }
  }

  /// Element (i, kk) at source[i·ld + kk] (A, or a transposed B): each pair one 32-bit load, its
  /// halves swapped (memory holds the pair's first k in the low half).
  static func packPairsAlongRows(_ source: UnsafePointer<UInt16>, ld: Int, width: Int, count: Int, kc: Int,
                                 into out: UnsafeMutablePointer<UInt32>) {
    let pairs = (kc + 1) / 2, fullPairs = kc / 2
    forEachPanel(width: width, count: count, pairs: pairs, out: out) { panel, index, real in
      for s in 0..<real {
        let row = UnsafeRawPointer(source + (index &+ s) &* ld)
        for p in 0..<fullPairs {
          let word = row.loadUnaligned(fromByteOffset: 4 &* p, as: UInt32.self)
          panel[p &* width &+ s] = word << 16 | word >> 16
        }
        if pairs > fullPairs { panel[fullPairs &* width &+ s] = UInt32(row.load(fromByteOffset: 2 &* (kc &- 1), as: UInt16.self)) << 16 }
      }
    }
  }

  /// Half values widened to f32 (exactly).
  static func widen(_ source: UnsafePointer<UInt16>, count: Int, _ dtype: DType, into out: UnsafeMutablePointer<Float>) {
    if dtype == .bf16 {
      for i in 0..<count { out[i] = Float(bitPattern: UInt32(source[i]) << 16) }
    } else {
      for i in 0..<count { out[i] = Float(Float16(bitPattern: source[i])) }
    }
  }

  /// f32 buffers for widened operands and results, 64-byte aligned, kept on a free list.
  final class Scratch: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<Float>
    let capacity: Int
    init(_ capacity: Int) {
      var raw: UnsafeMutableRawPointer?
      guard posix_memalign(&raw, 64, max(capacity, 1) * MemoryLayout<Float>.stride) == 0, let raw else {
        fatalError("HalfGemm: cannot allocate \(capacity * 4) bytes")
      }
      pointer = raw.bindMemory(to: Float.self, capacity: capacity)
      self.capacity = capacity
    }
    deinit { free(pointer) }

    private static let lock = NSLockish()
    nonisolated(unsafe) private static var spare: [Scratch] = []
    /// Buffers kept for reuse at most (larger ones are freed when given back).
    static let keptBytes = 64 << 20

    static func take(_ count: Int) -> Scratch {
      lock.withLock { () -> Scratch? in
        guard let index = spare.firstIndex(where: { $0.capacity >= count }) else { return nil }
        return spare.remove(at: index)
      } ?? Scratch(count)
    }
    static func give(_ scratch: Scratch) {
      guard scratch.capacity * 4 <= keptBytes else { return }
      lock.withLock {
        spare.append(scratch)
        if spare.count > 8 { spare.removeFirst() }
      }
    }
  }
}
