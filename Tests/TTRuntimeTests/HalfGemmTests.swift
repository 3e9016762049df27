// ttfc's half-precision GEMM (HalfGemm) bit for bit against models of its two summation orders:
// - the portable path (f16; bf16 without AVX512-BF16): the operands widened exactly, then the
//   f32 GEMM's order (JitGemmTests.model), the f32 sums rounded once to the result type;
// - the dot-product path: a scalar model of `vdpbf16ps` as the Intel SDM defines it (per lane
//   two f32 FMAs, the high bf16 of each pair first, denormal inputs and results flushed to zero,
//   nearest-even), chained in k order per block of 512 k, blocks added to C. The packing and loops
//   run against a Swift emulation of the instruction on every host; the JIT's kernel itself only
//   where the CPU has AVX512-BF16 (this test machine, a Zen 3, has not: there the test of the
//   real kernel is disabled and its assembly is checked instead).
// Shapes cover edge tiles, odd k, k across blocks, every transpose; values include NaN, ±inf,
// signed zeros, subnormals and products that underflow.
import Testing
import TTCodegen
import TTCompiler
import TTIR
import TTInterp
@testable import TTRuntime

struct HalfGemmTests {
  // MARK: the model of vdpbf16ps

  static func bf16(_ bits: UInt16) -> Float { Float(bitPattern: UInt32(bits) << 16) }
  /// Denormals to zero of the same sign (the instruction's DAZ on inputs, FTZ on results).
  static func flush(_ x: Float) -> Float { x.isSubnormal ? Float(sign: x.sign, exponent: 0, significand: 0) : x }
  /// One of the instruction's two steps in a lane: acc + x·y as one f32 FMA (nearest-even),
  /// denormal inputs and a denormal result flushed to zero.
  static func dotStep(_ acc: Float, _ x: Float, _ y: Float) -> Float { flush(flush(acc).addingProduct(flush(x), flush(y))) }
  /// `vdpbf16ps` on one lane: words x and y each hold two bf16 values; the high halves first.
  static func vdpbf16ps(_ acc: Float, _ x: UInt32, _ y: UInt32) -> Float {
    let high = dotStep(acc, bf16(UInt16(x >> 16)), bf16(UInt16(y >> 16)))
    return dotStep(high, bf16(UInt16(x & 0xFFFF)), bf16(UInt16(y & 0xFFFF)))
  }

  /// The microkernel emulated with the model (same contract as HalfGemmKernels.Microkernel).
  static let emulatedKernel: HalfGemmKernels.Microkernel = { pairs, a, b, c, ldc, accumulate in
    for r in 0..<HalfGemmKernels.rows {
      for s in 0..<HalfGemmKernels.columns {
        var acc: Float = 0
        for q in 0..<pairs { acc = HalfGemmTests.vdpbf16ps(acc, a[q * HalfGemmKernels.rows + r], b[q * HalfGemmKernels.columns + s]) }
        c[r * ldc + s] = accumulate != 0 ? c[r * ldc + s] + acc : acc
      }
    }
  }

  /// What the dot-product path computes for C[i, j]: per block of HalfGemm.kcBlock k, pairs
  /// (k, k+1) from k = the block's start (an odd block ends with a pair (k, zero)), each pair
  /// two flushing FMAs in k order from +0; the block sums added to C (IEEE, no flush).
  static func dotModel(_ a: [UInt16], _ b: [UInt16], m: Int, n: Int, k: Int, ta: Bool, tb: Bool) -> [Float] {
    func av(_ i: Int, _ p: Int) -> Float { bf16(ta ? a[p * m + i] : a[i * k + p]) }
    func bv(_ p: Int, _ j: Int) -> Float { bf16(tb ? b[j * k + p] : b[p * n + j]) }
    var c = [Float](repeating: 0, count: m * n)
    for i in 0..<m {
      for j in 0..<n {
        var total: Float = 0
        for block in stride(from: 0, to: k, by: HalfGemm.kcBlock) {
          let end = min(k, block + HalfGemm.kcBlock)
          var sum: Float = 0
          for p in stride(from: block, to: end, by: 2) {
            sum = dotStep(sum, av(i, p), bv(p, j))
            sum = p + 1 < end ? dotStep(sum, av(i, p + 1), bv(p + 1, j)) : dotStep(sum, 0, 0)
          }
          total = block == 0 ? sum : total + sum
        }
        c[i * n + j] = total
      }
    }
    return c
  }

  // MARK: the portable model

  static func widen(_ bits: UInt16, _ dtype: DType) -> Float { dtype == .bf16 ? bf16(bits) : Float(Float16(bitPattern: bits)) }
  static func narrow(_ x: Float, _ dtype: DType) -> UInt16 { dtype == .bf16 ? bfloat16Bits(x) : Float16(x).bitPattern }

  static func portableModel(_ a: [UInt16], _ b: [UInt16], _ dtype: DType, m: Int, n: Int, k: Int, ta: Bool, tb: Bool) -> [Float] {
    JitGemmTests.model(a.map { widen($0, dtype) }, b.map { widen($0, dtype) }, m: m, n: n, k: k, ta: ta, tb: tb)
  }

  // MARK: inputs

  /// Random half values: mostly within a few binades of 1; with `specials`, about one in forty
  /// is NaN, ±inf, ±0, a subnormal or a value whose products underflow f32.
  static func values(_ count: Int, _ dtype: DType, seed: Int, specials: Bool = false) -> [UInt16] {
    var state = UInt64(seed) &* 0x9E37_79B9_7F4A_7C15 | 1
    func next() -> UInt64 { state ^= state << 13; state ^= state >> 7; state ^= state << 17; return state }
    return (0..<count).map { _ in
      let r = next()
      if specials && r % 40 == 0 {
        let pick = (r >> 8) % 8
        let sign = UInt16((r >> 20) & 1) << 15
        if dtype == .bf16 {
          return sign | [0x7FC0, 0x7F80, 0x0000, 0x0001 + UInt16((r >> 24) & 0x7F), 0x0080, 0x1F00 + UInt16((r >> 24) & 0x7F),
                         0x2000, 0x007F][Int(pick)]
        }
        return sign | [0x7E00, 0x7C00, 0x0000, 0x0001 + UInt16((r >> 24) & 0x3FF), 0x0400, 0x0123, 0x3C00, 0x7BFF][Int(pick)]
      }
      let sign = UInt16((r >> 40) & 1) << 15
      if dtype == .bf16 {
        return sign | UInt16(124 + Int((r >> 8) % 8)) << 7 | UInt16((r >> 16) & 0x7F)
      }
      return sign | UInt16(12 + Int((r >> 8) % 6)) << 10 | UInt16((r >> 16) & 0x3FF)
    }
  }

  static func sameBits(_ x: Float, _ y: Float) -> Bool { x.bitPattern == y.bitPattern || (x.isNaN && y.isNaN) }
  static func sameHalfBits(_ x: UInt16, _ y: UInt16, _ dtype: DType) -> Bool {
    x == y || (widen(x, dtype).isNaN && widen(y, dtype).isNaN)
  }

  /// (m, n, k): edge tiles in rows (6) and columns (16), odd k, k across the dot path's
  /// 512-step block and the f32 GEMM's 256-step one, rows across the 144-row block.
  static let shapes: [(Int, Int, Int)] = [(1, 1, 1), (6, 16, 2), (7, 17, 3), (5, 15, 513), (13, 33, 600), (150, 20, 1025), (12, 48, 257)]

  // MARK: tests

  /// The dot-product path's packing, blocking and edges with the emulated instruction, bit for
  /// bit against the scalar model, for every transpose, with special values.
  @Test(arguments: [false, true], [false, true])
  func dotPathMatchesTheInstructionModel(_ ta: Bool, _ tb: Bool) {
    for (index, (m, n, k)) in Self.shapes.enumerated() {
      let a = Self.values(m * k, .bf16, seed: m + 7 * k, specials: index % 2 == 1)
      let b = Self.values(k * n, .bf16, seed: n + 11 * k, specials: index % 2 == 1)
      let want = Self.dotModel(a, b, m: m, n: n, k: k, ta: ta, tb: tb)
      let ldc = n + 3
      var c = [Float](repeating: .nan, count: m * ldc)
      a.withUnsafeBufferPointer { pa in b.withUnsafeBufferPointer { pb in c.withUnsafeMutableBufferPointer { pc in
        HalfGemm.dotGemm(transposeA: ta, transposeB: tb, m: m, n: n, k: k, a: pa.baseAddress!, lda: ta ? m : k,
                         b: pb.baseAddress!, ldb: tb ? k : n, c: pc.baseAddress!, ldc: ldc, kernel: Self.emulatedKernel)
      } } }
      for i in 0..<m {
        let row = Array(c[(i * ldc)..<(i * ldc + n)]), expected = Array(want[(i * n)..<(i * n + n)])
        #expect(zip(row, expected).allSatisfy(Self.sameBits), "\(m)x\(n)x\(k) ta \(ta) tb \(tb) row \(i)")
        #expect(c[(i * ldc + n)..<(i * ldc + ldc)].allSatisfy { $0.isNaN }, "written outside C's columns")
      }
    }
  }

  /// The model itself on hand-worked cases: the high half first, flushing, pair padding.
  @Test func instructionModelOnHandWorkedCases() {
    // 1 + (-1·1) + 2^-24·1: the high pair first gives 0 + 2^-24; the low pair first would give
    // 1 + 2^-24 = 1 (a tie, to even), then 0.
    let one: UInt16 = 0x3F80, minusOne: UInt16 = 0xBF80, tiny: UInt16 = 0x3380   // 2^-24
    #expect(Self.vdpbf16ps(1, UInt32(minusOne) << 16 | UInt32(tiny), UInt32(one) << 16 | UInt32(one)) == 0x1p-24)
    // A product below 2^-126 is flushed; a subnormal input is zero; the sign of the flushed zero is kept.
    let small: UInt16 = 0x1F80   // 2^-64: its square 2^-128 is subnormal in f32
    #expect(Self.vdpbf16ps(0, UInt32(small) << 16, UInt32(small) << 16).bitPattern == 0)
    #expect(Self.vdpbf16ps(-0.0, UInt32(0x0001) << 16, UInt32(one) << 16).bitPattern == 0)   // -0 + (+0)·1 = +0
    #expect(Self.flush(-Float.leastNonzeroMagnitude).bitPattern == (-Float(0)).bitPattern)
    // inf·0 in a padded pair is NaN: padding is zero in both operands, so 0·0 never meets inf.
    #expect(Self.vdpbf16ps(0, UInt32(0x7F80) << 16, UInt32(0x3F80) << 16) == .infinity)
  }

  /// The portable path (forced): widening, the f32 GEMM, rounding once to the result type, bit
  /// for bit, for f16 and bf16, f32 and half outputs, every transpose, one thread and split
  /// over two.
  @Test(arguments: [DType.bf16, .f16], [false, true])
  func portablePathMatchesTheF32Model(_ dtype: DType, _ transposed: Bool) throws {
    try #require(HalfGemm.available && JitGemm.enabled)
    let pools = [ThreadPool(threads: 1), ThreadPool(threads: 2)]
    for (index, (m, n, k)) in (Self.shapes + [(200, 130, 300)]).enumerated() {
      let ta = transposed, tb = transposed != (index % 2 == 0)
      let a = Self.values(m * k, dtype, seed: m + 3 * k, specials: index % 2 == 1)
      let b = Self.values(k * n, dtype, seed: n + 5 * k, specials: index % 2 == 1)
      let want = Self.portableModel(a, b, dtype, m: m, n: n, k: k, ta: ta, tb: tb)
      for pool in pools {
        var c = [Float](repeating: .nan, count: m * n)
        var h = [UInt16](repeating: 0xFFFF, count: m * n)
        a.withUnsafeBytes { pa in b.withUnsafeBytes { pb in
          c.withUnsafeMutableBytes { pc in
            HalfGemm.gemm(input: dtype, output: .f32, transposeA: ta, transposeB: tb, m: m, n: n, k: k, a: pa.baseAddress!, lda: ta ? m : k,
                          b: pb.baseAddress!, ldb: tb ? k : n, c: pc.baseAddress!, pool: pool, path: .portable)
          }
          h.withUnsafeMutableBytes { ph in
            HalfGemm.gemm(input: dtype, output: dtype, transposeA: ta, transposeB: tb, m: m, n: n, k: k, a: pa.baseAddress!, lda: ta ? m : k,
                          b: pb.baseAddress!, ldb: tb ? k : n, c: ph.baseAddress!, pool: pool, path: .portable)
          }
        } }
        #expect(zip(c, want).allSatisfy(Self.sameBits), "\(dtype) \(m)x\(n)x\(k) ta \(ta) tb \(tb) f32 output, \(pool.threadCount) threads")
        #expect(zip(h, want.map { Self.narrow($0, dtype) }).allSatisfy { Self.sameHalfBits($0, $1, dtype) },
                "\(dtype) \(m)x\(n)x\(k) ta \(ta) tb \(tb) \(dtype) output, \(pool.threadCount) threads")
      }
    }
  }

  /// Random shapes (seeded: m, n up to 40 and 70, k up to 1100, odd and even, every transpose,
  /// special values in half of them): the dot-product path (emulated instruction) and the
  /// portable path (bf16 and f16) each bit for bit against their models.
  @Test func randomShapesMatchTheModels() throws {
    try #require(HalfGemm.available && JitGemm.enabled)
    var state: UInt64 = 0x5EED
    func draw(_ range: ClosedRange<Int>) -> Int {
      state ^= state << 13; state ^= state >> 7; state ^= state << 17
      return range.lowerBound + Int(state % UInt64(range.count))
    }
    let pool = ThreadPool(threads: 2)
    for trial in 0..<24 {
      let m = draw(1...40), n = draw(1...70), k = trial % 4 == 0 ? draw(513...1100) : draw(1...130)
      let ta = draw(0...1) == 1, tb = draw(0...1) == 1, specials = trial % 2 == 1
      let shape = "trial \(trial): \(m)x\(n)x\(k) ta \(ta) tb \(tb) specials \(specials)"
      let a = Self.values(m * k, .bf16, seed: 100 + trial, specials: specials), b = Self.values(k * n, .bf16, seed: 200 + trial, specials: specials)
      var c = [Float](repeating: .nan, count: m * n)
      a.withUnsafeBufferPointer { pa in b.withUnsafeBufferPointer { pb in c.withUnsafeMutableBufferPointer { pc in
        HalfGemm.dotGemm(transposeA: ta, transposeB: tb, m: m, n: n, k: k, a: pa.baseAddress!, lda: ta ? m : k,
                         b: pb.baseAddress!, ldb: tb ? k : n, c: pc.baseAddress!, ldc: n, kernel: Self.emulatedKernel)
      } } }
      #expect(zip(c, Self.dotModel(a, b, m: m, n: n, k: k, ta: ta, tb: tb)).allSatisfy(Self.sameBits), "dot products, \(shape)")
      for dtype in [DType.bf16, .f16] {
        let x = dtype == .bf16 ? a : Self.values(m * k, .f16, seed: 300 + trial, specials: specials)
        let y = dtype == .bf16 ? b : Self.values(k * n, .f16, seed: 400 + trial, specials: specials)
        var h = [UInt16](repeating: 0xFFFF, count: m * n)
        x.withUnsafeBytes { px in y.withUnsafeBytes { py in h.withUnsafeMutableBytes { ph in
          HalfGemm.gemm(input: dtype, output: dtype, transposeA: ta, transposeB: tb, m: m, n: n, k: k, a: px.baseAddress!, lda: ta ? m : k,
                        b: py.baseAddress!, ldb: tb ? k : n, c: ph.baseAddress!, pool: pool, path: .portable)
        } } }
        let want = Self.portableModel(x, y, dtype, m: m, n: n, k: k, ta: ta, tb: tb).map { Self.narrow($0, dtype) }
        #expect(zip(h, want).allSatisfy { Self.sameHalfBits($0, $1, dtype) }, "portable \(dtype), \(shape)")
      }
    }
  }

  /// The JIT's vdpbf16ps microkernel through HalfGemm, against the instruction model (only on a
  /// CPU with AVX512-BF16), every layout; at two threads the larger shapes split by rows (one
  /// shared B̃ per block: two blocks of n, three of k with an odd last one) or by columns.
  @Test(.enabled(if: HalfGemmKernels.hostHasDotProducts, "the host has no AVX512-BF16"), arguments: [false, true], [false, true])
  func dotProductKernelMatchesTheInstructionModel(_ ta: Bool, _ tb: Bool) throws {
    try #require(HalfGemm.routines?.dotMicrokernel != nil)
    let pools = [ThreadPool(threads: 1), ThreadPool(threads: 2)]
    for (index, (m, n, k)) in (Self.shapes + [(200, 130, 300), (150, 2100, 37), (130, 40, 1031), (20, 700, 600)]).enumerated() {
      let a = Self.values(m * k, .bf16, seed: m + 13 * k, specials: index % 2 == 0)
      let b = Self.values(k * n, .bf16, seed: n + 17 * k, specials: index % 2 == 0)
      let want = Self.dotModel(a, b, m: m, n: n, k: k, ta: ta, tb: tb)
      for pool in pools {
        var c = [Float](repeating: .nan, count: m * n)
        a.withUnsafeBytes { pa in b.withUnsafeBytes { pb in c.withUnsafeMutableBytes { pc in
          HalfGemm.gemm(input: .bf16, output: .f32, transposeA: ta, transposeB: tb, m: m, n: n, k: k, a: pa.baseAddress!, lda: ta ? m : k,
                        b: pb.baseAddress!, ldb: tb ? k : n, c: pc.baseAddress!, pool: pool, path: .dotProducts)
        } } }
        #expect(zip(c, want).allSatisfy(Self.sameBits), "\(m)x\(n)x\(k) ta \(ta) tb \(tb), \(pool.threadCount) threads")
      }
    }
  }

  /// The dot-product microkernel compiles for Zen 4 to vdpbf16ps on ymm registers: twelve per
  /// pair of k, unrolled four times plus the remainder loop.
  @Test func dotProductKernelCompilesToVdpbf16ps() throws {
    let assembly = try HalfGemmKernels.microkernelAssembly()
    let dots = assembly.split(separator: "\n").filter { $0.contains("vdpbf16ps") }
    #expect(dots.count == 12 * 5, "\(dots.count) vdpbf16ps")
    #expect(dots.allSatisfy { $0.contains("%ymm") })
  }

  /// The JIT-compiled roundings equal the interpreter's (`bfloat16Bits`, Float16) on random bit
  /// patterns, ties, NaN, infinities and subnormals.
  @Test func conversionsRoundAsTheInterpreterDoes() throws {
    let routines = try #require(HalfGemm.routines)
    var state: UInt64 = 12345
    var floats: [Float] = [0, -0.0, .infinity, -.infinity, .nan, -.nan, 65504, 65520, 65519.99, 1 + 1.0 / 256, 1 + 3.0 / 256,
                           Float.leastNonzeroMagnitude, Float.leastNormalMagnitude, 5.9604645e-8, 2.9802322e-8, 3.4e38]
    for _ in 0..<10_000 {
      state ^= state << 13; state ^= state >> 7; state ^= state << 17
      floats.append(Float(bitPattern: UInt32(truncatingIfNeeded: state)))
    }
    for dtype in [DType.bf16, .f16] {
      var halves = [UInt16](repeating: 0, count: floats.count)
      floats.withUnsafeBufferPointer { f in halves.withUnsafeMutableBufferPointer { h in
        (dtype == .bf16 ? routines.narrowBF16 : routines.narrowF16!)(f.count, f.baseAddress!, h.baseAddress!)
      } }
      for (x, h) in zip(floats, halves) {
        #expect(Self.sameHalfBits(h, Self.narrow(x, dtype), dtype), "\(dtype) rounding of \(x) (\(x.bitPattern))")
      }
    }
  }

  /// matmul on f16 and bf16 runs compiled (no interpreted op), plain, transposed, batched, with
  /// a fused epilogue, and summed over a batch: bit for bit the portable model where the host lacks the dot products,
  /// and within one half ulp (plus the f32 sum's error) of the interpreter, which sums in f64 and
  /// rounds once.
  @Test(arguments: [DType.bf16, .f16])
  func halfMatmulRunsCompiled(_ dtype: DType) throws {
    let module = try Parser.parseAndVerify("""
      module @m {
        func @plain(%a: \(dtype)[B, 40], %b: \(dtype)[40, 24]) -> \(dtype)[B, 24] {
          %c = matmul %a, %b : \(dtype)[B, 24]
          return %c
        }
        func @transposed(%a: \(dtype)[40, B], %b: \(dtype)[24, 40]) -> \(dtype)[B, 24] {
          %c = matmul %a, %b {transpose_a = true, transpose_b = true} : \(dtype)[B, 24]
          return %c
        }
        func @batched(%a: \(dtype)[2, B, 40], %b: \(dtype)[2, 40, 24]) -> \(dtype)[2, B, 24] {
          %c = matmul %a, %b : \(dtype)[2, B, 24]
          return %c
        }
        func @epilogue(%a: \(dtype)[B, 40], %b: \(dtype)[40, 24], %bias: \(dtype)[24]) -> \(dtype)[B, 24] {
          %c = matmul %a, %b : \(dtype)[B, 24]
          %d = add %c, %bias : \(dtype)[B, 24]
          %r = relu %d : \(dtype)[B, 24]
          return %r
        }
        func @summed(%a: \(dtype)[2, B, 40], %b: \(dtype)[2, B, 24]) -> \(dtype)[40, 24] {
          %c = matmul %a, %b {transpose_a = true} : \(dtype)[2, 40, 24]
          %s = reduce_sum %c {axes = [0]} : \(dtype)[40, 24]
          return %s
        }
      }
      """)
    let ulp = dtype == .f16 ? 1.0 / 1024 : 1.0 / 128
    for name in ["plain", "transposed", "batched", "epilogue", "summed"] {
      let executable = try Executable(module: module, function: name)
      #expect(executable.statistics.interpretedOpCount == 0, "\(name): \(executable.statistics.fallbackReasons)")
      // A half matmul summed over its batch stays a matmul and a reduction (Compiler.summedOverBatch).
      // A gemm epilogue (bias, ReLU) is one kernel reading the half product.
      #expect(executable.statistics.gemms == 1 && executable.statistics.kernels == (name == "summed" || name == "epilogue" ? 1 : 0),
              "\(name): \(executable.statistics.gemms) GEMMs, \(executable.statistics.kernels) kernels")
      for rows in [1, 9, 70] {
        let types = module.function(named: name)!.arguments.map { module.function(named: name)!.type(of: $0) }
        let inputs = types.enumerated().map { (i, t) -> Tensor in
          let shape = t.dims.map { $0.staticSize ?? rows }
          let bits = Self.values(shape.reduce(1, *), dtype, seed: rows * 10 + i)
          return Tensor(dtype, shape: shape, floats: bits.map { Double(Self.widen($0, dtype)) })
        }
        let got = try executable.run(inputs)[0].doubles
        let expected = try Interpreter(module: module).run(name, inputs)[0].doubles
        // f32 sums rounded once to the half type against f64 sums rounded once: at most one
        // half ulp apart unless the sum cancels (these inputs have mixed signs; the bound is
        // relative to the sum of magnitudes, which the f32 sum's error is bounded by).
        let magnitudes = try Interpreter(module: module).run(name, inputs.map { t in
          Tensor(dtype, shape: t.shape, floats: t.doubles.map { abs($0) }) })[0].doubles
        // Summed: two products, each within that bound, summed and rounded again.
        let slack = name == "summed" || name == "epilogue" ? ulp : 1e-5
        for i in got.indices {
          #expect(abs(got[i] - expected[i]) <= ulp * abs(expected[i]) + slack * magnitudes[i],
                  "\(name) \(rows) rows element \(i): \(got[i]) vs \(expected[i])")
        }
        if name == "plain" && (dtype == .f16 || HalfGemm.bf16Path == .portable) {
          let a = inputs[0].doubles.map { Self.narrow(Float($0), dtype) }, b = inputs[1].doubles.map { Self.narrow(Float($0), dtype) }
          let want = Self.portableModel(a, b, dtype, m: rows, n: 24, k: 40, ta: false, tb: false).map { Double(Self.widen(Self.narrow($0, dtype), dtype)) }
          #expect(got == want, "\(name) \(rows) rows: the portable model, bit for bit (\(zip(got, want).filter { $0 != $1 }.count) differ)")
        }
      }
    }
  }
}
