// KernelEmitter — turns a fusion region (or a single op) into one LLVM function, XLA-style
// "elemental" code generation: the kernel loops over the output's index space, and the value of
// each output element is built by asking each op for its element at an index, recursively —
// broadcasting, transposes, reshapes, slices and pads become index arithmetic, never copies.
//
// Reductions: a reduction that is the region's output runs an inner loop per output element. A
// reduction inside the region whose result is indexed by a prefix of the output index (row
// reductions: softmax's max and sum, layer norm's means) is computed once per row, before the loop
// over the rest of the row, and reused for every element of the row. Anything else is still
// correct (computed where it is needed) but may be recomputed.
//
// Elementwise kernels mark their innermost loop parallel (no dependence between iterations
// through memory), which holds whether the output is an operand's memory or disjoint from it.
//
// Streaming kernels (large function results) write their output with non-temporal stores, so
// they store each output element once: a value a row reduction reuses goes to a stack row.
//
// Kernel ABI: void kernel(ptr buffers, ptr symbols, i64 begin, i64 end). buffers[k] points at
// operand k's data, buffers[n + j] at output j (n operands); symbols[j] is the run-time size of the j-th symbolic
// dimension (KernelSignature.symbols); [begin, end) is the slice of the outermost output loop this
// call computes (the thread pool splits it). Tensors are dense row-major; i1 is stored as one byte.
//
// Floating-point semantics: elementwise ops are IEEE and correctly rounded except the VectorMath
// functions (error bounds there) and division by a row reduction's result, which may become a
// multiplication by the reciprocal (one extra rounding). Reductions may be reassociated (so they
// vectorize); they agree with the interpreter within rounding, not bit for bit.

import CLLVM
import TTIR

public struct KernelSignature: Hashable, Sendable {
  public var inputs: [TensorType]
  /// One type per result; a kernel with several results is elementwise and its results share
  /// one type (multi-output fusion: an optimizer writing a parameter and its slots in one pass).
  public var outputs: [TensorType]
  public var symbols: [String]
  public init(inputs: [TensorType], outputs: [TensorType], symbols: [String]) {
    self.inputs = inputs; self.outputs = outputs; self.symbols = symbols
  }
  /// The (first) output: the iteration space of the kernel's loops.
  public var output: TensorType { outputs[0] }
}

final class KernelEmitter {
  let ir: IRBuilder
  let body: Function
  let signature: KernelSignature
  var buffers: [IRBuilder.V] = []
  var symbolValues: [String: IRBuilder.V] = [:]
  /// Memoized element values, one frame per loop scope (values of outer frames dominate inner code).
  var memo: [[MemoKey: IRBuilder.V]] = [[:]]
  var root = ValueID(0)
  var scalarArguments: [ValueID: IRBuilder.V] = [:]
  /// Values written into the output row while a row reduction runs, then read back from there.
  var storeWhileReducing = Set<ValueID>()
  var rowMaterialized = Set<ValueID>()

  struct MemoKey: Hashable {
    let value: ValueID
    let index: [UInt]
  }

  /// Streaming output: the caller promises a 64-byte aligned output that nothing in this
  /// executable reads back soon (a large function result). The output pointer is then declared
  /// aligned, every store to the output is final (values a row reduction reuses go to a stack
  /// row instead, `rowScratch`), and KernelCache marks the aligned vector stores non-temporal.
  let streamingOutput: Bool
  /// Stack row holding a materialized value (softmax's exp) in streaming kernels.
  var rowScratch: IRBuilder.V? = nil
  /// Elementwise kernels: the access group of their loads and stores (see `emit`).
  var parallelAccessGroup: LLVMMetadataRef? = nil
  /// Longest static row kept on the stack (32 KiB of f32: L1-sized).
  static let maxScratchRow = 8192
  /// Set when an op turns out to have no lowering while emitting (the allow-list in `supports`
  /// should have refused it): `emit` then throws `.unsupported` and the op runs on the
  /// interpreter, instead of the process trapping.
  var unlowered: String? = nil

  init(ir: IRBuilder, body: Function, signature: KernelSignature, streamingOutput: Bool = false) {
    self.ir = ir; self.body = body; self.signature = signature
    self.streamingOutput = streamingOutput && body.returnValues.count == 1
  }

  /// Whether the emitter can compile every op of `body` for these types.
  /// Most ops a kernel body may hold: the emitter builds each element's expression recursively,
  /// and LLVM's time grows faster than the code. Fusion makes regions of at most 128 ops; a
  /// larger body (written by hand) runs on the interpreter instead of exhausting the stack.
  static let maxBodyOps = 1024

  /// Why the emitter cannot compile `body`, or nil if it can. The allow-list is each op's
  /// codegen fact (OpInfo.codegen): an op compiles only if it is `.elemental` for its data type
  /// and every element type it touches is compiled at all; attribute combinations the emitter
  /// does not handle are named below. Anything refused runs on the interpreter.
  static func supports(_ body: Function) -> String? {
    guard !body.returnValues.isEmpty else { return "a kernel computes at least one result" }
    guard body.body.count <= maxBodyOps else { return "a region of \(body.body.count) ops is too large to compile (at most \(maxBodyOps))" }
    if body.returnValues.count > 1 && !returnsColumnReductionAndOperand(body) {
      // Several results are stored at the same index in one loop: elementwise bodies whose
      // results share a type only (or a column reduction and the value it reduces, below).
      guard body.isElementwise else {
        return "a kernel with several results must be elementwise"
      }
      guard body.resultTypes.allSatisfy({ $0 == body.resultTypes[0] }) else {
        return "a kernel's several results must have one type"
      }
    }
    for id in body.body {
      let op = body[id]
      if let reason = unsupportedReason(op, in: body) { return reason }
    }
    return nil
  }

  /// Why one op of `body` has no lowering (nil: it has one): its codegen fact, the element types
  /// it touches, and attribute combinations the emitter leaves to the interpreter.
  static func unsupportedReason(_ op: OpNode, in body: Function) -> String? {
    let types = op.results.map { body.type(of: $0) } + op.operands.map { body.type(of: $0) }
    if let t = types.first(where: { !CodegenSupport.compiledElementTypes.contains($0.dtype) }) {
      return "\(t.dtype) is not compiled yet"
    }
    if !hostConvertsHalf, types.contains(where: { $0.dtype == .f16 }) { return "f16 needs F16C, which this CPU lacks" }
    let dataType = types.count > op.results.count ? types[op.results.count].dtype : types[0].dtype
    let support = op.code.info.codegen
    guard support.compilesElementwise(dataType) else {
      switch support {
      case .elemental: return "'\(op.code)' has no lowering for \(dataType)"
      case .composite: return "'\(op.code)' is not expanded into elemental ops (lower-composites)"
      case .routine: return "'\(op.code)' runs as a routine of its own, not in a kernel"
      case .interpreted: return "'\(op.code)' has no compiled lowering"
      }
    }
    if op.code == .concat, let axis = op.attributes.int("axis"), let first = op.operands.first {
      let t = body.type(of: first)
      let a = axis < 0 ? axis + t.rank : axis
      if op.operands.contains(where: { body.type(of: $0).dims[a].staticSize == nil }) { return "concat along a symbolic axis" }
    }
    return nil
  }

  func elementType(_ d: DType) -> LLVMTypeRef {
    switch d {
    case .f64: return ir.f64
    case .f32: return ir.f32
    case .i64: return ir.i64
    case .i32: return ir.i32
    case .i8, .i1: return ir.i8
    case .f16: return ir.f16
    case .bf16: return ir.i16   // stored as its 16 bits; converted by `load` and `store`
    }
  }
  /// The type values of `d` have in registers: half types compute in f32 (IR-specs/types.md:
  /// every op rounds its result once to its type, through f32), i1 is a bit.
  func computeType(_ d: DType) -> LLVMTypeRef {
    switch d {
    case .i1: return ir.i1
    case .f16, .bf16: return ir.f32
    default: return elementType(d)
    }
  }

  /// An f32 value rounded to `dtype` (f16 or bf16, to nearest, ties to even) and widened back:
  /// what an op of a half type computes. NaN stays NaN (a quiet one, sign kept).
  func roundedToHalf(_ v: IRBuilder.V, _ dtype: DType) -> IRBuilder.V {
    if dtype == .f16 { return ir.fpext(ir.fptrunc(v, ir.f16), ir.f32) }
    let bits = ir.bitcast(v, ir.i32)
    let lsb = ir.and(ir.lshr(bits, ir.int(16, ir.i32)), ir.int(1, ir.i32))
    let rounded = ir.and(ir.add(ir.add(bits, ir.int(0x7FFF, ir.i32)), lsb), ir.int(-65536, ir.i32))
    let quietNaN = ir.and(ir.or(bits, ir.int(0x0040_0000, ir.i32)), ir.int(-65536, ir.i32))
    return ir.bitcast(ir.select(ir.isNaN(v), quietNaN, rounded), ir.f32)
  }

  /// Whether the host converts f16 in hardware (F16C); without it f16 runs on the interpreter.
  static let hostConvertsHalf: Bool = JIT.shared.machine.features.contains("+f16c")

  func size(_ d: Dim) -> IRBuilder.V {
    switch d {
    case .known(let n): return ir.int(n)
    case .symbol(let s): return symbolValues[s]!
    }
  }

  /// Row-major linear index of `index` in a tensor of `type`.
  func linear(_ index: [IRBuilder.V], _ type: TensorType) -> IRBuilder.V {
    guard !index.isEmpty else { return ir.int(0) }
    var offset = index[0]
    for k in 1..<index.count { offset = ir.add(ir.mul(offset, size(type.dims[k])), index[k]) }
    return offset
  }

  /// The operand index that numpy broadcasting reads for result index `index`.
  func broadcastIndex(_ index: [IRBuilder.V], from result: TensorType, to operand: TensorType) -> [IRBuilder.V] {
    let offset = result.rank - operand.rank
    return (0..<operand.rank).map { k in
      operand.dims[k] == .known(1) && result.dims[offset + k] != .known(1) ? ir.int(0) : index[offset + k]
    }
  }

  // MARK: the kernel

  func emit(name: String) throws(CodegenError) -> String {
    let emitted = emitKernel(name: name)
    if let unlowered { throw .unsupported(unlowered) }
    return emitted
  }

  /// A placeholder for an element the emitter cannot compute; `emit` refuses the kernel.
  func cannotLower(_ reason: String, _ dtype: DType) -> IRBuilder.V {
    if unlowered == nil { unlowered = reason }
    return LLVMGetUndef(computeType(dtype))
  }

  private func emitKernel(name: String) -> String {
    var params: [LLVMTypeRef?] = [ir.ptr, ir.ptr, ir.i64, ir.i64]
    let fnType = params.withUnsafeMutableBufferPointer { LLVMFunctionType(ir.void, $0.baseAddress, 4, 0) }
    let fn = LLVMAddFunction(ir.module, name, fnType)!
    addAttribute(fn, "nocapture", index: 1)
    addAttribute(fn, "nocapture", index: 2)
    // The vectorizer's cost model reads the subtarget from these (not only from the machine).
    let machine = JIT.shared.machine
    for (key, value) in [("target-cpu", machine.cpu), ("target-features", machine.features)] {
      let attribute = LLVMCreateStringAttribute(ir.context, key, UInt32(key.utf8.count), value, UInt32(value.utf8.count))
      LLVMAddAttributeAtIndex(fn, LLVMAttributeIndex(bitPattern: -1), attribute)
    }
    LLVMPositionBuilderAtEnd(ir.b, LLVMAppendBasicBlockInContext(ir.context, fn, "entry"))
    let buffersParam = LLVMGetParam(fn, 0)!, symbolsParam = LLVMGetParam(fn, 1)!
    let begin = LLVMGetParam(fn, 2)!, end = LLVMGetParam(fn, 3)!
    for k in 0..<(signature.inputs.count + signature.outputs.count) {
      buffers.append(ir.load(ir.ptr, ir.gep(ir.ptr, buffersParam, ir.int(k))))
    }
    if streamingOutput {
      // `!align 64` on the pointer load lets LLVM prove the vector stores aligned (InferAlignment),
      // which non-temporal vector stores need.
      let alignment = LLVMValueAsMetadata(ir.int(64))
      var operands: [LLVMMetadataRef?] = [alignment]
      let node = operands.withUnsafeMutableBufferPointer { LLVMMDNodeInContext2(ir.context, $0.baseAddress, 1) }
      LLVMSetMetadata(buffers[signature.inputs.count], LLVMGetMDKindIDInContext(ir.context, "align", 5),
                      LLVMMetadataAsValue(ir.context, node))
    }
    for (j, s) in signature.symbols.enumerated() {
      symbolValues[s] = ir.load(ir.i64, ir.gep(ir.i64, symbolsParam, ir.int(j)))
    }
    // Scalar (and single-element) operands are read once, here: inside the loops LLVM could not
    // hoist them past the output stores (the output may share memory with an operand).
    for (k, argument) in body.arguments.enumerated() {
      let t = body.type(of: argument)
      guard t.dims.allSatisfy({ $0 == .known(1) }) else { continue }
      scalarArguments[argument] = load(buffers[k], dtype: t.dtype, at: ir.int(0))
    }
    root = body.returnValues[0]
    let output = signature.output
    if streamingOutput && output.rank == 1 {
      // The runtime starts each thread's slice of a streaming rank-1 kernel at a multiple of
      // `streamingChunkAlignment` elements, so the vector stores are aligned (see `mark`).
      let low = ir.and(begin, ir.int(CompiledKernel.streamingChunkAlignment - 1))
      _ = ir.intrinsic("llvm.assume", [], [ir.icmp(LLVMIntEQ, low, ir.int(0))])
    }
    if emitReductionSweep(begin: begin, end: end) {
      LLVMBuildRetVoid(ir.b)
      return name
    }
    let rowReductions = hoistableReductions()
    let lastAxisReductions = Set(rowReductions.filter { $0.1 == output.rank - 1 }.map(\.0))
    // An elementwise body with a transcendental function is one long dependency chain per
    // vector; LLVM's cost model keeps one vector in flight there (register pressure), and the
    // core then waits on latency. Two in flight measured 1.27x on W1 (7.7 -> 9.8 GB/s); loops
    // with reductions keep LLVM's choice (forcing 2 measured slower on W2 and W3).
    let elementwise = rowReductions.isEmpty
      && body.isElementwise
    let longElementwiseChain = elementwise
      && body.body.contains { body[$0].code.info.cost == .expensive }
    var index: [IRBuilder.V] = []
    func nest(_ depth: Int) {
      // Row reductions indexed by the first `depth` output indices: compute them once per row.
      // An expensive value of the output's type that a row reduction reads and the output also
      // needs (softmax's exp) is written into the output row while reducing and read back
      // afterwards, instead of being computed twice.
      if depth == output.rank - 1 && rowReductions.contains(where: { $0.1 == depth }) { prefetchNextRow(index) }
      for (reduction, prefix, rank) in rowReductions where prefix == depth {
        let reduced = body[reduction]
        var candidate: ValueID? = nil
        if prefix == output.rank - 1, case .result(let rid, _) = reduced.definition {
          let operand = body[rid].operands[0]
          if case .result(let pid, _) = body[operand].definition, body[pid].code.info.cost == .expensive,
             body.type(of: operand) == output, operand != root, rowMaterialized.isEmpty,
             readsOnlyInTheOutputRow(operand, rowReductions: lastAxisReductions) {
            candidate = operand
          }
        }
        if candidate != nil, streamingOutput, rowScratch == nil, case .known(let n) = output.dims[output.rank - 1],
           n <= Self.maxScratchRow {
          let rowType = LLVMArrayType2(elementType(output.dtype), UInt64(max(n, 1)))
          // In the entry block, so the stack row is allocated once per call, not per row.
          let current = LLVMGetInsertBlock(ir.b)!
          let entry = LLVMGetEntryBasicBlock(ir.currentFunction)!
          LLVMPositionBuilder(ir.b, entry, LLVMGetFirstInstruction(entry))
          let row = LLVMBuildAlloca(ir.b, rowType, "row_scratch")!
          LLVMSetAlignment(row, 64)
          LLVMPositionBuilderAtEnd(ir.b, current)
          rowScratch = row
        }
        // A streaming kernel stores to the output only once (its stores bypass the cache).
        if streamingOutput && rowScratch == nil { candidate = nil }
        if let candidate { storeWhileReducing.insert(candidate) }
        _ = element(reduction, (0..<rank).map { $0 < prefix ? index[$0] : ir.int(0) })
        if let candidate { storeWhileReducing.remove(candidate); rowMaterialized.insert(candidate) }
      }
      if depth == output.rank {
        // Every result's value first, then the stores: a result may overwrite an operand in
        // place, which a later result still reads at this index.
        let values = body.returnValues.map { element($0, index) }
        let offset = linear(index, output)
        for (j, v) in values.enumerated() {
          store(v, dtype: output.dtype, at: offset, buffer: buffers[signature.inputs.count + j])
        }
        return
      }
      let lo = depth == 0 ? begin : ir.int(0)
      let hi = depth == 0 ? end : size(output.dims[depth])
      let innermost = depth == output.rank - 1
      ir.loop(from: lo, to: hi, interleave: innermost && longElementwiseChain ? 2 : nil,
              parallelAccesses: innermost ? parallelAccessGroup : nil) { iv, _ in
        index.append(iv)
        memo.append([:])
        nest(depth + 1)
        memo.removeLast()
        index.removeLast()
        return []
      }
    }
    // An elementwise kernel may run in place (its output sharing an operand's memory). The
    // runtime never passes partially overlapping buffers: an operand is the output's memory
    // exactly or does not overlap it. Element i is read only to compute element i, so no
    // iteration depends on another through memory even in place; the innermost loop says so
    // (`llvm.loop.parallel_accesses` over an access group holding every load and store), and
    // LLVM vectorizes it without run-time overlap checks or a scalar fallback, and one loop nest
    // serves both cases (it once needed a version per operand that might be aliased).
    if elementwise, let group = ir.newAccessGroup() {
      parallelAccessGroup = group
      nest(0)
      LLVMBuildRetVoid(ir.b)
      let groupValue = LLVMMetadataAsValue(ir.context, group)
      var block = LLVMGetFirstBasicBlock(ir.currentFunction)
      while let bb = block {
        var instruction = LLVMGetFirstInstruction(bb)
        while let inst = instruction {
          let opcode = LLVMGetInstructionOpcode(inst)
          if opcode == LLVMLoad || opcode == LLVMStore { LLVMSetMetadata(inst, ir.accessGroupKind, groupValue) }
          instruction = LLVMGetNextInstruction(inst)
        }
        block = LLVMGetNextBasicBlock(bb)
      }
      return name
    }
    nest(0)
    LLVMBuildRetVoid(ir.b)
    return name
  }

  /// A row-reduction kernel (softmax, layer norm) makes several passes over each row; the first
  /// waits on memory while the others compute from L1. Touching the next row's cache lines now
  /// (software prefetch, one per 64-byte line of each full-shape operand) overlaps its fetch with
  /// this row's arithmetic. Prefetches never fault, so the last row may point past the end.
  func prefetchNextRow(_ outer: [IRBuilder.V]) {
    let output = signature.output
    let rowLength = size(output.dims[output.rank - 1])
    let elementBytes = ir.int(output.dtype.byteSize)
    let next = ir.mul(ir.add(linear(outer + [ir.int(0)], output), rowLength), elementBytes)
    prefetch(bytes: ir.mul(rowLength, elementBytes), from: next, ofArgumentsShaped: output)
  }

  /// Prefetches `bytes` bytes (one instruction per 64-byte line) from byte offset `start` of every
  /// non-scalar argument of type `type`.
  func prefetch(bytes: IRBuilder.V, from start: IRBuilder.V, ofArgumentsShaped type: TensorType) {
    let lines = ir.sdiv(ir.add(bytes, ir.int(63)), ir.int(64))
    for (k, argument) in body.arguments.enumerated() where body.type(of: argument) == type && scalarArguments[argument] == nil {
      ir.loop(from: ir.int(0), to: lines) { line, _ in
        var offset: [LLVMValueRef?] = [ir.add(start, ir.mul(line, ir.int(64)))]
        let address = offset.withUnsafeMutableBufferPointer { LLVMBuildGEP2(ir.b, ir.i8, buffers[k], $0.baseAddress, 1, "") }!
        _ = ir.intrinsic("llvm.prefetch", [ir.ptr], [address, ir.int(0, ir.i32), ir.int(3, ir.i32), ir.int(1, ir.i32)])
        return []
      }
    }
  }

  /// Nested loops over `bounds` (outermost first), one memo frame per level, calling `body` with
  /// the induction variables in the innermost block.
  func loopNest(_ bounds: [(IRBuilder.V, IRBuilder.V)], _ body: ([IRBuilder.V]) -> Void) {
    var index: [IRBuilder.V] = []
    func level(_ d: Int) {
      if d == bounds.count { body(index); return }
      ir.loop(from: bounds[d].0, to: bounds[d].1) { iv, _ in
        index.append(iv)
        memo.append([:])
        level(d + 1)
        memo.removeLast()
        index.removeLast()
        return []
      }
    }
    level(0)
  }

  /// The value a reduction starts from: 0, 1, -inf/+inf or the integer extremes. A float sum
  /// starts from -0.0, the exact identity of IEEE addition (-0 + x = x for every x, -0 included),
  /// so it equals the interpreter's sum from the slice's first element: a slice of negative
  /// zeros sums to -0.0. An empty float sum is +0.0 (`emptySumIsPositiveZero`).
  func reductionIdentity(_ code: OpCode, _ dtype: DType) -> IRBuilder.V {
    let t = computeType(dtype)
    let isFloat = dtype.isFloat
    switch code {
    case .reduceSum, .reduceMean: return isFloat ? ir.real(-0.0, t) : ir.int(0, t)
    case .reduceProd: return isFloat ? ir.real(1, t) : ir.int(1, t)
    case .reduceMax: return isFloat ? ir.real(-.infinity, t) : ir.int(dtype == .i64 ? Int.min : -(1 << (dtype.integerBits - 1)), t)
    default: return isFloat ? ir.real(.infinity, t) : ir.int(dtype == .i64 ? Int.max : (1 << (dtype.integerBits - 1)) - 1, t)
    }
  }

  /// One accumulation step of a reduction. Sums and products may be reassociated (so they
  /// vectorize); max/min are IEEE maximum/minimum (NaN-propagating), which LLVM vectorizes without
  /// fast-math flags, unlike compare-select or maxnum forms.
  func combineReduction(_ code: OpCode, _ acc: IRBuilder.V, _ v: IRBuilder.V, _ dtype: DType) -> IRBuilder.V {
    let t = computeType(dtype)
    let isFloat = dtype.isFloat
    switch code {
    case .reduceSum, .reduceMean: return isFloat ? ir.reassoc(ir.fadd(acc, v)) : ir.add(acc, v)
    case .reduceProd: return isFloat ? ir.reassoc(ir.fmul(acc, v)) : ir.mul(acc, v)
    case .reduceMax: return isFloat ? ir.intrinsic("llvm.maximum", [t], [acc, v]) : ir.intrinsic("llvm.smax", [t], [acc, v])
    default: return isFloat ? ir.intrinsic("llvm.minimum", [t], [acc, v]) : ir.intrinsic("llvm.smin", [t], [acc, v])
    }
  }

  /// A float sum over no elements is +0.0 (as in NumPy), not the -0.0 it starts from.
  func emptySumIsPositiveZero(_ total: IRBuilder.V, count: IRBuilder.V, _ dtype: DType) -> IRBuilder.V {
    ir.select(ir.icmp(LLVMIntEQ, count, ir.int(0)), ir.real(0, computeType(dtype)), total)
  }

  /// The number of elements a reduction over `axes` of `x` combines (run-time for symbolic dims).
  func reducedCount(_ axes: [Int], of x: TensorType) -> IRBuilder.V {
    var count = ir.int(1)
    for a in axes { count = ir.mul(count, size(x.dims[a])) }
    return count
  }

  /// sum / count for reduce_mean: float division, or truncating integer division (0 when empty).
  func divideByCount(_ sum: IRBuilder.V, _ count: IRBuilder.V, _ dtype: DType) -> IRBuilder.V {
    let t = computeType(dtype)
    if dtype.isFloat { return ir.fdiv(sum, ir.sitofp(count, t)) }
    // Both arms of a select are computed: divide by 1 where the count is 0 (a division by zero
    // traps), then choose 0.
    let empty = ir.icmp(LLVMIntEQ, count, ir.int(0))
    let divisor = truncIfNeeded(ir.select(empty, ir.int(1), count), t)
    return ir.select(empty, ir.int(0, t), ir.sdiv(sum, divisor))
  }

  func addAttribute(_ fn: LLVMValueRef, _ name: String, index: UInt32) {
    let kind = LLVMGetEnumAttributeKindForName(name, name.utf8.count)
    LLVMAddAttributeAtIndex(fn, index, LLVMCreateEnumAttribute(ir.context, kind, 0))
  }

  /// Reductions (other than the root) whose result is indexed by a prefix of the output index:
  /// (value, prefix length p, the value's rank); its dims are the output's first p dims followed by
  /// size-1 dims (keepdims) or nothing.
  func hoistableReductions() -> [(ValueID, Int, Int)] {
    let output = signature.output
    var result: [(ValueID, Int, Int)] = []
    let root = body.returnValues[0]
    for id in body.body {
      let op = body[id]
      guard op.code.info.opClass == .reduction, op.results[0] != root else { continue }
      let t = body.type(of: op.results[0])
      // keepdims form [d0..dp-1, 1, ..., 1] of the output's rank, or [d0..dp-1]: the value depends
      // on the first p output indices only, so it is computed once per such prefix, before the
      // loops over the rest. (A reduction over a middle axis, [B, 1, 1] in a [B, T, 1] output as in
      // a softmax gradient over T, is hoisted out of the T loop instead of being recomputed per t.)
      var p = 0
      while p < min(t.rank, output.rank) && t.dims[p] == output.dims[p] { p += 1 }
      // Any rank: the hoisted value is memoized under the index it was computed for, so the
      // output's loops reuse it exactly when they ask for that element (through reshapes that
      // add or drop size-1 dims too), and otherwise compute what they need; the index used here,
      // the loop indices of the prefix and zeros, is always in range.
      guard t.dims[p...].allSatisfy({ $0 == .known(1) }) else { continue }
      result.append((op.results[0], p, t.rank))
    }
    return result
  }

  // MARK: element values

  func lookup(_ key: MemoKey) -> IRBuilder.V? {
    for frame in memo.reversed() { if let v = frame[key] { return v } }
    return nil
  }

  func key(_ v: ValueID, _ index: [IRBuilder.V]) -> MemoKey {
    MemoKey(value: v, index: index.map { UInt(bitPattern: Int(bitPattern: UnsafeRawPointer($0))) })
  }

  func element(_ v: ValueID, _ index: [IRBuilder.V]) -> IRBuilder.V {
    let k = key(v, index)
    if let cached = lookup(k) { return cached }
    let outputBuffer = buffers[signature.inputs.count]
    // Materialized rows live in the output row, or (streaming kernels) in the stack row.
    func rowLocation() -> (IRBuilder.V, IRBuilder.V) {
      rowScratch.map { ($0, index[index.count - 1]) } ?? (outputBuffer, linear(index, signature.output))
    }
    if rowMaterialized.contains(v) {
      let (buffer, offset) = rowLocation()
      return load(buffer, dtype: signature.output.dtype, at: offset)
    }
    let value = compute(v, index)
    memo[memo.count - 1][k] = value
    if storeWhileReducing.contains(v) {
      let (buffer, offset) = rowLocation()
      store(value, dtype: signature.output.dtype, at: offset, buffer: buffer)
    }
    return value
  }

  func load(_ buffer: IRBuilder.V, dtype: DType, at offset: IRBuilder.V) -> IRBuilder.V {
    let raw = ir.load(elementType(dtype), ir.gep(elementType(dtype), buffer, offset))
    switch dtype {
    case .i1: return ir.icmp(LLVMIntNE, raw, ir.int(0, ir.i8))
    case .f16: return ir.fpext(raw, ir.f32)
    case .bf16: return ir.bitcast(ir.shl(ir.zext(raw, ir.i32), ir.int(16, ir.i32)), ir.f32)
    default: return raw
    }
  }

  @discardableResult
  func store(_ v: IRBuilder.V, dtype: DType, at offset: IRBuilder.V, buffer: IRBuilder.V) -> IRBuilder.V {
    // Half values are already rounded to their type (`roundedToHalf`): narrowing is exact.
    let value: IRBuilder.V
    switch dtype {
    case .i1: value = ir.zext(v, ir.i8)
    case .f16: value = ir.fptrunc(v, ir.f16)
    case .bf16: value = ir.trunc(ir.lshr(ir.bitcast(v, ir.i32), ir.int(16, ir.i32)), ir.i16)
    default: value = v
    }
    return LLVMBuildStore(ir.b, value, ir.gep(elementType(dtype), buffer, offset))
  }

  func compute(_ v: ValueID, _ index: [IRBuilder.V]) -> IRBuilder.V {
    let info = body[v]
    let type = info.type
    switch info.definition {
    case .argument(let k):
      if let scalar = scalarArguments[v] { return scalar }
      return load(buffers[k], dtype: type.dtype, at: linear(index, type))
    case .global(let name):
      return cannotLower("a kernel body reads '@\(name)' (fusion bodies have no globals)", type.dtype)
    case .result(let opID, _):
      let value = computeOp(body[opID], type: type, index)
      // An op of a half type rounds its result to that type (data movement needs no rounding).
      guard type.dtype == .f16 || type.dtype == .bf16 else { return value }
      switch body[opID].code.info.opClass {
      case .elementwiseUnary, .elementwiseBinary, .cast, .reduction, .source: return roundedToHalf(value, type.dtype)
      default: return value
      }
    }
  }

  func scalarConstant(_ x: Double, _ dtype: DType) -> IRBuilder.V {
    if dtype.isFloat { return ir.real(roundToFloat(x, dtype), computeType(dtype)) }
    if dtype == .i1 { return ir.bool(x != 0) }
    return ir.int(Int(integerFromDouble(x)), computeType(dtype))
  }

  func computeOp(_ op: OpNode, type: TensorType, _ index: [IRBuilder.V]) -> IRBuilder.V {
    let dtype = type.dtype
    func operand(_ k: Int) -> IRBuilder.V {
      let v = op.operands[k]
      return element(v, broadcastIndex(index, from: type, to: body.type(of: v)))
    }
    switch op.code {
    case .constant:
      let value = op.constantValue!
      if value.shape.isEmpty { return scalarConstant(value.doubles[0], dtype) }
      return constantArrayElement(value, index: linear(index, type))
    case .iota:
      let position = index[op.attributes.int("dim").map { $0 < 0 ? $0 + type.rank : $0 } ?? 0]
      if dtype.isFloat { return ir.sitofp(position, computeType(dtype)) }
      return dtype == .i64 ? position : ir.trunc(position, computeType(dtype))
    case .neg, .abs, .exp, .log, .log1p, .sqrt, .rsqrt, .tanh, .sigmoid, .relu, .gelu, .erf, .sin, .cos, .floor, .ceil, .sign, .not,
         .softplus:
      return unary(op, operand(0), dtype)
    case .div where (dtype == .f32 || dtype == .f64) && producedByReduction(op.operands[1]):
      // Dividing by a row reduction (softmax's normalization): the divisor is the same for the
      // whole row, so allow x * (1/d) (the `arcp` flag; LLVM hoists 1/d out of the row loop).
      // Costs at most one extra rounding (<= 1.5 ulp) and saves a vector division per element.
      let quotient = ir.fdiv(operand(0), operand(1))
      LLVMSetFastMathFlags(quotient, LLVMFastMathFlags(LLVMFastMathAllowReciprocal))
      return quotient
    case .add, .sub, .mul, .div, .pow, .max, .min, .and, .or:
      return binary(op.code, operand(0), operand(1), dtype)
    case .eq, .ne, .lt, .le, .gt, .ge:
      return compare(op.code, operand(0), operand(1), body.type(of: op.operands[0]).dtype)
    case .select, .where:
      return ir.select(operand(0), operand(1), operand(2))
    case .cast:
      return convert(operand(0), from: body.type(of: op.operands[0]).dtype, to: dtype)
    case .broadcastTo:
      return operand(0)
    case .reshape:
      return reshapeElement(op.operands[0], from: type, index)
    case .transpose:
      let perm = op.attributes.ints("perm")!
      var source = [IRBuilder.V](repeating: ir.int(0), count: perm.count)
      for (k, p) in perm.enumerated() { source[p] = index[k] }
      return element(op.operands[0], source)
    case .slice:
      let x = body.type(of: op.operands[0])
      var source = index
      let axes = op.attributes.ints("axes")!, starts = op.attributes.ints("starts")!
      let strides = op.attributes.ints("strides") ?? Array(repeating: 1, count: axes.count)
      for (k, a) in axes.enumerated() {
        let axis = a < 0 ? a + x.rank : a
        source[axis] = ir.add(ir.int(starts[k]), ir.mul(index[axis], ir.int(strides[k])))
      }
      return element(op.operands[0], source)
    case .pad:
      let x = body.type(of: op.operands[0])
      let low = op.attributes.ints("low")!
      var source = index
      var inside = ir.bool(true)
      for a in 0..<x.rank where low[a] != 0 || x.dims[a] != type.dims[a] {
        let shifted = ir.sub(index[a], ir.int(low[a]))
        let n = size(x.dims[a])
        let ok = ir.and(ir.icmp(LLVMIntSGE, shifted, ir.int(0)), ir.icmp(LLVMIntSLT, shifted, n))
        inside = ir.and(inside, ok)
        source[a] = ir.select(ok, shifted, ir.int(0))   // clamp so the load stays in bounds
      }
      let value = element(op.operands[0], source)
      return ir.select(inside, value, scalarConstant(op.attributes.double("value") ?? 0, dtype))
    case .concat:
      let axis = { let a = op.attributes.int("axis")!; return a < 0 ? a + type.rank : a }()
      var offset = 0
      var result: IRBuilder.V? = nil
      var pieces: [(IRBuilder.V, IRBuilder.V)] = []
      for v in op.operands {
        let n = body.type(of: v).dims[axis].staticSize!
        var source = index
        let local = ir.sub(index[axis], ir.int(offset))
        let inRange = ir.and(ir.icmp(LLVMIntSGE, local, ir.int(0)), ir.icmp(LLVMIntSLT, local, ir.int(n)))
        source[axis] = ir.select(inRange, local, ir.int(0))
        pieces.append((inRange, element(v, source)))
        offset += n
      }
      for (inRange, value) in pieces.reversed() { result = result.map { ir.select(inRange, value, $0) } ?? value }
      return result!
    case .oneHot:
      let depth = op.attributes.int("depth")!
      let indices = element(op.operands[0], Array(index.dropLast()))
      let wide = widenToI64(indices, body.type(of: op.operands[0]).dtype)
      let hit = ir.icmp(LLVMIntEQ, wide, index[index.count - 1])
      _ = depth
      return ir.select(hit, scalarConstant(op.attributes.double("on_value") ?? 1, dtype),
                       scalarConstant(op.attributes.double("off_value") ?? 0, dtype))
    case .reduceSum, .reduceMean, .reduceMax, .reduceMin, .reduceProd:
      return reduction(op, type: type, index)
    default:
      // Lowerings are optional (an op without one runs on the interpreter): `supports` refuses
      // such ops from their codegen facts, and this catches a fact that claims too much.
      return cannotLower(Self.unsupportedReason(op, in: body) ?? "'\(op.code)' has no lowering", dtype)
    }
  }

  /// True if `v` is only ever read in the current output row, so it may live in the output row
  /// while the row's reductions run. Every value derived from it must be read in the current row
  /// only: elementwise ops whose result has the output's type (read at the element's own index)
  /// or its row type (the output's dims with the last one 1: read at [row, 0]), and the hoisted
  /// reductions over the last axis in `rowReductions` (computed before any element of the row is
  /// stored), whose results are followed the same way. Any other reader, such as a sum over the
  /// batch axis after a softmax, reads `v` (or recomputes a row reduction over it) in other rows:
  /// rows not computed yet, overwritten by results, or another thread's. Then `v` is computed
  /// where it is read.
  func readsOnlyInTheOutputRow(_ v: ValueID, rowReductions: Set<ValueID>) -> Bool {
    let output = signature.output
    let rowType = output.with(dims: Array(output.dims.dropLast()) + [.known(1)])
    var pending = [v]
    var seen = Set<ValueID>()
    while let value = pending.popLast() {
      guard seen.insert(value).inserted else { continue }
      for id in body.body where body[id].operands.contains(value) {
        let op = body[id]
        if op.code.info.opClass == .reduction {
          guard rowReductions.contains(op.results[0]) else { return false }
        } else {
          guard op.code.info.isElementwise,
                op.results.allSatisfy({ body.type(of: $0).dims == output.dims || body.type(of: $0).dims == rowType.dims })
          else { return false }
        }
        pending += op.results
      }
    }
    return true
  }

  func producedByReduction(_ v: ValueID) -> Bool {
    if case .result(let id, _) = body[v].definition { return body[id].code.info.opClass == .reduction }
    return false
  }

  func widenToI64(_ v: IRBuilder.V, _ dtype: DType) -> IRBuilder.V { dtype == .i64 ? v : ir.sext(v, ir.i64) }

  /// Reshape: the result index, linearized in the result's shape, delinearized in the operand's.
  /// Reshapes that only insert or drop size-1 dims map indices directly (no division).
  func reshapeElement(_ x: ValueID, from type: TensorType, _ index: [IRBuilder.V]) -> IRBuilder.V {
    let source = body.type(of: x)
    let kept = type.dims.enumerated().filter { $0.element != .known(1) }
    let sourceKept = source.dims.enumerated().filter { $0.element != .known(1) }
    if kept.map(\.element) == sourceKept.map(\.element) {
      var sourceIndex = [IRBuilder.V](repeating: ir.int(0), count: source.rank)
      for (k, s) in zip(kept, sourceKept) { sourceIndex[s.offset] = index[k.offset] }
      return element(x, sourceIndex)
    }
    var remaining = linear(index, type)
    var sourceIndex = [IRBuilder.V](repeating: ir.int(0), count: source.rank)
    for k in stride(from: source.rank - 1, through: 0, by: -1) {
      let n = size(source.dims[k])
      sourceIndex[k] = k == 0 ? remaining : ir.srem(remaining, n)
      if k > 0 { remaining = ir.sdiv(remaining, n) }
    }
    return element(x, sourceIndex)
  }

  func constantArrayElement(_ value: Tensor, index: IRBuilder.V) -> IRBuilder.V {
    let t = value.dtype.isFloat ? computeType(value.dtype) : elementType(value.dtype)
    var elements: [LLVMValueRef?]
    switch value.storage {
    case .floats(let f): elements = f.map { ir.real(roundToFloat($0, value.dtype), t) }
    case .ints(let i): elements = i.map { LLVMConstInt(t, UInt64(bitPattern: $0), 1) }
    }
    let array = elements.withUnsafeMutableBufferPointer { LLVMConstArray2(t, $0.baseAddress, UInt64($0.count)) }
    let global = LLVMAddGlobal(ir.module, LLVMTypeOf(array), "const")!
    LLVMSetInitializer(global, array)
    LLVMSetGlobalConstant(global, 1)
    LLVMSetLinkage(global, LLVMPrivateLinkage)
    let raw = ir.load(t, ir.gep(t, global, index))
    return value.dtype == .i1 ? ir.icmp(LLVMIntNE, raw, ir.int(0, ir.i8)) : raw
  }

  // MARK: reductions

  func reduction(_ op: OpNode, type: TensorType, _ index: [IRBuilder.V]) -> IRBuilder.V {
    let x = body.type(of: op.operands[0])
    let axes = (try? ShapeRules.reductionAxes(op.attributes, rank: x.rank)) ?? []
    let keep = op.attributes.bool("keepdims") ?? false
    // Map the result index to the operand index, leaving reduced axes to the loops.
    var sourceIndex = [IRBuilder.V?](repeating: nil, count: x.rank)
    var k = 0
    for a in 0..<x.rank {
      if axes.contains(a) { if keep { k += 1 } } else { sourceIndex[a] = index[k]; k += 1 }
    }
    // Half values accumulate in f64, as in the interpreter: an f32 sum of bf16 values can
    // overflow (bf16 has f32's range) and absorbs small terms; the total is then rounded through
    // f32 to the half type like any op's result.
    let half = x.dtype == .f16 || x.dtype == .bf16
    let dtype: DType = half ? .f64 : x.dtype
    func loops(_ position: Int, _ acc: [IRBuilder.V]) -> [IRBuilder.V] {
      if position == axes.count {
        let value = element(op.operands[0], sourceIndex.map { $0! })
        return [combineReduction(op.code, acc[0], half ? ir.fpext(value, ir.f64) : value, dtype)]
      }
      let axis = axes[position]
      return ir.loop(from: ir.int(0), to: size(x.dims[axis]), carrying: acc) { iv, accs in
        sourceIndex[axis] = iv
        memo.append([:])
        let next = loops(position + 1, accs)
        memo.removeLast()
        return next
      }
    }
    var total = loops(0, [reductionIdentity(op.code, dtype)])[0]
    if op.code == .reduceSum && dtype.isFloat { total = emptySumIsPositiveZero(total, count: reducedCount(axes, of: x), dtype) }
    if op.code == .reduceMean { total = divideByCount(total, reducedCount(axes, of: x), dtype) }
    return half ? ir.fptrunc(total, ir.f32) : total
  }

  /// Whether `v` is `sub(y, reduce_max(y))` (through a reshape of the maximum): then v <= 0 or
  /// NaN everywhere, as in softmax and log-sum-exp, and exp needs no overflow handling.
  func isShiftedByItsMaximum(_ v: ValueID) -> Bool {
    guard case .result(let id, _) = body[v].definition, body[id].code == .sub else { return false }
    var m = body[id].operands[1]
    if case .result(let r, _) = body[m].definition, body[r].code == .reshape || body[r].code == .broadcastTo { m = body[r].operands[0] }
    guard case .result(let mid, _) = body[m].definition, body[mid].code == .reduceMax,
          body[mid].operands[0] == body[id].operands[0] else { return false }
    // The maximum must line up with the slices it was taken over: the subtrahend's type is y's
    // with exactly the reduced axes set to 1 (keepdims form), so y - max <= 0 element by element.
    let y = body.type(of: body[id].operands[0])
    guard let axes = try? ShapeRules.reductionAxes(body[mid].attributes, rank: y.rank) else { return false }
    let aligned = y.dims.enumerated().map { axes.contains($0.offset) ? Dim.known(1) : $0.element }
    return body.type(of: body[id].operands[1]).dims == aligned
  }

  func truncIfNeeded(_ v: IRBuilder.V, _ t: LLVMTypeRef) -> IRBuilder.V { t == ir.i64 ? v : ir.trunc(v, t) }

  // MARK: scalar ops

  func unary(_ op: OpNode, _ x: IRBuilder.V, _ dtype: DType) -> IRBuilder.V {
    if dtype == .f16 || dtype == .bf16 {
      // In f64 with libm, as the interpreter computes: after rounding to f32 and then to the half
      // type the result is the interpreter's bit for bit.
      return ir.fptrunc(unary(op, ir.fpext(x, ir.f64), .f64), ir.f32)
    }
    let t = computeType(dtype)
    if dtype.isFloat {
      let f32 = dtype == .f32
      switch op.code {
      case .neg: return ir.fneg(x)
      case .abs: return ir.fabs(x)
      case .exp: return f32 ? ir.expf(x, nonPositive: isShiftedByItsMaximum(op.operands[0])) : ir.callC("exp", t, [x])
      case .log: return f32 ? ir.logf(x) : ir.callC("log", t, [x])
      case .log1p: return f32 ? ir.log1pf(x) : ir.callC("log1p", t, [x])
      case .sqrt: return ir.intrinsic("llvm.sqrt", [t], [x])
      case .rsqrt: return ir.fdiv(ir.real(1, t), ir.intrinsic("llvm.sqrt", [t], [x]))
      case .tanh: return f32 ? ir.tanhf(x) : ir.callC("tanh", t, [x])
      case .sigmoid:
        return f32 ? ir.sigmoidf(x) : ir.fdiv(ir.real(1, t), ir.fadd(ir.real(1, t), ir.callC("exp", t, [ir.fneg(x)])))
      case .erf: return f32 ? ir.erff(x) : ir.callC("erf", t, [x])
      case .gelu:
        let approximate = op.attributes.bool("approximate") ?? false
        if f32 { return ir.geluf(x, approximate: approximate) }
        let half = ir.fmul(ir.real(0.5, t), x)
        if approximate {
          let inner = ir.fmul(ir.real(0.7978845608028654, t), ir.fadd(x, ir.fmul(ir.real(0.044715, t), ir.fmul(x, ir.fmul(x, x)))))
          return ir.fmul(half, ir.fadd(ir.real(1, t), ir.callC("tanh", t, [inner])))
        }
        return ir.fmul(half, ir.fadd(ir.real(1, t), ir.callC("erf", t, [ir.fmul(x, ir.real(0.7071067811865476, t))])))
      case .softplus:
        // max(x, 0) + log1p(exp(-|x|)): no overflow for large x, exact 0 at -inf, NaN stays NaN
        // (through the second term).
        let positivePart = ir.select(ir.fcmp(LLVMRealOGT, x, ir.real(0, t)), x, ir.real(0, t))
        let negativeMagnitude = ir.fneg(ir.fabs(x))
        let tail = f32 ? ir.log1pf(ir.expf(negativeMagnitude, nonPositive: true))
                       : ir.callC("log1p", t, [ir.callC("exp", t, [negativeMagnitude])])
        return ir.fadd(positivePart, tail)
      case .sin: return ir.intrinsic("llvm.sin", [t], [x])
      case .cos: return ir.intrinsic("llvm.cos", [t], [x])
      case .floor: return ir.intrinsic("llvm.floor", [t], [x])
      case .ceil: return ir.intrinsic("llvm.ceil", [t], [x])
      case .relu:
        // NaN stays NaN; relu(-0.0) = +0.0.
        return ir.select(ir.fcmp(LLVMRealOGT, x, ir.real(0, t)), x, ir.select(ir.isNaN(x), x, ir.real(0, t)))
      case .sign:
        let s = ir.select(ir.fcmp(LLVMRealOGT, x, ir.real(0, t)), ir.real(1, t), ir.real(-1, t))
        return ir.select(ir.fcmp(LLVMRealUEQ, x, ir.real(0, t)), x, s)   // ±0 and NaN pass through
      default: return cannotLower("'\(op.code)' has no lowering for \(dtype)", dtype)
      }
    }
    switch op.code {
    case .neg: return ir.sub(ir.int(0, t), x)
    case .abs: return ir.select(ir.icmp(LLVMIntSLT, x, ir.int(0, t)), ir.sub(ir.int(0, t), x), x)
    case .relu: return ir.select(ir.icmp(LLVMIntSGT, x, ir.int(0, t)), x, ir.int(0, t))
    case .sign:
      return ir.select(ir.icmp(LLVMIntSGT, x, ir.int(0, t)), ir.int(1, t),
                       ir.select(ir.icmp(LLVMIntSLT, x, ir.int(0, t)), ir.int(-1, t), ir.int(0, t)))
    case .not: return ir.xor(x, dtype == .i1 ? ir.bool(true) : ir.int(-1, t))
    default: return cannotLower("'\(op.code)' has no lowering for \(dtype)", dtype)
    }
  }

  func binary(_ code: OpCode, _ a: IRBuilder.V, _ b: IRBuilder.V, _ dtype: DType) -> IRBuilder.V {
    if (dtype == .f16 || dtype == .bf16) && code == .pow {
      return ir.fptrunc(binary(code, ir.fpext(a, ir.f64), ir.fpext(b, ir.f64), .f64), ir.f32)
    }
    if (dtype == .f16 || dtype == .bf16) && (code == .max || code == .min) {
      // Compares and selects, not llvm.maximum/minimum: LLVM narrows those to f16 around the
      // rounding and x86 without AVX512-FP16 then loses the NaN (max(0, NaN) gave 0).
      let (first, second) = code == .max ? (LLVMRealOGT, LLVMRealOLT) : (LLVMRealOLT, LLVMRealOGT)
      let aIsNegative = ir.icmp(LLVMIntSLT, ir.bitcast(a, ir.i32), ir.int(0, ir.i32))
      let equal = code == .max ? ir.select(aIsNegative, b, a) : ir.select(aIsNegative, a, b)   // -0 < +0
      let unordered = ir.fadd(a, b)   // NaN when either is NaN
      return ir.select(ir.fcmp(first, a, b), a,
                       ir.select(ir.fcmp(second, a, b), b, ir.select(ir.fcmp(LLVMRealOEQ, a, b), equal, unordered)))
    }
    // Half +, -, *, / in f32 and then rounded to the half type equal the exactly rounded result
    // (f32 has more than twice a half type's precision plus two bits).
    let t = computeType(dtype)
    if dtype.isFloat {
      switch code {
      case .add: return ir.fadd(a, b)
      case .sub: return ir.fsub(a, b)
      case .mul: return ir.fmul(a, b)
      case .div: return ir.fdiv(a, b)
      case .pow: return ir.intrinsic("llvm.pow", [t], [a, b])
      case .max: return ir.intrinsic("llvm.maximum", [t], [a, b])
      case .min: return ir.intrinsic("llvm.minimum", [t], [a, b])
      default: return cannotLower("'\(code)' has no lowering for \(dtype)", dtype)
      }
    }
    switch code {
    case .add: return ir.add(a, b)
    case .sub: return ir.sub(a, b)
    case .mul: return ir.mul(a, b)
    case .div:
      // Truncating division that never traps: x / 0 = -1, MIN / -1 = MIN (XLA's definition).
      let zero = ir.icmp(LLVMIntEQ, b, ir.int(0, t))
      let minusOne = ir.icmp(LLVMIntEQ, b, ir.int(-1, t))
      let safe = ir.select(ir.or(zero, minusOne), ir.int(1, t), b)
      let q = ir.sdiv(a, safe)
      return ir.select(zero, ir.int(-1, t), ir.select(minusOne, ir.sub(ir.int(0, t), a), q))
    case .max: return ir.intrinsic("llvm.smax", [t], [a, b])
    case .min: return ir.intrinsic("llvm.smin", [t], [a, b])
    case .and: return ir.and(a, b)
    case .or: return ir.or(a, b)
    default: return cannotLower("'\(code)' has no lowering for \(dtype)", dtype)
    }
  }

  func compare(_ code: OpCode, _ a: IRBuilder.V, _ b: IRBuilder.V, _ dtype: DType) -> IRBuilder.V {
    if dtype.isFloat {
      let p: LLVMRealPredicate
      switch code {
      case .eq: p = LLVMRealOEQ
      case .ne: p = LLVMRealUNE
      case .lt: p = LLVMRealOLT
      case .le: p = LLVMRealOLE
      case .gt: p = LLVMRealOGT
      default: p = LLVMRealOGE
      }
      return ir.fcmp(p, a, b)
    }
    let p: LLVMIntPredicate
    switch code {
    case .eq: p = LLVMIntEQ
    case .ne: p = LLVMIntNE
    case .lt: p = dtype == .i1 ? LLVMIntULT : LLVMIntSLT
    case .le: p = dtype == .i1 ? LLVMIntULE : LLVMIntSLE
    case .gt: p = dtype == .i1 ? LLVMIntUGT : LLVMIntSGT
    default: p = dtype == .i1 ? LLVMIntUGE : LLVMIntSGE
    }
    return ir.icmp(p, a, b)
  }

  /// The cast rules of IR-specs/ops/elementwise.md.
  func convert(_ x: IRBuilder.V, from: DType, to: DType) -> IRBuilder.V {
    let t = computeType(to)
    if from == to { return x }
    if from.isFloat && to.isFloat && computeType(from) == t { return x }   // half <-> f32 (rounded after)
    if to == .i1 {
      return from.isFloat ? ir.fcmp(LLVMRealUNE, x, ir.real(0, computeType(from))) : ir.icmp(LLVMIntNE, x, ir.int(0, computeType(from)))
    }
    if from == .i1 { return to.isFloat ? LLVMBuildUIToFP(ir.b, x, t, "") : ir.zext(x, t) }
    if from.isFloat && to.isFloat { return to == .f64 ? ir.fpext(x, t) : ir.fptrunc(x, t) }
    if from.isFloat {
      // Truncate toward zero, saturating at the 64-bit range, NaN -> 0, then wrap to the width.
      let wide = ir.intrinsic("llvm.fptosi.sat", [ir.i64, computeType(from)], [x])
      return to == .i64 ? wide : ir.trunc(wide, t)
    }
    if to.isFloat { return ir.sitofp(x, t) }
    return to.integerBits > from.integerBits ? ir.sext(x, t) : ir.trunc(x, t)
  }
}
