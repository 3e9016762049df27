// constant-fold — evaluates ops whose operands are all constants, with the reference interpreter's
// own kernels, so a folded value is bit for bit what the program would have computed. Results with
// every element equal become splat constants (one number, any size). Cost rules: a result larger
// than `constantFoldElementLimit` elements is not folded (folding must never blow up memory or the
// IR), a result whose shape is symbolic cannot be folded, and ops that could fail at run time
// (an out-of-range gather index) are left to fail there. `iota` is not folded: it is already
// cheaper than the constant it would become.

import TTIR
import TTInterp

public enum ConstantFolding {
  public static let pass = Pass.perFunction(
    name: "constant-fold", summary: "evaluate ops whose operands are all constants (size-capped)"
  ) { function, context in
    var rewriter = Rewriter(function)
    var folded = 0, skippedLarge = 0
    let limit = context.options.constantFoldElementLimit
    for id in function.body {
      let op = rewriter.prepare(id)
      guard op.code != .constant, op.code != .iota, op.code != .call, op.code != .fusion,
            !op.code.info.hasSideEffects, op.results.count == 1 else { rewriter.keep(id); continue }
      let resultType = rewriter.type(op.results[0])
      guard let shape = resultType.staticShape else { rewriter.keep(id); continue }
      var operands: [Tensor] = []
      for v in op.operands {
        guard let value = constantValue(of: v, in: rewriter, limit: limit) else { break }
        operands.append(value)
      }
      guard operands.count == op.operands.count else { rewriter.keep(id); continue }
      guard let count = elementCount(shape), count <= limit else { skippedLarge += 1; rewriter.keep(id); continue }
      guard let value = try? Interpreter.evaluate(op, operands: operands, dtype: resultType.dtype, shape: shape) else {
        rewriter.keep(id)
        continue
      }
      let replacement = rewriter.emitConstant(compact(value), type: resultType, location: op.location)
      rewriter.replace(op.results[0], with: replacement)
      folded += 1
    }
    if skippedLarge > 0 { context.count("constant-fold", "skipped-over-limit", by: skippedLarge) }
    guard folded > 0 else { return false }
    function = rewriter.finish()
    context.count("constant-fold", "folded", by: folded)
    return true
  }

  /// The full value of a constant-defined value (splats materialized), if small enough.
  static func constantValue(of v: ValueID, in rewriter: Rewriter, limit: Int) -> Tensor? {
    guard let op = rewriter.producer(v), op.code == .constant, let value = op.constantValue,
          let shape = rewriter.type(v).staticShape else { return nil }
    if value.shape == shape { return value }
    guard let count = elementCount(shape), count <= limit else { return nil }
    switch value.storage {
    case .floats(let f): return Tensor(unchecked: value.dtype, shape: shape, storage: .floats([Double](repeating: f[0], count: count)))
    case .ints(let i): return Tensor(unchecked: value.dtype, shape: shape, storage: .ints([Int64](repeating: i[0], count: count)))
    }
  }

  /// A tensor whose elements are all bitwise equal becomes a one-element splat.
  static func compact(_ t: Tensor) -> Tensor {
    guard t.count > 1 else { return t.count == 1 ? t.reshaped([]) : t }
    switch t.storage {
    case .floats(let v):
      let first = v[0]
      if v.allSatisfy({ $0.bitPattern == first.bitPattern }) { return Tensor(unchecked: t.dtype, shape: [], storage: .floats([first])) }
    case .ints(let v):
      let first = v[0]
      if v.allSatisfy({ $0 == first }) { return Tensor(unchecked: t.dtype, shape: [], storage: .ints([first])) }
    }
    return t
  }
}
