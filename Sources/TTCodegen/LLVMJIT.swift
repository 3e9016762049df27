// LLVMJIT — ownership-explicit wrappers over LLVM 19's C API for what the code generator needs:
// a target machine for the host CPU (name and features from LLVM, so kernels use AVX-512 where the
// CPU has it), the new pass manager ("default<O3>"), assembly emission, and one ORC LLJIT per
// process into which every kernel module is added. Each wrapper owns exactly one LLVM object and
// frees it in deinit; a module handed to the JIT is owned by the JIT from then on, and
// `KernelModule` records that so it is never freed twice.

import CLLVM
import Glibc
import TTSupport

public enum CodegenError: Error, CustomStringConvertible {
  case llvm(String)
  case unsupported(String)
  public var description: String {
    switch self {
    case .llvm(let m): return "LLVM: \(m)"
    case .unsupported(let m): return "not supported by the code generator: \(m)"
    }
  }
}

func consume(_ error: LLVMErrorRef?) throws(CodegenError) {
  guard let error else { return }
  throw .llvm(LLVMSession.takeMessage(LLVMGetErrorMessage(error)))
}

/// The host target machine, in two code generation levels: -O3 (`reference`) and -O1 (`quick`,
/// for memory-bound kernels: see KernelCache.needsFullCodegen).
public final class HostTargetMachine: @unchecked Sendable {
  public let reference: LLVMTargetMachineRef
  public let quick: LLVMTargetMachineRef
  public let triple: String
  public let cpu: String
  public let features: String

  public init() throws(CodegenError) {
    LLVMSession.initializeNativeTarget()
    triple = LLVMSession.takeMessage(LLVMGetDefaultTargetTriple())
    cpu = LLVMSession.takeMessage(LLVMGetHostCPUName())
    features = LLVMSession.takeMessage(LLVMGetHostCPUFeatures())
    var target: LLVMTargetRef?
    var message: UnsafeMutablePointer<CChar>?
    if LLVMGetTargetFromTriple(triple, &target, &message) != 0 { throw .llvm(LLVMSession.takeMessage(message)) }
    // Position-independent code: kernels are emitted as relocatable objects that the JIT links
    // anywhere in memory (and that the disk cache hands to other processes).
    guard let machine = LLVMCreateTargetMachine(target, triple, cpu, features, LLVMCodeGenLevelAggressive,
                                                LLVMRelocPIC, LLVMCodeModelSmall),
          let quickMachine = LLVMCreateTargetMachine(target, triple, cpu, features, LLVMCodeGenLevelLess,
                                                     LLVMRelocPIC, LLVMCodeModelSmall) else {
      throw .llvm("cannot create a target machine for \(triple) \(cpu)")
    }
    reference = machine
    quick = quickMachine
  }
  deinit {
    LLVMDisposeTargetMachine(reference)
    LLVMDisposeTargetMachine(quick)
  }

  /// A host target machine not owned by any wrapper (for APIs that take ownership).
  static func makeRaw() throws(CodegenError) -> LLVMTargetMachineRef {
    LLVMSession.initializeNativeTarget()
    let triple = LLVMSession.takeMessage(LLVMGetDefaultTargetTriple())
    var target: LLVMTargetRef?
    var message: UnsafeMutablePointer<CChar>?
    if LLVMGetTargetFromTriple(triple, &target, &message) != 0 { throw .llvm(LLVMSession.takeMessage(message)) }
    guard let machine = LLVMCreateTargetMachine(target, triple, LLVMSession.takeMessage(LLVMGetHostCPUName()),
                                                LLVMSession.takeMessage(LLVMGetHostCPUFeatures()),
                                                LLVMCodeGenLevelAggressive, LLVMRelocDefault, LLVMCodeModelJITDefault) else {
      throw .llvm("cannot create a target machine")
    }
    return machine
  }

  /// Runs the new pass manager pipeline (e.g. "default<O3>") on a module.
  public func optimize(_ module: LLVMModuleRef, pipeline: String = "default<O3>", unrolling: Bool = false) throws(CodegenError) {
    let options = LLVMCreatePassBuilderOptions()
    defer { LLVMDisposePassBuilderOptions(options) }
    LLVMPassBuilderOptionsSetLoopVectorization(options, 1)
    LLVMPassBuilderOptionsSetSLPVectorization(options, 1)
    // No loop unrolling: the vectorizer already interleaves the hot loops, and unrolling them
    // again cost a fifth of the optimization time for no measured speed (W1-W4).
    LLVMPassBuilderOptionsSetLoopUnrolling(options, unrolling ? 1 : 0)
    LLVMPassBuilderOptionsSetLoopInterleaving(options, 1)
    try consume(LLVMRunPasses(module, pipeline, reference, options))
  }

  /// The module's machine code as assembly text.
  public func assembly(of module: LLVMModuleRef, quickly: Bool = false) throws(CodegenError) -> String {
    var message: UnsafeMutablePointer<CChar>?
    var buffer: LLVMMemoryBufferRef?
    if LLVMTargetMachineEmitToMemoryBuffer(quickly ? quick : reference, module, LLVMAssemblyFile, &message, &buffer) != 0 {
      throw .llvm(LLVMSession.takeMessage(message))
    }
    defer { LLVMDisposeMemoryBuffer(buffer) }
    let start = LLVMGetBufferStart(buffer)!
    let size = LLVMGetBufferSize(buffer)
    return String(decoding: UnsafeRawBufferPointer(start: start, count: size), as: UTF8.self)
  }

  /// The module's machine code as a relocatable object file (ELF bytes).
  public func object(of module: LLVMModuleRef, quickly: Bool = false) throws(CodegenError) -> [UInt8] {
    var message: UnsafeMutablePointer<CChar>?
    var buffer: LLVMMemoryBufferRef?
    if LLVMTargetMachineEmitToMemoryBuffer(quickly ? quick : reference, module, LLVMObjectFile, &message, &buffer) != 0 {
      throw .llvm(LLVMSession.takeMessage(message))
    }
    defer { LLVMDisposeMemoryBuffer(buffer) }
    let start = LLVMGetBufferStart(buffer)!
    return Array(UnsafeRawBufferPointer(start: start, count: LLVMGetBufferSize(buffer)))
  }

  /// Sets the module's triple and data layout to this machine's.
  public func configure(_ module: LLVMModuleRef) {
    LLVMSetTarget(module, triple)
    let layout = LLVMCreateTargetDataLayout(reference)
    LLVMSetModuleDataLayout(module, layout)
    LLVMDisposeTargetData(layout)
  }
}

/// One LLVM module under construction, with its own thread-safe context.
public final class KernelModule {
  public let threadSafeContext: LLVMOrcThreadSafeContextRef
  public let context: LLVMContextRef
  public let module: LLVMModuleRef
  public let builder: LLVMBuilderRef
  private var ownedByJIT = false

  public init(name: String) {
    threadSafeContext = LLVMOrcCreateNewThreadSafeContext()
    context = LLVMOrcThreadSafeContextGetContext(threadSafeContext)
    module = LLVMModuleCreateWithNameInContext(name, context)
    builder = LLVMCreateBuilderInContext(context)
  }

  deinit {
    LLVMDisposeBuilder(builder)
    if !ownedByJIT { LLVMDisposeModule(module) }
    LLVMOrcDisposeThreadSafeContext(threadSafeContext)
  }

  public func verify() throws(CodegenError) {
    var message: UnsafeMutablePointer<CChar>?
    if LLVMVerifyModule(module, LLVMReturnStatusAction, &message) != 0 {
      throw .llvm("generated IR does not verify: " + LLVMSession.takeMessage(message))
    }
    LLVMDisposeMessage(message)
  }

  /// The module as LLVM IR text.
  public var text: String { LLVMSession.takeMessage(LLVMPrintModuleToString(module)) }

  /// Transfers the module to the JIT (after which this object only frees its builder and context).
  func handOver() -> LLVMOrcThreadSafeModuleRef {
    ownedByJIT = true
    return LLVMOrcCreateNewThreadSafeModule(module, threadSafeContext)
  }
}

/// The process's JIT: an ORC LLJIT whose main dylib collects every compiled kernel, with the
/// process's own symbols (libm, OpenBLAS) visible to kernels.
public final class JIT: @unchecked Sendable {
  public static let shared: JIT = {
    do { return try JIT() } catch { fatalError("cannot start the LLVM JIT: \(error)") }
  }()

  let jit: LLVMOrcLLJITRef
  public let machine: HostTargetMachine
  private let lock = NSLockish()

  init() throws(CodegenError) {
    machine = try HostTargetMachine()
    let builder = LLVMOrcCreateLLJITBuilder()
    // Compile for the host CPU with its features (the default builder would pick a generic CPU).
    // The builder takes ownership of this (unwrapped) target machine.
    let jtmb = LLVMOrcJITTargetMachineBuilderCreateFromTargetMachine(try HostTargetMachine.makeRaw())
    LLVMOrcLLJITBuilderSetJITTargetMachineBuilder(builder, jtmb)
    var jit: LLVMOrcLLJITRef?
    try consume(LLVMOrcCreateLLJIT(&jit, builder))
    self.jit = jit!
    var generator: LLVMOrcDefinitionGeneratorRef?
    try consume(LLVMOrcCreateDynamicLibrarySearchGeneratorForProcess(&generator, LLVMOrcLLJITGetGlobalPrefix(jit), nil, nil))
    LLVMOrcJITDylibAddGenerator(LLVMOrcLLJITGetMainJITDylib(jit), generator)
  }
  deinit { _ = LLVMOrcDisposeLLJIT(jit) }

  /// Links a relocatable object (from `HostTargetMachine.object(of:)` or the disk cache) and
  /// returns the addresses of `symbols`. An object is added once: not again if it defines a
  /// symbol that is already linked (the same kernel, named by its content hash), nor if the
  /// same bytes were added before (a batch object, stored in the disk entry of each of its
  /// kernels, is found through each of them).
  public func addObject(_ object: [UInt8], symbols: [String]) throws(CodegenError) -> [UInt] {
    try lock.withLock { () throws(CodegenError) -> [UInt] in
      let fingerprint = Self.fingerprint(object)
      if !symbols.allSatisfy(linked.contains) && !addedObjects.contains(fingerprint) {
        let buffer = object.withUnsafeBytes { raw in
          LLVMCreateMemoryBufferWithMemoryRangeCopy(raw.baseAddress!.assumingMemoryBound(to: CChar.self), raw.count, symbols.first ?? "object")
        }
        // The JIT takes ownership of the buffer, also on failure.
        try consume(LLVMOrcLLJITAddObjectFile(jit, LLVMOrcLLJITGetMainJITDylib(jit), buffer))
        linked.formUnion(symbols)
        addedObjects.insert(fingerprint)
      }
      return try lookUp(symbols)
    }
  }

  /// The addresses of linked symbols (the caller holds `lock`).
  private func lookUp(_ symbols: [String]) throws(CodegenError) -> [UInt] {
    var addresses: [UInt] = []
    for symbol in symbols {
      var address: LLVMOrcExecutorAddress = 0
      try consume(LLVMOrcLLJITLookup(jit, &address, symbol))
      addresses.append(UInt(address))
    }
    return addresses
  }

  public func addObject(_ object: [UInt8], symbol: String) throws(CodegenError) -> UInt {
    try addObject(object, symbols: [symbol])[0]
  }
  private var linked = Set<String>()
  private var addedObjects = Set<UInt64>()

  /// FNV-1a over the bytes and their count.
  static func fingerprint(_ bytes: [UInt8]) -> UInt64 {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325 ^ UInt64(bytes.count)
    for byte in bytes { h = (h ^ UInt64(byte)) &* 0x100_0000_01b3 }
    return h
  }

  /// Adds an optimized module and returns the addresses of the named functions.
  public func add(_ kernel: KernelModule, symbols: [String]) throws(CodegenError) -> [UInt] {
    try lock.withLock { () throws(CodegenError) -> [UInt] in
      try consume(LLVMOrcLLJITAddLLVMIRModule(jit, LLVMOrcLLJITGetMainJITDylib(jit), kernel.handOver()))
      return try lookUp(symbols)
    }
  }
}
