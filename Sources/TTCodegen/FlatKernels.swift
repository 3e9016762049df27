// FlatKernels — one kernel for an elementwise body at every shape. An elementwise body whose
// values all have either the output's shape or a single element computes element i of its output
// from element i of its full-shape operands (and the single elements) whatever that shape is, so
// it is rewritten over a rank-1 symbolic shape `[flat_n]` (single elements become scalars) before
// it is keyed and compiled. The runtime passes n = the output's element count.
//
// Why: a training step updates every parameter with the same optimizer arithmetic; keyed by
// shape, the W4 MLP compiled the Adam update 6 times over (w1, b1, w2, b2, w3, b3: 18 of its
// 37 kernels); flattened, 3 kernels serve every parameter of every model, in this process and
// from the disk cache. The loops are the same (one flat loop vectorizes as well as a nest whose
// inner loop is contiguous), so only compile time changes (W5, IR-specs/codegen.md).

import TTIR

public enum FlatKernels {
  /// The symbol of a flattened body's only dimension.
  public static let symbol = "flat_n"

  /// `body` over `[flat_n]`, or nil if it is not such an elementwise body (a broadcast operand of
  /// another shape, a layout op, a full-shape constant) or is flat already.
  public static func flattened(_ body: Function) -> Function? {
    guard let output = body.resultTypes.first, body.resultTypes.allSatisfy({ $0 == output }),
          output.dims != [.symbol(symbol)] else { return nil }
    guard body.isElementwise else { return nil }
    let full = output.dims
    func isSingle(_ t: TensorType) -> Bool { t.dims.allSatisfy { $0 == .known(1) } }
    func flatType(_ t: TensorType) -> TensorType? {
      if t.dims == full { return TensorType(t.dtype, [.symbol(symbol)]) }
      if isSingle(t) { return TensorType(t.dtype, []) }
      return nil
    }
    var flat = body
    for k in flat.values.indices {
      guard let t = flatType(flat.values[k].type) else { return nil }
      flat.values[k].type = t
    }
    for id in flat.body where flat[id].code == .constant {
      // Only single-element constants survive flatType (a full-shape constant is not flat).
      guard let value = flat[id].constantValue, value.count == 1 else { return nil }
      flat[id].attributes["value"] = .tensor(value.reshaped([]))
    }
    flat.resultTypes = flat.returnValues.map { flat.type(of: $0) }
    return flat
  }
}
