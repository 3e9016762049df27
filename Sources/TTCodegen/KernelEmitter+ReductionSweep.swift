// KernelEmitter+ReductionSweep — reductions over a block of axes that keeps the last one,
// swept so threads stream through whole rows (IR-specs/codegen.md, "Reductions"): which sweep a
// kernel takes (`reductionSweep`), and its emission: leading rows with per-chunk partials,
// leading columns (integers; half types through f64 blocks on the stack), middle blocks.

import CLLVM
import TTIR

/// How a reduction kernel shares its sweep among threads (KernelEmitter.emitReductionSweep).
public enum ReductionSweep: Equatable, Sendable {
  /// Over leading axes, f32/f64: the caller's `begin..<end` are rows of the flattened reduced
  /// axes (`rows`, outermost first); each chunk of rows gets an output row of its own, and the
  /// caller combines the chunks' rows in order with `combine`.
  case leadingRows(rows: [Dim], combine: SweepCombine)
  /// Over leading axes, integers and half types: `begin..<end` split the output's first axis (its columns).
  case leadingColumns
  /// Over a middle block of axes: `begin..<end` split the output's first axis, as for any kernel.
  case middle
}

/// How two partial results of a swept reduction combine: sum (means too, each partial already
/// divided by the whole count), IEEE maximum or minimum.
public enum SweepCombine: Sendable, Equatable {
  case sum, maximum, minimum
  init?(_ code: OpCode) {
    switch code {
    case .reduceSum, .reduceMean: self = .sum
    case .reduceMax: self = .maximum
    case .reduceMin: self = .minimum
    default: return nil
    }
  }
}

extension KernelEmitter {
  /// A body returning a leading-axes reduction swept by rows and then the value it reduces: the
  /// sweep stores each element as it accumulates it.
  static func returnsColumnReductionAndOperand(_ body: Function) -> Bool {
    guard body.returnValues.count == 2, let sweep = reductionSweep(body) else { return false }
    if case .middle = sweep { return false }
    return true
  }

  /// How the kernel of `body` sweeps its operand, when its root is a sum, mean, max or min over
  /// one contiguous block of axes that leaves the last axis (`emitReductionSweep`); nil when the
  /// generic loop nest computes it. The sweep accumulates in the output buffer, where half types
  /// would round at each step: they sweep only over leading axes into a rank-1 output (a bias
  /// gradient), accumulating in f64 blocks on the stack as the generic nest does in registers.
  static func reductionSweep(_ body: Function) -> ReductionSweep? {
    guard !body.returnValues.isEmpty, body.returnValues.count <= 2,
          case .result(let id, _) = body[body.returnValues[0]].definition else { return nil }
    let op = body[id]
    guard let combine = SweepCombine(op.code) else { return nil }
    let x = body.type(of: op.operands[0]), output = body.type(of: body.returnValues[0])
    guard let axes = try? ShapeRules.reductionAxes(op.attributes, rank: x.rank), let first = axes.first,
          axes == Array(first..<(first + axes.count)), first + axes.count < x.rank,
          !(op.attributes.bool("keepdims") ?? false) else { return nil }
    let half: Set<DType> = [.f16, .bf16]
    if half.contains(x.dtype) || half.contains(output.dtype) {
      guard first == 0, output.rank == 1, body.returnValues.count == 1 else { return nil }
    }
    if body.returnValues.count == 2 && (first != 0 || op.operands[0] != body.returnValues[1]) { return nil }
    if first > 0 { return .middle }
    // Partial rows are combined by the runtime, which (unlike a truncating integer mean) may
    // finish each partial on its own: floats only.
    return x.dtype == .f32 || x.dtype == .f64 ? .leadingRows(rows: Array(x.dims[0..<axes.count]), combine: combine) : .leadingColumns
  }

  /// Reductions over a block of axes that keeps the last one (a bias gradient or batch norm's
  /// per-channel statistics over N, H and W; global pooling over H and W): instead of one strided
  /// inner loop per output element, sweep the operand row by row and accumulate into the whole
  /// output row, so loads and accumulation are contiguous and vectorize. `reductionSweep` says how
  /// threads share the work:
  ///   - leading axes, f32/f64 (`leadingRows`): `begin..<end` are rows of the flattened reduced
  ///     axes; the runtime gives each chunk of rows its own output row (a partial, finished on its
  ///     own: a mean divides by the whole count) and combines the partials in chunk order. Every
  ///     thread streams through whole rows, which the hardware prefetchers follow.
  ///   - leading axes, integers (`leadingColumns`): threads split the output's columns.
  ///   - a middle block (`middle`): threads split the output's first (kept) axis.
  /// A second result (leading axes only) receives each reduced element as it is read.
  func emitReductionSweep(begin: IRBuilder.V, end: IRBuilder.V) -> Bool {
    guard let sweep = Self.reductionSweep(body), case .result(let id, _) = body[root].definition else { return false }
    let op = body[id]
    let x = body.type(of: op.operands[0])
    let axes = (try? ShapeRules.reductionAxes(op.attributes, rank: x.rank)) ?? []
    let (first, last) = (axes[0], axes[axes.count - 1] + 1)
    let output = signature.output
    let out = buffers[signature.inputs.count]
    let identity = reductionIdentity(op.code, x.dtype)
    let trailing = (last..<x.rank).map { (ir.int(0), size(x.dims[$0])) }
    let reducedBounds = (first..<last).map { (ir.int(0), size(x.dims[$0])) }
    /// Accumulates x[lead + reduced + t] into out[lead + t] for every trailing index t.
    func accumulate(lead: [IRBuilder.V], reduced: [IRBuilder.V]) {
      self.loopNest(trailing) { t in
        let offset = self.linear(lead + t, output)
        let acc = self.load(out, dtype: output.dtype, at: offset)
        let v = self.element(op.operands[0], lead + reduced + t)
        if self.body.returnValues.count == 2 {
          self.store(v, dtype: x.dtype, at: self.linear(lead + reduced + t, x), buffer: self.buffers[self.signature.inputs.count + 1])
        }
        self.store(self.combineReduction(op.code, acc, v, x.dtype), dtype: output.dtype, at: offset, buffer: out)
      }
    }
    /// Divides means by the whole count and makes empty float sums +0.0, over out[lead + bounds].
    func finish(_ bounds: [(IRBuilder.V, IRBuilder.V)], lead: [IRBuilder.V] = []) {
      guard op.code == .reduceMean || (op.code == .reduceSum && x.dtype.isFloat) else { return }
      let count = reducedCount(axes, of: x)
      loopNest(bounds) { index in
        let offset = self.linear(lead + index, output)
        let total = self.load(out, dtype: output.dtype, at: offset)
        let value = op.code == .reduceMean ? self.divideByCount(total, count, x.dtype)
          : self.emptySumIsPositiveZero(total, count: count, x.dtype)
        self.store(value, dtype: output.dtype, at: offset, buffer: out)
      }
    }
    switch sweep {
    case .leadingRows:
      let all = (0..<output.rank).map { (ir.int(0), size(output.dims[$0])) }
      loopNest(all) { index in self.store(identity, dtype: output.dtype, at: self.linear(index, output), buffer: out) }
      loopNest([(begin, end)]) { row in
        // The row's index in the reduced axes, last axis fastest.
        var rest = row[0], reduced: [IRBuilder.V] = []
        for d in (first..<last).reversed() {
          if d == first { reduced.insert(rest, at: 0); break }
          let extent = self.size(x.dims[d])
          reduced.insert(self.ir.srem(rest, extent), at: 0)
          rest = self.ir.sdiv(rest, extent)
        }
        accumulate(lead: [], reduced: reduced)
      }
      finish(all)
    case .leadingColumns where output.dtype == .f16 || output.dtype == .bf16:
      emitHalfColumnSweep(op, x: x, axes: axes, reducedBounds: reducedBounds, begin: begin, end: end)
    case .leadingColumns:
      let columns = (0..<output.rank).map { d in (d == 0 ? begin : ir.int(0), d == 0 ? end : size(output.dims[d])) }
      loopNest(columns) { index in self.store(identity, dtype: output.dtype, at: self.linear(index, output), buffer: out) }
      loopNest(reducedBounds) { reduced in
        if axes.count == 1 && x.rank == 2 { self.prefetchColumnSlice(row: reduced[0], columns: begin, end, of: x) }
        self.loopNest(columns) { index in
          let offset = self.linear(index, output)
          let acc = self.load(out, dtype: output.dtype, at: offset)
          let v = self.element(op.operands[0], reduced + index)
          if self.body.returnValues.count == 2 {
            self.store(v, dtype: x.dtype, at: self.linear(reduced + index, x), buffer: self.buffers[self.signature.inputs.count + 1])
          }
          self.store(self.combineReduction(op.code, acc, v, x.dtype), dtype: output.dtype, at: offset, buffer: out)
        }
      }
      finish(columns)
    case .middle:
      let lead = (0..<first).map { d in (d == 0 ? begin : ir.int(0), d == 0 ? end : size(output.dims[d])) }
      loopNest(lead) { leadIndex in
        self.loopNest(trailing) { t in self.store(identity, dtype: output.dtype, at: self.linear(leadIndex + t, output), buffer: out) }
        self.loopNest(reducedBounds) { reduced in accumulate(lead: leadIndex, reduced: reduced) }
        finish(trailing, lead: leadIndex)
      }
    }
    return true
  }

  /// Columns per block of a half column sweep's f64 accumulators (2 KiB on the stack).
  static let halfSweepBlock = 256

  /// A half type's sum, mean, max or min over leading axes into a rank-1 output, columns
  /// begin ..< end: per block of `halfSweepBlock` columns, f64 accumulators on the stack swept
  /// by rows of the operand (contiguous loads, vectorized over the columns), then each total
  /// finished in f64 and rounded through f32 to the half type, as the generic nest rounds it.
  func emitHalfColumnSweep(_ op: OpNode, x: TensorType, axes: [Int], reducedBounds: [(IRBuilder.V, IRBuilder.V)],
                           begin: IRBuilder.V, end: IRBuilder.V) {
    let output = signature.output, out = buffers[signature.inputs.count]
    let blockSize = Self.halfSweepBlock
    let current = LLVMGetInsertBlock(ir.b)!
    let entry = LLVMGetEntryBasicBlock(ir.currentFunction)!
    LLVMPositionBuilder(ir.b, entry, LLVMGetFirstInstruction(entry))
    let accumulators = LLVMBuildAlloca(ir.b, LLVMArrayType2(ir.f64, UInt64(blockSize)), "half_sweep")!
    LLVMSetAlignment(accumulators, 64)
    LLVMPositionBuilderAtEnd(ir.b, current)
    func accumulator(_ c: IRBuilder.V) -> IRBuilder.V { ir.gep(ir.f64, accumulators, c) }
    let identity = reductionIdentity(op.code, .f64), count = reducedCount(axes, of: x)
    let blocks = ir.sdiv(ir.add(ir.sub(end, begin), ir.int(blockSize - 1)), ir.int(blockSize))
    loopNest([(ir.int(0), blocks)]) { block in
      let start = self.ir.add(begin, self.ir.mul(block[0], self.ir.int(blockSize)))
      let stop = self.ir.select(self.ir.icmp(LLVMIntSLT, self.ir.sub(end, start), self.ir.int(blockSize)), end,
                                self.ir.add(start, self.ir.int(blockSize)))
      let width = self.ir.sub(stop, start)
      self.loopNest([(self.ir.int(0), width)]) { c in self.ir.store(identity, accumulator(c[0])) }
      self.loopNest(reducedBounds) { reduced in
        if axes.count == 1 && x.rank == 2 { self.prefetchColumnSlice(row: reduced[0], columns: start, stop, of: x) }
        self.loopNest([(self.ir.int(0), width)]) { c in
          let v = self.ir.fpext(self.element(op.operands[0], reduced + [self.ir.add(start, c[0])]), self.ir.f64)
          let slot = accumulator(c[0])
          self.ir.store(self.combineReduction(op.code, self.ir.load(self.ir.f64, slot), v, .f64), slot)
        }
      }
      self.loopNest([(self.ir.int(0), width)]) { c in
        var total = self.ir.load(self.ir.f64, accumulator(c[0]))
        if op.code == .reduceSum { total = self.emptySumIsPositiveZero(total, count: count, .f64) }
        if op.code == .reduceMean { total = self.divideByCount(total, count, .f64) }
        let rounded = self.roundedToHalf(self.ir.fptrunc(total, self.ir.f32), output.dtype)
        self.store(rounded, dtype: output.dtype, at: self.ir.add(start, c[0]), buffer: out)
      }
    }
  }

  /// A column reduction's thread reads a slice of every row: `columnReductionPrefetchRows` rows
  /// ahead, the slice of each argument shaped like the reduced operand is prefetched. Rows are
  /// a page or more apart and the hardware prefetchers do not cross pages, so without this each
  /// row's slice waited for memory. In W4's step the two bias-gradient kernels (operands
  /// [256, 1024], not in cache) took 15-25% less time (3, 6, 8 and 12 rows ahead measured alike).
  static let columnReductionPrefetchRows = 8

  func prefetchColumnSlice(row: IRBuilder.V, columns begin: IRBuilder.V, _ end: IRBuilder.V, of x: TensorType) {
    let elementBytes = ir.int(x.dtype.byteSize)
    let ahead = ir.add(row, ir.int(Self.columnReductionPrefetchRows))
    let start = ir.mul(ir.add(ir.mul(ahead, size(x.dims[1])), begin), elementBytes)
    prefetch(bytes: ir.mul(ir.sub(end, begin), elementBytes), from: start, ofArgumentsShaped: x)
  }
}
