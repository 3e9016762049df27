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

extension ShapeRules {
  /// The step operand of the random ops: an i32 or i64 scalar.
  static func randomStep(_ step: TensorType) throws {
    guard step.rank == 0, step.dtype == .i32 || step.dtype == .i64 else {
      throw ShapeError("the step must be an i32 or i64 scalar, got \(step)")
    }
  }

  /// `%bits = random_bits %step {seed, stream} : T` — T is declared, i32 or i64.
  static let randomBits: ShapeRule = { input in
    try randomStep(input.operands[0])
    let type = try declared(input)
    guard type.dtype == .i32 || type.dtype == .i64 else { throw ShapeError("random bits are i32 or i64, got \(type.dtype)") }
    return [type]
  }

  /// `%y = dropout %x, %step {rate, seed, stream} : T` — x's type; rate in [0, 1).
  static let dropout: ShapeRule = { input in
    try randomStep(input.operands[1])
    let rate = input.attributes.double("rate") ?? 0
    guard rate >= 0, rate < 1 else { throw ShapeError("rate must lie in [0, 1), got \(rate)") }
    return [input.operands[0]]
  }
}

extension ShapeRules {
  /// `%m = sequence_mask %lengths {masked_value} : T` — lengths i32/i64 [B]; T declared, [B, S]
  /// or [B, 1, 1, S] (the shape attention scores [B, heads, S, S] broadcast against), i1 or float.
  static let sequenceMask: ShapeRule = { input in
    let lengths = input.operands[0]
    guard lengths.rank == 1, lengths.dtype == .i32 || lengths.dtype == .i64 else {
      throw ShapeError("lengths must be i32 or i64 of shape [B], got \(lengths)")
    }
    let type = try declared(input)
    guard type.dtype == .i1 || type.dtype.isFloat else { throw ShapeError("the mask is i1 or a float type, got \(type.dtype)") }
    let middle = type.rank == 4 ? Array(type.dims[1...2]) : []
    guard type.rank == 2 || type.rank == 4, type.dims[0] == lengths.dims[0], middle.allSatisfy({ $0 == .known(1) }) else {
      throw ShapeError("the mask must be [\(lengths.dims[0]), S] or [\(lengths.dims[0]), 1, 1, S], got \(type)")
    }
    if let v = input.attributes.double("masked_value"), v.isNaN { throw ShapeError("masked_value must not be NaN") }
    return [type]
  }
}
