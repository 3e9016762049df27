// cse — merges ops that compute the same thing: same op, same (resolved) operands, same attributes,
// callee, result types and body (bodies compared by structure: value names, op locations and dead
// ops inside them do not matter, so two fusion regions the fusion pass built alike merge).
// Operands of commutative ops are compared as a set, so a + b and b + a merge. Constants merge when their values are bitwise identical. Side-effecting ops never
// merge (two random draws are two different numbers). All ops are pure functions of their operands
// and TTIR has no control flow, so any earlier op dominates every later one.

import TTIR

public enum CommonSubexpressionElimination {
  /// What makes two ops compute the same thing: the key of an op in the function (operands by
  /// value index) and of an op in a fusion body (operands numbered within the body).
  struct OpKey: Hashable {
    var code: OpCode
    var operands: [Int]
    var attributes: Attributes
    var callee: String?
    var resultTypes: [TensorType]
    var regions: [BodyStructure]

    /// Commutative operands compared as a set (sorted).
    init(_ op: OpNode, operands: [Int], resultTypes: [TensorType]) {
      code = op.code
      self.operands = op.code.info.isCommutative ? operands.sorted() : operands
      attributes = op.attributes
      callee = op.callee
      self.resultTypes = resultTypes
      regions = op.regions.map(BodyStructure.init)
    }
  }

  /// A fusion body up to renaming: argument types, live ops (operands numbered: arguments first,
  /// then results in order), returned numbers.
  struct BodyStructure: Hashable {
    var arguments: [TensorType]
    var globals: [String] = []
    var ops: [OpKey] = []
    var returned: [Int] = []

    init(_ body: Function) {
      arguments = body.argumentTypes
      var number: [ValueID: Int] = [:]
      for (k, a) in body.arguments.enumerated() { number[a] = k }
      var next = body.arguments.count
      for (k, value) in body.values.enumerated() {
        if case .global(let name) = value.definition { number[ValueID(k)] = next; next += 1; globals.append(name) }
      }
      // Only live ops count: an op whose results nothing returned depends on is dead.
      var live = Set(body.returnValues)
      var liveOps = Set<OpID>()
      for id in body.body.reversed() where body[id].results.contains(where: live.contains) {
        liveOps.insert(id)
        live.formUnion(body[id].operands)
      }
      for id in body.body where liveOps.contains(id) {
        let op = body[id]
        ops.append(OpKey(op, operands: op.operands.map { number[$0] ?? -1 }, resultTypes: op.results.map { body.type(of: $0) }))
        for r in op.results { number[r] = next; next += 1 }
      }
      returned = body.returnValues.map { number[$0] ?? -1 }
    }
  }


  public static let pass = Pass.perFunction(
    name: "cse", summary: "merge ops with identical operands and attributes (commutative operands unordered)"
  ) { function, context in
    var rewriter = Rewriter(function)
    var seen: [OpKey: OpID] = [:]
    seen.reserveCapacity(function.body.count)   // no rehashing as it fills (3% of a deep step's compile)
    var merged = 0
    for id in function.body {
      let op = rewriter.prepare(id)
      if op.code.info.hasSideEffects { rewriter.keep(id); continue }
      let key = OpKey(op, operands: op.operands.map(\.index), resultTypes: op.results.map { rewriter.type($0) })
      if let earlier = seen[key] {
        for (old, new) in zip(op.results, rewriter.function[earlier].results) { rewriter.replace(old, with: new) }
        merged += 1
      } else {
        seen[key] = id
        rewriter.keep(id)
      }
    }
    guard merged > 0 else { return false }
    function = rewriter.finish()
    context.count("cse", "merged", by: merged)
    return true
  }
}
