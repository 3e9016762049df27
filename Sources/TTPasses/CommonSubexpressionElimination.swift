// cse — merges ops that compute the same thing: same op, same (resolved) operands, same attributes,
// callee, result types and body (bodies compared by structure: value names, op locations and dead
// ops inside them do not matter, so two fusion regions the fusion pass built alike merge). Operands of commutative ops are compared as a set, so a + b and
// b + a merge. Constants merge when their values are bitwise identical. Side-effecting ops never
// merge (two random draws are two different numbers). All ops are pure functions of their operands
// and TTIR has no control flow, so any earlier op dominates every later one.

import TTIR

public enum CommonSubexpressionElimination {
  struct Key: Hashable {
    var code: OpCode
    var operands: [ValueID]
    var attributes: Attributes
    var callee: String?
    var resultTypes: [TensorType]
    var regions: [BodyStructure]
  }

  /// A fusion body up to renaming: argument types, live ops (operands numbered: arguments first,
  /// then results in order), returned numbers.
  struct BodyStructure: Hashable {
    struct Op: Hashable {
      var code: OpCode
      var operands: [Int]
      var attributes: Attributes
      var callee: String?
      var resultTypes: [TensorType]
      var regions: [BodyStructure]
    }
    var arguments: [TensorType]
    var globals: [String] = []
    var ops: [Op] = []
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
        var operands = op.operands.map { number[$0] ?? -1 }
        if op.code.info.isCommutative { operands.sort() }
        ops.append(Op(code: op.code, operands: operands, attributes: op.attributes, callee: op.callee,
                      resultTypes: op.results.map { body.type(of: $0) }, regions: op.regions.map(BodyStructure.init)))
        for r in op.results { number[r] = next; next += 1 }
      }
      returned = body.returnValues.map { number[$0] ?? -1 }
    }
  }


  public static let pass = Pass.perFunction(
    name: "cse", summary: "merge ops with identical operands and attributes (commutative operands unordered)"
  ) { function, context in
    var rewriter = Rewriter(function)
    var seen: [Key: OpID] = [:]
    var merged = 0
    for id in function.body {
      let op = rewriter.prepare(id)
      if op.code.info.hasSideEffects { rewriter.keep(id); continue }
      let regions = op.regions.map(BodyStructure.init)
      let operands = op.code.info.isCommutative ? op.operands.sorted() : op.operands
      let key = Key(code: op.code, operands: operands, attributes: op.attributes, callee: op.callee,
                    resultTypes: op.results.map { rewriter.type($0) }, regions: regions)
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
