// schedule — moves each state update up to just after the last op it must follow. A state update
// is an elementwise op or loop fusion whose every result is a function result (an optimizer's
// new parameter and slots); it must follow the producers of its operands, and every other reader
// of an argument it may overwrite in place (one of its result type: the old parameter, which a
// training step's caller donates), or the runtime could not write the new value over the old.
//
// Why: a training step computes every gradient, then updates every parameter, so by the time the
// update of w2 runs, w2 and its gradient have left the caches, though the backward pass touched
// both moments earlier (the gradient is the GEMM before the one that reads w2 last). Run right
// after that reader, the update finds both in cache; its results live to the function's end
// anyway, so starting it earlier holds no extra memory. Pure reordering: values are unchanged.
// Small values (at most `smallElements` elements, like the step's bias corrections computed from
// the step number) move up the same way, so updates that read them are not held back by them.
// Runs after fusion (it moves whole regions) and after DCE.

import TTIR

public enum UpdateScheduling {
  public static let pass = Pass.perFunction(
    name: "schedule", summary: "run each state update (every result returned) as soon as its inputs are ready"
  ) { function, context in
    let returned = Set(function.returnValues)
    var moved = 0
    var movedOps = Set<OpID>()
    // Readers never change (only the order does); positions are recomputed after each move.
    var users: [ValueID: [OpID]] = [:]
    for other in function.body { for v in function[other].operands { users[v, default: []].append(other) } }
    var position: [OpID: Int] = [:]
    for (i, other) in function.body.enumerated() { position[other] = i }
    for id in function.body {
      let op = function[id]
      guard !op.code.info.hasSideEffects else { continue }   // their order is the program's
      let update = isStateUpdate(op, function: function, returned: returned)
      guard update || isSmall(op, function: function) else { continue }
      let resultTypes = Set(op.results.map { function.type(of: $0) })
      var last = -1   // the position it must follow
      for v in op.operands {
        if case .result(let producer, _) = function[v].definition, let p = position[producer] { last = max(last, p) }
        guard update, resultTypes.contains(function.type(of: v)), case .argument = function[v].definition else { continue }
        for reader in users[v] ?? [] where reader != id { last = max(last, position[reader]!) }
      }
      let current = position[id]!
      // After ops already moved to the same place: moved ops keep their program order.
      var target = last + 1
      while target < current && movedOps.contains(function.body[target]) { target += 1 }
      guard target < current else { continue }
      function.body.remove(at: current)
      function.body.insert(id, at: target)
      for i in target...current { position[function.body[i]] = i }
      movedOps.insert(id)
      moved += 1
    }
    guard moved > 0 else { return false }
    context.count("schedule", "updates-moved", by: moved)
    return true
  }

  static let smallElements = 64

  /// An op (not a constant, which needs no moving) whose results are all statically small.
  static func isSmall(_ op: OpNode, function: Function) -> Bool {
    guard !op.results.isEmpty, op.code != .constant, op.code != .matmul else { return false }
    return op.results.allSatisfy { r in
      function.type(of: r).staticShape.map { $0.reduce(1, *) <= smallElements } ?? false
    }
  }

  /// An elementwise op or loop fusion all of whose results the function returns.
  static func isStateUpdate(_ op: OpNode, function: Function, returned: Set<ValueID>) -> Bool {
    guard !op.results.isEmpty, op.results.allSatisfy(returned.contains), op.code != .constant else { return false }
    if op.code == .fusion {
      if case .string("loop")? = op.attributes["kind"] { return true }
      return false
    }
    return op.code.info.isElementwise
  }
}
