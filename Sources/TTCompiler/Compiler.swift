// Compiler — turns a Module's function into a Program the runtime runs (TTRuntime/Program.swift):
// verify, run the pass pipeline (calls inlined, composites expanded, -O2: Pipelines.codegen; the
// verifier between passes in debug builds and with `verifyEach`), then lower each top-level op of
// the optimized function to a thunk and give each value a slot:
//   fusion (loop / reduction)  -> one JIT kernel for the whole region
//   fusion (gemm)              -> a GEMM, then one kernel for the epilogue
//   matmul                     -> a GEMM (transposes folded into its flags; a matmul whose only
//                                 reader sums it over the batch becomes one GEMM with that sum)
//   conv2d and its gradients   -> a ConvKernels routine (f32/f64: im2col + GEMM, plain GEMM for
//                                 1x1, direct loops for depthwise)
//   layer_norm(_grad), integer-label softmax_cross_entropy, dropout, random_bits, gather,
//   scatter_add                -> a RowKernels routine (per row or element, over the pool)
//   embedding_lookup(_pooled)  -> a lookup of the module's table
//   any other op               -> a one-op JIT kernel
//   anything the code generator cannot compile (the allow-list of OpInfo.codegen: f16/bf16,
//   gather, argmax, ...)       -> the reference interpreter for that op or region
// Kernels compile in parallel before lowering (KernelCache.precompile); elementwise regions are
// compiled shape-free (FlatKernels), and large function results are written with streaming stores
// (`streams`). Memory is planned here by kind and lifetime (arena values, arguments, pinned
// donated state, parameters, constants, and which kernels may write an operand's memory in
// place); an Executable binds the kinds to buffers and lays arenas out per capacity binding.

import Foundation
import TTCodegen
import TTEmbedding
import TTIR
import TTInterp
import TTPasses
import TTRuntime
import TTSupport

/// How to compile a function.
public struct CompileOptions: Sendable {
  /// The pass pipeline (the one code generation expects by default).
  public var pipeline: Pipeline
  /// Arguments the program may overwrite once read (a training step donates its state).
  public var donated: Set<Int>
  /// Result index -> donated argument whose buffer that result should take when it can.
  public var aliasing: [Int: Int]
  /// Verify the module after every pass (on by default in debug builds, so tests do).
  public var verifyEach: Bool
  /// Threads that compile kernels in parallel.
  public var compileThreads: Int

  public init(pipeline: Pipeline = Pipelines.codegen, donated: Set<Int> = [], aliasing: [Int: Int] = [:],
              verifyEach: Bool = CompileOptions.verifyEachByDefault, compileThreads: Int = ThreadPool.shared.threadCount) {
    self.pipeline = pipeline; self.donated = donated; self.aliasing = aliasing
    self.verifyEach = verifyEach; self.compileThreads = compileThreads
  }

  #if DEBUG
  /// Verification after every pass is on by default in debug builds (so tests always verify).
  public static let verifyEachByDefault = true
  #else
  /// Verification after every pass is off by default in release builds.
  public static let verifyEachByDefault = false
  #endif
}

/// Compiles a function of a `Module` into a `Program` that TTRuntime's `Executable` runs.
///
/// ``compile(_:function:options:)`` verifies the module, runs the pass pipeline (the verifier
/// between passes with ``CompileOptions/verifyEach``), lowers each op of the optimized function to
/// a thunk (a JIT kernel per fusion region, a GEMM, a table lookup, or the reference interpreter
/// for what the code generator does not compile), plans every value's memory, and compiles the
/// kernels in parallel.
public enum Compiler {
  /// A quarter of the last-level cache (8 MiB when sysfs does not say), at least 4 MiB;
  /// `TTFC_STREAMING_BYTES` overrides it (0 streams every function result).
  public static let streamingThreshold: Int = {
    if let text = getenv("TTFC_STREAMING_BYTES"), let bytes = Int(String(cString: text)) { return bytes }
    return max(4 << 20, (HostInfo.lastLevelCacheBytes() ?? (32 << 20)) / 4)
  }()

  /// Compiles `functionName` of `module` into a program.
  public static func compile(_ module: Module, function functionName: String,
                             options: CompileOptions = CompileOptions()) throws(ExecutableError) -> Program {
    let problems = Verifier.verify(module)
    if let first = problems.first { throw .invalid("module does not verify: \(first)") }
    guard let original = module.function(named: functionName) else { throw .invalid("no function named '@\(functionName)'") }
    // ttfc's GEMM routines (JitGemm) compile once per process, on a thread of their own started
    // here, while the passes run and the kernels compile, if any function of the module has an
    // f32 or half matmul (HalfGemm's portable path runs on JitGemm); the end of this function
    // waits for them, so what a process compiles does not depend on timing (nor on whether a GEMM
    // of the first run is large enough to use them).
    let wantsGemmRoutines = module.functions.contains { f in
      f.body.contains { id in
        (f[id].code == .matmul && f[id].results.first.map { [.f32, .f16, .bf16].contains(f.type(of: $0).dtype) } == true)
          || (ProgramBuilder.convolutionCodes.contains(f[id].code) && f[id].results.first.map { f.type(of: $0).dtype == .f32 } == true)
      }
    }
    if wantsGemmRoutines { JitGemm.compileInBackground() }
    defer { if wantsGemmRoutines { _ = JitGemm.enabled } }
    // Likewise the half GEMM's routines (HalfGemm) for a module with an f16 or bf16 matmul.
    let wantsHalfRoutines = module.functions.contains { f in
      f.body.contains { id in f[id].code == .matmul && f[id].results.first.map { [.f16, .bf16].contains(f.type(of: $0).dtype) } == true }
    }
    if wantsHalfRoutines { HalfGemm.compileInBackground() }
    defer { if wantsHalfRoutines { _ = HalfGemm.available } }
    // Routines already compiled by an earlier program of the process cost this one nothing.
    let routinesBefore = JitGemm.compileSeconds + HalfGemm.compileSeconds
    let start = DispatchClock.now()
    var optimized = module
    let passes = PassContext()
    do { try PassManager(verifyEach: options.verifyEach).run(options.pipeline, on: &optimized, context: passes) }
    catch { throw .invalid("\(error)") }
    guard let lowered = optimized.function(named: functionName) else {
      throw .invalid("the pipeline removed '@\(functionName)'")
    }
    var statistics = ExecutableStatistics()
    statistics.optimizeSeconds = DispatchClock.now() - start
    statistics.phaseSlices = passes.timings.map { .init(name: "pass " + $0.pass, start: $0.start, end: $0.start + $0.seconds) }
    statistics.passTimes = passes.timeByPass.map { ExecutableStatistics.PassTime(pass: $0.pass, runs: $0.runs, seconds: $0.seconds, cpuSeconds: $0.cpuSeconds) }
    statistics.passWork = passes.work
    let phasesBefore = KernelCache.shared.phases
    let builder = ProgramBuilder(module: module, lowered: lowered, donated: options.donated, statistics: statistics)
    try builder.build(compileThreads: options.compileThreads)
    // Wait for the GEMM routines (what a process compiles does not depend on timing).
    if wantsGemmRoutines { _ = JitGemm.enabled }
    if wantsHalfRoutines { _ = HalfGemm.available }
    let phases = KernelCache.shared.phases
    builder.statistics.kernelPhases = KernelCache.PhaseSeconds(
      emit: phases.emit - phasesBefore.emit, optimize: phases.optimize - phasesBefore.optimize,
      machineCode: phases.machineCode - phasesBefore.machineCode, link: phases.link - phasesBefore.link)
    builder.statistics.gemmRoutineSeconds = JitGemm.compileSeconds + HalfGemm.compileSeconds - routinesBefore
    builder.statistics.compileSeconds = DispatchClock.now() - start
    builder.statistics.phaseSlices.insert(.init(name: "compile", start: start, end: start + builder.statistics.compileSeconds), at: 0)
    var program = Program(module: module, function: original, lowered: lowered, optimizedModule: optimized, symbols: builder.symbols,
                          slots: builder.slots, thunks: builder.thunks, outputs: builder.outputs, donated: options.donated,
                          aliasing: options.aliasing, statistics: builder.statistics, nonEmptyRequirements: passes.nonEmptyRequirements)
    program.thunkOps = builder.thunkOps
    return program
  }
}

extension Executable {
  /// Compiles `functionName` of `module` (Compiler.compile) and makes it runnable with these
  /// parameter values and tables (Executable.init(program:)).
  public convenience init(module: Module, function functionName: String, params: [String: Tensor] = [:],
                          tables: [String: EmbeddingTable] = [:], pool: ThreadPool = .shared,
                          pipeline: Pipeline = Pipelines.codegen, donating donated: Set<Int> = [], aliasing: [Int: Int] = [:],
                          placeholderParams: Bool = false, verifyEach: Bool = CompileOptions.verifyEachByDefault,
                          sharingPinnedBuffersWith other: Executable? = nil) throws(ExecutableError) {
    let options = CompileOptions(pipeline: pipeline, donated: donated, aliasing: aliasing, verifyEach: verifyEach,
                                 compileThreads: pool.threadCount)
    let program = try Compiler.compile(module, function: functionName, options: options)
    try self.init(program: program, params: params, tables: tables, pool: pool, placeholderParams: placeholderParams,
                  sharingPinnedBuffersWith: other)
  }
}

/// Lowers the optimized function's ops to thunks and slots, one op at a time, in order.
final class ProgramBuilder {
  let module: Module
  let lowered: Function
  let donated: Set<Int>
  var statistics: ExecutableStatistics
  let symbols: [String]
  var slots: [Program.Slot] = []
  var slotOf: [ValueID: Int] = [:]
  var thunks: [Program.Thunk] = []
  /// The lowered op (body index) of each thunk.
  var thunkOps: [Int] = []
  var outputs: [Int] = []
  /// Matmuls folded into the batch sum that reads them: result -> (A slot, B slot).
  var deferredMatmuls: [ValueID: (Int, Int)] = [:]
  /// Index in `lowered.body` of each value's last reader, and of the op being lowered.
  var lastUse: [ValueID: Int] = [:]
  var currentOp = 0
  /// The function's results, and how many ops read each value: asked per op, so built once (a
  /// set per op was quadratic in a deep model's step, which returns thousands of values).
  let returned: Set<ValueID>
  var readerCount: [ValueID: Int] = [:]

  init(module: Module, lowered: Function, donated: Set<Int>, statistics: ExecutableStatistics) {
    self.module = module; self.lowered = lowered; self.donated = donated; self.statistics = statistics
    returned = Set(lowered.returnValues)
    for id in lowered.body { for v in Set(lowered[id].operands) { readerCount[v, default: 0] += 1 } }
    var set = Set<String>()
    for v in lowered.values { set.formUnion(v.type.symbols) }
    symbols = set.sorted()
  }

  func build(compileThreads: Int) throws(ExecutableError) {
    // Values defined outside the body: arguments (pinned when donated and static-shaped) and
    // the parameters the function reads (a table's global is read by its lookups instead).
    for (k, value) in lowered.values.enumerated() {
      switch value.definition {
      case .argument(let i):
        let pinned = donated.contains(i) && value.type.staticShape.flatMap(elementCount) != nil
        slotOf[ValueID(k)] = addSlot(value.type, pinned ? .pinned(i) : .argument(i))
      case .global(let name):
        guard module.param(named: name) != nil else { continue }
        slotOf[ValueID(k)] = addSlot(value.type, .parameter(name))
      case .result: break
      }
    }
    // Compile every kernel the lowering below will ask for, in parallel; lowering then finds
    // them in the cache (and still decides fallbacks itself, one op at a time).
    for (i, id) in lowered.body.enumerated() { for v in lowered[id].operands { lastUse[v] = i } }
    let kernelsStart = DispatchClock.now()
    KernelCache.shared.precompile(kernelRequests(), threads: compileThreads)
    let loweringStart = DispatchClock.now()
    statistics.phaseSlices.append(.init(name: "compile kernels", start: kernelsStart, end: loweringStart))
    for (i, id) in lowered.body.enumerated() {
      currentOp = i
      try lower(lowered[id])
      while thunkOps.count < thunks.count { thunkOps.append(i) }
    }
    statistics.phaseSlices.append(.init(name: "lower to thunks", start: loweringStart, end: DispatchClock.now()))
    for v in lowered.returnValues {
      guard let slot = slotOf[v] else { throw .invalid("'@\(lowered.name)' returns '\(lowered[v].name)', which has no storage") }
      outputs.append(slot)
    }
  }

  /// Splats larger than this are computed by a fill kernel into the arena (where the memory
  /// budget applies) instead of being expanded in the compiler's memory.
  static let largestMaterializedSplat = 1 << 20

  /// Whether a constant lives in a buffer of its own, filled at instantiation: a static-shaped
  /// constant written out in full, or a splat of at most `largestMaterializedSplat` elements.
  func isMaterializedConstant(_ op: OpNode) -> Bool {
    guard op.code == .constant, let value = op.constantValue, let shape = lowered.type(of: op.results[0]).staticShape,
          let count = elementCount(shape) else { return false }
    return value.shape == shape || count <= Self.largestMaterializedSplat
  }

  func addSlot(_ type: TensorType, _ storage: Program.Slot.Storage) -> Int {
    slots.append(Program.Slot(type: type, storage: storage))
    return slots.count - 1
  }

  func lower(_ op: OpNode) throws(ExecutableError) {
    if isMaterializedConstant(op), let value = op.constantValue, let shape = lowered.type(of: op.results[0]).staticShape {
      let full = value.shape == shape ? value : Tensor.filled(value.dtype, shape: shape, value: value.doubles.first ?? 0)
      slotOf[op.results[0]] = addSlot(lowered.type(of: op.results[0]), .constant(full))
      return
    }
    let results = op.results.map { r in addSlot(lowered.type(of: r), .arena) }
    for (r, s) in zip(op.results, results) { slotOf[r] = s }
    let operands = op.operands.map { slotOf[$0] ?? -1 }   // -1: a table operand
    if op.code == .fusion, let body = op.body {
      if case .string("gemm")? = op.attributes["kind"], lowerGemmRegion(body, op: op, operands: operands, result: results[0]) { return }
      if tryLayoutCopy(body, operands: operands, results: results) { return }
      if tryKernel(body, operands: operands, results: results, inPlace: dyingArguments(body, op.operands), values: op.results) { return }
      try interpretRegion(body, operands: operands, results: results)
      return
    }
    if op.code == .embeddingLookup || op.code == .embeddingLookupPooled {
      guard case .global(let name) = lowered[op.operands[0]].definition, module.tables.contains(where: { $0.name == name }) else {
        throw .invalid("'\(op.code)' reads no table")
      }
      thunks.append(.table(name, op, operands: Array(operands.dropFirst()), result: results[0]))
      return
    }
    if let routine = rowRoutine(op) {
      thunks.append(.rows(routine, operands: operands, results: results))
      statistics.rowRoutines += 1
      return
    }
    if let (kind, geometry) = convolution(op) {
      thunks.append(.conv(kind, geometry, operands: operands, result: results[0]))
      statistics.convolutions += 1
      return
    }
    if let (kind, geometry) = pooling(op) {
      thunks.append(.pool(kind, geometry, operands: operands, result: results[0]))
      statistics.poolings += 1
      return
    }
    if Self.convolutionCodes.contains(op.code) || Self.poolingCodes[op.code] != nil {
      let dtype = lowered.type(of: op.results[0]).dtype
      if Self.poolingCodes[op.code] != nil {
        statistics.fallbackReasons["\(op.code) on \(dtype): compiled pooling takes f32, f64 and (where the half routines compile) bf16 and f16", default: 0] += 1
        statistics.interpreted += 1
        statistics.interpretedOps[op.code.rawValue, default: 0] += 1
        thunks.append(.interpretOp(op, operands: operands, result: results[0]))
        return
      }
      statistics.fallbackReasons["\(op.code) on \(dtype): compiled convolutions take f32, f64 and (where the half routines compile) bf16 and f16", default: 0] += 1
      statistics.interpreted += 1
      statistics.interpretedOps[op.code.rawValue, default: 0] += 1
      thunks.append(.interpretOp(op, operands: operands, result: results[0]))
      return
    }
    if op.code == .matmul, summedOverBatch(op) {
      deferredMatmuls[op.results[0]] = (operands[0], operands[1])
      return
    }
    if op.code == .reduceSum, let (a, b) = deferredMatmuls[op.operands[0]] {
      thunks.append(.gemmSummedOverBatch(a: a, b: b, c: results[0]))
      statistics.gemms += 1
      return
    }
    if op.code == .matmul, gemmSupported(op.operands.map { lowered.type(of: $0) }) {
      thunks.append(.gemm(a: operands[0], b: operands[1], c: results[0],
                          transposeA: op.attributes.bool("transpose_a") ?? false,
                          transposeB: op.attributes.bool("transpose_b") ?? false))
      statistics.gemms += 1
      return
    }
    if op.code == .matmul {
      // Say why, rather than the kernel emitter's "runs as a routine of its own".
      let dtype = lowered.type(of: op.operands[0]).dtype
      let reason = dtype == .f16 && HalfGemm.available ? "matmul on f16 needs F16C, which this CPU lacks"
        : dtype.isFloat ? "matmul on \(dtype): ttfc's GEMM routines did not compile" : "matmul on \(dtype): ttfc's GEMM handles f64, f32, f16 and bf16"
      statistics.fallbackReasons[reason, default: 0] += 1
      statistics.interpreted += 1
      statistics.interpretedOps[op.code.rawValue, default: 0] += 1
      thunks.append(.interpretOp(op, operands: operands, result: results[0]))
      return
    }
    // A single op: as a one-op kernel if it compiles, else on the interpreter.
    let single = singleOpBody(op)
    if op.results.count == 1, tryLayoutCopy(single, operands: operands, results: results) { return }
    if op.results.count == 1, tryKernel(single, operands: operands, results: results, inPlace: dyingArguments(single, op.operands),
                                        values: op.results) { return }
    if op.code == .call || op.code == .fusion || op.results.count != 1 {
      try interpretRegion(single, operands: operands, results: results)
      return
    }
    statistics.interpreted += 1
    statistics.interpretedOps[op.code.rawValue, default: 0] += 1
    thunks.append(.interpretOp(op, operands: operands, result: results[0]))
  }

  static let convolutionCodes: Set<OpCode> = [.conv2d, .conv2dBackpropInput, .conv2dBackpropFilter]
  static let poolingCodes: [OpCode: PoolKind] = [.maxPool: .maxPool, .maxPoolGrad: .maxPoolGrad, .avgPool: .avgPool, .avgPoolGrad: .avgPoolGrad]

  /// The RowKernels routine that computes `op`: layer_norm, layer_norm_grad, softmax_cross_entropy
  /// with integer labels and dropout (f32, f64), random_bits, gather (any element type) and
  /// scatter_add (f32, f64, i32, i64). Nil for other ops and element types (they run on the
  /// interpreter).
  func rowRoutine(_ op: OpNode) -> RowRoutine? {
    guard let first = op.operands.first, op.results.count >= 1 else { return nil }
    let data = lowered.type(of: first)
    let result = lowered.type(of: op.results[0])
    func axis() -> Int? { try? ShapeRules.axis(op.attributes.int("axis") ?? 0, rank: data.rank) }
    switch op.code {
    case .randomBits:
      return .randomBits(seed: Int64(op.attributes.int("seed") ?? 0), stream: Int64(op.attributes.int("stream") ?? 0))
    case .dropout where data.dtype == .f32 || data.dtype == .f64:
      return .dropout(rate: op.attributes.double("rate") ?? 0, seed: Int64(op.attributes.int("seed") ?? 0),
                      stream: Int64(op.attributes.int("stream") ?? 0))
    case .gather where op.operands.count == 2 && data.rank >= 1:
      return axis().map { .gather(axis: $0) }
    case .scatterAdd where op.operands.count == 3 && [.f32, .f64, .i32, .i64].contains(result.dtype) && data.rank >= 1:
      return axis().map { .scatterAdd(axis: $0) }
    case .attention where op.results.count == 2 && (data.dtype == .f32 || data.dtype == .f64),
         .attentionGrad where op.results.count == 3 && (data.dtype == .f32 || data.dtype == .f64):
      let (scale, rate) = (op.attributes.double("scale") ?? 1, op.attributes.double("rate") ?? 0)
      let (seed, stream) = (Int64(op.attributes.int("seed") ?? 0), Int64(op.attributes.int("stream") ?? 0))
      return op.code == .attention ? .attention(scale: scale, rate: rate, seed: seed, stream: stream)
        : .attentionGrad(scale: scale, rate: rate, seed: seed, stream: stream)
    default: break
    }
    guard data.dtype == .f32 || data.dtype == .f64, data.rank >= 1 else { return nil }
    let epsilon = (try? ShapeRules.layerNormEpsilon(op.attributes)) ?? 1e-5
    switch op.code {
    case .layerNorm where op.results.count == 1: return .layerNorm(epsilon: epsilon)
    case .layerNormGrad where op.results.count == 3: return .layerNormGrad(epsilon: epsilon)
    case .softmaxCrossEntropy where op.operands.count == 2 && lowered.type(of: op.operands[1]).dtype.isInteger:
      return .sparseSoftmaxCrossEntropy
    default: return nil
    }
  }

  /// A pooling op that PoolKernels computes (f32 and f64; bf16 and f16 as for convolutions; static
  /// spatial and channel sizes; the batch may be symbolic): its kind and geometry. Nil otherwise.
  func pooling(_ op: OpNode) -> (PoolKind, PoolGeometry)? {
    guard let kind = Self.poolingCodes[op.code], op.results.count == 1 else { return nil }
    let result = lowered.type(of: op.results[0])
    guard result.dtype == .f32 || result.dtype == .f64 || HalfWidened.supports(result.dtype) else { return nil }
    // The input's type: the forward ops' operand, the gradients' result.
    let input = kind == .maxPool || kind == .avgPool ? lowered.type(of: op.operands[0]) : result
    guard input.rank == 4, let channels = input.dims[3].staticSize, input.dims[1].staticSize != nil, input.dims[2].staticSize != nil,
          let window = try? ShapeRules.window2D(input: input, window: op.attributes.ints("window") ?? [], attributes: op.attributes,
                                                dilated: false, poolPadding: true) else { return nil }
    return (kind, PoolGeometry(window: window, channels: channels, countIncludePad: op.attributes.bool("count_include_pad") ?? false))
  }

  /// A conv2d or one of its gradient ops that ConvKernels computes (f32 and f64; bf16 and f16
  /// widened to f32 where HalfWidened runs; static spatial and channel sizes; the batch may be
  /// symbolic): its kind and geometry. Nil for other ops.
  func convolution(_ op: OpNode) -> (ConvKind, ConvGeometry)? {
    guard Self.convolutionCodes.contains(op.code), op.operands.count == 2, op.results.count == 1 else { return nil }
    let result = lowered.type(of: op.results[0])
    guard result.dtype == .f32 || result.dtype == .f64 || HalfWidened.supports(result.dtype) else { return nil }
    let kind: ConvKind, input: TensorType, filter: TensorType
    switch op.code {
    case .conv2d: kind = .forward; input = lowered.type(of: op.operands[0]); filter = lowered.type(of: op.operands[1])
    case .conv2dBackpropInput: kind = .backpropInput; input = result; filter = lowered.type(of: op.operands[1])
    default: kind = .backpropFilter; input = lowered.type(of: op.operands[0]); filter = result
    }
    guard input.rank == 4, filter.rank == 4, let fs = filter.staticShape, let cin = input.dims[3].staticSize,
          let window = try? ShapeRules.window2D(input: input, window: [fs[0], fs[1]], attributes: op.attributes, dilated: true,
                                                poolPadding: false) else { return nil }
    let groups = op.attributes.int("groups") ?? 1
    guard groups >= 1, cin % groups == 0, fs[3] % groups == 0, fs[2] * groups == cin else { return nil }
    return (kind, ConvGeometry(window: window, cin: cin, cout: fs[3], groups: groups))
  }

  /// Whether `op` is `matmul(A, B, transpose_a)` over equal batch dims whose only reader sums its
  /// result over exactly those batch dims: then both become one GEMM over the flattened rows
  /// (`gemmSummedOverBatch`), instead of a GEMM per batch element and a reduction. Not for half
  /// types: their per-batch products round to the half type before the sum, and one GEMM would
  /// skip that rounding (several half ulps apart from the interpreter).
  func summedOverBatch(_ op: OpNode) -> Bool {
    let ta = lowered.type(of: op.operands[0]), tb = lowered.type(of: op.operands[1])
    guard ta.dtype == .f32 || ta.dtype == .f64,
          (op.attributes.bool("transpose_a") ?? false), !(op.attributes.bool("transpose_b") ?? false),
          ta.rank >= 3, ta.rank == tb.rank, ta.dims.dropLast(2) == tb.dims.dropLast(2),
          gemmSupported([ta, tb]), !returned.contains(op.results[0]), readerCount[op.results[0]] == 1,
          let last = lastUse[op.results[0]] else { return false }
    let reader = lowered[lowered.body[last]]
    return reader.code == .reduceSum && reader.operands == [op.results[0]] && !(reader.attributes.bool("keepdims") ?? false)
      && reader.attributes.ints("axes") == Array(0..<(ta.rank - 2))
  }

  /// The kernels `lower` will ask for, in order: fusion regions (a gemm region's epilogue), and
  /// one-op bodies for the other non-BLAS ops, each with the arguments it may overwrite.
  func kernelRequests() -> [KernelCache.Request] {
    var requests: [KernelCache.Request] = []
    for (i, id) in lowered.body.enumerated() {
      currentOp = i
      let op = lowered[id]
      if isMaterializedConstant(op) { continue }
      if op.code == .fusion, let body = op.body {
        if case .string("gemm")? = op.attributes["kind"], let epilogue = Self.gemmEpilogue(body, operands: Array(op.operands.indices)) {
          requests.append(KernelCache.Request(epilogue.body))
        } else {
          let inPlace = dyingArguments(body, op.operands)
          requests.append(KernelCache.Request(Self.kernelBody(body), streamingOutput: streams(op.results, inPlace: inPlace)))
        }
        continue
      }
      if Self.convolutionCodes.contains(op.code) { continue }   // a ConvKernels routine or the interpreter
      if rowRoutine(op) != nil { continue }   // a RowKernels routine
      if op.code == .matmul { continue }   // a GEMM, or the interpreter (no kernel for a matmul)
      if op.code.info.opClass == .table { continue }
      if op.code == .reduceSum, case .result(let producer, _) = lowered[op.operands[0]].definition,
         lowered[producer].code == .matmul, summedOverBatch(lowered[producer]) { continue }
      if op.results.count == 1 {
        let single = singleOpBody(op)
        let inPlace = dyingArguments(single, op.operands)
        requests.append(KernelCache.Request(Self.kernelBody(single), streamingOutput: streams(op.results, inPlace: inPlace)))
      }
    }
    return requests
  }

  /// Arguments of a kernel body (for the op being lowered, reading `values`) whose memory its
  /// output may take: elementwise bodies only, an argument of the output's type whose value is
  /// read for the last time here and may be overwritten (not a function result, parameter or
  /// constant, nor an argument the caller did not donate).
  func dyingArguments(_ body: Function, _ values: [ValueID]) -> [Int] {
    guard body.isElementwise, let output = body.resultTypes.first else { return [] }
    return body.arguments.indices.filter { k in
      let v = values[k]
      guard body.type(of: body.arguments[k]) == output, lastUse[v] == currentOp, !returned.contains(v) else { return false }
      switch lowered[v].definition {
      case .argument(let i): return donated.contains(i)
      case .global: return false
      case .result(let producer, _): return lowered[producer].code != .constant
      }
    }
  }

  /// Whether the kernel computing `values` may write it with non-temporal (cache-bypassing)
  /// stores: one value, a function result no op here reads, written to fresh arena memory
  /// (64-byte aligned), statically at least `streamingThreshold` bytes — too large to be still
  /// cached when the caller reads it, so caching it would only evict the kernel's own inputs.
  func streams(_ values: [ValueID], inPlace: [Int]) -> Bool {
    guard values.count == 1, let value = values.first,
          inPlace.isEmpty, returned.contains(value), lastUse[value] == nil,
          let shape = lowered.type(of: value).staticShape else { return false }
    return shape.reduce(1, *) * lowered.type(of: value).dtype.byteSize >= Compiler.streamingThreshold
  }


  /// A gemm epilogue's product (argument 0) always dies in the epilogue; the rest as above.
  func epilogueInPlace(_ epilogue: Function, _ values: [ValueID]) -> [Int] {
    guard epilogue.isElementwise, let output = epilogue.resultTypes.first else { return [] }
    let product = epilogue.type(of: epilogue.arguments[0]) == output ? [0] : []
    var rest = epilogue
    rest.arguments = Array(epilogue.arguments.dropFirst())
    return product + dyingArguments(rest, values).map { $0 + 1 }
  }

  /// The body a kernel is compiled from: elementwise bodies flattened to one shape-free kernel
  /// (FlatKernels), others as they are. (Gemm epilogues are not flattened: they broadcast a bias.)
  static func kernelBody(_ body: Function) -> Function { FlatKernels.flattened(body) ?? body }

  /// A function of one op, its operands as arguments.
  func singleOpBody(_ op: OpNode) -> Function {
    var single = Function(name: "op")
    let arguments = op.operands.map { single.addArgument(name: lowered[$0].name, type: lowered.type(of: $0)) }
    let id = single.append(op.code, arguments, resultTypes: op.results.map { lowered.type(of: $0) },
                           attributes: op.attributes, callee: op.callee, regions: op.regions)
    single.returnValues = single[id].results
    single.resultTypes = op.results.map { lowered.type(of: $0) }
    return single
  }

  /// Float matmuls whose operands share one type: f32 and f64 (JitGemm, OpenBLAS), f16 and bf16
  /// (HalfGemm: f32 accumulation, rounded once to the result type).
  func gemmSupported(_ types: [TensorType]) -> Bool {
    guard let first = types.first?.dtype, types.allSatisfy({ $0.dtype == first }) else { return false }
    switch first {
    case .f32, .f64: return true
    case .f16, .bf16: return HalfGemm.supports(first)
    default: return false
    }
  }

  /// A region (or op) that only reshapes and transposes one operand, as a strided copy
  /// (LayoutCopy) instead of an elemental kernel, whose per-element index arithmetic and gathers
  /// ran these at a third of memory speed. Only when the copy's view exists at every size: all
  /// shapes static (checked here), or a lone transpose (always a view). TTFC_LAYOUT_COPY=off
  /// keeps the kernels (for comparison).
  func tryLayoutCopy(_ body: Function, operands: [Int], results: [Int]) -> Bool {
    guard Self.layoutCopiesEnabled, operands.count == 1, results.count == 1, operands[0] >= 0,
          let layout = LayoutCopy.chain(of: body) else { return false }
    let loneTranspose = body.body.count == 1
    if !loneTranspose {
      let values = body.arguments + body.body.flatMap { body[$0].results }
      guard values.allSatisfy({ body.type(of: $0).staticShape != nil }),
            let shape = body.type(of: body.arguments[0]).staticShape,
            layout.view(inputShape: shape, symbol: { _ in 0 }) != nil else { return false }
    }
    thunks.append(.copy(layout, operand: operands[0], result: results[0]))
    statistics.layoutCopies += 1
    return true
  }
  static let layoutCopiesEnabled: Bool = {
    guard let text = getenv("TTFC_LAYOUT_COPY") else { return true }
    return String(cString: text) != "off"
  }()

  /// `inPlace`: argument positions whose memory an output may take (the body is elementwise, so
  /// element i of such an operand is read only for output element i).
  /// `values`: the function values the kernel computes, for `streams`.
  func tryKernel(_ body: Function, operands: [Int], results: [Int], inPlace: [Int], values: [ValueID]) -> Bool {
    do {
      let kernel = try KernelCache.shared.kernel(for: Self.kernelBody(body), streamingOutput: streams(values, inPlace: inPlace))
      thunks.append(.kernel(kernel, operands: operands, results: results, inPlace: inPlace.map { operands[$0] }))
      statistics.kernels += 1
      return true
    } catch {
      if case .unsupported(let reason) = error { statistics.fallbackReasons[reason, default: 0] += 1 }
      else { statistics.fallbackReasons["\(error)", default: 0] += 1 }
      return false
    }
  }

  func interpretRegion(_ body: Function, operands: [Int], results: [Int]) throws(ExecutableError) {
    var module = Module(name: "region")
    var f = body
    f.name = "region"
    module.functions = [f]
    do {
      thunks.append(.interpretRegion(try Interpreter(module: module), operands: operands, results: results))
      statistics.interpreted += 1
      for id in body.body where body[id].code != .constant { statistics.interpretedOps[body[id].code.rawValue, default: 0] += 1 }
    } catch {
      throw .invalid("cannot prepare a region for the interpreter: \(error)")
    }
  }

  /// The epilogue of a gemm region (everything after its leading matmul) as its own body, whose
  /// first argument is the product, with the region operands it reads; nil if the region is not
  /// a supported matmul followed by an epilogue over region arguments.
  static func gemmEpilogue(_ body: Function, operands: [Int]) -> (body: Function, operands: [Int], matmul: OpNode, a: Int, b: Int)? {
    guard let first = body.body.first, body[first].code == .matmul else { return nil }
    let matmul = body[first]
    let argumentIndex: (ValueID) -> Int? = { v in body.arguments.firstIndex(of: v) }
    guard let ia = argumentIndex(matmul.operands[0]), let ib = argumentIndex(matmul.operands[1]) else { return nil }
    let product = matmul.results[0]
    var epilogue = Function(name: "epilogue")
    var map: [ValueID: ValueID] = [:]
    var epilogueOperands: [Int] = []
    map[product] = epilogue.addArgument(name: body[product].name, type: body.type(of: product))
    for id in body.body.dropFirst() {
      let op = body[id]
      var inner: [ValueID] = []
      for v in op.operands {
        if let m = map[v] { inner.append(m); continue }
        guard let k = argumentIndex(v) else { return nil }
        let a = epilogue.addArgument(name: body[v].name, type: body.type(of: v))
        map[v] = a
        epilogueOperands.append(operands[k])
        inner.append(a)
      }
      let newID = epilogue.append(op.code, inner, resultTypes: op.results.map { body.type(of: $0) },
                                  resultNames: op.results.map { body[$0].name }, attributes: op.attributes)
      for (o, n) in zip(op.results, epilogue[newID].results) { map[o] = n }
    }
    epilogue.returnValues = [map[body.returnValues[0]]!]
    epilogue.resultTypes = body.resultTypes
    return (epilogue, epilogueOperands, matmul, operands[ia], operands[ib])
  }

  /// matmul (BLAS) + epilogue (one kernel reading the matmul's result). False if the region is not
  /// of that form or the epilogue does not compile; the caller then falls back.
  func lowerGemmRegion(_ body: Function, op: OpNode, operands: [Int], result: Int) -> Bool {
    guard let (epilogue, positions, matmul, ia, ib) = Self.gemmEpilogue(body, operands: Array(operands.indices)),
          gemmSupported(matmul.operands.map { body.type(of: $0) }) else { return false }
    let a = operands[ia], b = operands[ib]
    let epilogueOperands = positions.map { operands[$0] }
    let inPlace = epilogueInPlace(epilogue, positions.map { op.operands[$0] })
    let kernel: CompiledKernel
    do { kernel = try KernelCache.shared.kernel(for: epilogue) } catch { return false }
    let productSlot = addSlot(body.type(of: matmul.results[0]), .arena)
    thunks.append(.gemm(a: a, b: b, c: productSlot,
                        transposeA: matmul.attributes.bool("transpose_a") ?? false,
                        transposeB: matmul.attributes.bool("transpose_b") ?? false))
    thunks.append(.kernel(kernel, operands: [productSlot] + epilogueOperands, results: [result],
                          inPlace: inPlace.map { ([productSlot] + epilogueOperands)[$0] }))
    statistics.gemms += 1
    statistics.kernels += 1
    return true
  }

}
