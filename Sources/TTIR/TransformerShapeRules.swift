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

extension ShapeRules {
  /// `%o, %lse = attention %q, %k, %v, %mask, %step {scale, rate, seed, stream}`: q [..., Tq, D],
  /// k [..., Tk, D], v [..., Tk, Dv] with the same batch axes and float type; the additive mask
  /// has q's rank and each axis 1 or that of the scores [..., Tq, Tk]; step an i32/i64 scalar.
  /// Results: o [..., Tq, Dv] and lse [..., Tq], both of q's type.
  static let attention: ShapeRule = { input in
    let (o, lse) = try attentionTypes(input)
    return [o, lse]
  }

  /// `%dq, %dk, %dv = attention_grad %q, %k, %v, %mask, %step, %o, %lse, %do {...}`: o, lse and do
  /// as attention gives them; the results have q's, k's and v's types.
  static let attentionGrad: ShapeRule = { input in
    let (o, lse) = try attentionTypes(input)
    let names = ["o", "lse", "do"]
    for (k, expected) in [o, lse, o].enumerated() where input.operands[5 + k] != expected {
      throw ShapeError("\(names[k]) must be \(expected), got \(input.operands[5 + k])")
    }
    return Array(input.operands[0...2])
  }

  static func attentionTypes(_ input: ShapeRuleInput) throws -> (TensorType, TensorType) {
    let (q, k, v, mask) = (input.operands[0], input.operands[1], input.operands[2], input.operands[3])
    guard q.rank >= 2 else { throw ShapeError("q must have rank 2 or more ([..., Tq, D]), got \(q)") }
    for (name, t) in [("k", k), ("v", v), ("mask", mask)] {
      guard t.dtype == q.dtype else { throw ShapeError("\(name) must have q's element type \(q.dtype), got \(t)") }
      guard t.rank == q.rank else { throw ShapeError("\(name) must have q's rank \(q.rank), got \(t)") }
    }
    let batch = Array(q.dims.dropLast(2))
    guard Array(k.dims.dropLast(2)) == batch, Array(v.dims.dropLast(2)) == batch else {
      throw ShapeError("q, k and v must have the same batch axes, got \(q), \(k) and \(v)")
    }
    let (tq, d, tk) = (q.dims[q.rank - 2], q.dims[q.rank - 1], k.dims[k.rank - 2])
    guard k.dims[k.rank - 1] == d else { throw ShapeError("k's last axis must be q's \(d), got \(k)") }
    guard v.dims[v.rank - 2] == tk else { throw ShapeError("v must have k's \(tk) rows, got \(v)") }
    let scores = batch + [tq, tk]
    for (m, s) in zip(mask.dims, scores) where m != .known(1) && m != s {
      throw ShapeError("the mask \(mask) does not broadcast to the scores \(TensorType(q.dtype, scores))")
    }
    try randomStep(input.operands[4])
    guard let scale = input.attributes.double("scale"), scale.isFinite else { throw ShapeError("scale must be a finite number") }
    let rate = input.attributes.double("rate") ?? 0
    guard rate >= 0, rate < 1 else { throw ShapeError("rate must lie in [0, 1), got \(rate)") }
    return (TensorType(q.dtype, batch + [tq, v.dims[v.rank - 1]]), TensorType(q.dtype, batch + [tq]))
  }
}
