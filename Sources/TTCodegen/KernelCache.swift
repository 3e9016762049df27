// KernelCache — compiles region bodies to native kernels and remembers them. The key is the
// region's canonical text (ops, attributes, types, symbolic dims), so the same region in another
// function or another model compiles once per process, and — through KernelDiskCache — once per
// machine: a later process links the stored object instead of compiling. Compilation: emit
// (KernelEmitter), verify, optimize with LLVM's O3 pipeline for the host CPU, emit a relocatable
// object, store it on disk, link it into the JIT, look up the entry point. A kernel's symbol is
// named by a hash of its key, so the same kernel has the same name in every process.

import CLLVM
import Dispatch
import Glibc
import TTIR
import TTSupport

public typealias KernelEntry = @convention(c) (UnsafeMutablePointer<UnsafeMutableRawPointer?>, UnsafePointer<Int64>, Int64, Int64) -> Void

public final class CompiledKernel: @unchecked Sendable {
  public let signature: KernelSignature
  public let entry: KernelEntry
  public let name: String
  /// Optimized LLVM IR and assembly, kept when KernelCache.keepListings is set.
  public let llvmIR: String?
  public let assembly: String?
  /// Seconds spent emitting, optimizing and JIT-compiling.
  public let compileSeconds: Double
  /// Compiled for a streaming output (KernelCache.Request.streamingOutput): the caller must pass
  /// a 64-byte aligned output and, for a rank-1 output, slices that begin at multiples of
  /// `streamingChunkAlignment`.
  public let streamingOutput: Bool
  /// Threads' slices of a streaming rank-1 kernel begin at multiples of this many elements.
  public static let streamingChunkAlignment = 16
  /// A flattened elementwise body (FlatKernels): its one symbol is the output's element count.
  public let isFlat: Bool
  /// A reduction swept row by row: how the caller splits its work (KernelEmitter.reductionSweep).
  public let sweep: ReductionSweep?

  init(signature: KernelSignature, entry: KernelEntry, name: String, llvmIR: String?, assembly: String?, compileSeconds: Double,
       streamingOutput: Bool, body: Function) {
    self.signature = signature; self.entry = entry; self.name = name
    self.llvmIR = llvmIR; self.assembly = assembly; self.compileSeconds = compileSeconds
    self.streamingOutput = streamingOutput
    isFlat = signature.output.dims == [.symbol(FlatKernels.symbol)]   // read per execution: stored
    sweep = KernelEmitter.reductionSweep(body)
  }
}

public final class KernelCache: @unchecked Sendable {
  public static let shared = KernelCache()

  private var kernels: [String: CompiledKernel] = [:]
  private let lock = NSLockish()
  /// Keep the optimized IR and assembly of each kernel (for `ttfc compile --emit=llvm|asm`).
  public var keepListings = false
  public private(set) var hits = 0
  public private(set) var misses = 0
  /// Kernels linked from the disk cache instead of compiled, and damaged entries found (rebuilt).
  public private(set) var diskHits = 0
  public private(set) var diskCorrupt = 0
  public private(set) var diskWrites = 0
  /// Seconds spent compiling (or loading) kernels in this process.
  public private(set) var compileSeconds = 0.0
  /// The on-disk cache (nil: disabled by TTFC_CACHE_DIR=off, or no usable directory).
  public let disk: KernelDiskCache?

  public init(disk: KernelDiskCache? = KernelCache.standardDisk()) { self.disk = disk }

  public static func standardDisk() -> KernelDiskCache? {
    let host = HostInfo.current()
    let machine = JIT.shared.machine
    return KernelDiskCache.standard(identity: KernelDiskCache.identity(llvmVersion: host.llvmVersion, triple: machine.triple,
                                                                       cpu: machine.cpu, features: machine.features))
  }

  /// A snapshot of the counters, for `--stats`.
  public var counters: (compiled: Int, memoryHits: Int, diskHits: Int, diskCorrupt: Int, seconds: Double) {
    lock.withLock { (misses - diskHits, hits, diskHits, diskCorrupt, compileSeconds) }
  }

  /// The symbols a body's types mention, in a fixed (sorted) order: the kernel's symbol ABI.
  public static func symbols(of body: Function) -> [String] {
    var set = Set<String>()
    for t in body.argumentTypes + body.resultTypes { set.formUnion(t.symbols) }
    for v in body.values { set.formUnion(v.type.symbols) }
    return set.sorted()
  }

  /// A body's cache key: its canonical text under a fixed name, without source locations or
  /// value names.
  static func key(of body: Function, streamingOutput: Bool = false) -> String {
    var keyed = body
    keyed.name = "kernel"
    keyed.location = nil
    // Value names do not change the code: positional names let the same arithmetic on other
    // values (every parameter's optimizer update) share one kernel.
    for k in keyed.values.indices { keyed.values[k].name = "v\(k)" }
    return Printer.print(keyed) + (streamingOutput ? "// streaming output\n" : "")
  }

  /// A kernel to compile: a body (several results only if elementwise and of one type).
  /// `streamingOutput`: the output is 64-byte aligned and large, and nothing reads it back
  /// soon, so its vector stores may bypass the caches (KernelEmitter.streamingOutput).
  public struct Request: Sendable {
    public var body: Function
    public var streamingOutput: Bool
    public init(_ body: Function, streamingOutput: Bool = false) {
      self.body = body; self.streamingOutput = streamingOutput
    }
    var key: String { KernelCache.key(of: body, streamingOutput: streamingOutput) }
  }

  /// Compiles the bodies that are not cached yet, in batches on up to `threads` threads at once,
  /// each with its own target machine (every batch has its own LLVM context; only linking into
  /// the JIT is serialized). A cold compile of a model is dozens of independent kernels, so this
  /// divides it by the core count; and each thread compiles its kernels as one LLVM module
  /// (`compileBatch`), paying the optimization pipeline's and the code generator's fixed costs
  /// per batch, not per kernel. Failures are left for `kernel(for:)` to report when the body is
  /// asked for.
  public func precompile(_ requests: [Request], threads: Int) {
    var seen = Set<String>()
    var work: [(request: Request, key: String)] = []
    for request in requests where KernelEmitter.supports(request.body) == nil {
      let key = request.key
      if seen.insert(key).inserted && lock.withLock({ kernels[key] == nil }) { work.append((request, key)) }
    }
    if let disk, !keepListings {
      work = work.filter { item in
        switch disk.read(key: item.key) {
        case .hit(let storedName, let object):
          return (try? link(item.request, key: item.key, storedName: storedName, object: object, start: DispatchClock.now())) == nil
        case .corrupt:
          lock.withLock { diskCorrupt += 1 }
          return true
        case .miss:
          return true
        }
      }
    }
    guard !work.isEmpty else { return }
    let batches = batches(work, threads: max(1, threads))
    let queue = WorkQueue(batches)
    let workers = min(max(1, threads), batches.count)
    DispatchQueue.concurrentPerform(iterations: workers) { _ in
      guard let machine = try? HostTargetMachine() else { return }
      while let batch = queue.take() { compileBatch(batch, machine: machine) }
    }
  }

  /// Work split into batches: one per thread for each code generation level (balanced by op
  /// count, largest first), except that a streaming kernel and, with listings on, every kernel
  /// is compiled alone (their module-wide passes and listings are per kernel).
  func batches(_ work: [(request: Request, key: String)], threads: Int) -> [[(request: Request, key: String)]] {
    var result: [[(request: Request, key: String)]] = []
    var levels: [Bool: [(request: Request, key: String)]] = [:]
    for item in work {
      if item.request.streamingOutput || keepListings { result.append([item]); continue }
      levels[Self.needsFullCodegen(item.request.body), default: []].append(item)
    }
    for level in [true, false] {
      guard let items = levels[level] else { continue }
      var bins = [[(request: Request, key: String)]](repeating: [], count: min(threads, items.count))
      var sizes = [Int](repeating: 0, count: bins.count)
      for item in items.sorted(by: { $0.request.body.body.count > $1.request.body.body.count }) {
        let smallest = sizes.indices.min { sizes[$0] < sizes[$1] }!
        bins[smallest].append(item)
        sizes[smallest] += item.request.body.body.count + 8   // + a kernel's fixed cost
      }
      result += bins
    }
    return result
  }

  /// The symbol of a kernel compiled alone: a hash of the code generator's version and its key,
  /// so the same kernel has the same name in every process.
  static func symbol(key: String) -> String {
    "ttfc_k_" + KernelDiskCache.hex(KernelDiskCache.hash128(KernelDiskCache.codegenVersion + "\n" + key))
  }

  /// Compiles kernels as one LLVM module and one object, linked once. A kernel's symbol in a
  /// batch carries the batch's tag (`<symbol>_b<tag>`): the batch object goes into the disk
  /// entry of each of its kernels, and a later process may find one kernel in one batch object
  /// and another in a different one, so no two objects may define the same symbol. If the batch
  /// fails, its kernels are compiled alone (a failure then stays with its own kernel).
  func compileBatch(_ items: [(request: Request, key: String)], machine: HostTargetMachine) {
    if items.count == 1 {
      _ = try? compile(items[0].request, key: items[0].key, machine: machine)
      return
    }
    let start = DispatchClock.now()
    let tag = String(KernelDiskCache.hex(KernelDiskCache.hash128(items.map(\.key).joined(separator: "\n"))).prefix(16))
    let names = items.map { Self.symbol(key: $0.key) + "_b" + tag }
    do {
      let module = KernelModule(name: "ttfc_batch_" + tag)
      let ir = IRBuilder(module)
      for (item, name) in zip(items, names) {
        let emitter = KernelEmitter(ir: ir, body: item.request.body, signature: Self.signature(of: item.request.body))
        _ = try emitter.emit(name: name)
      }
      try Self.optimize(module, named: "ttfc_batch_" + tag, machine: machine)
      let object = try machine.object(of: module.module, quickly: !Self.needsFullCodegen(items[0].request.body))
      lock.withLock { misses += items.count }
      if let disk { for (item, name) in zip(items, names) where disk.write(key: item.key, name: name, object: object) { lock.withLock { diskWrites += 1 } } }
      let addresses = try JIT.shared.addObject(object, symbols: names)
      let share = (DispatchClock.now() - start) / Double(items.count)
      for (k, item) in items.enumerated() {
        _ = finish(CompiledKernel(signature: Self.signature(of: item.request.body), entry: unsafeBitCast(addresses[k], to: KernelEntry.self),
                                  name: names[k], llvmIR: nil, assembly: nil, compileSeconds: share, streamingOutput: false,
                                  body: item.request.body),
                   key: item.key, fromDisk: false)
      }
    } catch {
      for item in items { _ = try? compile(item.request, key: item.key, machine: machine) }
    }
  }

  /// An object file that is not the kernel of a body (ttfc's GEMM routines), made by `make` once
  /// and kept in the disk cache under `key` and `name`; counted with the kernels in the
  /// statistics (compiled, from disk, damaged).
  public func object(key: String, name: String, make: () throws(CodegenError) -> [UInt8]) throws(CodegenError) -> [UInt8] {
    let start = DispatchClock.now()
    lock.withLock { misses += 1 }
    if let disk, !keepListings {
      switch disk.read(key: key) {
      case .hit(let storedName, let object) where storedName == name:
        lock.withLock { diskHits += 1; compileSeconds += DispatchClock.now() - start }
        return object
      case .hit, .corrupt: lock.withLock { diskCorrupt += 1 }
      case .miss: break
      }
    }
    let object = try make()
    if let disk, disk.write(key: key, name: name, object: object) { lock.withLock { diskWrites += 1 } }
    lock.withLock { compileSeconds += DispatchClock.now() - start }
    return object
  }

  static func signature(of body: Function) -> KernelSignature {
    KernelSignature(inputs: body.argumentTypes, outputs: body.resultTypes, symbols: symbols(of: body))
  }

  /// A kernel from a disk entry: its object linked (once), its symbol looked up. The entry's
  /// symbol is the kernel's own, or the kernel's within a batch.
  private func link(_ request: Request, key: String, storedName: String, object: [UInt8], start: Double) throws(CodegenError) -> CompiledKernel {
    let name = Self.symbol(key: key)
    guard storedName == name || storedName.hasPrefix(name + "_b") else {
      lock.withLock { diskCorrupt += 1 }
      throw .llvm("the cache entry names another symbol")
    }
    lock.withLock { misses += 1 }
    do {
      let address = try JIT.shared.addObject(object, symbol: storedName)
      return finish(CompiledKernel(signature: Self.signature(of: request.body), entry: unsafeBitCast(address, to: KernelEntry.self), name: storedName,
                                   llvmIR: nil, assembly: nil, compileSeconds: DispatchClock.now() - start,
                                   streamingOutput: request.streamingOutput, body: request.body), key: key, fromDisk: true)
    } catch {
      lock.withLock { diskCorrupt += 1; misses -= 1 }
      throw error
    }
  }

  /// The compiled kernel for a body, compiling it on first use.
  public func kernel(for body: Function, streamingOutput: Bool = false) throws(CodegenError) -> CompiledKernel {
    if let reason = KernelEmitter.supports(body) { throw .unsupported(reason) }
    let request = Request(body, streamingOutput: streamingOutput)
    let key = request.key
    // One compilation at a time (in every cache): the shared target machine is not safe to use
    // from several threads at once, and a kernel requested twice concurrently is compiled once.
    return try Self.compileLock.withLock { () throws(CodegenError) -> CompiledKernel in
      if let cached = lock.withLock({ kernels[key] }) {
        lock.withLock { hits += 1 }
        return cached
      }
      return try compile(request, key: key, machine: JIT.shared.machine)
    }
  }

  /// Whether a body gets LLVM's -O3 code generator rather than -O1. Kernels without reductions
  /// (elementwise loops: optimizer updates, masks, activations) wait on loads and stores, and ran
  /// as fast after -O1's instruction selection and scheduling (W1, W4) while their machine code
  /// took a fifth less time to generate (W5 0.22 -> 0.19 s); row reductions (softmax, layer
  /// norm) compute more per byte and ran 3% slower at -O1 (W2, W3), so reductions keep -O3.
  static func needsFullCodegen(_ body: Function) -> Bool {
    body.body.contains { id in
      switch body[id].code.info.opClass {
      case .reduction, .argReduction, .softmax, .loss: return true
      default: return false
      }
    }
  }

  /// Verifies an emitted module, writes it to $TTFC_DUMP_KERNELS/NAME.ll if set (a debugging aid:
  /// the IR before optimization, for opt-19 -pass-remarks), and optimizes it for `machine`.
  private static func optimize(_ module: KernelModule, named name: String, machine: HostTargetMachine) throws(CodegenError) {
    try module.verify()
    if let directory = getenv("TTFC_DUMP_KERNELS") {
      let path = String(cString: directory) + "/\(name).ll"
      if let file = fopen(path, "w") { fputs(module.text, file); fclose(file) }
    }
    machine.configure(module.module)
    try machine.optimize(module.module)
  }

  /// Process-wide, like the machine it guards (several caches may exist: tests, tools).
  private static let compileLock = NSLockish()

  /// Compiles one body with `machine` (not shared between threads at the same time).
  private func compile(_ request: Request, key: String, machine: HostTargetMachine) throws(CodegenError) -> CompiledKernel {
    let body = request.body
    let name = Self.symbol(key: key)
    let start = DispatchClock.now()
    let signature = Self.signature(of: body)
    let jit = JIT.shared
    // Listings need the module, so `--emit=llvm|asm` always compiles.
    if let disk, !keepListings {
      switch disk.read(key: key) {
      case .hit(let storedName, let object):
        if let kernel = try? link(request, key: key, storedName: storedName, object: object, start: start) { return kernel }
      case .corrupt: lock.withLock { diskCorrupt += 1 }
      case .miss: break
      }
    }
    lock.withLock { misses += 1 }
    let module = KernelModule(name: name)
    let ir = IRBuilder(module)
    let emitter = KernelEmitter(ir: ir, body: body, signature: signature, streamingOutput: request.streamingOutput)
    _ = try emitter.emit(name: name)
    try Self.optimize(module, named: name, machine: machine)
    if request.streamingOutput { StreamingStores.mark(module.module) }
    let listing = keepListings ? module.text : nil
    let quickly = !Self.needsFullCodegen(body)
    let assembly = keepListings ? try machine.assembly(of: module.module, quickly: quickly) : nil
    let object = try machine.object(of: module.module, quickly: quickly)
    if let disk, disk.write(key: key, name: name, object: object) { lock.withLock { diskWrites += 1 } }
    let address = try jit.addObject(object, symbol: name)
    return finish(CompiledKernel(signature: signature, entry: unsafeBitCast(address, to: KernelEntry.self), name: name,
                                 llvmIR: listing, assembly: assembly, compileSeconds: DispatchClock.now() - start,
                                 streamingOutput: request.streamingOutput, body: body), key: key, fromDisk: false)
  }

  private func finish(_ kernel: CompiledKernel, key: String, fromDisk: Bool) -> CompiledKernel {
    lock.withLock {
      kernels[key] = kernel
      compileSeconds += kernel.compileSeconds
      if fromDisk { diskHits += 1 }
    }
    return kernel
  }
}

/// Items handed out once each to whichever thread asks next.
final class WorkQueue<Item>: @unchecked Sendable {
  private var items: [Item]
  private var next = 0
  private let lock = NSLockish()
  init(_ items: [Item]) { self.items = items }
  func take() -> Item? {
    lock.withLock {
      guard next < items.count else { return nil }
      next += 1
      return items[next - 1]
    }
  }
}
