// The algebraic simplification rules, the algebra in the comment above each.
// Default rules are exact under IEEE 754 for every input, NaN, ±inf and -0.0 included (the
// random-graph tests check that -O2 output is bitwise identical to the input program). Rules that
// are only valid when those corner cases may be ignored are marked `fastMath: true`; the comment
// says which input breaks them. To add a rule: write one SimplifyRule here, add a case where it
// fires and a near miss where it must not to Passes/simplify/, marked `// rule: NAME (fires)` and
// `// rule: NAME (must not fire)` (TTPassesTests fails without both), and run tools/test.

import TTIR

enum SimplifyRules {
  /// Whether every value of `narrow` is exactly representable in `wide` (cast there and back is
  /// the identity).
  static func widens(_ narrow: DType, to wide: DType) -> Bool {
    switch (narrow, wide) {
    case (.f16, .f32), (.f16, .f64), (.bf16, .f32), (.bf16, .f64), (.f32, .f64): return true
    case (.i1, .i8), (.i1, .i32), (.i1, .i64), (.i8, .i32), (.i8, .i64), (.i32, .i64): return true
    case (.i1, .f16), (.i1, .bf16), (.i1, .f32), (.i1, .f64), (.i8, .f16), (.i8, .f32), (.i8, .f64), (.i32, .f64): return true
    default: return false
    }
  }

  /// 1/c when it is exact: c = ±2^k and 2^-k is representable (normal or subnormal) in `dtype`.
  static func exactReciprocal(_ c: Double, _ dtype: DType) -> Double? {
    guard c.isFinite, c != 0, c.significandBitPattern == 0 else { return nil }
    let r = 1 / c
    return roundToFloat(r, dtype) == r ? r : nil
  }

  /// The commutative ops (OpInfo.isCommutative, the one place that says so).
  static let commutative: [OpCode] = OpCode.allCases.filter { $0.info.isCommutative }

  static let all: [SimplifyRule] = [
    // op(c, x) -> op(x, c) for commutative ops: constants go right, so each rule below is written once.
    SimplifyRule("constant-to-right", commutative) { r in
      r.isConstant(r.lhs) && !r.isConstant(r.rhs) ? r.emit(r.op.code, [r.rhs, r.lhs], attributes: r.op.attributes) : nil },

    // x + (-0.0) = x for every float x (-0.0 is IEEE's additive identity); x + 0 = x for integers.
    SimplifyRule("add-zero", [.add]) { r in
      (r.isFloat ? r.isSplat(r.rhs, -0.0) : r.isSplat(r.rhs, 0)) ? r.fit(r.lhs) : nil },
    // x + (+0.0) = x except x = -0.0 (gives +0.0): fast-math.
    SimplifyRule("add-positive-zero", [.add], fastMath: true) { r in r.isSplat(r.rhs, 0) ? r.fit(r.lhs) : nil },
    // x - 0 = x (also for x = -0.0: -0.0 - 0.0 = -0.0).
    SimplifyRule("sub-zero", [.sub]) { r in r.isSplat(r.rhs, 0) ? r.fit(r.lhs) : nil },
    // x * 1 = x, x / 1 = x, pow(x, 1) = x: exact, NaN and -0.0 included.
    SimplifyRule("mul-one", [.mul]) { r in r.isSplat(r.rhs, 1) ? r.fit(r.lhs) : nil },
    SimplifyRule("div-one", [.div]) { r in r.isSplat(r.rhs, 1) ? r.fit(r.lhs) : nil },
    SimplifyRule("pow-one", [.pow]) { r in r.isSplat(r.rhs, 1) ? r.fit(r.lhs) : nil },
    // x * 0 = 0 for integers; for floats NaN*0, inf*0 and -x*0 break it: fast-math.
    SimplifyRule("mul-zero-integer", [.mul]) { r in !r.isFloat && r.isSplat(r.rhs, 0) && r.type(r.rhs) == r.resultType ? r.rhs : nil },
    SimplifyRule("mul-zero", [.mul], fastMath: true) { r in r.isSplat(r.rhs, 0) ? r.fit(r.rhs) : nil },
    // x * 2 = x + x exactly (one rounding either way; inf, NaN and -0.0 agree). Adds are cheaper.
    SimplifyRule("mul-two-to-add", [.mul]) { r in
      r.isSplat(r.rhs, 2) && r.type(r.lhs) == r.resultType ? r.emit(.add, [r.lhs, r.lhs]) : nil },
    // x * -1 = -x and x / -1 = -x (exact; integers: MIN * -1 = MIN = -MIN).
    SimplifyRule("mul-minus-one", [.mul]) { r in
      r.isSplat(r.rhs, -1) ? r.fit(r.lhs).map { v in r.emit(.neg, [v]) } : nil },
    SimplifyRule("div-minus-one", [.div]) { r in
      r.isSplat(r.rhs, -1) ? r.fit(r.lhs).map { v in r.emit(.neg, [v]) } : nil },
    // x / c = x * (1/c) when 1/c is exact (c = ±2^k): multiplication is cheaper than division.
    SimplifyRule("div-by-power-of-two", [.div]) { r in
      guard r.isFloat, let c = r.splat(r.rhs), let inverse = exactReciprocal(c, r.resultType.dtype) else { return nil }
      return r.emit(.mul, [r.lhs, r.constant(inverse, type: r.type(r.rhs))]) },
    // x / c = x * (1/c) for any constant c: 1/c is rounded, so results may differ by an ulp: fast-math.
    SimplifyRule("div-by-constant", [.div], fastMath: true) { r in
      guard r.isFloat, let c = r.splat(r.rhs), c != 0 else { return nil }
      return r.emit(.mul, [r.lhs, r.constant(1 / c, type: r.type(r.rhs))]) },
    // -(-x) = x; not(not x) = x.
    SimplifyRule("neg-neg", [.neg]) { r in r.producer(r.lhs, is: .neg)?.operands[0] },
    SimplifyRule("not-not", [.not]) { r in r.producer(r.lhs, is: .not)?.operands[0] },
    // x - (-y) = x + y and x + (-y) = x - y, exactly (negation is exact).
    SimplifyRule("sub-neg", [.sub]) { r in r.producer(r.rhs, is: .neg).map { n in r.emit(.add, [r.lhs, n.operands[0]]) } },
    SimplifyRule("add-neg", [.add]) { r in r.producer(r.rhs, is: .neg).map { n in r.emit(.sub, [r.lhs, n.operands[0]]) } },
    // (-0.0) - x = -x exactly for floats (0 - x is not: 0 - 0 = +0 but -0 = -0); 0 - x = -x for integers.
    SimplifyRule("zero-minus", [.sub]) { r in
      (r.isFloat ? r.isSplat(r.lhs, -0.0) : r.isSplat(r.lhs, 0)) && r.type(r.rhs) == r.resultType ? r.emit(.neg, [r.rhs]) : nil },
    // (-x) * (-y) = x * y: the signs cancel exactly.
    SimplifyRule("neg-times-neg", [.mul]) { r in
      guard let a = r.producer(r.lhs, is: .neg), let b = r.producer(r.rhs, is: .neg) else { return nil }
      return r.emit(.mul, [a.operands[0], b.operands[0]]) },
    // |−x| = |x|, ||x|| = |x|, relu(relu x) = relu x.
    SimplifyRule("abs-of-neg", [.abs]) { r in r.producer(r.lhs, is: .neg).map { n in r.emit(.abs, [n.operands[0]]) } },
    SimplifyRule("abs-abs", [.abs]) { r in r.producer(r.lhs, is: .abs) != nil ? r.lhs : nil },
    SimplifyRule("relu-relu", [.relu]) { r in r.producer(r.lhs, is: .relu) != nil ? r.lhs : nil },
    // max(x, x) = min(x, x) = x; and(x, x) = or(x, x) = x (NaN included).
    SimplifyRule("idempotent-same-operand", [.max, .min, .and, .or]) { r in r.lhs == r.rhs ? r.lhs : nil },
    // x - x = 0 for integers; for floats inf - inf and NaN break it: fast-math.
    SimplifyRule("sub-self-integer", [.sub]) { r in !r.isFloat && r.lhs == r.rhs ? r.constant(0) : nil },
    SimplifyRule("sub-self", [.sub], fastMath: true) { r in r.lhs == r.rhs ? r.constant(0) : nil },
    // x == x is true for integers; NaN != NaN for floats, so never for them.
    SimplifyRule("compare-self-integer", [.eq, .le, .ge]) { r in
      r.type(r.lhs).dtype.isInteger && r.lhs == r.rhs ? r.constant(1) : nil },
    // log(exp x) = x breaks for x > 88 (exp overflows to inf) in f32: fast-math. exp(log x) = x breaks for x < 0.
    SimplifyRule("log-of-exp", [.log], fastMath: true) { r in r.producer(r.lhs, is: .exp)?.operands[0] },
    SimplifyRule("exp-of-log", [.exp], fastMath: true) { r in r.producer(r.lhs, is: .log)?.operands[0] },
    // pow(x, 2) = x * x: for 16- and 32-bit floats both are the correctly rounded square (x*x is
    // exact in binary64). For f64 the library pow may differ by an ulp: left alone.
    SimplifyRule("pow-two", [.pow]) { r in
      r.resultType.dtype != .f64 && r.isSplat(r.rhs, 2) && r.type(r.lhs) == r.resultType ? r.emit(.mul, [r.lhs, r.lhs]) : nil },
    // transpose with the identity permutation is x; transpose(transpose(x, p), q) = transpose(x, p∘q).
    SimplifyRule("transpose-identity", [.transpose]) { r in
      r.op.attributes.ints("perm") == Array(0..<r.resultType.rank) ? r.lhs : nil },
    SimplifyRule("transpose-transpose", [.transpose]) { r in
      guard let inner = r.producer(r.lhs, is: .transpose), let p = inner.attributes.ints("perm"),
            let q = r.op.attributes.ints("perm") else { return nil }
      let composed = q.map { p[$0] }
      if composed == Array(0..<composed.count) { return inner.operands[0] }
      var attributes = Attributes()
      attributes["perm"] = .ints(composed.map { Int64($0) })
      return r.emit(.transpose, [inner.operands[0]], attributes: attributes) },
    // reshape to the same type is x; reshape(reshape x) = reshape x (row-major order is kept).
    SimplifyRule("reshape-noop", [.reshape]) { r in r.type(r.lhs) == r.resultType ? r.lhs : nil },
    SimplifyRule("reshape-reshape", [.reshape]) { r in
      r.producer(r.lhs, is: .reshape).map { inner in r.emit(.reshape, [inner.operands[0]]) } },
    // broadcast_to the same type is x; broadcast_to(broadcast_to x) = broadcast_to x.
    SimplifyRule("broadcast-noop", [.broadcastTo]) { r in r.type(r.lhs) == r.resultType ? r.lhs : nil },
    SimplifyRule("broadcast-broadcast", [.broadcastTo]) { r in
      r.producer(r.lhs, is: .broadcastTo).map { inner in r.emit(.broadcastTo, [inner.operands[0]]) } },
    // op(x, broadcast_to(y)) = op(x, y) when implicit numpy broadcasting gives the same result
    // type: a binary op broadcasts by itself, so the explicit broadcast only costs memory.
    SimplifyRule("implicit-broadcast", [.add, .sub, .mul, .div, .pow, .max, .min, .and, .or]) { r in
      for (i, v) in r.op.operands.enumerated() {
        guard let b = r.producer(v, is: .broadcastTo) else { continue }
        var operands = r.op.operands
        operands[i] = b.operands[0]
        let dims = try? ShapeRules.broadcast(r.type(operands[0]).dims, r.type(operands[1]).dims)
        if dims == r.resultType.dims { return r.emit(r.op.code, operands, attributes: r.op.attributes) }
      }
      return nil },
    // A reduction over axes of static size 1 combines one element: it is a reshape (the reference
    // reduction starts from the first element, so even -0.0 is unchanged; mean divides by 1).
    SimplifyRule("reduce-over-size-one", [.reduceSum, .reduceMean, .reduceMax, .reduceMin, .reduceProd]) { r in
      let x = r.type(r.lhs)
      guard let axes = try? ShapeRules.reductionAxes(r.op.attributes, rank: x.rank), !axes.isEmpty,
            axes.allSatisfy({ x.dims[$0] == .known(1) }) else { return nil }
      return r.emit(.reshape, [r.lhs]) },
    // slice of everything with stride 1, concat of one operand, pad by zero: all are x.
    SimplifyRule("slice-everything", [.slice]) { r in r.type(r.lhs) == r.resultType && (r.op.attributes.ints("strides") ?? []).allSatisfy { $0 == 1 } ? r.lhs : nil },
    SimplifyRule("concat-single", [.concat]) { r in r.op.operands.count == 1 ? r.lhs : nil },
    SimplifyRule("pad-nothing", [.pad]) { r in r.type(r.lhs) == r.resultType ? r.lhs : nil },
    // select(true, a, b) = a and select(false, a, b) = b (also for where, after broadcasting).
    SimplifyRule("select-constant-condition", [.select, .where]) { r in
      guard let c = r.splat(r.operand(0)) else { return nil }
      return r.fit(c != 0 ? r.operand(1) : r.operand(2)) },
    // select(c, a, a) = a.
    SimplifyRule("select-same-branches", [.select, .where]) { r in r.operand(1) == r.operand(2) ? r.fit(r.operand(1)) : nil },
    // A matmul over a contracted size of 1 is an outer product: C[..., i, j] = 0 + A[..., i, 0] *
    // B[..., 0, j], one product added to the sum's +0.0 start (the reference sums in binary64 and
    // rounds once). For f64 and integers add(mul(A as [..., M, 1], B as [..., 1, N]), +0.0) is
    // bit-identical: the +0.0 turns a product of -0.0 into +0.0, as the sum does. For f32 the
    // product is formed in f64, where it is exact (it neither rounds nor underflows), so a tiny
    // negative product rounds to -0.0 once, as in the reference, instead of becoming -0.0 in f32
    // and then +0.0; the result is cast back to f32. f16 and bf16 (summed through f32) keep their
    // matmul. Batch axes broadcast the numpy way in both ops. As elementwise ops the outer product
    // fuses into its consumers instead of writing an [..., M, N] product through the GEMM (the W4
    // backward pass: d(h3)/d(r2) = dz x w3^T; W6s: d(h)/d(s) over [B, T, 1] x [1, 128]).
    SimplifyRule("matmul-outer-product", [.matmul]) { r in
      let a = r.type(r.lhs), b = r.type(r.rhs)
      guard a.rank >= 2, b.rank >= 2, r.resultType.rank == max(a.rank, b.rank) else { return nil }
      let dtype = r.resultType.dtype
      guard dtype != .f16, dtype != .bf16 else { return nil }
      let transposeA = r.op.attributes.bool("transpose_a") ?? false, transposeB = r.op.attributes.bool("transpose_b") ?? false
      let aContracted = transposeA ? a.rank - 2 : a.rank - 1, bContracted = transposeB ? b.rank - 1 : b.rank - 2
      guard a.dims[aContracted] == .known(1), b.dims[bContracted] == .known(1) else { return nil }
      let rank = r.resultType.rank
      let column = TensorType(a.dtype, Array(a.dims.dropLast(2)) + [r.resultType.dims[rank - 2], .known(1)])
      let row = TensorType(b.dtype, Array(b.dims.dropLast(2)) + [.known(1), r.resultType.dims[rank - 1]])
      var lhs = a == column ? r.lhs : r.emit(.reshape, [r.lhs], type: column)
      var rhs = b == row ? r.rhs : r.emit(.reshape, [r.rhs], type: row)
      guard r.isFloat else { return r.emit(.mul, [lhs, rhs]) }
      let wide = dtype == .f32
      if wide {
        lhs = r.emit(.cast, [lhs], type: column.with(dtype: .f64))
        rhs = r.emit(.cast, [rhs], type: row.with(dtype: .f64))
      }
      let sumType = r.resultType.with(dtype: .f64)
      let product = wide ? r.emit(.mul, [lhs, rhs], type: sumType) : r.emit(.mul, [lhs, rhs])
      let sum = wide ? r.emit(.add, [product, r.constant(0, type: TensorType(.f64, []))], type: sumType)
                     : r.emit(.add, [product, r.constant(0, type: TensorType(dtype, []))])
      return wide ? r.emit(.cast, [sum]) : sum },
    // cast to the same type is x; cast(cast(x: T -> W) -> T) = x when W holds every value of T.
    SimplifyRule("cast-noop", [.cast]) { r in r.type(r.lhs) == r.resultType ? r.lhs : nil },
    SimplifyRule("cast-round-trip", [.cast]) { r in
      guard let inner = r.producer(r.lhs, is: .cast) else { return nil }
      let original = inner.operands[0]
      return r.type(original) == r.resultType && widens(r.resultType.dtype, to: r.type(r.lhs).dtype) ? original : nil },
  ]
}
