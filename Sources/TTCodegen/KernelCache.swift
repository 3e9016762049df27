// KernelCache — compiles region bodies to native kernels and remembers them. The key is the
// region's canonical text (ops, attributes, types, symbolic dims), so the same region in another
// function or another model compiles once per process. Compilation: emit (KernelEmitter), verify,
// optimize with LLVM's O3 pipeline for the host CPU, hand to the JIT, look up the entry point.

import CLLVM
import Glibc
import TTIR

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

  init(signature: KernelSignature, entry: KernelEntry, name: String, llvmIR: String?, assembly: String?, compileSeconds: Double) {
    self.signature = signature; self.entry = entry; self.name = name
    self.llvmIR = llvmIR; self.assembly = assembly; self.compileSeconds = compileSeconds
  }
}

public final class KernelCache: @unchecked Sendable {
  public static let shared = KernelCache()

  private var kernels: [String: CompiledKernel] = [:]
  private let lock = NSLockish()
  private var counter = 0
  /// Keep the optimized IR and assembly of each kernel (for `ttfc compile --emit=llvm|asm`).
  public var keepListings = false
  public private(set) var hits = 0
  public private(set) var misses = 0

  public init() {}

  /// The symbols a body's types mention, in a fixed (sorted) order: the kernel's symbol ABI.
  public static func symbols(of body: Function) -> [String] {
    var set = Set<String>()
    for t in body.argumentTypes + body.resultTypes { set.formUnion(t.symbols) }
    for v in body.values { set.formUnion(v.type.symbols) }
    return set.sorted()
  }

  /// The compiled kernel for a single-result body, compiling it on first use.
  public func kernel(for body: Function) throws(CodegenError) -> CompiledKernel {
    if let reason = KernelEmitter.supports(body) { throw .unsupported(reason) }
    guard body.returnValues.count == 1 else { throw .unsupported("a kernel has one result") }
    var keyed = body
    keyed.name = "kernel"
    keyed.location = nil
    let key = Printer.print(keyed)
    // One compilation at a time: the shared target machine is not safe to use from several
    // threads at once, and a kernel requested twice concurrently is then compiled once.
    return try compileLock.withLock { () throws(CodegenError) -> CompiledKernel in
      if let cached = lock.withLock({ kernels[key] }) {
        lock.withLock { hits += 1 }
        return cached
      }
      return try compile(body, key: key)
    }
  }

  private let compileLock = NSLockish()

  private func compile(_ body: Function, key: String) throws(CodegenError) -> CompiledKernel {
    let name: String = lock.withLock { counter += 1; misses += 1; return "ttfc_kernel_\(counter)" }
    let start = DispatchClock.now()
    let signature = KernelSignature(inputs: body.argumentTypes, output: body.resultTypes[0], symbols: Self.symbols(of: body))
    let module = KernelModule(name: name)
    let ir = IRBuilder(module)
    let emitter = KernelEmitter(ir: ir, body: body, signature: signature)
    _ = try emitter.emit(name: name)
    try module.verify()
    if let directory = getenv("TTFC_DUMP_KERNELS") {
      // Debugging aid: the kernel's LLVM IR before optimization, for opt-19 -pass-remarks.
      let path = String(cString: directory) + "/\(name).ll"
      if let file = fopen(path, "w") { fputs(module.text, file); fclose(file) }
    }
    let jit = JIT.shared
    jit.machine.configure(module.module)
    try jit.machine.optimize(module.module)
    let listing = keepListings ? module.text : nil
    let assembly = keepListings ? try jit.machine.assembly(of: module.module) : nil
    let address = try jit.add(module, symbols: [name])[0]
    let entry = unsafeBitCast(address, to: KernelEntry.self)
    let kernel = CompiledKernel(signature: signature, entry: entry, name: name, llvmIR: listing, assembly: assembly,
                                compileSeconds: DispatchClock.now() - start)
    lock.withLock { kernels[key] = kernel }
    return kernel
  }
}

/// Monotonic seconds (CLOCK_MONOTONIC), without Foundation.
public enum DispatchClock {
  public static func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
  }
}
