// Executable — a compiled function: a list of thunks over one memory arena. Compilation inlines
// calls, expands composites and runs -O2 (Pipelines.codegen), then turns each top-level op into a
// thunk:
//   fusion (loop / reduction)  -> one JIT kernel for the whole region
//   fusion (gemm)              -> a GEMM (ParallelGemm: ttfc's JitGemm for f32, OpenBLAS for f64
//                                 and matrix-vector products), then one kernel for the epilogue
//   matmul                     -> a GEMM likewise (transposes folded into its flags)
//   any other op               -> a one-op JIT kernel
//   embedding_lookup(_pooled)  -> evaluation lookups of the module's tables (TTEmbedding)
//   anything the code generator cannot compile yet (f16/bf16, gather, argmax, sparse cross
//   entropy, ...) -> the reference interpreter for that op or region, so every program runs.
// Kernels compile in parallel before lowering (KernelCache.precompile); elementwise regions are
// compiled shape-free (FlatKernels), and large function results are written with streaming
// stores (`streams`). Memory: parameters and
// constants live in their own buffers for the executable's lifetime, donated static-shaped
// arguments (training state) are pinned in buffers of their own; every other value gets an offset
// in one arena per capacity binding of the symbolic dimensions (ExecutableLayouts.swift), reused
// by every later run at or below it: no allocation per step in steady state. Large kernels are
// split across the thread pool along their outermost loop.

import COpenBLAS
import Glibc
import TTCodegen
import TTEmbedding
import TTIR
import TTInterp
import TTPasses
import TTSupport

public enum ExecutableError: Error, CustomStringConvertible {
  case invalid(String)
  case input(InterpreterError)
  case runtime(String)
  public var description: String {
    switch self {
    case .invalid(let m): return m
    case .input(let e): return e.description
    case .runtime(let m): return m
    }
  }
}

public struct ExecutableStatistics: Sendable {
  public var kernels = 0
  public var gemms = 0
  public var interpreted = 0
  public var compileSeconds = 0.0
  /// Parts of compileSeconds: the pass pipeline, and parameter initialization.
  public var optimizeSeconds = 0.0
  public var parameterSeconds = 0.0
  /// Why ops run on the interpreter, with counts.
  public var fallbackReasons: [String: Int] = [:]
}

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

  public let function: Function
  public let lowered: Function
  public private(set) var statistics = ExecutableStatistics()
  var slots: [Slot] = []
  var slotOf: [ValueID: Int] = [:]
  var thunks: [Thunk] = []
  var outputs: [Int] = []
  var layouts: [[Int]: Layout] = [:]
  /// The tag of the memory this executable allocates (HostMemory): all of it is freed with it.
  public let memoryOwner = HostMemory.newOwner()
  /// Matmuls folded into the batch sum that reads them: result -> (A slot, B slot).
  var deferredMatmuls: [ValueID: (Int, Int)] = [:]
  /// Index in `lowered.body` of each value's last reader, and of the op being lowered.
  var lastUse: [ValueID: Int] = [:]
  var currentOp = 0
  let symbols: [String]
  let pool: ThreadPool
  /// Kernels with fewer output elements than this run on one thread.
  public var parallelThreshold = 1 << 15
  /// Values that took an operand's memory in place (over all plans).
  public internal(set) var statisticsReused = 0
  private let lock = NSLockish()

  /// Compiles `functionName` of `module`; parameters come from `params` or their initializers.
  /// Arguments whose buffers the executable may overwrite once it has read them (JAX's
  /// donate_argnums): a training step donates parameters and slots so updates happen in place.
  public let donated: Set<Int>

  /// Result index -> donated argument index whose buffer that result should take if it can
  /// (XLA's input/output aliasing): a training step's new parameter overwrites the old one.
  public let aliasing: [Int: Int]

  /// The embedding tables the function's lookups read (given, or made from the declarations).
  public let tables: [String: EmbeddingTable]

  public init(module: Module, function functionName: String, params: [String: Tensor] = [:],
              tables givenTables: [String: EmbeddingTable] = [:],
              pool: ThreadPool = .shared, pipeline: Pipeline = Pipelines.codegen,
              donating donated: Set<Int> = [], aliasing: [Int: Int] = [:], placeholderParams: Bool = false) throws(ExecutableError) {
    self.donated = donated
    self.aliasing = aliasing
    let problems = Verifier.verify(module)
    if let first = problems.first { throw .invalid("module does not verify: \(first)") }
    guard let original = module.function(named: functionName) else { throw .invalid("no function named '@\(functionName)'") }
    function = original
    self.pool = pool
    // ttfc's GEMM routines (JitGemm) compile once per process, on a thread of their own started
    // here, while the passes run and the kernels compile, if any function of the module has an
    // f32 matmul; the end of this initializer waits for them, so what a process compiles does
    // not depend on timing (nor on whether a GEMM of the first run is large enough to use them).
    let wantsGemmRoutines = module.functions.contains { f in
      f.body.contains { id in f[id].code == .matmul && f[id].results.first.map { f.type(of: $0).dtype == .f32 } == true }
    }
    if wantsGemmRoutines { JitGemm.compileInBackground() }
    defer { if wantsGemmRoutines { _ = JitGemm.enabled } }
    let start = DispatchClock.now()
    var optimized = module
    do { try PassManager().run(pipeline, on: &optimized, context: PassContext()) }
    catch { throw .invalid("\(error)") }
    lowered = optimized.function(named: functionName)!
    statistics.optimizeSeconds = DispatchClock.now() - start
    var set = Set<String>()
    for v in lowered.values { set.formUnion(v.type.symbols) }
    symbols = set.sorted()

    // Parameters: given ones are checked against every declaration (as the interpreter does);
    // only those this function reads are materialized, once, and kept in native layout, and
    // only those need a value (given, or an initializer): every one missing is named at once.
    // With `placeholderParams` (code is emitted, not run) a missing value reads zeros.
    for p in module.params {
      if let given = params[p.name], given.type != p.type {
        throw .invalid(InterpreterError.paramMismatch(name: p.name, expected: p.type, got: given.type).description)
      }
    }
    let read = Set(lowered.values.compactMap { v -> String? in if case .global(let name) = v.definition { return name }; return nil })
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
    for (k, value) in lowered.values.enumerated() {
      switch value.definition {
      case .argument(let i):
        if donated.contains(i), let shape = value.type.staticShape, let count = elementCount(shape) {
          let p = HostMemory.allocate(max(count * value.type.dtype.byteSize, 64), owner: memoryOwner)
          memset(p, 0, max(count * value.type.dtype.byteSize, 64))
          slotOf[ValueID(k)] = addSlot(value.type, .pinned(i, p))
        } else {
          slotOf[ValueID(k)] = addSlot(value.type, .argument(i))
        }
      case .global(let name):
        guard let param = module.param(named: name) else { continue }   // a table: read by its lookups
        let tensor: Tensor
        if let given = params[name] { tensor = given } else if let initializer = param.initializer {
          do { tensor = try ParamInitializer.materialize(initializer, type: param.type, name: name) }
          catch { throw .invalid("\(error)") }
        } else {
          guard let shape = param.type.staticShape else { throw .invalid("parameter '@\(name)' has a symbolic type") }
          tensor = Tensor.filled(param.type.dtype, shape: shape, value: 0)
        }
        slotOf[ValueID(k)] = addSlot(value.type, .persistent(Self.persistentCopy(tensor, owner: memoryOwner)))
      case .result: break
      }
    }
    statistics.parameterSeconds = DispatchClock.now() - start - statistics.optimizeSeconds
    // Compile every kernel the lowering below will ask for, in parallel; lowering then finds
    // them in the cache (and still decides fallbacks itself, one op at a time).
    for (i, id) in lowered.body.enumerated() { for v in lowered[id].operands { lastUse[v] = i } }
    KernelCache.shared.precompile(kernelRequests(), threads: pool.threadCount)
    for (i, id) in lowered.body.enumerated() {
      currentOp = i
      try lower(lowered[id])
    }
    outputs = lowered.returnValues.map { slotOf[$0]! }
    statistics.compileSeconds = DispatchClock.now() - start
  }

  deinit {
    for slot in slots {
      if case .persistent(let p) = slot.storage { HostMemory.release(p) }
      if case .pinned(_, let p) = slot.storage { HostMemory.release(p) }
    }
  }

  static func persistentCopy(_ t: Tensor, owner: Int) -> UnsafeMutableRawPointer {
    let p = HostMemory.allocate(max(t.count * t.dtype.byteSize, 1), owner: owner)
    RawTensor.write(t, to: p)
    return p
  }

  func addSlot(_ type: TensorType, _ storage: Slot.Storage) -> Int {
    slots.append(Slot(type: type, storage: storage))
    return slots.count - 1
  }

  // MARK: lowering ops to thunks

  func lower(_ op: OpNode) throws(ExecutableError) {
    if op.code == .constant, let value = op.constantValue, let shape = lowered.type(of: op.results[0]).staticShape {
      let full = value.shape == shape ? value : Tensor.filled(value.dtype, shape: shape, value: value.doubles.first ?? 0)
      slotOf[op.results[0]] = addSlot(lowered.type(of: op.results[0]), .persistent(Self.persistentCopy(full, owner: memoryOwner)))
      return
    }
    let results = op.results.map { r in addSlot(lowered.type(of: r), .arena) }
    for (r, s) in zip(op.results, results) { slotOf[r] = s }
    let operands = op.operands.map { slotOf[$0] ?? -1 }   // -1: a table operand
    if op.code == .fusion, let body = op.body {
      if case .string("gemm")? = op.attributes["kind"], lowerGemmRegion(body, op: op, operands: operands, result: results[0]) { return }
      if tryKernel(body, operands: operands, results: results, inPlace: dyingArguments(body, op.operands), values: op.results) { return }
      try interpretRegion(body, operands: operands, results: results)
      return
    }
    if op.code == .embeddingLookup || op.code == .embeddingLookupPooled {
      guard case .global(let name) = lowered[op.operands[0]].definition, let table = tables[name] else {
        throw .invalid("'\(op.code)' reads no table")
      }
      thunks.append(.table(table, op, operands: Array(operands.dropFirst()), result: results[0]))
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
    // A single op: as a one-op kernel if it compiles, else on the interpreter.
    let single = singleOpBody(op)
    if op.results.count == 1, tryKernel(single, operands: operands, results: results, inPlace: dyingArguments(single, op.operands),
                                        values: op.results) { return }
    if op.code == .call || op.code == .fusion || op.results.count != 1 {
      try interpretRegion(single, operands: operands, results: results)
      return
    }
    statistics.interpreted += 1
    thunks.append(.interpretOp(op, operands: operands, result: results[0]))
  }

  /// Whether `op` is `matmul(A, B, transpose_a)` over equal batch dims whose only reader sums its
  /// result over exactly those batch dims: then both become one GEMM over the flattened rows
  /// (`gemmSummedOverBatch`), instead of a GEMM per batch element and a reduction.
  func summedOverBatch(_ op: OpNode) -> Bool {
    let ta = lowered.type(of: op.operands[0]), tb = lowered.type(of: op.operands[1])
    guard (op.attributes.bool("transpose_a") ?? false), !(op.attributes.bool("transpose_b") ?? false),
          ta.rank >= 3, ta.rank == tb.rank, ta.dims.dropLast(2) == tb.dims.dropLast(2),
          gemmSupported([ta, tb]), !lowered.returnValues.contains(op.results[0]) else { return false }
    let readers = lowered.body.filter { lowered[$0].operands.contains(op.results[0]) }
    guard readers.count == 1 else { return false }
    let reader = lowered[readers[0]]
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
      if op.code == .constant, op.constantValue != nil, lowered.type(of: op.results[0]).staticShape != nil { continue }
      if op.code == .fusion, let body = op.body {
        if case .string("gemm")? = op.attributes["kind"], let epilogue = Self.gemmEpilogue(body, operands: Array(op.operands.indices)) {
          requests.append(KernelCache.Request(epilogue.body))
        } else {
          let inPlace = dyingArguments(body, op.operands)
          requests.append(KernelCache.Request(Self.kernelBody(body), streamingOutput: streams(op.results, inPlace: inPlace)))
        }
        continue
      }
      if op.code == .matmul, gemmSupported(op.operands.map { lowered.type(of: $0) }) { continue }
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
    let returned = Set(lowered.returnValues)
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
          inPlace.isEmpty, lowered.returnValues.contains(value), lastUse[value] == nil,
          let shape = lowered.type(of: value).staticShape else { return false }
    return shape.reduce(1, *) * lowered.type(of: value).dtype.byteSize >= Self.streamingThreshold
  }

  /// A quarter of the last-level cache (8 MiB when sysfs does not say), at least 4 MiB;
  /// `TTFC_STREAMING_BYTES` overrides it (0 streams every function result).
  static let streamingThreshold: Int = {
    if let text = getenv("TTFC_STREAMING_BYTES"), let bytes = Int(String(cString: text)) { return bytes }
    return max(4 << 20, (HostInfo.lastLevelCacheBytes() ?? (32 << 20)) / 4)
  }()

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

  func gemmSupported(_ types: [TensorType]) -> Bool {
    types.allSatisfy { $0.dtype == .f32 } || types.allSatisfy { $0.dtype == .f64 }
  }

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

  // MARK: running

  /// Overwrites the parameters this function reads with the given values (types must match the
  /// declarations): an evaluation executable follows a training run without being rebuilt.
  public func updateParameters(_ params: [String: Tensor]) throws(ExecutableError) {
    for (k, value) in lowered.values.enumerated() {
      guard case .global(let name) = value.definition, let given = params[name], let slot = slotOf[ValueID(k)],
            case .persistent(let pointer) = slots[slot].storage else { continue }
      guard given.type == value.type else {
        throw .invalid(InterpreterError.paramMismatch(name: name, expected: value.type, got: given.type).description)
      }
      RawTensor.write(given, to: pointer)
    }
  }

  /// Runs the function on `inputs` and returns its results.
  public func run(_ inputs: [Tensor]) throws(ExecutableError) -> [Tensor] {
    let binding: [String: Int]
    do { binding = try Interpreter.bindInputs(function, inputs.map(\.type)) } catch { throw .input(error) }
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
      if executable.profile {
        for (i, thunk) in executable.thunks.enumerated() {
          let start = DispatchClock.now()
          try executable.execute(thunk, plan: plan, symbolValues: symbolValues)
          executable.thunkSeconds[i, default: 0] += DispatchClock.now() - start
        }
        return
      }
      for thunk in executable.thunks { try executable.execute(thunk, plan: plan, symbolValues: symbolValues) }
    }
  }

  /// The symbol values (in `symbols` order) that inputs of these types bind.
  public func symbolValues(inputTypes: [TensorType]) throws(ExecutableError) -> [Int] {
    let binding: [String: Int]
    do { binding = try Interpreter.bindInputs(function, inputTypes) } catch { throw .input(error) }
    return symbols.map { binding[$0] ?? 0 }
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

  static func uses(_ thunk: Thunk) -> (reads: [Int], writes: [Int]) {
    switch thunk {
    case .kernel(_, let operands, let results, _): return (operands, results)
    case .gemm(let a, let b, let c, _, _): return ([a, b], [c])
    case .gemmSummedOverBatch(let a, let b, let c): return ([a, b], [c])
    case .interpretOp(_, let operands, let result): return (operands, [result])
    case .interpretRegion(_, let operands, let results): return (operands, results)
    case .table(_, _, let operands, let result): return (operands, [result])
    }
  }

  /// With TTFC_PROFILE set, prepared runs time every thunk (see `profileReport`).
  let profile = getenv("TTFC_PROFILE") != nil
  var thunkSeconds: [Int: Double] = [:]

  /// Seconds spent in each thunk so far (TTFC_PROFILE runs), most expensive first.
  public var profileReport: String {
    let listing = thunkListing
    return thunkSeconds.sorted { $0.value > $1.value }.map { String(format: "%8.3f ms  ", $0.value * 1e3) + listing[$0.key] }
      .joined(separator: "\n")
  }

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
      if slots[c].type.dtype == .f64 { multiply(Double.self) } else { multiply(Float.self) }
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
      for i in 0..<batches {
        ParallelGemm.gemm(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, a: pa + aBatch[i] * aMatrix, lda: lda,
                          b: pb + bBatch[i] * bMatrix, ldb: ldb, c: pc + i * m * n, pool: pool)
      }
    }
    if slots[c].type.dtype == .f64 { multiply(Double.self) } else { multiply(Float.self) }
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

