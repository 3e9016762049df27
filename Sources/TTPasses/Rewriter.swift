// Rewriter — the one way passes edit a function: walk the body in order, and for each op either
// keep it, replace its results by other values, or emit new ops in front of it. Replacements are
// recorded in a map and applied to later operands as they are visited, so a whole pass is one
// linear walk (no repeated "replace all uses" scans). `finish()` installs the new body.

import TTIR

public struct Rewriter {
  public private(set) var function: Function
  private var newBody: [OpID] = []
  private var replacement: [ValueID: ValueID] = [:]

  public init(_ function: Function) {
    self.function = function
    newBody.reserveCapacity(function.body.count)
  }

  /// The value `v` stands for after the replacements so far.
  public mutating func resolve(_ v: ValueID) -> ValueID {
    var current = v
    while let next = replacement[current] { current = next }
    if current != v { replacement[v] = current }
    return current
  }

  /// Rewrites the operands of `op` through the replacements and returns the updated op.
  public mutating func prepare(_ id: OpID) -> OpNode {
    var op = function[id]
    op.operands = op.operands.map { resolve($0) }
    function[id] = op
    return op
  }

  public mutating func keep(_ id: OpID) { newBody.append(id) }

  /// Records that every later use of `old` reads `new` instead (same type required).
  public mutating func replace(_ old: ValueID, with new: ValueID) {
    precondition(function.type(of: old) == function.type(of: new),
                 "replacement changes the type: \(function.type(of: old)) -> \(function.type(of: new))")
    if old != new { replacement[old] = new }
  }

  /// Emits a new single-result op at the current position and returns its result.
  @discardableResult
  public mutating func emit(_ code: OpCode, _ operands: [ValueID], type: TensorType,
                            attributes: Attributes = Attributes(), name: String? = nil,
                            location: SourceLocation? = nil) -> ValueID {
    let id = function.makeOp(code, operands, resultTypes: [type], resultNames: name.map { [$0] },
                             attributes: attributes, location: location)
    newBody.append(id)
    return function[id].results[0]
  }

  /// Emits a new op with any number of results (named as given) and returns its results.
  @discardableResult
  public mutating func emitOp(_ code: OpCode, _ operands: [ValueID], types: [TensorType], names: [String]? = nil,
                              attributes: Attributes = Attributes(), callee: String? = nil,
                              location: SourceLocation? = nil, regions: [Function] = []) -> [ValueID] {
    let id = function.makeOp(code, operands, resultTypes: types, resultNames: names, attributes: attributes,
                             callee: callee, location: location, regions: regions)
    newBody.append(id)
    return function[id].results
  }

  /// The value reading global `name` in this function (created on first use).
  public mutating func globalValue(name: String, type: TensorType) -> ValueID {
    function.globalValue(name: name, type: type)
  }

  /// Emits a constant holding `value` with result type `type` (value is a splat or full tensor).
  public mutating func emitConstant(_ value: Tensor, type: TensorType, location: SourceLocation? = nil) -> ValueID {
    var attributes = Attributes()
    attributes["value"] = .tensor(value)
    return emit(.constant, [], type: type, attributes: attributes, location: location)
  }

  /// The op defining `v` if it is an op result (not an argument or parameter).
  public func producer(_ v: ValueID) -> OpNode? {
    if case .result(let op, _) = function[v].definition { return function[op] }
    return nil
  }

  public func type(_ v: ValueID) -> TensorType { function.type(of: v) }

  /// The rewriter's size: what `rollback(to:)` returns to (a rule that emitted ops and then did
  /// not apply leaves nothing behind, without the pass copying the function per attempt).
  public struct Checkpoint {
    let values: Int, ops: Int, body: Int, globals: Int
  }
  public func checkpoint() -> Checkpoint {
    Checkpoint(values: function.values.count, ops: function.ops.count, body: newBody.count, globals: function.globalValues.count)
  }
  /// Drops every op and value created since `mark` (not globals: rules never read new ones).
  public mutating func rollback(to mark: Checkpoint) {
    precondition(function.globalValues.count == mark.globals, "a rolled-back rewrite created a global")
    if function.values.count > mark.values { function.values.removeLast(function.values.count - mark.values) }
    if function.ops.count > mark.ops { function.ops.removeLast(function.ops.count - mark.ops) }
    if newBody.count > mark.body { newBody.removeLast(newBody.count - mark.body) }
  }

  public mutating func finish() -> Function {
    function.returnValues = function.returnValues.map { resolve($0) }
    function.body = newBody
    return function
  }
}
