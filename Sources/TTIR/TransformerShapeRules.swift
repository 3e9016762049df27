// TransformerShapeRules — the shape rules of the ops transformers need beyond the core set:
// layer normalization over the last axis and its gradient op (IR-specs/ops/nn.md).

extension ShapeRules {
  /// `%y = layer_norm %x, %scale, %offset {epsilon}`: x [..., D] (rank 1 or more), scale and
  /// offset [D] in x's element type; y has x's type.
  static let layerNorm: ShapeRule = { input in
    let x = input.operands[0]
    _ = try layerNormEpsilon(input.attributes)
    try channelOperands(x, input.operands[1...], names: ["scale", "offset"])
    return [x]
  }

  /// `%dx, %dscale, %doffset = layer_norm_grad %x, %scale, %dy {epsilon}`: dy has x's type; the
  /// results are x's type and [D] twice.
  static let layerNormGrad: ShapeRule = { input in
    let (x, dy) = (input.operands[0], input.operands[2])
    _ = try layerNormEpsilon(input.attributes)
    try channelOperands(x, input.operands[1...1], names: ["scale"])
    guard dy == x else { throw ShapeError("dy must have the input's type \(x), got \(dy)") }
    let channel = TensorType(x.dtype, [x.dims[x.rank - 1]])
    return [x, channel, channel]
  }

  /// layer_norm's epsilon: 1e-5 unless given (PyTorch's default), finite and non-negative.
  public static func layerNormEpsilon(_ attributes: Attributes) throws -> Double {
    let e = attributes.double("epsilon") ?? 1e-5
    guard e.isFinite, e >= 0 else { throw ShapeError("epsilon must be finite and non-negative, got \(e)") }
    return e
  }
}
