// HalfGemm — GEMMs of bf16 or f16 operands, accumulated in f32, the result stored as f32 or
// rounded once (nearest, ties to even) to bf16 or f16. Two paths (IR-specs/codegen.md, "Half
// precision GEMM"):
//
// - dot products (bf16 operands, a host with AVX512-BF16): Goto/BLIS blocking like JitGemm, but
//   the panels hold pairs of k as 32-bit words (Ã: six rows per pair, B̃: sixteen columns per
//   pair; the pair's first k in the high half) and the microkernel is HalfGemmKernels' vdpbf16ps
//   one. Each element of C is, per block of `kcBlock` k, a chain of f32 FMAs in k order from +0
//   with denormal inputs and results flushed to zero (the instruction's rounding), the block
//   sums added to C in order. Split over the pool by rows or columns (ParallelGemm.split), each
//   part packing its own panels; the bits do not depend on the split.
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

  /// The dot-product path over the pool: split as ParallelGemm splits (part boundaries on
  /// multiples of 16), each part a `dotGemm` of its own.
  static func dotGemm(transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int, a: UnsafePointer<UInt16>, lda: Int,
                      b: UnsafePointer<UInt16>, ldb: Int, c: UnsafeMutablePointer<Float>, pool: ThreadPool,
                      kernel: HalfGemmKernels.Microkernel) {
    let plan = ParallelGemm.split(m: m, n: n, k: k, pool: pool)
    let (parts, extent, byRows): (Int, Int, Bool) = switch plan {
      case .none: (1, m, true)
      case .rows(let p): (p, m, true)
      case .columns(let p): (p, n, false)
    }
    guard parts > 1 else {
      dotGemm(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: n, kernel: kernel)
      return
    }
    let aAddress = UInt(bitPattern: a), bAddress = UInt(bitPattern: b), cAddress = UInt(bitPattern: c)
    pool.parallelFor(parts) { part in
      func boundary(_ p: Int) -> Int { p == parts ? extent : (extent * p / parts) / 16 * 16 }
      let lo = boundary(part), hi = boundary(part + 1)
      guard hi > lo else { return }
      let a0 = UnsafePointer<UInt16>(bitPattern: aAddress)!, b0 = UnsafePointer<UInt16>(bitPattern: bAddress)!
      let c0 = UnsafeMutablePointer<Float>(bitPattern: cAddress)!
      if byRows {
        dotGemm(transposeA: transposeA, transposeB: transposeB, m: hi - lo, n: n, k: k, a: a0 + (transposeA ? lo : lo * lda), lda: lda,
                b: b0, ldb: ldb, c: c0 + lo * n, ldc: n, kernel: kernel)
      } else {
        dotGemm(transposeA: transposeA, transposeB: transposeB, m: m, n: hi - lo, k: k, a: a0, lda: lda,
                b: b0 + (transposeB ? lo * ldb : lo), ldb: ldb, c: c0 + lo, ldc: n, kernel: kernel)
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
    let maxPairs = kcBlock / 2
    let packedB = UnsafeMutablePointer<UInt32>.allocate(capacity: maxPairs * ncBlock)
    let packedA = UnsafeMutablePointer<UInt32>.allocate(capacity: maxPairs * mcBlock)
    let tile = UnsafeMutablePointer<Float>.allocate(capacity: mr * nr)
    defer { packedB.deallocate(); packedA.deallocate(); tile.deallocate() }
    for jc in stride(from: 0, to: n, by: ncBlock) {
      let nc = min(ncBlock, n - jc)
      let columnPanels = (nc + nr - 1) / nr
      for pc in stride(from: 0, to: k, by: kcBlock) {
        let kc = min(kcBlock, k - pc), pairs = (kc + 1) / 2
        let accumulate = pc > 0 ? 1 : 0
        if transposeB {
          packPairs(width: nr, count: nc, kc: kc, into: packedB) { j, kk in b[(jc &+ j) &* ldb &+ pc &+ kk] }
        } else {
          packPairs(width: nr, count: nc, kc: kc, into: packedB) { j, kk in b[(pc &+ kk) &* ldb &+ jc &+ j] }
        }
        for ic in stride(from: 0, to: m, by: mcBlock) {
          let mc = min(mcBlock, m - ic)
          if transposeA {
            packPairs(width: mr, count: mc, kc: kc, into: packedA) { i, kk in a[(pc &+ kk) &* lda &+ ic &+ i] }
          } else {
            packPairs(width: mr, count: mc, kc: kc, into: packedA) { i, kk in a[(ic &+ i) &* lda &+ pc &+ kk] }
          }
          for jr in 0..<columnPanels {
            let columns = min(nr, nc - jr * nr)
            let bPanel = UnsafePointer(packedB + jr * nr * pairs)
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
  }

  /// Packs `count` rows of A (or columns of B) over kc steps of k into panels of `width`: panel q
  /// holds, for each pair p of k, `width` words (value at 2p << 16 | value at 2p+1), zero past
  /// `count` and past kc (an odd kc's last pair ends in zero).
  @inline(__always)
  static func packPairs(width: Int, count: Int, kc: Int, into out: UnsafeMutablePointer<UInt32>,
                        _ value: (Int, Int) -> UInt16) {
    let pairs = (kc + 1) / 2, fullPairs = kc / 2
    let panels = (count + width - 1) / width
    for q in 0..<panels {
      let panel = out + q &* width &* pairs
      let real = min(width, count &- q &* width)
      if real < width { panel.update(repeating: 0, count: width &* pairs) }
      for s in 0..<real {
        let index = q &* width &+ s
        for p in 0..<fullPairs {
          panel[p &* width &+ s] = UInt32(value(index, 2 &* p)) << 16 | UInt32(value(index, 2 &* p &+ 1))
        }
        if pairs > fullPairs { panel[fullPairs &* width &+ s] = UInt32(value(index, kc &- 1)) << 16 }
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
