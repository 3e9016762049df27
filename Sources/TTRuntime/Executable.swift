// Executable — a compiled Program (TTCompiler) made runnable: parameters materialized once in
// buffers of their own, donated static-shaped arguments (training state) pinned in buffers of
// their own, tables resolved, and every other value given an offset in one arena per capacity
// binding of the symbolic dimensions (ExecutableLayouts.swift), reused by every later run at or
// below it: no allocation per step in steady state. Running executes the program's thunks in
// order: JIT kernels (large ones split across the thread pool along their outermost loop), GEMMs
// (ParallelGemm: ttfc's JitGemm for f32, OpenBLAS otherwise), table lookups (TTEmbedding), and
// the reference interpreter for what the code generator does not compile.

import COpenBLAS
import Glibc
import Synchronization
import TTCodegen
import TTEmbedding
import TTIR
import TTInterp
import TTSupport

/// Why a program could not be compiled, instantiated or run.
public enum ExecutableError: Error, CustomStringConvertible {
  /// The module, function or settings are not usable (found before anything runs).
  case invalid(String)
  /// The inputs or parameter values do not match the function's types.
  case input(InterpreterError)
  /// A run failed (memory, a table, a fallback op).
  case runtime(String)
  public var description: String {
    switch self {
    case .invalid(let m): return m
    case .input(let e): return e.description
    case .runtime(let m): return m
    }
  }
}

/// What compiling a program produced (kernels, GEMMs, interpreted ops) and how long it took.
public struct ExecutableStatistics: Sendable {
  public init() {}
  public var kernels = 0
  public var gemms = 0
  public var interpreted = 0
  /// Convolution ops compiled to ConvKernels routines.
  public var convolutions = 0
  /// Pooling ops compiled to PoolKernels routines.
  public var poolings = 0
  /// Ops compiled to RowKernels routines (layer_norm, layer_norm_grad, integer-label
  /// softmax_cross_entropy).
  public var rowRoutines = 0
  /// Reshape/transpose chains run as strided copies (LayoutCopy).
  public var layoutCopies = 0
  public var compileSeconds = 0.0
  /// Parts of compileSeconds: the pass pipeline, and parameter initialization.
  public var optimizeSeconds = 0.0
  public var parameterSeconds = 0.0
  /// The pass pipeline by pass, in the order passes first ran: runs, wall and CPU seconds.
  public var passTimes: [PassTime] = []
  /// Steps of the passes' shape-dependent searches (PassContext.work).
  public var passWork = 0
  /// Kernel compilation of this program by phase (KernelCache.PhaseSeconds: summed over the
  /// compiling threads), and the GEMM routines' compile (once per process: 0 when an earlier
  /// program of the process compiled them).
  public var kernelPhases = KernelCache.PhaseSeconds()
  public var gemmRoutineSeconds = 0.0
  /// When the compile's phases ran (DispatchClock seconds): the whole compile, each pass run,
  /// kernel compilation, lowering and parameter initialization; the compile track of a trace.
  public var phaseSlices: [PhaseSlice] = []
  public struct PhaseSlice: Sendable {
    public var name: String
    public var start: Double
    public var end: Double
    public init(name: String, start: Double, end: Double) { self.name = name; self.start = start; self.end = end }
  }
  public struct PassTime: Sendable {
    public var pass: String
    public var runs: Int
    public var seconds: Double
    public var cpuSeconds: Double
    public init(pass: String, runs: Int, seconds: Double, cpuSeconds: Double) {
      self.pass = pass; self.runs = runs; self.seconds = seconds; self.cpuSeconds = cpuSeconds
    }
  }
  /// Why ops run on the interpreter, with counts.
  public var fallbackReasons: [String: Int] = [:]
  /// The ops that run on the interpreter (alone, or inside a region that could not compile), by
  /// op name, with counts: what `--stats` reports as "interpreted: N ops: ...".
  public var interpretedOps: [String: Int] = [:]
  /// Total of `interpretedOps`.
  public var interpretedOpCount: Int { interpretedOps.values.reduce(0, +) }
  /// "interpreted: 3 ops: argmax x1, silu x2", or nil when every op compiled.
  public var interpretedSummary: String? {
    guard !interpretedOps.isEmpty else { return nil }
    let list = interpretedOps.sorted { $0.key < $1.key }.map { "\($0.key) x\($0.value)" }.joined(separator: ", ")
    return "interpreted: \(interpretedOpCount) ops: \(list)"
  }
}

/// A compiled ``Program`` made runnable: parameters and tables in memory, and the memory of every
/// other value planned per binding of the symbolic dimensions.
///
/// Make one from a program (`Executable(program:params:)`), or compile and make it in one call
/// with TTCompiler's `Executable(module:function:params:)`. ``run(_:)`` takes and returns
/// `Tensor`s; ``prepare(inputTypes:capacity:)`` gives raw buffers for repeated runs
/// without conversion. One compile serves every size of the symbolic dimensions.
public final class Executable: @unchecked Sendable {
  enum Thunk {
    /// `inPlace`: operands the kernel may overwrite (it reads each element only to compute the
    /// output elements at the same index), so an output can take the operand's memory. Several
    /// results (an elementwise multi-output kernel) share one shape.
    case kernel(CompiledKernel, operands: [Int], results: [Int], inPlace: [Int])
    case gemm(a: Int, b: Int, c: Int, transposeA: Bool, transposeB: Bool)
    /// C[K, N] = sum over the batch of A_b^T B_b, for A [batch..., T, K] and B [batch..., T, N]:
    /// one GEMM over the batch-flattened rows (a weight gradient of a layer applied per token).
    case gemmSummedOverBatch(a: Int, b: Int, c: Int)
    /// A convolution op (ConvKernels): operands in IR order, f32 or f64.
    /// `filterCache`: where an f32 forward convolution whose filter is a parameter or constant
    /// keeps it packed across runs (PackedFilters).
    case conv(ConvKind, ConvGeometry, operands: [Int], result: Int, filterCache: ConvFilterCache?)
    /// A pooling op (PoolKernels): operands in IR order, f32 or f64.
    case pool(PoolKind, PoolGeometry, operands: [Int], result: Int)
    case rows(RowRoutine, operands: [Int], results: [Int])
    case copy(LayoutCopy, operand: Int, result: Int)
    case interpretOp(OpNode, operands: [Int], result: Int)
    case interpretRegion(Interpreter, operands: [Int], results: [Int])
    /// An embedding op: evaluation lookups of `table` (operands: ids, and lengths when pooled).
    case table(EmbeddingTable, OpNode, operands: [Int], result: Int)
  }

  struct Slot {
    var type: TensorType
    /// `pinned`: a donated argument of static shape, kept in one buffer owned by the executable and
    /// shared by every layout (training state), instead of in each layout's arena.
    enum Storage { case arena, argument(Int), pinned(Int, UnsafeMutableRawPointer), persistent(UnsafeMutableRawPointer) }
    var storage: Storage
  }

  /// Memory for one capacity binding of the symbols: a pointer per slot, into one arena.
  final class Layout: @unchecked Sendable {
    let capacity: [Int]
    let pointers: [UnsafeMutableRawPointer]
    let arena: UnsafeMutableRawPointer
    let arenaBytes: Int
    init(capacity: [Int], pointers: [UnsafeMutableRawPointer], arena: UnsafeMutableRawPointer, arenaBytes: Int) {
      self.capacity = capacity; self.pointers = pointers; self.arena = arena; self.arenaBytes = arenaBytes
    }
    deinit { HostMemory.release(arena) }
  }

  /// One run's shapes (actual symbol values) in a layout (capacity symbol values).
  struct Plan {
    let shapes: [[Int]]
    let layout: Layout
    var pointers: [UnsafeMutableRawPointer] { layout.pointers }
  }

  /// What the compiler produced; the executable adds the memory and the values.
  public let program: Program
  /// The function as written, and as compiled.
  public var function: Function { program.function }
  public var lowered: Function { program.lowered }
  public private(set) var statistics: ExecutableStatistics
  var slots: [Slot] = []
  var thunks: [Thunk] = []
  let outputs: [Int]
  /// The slot of each parameter the program reads (for `updateParameters`).
  var parameterSlots: [(name: String, slot: Int)] = []
  var layouts: [[Int]: Layout] = [:]
  /// The tag of the memory this executable allocates (HostMemory): all of it is freed with it.
  public let memoryOwner = HostMemory.newOwner()
  let symbols: [String]
  /// Slices of symbolic axes in the compiled code: the last index each reads, per symbol, checked
  /// against every binding (compiled kernels do not bounds-check their reads).
  let symbolicSliceBounds: [(symbol: String, lastIndex: Int)]
  let pool: ThreadPool
  /// Kernels with fewer output elements than this run on one thread.
  public var parallelThreshold = 1 << 15
  /// Values that took an operand's memory in place (over all plans).
  public internal(set) var statisticsReused = 0
  private let lock = NSLockish()
  /// The executable whose pinned buffers this one shares (kept alive), and those buffers.
  let pinnedBufferOwner: Executable?
  var borrowedPinned: Set<UnsafeMutableRawPointer> = []

  /// Arguments whose buffers the executable may overwrite once it has read them (JAX's
  /// donate_argnums): a training step donates parameters and slots so updates happen in place.
  public var donated: Set<Int> { program.donated }

  /// Result index -> donated argument index whose buffer that result should take if it can
  /// (XLA's input/output aliasing): a training step's new parameter overwrites the old one.
  public var aliasing: [Int: Int] { program.aliasing }

  /// The embedding tables the function's lookups read (given, or made from the declarations).
  public let tables: [String: EmbeddingTable]

  /// Makes `program` runnable. Parameters come from `params` or their initializers: given ones
  /// are checked against every declaration (as the interpreter does); only those the program
  /// reads are materialized, once, in native layout, and only those need a value (every one
  /// missing is named at once). With `placeholderParams` (code is emitted, not run) a missing
  /// value reads zeros. Tables come from `tables` or are made from their declarations.
  ///
  /// `sharingPinnedBuffersWith`: pinned arguments take the buffers `other` has for the same
  /// argument index (same byte size required), so two programs over the same training state
  /// (the full-precision and the mixed-precision step) read and update one copy of it. The
  /// executable keeps `other` alive and does not free those buffers.
  public init(program: Program, params: [String: Tensor] = [:], tables givenTables: [String: EmbeddingTable] = [:],
              pool: ThreadPool = .shared, placeholderParams: Bool = false,
              sharingPinnedBuffersWith other: Executable? = nil) throws(ExecutableError) {
    self.program = program
    self.pinnedBufferOwner = other
    self.pool = pool
    symbols = program.symbols
    symbolicSliceBounds = ShapeRules.symbolicSliceBounds(program.lowered)
    outputs = program.outputs
    statistics = program.statistics
    let start = DispatchClock.now()
    let module = program.module
    for p in module.params {
      if let given = params[p.name], given.type != p.type {
        throw .invalid(InterpreterError.paramMismatch(name: p.name, expected: p.type, got: given.type).description)
      }
    }
    let read = Set(program.parametersRead)
    let missing = module.params.filter { read.contains($0.name) && params[$0.name] == nil && $0.initializer == nil }.map(\.name)
    if !missing.isEmpty && !placeholderParams {
      throw .invalid(missing.count == 1 ? InterpreterError.missingParam(missing[0]).description
        : "parameters \(missing.map { "'@\($0)'" }.joined(separator: ", ")) have no value and no initializer")
    }
    var madeTables: [String: EmbeddingTable] = [:]
    for decl in module.tables {
      if let given = givenTables[decl.name] { madeTables[decl.name] = given; continue }
      do { madeTables[decl.name] = try EmbeddingTable(declaration: decl) } catch { throw .invalid("\(error)") }
    }
    tables = madeTables
    for (k, slot) in program.slots.enumerated() {
      switch slot.storage {
      case .arena:
        slots.append(Slot(type: slot.type, storage: .arena))
      case .argument(let i):
        slots.append(Slot(type: slot.type, storage: .argument(i)))
      case .pinned(let i):
        let bytes = max((slot.type.staticShape.flatMap(elementCount) ?? 0) * slot.type.dtype.byteSize, 64)
        if let other {
          guard let shared = other.pinnedBuffer(argument: i), other.pinnedBytes(argument: i) == bytes else {
            throw .invalid("argument \(i) (\(slot.type)) has no pinned buffer of \(bytes) bytes in the executable whose state it shares")
          }
          borrowedPinned.insert(shared)
          slots.append(Slot(type: slot.type, storage: .pinned(i, shared)))
          continue
        }
        let p = HostMemory.allocate(bytes, owner: memoryOwner)
        memset(p, 0, bytes)
        slots.append(Slot(type: slot.type, storage: .pinned(i, p)))
      case .parameter(let name):
        guard let param = module.param(named: name) else { throw .invalid("the program reads '@\(name)', which its module does not declare") }
        let tensor: Tensor
        if let given = params[name] { tensor = given } else if let initializer = param.initializer {
          do { tensor = try ParamInitializer.materialize(initializer, type: param.type, name: name) }
          catch { throw .invalid("\(error)") }
        } else {
          guard let shape = param.type.staticShape else { throw .invalid("parameter '@\(name)' has a symbolic type") }
          tensor = Tensor.filled(param.type.dtype, shape: shape, value: 0)
        }
        slots.append(Slot(type: slot.type, storage: .persistent(Self.persistentCopy(tensor, owner: memoryOwner))))
        parameterSlots.append((name, k))
      case .constant(let value):
        slots.append(Slot(type: slot.type, storage: .persistent(Self.persistentCopy(value, owner: memoryOwner))))
      }
    }
    for thunk in program.thunks {
      switch thunk {
      case .kernel(let kernel, let operands, let results, let inPlace):
        thunks.append(.kernel(kernel, operands: operands, results: results, inPlace: inPlace))
      case .gemm(let a, let b, let c, let ta, let tb): thunks.append(.gemm(a: a, b: b, c: c, transposeA: ta, transposeB: tb))
      case .gemmSummedOverBatch(let a, let b, let c): thunks.append(.gemmSummedOverBatch(a: a, b: b, c: c))
      case .conv(let kind, let g, let operands, let result):
        var cache: ConvFilterCache?
        if kind == .forward, slots[result].type.dtype == .f32, case .persistent = slots[operands[1]].storage {
          cache = ConvFilterCache(owner: memoryOwner)
        }
        thunks.append(.conv(kind, g, operands: operands, result: result, filterCache: cache))
      case .pool(let kind, let g, let operands, let result): thunks.append(.pool(kind, g, operands: operands, result: result))
      case .rows(let routine, let operands, let results): thunks.append(.rows(routine, operands: operands, results: results))
      case .copy(let layout, let operand, let result): thunks.append(.copy(layout, operand: operand, result: result))
      case .interpretOp(let op, let operands, let result): thunks.append(.interpretOp(op, operands: operands, result: result))
      case .interpretRegion(let interpreter, let operands, let results):
        thunks.append(.interpretRegion(interpreter, operands: operands, results: results))
      case .table(let name, let op, let operands, let result):
        guard let table = madeTables[name] else { throw .invalid("'\(op.code)' reads '@\(name)', which is no table of the module") }
        thunks.append(.table(table, op, operands: operands, result: result))
      }
    }
    statistics.parameterSeconds = DispatchClock.now() - start
    statistics.compileSeconds += statistics.parameterSeconds
    statistics.phaseSlices.append(.init(name: "parameters", start: start, end: start + statistics.parameterSeconds))
  }

  deinit {
    for slot in slots {
      if case .persistent(let p) = slot.storage { HostMemory.release(p) }
      if case .pinned(_, let p) = slot.storage, !borrowedPinned.contains(p) { HostMemory.release(p) }
    }
  }

  static func persistentCopy(_ t: Tensor, owner: Int) -> UnsafeMutableRawPointer {
    let p = HostMemory.allocate(max(t.count * t.dtype.byteSize, 1), owner: owner)
    RawTensor.write(t, to: p)
    return p
  }

  // MARK: running

  /// Overwrites the parameters this function reads with the given values (types must match the
  /// declarations): an evaluation executable follows a training run without being rebuilt.
  public func updateParameters(_ params: [String: Tensor]) throws(ExecutableError) {
    for (name, slot) in parameterSlots {
      guard let given = params[name], case .persistent(let pointer) = slots[slot].storage else { continue }
      guard given.type == slots[slot].type else {
        throw .invalid(InterpreterError.paramMismatch(name: name, expected: slots[slot].type, got: given.type).description)
      }
      RawTensor.write(given, to: pointer)
    }
    // Filters kept packed (PackedFilters) were made from the old values.
    parameterGeneration.add(1, ordering: .releasing)
  }

  /// Bumped by every `updateParameters`: forms of parameters kept across runs (packed filters)
  /// made at an older generation are stale.
  let parameterGeneration = Atomic<Int>(0)

  /// How many packed filters the convolutions have made so far (PackedFilters; tests).
  var packedFiltersMade: Int {
    thunks.reduce(0) { sum, thunk in
      if case .conv(_, _, _, _, let cache?) = thunk { return sum + cache.made }
      return sum
    }
  }

  /// Runs the function on `inputs` and returns its results.
  public func run(_ inputs: [Tensor]) throws(ExecutableError) -> [Tensor] {
    let binding: [String: Int]
    do { binding = try Interpreter.bindInputs(function, inputs.map(\.type)) } catch { throw .input(error) }
    try checkSymbolicSlices(binding)
    let key = symbols.map { binding[$0] ?? 0 }
    return try lock.withLock { () throws(ExecutableError) -> [Tensor] in
      let plan = try self.plan(for: key, capacity: key)
      for (k, slot) in slots.enumerated() {
        if case .argument(let i) = slot.storage { RawTensor.write(inputs[i], to: plan.pointers[k]) }
        if case .pinned(let i, _) = slot.storage { RawTensor.write(inputs[i], to: plan.pointers[k]) }
      }
      for thunk in thunks { try execute(thunk, plan: plan, symbolValues: key) }
      return outputs.map { RawTensor.read(slots[$0].type.dtype, shape: plan.shapes[$0], from: plan.pointers[$0]) }
    }
  }

  /// A run prepared for fixed input shapes: write inputs in native layout at `inputs[i]`, call
  /// `execute()` any number of times, read results at `outputs[i]`. No conversion, no allocation:
  /// this is how benchmarks and the training loop drive an executable.
  public struct PreparedRun: @unchecked Sendable {
    public let inputs: [UnsafeMutableRawPointer]
    public let outputs: [UnsafeMutableRawPointer]
    public let outputShapes: [[Int]]
    /// The symbol values of this run and of the memory layout it runs in (equal without bucketing).
    public let symbolValues: [Int]
    public let capacity: [Int]
    let executable: Executable
    let plan: Plan
    public func execute() throws(ExecutableError) {
      if let trace = executable.trace {
        try executeTraced(trace)
        return
      }
      for thunk in executable.thunks { try executable.execute(thunk, plan: plan, symbolValues: symbolValues) }
    }

    /// A run that records a slice per thunk (and the pool's chunks) in `trace`.
    func executeTraced(_ trace: ExecutionTrace) throws(ExecutableError) {
      let pool = executable.pool
      pool.attach(trace)
      defer { pool.attach(nil) }
      let runStart = DispatchClock.now()
      for (i, thunk) in executable.thunks.enumerated() {
        trace.beginThunk(i)
        let start = DispatchClock.now()
        try executable.execute(thunk, plan: plan, symbolValues: symbolValues)
        trace.recordThunk(i, start: start, end: DispatchClock.now())
      }
      trace.finishRun(executable, start: runStart, end: DispatchClock.now(), shapes: plan.shapes)
    }
  }

  /// The symbol values (in `symbols` order) that inputs of these types bind.
  public func symbolValues(inputTypes: [TensorType]) throws(ExecutableError) -> [Int] {
    let binding: [String: Int]
    do { binding = try Interpreter.bindInputs(function, inputTypes) } catch { throw .input(error) }
    try checkSymbolicSlices(binding)
    return symbols.map { binding[$0] ?? 0 }
  }

  /// Slices of symbolic axes must fit the bound sizes: compiled kernels do not bounds-check.
  func checkSymbolicSlices(_ binding: [String: Int]) throws(ExecutableError) {
    for (symbol, last) in symbolicSliceBounds {
      if let size = binding[symbol], last >= size { throw .input(.indexOutOfRange(op: "slice", index: Int64(last), bound: size)) }
    }
  }

  /// Prepares a run for inputs of these types. `capacity` (symbol values, each at least the
  /// inputs' own) selects the memory layout: one layout, planned at the capacity sizes, serves
  /// every smaller binding — kernels take the actual sizes as runtime loop bounds, so nothing is
  /// padded and results are those of an exact-shape run. Shape bucketing passes a bucket's edge.
  public func prepare(inputTypes: [TensorType], capacity: [Int]? = nil) throws(ExecutableError) -> PreparedRun {
    let key = try symbolValues(inputTypes: inputTypes)
    let capacity = capacity ?? key
    let plan = try lock.withLock { () throws(ExecutableError) -> Plan in try self.plan(for: key, capacity: capacity) }
    var inputPointers = [UnsafeMutableRawPointer](repeating: plan.layout.arena, count: inputTypes.count)
    for (k, slot) in slots.enumerated() {
      if case .argument(let i) = slot.storage { inputPointers[i] = plan.pointers[k] }
      if case .pinned(let i, _) = slot.storage { inputPointers[i] = plan.pointers[k] }
    }
    return PreparedRun(inputs: inputPointers, outputs: outputs.map { plan.pointers[$0] },
                       outputShapes: outputs.map { plan.shapes[$0] }, symbolValues: key, capacity: capacity,
                       executable: self, plan: plan)
  }

  /// Builds (and pre-faults) the layout for `capacity` if it does not exist yet; safe to call
  /// from a background thread while other runs execute.
  public func buildLayout(capacity: [Int]) throws(ExecutableError) {
    _ = try lock.withLock { () throws(ExecutableError) -> Layout in try self.layout(for: capacity) }
  }

  /// Whether a layout for `capacity` exists.
  public func hasLayout(capacity: [Int]) -> Bool { lock.withLock { layouts[capacity] != nil } }

  /// Forgets the layout for `capacity`; its memory is freed once no prepared run uses it.
  public func dropLayout(capacity: [Int]) { lock.withLock { _ = layouts.removeValue(forKey: capacity) } }

  /// Bytes of the arena of every layout built so far, by capacity.
  public var layoutBytes: [[Int]: Int] { lock.withLock { layouts.mapValues(\.arenaBytes) } }

  /// The buffer of a pinned (donated, static-shaped) argument: the same memory in every layout,
  /// so state such as parameters stays put when the batch shape changes. Nil for other arguments.
  public func pinnedBuffer(argument: Int) -> UnsafeMutableRawPointer? {
    for slot in slots { if case .pinned(argument, let p) = slot.storage { return p } }
    return nil
  }

  /// The byte size of a pinned argument's buffer (as allocated: at least 64).
  func pinnedBytes(argument: Int) -> Int? {
    for slot in slots {
      if case .pinned(argument, _) = slot.storage {
        return max((slot.type.staticShape.flatMap(elementCount) ?? 0) * slot.type.dtype.byteSize, 64)
      }
    }
    return nil
  }

  static func uses(_ thunk: Thunk) -> (reads: [Int], writes: [Int]) {
    switch thunk {
    case .kernel(_, let operands, let results, _): return (operands, results)
    case .gemm(let a, let b, let c, _, _): return ([a, b], [c])
    case .gemmSummedOverBatch(let a, let b, let c): return ([a, b], [c])
    case .conv(_, _, let operands, let result, _): return (operands, [result])
    case .pool(_, _, let operands, let result): return (operands, [result])
    case .rows(_, let operands, let results): return (operands, results)
    case .copy(_, let operand, let result): return ([operand], [result])
    case .interpretOp(_, let operands, let result): return (operands, [result])
    case .interpretRegion(_, let operands, let results): return (operands, results)
    case .table(_, _, let operands, let result): return (operands, [result])
    }
  }

  /// When set, prepared runs record every thunk in it (ExecutionTrace: `--trace`, `--profile`);
  /// TTFC_PROFILE attaches one at creation. Nil: runs record nothing and cost nothing extra.
  public var trace: ExecutionTrace? = getenv("TTFC_PROFILE") != nil ? ExecutionTrace() : nil

  /// Seconds spent in each thunk so far (of the runs `trace` recorded), most expensive first.
  public var profileReport: String { trace?.thunkTableText() ?? "" }

  /// The compiled kernels of this executable, in execution order.
  public var kernels: [CompiledKernel] {
    thunks.compactMap { if case .kernel(let k, _, _, _) = $0 { return k }; return nil }
  }

  /// A one-line description of each thunk, in execution order (for `ttfc compile --emit=thunks`).
  public var thunkListing: [String] {
    thunks.map { thunk in
      switch thunk {
      case .kernel(let k, let operands, let results, let inPlace):
        let reuse = inPlace.isEmpty ? "" : " (may reuse \(inPlace.map { "s\($0)" }.joined(separator: ", ")))"
        return "kernel \(k.name)(\(operands.map { "s\($0)" }.joined(separator: ", "))) -> \(results.map { "s\($0)" }.joined(separator: ", ")) : \(slots[results[0]].type)\(reuse)"
      case .gemm(let a, let b, let c, let ta, let tb): return "gemm s\(a)\(ta ? "^T" : "") x s\(b)\(tb ? "^T" : "") -> s\(c) : \(slots[c].type)"
      case .gemmSummedOverBatch(let a, let b, let c): return "gemm sum over batch of s\(a)^T x s\(b) -> s\(c) : \(slots[c].type)"
      case .conv(let kind, let g, let operands, let result, _):
        return "\(kind.rawValue) (\(operands.map { "s\($0)" }.joined(separator: ", "))) -> s\(result) : \(slots[result].type) [\(g)]"
      case .pool(let kind, let g, let operands, let result):
        return "\(kind.rawValue) (\(operands.map { "s\($0)" }.joined(separator: ", "))) -> s\(result) : \(slots[result].type) [\(g)]"
      case .rows(let routine, let operands, let results):
        return "\(routine) (\(operands.map { "s\($0)" }.joined(separator: ", "))) -> \(results.map { "s\($0)" }.joined(separator: ", ")) : \(slots[results[0]].type)"
      case .copy(let layout, let operand, let result): return "\(layout) (s\(operand)) -> s\(result) : \(slots[result].type)"
      case .interpretOp(let op, let operands, let result): return "interpret '\(op.code)'(\(operands.map { "s\($0)" }.joined(separator: ", "))) -> s\(result)"
      case .interpretRegion(_, let operands, let results): return "interpret region(\(operands.map { "s\($0)" }.joined(separator: ", "))) -> \(results.map { "s\($0)" }.joined(separator: ", "))"
      case .table(_, let op, let operands, let result): return "\(op.code) (\(operands.map { "s\($0)" }.joined(separator: ", "))) -> s\(result) : \(slots[result].type)"
      }
    }
  }

  /// Bytes of the arena for a capacity binding (after a run with it); nil if not planned yet.
  public func arenaBytes(symbols values: [Int]) -> Int? { lock.withLock { layouts[values]?.arenaBytes } }

  func execute(_ thunk: Thunk, plan: Plan, symbolValues: [Int]) throws(ExecutableError) {
    switch thunk {
    case .kernel(let kernel, let operands, let results, _):
      var buffers: [UnsafeMutableRawPointer?] = (operands + results).map { plan.pointers[$0] }
      // A flat kernel loops over all the output's elements (its one symbol is their count).
      let result = results[0]
      let shape = kernel.isFlat ? [elementCount(plan.shapes[result]) ?? 0] : plan.shapes[result]
      let symbolArray: [Int64] = kernel.isFlat ? [Int64(shape[0])]
        : kernel.signature.symbols.map { s in Int64(symbolValues[symbols.firstIndex(of: s)!]) }
      let outer = shape.first ?? 1
      // Work is what the kernel reads and writes: a row reduction writes little but reads a lot.
      let total = (results + operands).reduce(0) { $0 + (elementCount(plan.shapes[$1]) ?? 0) }
      let entry = kernel.entry
      if case .leadingRows(let rowDims, let combine) = kernel.sweep {
        let rows = rowDims.reduce(1) { n, d in
          switch d {
          case .known(let k): return n * k
          case .symbol(let s): return n * Int(symbolArray[kernel.signature.symbols.firstIndex(of: s)!])
          }
        }
        let chunks = (total >= parallelThreshold && rows >= 2) ? min(pool.threadCount * 4, rows) : 1
        ReductionSweepRunner.run(entry: entry, buffers: buffers, outputIndex: operands.count, outputCount: elementCount(plan.shapes[result]) ?? 0,
                                 dtype: slots[result].type.dtype, symbols: symbolArray, rows: rows, chunks: chunks, combine: combine, pool: pool)
        return
      }
      symbolArray.withUnsafeBufferPointer { syms in
        buffers.withUnsafeMutableBufferPointer { bufs in
          // Several chunks per thread: whichever thread is free takes the next, so a worker
          // that wakes late still gets its share.
          let chunks = (total >= parallelThreshold && outer >= 2) ? min(pool.threadCount * 4, outer) : 1
          if chunks == 1 {
            entry(bufs.baseAddress!, syms.baseAddress ?? UnsafePointer(bitPattern: 8)!, 0, Int64(outer))
          } else {
            let b = bufs.baseAddress!, s = syms.baseAddress ?? UnsafePointer(bitPattern: 8)!
            let bAddress = UInt(bitPattern: b), sAddress = UInt(bitPattern: s)
            // A streaming rank-1 kernel's slices start at aligned elements (its stores need it).
            let granule = kernel.streamingOutput && shape.count == 1 ? CompiledKernel.streamingChunkAlignment : 1
            pool.parallelFor(chunks) { c in
              func boundary(_ c: Int) -> Int { c == chunks ? outer : outer * c / chunks / granule * granule }
              let lo = boundary(c), hi = boundary(c + 1)
              entry(UnsafeMutablePointer(bitPattern: bAddress)!, UnsafePointer(bitPattern: sAddress)!, Int64(lo), Int64(hi))
            }
          }
        }
      }
    case .gemm(let a, let b, let c, let ta, let tb):
      runGemm(a: a, b: b, c: c, transposeA: ta, transposeB: tb, plan: plan)
    case .gemmSummedOverBatch(let a, let b, let c):
      // A [rows, K] and B [rows, N] with rows = batch x T, row-major: C = A^T B.
      let sa = plan.shapes[a], sb = plan.shapes[b]
      let rows = sa.dropLast().reduce(1, *), k = sa.last!, n = sb.last!
      if k == 0 || n == 0 { return }
      if rows == 0 { memset(plan.pointers[c], 0, k * n * slots[c].type.dtype.byteSize); return }
      func multiply<T: BLASFloat>(_: T.Type) {
        ParallelGemm.gemm(transposeA: true, transposeB: false, m: k, n: n, k: rows, a: plan.pointers[a].assumingMemoryBound(to: T.self), lda: k,
                          b: plan.pointers[b].assumingMemoryBound(to: T.self), ldb: n, c: plan.pointers[c].assumingMemoryBound(to: T.self), pool: pool)
      }
      let dtype = slots[c].type.dtype
      if dtype == .f64 { multiply(Double.self) } else if dtype == .f32 { multiply(Float.self) } else {
        HalfGemm.gemm(input: dtype, output: dtype, transposeA: true, transposeB: false, m: k, n: n, k: rows, a: plan.pointers[a], lda: k,
                      b: plan.pointers[b], ldb: n, c: plan.pointers[c], pool: pool)
      }
    case .conv(let kind, let g, let operands, let result, let filterCache):
      // Operand 0 is always an activation (x or dy), whose first dimension is the batch.
      let n = plan.shapes[operands[0]].first ?? 0
      let pa = plan.pointers[operands[0]], pb = plan.pointers[operands[1]], pc = plan.pointers[result]
      let dtype = slots[result].type.dtype
      if dtype == .f16 || dtype == .bf16 {
        let counts = (operands + [result]).map { elementCount(plan.shapes[$0]) ?? 0 }
        HalfWidened.run(dtype, inputs: [(UnsafeRawPointer(pa), counts[0]), (UnsafeRawPointer(pb), counts[1])], output: pc,
                        outputCount: counts[2]) { wide, out in
          ConvKernels.run(kind, g, n: n, a: wide[0], b: wide[1], out: out, pool: pool)
        }
      } else if dtype == .f64 {
        ConvKernels.run(kind, g, n: n, a: UnsafePointer(pa.assumingMemoryBound(to: Double.self)),
                        b: UnsafePointer(pb.assumingMemoryBound(to: Double.self)), out: pc.assumingMemoryBound(to: Double.self), pool: pool)
      } else {
        ConvKernels.run(kind, g, n: n, a: UnsafePointer(pa.assumingMemoryBound(to: Float.self)),
                        b: UnsafePointer(pb.assumingMemoryBound(to: Float.self)), out: pc.assumingMemoryBound(to: Float.self), pool: pool,
                        filterCache: filterCache.map { FilterCacheKey(cache: $0, generation: parameterGeneration.load(ordering: .acquiring)) })
      }
    case .pool(let kind, let g, let operands, let result):
      // The batch is the first dimension of the result (every pooling op's is N).
      let n = plan.shapes[result].first ?? 0
      let dtype = slots[result].type.dtype
      if dtype == .f16 || dtype == .bf16 {
        HalfWidened.run(dtype, inputs: operands.map { (UnsafeRawPointer(plan.pointers[$0]), elementCount(plan.shapes[$0]) ?? 0) },
                        output: plan.pointers[result], outputCount: elementCount(plan.shapes[result]) ?? 0) { wide, out in
          PoolKernels.run(kind, g, n: n, operands: wide, out: out, pool: pool)
        }
      } else if dtype == .f64 {
        PoolKernels.run(kind, g, n: n, operands: operands.map { UnsafePointer(plan.pointers[$0].assumingMemoryBound(to: Double.self)) },
                        out: plan.pointers[result].assumingMemoryBound(to: Double.self), pool: pool)
      } else {
        PoolKernels.run(kind, g, n: n, operands: operands.map { UnsafePointer(plan.pointers[$0].assumingMemoryBound(to: Float.self)) },
                        out: plan.pointers[result].assumingMemoryBound(to: Float.self), pool: pool)
      }
    case .rows(let routine, let operands, let results):
      try runRows(routine, operands: operands, results: results, plan: plan)
    case .copy(let layout, let operand, let result):
      let names = symbols
      let copied = layout.run(input: plan.pointers[operand], inputShape: plan.shapes[operand], output: plan.pointers[result],
                              symbol: { name in names.firstIndex(of: name).map { symbolValues[$0] } ?? 0 }, pool: pool)
      // The compiler emits copies only for chains whose view exists at every size (static
      // shapes, or one transpose); this guards that promise.
      if !copied { throw .runtime("\(layout) has no strided view for operand shape \(plan.shapes[operand])") }
    case .table(let table, let op, let operands, let result):
      runLookup(table, op, operands: operands, result: result, plan: plan)
    case .interpretOp(let op, let operands, let result):
      let tensors = operands.map { RawTensor.read(slots[$0].type.dtype, shape: plan.shapes[$0], from: plan.pointers[$0]) }
      do {
        let value = try Interpreter.evaluate(op, operands: tensors, dtype: slots[result].type.dtype, shape: plan.shapes[result])
        RawTensor.write(value, to: plan.pointers[result])
      } catch {
        throw .runtime("\(error)")
      }
    case .interpretRegion(let interpreter, let operands, let results):
      let tensors = operands.map { RawTensor.read(slots[$0].type.dtype, shape: plan.shapes[$0], from: plan.pointers[$0]) }
      do {
        let values = try interpreter.run("region", tensors)
        for (v, r) in zip(values, results) { RawTensor.write(v, to: plan.pointers[r]) }
      } catch {
        throw .runtime("\(error)")
      }
    }
  }

  /// A RowKernels routine on f32 or f64 data (the compiler only emits `rows` thunks for those).
  func runRows(_ routine: RowRoutine, operands: [Int], results: [Int], plan: Plan) throws(ExecutableError) {
    func scalar(_ slot: Int) -> Int64 {
      slots[slot].type.dtype == .i64 ? plan.pointers[slot].assumingMemoryBound(to: Int64.self).pointee
        : Int64(plan.pointers[slot].assumingMemoryBound(to: Int32.self).pointee)
    }
    /// [outer, bound, inner] of an indexed operand's shape around `axis`.
    func split(_ shape: [Int], _ axis: Int) -> (Int, Int, Int) {
      (shape[..<axis].reduce(1, *), shape[axis], shape[(axis + 1)...].reduce(1, *))
    }
    switch routine {
    case .attention(let scale, let rate, let seed, let stream), .attentionGrad(let scale, let rate, let seed, let stream):
      let shapes = operands.prefix(4).map { plan.shapes[$0] }
      let geometry = AttentionGeometry(q: shapes[0], k: shapes[1], v: shapes[2], mask: shapes[3])
      let dropout = AttentionDropout(rate: rate, key: CounterBits.key(seed: seed, step: scalar(operands[4]), stream: stream))
      func run<T: RowElement & BLASFloat>(_: T.Type) {
        func input(_ k: Int) -> UnsafePointer<T> { UnsafePointer(plan.pointers[operands[k]].assumingMemoryBound(to: T.self)) }
        func output(_ k: Int) -> UnsafeMutablePointer<T> { plan.pointers[results[k]].assumingMemoryBound(to: T.self) }
        if case .attention = routine {
          AttentionKernels.forward(geometry, scale: scale, dropout: dropout, q: input(0), k: input(1), v: input(2), mask: input(3),
                                   o: output(0), lse: output(1), pool: pool)
        } else {
          AttentionKernels.backward(geometry, scale: scale, dropout: dropout, q: input(0), k: input(1), v: input(2), mask: input(3),
                                    o: input(5), lse: input(6), dout: input(7), dq: output(0), dk: output(1), dv: output(2), pool: pool)
        }
      }
      if slots[operands[0]].type.dtype == .f64 { run(Double.self) } else { run(Float.self) }
      return
    case .randomBits(let seed, let stream):
      let key = CounterBits.key(seed: seed, step: scalar(operands[0]), stream: stream)
      RowKernels.randomBits(count: elementCount(plan.shapes[results[0]]) ?? 0, key: key, wide: slots[results[0]].type.dtype == .i64,
                            out: plan.pointers[results[0]], pool: pool)
      return
    case .dropout(let rate, let seed, let stream):
      let key = CounterBits.key(seed: seed, step: scalar(operands[1]), stream: stream)
      let count = elementCount(plan.shapes[operands[0]]) ?? 0
      let (x, y) = (plan.pointers[operands[0]], plan.pointers[results[0]])
      if slots[operands[0]].type.dtype == .f64 {
        RowKernels.dropout(count: count, rate: rate, key: key, x: UnsafePointer(x.assumingMemoryBound(to: Double.self)),
                           y: y.assumingMemoryBound(to: Double.self), pool: pool)
      } else {
        RowKernels.dropout(count: count, rate: rate, key: key, x: UnsafePointer(x.assumingMemoryBound(to: Float.self)),
                           y: y.assumingMemoryBound(to: Float.self), pool: pool)
      }
      return
    case .gather(let axis):
      let (outer, bound, inner) = split(plan.shapes[operands[0]], axis)
      let count = elementCount(plan.shapes[operands[1]]) ?? 0
      if let bad = RowKernels.gather(outer: outer, bound: bound, inner: inner, elementBytes: slots[operands[0]].type.dtype.byteSize,
                                     params: UnsafeRawPointer(plan.pointers[operands[0]]), indices: UnsafeRawPointer(plan.pointers[operands[1]]),
                                     count: count, wide: slots[operands[1]].type.dtype == .i64, out: plan.pointers[results[0]]) {
        throw .runtime(InterpreterError.indexOutOfRange(op: "gather", index: bad, bound: bound).description)
      }
      return
    case .scatterAdd(let axis):
      let (outer, bound, inner) = split(plan.shapes[operands[0]], axis)
      let count = elementCount(plan.shapes[operands[1]]) ?? 0
      let indices = UnsafeRawPointer(plan.pointers[operands[1]]), wide = slots[operands[1]].type.dtype == .i64
      func run<T: Numeric>(_ type: T.Type, _ add: (T, T) -> T) -> Int64? {
        RowKernels.scatterAdd(type, outer: outer, bound: bound, inner: inner,
                              operand: UnsafePointer(plan.pointers[operands[0]].assumingMemoryBound(to: T.self)), indices: indices, count: count,
                              wide: wide, updates: UnsafePointer(plan.pointers[operands[2]].assumingMemoryBound(to: T.self)),
                              out: plan.pointers[results[0]].assumingMemoryBound(to: T.self), wrapping: add)
      }
      let bad: Int64?
      switch slots[operands[0]].type.dtype {
      case .f64: bad = run(Double.self, +)
      case .f32: bad = run(Float.self, +)
      case .i64: bad = run(Int64.self, &+)
      default: bad = run(Int32.self, &+)
      }
      if let bad { throw .runtime(InterpreterError.indexOutOfRange(op: "scatter_add", index: bad, bound: bound).description) }
      return
    default: break
    }
    let shape = plan.shapes[operands[0]]
    let width = shape.last ?? 0
    let rows = shape.dropLast().reduce(1, *)
    func run<T: RowElement>(_: T.Type) throws(ExecutableError) {
      func input(_ k: Int) -> UnsafePointer<T> { UnsafePointer(plan.pointers[operands[k]].assumingMemoryBound(to: T.self)) }
      func output(_ k: Int) -> UnsafeMutablePointer<T> { plan.pointers[results[k]].assumingMemoryBound(to: T.self) }
      switch routine {
      case .layerNorm(let epsilon):
        RowKernels.layerNorm(rows: rows, width: width, epsilon: epsilon, x: input(0), scale: input(1), offset: input(2), y: output(0), pool: pool)
      case .layerNormGrad(let epsilon):
        RowKernels.layerNormGrad(rows: rows, width: width, epsilon: epsilon, x: input(0), scale: input(1), dy: input(2),
                                 dx: output(0), dscale: output(1), doffset: output(2), pool: pool)
      case .sparseSoftmaxCrossEntropy:
        let bad = RowKernels.sparseSoftmaxCrossEntropy(rows: rows, classes: width, logits: input(0), labels: UnsafeRawPointer(plan.pointers[operands[1]]),
                                                       labelsAreInt64: slots[operands[1]].type.dtype == .i64, loss: output(0), pool: pool)
        // The interpreter's error, word for word.
        if let bad { throw .runtime("softmax_cross_entropy: index \(bad) is out of range [0, \(width))") }
      case .dropout, .randomBits, .gather, .scatterAdd, .attention, .attentionGrad:
        break   // handled above
      }
    }
    if slots[operands[0]].type.dtype == .f64 { try run(Double.self) } else { try run(Float.self) }
  }

  /// Evaluation lookups into the result buffer (ids and lengths widened to i64 first).
  func runLookup(_ table: EmbeddingTable, _ op: OpNode, operands: [Int], result: Int, plan: Plan) {
    func int64s(_ slot: Int) -> [Int64] {
      let count = elementCount(plan.shapes[slot]) ?? 0
      let p = plan.pointers[slot]
      if slots[slot].type.dtype == .i64 { return Array(UnsafeBufferPointer(start: p.assumingMemoryBound(to: Int64.self), count: count)) }
      return UnsafeBufferPointer(start: p.assumingMemoryBound(to: Int32.self), count: count).map { Int64($0) }
    }
    let ids = int64s(operands[0])
    let out = plan.pointers[result].assumingMemoryBound(to: Float.self)
    if op.code == .embeddingLookup {
      ids.withUnsafeBufferPointer { _ = table.lookup($0, into: out, training: false) }
      return
    }
    let width = plan.shapes[operands[0]].count == 2 ? plan.shapes[operands[0]][1] : 0
    let lengths = operands.count > 1 ? int64s(operands[1]) : nil
    let combiner = Combiner(rawValue: op.attributes.string("combiner") ?? "sum") ?? .sum
    let padding = op.attributes.int("padding_id").map(Int64.init)
    ids.withUnsafeBufferPointer { i in
      if let lengths {
        lengths.withUnsafeBufferPointer { table.lookupPooled(i, width: width, lengths: $0, paddingID: padding, combiner: combiner, into: out) }
      } else {
        table.lookupPooled(i, width: width, lengths: nil, paddingID: padding, combiner: combiner, into: out)
      }
    }
  }

  /// C[..., M, N] = op(A)[..., M, K] · op(B)[..., K, N] with numpy batch broadcasting, one BLAS
  /// call per batch element (a single call for plain matrices).
  func runGemm(a: Int, b: Int, c: Int, transposeA: Bool, transposeB: Bool, plan: Plan) {
    var sa = plan.shapes[a], sb = plan.shapes[b], sc = plan.shapes[c]
    // A batch of row-major matrices times one matrix is one tall matrix times it: fold the batch
    // into A's rows (one large BLAS call instead of a call per batch element).
    if !transposeA && sb.count == 2 && sa.count > 2 && sc.count == sa.count {
      let rows = sa.dropLast().reduce(1, *)
      sa = [rows, sa[sa.count - 1]]
      sc = [rows, sc[sc.count - 1]]
    }
    let m = sc[sc.count - 2], n = sc[sc.count - 1]
    let k = transposeA ? sa[sa.count - 2] : sa[sa.count - 1]
    let batchShape = Array(sc.dropLast(2))
    let batches = elementCount(batchShape) ?? 1
    let aBatch = Self.batchOffsets(Array(sa.dropLast(2)), batchShape)
    let bBatch = Self.batchOffsets(Array(sb.dropLast(2)), batchShape)
    let aMatrix = sa[sa.count - 2] * sa[sa.count - 1], bMatrix = sb[sb.count - 2] * sb[sb.count - 1]
    let lda = sa[sa.count - 1], ldb = sb[sb.count - 1]
    if m == 0 || n == 0 { return }
    func multiply<T: BLASFloat>(_: T.Type) {
      let pa = plan.pointers[a].assumingMemoryBound(to: T.self), pb = plan.pointers[b].assumingMemoryBound(to: T.self)
      let pc = plan.pointers[c].assumingMemoryBound(to: T.self)
      // Batch element i's GEMM, on `threads` (the executable's pool, or one thread of it).
      let aa = UInt(bitPattern: pa), ba = UInt(bitPattern: pb), ca = UInt(bitPattern: pc)
      let element = { (i: Int, threads: ThreadPool) in
        ParallelGemm.gemm(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k,
                          a: UnsafePointer<T>(bitPattern: aa)! + aBatch[i] * aMatrix, lda: lda,
                          b: UnsafePointer<T>(bitPattern: ba)! + bBatch[i] * bMatrix, ldb: ldb,
                          c: UnsafeMutablePointer<T>(bitPattern: ca)! + i * m * n, pool: threads)
      }
      // A batch of GEMMs too small to split (attention's [B·H] products of 128 x 64 x 128: 2
      // MFLOP each, below ParallelGemm's threshold) ran one after another on one thread; the
      // batch elements are split over the pool instead, each GEMM on its thread's one-thread
      // path (the code and bits it took before).
      if batches >= 2, pool.threadCount > 1, ParallelGemm.split(m: m, n: n, k: k, pool: pool) == .none {
        let parts = min(batches, pool.threadCount * 4)
        pool.parallelFor(parts) { part in
          for i in (batches * part / parts)..<(batches * (part + 1) / parts) { element(i, ThreadPool.callingThread) }
        }
        return
      }
      for i in 0..<batches { element(i, pool) }
    }
    let dtype = slots[c].type.dtype
    if dtype == .f64 { multiply(Double.self) } else if dtype == .f32 { multiply(Float.self) } else {
      // f16 and bf16: ttfc's half GEMM (f32 accumulation, rounded once to the result type).
      let size = dtype.byteSize, pa = plan.pointers[a], pb = plan.pointers[b], pc = plan.pointers[c]
      for i in 0..<batches {
        HalfGemm.gemm(input: slots[a].type.dtype, output: dtype, transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k,
                      a: pa + aBatch[i] * aMatrix * size, lda: lda, b: pb + bBatch[i] * bMatrix * size, ldb: ldb,
                      c: pc + i * m * n * size, pool: pool)
      }
    }
  }

  /// For each batch index of `target`, the batch index of a (broadcast) operand batch shape.
  static func batchOffsets(_ shape: [Int], _ target: [Int]) -> [Int] {
    let count = elementCount(target) ?? 1
    let offset = target.count - shape.count
    let strides = rowMajorStrides(shape)
    return (0..<count).map { flat in
      var remaining = flat, source = 0
      for axis in stride(from: target.count - 1, through: 0, by: -1) {
        let i = remaining % max(target[axis], 1)
        remaining /= max(target[axis], 1)
        let k = axis - offset
        if k >= 0 && shape[k] != 1 { source += i * strides[k] }
      }
      return source
    }
  }
}


extension Executable {
  /// For each result, the index of the last thunk that writes it (-1: no thunk does, e.g. an
  /// argument returned as it is): a caller of ``PreparedRun/execute(afterEachThunk:)`` may use
  /// a result as soon as that thunk has run (data-parallel training starts the allreduce of a
  /// gradient then, while the rest of the backward pass runs).
  public var thunkCount: Int { thunks.count }

  public var resultReadiness: [Int] {
    var lastWriter: [Int: Int] = [:]
    for (i, thunk) in thunks.enumerated() {
      let written: [Int]
      switch thunk {
      case .kernel(_, _, let results, _): written = results
      case .gemm(_, _, let c, _, _): written = [c]
      case .gemmSummedOverBatch(_, _, let c): written = [c]
      case .conv(_, _, _, let result, _): written = [result]
      case .pool(_, _, _, let result): written = [result]
      case .rows(_, _, let results): written = results
      case .copy(_, _, let result): written = [result]
      case .interpretOp(_, _, let result): written = [result]
      case .interpretRegion(_, _, let results): written = results
      case .table(_, _, _, let result): written = [result]
      }
      for slot in written { lastWriter[slot] = i }
    }
    return outputs.map { lastWriter[$0] ?? -1 }
  }
}

extension Executable.PreparedRun {
  /// Runs every thunk, calling `afterEachThunk(i)` after thunk `i` (not traced).
  public func execute(afterEachThunk: (Int) throws -> Void) throws {
    for (i, thunk) in executable.thunks.enumerated() {
      try executable.execute(thunk, plan: plan, symbolValues: symbolValues)
      try afterEachThunk(i)
    }
  }
}
