// TensorSummary — a one-line description of a tensor for people: type, a few statistics, and the
// first elements (or all of them on request). Used by `ttfc run` and the demo.
import Foundation
import TTIR

/// One-line descriptions of tensors for people: type, statistics and the first elements.
public enum TensorSummary {
  public static func describe(_ t: Tensor, full: Bool = false) -> String {
    var text = t.type.description
    if t.count > 1, t.dtype != .i1 {
      let v = t.doubles
      let finite = v.filter { $0.isFinite }
      if !finite.isEmpty {
        let mean = finite.reduce(0, +) / Double(finite.count)
        text += " min=\(short(finite.min()!)) max=\(short(finite.max()!)) mean=\(short(mean))"
      }
      let nonFinite = v.count - finite.count
      if nonFinite > 0 { text += " non-finite=\(nonFinite)" }
    }
    text += " " + TensorLiteral.format(t, limit: full ? nil : 6)
    return text
  }

  static func short(_ x: Double) -> String {
    let magnitude = Swift.abs(x)
    if magnitude != 0 && (magnitude < 1e-3 || magnitude >= 1e6) { return String(format: "%.4e", x) }
    return String(format: "%.5g", x)
  }
}
