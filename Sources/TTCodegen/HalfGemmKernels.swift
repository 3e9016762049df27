// HalfGemmKernels — the machine code of ttfc's half-precision GEMM (TTRuntime/HalfGemm.swift holds
// the loops around it), emitted as LLVM IR and JIT-compiled for the host once per process:
//
// - the f32 GEMM's four packers (GemmKernels) reading bf16 and f16 operands, widened to f32 as
//   they are packed (bf16: its bits shifted up; f16: F16C's vcvtph2ps), for the portable path;
// - two conversions over contiguous arrays: f32 rounded to bf16 and f16 (nearest, ties to even;
//   NaN stays NaN; f16 through F16C's vcvtps2ph), for half results;
// - with AVX512-BF16 (and VL) only: the dot-product microkernel C[6, 16] (+)= Ã B̃ over packed
//   pairs of k, one `vdpbf16ps` (256-bit) per row and half-tile per pair: each f32 lane adds two
//   bf16 products. Ã holds, per pair of k, one 32-bit word per row; B̃ sixteen per pair; in each
//   word the value of the pair's first k is the high half, which the instruction adds first
//   (Intel SDM: `srcdest += src1.bf16[2i+1] * src2.bf16[2i+1]; srcdest += src1.bf16[2i] * ...`,
//   each an f32 FMA with denormal inputs and results flushed to zero, round to nearest even,
//   MXCSR ignored), so each lane is a chain of FMAs in k order, as in the f32 microkernel.
//
// Why 6x16 on ymm: the f32 GEMM's tile geometry and edge handling carry over, and 12 independent
// accumulators cover up to 6 cycles of latency at two instructions per cycle. First run on a Zen 4
// on 2026-12-01 (bit for bit the instruction model); not tuned beyond the packers.

import CLLVM
import TTSupport

public enum HalfGemmKernels {
  /// Rows and columns of the C tile of the dot-product microkernel.
  public static let rows = 6
  public static let columns = 16

  /// (pairs of k, packed Ã, packed B̃, C, C's row stride, accumulate).
  public typealias Microkernel = @convention(c) (Int, UnsafePointer<UInt32>, UnsafePointer<UInt32>, UnsafeMutablePointer<Float>, Int, Int) -> Void
  /// (count, f32 source, 16-bit destination).
  public typealias Narrow = @convention(c) (Int, UnsafePointer<Float>, UnsafeMutablePointer<UInt16>) -> Void

  public struct Entries: @unchecked Sendable {
    public let narrowBF16: Narrow
    /// nil on a CPU without F16C (no f16 GEMM there, as no f16 kernels).
    public let narrowF16: Narrow?
    /// The f32 GEMM's packers reading bf16 and f16 operands (widened as they are packed).
    public let bf16Packers: GemmKernels.Packers
    public let f16Packers: GemmKernels.Packers?
    /// The vdpbf16ps microkernel; nil when the host lacks AVX512-BF16.
    public let dotMicrokernel: Microkernel?
  }

  static let names = (narrowBF16: "ttfc_hgemm_narrow_bf16", narrowF16: "ttfc_hgemm_narrow_f16",
                      microkernel: "ttfc_bf16gemm_6x16")

  /// Whether the host CPU has the bf16 dot products (`avx512bf16` and `avx512vl`, as LLVM's host
  /// detection reports them).
  public static let hostHasDotProducts: Bool = {
    let features = Set(JIT.shared.machine.features.split(separator: ","))
    return features.contains("+avx512bf16") && features.contains("+avx512vl")
  }()

  /// Whether the host converts f16 in hardware (F16C); without it there are no f16 routines.
  public static let hostConvertsF16: Bool = JIT.shared.machine.features.split(separator: ",").contains("+f16c")

  /// The compiled routines, linked into the process's JIT on first use (object code cached on
  /// disk under the IR's text, like GemmKernels).
  public static func compiled() throws(CodegenError) -> Entries {
    try cache.withLock { () throws(CodegenError) -> Entries in
      if let entries = cachedEntries { return entries }
      // A target machine of its own: LLVM's code generation is not safe on one machine from
      // several threads (kernels compile in parallel on machines of their own, KernelCache).
      let machine = try HostTargetMachine()
      let withDot = hostHasDotProducts
      let module = KernelModule(name: "ttfc_hgemm")
      let withF16 = hostConvertsF16
      emit(into: module, cpu: machine.cpu, features: machine.features, microkernel: withDot, f16: withF16)
      try module.verify()
      let object = try KernelCache.shared.object(key: "ttfc-hgemm-routines\n" + module.text, name: names.narrowBF16) { () throws(CodegenError) -> [UInt8] in
        machine.configure(module.module)
        try machine.optimize(module.module, pipeline: "function(early-cse,instcombine,simplifycfg)")
        return try machine.object(of: module.module)
      }
      var symbols = [names.narrowBF16] + GemmKernels.packerSymbols(.bf16)
      if withF16 { symbols += [names.narrowF16] + GemmKernels.packerSymbols(.f16) }
      if withDot { symbols.append(names.microkernel) }
      let addresses = try JIT.shared.addObject(object, symbols: symbols)
      let entries = Entries(narrowBF16: unsafeBitCast(addresses[0], to: Narrow.self),
                            narrowF16: withF16 ? unsafeBitCast(addresses[5], to: Narrow.self) : nil,
                            bf16Packers: GemmKernels.Packers(source: .bf16, addresses: addresses[1...4]),
                            f16Packers: withF16 ? GemmKernels.Packers(source: .f16, addresses: addresses[6...9]) : nil,
                            dotMicrokernel: withDot ? unsafeBitCast(addresses[addresses.count - 1], to: Microkernel.self) : nil)
      cachedEntries = entries
      return entries
    }
  }
  private static let cache = NSLockish()
  nonisolated(unsafe) private static var cachedEntries: Entries?

  /// The dot-product microkernel's machine code for a CPU that has AVX512-BF16 (by default Zen 4),
  /// whatever the host: for tests and inspection on hosts that cannot run it.
  public static func microkernelAssembly(cpu: String = "znver4", features: String = "+avx512f,+avx512vl,+avx512bw,+avx512bf16,+avx2,+fma,+f16c") throws(CodegenError) -> String {
    let module = KernelModule(name: "ttfc_bf16gemm")
    emit(into: module, cpu: cpu, features: features, microkernel: true, f16: false, conversions: false)
    try module.verify()
    let machine = try HostTargetMachine()
    machine.configure(module.module)
    try machine.optimize(module.module, pipeline: "function(early-cse,instcombine,simplifycfg)")
    return try machine.assembly(of: module.module)
  }

  static func emit(into module: KernelModule, cpu: String, features: String, microkernel: Bool, f16: Bool, conversions: Bool = true) {
    let emitter = Emitter(ir: IRBuilder(module), cpu: cpu, features: features)
    if conversions {
      emitter.narrowBF16()
      GemmKernels.emitPackers(into: module, source: .bf16)
      if f16 {
        emitter.narrowF16()
        GemmKernels.emitPackers(into: module, source: .f16)
      }
    }
    if microkernel { emitter.dotMicrokernel() }
  }

  struct Emitter {
    let ir: IRBuilder
    let cpu: String
    let features: String
    static let width = 16   // elements per vector of the conversions

    func function(_ name: String, _ parameters: [LLVMTypeRef], noalias: [Int]) -> [LLVMValueRef] {
      var params: [LLVMTypeRef?] = parameters
      let fnType = params.withUnsafeMutableBufferPointer { LLVMFunctionType(ir.void, $0.baseAddress, UInt32(parameters.count), 0) }
      let fn = LLVMAddFunction(ir.module, name, fnType)!
      for (key, value) in [("target-cpu", cpu), ("target-features", features)] {
        let attribute = LLVMCreateStringAttribute(ir.context, key, UInt32(key.utf8.count), value, UInt32(value.utf8.count))
        LLVMAddAttributeAtIndex(fn, LLVMAttributeIndex(bitPattern: -1), attribute)
      }
      let kind = LLVMGetEnumAttributeKindForName("noalias", 7)
      for index in noalias { LLVMAddAttributeAtIndex(fn, LLVMAttributeIndex(index + 1), LLVMCreateEnumAttribute(ir.context, kind, 0)) }
      LLVMPositionBuilderAtEnd(ir.b, LLVMAppendBasicBlockInContext(ir.context, fn, "entry"))
      return (0..<parameters.count).map { LLVMGetParam(fn, UInt32($0))! }
    }

    func load(_ type: LLVMTypeRef, _ address: LLVMValueRef) -> LLVMValueRef {
      let load = ir.load(type, address)
      LLVMSetAlignment(load, 2)
      return load
    }
    func store(_ value: LLVMValueRef, _ address: LLVMValueRef) {
      let store = LLVMBuildStore(ir.b, value, address)!
      LLVMSetAlignment(store, 2)
    }

    /// A conversion routine (count, source, destination): vectors of 16 elements, then one at a
    /// time; `convert` maps a value of `from` (vector or scalar) to `to`'s.
    func conversion(_ name: String, from: LLVMTypeRef, to: LLVMTypeRef, _ convert: (LLVMValueRef, Int) -> LLVMValueRef) {
      let p = function(name, [ir.i64, ir.ptr, ir.ptr], noalias: [1, 2])
      let (count, source, destination) = (p[0], p[1], p[2])
      let w = Self.width
      let vectors = ir.sdiv(count, ir.int(w))
      ir.loop(from: ir.int(0), to: vectors) { v, _ in
        let i = ir.mul(v, ir.int(w))
        let value = load(LLVMVectorType(from, UInt32(w)), ir.gep(from, source, i))
        store(convert(value, w), ir.gep(to, destination, i))
        return []
      }
      ir.loop(from: ir.mul(vectors, ir.int(w)), to: count) { i, _ in
        store(convert(load(from, ir.gep(from, source, i)), 1), ir.gep(to, destination, i))
        return []
      }
      LLVMBuildRetVoid(ir.b)
    }

    func type(_ scalar: LLVMTypeRef, _ lanes: Int) -> LLVMTypeRef { lanes == 1 ? scalar : LLVMVectorType(scalar, UInt32(lanes))! }
    func splat(_ value: Int, _ scalar: LLVMTypeRef, _ lanes: Int) -> LLVMValueRef {
      let constant = ir.int(value, scalar)
      guard lanes > 1 else { return constant }
      var elements: [LLVMValueRef?] = Array(repeating: constant, count: lanes)
      return elements.withUnsafeMutableBufferPointer { LLVMConstVector($0.baseAddress, UInt32(lanes)) }
    }

    /// f32 -> bf16, to nearest, ties to even: add 0x7FFF plus the lowest kept bit and drop the low
    /// half; a NaN keeps its high half (a quiet NaN stays one), as `bfloat16Bits` does.
    func narrowBF16() {
      conversion(names.narrowBF16, from: ir.i32, to: ir.i16) { bits, lanes in
        let lowestKept = ir.and(ir.lshr(bits, splat(16, ir.i32, lanes)), splat(1, ir.i32, lanes))
        let rounded = ir.add(ir.add(bits, splat(0x7FFF, ir.i32, lanes)), lowestKept)
        let magnitude = ir.and(bits, splat(0x7FFF_FFFF, ir.i32, lanes))
        let isNaN = ir.icmp(LLVMIntUGT, magnitude, splat(0x7F80_0000, ir.i32, lanes))
        return ir.trunc(ir.lshr(ir.select(isNaN, bits, rounded), splat(16, ir.i32, lanes)), type(ir.i16, lanes))
      }
    }

    /// f32 -> f16, to nearest, ties to even (F16C's conversion under the default rounding mode).
    func narrowF16() {
      conversion(names.narrowF16, from: ir.f32, to: ir.f16) { value, lanes in ir.fptrunc(value, type(ir.f16, lanes)) }
    }

    /// C[6, 16] (+)= Ã B̃ over `pairs` pairs of k (see the header). The accumulators start at
    /// zero; at the end they are stored, or added to C (`accumulate` != 0).
    func dotMicrokernel() {
      let rows = HalfGemmKernels.rows, lanes = HalfGemmKernels.columns / 8
      let name = "llvm.x86.avx512bf16.dpbf16ps.256"
      let id = LLVMLookupIntrinsicID(name, name.utf8.count)
      let intrinsicType = LLVMIntrinsicGetType(ir.context, id, nil, 0)!
      var parameterTypes = [LLVMTypeRef?](repeating: nil, count: 3)
      parameterTypes.withUnsafeMutableBufferPointer { LLVMGetParamTypes(intrinsicType, $0.baseAddress) }
      let pairType = parameterTypes[1]!   // <16 x bfloat> in LLVM 19 (<8 x i32> before)
      let floats = LLVMVectorType(ir.f32, 8)!, words = LLVMVectorType(ir.i32, 8)!
      let fn = LLVMGetIntrinsicDeclaration(ir.module, id, nil, 0)

      let p = function(names.microkernel, [ir.i64, ir.ptr, ir.ptr, ir.ptr, ir.i64, ir.i64], noalias: [1, 2, 3])
      let (pairs, packedA, packedB, c, ldc, accumulate) = (p[0], p[1], p[2], p[3], p[4], p[5])
      func dot(_ accumulator: LLVMValueRef, _ x: LLVMValueRef, _ y: LLVMValueRef) -> LLVMValueRef {
        var arguments: [LLVMValueRef?] = [accumulator, x, y]
        return arguments.withUnsafeMutableBufferPointer { LLVMBuildCall2(ir.b, intrinsicType, fn, $0.baseAddress, 3, "") }
      }
      func step(_ q: LLVMValueRef, _ accumulators: [LLVMValueRef]) -> [LLVMValueRef] {
        let bRow = ir.gep(ir.i32, packedB, ir.mul(q, ir.int(HalfGemmKernels.columns)))
        let bVectors = (0..<lanes).map { lane -> LLVMValueRef in
          let load = ir.load(words, ir.gep(ir.i32, bRow, ir.int(8 * lane)))
          LLVMSetAlignment(load, 4)
          return ir.bitcast(load, pairType)
        }
        let aColumn = ir.gep(ir.i32, packedA, ir.mul(q, ir.int(rows)))
        var next = accumulators
        for r in 0..<rows {
          let word = ir.load(ir.i32, ir.gep(ir.i32, aColumn, ir.int(r)))
          let undef = LLVMGetUndef(words)!
          let inserted = LLVMBuildInsertElement(ir.b, undef, word, ir.int(0, ir.i32), "")!
          var mask: [LLVMValueRef?] = Array(repeating: ir.int(0, ir.i32), count: 8)
          let zeros = mask.withUnsafeMutableBufferPointer { LLVMConstVector($0.baseAddress, 8) }
          let broadcast = ir.bitcast(LLVMBuildShuffleVector(ir.b, inserted, undef, zeros, "")!, pairType)
          for lane in 0..<lanes { next[r * lanes + lane] = dot(accumulators[r * lanes + lane], broadcast, bVectors[lane]) }
        }
        return next
      }
      let initial = Array(repeating: LLVMConstNull(floats)!, count: rows * lanes)
      let unroll = 4
      let unrolledSteps = ir.sdiv(pairs, ir.int(unroll))
      let afterUnrolled = ir.loop(from: ir.int(0), to: unrolledSteps, carrying: initial) { block, accumulators in
        var current = accumulators
        for u in 0..<unroll { current = step(ir.add(ir.mul(block, ir.int(unroll)), ir.int(u)), current) }
        return current
      }
      let final = ir.loop(from: ir.mul(unrolledSteps, ir.int(unroll)), to: pairs, carrying: afterUnrolled) { q, accumulators in
        step(q, accumulators)
      }
      let adding = ir.icmp(LLVMIntNE, accumulate, ir.int(0))
      for r in 0..<rows {
        let row = ir.gep(ir.f32, c, ir.mul(ldc, ir.int(r)))
        for lane in 0..<lanes {
          let address = ir.gep(ir.f32, row, ir.int(8 * lane))
          let old = ir.load(floats, address)
          LLVMSetAlignment(old, 4)
          let sum = ir.fadd(old, final[r * lanes + lane])
          let store = LLVMBuildStore(ir.b, ir.select(adding, sum, final[r * lanes + lane]), address)!
          LLVMSetAlignment(store, 4)
        }
      }
      LLVMBuildRetVoid(ir.b)
    }
  }
}
