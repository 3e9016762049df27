// dce — removes ops whose results nothing uses. An op is live if a returned value or a live op's
// operand is one of its results, or if it has side effects (none of today's ops do; random number
// generation and embedding updates will, and must never be dropped). Runs last in each round of
// the canonicalization fixpoint and once more after fusion; at -O2 only `schedule`, which reorders
// and removes nothing, comes after it.

import TTIR

public enum DeadCodeElimination {
  public static let pass = Pass.perFunction(
    name: "dce", summary: "remove ops whose results are never used (side-effecting ops are kept)"
  ) { function, context in
    var live = Set(function.returnValues)
    var keep = [Bool](repeating: false, count: function.body.count)
    for (position, id) in function.body.enumerated().reversed() {
      let op = function[id]
      if op.code.info.hasSideEffects || op.results.contains(where: { live.contains($0) }) {
        keep[position] = true
        live.formUnion(op.operands)
      }
    }
    let removed = keep.filter { !$0 }.count
    guard removed > 0 else { return false }
    function.body = function.body.enumerated().filter { keep[$0.offset] }.map(\.element)
    context.count("dce", "removed", by: removed)
    return true
  }
}
