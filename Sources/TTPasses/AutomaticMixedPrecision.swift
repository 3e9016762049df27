// amp — automatic mixed precision as a graph rewrite (TensorFlow's auto_mixed_precision, with its
// allow / infer / deny lists, `OpCode.mixedPrecisionList`). One walk in program order decides each
// op's precision from its operands' (sources keep their f32; an allow op is half; a deny op is
// f32 and taints what follows it; an infer op is f32 when a tainted value reaches it, else half
// when a half value does), then rebuilds the function with f32 values cast to the half type where
// a half op reads them and back where an f32 op reads a half value. A value is cast to one type at
// most once (at its first use, which dominates the rest of a straight-line body), so a weight read
// by several matmuls is converted once. Results keep the function's declared types. Parameters
// stay f32 (the trainer's master weights): their casts are ordinary ops, so their gradients come
// back through the cast's gradient in f32. Only f32 is lowered: f64 and existing half values keep
// their types. Runs only when asked (`-p amp`, `ttfc train --precision`), before inlining's output
// is fused: it needs the ops fusion would hide, and canonicalization then folds constant casts.

import TTIR

public enum AutomaticMixedPrecision {
  public static let pass = Pass.perFunction(
    name: "amp", summary: "automatic mixed precision: allow-list ops in the half type (--amp-type), deny-list ops in f32, casts once"
  ) { function, context in
    rewrite(&function, context: context)
  }

  /// What the walk knows about a value of the original function.
  enum Precision: Equatable {
    /// Not a float being lowered (integers, i1, f64): never cast.
    case other
    /// An f32 value no half op produced and no deny op tainted (arguments, parameters, constants,
    /// f32 arithmetic on them).
    case neutral
    /// Produced in the half type.
    case half
    /// f32 because a deny-list op produced it, or an op that read such a value.
    case denied
  }

  /// Rewrites one function (the trainer's loss) with `context.options.ampType` as the half type;
  /// returns whether any op was lowered.
  @discardableResult
  public static func rewrite(_ function: inout Function, context: PassContext) -> Bool {
    let half = context.options.ampType
    let original = function
    var precision = [Precision](repeating: .other, count: original.values.count)
    for (k, info) in original.values.enumerated() {
      if info.type.dtype == .f32 { precision[k] = .neutral } else if info.type.dtype == half { precision[k] = .half }
    }
    func name(_ v: ValueID) -> String { "%" + original[v].name }

    // Decide every op's precision first (the decisions read only earlier values).
    var runsInHalf = [Bool](repeating: false, count: original.ops.count)
    var halfOps = 0
    for id in original.body {
      let op = original[id]
      let floatOperands = op.operands.filter { precision[$0.index] != .other }
      let lowered = op.operands.filter { original.type(of: $0).dtype == .f32 }
      let list = op.code.mixedPrecisionList
      var inHalf = false
      var why: String
      switch list {
      case .allow:
        inHalf = !lowered.isEmpty && op.operands.allSatisfy { [.f32, half].contains(original.type(of: $0).dtype) }
        why = inHalf ? "allow list" : "allow list, but its operands are not f32"
      case .deny:
        why = "deny list"
      case .keep:
        why = "keeps its types"
      case .infer:
        if let tainted = floatOperands.first(where: { precision[$0.index] == .denied }) {
          why = "infer list: \(name(tainted)) comes from a deny-list op"
        } else if let source = floatOperands.first(where: { precision[$0.index] == .half }) {
          inHalf = true
          why = "infer list: follows \(name(source)), which is \(half)"
        } else {
          let anyFloat = op.operands.contains { original.type(of: $0).dtype.isFloat }
          why = anyFloat ? "infer list: no \(half) operand" : "infer list: no float operand"
        }
      }
      runsInHalf[id.index] = inHalf
      let taintedInput = floatOperands.contains { precision[$0.index] == .denied }
      for r in op.results where original.type(of: r).dtype == .f32 {
        switch list {
        case .allow, .infer: precision[r.index] = inHalf ? .half : (taintedInput ? .denied : .neutral)
        case .deny: precision[r.index] = .denied
        case .keep: precision[r.index] = .neutral
        }
      }
      // Counted: ops the rewrite lowered (an f32 operand or result becomes the half type).
      if inHalf && (op.operands + op.results).contains(where: { original.type(of: $0).dtype == .f32 }) { halfOps += 1 }
      if let first = op.results.first, list != .keep {
        let resultType = original.type(of: first).dtype
        let dtype = inHalf && resultType == .f32 ? "\(half)" : inHalf && resultType != half ? "\(resultType), computed in \(half)" : "\(resultType)"
        context.ampExplanations.append("\(function.name): \(name(first)) = \(op.code) -> \(dtype) (\(why))")
      }
    }
    guard halfOps > 0 else { return false }

    // Rebuild: same arguments and names, ops in order with their new types, casts where needed.
    var rebuilt = Function(name: original.name, resultTypes: original.resultTypes, location: original.location)
    rebuilt.returnLocation = original.returnLocation
    rebuilt.endLocation = original.endLocation
    var map = [ValueID?](repeating: nil, count: original.values.count)
    for a in original.arguments { map[a.index] = rebuilt.addArgument(name: original[a].name, type: original.type(of: a)) }
    var casts: [ValueID: [DType: ValueID]] = [:]
    var castCount = 0
    /// The rebuilt value of `v` (original value), in element type `dtype` (cast once, then reused).
    func value(_ v: ValueID, as dtype: DType, location: SourceLocation?) -> ValueID {
      let current: ValueID
      if let m = map[v.index] { current = m } else {
        guard case .global(let global) = original[v].definition else { preconditionFailure("value used before its definition") }
        current = rebuilt.globalValue(name: global, type: original.type(of: v))
        map[v.index] = current
      }
      let type = rebuilt.type(of: current)
      guard type.dtype != dtype else { return current }
      if let cached = casts[current]?[dtype] { return cached }
      let id = rebuilt.append(.cast, [current], resultTypes: [type.with(dtype: dtype)],
                              resultNames: [rebuilt.freshName()], location: location)
      let cast = rebuilt[id].results[0]
      casts[current, default: [:]][dtype] = cast
      castCount += 1
      return cast
    }
    for id in original.body {
      let op = original[id]
      let inHalf = runsInHalf[id.index]
      let operands = op.operands.map { v -> ValueID in
        let dtype = original.type(of: v).dtype
        // A half op reads its f32 operands in the half type; any other op reads every operand
        // in its original type (a half-produced value is cast back to f32 for it).
        return value(v, as: inHalf && dtype == .f32 ? half : dtype, location: op.location)
      }
      let types = op.results.map { r -> TensorType in
        let t = original.type(of: r)
        return inHalf && t.dtype == .f32 ? t.with(dtype: half) : t
      }
      let new = rebuilt.append(op.code, operands, resultTypes: types, resultNames: op.results.map { original[$0].name },
                               attributes: op.attributes, callee: op.callee, location: op.location, regions: op.regions)
      for (r, n) in zip(op.results, rebuilt[new].results) { map[r.index] = n }
    }
    rebuilt.returnValues = original.returnValues.map { value($0, as: original.type(of: $0).dtype, location: original.returnLocation) }
    function = rebuilt
    context.count("amp", "ops-in-\(half)", by: halfOps)
    context.count("amp", "casts", by: castCount)
    return true
  }
}
