// simplify — algebraic simplification by a table of rewrite rules (SimplifyRules.swift). Each op is
// offered to the rules for its opcode in table order; the first rule that returns a replacement
// wins. Rules make the graph smaller or cheaper or put it in canonical form, and they go one way
// (constants are moved to the right instead of writing each rule twice), so repeated application
// terminates; the canonicalization fixpoint reruns this pass with constant folding, CSE and DCE
// until nothing changes (at most 25 rounds, a warning if the cap stops it). Rules marked fast-math
// are skipped unless PassOptions.fastMath is set.

import TTIR

/// What a rule sees: the op (operands already resolved), and helpers to inspect and build values.
public struct RuleContext {
  public var rewriter: Rewriter
  public internal(set) var op: OpNode
  public let fastMath: Bool

  public var result: ValueID { op.results[0] }
  public var resultType: TensorType { rewriter.type(result) }
  public var lhs: ValueID { op.operands[0] }
  public var rhs: ValueID { op.operands[1] }
  public func operand(_ i: Int) -> ValueID { op.operands[i] }
  public func type(_ v: ValueID) -> TensorType { rewriter.type(v) }
  public func producer(_ v: ValueID) -> OpNode? { rewriter.producer(v) }
  public func producer(_ v: ValueID, is code: OpCode) -> OpNode? {
    guard let p = producer(v), p.code == code else { return nil }
    return p
  }
  public var isFloat: Bool { resultType.dtype.isFloat }

  /// The single value of a constant whose elements are all equal (a splat), if `v` is one.
  public func splat(_ v: ValueID) -> Double? {
    guard let p = producer(v, is: .constant), let t = p.constantValue else { return nil }
    let d = t.doubles
    guard let first = d.first, d.allSatisfy({ $0.bitPattern == first.bitPattern }) else { return nil }
    return first
  }
  /// True if `v` is a splat equal to `x`, with the sign of zero taken into account.
  public func isSplat(_ v: ValueID, _ x: Double) -> Bool {
    guard let s = splat(v) else { return false }
    return s == x && s.sign == x.sign
  }
  public func isConstant(_ v: ValueID) -> Bool { producer(v, is: .constant) != nil }

  /// `v` as a value of the op's result type: itself if the types match, a broadcast_to if it
  /// broadcasts to the result's shape, or nil if neither (the rule then does not apply).
  public mutating func fit(_ v: ValueID) -> ValueID? {
    let t = type(v)
    if t == resultType { return v }
    guard t.dtype == resultType.dtype, let dims = try? ShapeRules.broadcast(t.dims, resultType.dims),
          dims == resultType.dims else { return nil }
    return rewriter.emit(.broadcastTo, [v], type: resultType, location: op.location)
  }

  /// A new op with the result's type.
  public mutating func emit(_ code: OpCode, _ operands: [ValueID], attributes: Attributes = Attributes()) -> ValueID {
    rewriter.emit(code, operands, type: resultType, attributes: attributes, location: op.location)
  }
  public mutating func emit(_ code: OpCode, _ operands: [ValueID], type: TensorType, attributes: Attributes = Attributes()) -> ValueID {
    rewriter.emit(code, operands, type: type, attributes: attributes, location: op.location)
  }
  /// A splat constant of `type` (default: the result type).
  public mutating func constant(_ x: Double, type: TensorType? = nil) -> ValueID {
    let t = type ?? resultType
    let value = t.dtype.isFloat ? Tensor(t.dtype, shape: [], floats: [x]) : Tensor(t.dtype, shape: [], ints: [Int64(x)])
    return rewriter.emitConstant(value, type: t, location: op.location)
  }
}

public struct SimplifyRule: Sendable {
  public let name: String
  public let codes: [OpCode]
  public let fastMathOnly: Bool
  public let apply: @Sendable (inout RuleContext) -> ValueID?

  public init(_ name: String, _ codes: [OpCode], fastMath: Bool = false, _ apply: @escaping @Sendable (inout RuleContext) -> ValueID?) {
    self.name = name; self.codes = codes; self.fastMathOnly = fastMath; self.apply = apply
  }
}

public enum AlgebraicSimplification {
  static let rulesByCode: [OpCode: [SimplifyRule]] = {
    var table: [OpCode: [SimplifyRule]] = [:]
    for rule in SimplifyRules.all { for code in rule.codes { table[code, default: []].append(rule) } }
    return table
  }()

  public static let pass = Pass.perFunction(
    name: "simplify", summary: "algebraic simplification by rewrite rules (IEEE-exact unless --fast-math)"
  ) { function, context in
    // One context holds the rewriter for the whole walk: handing each rule attempt a copy of it
    // made every applied rule copy the function's arrays (quadratic in the function's size).
    var ruleContext = RuleContext(rewriter: Rewriter(function), op: OpNode(code: .constant, operands: [], results: []),
                                  fastMath: context.options.fastMath)
    var changed = false
    for id in function.body {
      let op = ruleContext.rewriter.prepare(id)
      guard op.results.count == 1, let rules = rulesByCode[op.code] else { ruleContext.rewriter.keep(id); continue }
      ruleContext.op = op
      var replaced = false
      for rule in rules where !rule.fastMathOnly || context.options.fastMath {
        let mark = ruleContext.rewriter.checkpoint()
        if let replacement = rule.apply(&ruleContext),
           ruleContext.rewriter.type(replacement) == ruleContext.resultType {
          ruleContext.rewriter.replace(op.results[0], with: replacement)
          context.count("simplify", rule.name)
          replaced = true
          changed = true
          break
        }
        ruleContext.rewriter.rollback(to: mark)
      }
      if !replaced { ruleContext.rewriter.keep(id) }
    }
    guard changed else { return false }
    function = ruleContext.rewriter.finish()
    return true
  }
}
