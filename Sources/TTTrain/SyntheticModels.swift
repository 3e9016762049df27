// SyntheticModels — model texts generated in code, for benchmarks and tests that need a model of
// a given size without a committed file of that size: the deep MLP of W5L (L layers of a
// width x width matmul, bias add and tanh, mean squared error), whose training step has
// thousands of same-shaped parameter updates, so a compiler pass that is quadratic in the
// graph shows in its compile time.

public enum SyntheticModels {
  /// `module @deep_mlp` with `@loss(%x: f32[B, width], %y: f32[B, width]) -> f32[]`: `layers`
  /// layers `h = tanh(h W_i + b_i)` (W_i glorot-uniform, b_i zeros), then mean((h - y)^2).
  public static func deepMLP(layers: Int, width: Int = 64) -> String {
    precondition(layers >= 1 && width >= 1, "a deep MLP needs at least one layer of width 1")
    var lines = ["module @deep_mlp {"]
    for i in 0..<layers {
      lines.append("  param @w\(i) : f32[\(width), \(width)] = glorot_uniform(seed: \(i + 1))")
      lines.append("  param @b\(i) : f32[\(width)] = zeros")
    }
    lines.append("  func @loss(%x: f32[B, \(width)], %y: f32[B, \(width)]) -> f32[] {")
    var previous = "%x"
    for i in 0..<layers {
      lines.append("    %m\(i) = matmul \(previous), @w\(i) : f32[B, \(width)]")
      lines.append("    %a\(i) = add %m\(i), @b\(i) : f32[B, \(width)]")
      lines.append("    %h\(i) = tanh %a\(i) : f32[B, \(width)]")
      previous = "%h\(i)"
    }
    lines.append("    %d = sub \(previous), %y : f32[B, \(width)]")
    lines.append("    %s = mul %d, %d : f32[B, \(width)]")
    lines.append("    %l = reduce_mean %s : f32[]")
    lines.append("    return %l")
    lines.append("  }")
    lines.append("}")
    return lines.joined(separator: "\n") + "\n"
  }
}
