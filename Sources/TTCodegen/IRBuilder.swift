// IRBuilder — a thin, typed convenience layer over LLVMBuilderRef for the kernel emitter: types,
// constants, arithmetic, comparisons, selects, loads and stores, intrinsic calls, and loops with
// phi-carried accumulators. It keeps emission code short enough to read next to the semantics.

import CLLVM

struct IRBuilder {
  let context: LLVMContextRef
  let module: LLVMModuleRef
  let b: LLVMBuilderRef
  let i1, i8, i16, i32, i64, f16, f32, f64, ptr, void: LLVMTypeRef

  init(_ km: KernelModule) {
    context = km.context; module = km.module; b = km.builder
    i1 = LLVMInt1TypeInContext(context); i8 = LLVMInt8TypeInContext(context)
    i16 = LLVMInt16TypeInContext(context); f16 = LLVMHalfTypeInContext(context)
    i32 = LLVMInt32TypeInContext(context); i64 = LLVMInt64TypeInContext(context)
    f32 = LLVMFloatTypeInContext(context); f64 = LLVMDoubleTypeInContext(context)
    ptr = LLVMPointerTypeInContext(context, 0); void = LLVMVoidTypeInContext(context)
  }

  typealias V = LLVMValueRef

  // MARK: constants
  func int(_ v: Int, _ t: LLVMTypeRef? = nil) -> V { LLVMConstInt(t ?? i64, UInt64(bitPattern: Int64(v)), 1) }
  func real(_ v: Double, _ t: LLVMTypeRef) -> V { LLVMConstReal(t, v) }
  func bool(_ v: Bool) -> V { LLVMConstInt(i1, v ? 1 : 0, 0) }

  // MARK: integer arithmetic
  func add(_ a: V, _ c: V) -> V { LLVMBuildAdd(b, a, c, "") }
  func sub(_ a: V, _ c: V) -> V { LLVMBuildSub(b, a, c, "") }
  func mul(_ a: V, _ c: V) -> V { LLVMBuildMul(b, a, c, "") }
  func sdiv(_ a: V, _ c: V) -> V { LLVMBuildSDiv(b, a, c, "") }
  func srem(_ a: V, _ c: V) -> V { LLVMBuildSRem(b, a, c, "") }
  func and(_ a: V, _ c: V) -> V { LLVMBuildAnd(b, a, c, "") }
  func or(_ a: V, _ c: V) -> V { LLVMBuildOr(b, a, c, "") }
  func xor(_ a: V, _ c: V) -> V { LLVMBuildXor(b, a, c, "") }
  func shl(_ a: V, _ c: V) -> V { LLVMBuildShl(b, a, c, "") }
  func ashr(_ a: V, _ c: V) -> V { LLVMBuildAShr(b, a, c, "") }
  func lshr(_ a: V, _ c: V) -> V { LLVMBuildLShr(b, a, c, "") }
  func icmp(_ p: LLVMIntPredicate, _ a: V, _ c: V) -> V { LLVMBuildICmp(b, p, a, c, "") }

  // MARK: float arithmetic
  func fadd(_ a: V, _ c: V) -> V { LLVMBuildFAdd(b, a, c, "") }
  func fsub(_ a: V, _ c: V) -> V { LLVMBuildFSub(b, a, c, "") }
  func fmul(_ a: V, _ c: V) -> V { LLVMBuildFMul(b, a, c, "") }
  func fdiv(_ a: V, _ c: V) -> V { LLVMBuildFDiv(b, a, c, "") }
  func fneg(_ a: V) -> V { LLVMBuildFNeg(b, a, "") }
  func fcmp(_ p: LLVMRealPredicate, _ a: V, _ c: V) -> V { LLVMBuildFCmp(b, p, a, c, "") }
  /// a*b + c as two rounded operations (LLVM may contract only where we allow it).
  func fma(_ a: V, _ m: V, _ c: V) -> V { fadd(fmul(a, m), c) }
  /// Marks a float instruction as reassociable (reductions only, so they vectorize).
  @discardableResult func reassoc(_ v: V) -> V { LLVMSetFastMathFlags(v, LLVMFastMathFlags(LLVMFastMathAllowReassoc)); return v }

  // MARK: conversions and selection
  func select(_ c: V, _ t: V, _ f: V) -> V { LLVMBuildSelect(b, c, t, f, "") }
  func bitcast(_ v: V, _ t: LLVMTypeRef) -> V { LLVMBuildBitCast(b, v, t, "") }
  func sitofp(_ v: V, _ t: LLVMTypeRef) -> V { LLVMBuildSIToFP(b, v, t, "") }
  func fptosi(_ v: V, _ t: LLVMTypeRef) -> V { LLVMBuildFPToSI(b, v, t, "") }
  func sext(_ v: V, _ t: LLVMTypeRef) -> V { LLVMBuildSExt(b, v, t, "") }
  func zext(_ v: V, _ t: LLVMTypeRef) -> V { LLVMBuildZExt(b, v, t, "") }
  func trunc(_ v: V, _ t: LLVMTypeRef) -> V { LLVMBuildTrunc(b, v, t, "") }
  func fpext(_ v: V, _ t: LLVMTypeRef) -> V { LLVMBuildFPExt(b, v, t, "") }
  func fptrunc(_ v: V, _ t: LLVMTypeRef) -> V { LLVMBuildFPTrunc(b, v, t, "") }

  // MARK: memory
  func gep(_ elementType: LLVMTypeRef, _ base: V, _ index: V) -> V {
    var indices: [LLVMValueRef?] = [index]
    return indices.withUnsafeMutableBufferPointer { LLVMBuildInBoundsGEP2(b, elementType, base, $0.baseAddress, 1, "") }
  }
  func load(_ t: LLVMTypeRef, _ p: V) -> V { LLVMBuildLoad2(b, t, p, "") }
  func store(_ v: V, _ p: V) { LLVMBuildStore(b, v, p) }

  // MARK: calls
  func intrinsic(_ name: String, _ types: [LLVMTypeRef], _ args: [V]) -> V {
    let id = LLVMLookupIntrinsicID(name, name.utf8.count)
    var overloads: [LLVMTypeRef?] = types
    let fn = overloads.withUnsafeMutableBufferPointer { LLVMGetIntrinsicDeclaration(module, id, $0.baseAddress, types.count) }
    let fnType = overloads.withUnsafeMutableBufferPointer { LLVMIntrinsicGetType(context, id, $0.baseAddress, types.count) }
    var arguments: [LLVMValueRef?] = args
    return arguments.withUnsafeMutableBufferPointer { LLVMBuildCall2(b, fnType, fn, $0.baseAddress, UInt32(args.count), "") }
  }

  /// Calls a C function of the process (libm) taking and returning values of type `t`.
  func callC(_ name: String, _ t: LLVMTypeRef, _ args: [V]) -> V {
    var params: [LLVMTypeRef?] = Array(repeating: t, count: args.count)
    let fnType = params.withUnsafeMutableBufferPointer { LLVMFunctionType(t, $0.baseAddress, UInt32(args.count), 0) }
    let fn = LLVMGetNamedFunction(module, name) ?? LLVMAddFunction(module, name, fnType)
    var arguments: [LLVMValueRef?] = args
    return arguments.withUnsafeMutableBufferPointer { LLVMBuildCall2(b, fnType, fn, $0.baseAddress, UInt32(args.count), "") }
  }

  // MARK: control flow

  var currentFunction: V { LLVMGetBasicBlockParent(LLVMGetInsertBlock(b)) }
  func block(_ name: String) -> LLVMBasicBlockRef { LLVMAppendBasicBlockInContext(context, currentFunction, name) }

  /// for (i = lo; i < hi; i++) with accumulators carried in phis; returns the final accumulators.
  /// `body` receives the induction variable and the current accumulators and returns the next ones.
  /// `interleave`: how many vectors the vectorizer should keep in flight (nil: its own choice).
  @discardableResult
  func loop(from lo: V, to hi: V, carrying initial: [V] = [], interleave: Int? = nil, parallelAccesses: LLVMMetadataRef? = nil,
            _ body: (V, [V]) -> [V]) -> [V] {
    let preheader = LLVMGetInsertBlock(b)!
    let header = block("loop.header"), bodyBlock = block("loop.body"), exit = block("loop.exit")
    LLVMBuildBr(b, header)
    LLVMPositionBuilderAtEnd(b, header)
    let iv = LLVMBuildPhi(b, i64, "i")!
    let phis = initial.map { LLVMBuildPhi(b, LLVMTypeOf($0), "acc")! }
    LLVMBuildCondBr(b, icmp(LLVMIntSLT, iv, hi), bodyBlock, exit)
    LLVMPositionBuilderAtEnd(b, bodyBlock)
    let next = body(iv, phis)
    let ivNext = add(iv, int(1))
    let latch = LLVMGetInsertBlock(b)!
    let backEdge = LLVMBuildBr(b, header)!
    if interleave != nil || parallelAccesses != nil { setLoopProperties(backEdge, interleave: interleave, parallelAccesses: parallelAccesses) }
    addIncoming(iv, [(lo, preheader), (ivNext, latch)])
    for (k, phi) in phis.enumerated() { addIncoming(phi, [(initial[k], preheader), (next[k], latch)]) }
    LLVMPositionBuilderAtEnd(b, exit)
    return phis
  }

  func addIncoming(_ phi: V, _ pairs: [(V, LLVMBasicBlockRef)]) {
    var values: [LLVMValueRef?] = pairs.map(\.0)
    var blocks: [LLVMBasicBlockRef?] = pairs.map(\.1)
    values.withUnsafeMutableBufferPointer { v in
      blocks.withUnsafeMutableBufferPointer { bl in LLVMAddIncoming(phi, v.baseAddress, bl.baseAddress, UInt32(pairs.count)) }
    }
  }

  /// Attaches `llvm.loop` metadata: how many vectors the vectorizer should interleave, and the
  /// access group whose loads and stores carry no dependence from one iteration to another.
  func setLoopProperties(_ branch: V, interleave: Int?, parallelAccesses: LLVMMetadataRef?) {
    func node(_ operands: [LLVMMetadataRef?]) -> LLVMMetadataRef {
      var operands = operands
      return operands.withUnsafeMutableBufferPointer { LLVMMDNodeInContext2(context, $0.baseAddress, $0.count) }!
    }
    let temporary = LLVMTemporaryMDNode(context, nil, 0)!
    var operands: [LLVMMetadataRef?] = [temporary]
    if let interleave { operands.append(node([metadataString("llvm.loop.interleave.count"), LLVMValueAsMetadata(int(interleave, i32))])) }
    if let parallelAccesses { operands.append(node([metadataString("llvm.loop.parallel_accesses"), parallelAccesses])) }
    let loopID = node(operands)
    LLVMMetadataReplaceAllUsesWith(temporary, loopID)
    LLVMSetMetadata(branch, LLVMGetMDKindIDInContext(context, "llvm.loop", 9), LLVMMetadataAsValue(context, loopID))
  }

  /// A new access group (a distinct metadata node without operands). The C API cannot make a
  /// distinct node directly, so one is parsed from IR text in this context (metadata belongs to
  /// the context and outlives the scratch module).
  func newAccessGroup() -> LLVMMetadataRef? {
    let text = "define void @g(ptr %p) {\n  store i8 0, ptr %p, !llvm.access.group !0\n  ret void\n}\n!0 = distinct !{}\n"
    let buffer = LLVMCreateMemoryBufferWithMemoryRangeCopy(text, text.utf8.count, "access_group")
    var parsed: LLVMModuleRef?
    var message: UnsafeMutablePointer<CChar>?
    guard LLVMParseIRInContext(context, buffer, &parsed, &message) == 0, let parsed else {   // takes the buffer
      LLVMDisposeMessage(message)
      return nil
    }
    defer { LLVMDisposeModule(parsed) }
    guard let function = LLVMGetNamedFunction(parsed, "g"), let store = LLVMGetFirstInstruction(LLVMGetEntryBasicBlock(function)),
          let group = LLVMGetMetadata(store, accessGroupKind) else { return nil }
    return LLVMValueAsMetadata(group)
  }

  var accessGroupKind: UInt32 { LLVMGetMDKindIDInContext(context, "llvm.access.group", 17) }

  func metadataString(_ s: String) -> LLVMMetadataRef {
    LLVMMDStringInContext2(context, s, s.utf8.count)
  }
}
