// inline — replaces every `call` by a copy of the callee's body, so the code generator sees one
// flat function (kernels and buffer plans cross what were call boundaries). The callee's symbolic
// dimensions are instantiated from the call's operand types, exactly as the verifier binds them.
// Inlined values are named `callee.value` so the optimized IR still says where they came from.
// Terminates because the verifier rejects recursion.

import TTIR

public enum Inlining {
  public static let pass = Pass(name: "inline", summary: "replace calls by the callee's body (symbols instantiated)") { module, context in
    var changed = false
    for i in module.functions.indices {
      var rounds = 0
      while module.functions[i].body.contains(where: { module.functions[i][$0].code == .call }) && rounds < 64 {
        module.functions[i] = inlineCalls(in: module.functions[i], module: module, context: context)
        changed = true
        rounds += 1
      }
    }
    return changed
  }

  static func inlineCalls(in function: Function, module: Module, context: PassContext) -> Function {
    var rewriter = Rewriter(function)
    for id in function.body {
      let op = rewriter.prepare(id)
      guard op.code == .call, let callee = module.function(named: op.callee ?? "") else { rewriter.keep(id); continue }
      // Bind the callee's symbols to the caller's dims.
      var binding: [String: Dim] = [:]
      for (formal, actual) in zip(callee.argumentTypes, op.operands.map { rewriter.type($0) }) {
        for (f, a) in zip(formal.dims, actual.dims) { if case .symbol(let s) = f { binding[s] = a } }
      }
      func instantiate(_ t: TensorType) -> TensorType {
        t.with(dims: t.dims.map { d in if case .symbol(let s) = d { return binding[s] ?? d }; return d })
      }
      var map: [ValueID: ValueID] = [:]
      for (argument, operand) in zip(callee.arguments, op.operands) { map[argument] = operand }
      for (k, value) in callee.values.enumerated() {
        if case .global(let name) = value.definition { map[ValueID(k)] = rewriter.globalValue(name: name, type: value.type) }
      }
      for inner in callee.body {
        let calleeOp = callee[inner]
        let operands = calleeOp.operands.map { map[$0]! }
        let types = calleeOp.results.map { instantiate(callee.type(of: $0)) }
        let names = calleeOp.results.map { "\(callee.name).\(callee[$0].name)" }
        let results = rewriter.emitOp(calleeOp.code, operands, types: types, names: names, attributes: calleeOp.attributes,
                                      callee: calleeOp.callee, location: calleeOp.location,
                                      regions: calleeOp.regions.map { $0.instantiatingSymbols(binding) })
        for (old, new) in zip(calleeOp.results, results) { map[old] = new }
      }
      for (result, returned) in zip(op.results, callee.returnValues) { rewriter.replace(result, with: map[returned]!) }
      context.count("inline", "inlined")
    }
    return rewriter.finish()
  }
}
