// Executable — a compiled function: a list of thunks over one memory arena. Compilation inlines
// calls, expands composites and runs -O2 (Pipelines.codegen), then turns each top-level op into a
// thunk:
//   fusion (loop / reduction)  -> one JIT kernel for the whole region
//   fusion (gemm)              -> a BLAS call for the matmul, then one kernel for the epilogue
//   matmul                     -> a BLAS call (transposes folded into its flags)
//   any other op               -> a one-op JIT kernel
//   anything the code generator cannot compile yet (f16/bf16, gather, argmax, sparse cross
//   entropy, ...) -> the reference interpreter for that op or region, so every program runs.
// Memory: parameters and constants live in their own buffers for the executable's lifetime; every
// other value gets an offset in one arena, planned by liveness (first fit over the thunk
// sequence) once per binding of the symbolic dimensions and reused by every later run with the
// same sizes: no allocation per step in steady state. Large kernels are split across the thread
// pool along their outermost loop.

import COpenBLAS
import Glibc
import TTCodegen
import TTIR
import TTInterp
import TTPasses

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
    /// output element at the same index), so the output can take the operand's memory.
    case kernel(CompiledKernel, operands: [Int], result: Int, inPlace: [Int])
    case gemm(a: Int, b: Int, c: Int, transposeA: Bool, transposeB: Bool)
    case interpretOp(OpNode, operands: [Int], result: Int)
    case interpretRegion(Interpreter, operands: [Int], results: [Int])
  }

  struct Slot {
    var type: TensorType
    enum Storage { case arena, argument(Int), persistent(UnsafeMutableRawPointer) }
    var storage: Storage
  }

  struct Plan {
    var shapes: [[Int]]
    var offsets: [Int]
    var arena: UnsafeMutableRawPointer
    var arenaBytes: Int
  }

  public let function: Function
  public let lowered: Function
  public private(set) var statistics = ExecutableStatistics()
  var slots: [Slot] = []
  var slotOf: [ValueID: Int] = [:]
  var thunks: [Thunk] = []
  var outputs: [Int] = []
  var plans: [[Int]: Plan] = [:]
  let symbols: [String]
  let pool: ThreadPool
  /// Kernels with fewer output elements than this run on one thread.
  public var parallelThreshold = 1 << 15
  /// Values that took an operand's memory in place (over all plans).
  public private(set) var statisticsReused = 0
  private let lock = NSLockish()

  /// Compiles `functionName` of `module`; parameters come from `params` or their initializers.
  /// Arguments whose buffers the executable may overwrite once it has read them (JAX's
  /// donate_argnums): a training step donates parameters and slots so updates happen in place.
  public let donated: Set<Int>

  /// Result index -> donated argument index whose buffer that result should take if it can
  /// (XLA's input/output aliasing): a training step's new parameter overwrites the old one.
  public let aliasing: [Int: Int]

  public init(module: Module, function functionName: String, params: [String: Tensor] = [:],
              pool: ThreadPool = .shared, pipeline: Pipeline = Pipelines.codegen,
              donating donated: Set<Int> = [], aliasing: [Int: Int] = [:]) throws(ExecutableError) {
    self.donated = donated
    self.aliasing = aliasing
    let problems = Verifier.verify(module)
    if let first = problems.first { throw .invalid("module does not verify: \(first)") }
    guard let original = module.function(named: functionName) else { throw .invalid("no function named '@\(functionName)'") }
    function = original
    self.pool = pool
    let start = DispatchClock.now()
    var optimized = module
    do { try PassManager().run(pipeline, on: &optimized, context: PassContext()) }
    catch { throw .invalid("\(error)") }
    lowered = optimized.function(named: functionName)!
    statistics.optimizeSeconds = DispatchClock.now() - start
    var set = Set<String>()
    for v in lowered.values { set.formUnion(v.type.symbols) }
    symbols = set.sorted()

    // Parameters: initialized once, kept in native layout.
    let interpreterForParams: Interpreter
    do { interpreterForParams = try Interpreter(module: module, params: params) }
    catch { throw .invalid("\(error)") }
    for (k, value) in lowered.values.enumerated() {
      switch value.definition {
      case .argument(let i): slotOf[ValueID(k)] = addSlot(value.type, .argument(i))
      case .global(let name):
        let tensor = interpreterForParams.params[name]!
        slotOf[ValueID(k)] = addSlot(value.type, .persistent(Self.persistentCopy(tensor)))
      case .result: break
      }
    }
    statistics.parameterSeconds = DispatchClock.now() - start - statistics.optimizeSeconds
    for id in lowered.body { try lower(lowered[id]) }
    outputs = lowered.returnValues.map { slotOf[$0]! }
    statistics.compileSeconds = DispatchClock.now() - start
  }

  deinit {
    for slot in slots { if case .persistent(let p) = slot.storage { free(p) } }
    for plan in plans.values { free(plan.arena) }
  }

  static func persistentCopy(_ t: Tensor) -> UnsafeMutableRawPointer {
    let bytes = max(t.count * t.dtype.byteSize, 1)
    var p: UnsafeMutableRawPointer?
    posix_memalign(&p, 64, bytes)
    RawTensor.write(t, to: p!)
    return p!
  }

  func addSlot(_ type: TensorType, _ storage: Slot.Storage) -> Int {
    slots.append(Slot(type: type, storage: storage))
    return slots.count - 1
  }

  // MARK: lowering ops to thunks

  func lower(_ op: OpNode) throws(ExecutableError) {
    if op.code == .constant, let value = op.constantValue, let shape = lowered.type(of: op.results[0]).staticShape {
      let full = value.shape == shape ? value : Tensor.filled(value.dtype, shape: shape, value: value.doubles.first ?? 0)
      slotOf[op.results[0]] = addSlot(lowered.type(of: op.results[0]), .persistent(Self.persistentCopy(full)))
      return
    }
    let results = op.results.map { r in addSlot(lowered.type(of: r), .arena) }
    for (r, s) in zip(op.results, results) { slotOf[r] = s }
    let operands = op.operands.map { slotOf[$0]! }
    if op.code == .fusion, let body = op.body {
      if case .string("gemm")? = op.attributes["kind"], lowerGemmRegion(body, operands: operands, result: results[0]) { return }
      if tryKernel(body, operands: operands, result: results[0]) { return }
      try interpretRegion(body, operands: operands, results: results)
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
    var single = Function(name: "op")
    let arguments = op.operands.map { single.addArgument(name: lowered[$0].name, type: lowered.type(of: $0)) }
    let id = single.append(op.code, arguments, resultTypes: op.results.map { lowered.type(of: $0) },
                           attributes: op.attributes, callee: op.callee, regions: op.regions)
    single.returnValues = single[id].results
    single.resultTypes = op.results.map { lowered.type(of: $0) }
    if op.results.count == 1, tryKernel(single, operands: operands, result: results[0]) { return }
    if op.code == .call || op.code == .fusion || op.results.count != 1 {
      try interpretRegion(single, operands: operands, results: results)
      return
    }
    statistics.interpreted += 1
    thunks.append(.interpretOp(op, operands: operands, result: results[0]))
  }

  /// Operands whose buffer the output may reuse: the body is purely elementwise (no data
  /// movement, no reductions), so element i of an operand is read only for output element i, and
  /// the operand has the output's exact type.
  static func inPlaceOperands(_ body: Function, _ operands: [Int]) -> [Int] {
    let elementwise = body.body.allSatisfy { body[$0].code.info.isElementwise || body[$0].code == .constant }
    guard elementwise, let output = body.resultTypes.first else { return [] }
    return zip(body.arguments, operands).filter { body.type(of: $0.0) == output }.map(\.1)
  }

  func gemmSupported(_ types: [TensorType]) -> Bool {
    types.allSatisfy { $0.dtype == .f32 } || types.allSatisfy { $0.dtype == .f64 }
  }

  func tryKernel(_ body: Function, operands: [Int], result: Int) -> Bool {
    do {
      let kernel = try KernelCache.shared.kernel(for: body)
      thunks.append(.kernel(kernel, operands: operands, result: result, inPlace: Self.inPlaceOperands(body, operands)))
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

  /// matmul (BLAS) + epilogue (one kernel reading the matmul's result). False if the region is not
  /// of that form or the epilogue does not compile; the caller then falls back.
  func lowerGemmRegion(_ body: Function, operands: [Int], result: Int) -> Bool {
    guard let first = body.body.first, body[first].code == .matmul,
          gemmSupported(body[first].operands.map { body.type(of: $0) }) else { return false }
    let matmul = body[first]
    let argumentIndex: (ValueID) -> Int? = { v in body.arguments.firstIndex(of: v) }
    guard let ia = argumentIndex(matmul.operands[0]), let ib = argumentIndex(matmul.operands[1]) else { return false }
    let product = matmul.results[0]
    // The epilogue as its own body: the product plus the region's other arguments.
    var epilogue = Function(name: "epilogue")
    var map: [ValueID: ValueID] = [:]
    var epilogueOperands: [Int] = []
    let productArgument = epilogue.addArgument(name: body[product].name, type: body.type(of: product))
    map[product] = productArgument
    for id in body.body.dropFirst() {
      let op = body[id]
      var inner: [ValueID] = []
      for v in op.operands {
        if let m = map[v] { inner.append(m); continue }
        guard let k = argumentIndex(v) else { return false }
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
    let kernel: CompiledKernel
    do { kernel = try KernelCache.shared.kernel(for: epilogue) } catch { return false }
    let productSlot = addSlot(body.type(of: product), .arena)
    thunks.append(.gemm(a: operands[ia], b: operands[ib], c: productSlot,
                        transposeA: matmul.attributes.bool("transpose_a") ?? false,
                        transposeB: matmul.attributes.bool("transpose_b") ?? false))
    thunks.append(.kernel(kernel, operands: [productSlot] + epilogueOperands, result: result,
                          inPlace: Self.inPlaceOperands(epilogue, [productSlot] + epilogueOperands)))
    statistics.gemms += 1
    statistics.kernels += 1
    return true
  }

  // MARK: running

  /// Runs the function on `inputs` and returns its results.
  public func run(_ inputs: [Tensor]) throws(ExecutableError) -> [Tensor] {
    let binding: [String: Int]
    do { binding = try Interpreter.bindInputs(function, inputs.map(\.type)) } catch { throw .input(error) }
    let key = symbols.map { binding[$0] ?? 0 }
    return try lock.withLock { () throws(ExecutableError) -> [Tensor] in
      let plan = try self.plan(for: key, binding: binding)
      for (k, slot) in slots.enumerated() {
        if case .argument(let i) = slot.storage { RawTensor.write(inputs[i], to: plan.arena + plan.offsets[k]) }
      }
      for thunk in thunks { try execute(thunk, plan: plan, symbolValues: key) }
      return outputs.map { RawTensor.read(slots[$0].type.dtype, shape: plan.shapes[$0], from: pointer($0, plan)) }
    }
  }

  /// A run prepared for fixed input shapes: write inputs in native layout at `inputs[i]`, call
  /// `execute()` any number of times, read results at `outputs[i]`. No conversion, no allocation:
  /// this is how benchmarks and the training loop drive an executable.
  public struct PreparedRun {
    public let inputs: [UnsafeMutableRawPointer]
    public let outputs: [UnsafeMutableRawPointer]
    public let outputShapes: [[Int]]
    let executable: Executable
    let plan: Plan
    let key: [Int]
    public func execute() throws(ExecutableError) {
      if executable.profile {
        for (i, thunk) in executable.thunks.enumerated() {
          let start = DispatchClock.now()
          try executable.execute(thunk, plan: plan, symbolValues: key)
          executable.thunkSeconds[i, default: 0] += DispatchClock.now() - start
        }
        return
      }
      for thunk in executable.thunks { try executable.execute(thunk, plan: plan, symbolValues: key) }
    }
  }

  public func prepare(inputTypes: [TensorType]) throws(ExecutableError) -> PreparedRun {
    let binding: [String: Int]
    do { binding = try Interpreter.bindInputs(function, inputTypes) } catch { throw .input(error) }
    let key = symbols.map { binding[$0] ?? 0 }
    let plan = try lock.withLock { () throws(ExecutableError) -> Plan in try self.plan(for: key, binding: binding) }
    var inputPointers = [UnsafeMutableRawPointer](repeating: plan.arena, count: inputTypes.count)
    for (k, slot) in slots.enumerated() { if case .argument(let i) = slot.storage { inputPointers[i] = pointer(k, plan) } }
    return PreparedRun(inputs: inputPointers, outputs: outputs.map { pointer($0, plan) },
                       outputShapes: outputs.map { plan.shapes[$0] }, executable: self, plan: plan, key: key)
  }

  func pointer(_ slot: Int, _ plan: Plan) -> UnsafeMutableRawPointer {
    if case .persistent(let p) = slots[slot].storage { return p }
    return plan.arena + plan.offsets[slot]
  }

  /// Shapes and arena offsets for one binding of the symbols, computed once and cached.
  func plan(for key: [Int], binding: [String: Int]) throws(ExecutableError) -> Plan {
    if let existing = plans[key] { return existing }
    let shapes = slots.map { slot in slot.type.dims.map { d -> Int in
      switch d { case .known(let n): return n; case .symbol(let s): return binding[s] ?? 0 } } }
    // Live ranges over the thunk sequence: arguments from before the first thunk, outputs to the end.
    var first = [Int](repeating: Int.max, count: slots.count)
    var last = [Int](repeating: -1, count: slots.count)
    // Arguments stay intact for the whole run (a prepared run may be executed again on them),
    // except donated ones, which live only until their last use.
    for (k, slot) in slots.enumerated() {
      if case .argument(let i) = slot.storage { first[k] = -1; last[k] = donated.contains(i) ? -1 : thunks.count }
    }
    for (t, thunk) in thunks.enumerated() {
      let (reads, writes) = Self.uses(thunk)
      for s in reads { last[s] = max(last[s], t) }
      for s in writes { first[s] = min(first[s], t); last[s] = max(last[s], t) }
    }
    for s in outputs { last[s] = thunks.count }
    var offsets = [Int](repeating: 0, count: slots.count)
    var placed: [(start: Int, end: Int, first: Int, last: Int)] = []
    var blockOf: [Int: Int] = [:]          // slot -> index in `placed`
    var arenaBytes = 0
    let order = slots.indices.filter { if case .persistent = slots[$0].storage { return false }; return first[$0] != Int.max }
      .sorted { first[$0] < first[$1] }
    // In-place candidates: the output of thunk t may take the block of an operand that dies at t.
    var reusable: [Int: [Int]] = [:]       // result slot -> operand slots
    var argumentSlot: [Int: Int] = [:]
    for (k, slot) in slots.enumerated() { if case .argument(let i) = slot.storage { argumentSlot[i] = k } }
    var preferred: [Int: Int] = [:]        // result slot -> the argument slot it should overwrite
    for (r, a) in aliasing where r < outputs.count { if let k = argumentSlot[a] { preferred[outputs[r]] = k } }
    for (t, thunk) in thunks.enumerated() {
      if case .kernel(_, _, let result, let inPlace) = thunk {
        let candidates = inPlace.filter { last[$0] == t }
        let first = preferred[result].map { p in candidates.filter { $0 == p } } ?? []
        reusable[result] = first + candidates.filter { !first.contains($0) }
      }

    }
    placing: for s in order {
      guard let count = elementCount(shapes[s]), count <= maxTensorElements else {
        throw .runtime("a value of shape \(shapes[s]) is too large")
      }
      let bytes = (max(count * slots[s].type.dtype.byteSize, 1) + 63) / 64 * 64
      for o in reusable[s] ?? [] {
        guard let b = blockOf[o], isReusable(o), placed[b].end - placed[b].start == bytes,
              !outputs.contains(o) else { continue }
        offsets[s] = placed[b].start
        placed[b].last = max(placed[b].last, last[s])
        blockOf[s] = b
        statisticsReused += 1
        continue placing
      }
      // First fit among blocks whose live ranges overlap this one.
      let conflicts = placed.filter { !($0.last < first[s] || last[s] < $0.first) }.sorted { $0.start < $1.start }
      var offset = 0
      for c in conflicts where offset + bytes > c.start { offset = max(offset, c.end) }
      offsets[s] = offset
      blockOf[s] = placed.count
      placed.append((offset, offset + bytes, first[s], last[s]))
      arenaBytes = max(arenaBytes, offset + bytes)
    }
    var arena: UnsafeMutableRawPointer?
    posix_memalign(&arena, 64, max(arenaBytes, 64))
    let plan = Plan(shapes: shapes, offsets: offsets, arena: arena!, arenaBytes: arenaBytes)
    plans[key] = plan
    return plan
  }

  static func uses(_ thunk: Thunk) -> (reads: [Int], writes: [Int]) {
    switch thunk {
    case .kernel(_, let operands, let result, _): return (operands, [result])
    case .gemm(let a, let b, let c, _, _): return ([a, b], [c])
    case .interpretOp(_, let operands, let result): return (operands, [result])
    case .interpretRegion(_, let operands, let results): return (operands, results)
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
      case .kernel(let k, let operands, let result, let inPlace):
        let reuse = inPlace.isEmpty ? "" : " (may reuse \(inPlace.map { "s\($0)" }.joined(separator: ", ")))"
        return "kernel \(k.name)(\(operands.map { "s\($0)" }.joined(separator: ", "))) -> s\(result) : \(slots[result].type)\(reuse)"
      case .gemm(let a, let b, let c, let ta, let tb): return "gemm s\(a)\(ta ? "^T" : "") x s\(b)\(tb ? "^T" : "") -> s\(c) : \(slots[c].type)"
      case .interpretOp(let op, let operands, let result): return "interpret '\(op.code)'(\(operands.map { "s\($0)" }.joined(separator: ", "))) -> s\(result)"
      case .interpretRegion(_, let operands, let results): return "interpret region(\(operands.map { "s\($0)" }.joined(separator: ", "))) -> \(results.map { "s\($0)" }.joined(separator: ", "))"
      }
    }
  }

  /// Whether a slot's memory may be taken over by another value once the slot is dead.
  func isReusable(_ slot: Int) -> Bool {
    switch slots[slot].storage {
    case .arena: return true
    case .argument(let i): return donated.contains(i)
    case .persistent: return false
    }
  }

  /// Bytes of the arena for a binding (after a run with it); nil if not planned yet.
  public func arenaBytes(symbols values: [Int]) -> Int? { plans[values]?.arenaBytes }

  func execute(_ thunk: Thunk, plan: Plan, symbolValues: [Int]) throws(ExecutableError) {
    switch thunk {
    case .kernel(let kernel, let operands, let result, _):
      var buffers: [UnsafeMutableRawPointer?] = operands.map { pointer($0, plan) } + [pointer(result, plan)]
      let symbolArray: [Int64] = kernel.signature.symbols.map { s in Int64(symbolValues[symbols.firstIndex(of: s)!]) }
      let shape = plan.shapes[result]
      let outer = shape.first ?? 1
      // Work is what the kernel reads and writes: a row reduction writes little but reads a lot.
      let total = ([result] + operands).reduce(0) { $0 + (elementCount(plan.shapes[$1]) ?? 0) }
      let entry = kernel.entry
      symbolArray.withUnsafeBufferPointer { syms in
        buffers.withUnsafeMutableBufferPointer { bufs in
          let chunks = (total >= parallelThreshold && outer >= 2) ? min(pool.threadCount, outer) : 1
          if chunks == 1 {
            entry(bufs.baseAddress!, syms.baseAddress ?? UnsafePointer(bitPattern: 8)!, 0, Int64(outer))
          } else {
            let b = bufs.baseAddress!, s = syms.baseAddress ?? UnsafePointer(bitPattern: 8)!
            let bAddress = UInt(bitPattern: b), sAddress = UInt(bitPattern: s)
            pool.parallelFor(chunks) { c in
              let lo = outer * c / chunks, hi = outer * (c + 1) / chunks
              entry(UnsafeMutablePointer(bitPattern: bAddress)!, UnsafePointer(bitPattern: sAddress)!, Int64(lo), Int64(hi))
            }
          }
        }
      }
    case .gemm(let a, let b, let c, let ta, let tb):
      runGemm(a: a, b: b, c: c, transposeA: ta, transposeB: tb, plan: plan)
    case .interpretOp(let op, let operands, let result):
      let tensors = operands.map { RawTensor.read(slots[$0].type.dtype, shape: plan.shapes[$0], from: pointer($0, plan)) }
      do {
        let value = try Interpreter.evaluate(op, operands: tensors, dtype: slots[result].type.dtype, shape: plan.shapes[result])
        RawTensor.write(value, to: pointer(result, plan))
      } catch {
        throw .runtime("\(error)")
      }
    case .interpretRegion(let interpreter, let operands, let results):
      let tensors = operands.map { RawTensor.read(slots[$0].type.dtype, shape: plan.shapes[$0], from: pointer($0, plan)) }
      do {
        let values = try interpreter.run("region", tensors)
        for (v, r) in zip(values, results) { RawTensor.write(v, to: pointer(r, plan)) }
      } catch {
        throw .runtime("\(error)")
      }
    }
  }

  /// C[..., M, N] = op(A)[..., M, K] · op(B)[..., K, N] with numpy batch broadcasting, one BLAS
  /// call per batch element (a single call for plain matrices).
  func runGemm(a: Int, b: Int, c: Int, transposeA: Bool, transposeB: Bool, plan: Plan) {
    let sa = plan.shapes[a], sb = plan.shapes[b], sc = plan.shapes[c]
    let m = sc[sc.count - 2], n = sc[sc.count - 1]
    let k = transposeA ? sa[sa.count - 2] : sa[sa.count - 1]
    let batchShape = Array(sc.dropLast(2))
    let batches = elementCount(batchShape) ?? 1
    let aBatch = Self.batchOffsets(Array(sa.dropLast(2)), batchShape)
    let bBatch = Self.batchOffsets(Array(sb.dropLast(2)), batchShape)
    let aMatrix = sa[sa.count - 2] * sa[sa.count - 1], bMatrix = sb[sb.count - 2] * sb[sb.count - 1]
    let lda = sa[sa.count - 1], ldb = sb[sb.count - 1]
    let ta = transposeA ? CblasTrans : CblasNoTrans, tb = transposeB ? CblasTrans : CblasNoTrans
    if m == 0 || n == 0 { return }
    if slots[c].type.dtype == .f64 {
      let pa = pointer(a, plan).assumingMemoryBound(to: Double.self), pb = pointer(b, plan).assumingMemoryBound(to: Double.self)
      let pc = pointer(c, plan).assumingMemoryBound(to: Double.self)
      for i in 0..<batches {
        cblas_dgemm(CblasRowMajor, ta, tb, Int32(m), Int32(n), Int32(k), 1, pa + aBatch[i] * aMatrix, Int32(max(lda, 1)),
                    pb + bBatch[i] * bMatrix, Int32(max(ldb, 1)), 0, pc + i * m * n, Int32(n))
      }
    } else {
      let pa = pointer(a, plan).assumingMemoryBound(to: Float.self), pb = pointer(b, plan).assumingMemoryBound(to: Float.self)
      let pc = pointer(c, plan).assumingMemoryBound(to: Float.self)
      for i in 0..<batches {
        cblas_sgemm(CblasRowMajor, ta, tb, Int32(m), Int32(n), Int32(k), 1, pa + aBatch[i] * aMatrix, Int32(max(lda, 1)),
                    pb + bBatch[i] * bMatrix, Int32(max(ldb, 1)), 0, pc + i * m * n, Int32(n))
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

