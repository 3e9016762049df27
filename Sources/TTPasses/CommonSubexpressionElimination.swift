// cse — merges ops that compute the same thing: same op, same (resolved) operands, same attributes,
// callee, result types and body. Operands of commutative ops are compared as a set, so a + b and
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
    var regions: [Function]
  }

  static let commutative: Set<OpCode> = [.add, .mul, .max, .min, .eq, .ne, .and, .or]

  public static let pass = Pass.perFunction(
    name: "cse", summary: "merge ops with identical operands and attributes (commutative operands unordered)"
  ) { function, context in
    var rewriter = Rewriter(function)
    var seen: [Key: OpID] = [:]
    var merged = 0
    for id in function.body {
      let op = rewriter.prepare(id)
      if op.code.info.hasSideEffects { rewriter.keep(id); continue }
      var regions = op.regions
      for i in regions.indices { regions[i].location = nil }
      let operands = commutative.contains(op.code) ? op.operands.sorted() : op.operands
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
