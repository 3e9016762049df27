// GemmKernels — the machine code of ttfc's own f32 GEMM (TTRuntime/JitGemm.swift holds the loops
// around it), emitted as LLVM IR and JIT-compiled for the host CPU once per process:
//
// - the microkernel: C[6, 16] (+)= Ã[6, kc] B̃[kc, 16] from packed panels;
// - four packing routines, which copy a block of op(A) into 6-row panels (Ã: for each k, the six
//   values of the panel's rows) and of op(B) into 16-column panels (B̃: for each k, sixteen
//   values), for A and B stored plain or transposed. They handle whole panels; JitGemm packs the
//   zero-padded edge panels itself.
//
// Why a 6x16 tile: on AVX2 with two FMA units (Zen 3, Haswell and later) the 6x16 tile keeps 12
// vector accumulators plus two B vectors and one broadcast in the 16 ymm registers. Each step of
// k issues 12 FMAs against 2 vector loads and 6 broadcasts, so the FMA units, not the loads,
// bound it; 12 independent accumulators cover the FMA latency (4 cycles x 2 units = 8 in
// flight). Measured alone on packed panels in L1 it runs at 90-96 GFLOP/s per core on this
// machine's Zen 3, the FMA units' peak.
//
// Each accumulator sums its products in k order with one rounding per fused multiply-add; the
// tile is then stored, or added to what C holds (`accumulate` != 0: the panels of a later block
// of k). The k loop is unrolled four times by hand (LLVM's unroller is off in our pipeline); the
// six rows of C are prefetched for writing before the loop so their misses overlap the FMAs.
//
// Why packing is emitted here too: the copies that transpose (a plain A's rows, a transposed B's
// rows, into k-major panels) are 8x8 register transposes (three rounds of two-input shuffles),
// which Swift's SIMD types do not express and which need the host's AVX2 to be fast; written as
// scalar strided stores in Swift they took twice OpenBLAS's packing time.

import CLLVM
import TTSupport

public enum GemmKernels {
  /// Rows and columns of the C tile one microkernel call computes.
  public static let rows = 6
  public static let columns = 16

  /// (kc, packed A panel, packed B panel, C, C's row stride, accumulate).
  public typealias Microkernel = @convention(c) (Int, UnsafePointer<Float>, UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int, Int) -> Void
  /// (kc, first element of the block, row stride of the stored matrix, panel): one whole panel.
  public typealias PanelPacker = @convention(c) (Int, UnsafePointer<Float>, Int, UnsafeMutablePointer<Float>) -> Void
  /// (kc, panel count, first element, row stride, first panel): whole panels of a plain B or a
  /// transposed A.
  public typealias BlockPacker = @convention(c) (Int, Int, UnsafePointer<Float>, Int, UnsafeMutablePointer<Float>) -> Void

  /// The element type a packer reads: f32, or a half type it widens to f32 as it packs.
  public enum Source: Sendable {
    case f32, bf16, f16
    public var byteSize: Int { self == .f32 ? 4 : 2 }
    var suffix: String { switch self { case .f32: ""; case .bf16: "_bf16"; case .f16: "_f16" } }
  }
  /// The packers over untyped operands (PanelPacker and BlockPacker with the source's element type).
  public typealias RawPanelPacker = @convention(c) (Int, UnsafeRawPointer, Int, UnsafeMutablePointer<Float>) -> Void
  public typealias RawBlockPacker = @convention(c) (Int, Int, UnsafeRawPointer, Int, UnsafeMutablePointer<Float>) -> Void

  /// The four packers for operands of one element type (JitGemm packs through these).
  public struct Packers: @unchecked Sendable {
    public let source: Source
    public let plainA: RawPanelPacker
    public let transposedA: RawBlockPacker
    public let plainB: RawBlockPacker
    public let transposedB: RawPanelPacker

    /// The packers from their addresses (in the order plain A, transposed A, plain B, transposed B).
    public init(source: Source, addresses: ArraySlice<UInt>) {
      let a = Array(addresses)
      self.source = source
      plainA = unsafeBitCast(a[0], to: RawPanelPacker.self)
      transposedA = unsafeBitCast(a[1], to: RawBlockPacker.self)
      plainB = unsafeBitCast(a[2], to: RawBlockPacker.self)
      transposedB = unsafeBitCast(a[3], to: RawPanelPacker.self)
    }
  }

  /// The symbols of the four packers reading `source` (the f32 ones carry no suffix).
  public static func packerSymbols(_ source: Source) -> [String] {
    [names.plainA, names.transposedA, names.plainB, names.transposedB].map { $0 + source.suffix }
  }

  /// Emits the four packers reading `source` into `module` (HalfGemmKernels' module holds the
  /// half ones, so the f32 GEMM's routines compile as before).
  public static func emitPackers(into module: KernelModule, source: Source) {
    var emitter = Emitter(ir: IRBuilder(module))
    emitter.source = source
    emitter.packPlainA()
    emitter.packTransposedA()
    emitter.packPlainB()
    emitter.packTransposedB()
  }

  public struct Entries: @unchecked Sendable {
    public let microkernel: Microkernel
    /// The f32 packers below, over untyped operands.
    public let packers: Packers
    /// A stored [m, k]: six rows of A, k contiguous in each.
    public let packPlainA: PanelPacker
    /// A stored [k, m]: for each k, each panel's six values are contiguous.
    public let packTransposedA: BlockPacker
    /// B stored [k, n]: for each k, a panel's sixteen values are contiguous.
    public let packPlainB: BlockPacker
    /// B stored [n, k]: sixteen rows of B, k contiguous in each.
    public let packTransposedB: PanelPacker
  }

  static let names = (microkernel: "ttfc_sgemm_6x16", plainA: "ttfc_sgemm_pack_a", transposedA: "ttfc_sgemm_pack_at",
                      plainB: "ttfc_sgemm_pack_b", transposedB: "ttfc_sgemm_pack_bt")

  /// The compiled routines, linked into the process's JIT on first use. The object file goes to
  /// the kernel disk cache (KernelCache.object) under the IR's text, so later processes only
  /// link it.
  public static func compiled() throws(CodegenError) -> Entries {
    try cache.withLock { () throws(CodegenError) -> Entries in
      if let entries = cachedEntries { return entries }
      let module = KernelModule(name: "ttfc_sgemm")
      emit(into: module)
      try module.verify()
      let key = "ttfc-sgemm-routines\n" + module.text
      let object = try KernelCache.shared.object(key: key, name: names.microkernel) { () throws(CodegenError) -> [UInt8] in
        // A target machine of its own: this runs on a thread of its own (compileInBackground)
        // while kernels compile, and LLVM's code generation is not safe on one machine from
        // several threads (a half GEMM's routines, emitted so beside another module, lost
        // their symbols).
        let machine = try HostTargetMachine()
        machine.configure(module.module)
        // The IR is already vectorized and unrolled as intended; only redundant address
        // arithmetic needs removing. With the full -O3 pipeline compiling took 110 ms, for the same
        // speed on W4's GEMMs; with this one about 40 ms, most of it code generation.
        try machine.optimize(module.module, pipeline: "function(early-cse,instcombine,simplifycfg)")
        return try machine.object(of: module.module)
      }
      let symbols = [names.microkernel, names.plainA, names.transposedA, names.plainB, names.transposedB]
      let addresses = try JIT.shared.addObject(object, symbols: symbols)
      let entries = Entries(microkernel: unsafeBitCast(addresses[0], to: Microkernel.self),
                            packers: Packers(source: .f32, addresses: addresses[1...4]),
                            packPlainA: unsafeBitCast(addresses[1], to: PanelPacker.self),
                            packTransposedA: unsafeBitCast(addresses[2], to: BlockPacker.self),
                            packPlainB: unsafeBitCast(addresses[3], to: BlockPacker.self),
                            packTransposedB: unsafeBitCast(addresses[4], to: PanelPacker.self))
      cachedEntries = entries
      return entries
    }
  }
  private static let cache = NSLockish()
  nonisolated(unsafe) private static var cachedEntries: Entries?

  /// The routines' LLVM IR text before optimization (for tests and inspection).
  public static func llvmText() throws(CodegenError) -> String {
    let module = KernelModule(name: "ttfc_sgemm")
    emit(into: module)
    try module.verify()
    return module.text
  }

  static func emit(into module: KernelModule) {
    let emitter = Emitter(ir: IRBuilder(module))
    emitter.microkernel()
    emitter.packPlainA()
    emitter.packTransposedA()
    emitter.packPlainB()
    emitter.packTransposedB()
  }

  enum EmitterTuning {
    /// Rows ahead that the plain-B packer prefetches (0, 4 and 8 measured within the host's
    /// noise on W4's GEMMs, 4 ahead of 0 in most alternating runs).
    static let packingPrefetchRows = 4
  }

  /// Emission helpers over one module: 8-float vectors, unaligned loads and stores, shuffles.
  struct Emitter {
    let ir: IRBuilder
    /// What the packers read (the microkernel always reads packed f32).
    var source: Source = .f32
    var vector: LLVMTypeRef { LLVMVectorType(ir.f32, 8)! }

    init(ir: IRBuilder) { self.ir = ir }

    var sourceElement: LLVMTypeRef {
      switch source { case .f32: ir.f32; case .bf16: ir.i16; case .f16: ir.f16 }
    }
    /// An element of the operand being packed.
    func sourceAt(_ base: LLVMValueRef, _ offset: LLVMValueRef) -> LLVMValueRef { ir.gep(sourceElement, base, offset) }
    func sourceAt(_ base: LLVMValueRef, _ offset: Int) -> LLVMValueRef { ir.gep(sourceElement, base, ir.int(offset)) }
    /// `lanes` elements of the operand from `address` as f32 (1: a scalar): half values are
    /// widened exactly (bf16: the bits shifted up; f16: F16C's conversion).
    func loadSource(_ address: LLVMValueRef, lanes: Int = 8) -> LLVMValueRef {
      let type = lanes == 1 ? sourceElement : LLVMVectorType(sourceElement, UInt32(lanes))!
      let value = ir.load(type, address)
      if lanes > 1 { LLVMSetAlignment(value, UInt32(source.byteSize)) }
      let floats = lanes == 1 ? ir.f32 : LLVMVectorType(ir.f32, UInt32(lanes))!
      switch source {
      case .f32: return value
      case .f16: return ir.fpext(value, floats)
      case .bf16:
        let words = lanes == 1 ? ir.i32 : LLVMVectorType(ir.i32, UInt32(lanes))!
        var sixteen = ir.int(16, ir.i32)
        if lanes > 1 {
          var elements: [LLVMValueRef?] = Array(repeating: sixteen, count: lanes)
          sixteen = elements.withUnsafeMutableBufferPointer { LLVMConstVector($0.baseAddress, UInt32(lanes)) }
        }
        return ir.bitcast(ir.shl(ir.zext(value, words), sixteen), floats)
      }
    }
    func loadSourceScalar(_ address: LLVMValueRef) -> LLVMValueRef { loadSource(address, lanes: 1) }

    /// A function with the host CPU's attributes, its pointer parameters (by index) `noalias`,
    /// the builder placed in its entry block; returns its parameters.
    func function(_ name: String, _ parameters: [LLVMTypeRef], noalias: [Int]) -> [LLVMValueRef] {
      var params: [LLVMTypeRef?] = parameters
      let fnType = params.withUnsafeMutableBufferPointer { LLVMFunctionType(ir.void, $0.baseAddress, UInt32(parameters.count), 0) }
      let fn = LLVMAddFunction(ir.module, name, fnType)!
      let machine = JIT.shared.machine
      for (key, value) in [("target-cpu", machine.cpu), ("target-features", machine.features)] {
        let attribute = LLVMCreateStringAttribute(ir.context, key, UInt32(key.utf8.count), value, UInt32(value.utf8.count))
        LLVMAddAttributeAtIndex(fn, LLVMAttributeIndex(bitPattern: -1), attribute)
      }
      let kind = LLVMGetEnumAttributeKindForName("noalias", 7)
      for index in noalias { LLVMAddAttributeAtIndex(fn, LLVMAttributeIndex(index + 1), LLVMCreateEnumAttribute(ir.context, kind, 0)) }
      LLVMPositionBuilderAtEnd(ir.b, LLVMAppendBasicBlockInContext(ir.context, fn, "entry"))
      return (0..<parameters.count).map { LLVMGetParam(fn, UInt32($0))! }
    }

    func at(_ base: LLVMValueRef, _ offset: LLVMValueRef) -> LLVMValueRef { ir.gep(ir.f32, base, offset) }
    func at(_ base: LLVMValueRef, _ offset: Int) -> LLVMValueRef { ir.gep(ir.f32, base, ir.int(offset)) }

    func load(_ address: LLVMValueRef) -> LLVMValueRef {
      let load = ir.load(vector, address)
      LLVMSetAlignment(load, 4)
      return load
    }
    func store(_ value: LLVMValueRef, _ address: LLVMValueRef) {
      let store = LLVMBuildStore(ir.b, value, address)!
      LLVMSetAlignment(store, 4)
    }
    func shuffle(_ a: LLVMValueRef, _ b: LLVMValueRef, _ lanes: [Int]) -> LLVMValueRef {
      var mask: [LLVMValueRef?] = lanes.map { ir.int($0, ir.i32) }
      let constant = mask.withUnsafeMutableBufferPointer { LLVMConstVector($0.baseAddress, UInt32(lanes.count)) }
      return LLVMBuildShuffleVector(ir.b, a, b, constant, "")!
    }
    func splat(_ scalar: LLVMValueRef) -> LLVMValueRef {
      let undef = LLVMGetUndef(vector)!
      let inserted = LLVMBuildInsertElement(ir.b, undef, scalar, ir.int(0, ir.i32), "")!
      return shuffle(inserted, undef, Array(repeating: 0, count: 8))
    }

    /// Columns of an 8x8 block given its rows: three rounds of two-input shuffles (interleave
    /// pairs of rows, then pairs of pairs, then the 128-bit halves).
    func transpose8x8(_ rows: [LLVMValueRef]) -> [LLVMValueRef] {
      let low = [0, 8, 1, 9, 4, 12, 5, 13], high = [2, 10, 3, 11, 6, 14, 7, 15]
      let pairLow = [0, 1, 8, 9, 4, 5, 12, 13], pairHigh = [2, 3, 10, 11, 6, 7, 14, 15]
      let halfLow = [0, 1, 2, 3, 8, 9, 10, 11], halfHigh = [4, 5, 6, 7, 12, 13, 14, 15]
      var a: [LLVMValueRef] = []
      for p in stride(from: 0, to: 8, by: 2) { a += [shuffle(rows[p], rows[p + 1], low), shuffle(rows[p], rows[p + 1], high)] }
      // a[0] = rows 0,1 interleaved at columns 0,1,4,5; a[1] at columns 2,3,6,7; likewise a[2..7].
      var b: [LLVMValueRef] = []
      for q in [0, 4] {
        b += [shuffle(a[q], a[q + 2], pairLow), shuffle(a[q], a[q + 2], pairHigh),
              shuffle(a[q + 1], a[q + 3], pairLow), shuffle(a[q + 1], a[q + 3], pairHigh)]
      }
      // b[0..3]: rows 0-3 at columns (0,4), (1,5), (2,6), (3,7); b[4..7]: rows 4-7 likewise.
      var columns = [LLVMValueRef?](repeating: nil, count: 8)
      for c in 0..<4 {
        columns[c] = shuffle(b[c], b[c + 4], halfLow)
        columns[c + 4] = shuffle(b[c], b[c + 4], halfHigh)
      }
      return columns.map { $0! }
    }

    func microkernel() {
      let rows = GemmKernels.rows, lanes = GemmKernels.columns / 8
      let p = function(names.microkernel, [ir.i64, ir.ptr, ir.ptr, ir.ptr, ir.i64, ir.i64], noalias: [1, 2, 3])
      let (kc, packedA, packedB, c, ldc, accumulate) = (p[0], p[1], p[2], p[3], p[4], p[5])
      let rowAddresses = (0..<rows).map { r in at(c, ir.mul(ldc, ir.int(r))) }
      for address in rowAddresses {
        for offset in [0, GemmKernels.columns - 1] {
          _ = ir.intrinsic("llvm.prefetch", [ir.ptr], [at(address, offset), ir.int(1, ir.i32), ir.int(3, ir.i32), ir.int(1, ir.i32)])
        }
      }
      /// One step of k: the accumulators after adding column k of Ã times row k of B̃.
      func step(_ k: LLVMValueRef, _ accumulators: [LLVMValueRef]) -> [LLVMValueRef] {
        let bRow = at(packedB, ir.mul(k, ir.int(GemmKernels.columns)))
        let bVectors = (0..<lanes).map { lane in load(at(bRow, 8 * lane)) }
        let aColumn = at(packedA, ir.mul(k, ir.int(rows)))
        var next = accumulators
        for r in 0..<rows {
          let broadcast = splat(ir.load(ir.f32, at(aColumn, r)))
          for lane in 0..<lanes {
            next[r * lanes + lane] = ir.intrinsic("llvm.fma", [vector], [broadcast, bVectors[lane], accumulators[r * lanes + lane]])
          }
        }
        return next
      }
      let initial = Array(repeating: LLVMConstNull(vector)!, count: rows * lanes)
      let unroll = 4
      let unrolledSteps = ir.sdiv(kc, ir.int(unroll))
      let afterUnrolled = ir.loop(from: ir.int(0), to: unrolledSteps, carrying: initial) { block, accumulators in
        var current = accumulators
        for u in 0..<unroll { current = step(ir.add(ir.mul(block, ir.int(unroll)), ir.int(u)), current) }
        return current
      }
      let final = ir.loop(from: ir.mul(unrolledSteps, ir.int(unroll)), to: kc, carrying: afterUnrolled) { k, accumulators in
        step(k, accumulators)
      }
      let adding = ir.icmp(LLVMIntNE, accumulate, ir.int(0))
      for r in 0..<rows {
        for lane in 0..<lanes {
          let address = at(rowAddresses[r], 8 * lane)
          let sum = ir.fadd(load(address), final[r * lanes + lane])
          store(ir.select(adding, sum, final[r * lanes + lane]), address)
        }
      }
      LLVMBuildRetVoid(ir.b)
    }

    /// Ã panel from six rows of a plain A: eight k at a time, the six rows (plus two ignored) are
    /// transposed and each column stored as eight floats at k*6, of which the last two are
    /// overwritten by the next column (the caller's buffer has two floats of slack at the end).
    func packPlainA() {
      let rows = GemmKernels.rows
      let p = function(names.plainA + self.source.suffix, [ir.i64, ir.ptr, ir.i64, ir.ptr], noalias: [1, 3])
      let (kc, source, lda, out) = (p[0], p[1], p[2], p[3])
      let rowStarts = (0..<rows).map { r in sourceAt(source, ir.mul(lda, ir.int(r))) }
      let blocks = ir.sdiv(kc, ir.int(8))
      ir.loop(from: ir.int(0), to: blocks) { block, _ in
        let k = ir.mul(block, ir.int(8))
        let loaded = rowStarts.map { loadSource(sourceAt($0, k)) }
        let columns = transpose8x8(loaded + [loaded[0], loaded[0]])
        for (j, column) in columns.enumerated() {
          store(column, at(out, ir.mul(ir.add(k, ir.int(j)), ir.int(rows))))
        }
        return []
      }
      ir.loop(from: ir.mul(blocks, ir.int(8)), to: kc) { k, _ in
        for r in 0..<rows {
          LLVMBuildStore(ir.b, loadSourceScalar(sourceAt(rowStarts[r], k)), at(out, ir.add(ir.mul(k, ir.int(rows)), ir.int(r))))
        }
        return []
      }
      LLVMBuildRetVoid(ir.b)
    }

    /// Ã panels from a transposed A, several at once: row k of A (the block's columns) is read
    /// left to right and its six-float pieces go to consecutive panels. Packing one panel at a
    /// time read six floats of each row, rows a page apart: a row's cache line then served
    /// about three panels but did not survive between them (addresses 4 KiB apart share an L1
    /// set), so every panel fetched it again.
    func packTransposedA() {
      packRowPieces(names.transposedA + source.suffix, width: GemmKernels.rows) { from, to in
        for r in 0..<GemmKernels.rows { LLVMBuildStore(ir.b, loadSourceScalar(sourceAt(from, r)), at(to, r)) }
      }
    }

    /// B̃ panels from a plain B: row k is read left to right and its sixteen-float pieces go to
    /// consecutive panels (each piece one cache line of its panel).
    func packPlainB() {
      packRowPieces(names.plainB + source.suffix, width: GemmKernels.columns) { from, to in
        store(loadSource(from), to)
        store(loadSource(sourceAt(from, 8)), at(to, 8))
      }
    }

    /// A packer (kc, panel count, first element, row stride, first panel) that reads each of kc
    /// rows left to right and copies its `width`-float pieces (`copy(from, to)`) to consecutive
    /// panels of kc x width floats. Rows are a page or more apart and the hardware prefetchers
    /// stop at pages, so each piece is also fetched a few rows ahead (the source is usually not
    /// in cache: a weight matrix last written by the previous step's update).
    func packRowPieces(_ name: String, width: Int, _ copy: (LLVMValueRef, LLVMValueRef) -> Void) {
      let p = function(name, [ir.i64, ir.i64, ir.ptr, ir.i64, ir.ptr], noalias: [2, 4])
      let (kc, panels, source, stride, out) = (p[0], p[1], p[2], p[3], p[4])
      let panelSize = ir.mul(kc, ir.int(width))
      ir.loop(from: ir.int(0), to: kc) { k, _ in
        let row = sourceAt(source, ir.mul(k, stride)), target = at(out, ir.mul(k, ir.int(width)))
        let rowAhead = sourceAt(row, ir.mul(stride, ir.int(EmitterTuning.packingPrefetchRows)))
        ir.loop(from: ir.int(0), to: panels) { q, _ in
          let from = sourceAt(row, ir.mul(q, ir.int(width))), to = at(target, ir.mul(q, panelSize))
          _ = ir.intrinsic("llvm.prefetch", [ir.ptr], [sourceAt(rowAhead, ir.mul(q, ir.int(width))), ir.int(0, ir.i32), ir.int(3, ir.i32), ir.int(1, ir.i32)])
          copy(from, to)
          return []
        }
        return []
      }
      LLVMBuildRetVoid(ir.b)
    }

    /// B̃ panel from sixteen rows of a transposed B: eight k at a time, two 8x8 transposes.
    func packTransposedB() {
      let width = GemmKernels.columns
      let p = function(names.transposedB + self.source.suffix, [ir.i64, ir.ptr, ir.i64, ir.ptr], noalias: [1, 3])
      let (kc, source, ldb, out) = (p[0], p[1], p[2], p[3])
      let rowStarts = (0..<width).map { s in sourceAt(source, ir.mul(ldb, ir.int(s))) }
      let blocks = ir.sdiv(kc, ir.int(8))
      ir.loop(from: ir.int(0), to: blocks) { block, _ in
        let k = ir.mul(block, ir.int(8))
        for half in 0..<2 {
          let columns = transpose8x8((0..<8).map { loadSource(sourceAt(rowStarts[8 * half + $0], k)) })
          for (j, column) in columns.enumerated() {
            store(column, at(out, ir.add(ir.mul(ir.add(k, ir.int(j)), ir.int(width)), ir.int(8 * half))))
          }
        }
        return []
      }
      ir.loop(from: ir.mul(blocks, ir.int(8)), to: kc) { k, _ in
        for s in 0..<width {
          LLVMBuildStore(ir.b, loadSourceScalar(sourceAt(rowStarts[s], k)), at(out, ir.add(ir.mul(k, ir.int(width)), ir.int(s))))
        }
        return []
      }
      LLVMBuildRetVoid(ir.b)
    }
  }
}
