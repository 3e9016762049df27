// JITSmokeCheck — builds a two-instruction function with the LLVM C API, optimizes it with the
// new pass manager, JIT-compiles it with ORC LLJIT for the host CPU and calls it. `ttfc version`
// runs it so a broken LLVM install is reported up front instead of at the first real compile.
import CLLVM

public enum JITSmokeCheck {
  public enum Failure: Error, CustomStringConvertible {
    case llvm(String)
    public var description: String {
      switch self { case .llvm(let message): return "LLVM JIT check failed: \(message)" }
    }
  }

  /// Compiles `int64 f(int64 a, int64 b) { return a * b + 1 }` and returns f(a, b).
  public static func multiplyAddOne(_ a: Int64, _ b: Int64) throws(Failure) -> Int64 {
    LLVMSession.initializeNativeTarget()
    let threadSafeContext = LLVMOrcCreateNewThreadSafeContext()
    defer { LLVMOrcDisposeThreadSafeContext(threadSafeContext) }
    let context = LLVMOrcThreadSafeContextGetContext(threadSafeContext)
    let module = LLVMModuleCreateWithNameInContext("smoke", context)!
    let i64 = LLVMInt64TypeInContext(context)
    var params: [LLVMTypeRef?] = [i64, i64]
    let fnType = params.withUnsafeMutableBufferPointer { LLVMFunctionType(i64, $0.baseAddress, 2, 0) }
    let fn = LLVMAddFunction(module, "mul_add_one", fnType)
    let builder = LLVMCreateBuilderInContext(context)
    defer { LLVMDisposeBuilder(builder) }
    LLVMPositionBuilderAtEnd(builder, LLVMAppendBasicBlockInContext(context, fn, "entry"))
    let product = LLVMBuildMul(builder, LLVMGetParam(fn, 0), LLVMGetParam(fn, 1), "p")
    let sum = LLVMBuildAdd(builder, product, LLVMConstInt(i64, 1, 0), "s")
    LLVMBuildRet(builder, sum)

    var verifyMessage: UnsafeMutablePointer<CChar>?
    if LLVMVerifyModule(module, LLVMReturnStatusAction, &verifyMessage) != 0 {
      LLVMDisposeModule(module)
      throw .llvm(LLVMSession.takeMessage(verifyMessage))
    }
    LLVMDisposeMessage(verifyMessage)

    var jit: LLVMOrcLLJITRef?
    if let error = LLVMOrcCreateLLJIT(&jit, nil) {
      LLVMDisposeModule(module)
      throw .llvm(LLVMSession.takeMessage(LLVMGetErrorMessage(error)))
    }
    defer { _ = LLVMOrcDisposeLLJIT(jit) }
    // Ownership of the module passes to the JIT here.
    let tsm = LLVMOrcCreateNewThreadSafeModule(module, threadSafeContext)
    if let error = LLVMOrcLLJITAddLLVMIRModule(jit, LLVMOrcLLJITGetMainJITDylib(jit), tsm) {
      throw .llvm(LLVMSession.takeMessage(LLVMGetErrorMessage(error)))
    }
    var address: LLVMOrcExecutorAddress = 0
    if let error = LLVMOrcLLJITLookup(jit, &address, "mul_add_one") {
      throw .llvm(LLVMSession.takeMessage(LLVMGetErrorMessage(error)))
    }
    typealias Entry = @convention(c) (Int64, Int64) -> Int64
    let entry = unsafeBitCast(UInt(address), to: Entry.self)
    return entry(a, b)
  }
}
