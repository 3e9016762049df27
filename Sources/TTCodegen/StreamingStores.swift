// StreamingStores — after optimization, turns a streaming kernel's aligned vector stores to its
// output into non-temporal stores (x86 `vmovntps`), and fences them before the kernel returns.
//
// Why: a large function result (W1's 64 MiB, W2's 16 MiB) is written once and not read again by
// this executable. Ordinary stores first read every output line into the cache (the "read for
// ownership"), so a kernel that reads N bytes and writes N bytes moves 3N through memory and evicts
// its own input from the last-level cache; non-temporal stores write whole lines straight to
// memory: 2N, and the input stays cached. Measured in IR-specs/codegen.md.
//
// Why after optimization: LLVM's loop vectorizer refuses to widen a scalar store that carries
// `!nontemporal` (a 4-byte-aligned vector non-temporal store is not legal), so the emitter writes
// ordinary scalar stores and this pass marks the vector stores the vectorizer produced, keeping
// only those LLVM proved aligned to their size (the emitter declares the output pointer 64-byte
// aligned). Scalar remainder stores stay ordinary. Stores into stack rows (allocas) are skipped.
// The fence: non-temporal stores are weakly ordered, so `sfence` before every return makes them
// visible before the thread pool reports the kernel done.

import CLLVM

enum StreamingStores {
  /// Marks the eligible stores of every function in `module`; returns how many were marked.
  @discardableResult
  static func mark(_ module: LLVMModuleRef) -> Int {
    let context = LLVMGetModuleContext(module)!
    let layout = LLVMGetModuleDataLayout(module)!
    let kind = LLVMGetMDKindIDInContext(context, "nontemporal", 11)
    var one: [LLVMMetadataRef?] = [LLVMValueAsMetadata(LLVMConstInt(LLVMInt32TypeInContext(context), 1, 0))]
    let node = LLVMMetadataAsValue(context, one.withUnsafeMutableBufferPointer { LLVMMDNodeInContext2(context, $0.baseAddress, 1) })
    let builder = LLVMCreateBuilderInContext(context)!
    defer { LLVMDisposeBuilder(builder) }
    var total = 0
    var function = LLVMGetFirstFunction(module)
    while let fn = function {
      defer { function = LLVMGetNextFunction(fn) }
      var marked = 0
      var returns: [LLVMValueRef] = []
      var block = LLVMGetFirstBasicBlock(fn)
      while let bb = block {
        defer { block = LLVMGetNextBasicBlock(bb) }
        var instruction = LLVMGetFirstInstruction(bb)
        while let inst = instruction {
          defer { instruction = LLVMGetNextInstruction(inst) }
          switch LLVMGetInstructionOpcode(inst) {
          case LLVMRet: returns.append(inst)
          case LLVMStore:
            let valueType = LLVMTypeOf(LLVMGetOperand(inst, 0))!
            guard LLVMGetTypeKind(valueType) == LLVMVectorTypeKind else { continue }
            let bytes = LLVMStoreSizeOfType(layout, valueType)
            guard bytes >= 16, UInt64(LLVMGetAlignment(inst)) >= bytes, !storesToStack(inst) else { continue }
            LLVMSetMetadata(inst, kind, node)
            marked += 1
          default: break
          }
        }
      }
      if marked > 0 {
        let id = LLVMLookupIntrinsicID("llvm.x86.sse.sfence", 19)
        let fence = LLVMGetIntrinsicDeclaration(module, id, nil, 0)
        let fenceType = LLVMIntrinsicGetType(context, id, nil, 0)
        for ret in returns {
          LLVMPositionBuilderBefore(builder, ret)
          LLVMBuildCall2(builder, fenceType, fence, nil, 0, "")
        }
      }
      total += marked
    }
    return total
  }

  /// Whether a store's address is computed from a stack allocation (through GEPs).
  static func storesToStack(_ store: LLVMValueRef) -> Bool {
    var pointer = LLVMGetOperand(store, 1)
    while let p = pointer, LLVMIsAGetElementPtrInst(p) != nil { pointer = LLVMGetOperand(p, 0) }
    return pointer.map { LLVMIsAAllocaInst($0) != nil } ?? false
  }
}
