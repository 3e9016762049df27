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
// Runs after fusion (it moves whole regions) and after DCE. Linear: the new order is built in
// one pass (`schedule`), with no array insertion per move.

import TTIR

public enum UpdateScheduling {
  public static let pass = Pass.perFunction(
    name: "schedule", summary: "run each state update (every result returned) as soon as its inputs are ready"
  ) { function, context in
    var steps = 0
    guard let order = schedule(function, steps: &steps) else { context.work += steps; return false }
    context.work += steps
    context.count("schedule", "updates-moved", by: order.moved)
    function.body = order.body
    return true
  }

  /// Where an op sits in the new order. An op that stays is `(its original index, -1)`; an op
  /// that moves joins the run of moved ops placed after the op that stays at `base` (-1: before
  /// the first op), at index `run` of that run. Runs only grow at their end and ops that stay
  /// keep their order, so comparing keys compares positions, and a key never changes.
  struct Place: Comparable {
    var base: Int
    var run: Int
    static func < (a: Place, b: Place) -> Bool { (a.base, a.run) < (b.base, b.run) }
  }

  /// The new body order and the number of ops moved, or nil when nothing moves. Visits ops in
  /// program order; each moved op goes right after the last op it must follow, after the ops
  /// already moved there (moved ops keep program order). Linear in the operand and reader edges
  /// (`steps` counts them): no array insertion and no renumbering per move (a thousand parameter
  /// updates each moved across the backward pass made that quadratic).
  static func schedule(_ function: Function, steps: inout Int) -> (body: [OpID], moved: Int)? {
    let returned = Set(function.returnValues)
    var index: [OpID: Int] = [:]
    for (i, id) in function.body.enumerated() { index[id] = i }
    // Readers never change; only the order does.
    var users: [ValueID: [Int]] = [:]
    for (i, id) in function.body.enumerated() { for v in function[id].operands { users[v, default: []].append(i) } }
    var place = [Place](repeating: Place(base: 0, run: -1), count: function.body.count)
    for i in place.indices { place[i].base = i }
    var runs: [Int: [Int]] = [:]   // base -> moved ops after it, in order
    var lastStayed = -1            // the latest op (so far) that keeps its place
    var moved = 0
    for (i, id) in function.body.enumerated() {
      let op = function[id]
      let update = !op.code.info.hasSideEffects && isStateUpdate(op, function: function, returned: returned)
      guard !op.code.info.hasSideEffects, update || isSmall(op, function: function) else { lastStayed = i; continue }
      let resultTypes = Set(op.results.map { function.type(of: $0) })
      var anchor: Place? = nil   // the op it must follow
      for v in op.operands {
        steps += 1
        if case .result(let producer, _) = function[v].definition, let p = index[producer] { anchor = max(anchor ?? place[p], place[p]) }
        guard update, resultTypes.contains(function.type(of: v)), case .argument = function[v].definition else { continue }
        for reader in users[v] ?? [] where reader != i {
          steps += 1
          anchor = max(anchor ?? place[reader], place[reader])
        }
      }
      let base = anchor?.base ?? -1
      // It moves when an op that stays lies between the anchor's run and it; an anchor after
      // it (a later reader of the parameter it overwrites) keeps it in place.
      guard base < i, lastStayed > base else { lastStayed = i; continue }
      place[i] = Place(base: base, run: runs[base, default: []].count)
      runs[base, default: []].append(i)
      moved += 1
    }
    guard moved > 0 else { return nil }
    var body: [OpID] = []
    body.reserveCapacity(function.body.count)
    body += (runs[-1] ?? []).map { function.body[$0] }
    for (i, id) in function.body.enumerated() where place[i].run == -1 {
      body.append(id)
      body += (runs[i] ?? []).map { function.body[$0] }
    }
    return (body, moved)
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
