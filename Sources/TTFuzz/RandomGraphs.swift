// RandomGraphs — a seeded generator of valid TTIR functions for equivalence testing (passes
// against the interpreter, compiled code against the interpreter). Graphs mix
// elementwise math, broadcasting, reductions, matmuls, layout ops, selects, casts and softmax, use a
// symbolic batch dimension, and plant the patterns the rewrite rules look for (x*1, x+(-0.0),
// neg(neg x), transpose pairs, casts that round-trip, constants with inf, NaN and -0.0, duplicated
// subexpressions) so every pass has something to do. `build(ops:modelLike: true)` leans on the
// structures of real models that plain random graphs rarely form: softmax and normalizations
// followed by reductions over the batch, several reductions over different axes in one region,
// residual chains, calls to helpers with their own symbolic dims, and signed zeros.
import TTIR

public struct GraphRandom: RandomNumberGenerator {
  public var state: UInt64
  public init(state: UInt64) { self.state = state }
  public mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }
  mutating func int(_ range: ClosedRange<Int>) -> Int { Int.random(in: range, using: &self) }
  mutating func chance(_ p: Double) -> Bool { Double.random(in: 0..<1, using: &self) < p }
  mutating func pick<T>(_ items: [T]) -> T { items[int(0...(items.count - 1))] }
}

public struct RandomGraphBuilder {
  var rng: GraphRandom
  var function = Function(name: "main")
  var pool: [ValueID] = []
  /// Helper functions called by @main (each with its own symbols N and D).
  var helpers: [Function] = []
  var modelLike = false
  let dtype: DType
  let staticSizes = [1, 2, 3, 4, 5]

  public init(seed: UInt64) {
    rng = GraphRandom(state: seed)
    dtype = [DType.f32, .f32, .f32, .f64, .f16].randomElement(using: &rng)!
  }

  func type(_ v: ValueID) -> TensorType { function.type(of: v) }

  /// Appends an op whose result type comes from the op's shape rule (or `declared` for ops whose
  /// type is chosen by the writer). Returns nil if the rule rejects the operands.
  mutating func add(_ code: OpCode, _ operands: [ValueID], _ attributes: [String: Attribute] = [:],
                    declared: TensorType? = nil) -> ValueID? {
    let attrs = Attributes(attributes)
    let input = ShapeRuleInput(operands: operands.map(type), attributes: attrs, declared: declared.map { [$0] } ?? [])
    guard let inferred = try? code.info.shapeRule(input), inferred.count == 1 else { return nil }
    if let first = operands.first, !code.info.dtypes.admits(type(first).dtype) { return nil }
    let id = function.append(code, operands, resultTypes: inferred, attributes: attrs)
    let v = function[id].results[0]
    pool.append(v)
    return v
  }

  mutating func constant(_ values: [Double], type: TensorType) -> ValueID {
    let tensor = type.dtype.isFloat
      ? Tensor(type.dtype, shape: values.count == 1 ? [] : type.staticShape!, floats: values)
      : Tensor(type.dtype, shape: values.count == 1 ? [] : type.staticShape!, ints: values.map { Int64($0) })
    let id = function.append(.constant, [], resultTypes: [type], attributes: Attributes(["value": .tensor(tensor)]))
    let v = function[id].results[0]
    pool.append(v)
    return v
  }

  static let specials: [Double] = [0, -0.0, 1, -1, 2, 0.5, 4, 3, .infinity, -.infinity, .nan, 1e-30]

  /// A splat constant, static shape broadcast-compatible with `like` (or a scalar).
  mutating func splatLike(_ like: TensorType, _ value: Double) -> ValueID {
    let dims: [Dim] = rng.chance(0.5) ? [] : like.dims.suffix(rng.int(0...min(1, like.rank))).map { $0.isSymbolic ? .known(1) : $0 }
    return constant([value], type: TensorType(like.dtype, dims))
  }

  mutating func floatValue() -> ValueID {
    let floats = pool.filter { type($0).dtype == dtype }
    return rng.chance(0.6) ? floats.suffix(4).randomElement(using: &rng)! : floats.randomElement(using: &rng)!
  }

  /// `extraResults`: how many more earlier values to return besides the last (and the usual
  /// 40% chance of one more): values that are both returned and read by later ops are what
  /// multi-output fusion merges.
  public mutating func build(ops count: Int, extraResults: Int = 0, modelLike: Bool = false) -> Module {
    self.modelLike = modelLike
    // Arguments: a batch of rows with a symbolic B, a row-shaped vector, sometimes a scalar.
    let width = rng.pick([1, 2, 3, 4, 6])
    pool.append(function.addArgument(name: "x", type: TensorType(dtype, [.symbol("B"), .known(width)])))
    pool.append(function.addArgument(name: "v", type: TensorType(dtype, [.known(width)])))
    if rng.chance(0.5) { pool.append(function.addArgument(name: "s", type: TensorType(dtype, []))) }
    var attempts = 0
    while function.body.count < count && attempts < count * 20 {
      attempts += 1
      step()
    }
    // Return one or two of the later values.
    let candidates = pool.filter { !$0.description.isEmpty }
    var results = [candidates.last!]
    if rng.chance(0.4), let other = candidates.dropLast().randomElement(using: &rng), other != results[0] { results.append(other) }
    for _ in 0..<extraResults {
      if let other = candidates.dropLast().randomElement(using: &rng), !results.contains(other) { results.append(other) }
    }
    function.returnValues = results
    function.resultTypes = results.map(type)
    var module = Module(name: "random")
    module.functions = [function] + helpers
    return module
  }

  mutating func step() {
    if modelLike && rng.chance(0.6) { modelStep(); return }
    let x = floatValue()
    let t = type(x)
    switch rng.int(0...19) {
    case 0, 1:
      _ = add(rng.pick([.neg, .abs, .exp, .tanh, .sigmoid, .relu, .sqrt, .log, .sin, .floor, .sign, .gelu, .erf, .log1p]), [x])
    case 2, 3:
      let y = rng.chance(0.5) ? floatValue() : splatLike(t, rng.pick(Self.specials))
      _ = add(rng.pick([.add, .sub, .mul, .div, .max, .min, .pow]), rng.chance(0.8) ? [x, y] : [y, x])
    case 4:
      // Rule bait: identities with special constants.
      let (code, c): (OpCode, Double) = rng.pick([(.mul, 1), (.add, -0.0), (.add, 0), (.sub, 0), (.div, 1), (.mul, 2),
                                                  (.mul, -1), (.div, 4), (.div, -1), (.pow, 1), (.pow, 2), (.mul, 0), (.div, 3)])
      let k = splatLike(t, c)
      _ = add(code, rng.chance(0.85) ? [x, k] : [k, x])
    case 5:
      if let n = add(rng.pick([.neg, .abs, .relu]), [x]) { _ = add(rng.pick([.neg, .abs, .relu]), [n]) }
    case 6:
      if t.rank >= 1 {
        let axes = (0..<t.rank).filter { _ in rng.chance(0.5) }
        _ = add(rng.pick([.reduceSum, .reduceMean, .reduceMax, .reduceMin, .reduceProd]), [x],
                ["axes": .ints(axes.map { Int64($0) }), "keepdims": .bool(rng.chance(0.3))])
      }
    case 7:
      if t.rank >= 1, case .known(let k) = t.dims[t.rank - 1] {
        let n = rng.pick(staticSizes)
        let w = constant((0..<(k * n)).map { _ in Double(rng.int(-4...4)) / 4 }, type: TensorType(dtype, shape: [k, n]))
        if t.rank == 1, let r = add(.reshape, [x], declared: TensorType(dtype, shape: [1, k])) { _ = add(.matmul, [r, w]) }
        else { _ = add(.matmul, [x, w], rng.chance(0.3) ? ["transpose_b": .bool(false)] : [:]) }
      }
    case 8:
      if t.rank >= 2 {
        let perm = Array(0..<t.rank).shuffled(using: &rng)
        if let y = add(.transpose, [x], ["perm": .ints(perm.map { Int64($0) })]), rng.chance(0.6) {
          let back = (0..<t.rank).map { i in perm.firstIndex(of: i)! }
          _ = add(.transpose, [y], ["perm": .ints(back.map { Int64($0) })])
        }
      }
    case 9:
      // reshape: same type (a no-op), or flatten the trailing static dims.
      if rng.chance(0.4) { _ = add(.reshape, [x], declared: t) }
      else if t.rank >= 2, let a = t.dims[t.rank - 2].staticSize, let b = t.dims[t.rank - 1].staticSize {
        if let r = add(.reshape, [x], declared: TensorType(dtype, Array(t.dims.dropLast(2)) + [.known(a * b)])) {
          _ = add(.reshape, [r], declared: t)
        }
      }
    case 10:
      if t.rank <= 2 {
        let target = TensorType(dtype, [.known(rng.pick([1, 2, 3]))] + t.dims)
        if let b = add(.broadcastTo, [x], declared: target) { _ = add(rng.pick([.add, .mul]), [b, floatValue()]) }
      }
    case 11:
      let y = rng.chance(0.5) ? floatValue() : splatLike(t, rng.pick(Self.specials))
      if let c = add(rng.pick([.lt, .le, .gt, .ge, .eq, .ne]), [x, y]) {
        if type(c).dims == t.dims { _ = add(.select, [c, x, rng.chance(0.3) ? x : splatLike(t, 0) ]) }
        else { _ = add(.where, [c, x, y]) }
      }
    case 12:
      let wide: DType = dtype == .f64 ? .f64 : .f64
      if let up = add(.cast, [x], declared: t.with(dtype: wide)) { _ = add(.cast, [up], declared: t) }
    case 13:
      if t.rank >= 1 { _ = add(rng.pick([.softmax, .logSoftmax]), [x], rng.chance(0.5) ? [:] : ["axis": .int(Int64(rng.int(0...(t.rank - 1))))]) }
    case 14:
      // A duplicated subexpression for CSE.
      let y = floatValue()
      let code = rng.pick([OpCode.add, .mul, .max])
      if let a = add(code, [x, y]), let b = add(code, rng.chance(0.5) ? [y, x] : [x, y]) { _ = add(.sub, [a, b]) }
    case 15:
      // An all-constant subexpression for folding.
      let c1 = constant([Double(rng.int(-3...3))], type: TensorType(dtype, shape: [2]))
      let c2 = constant([1.5, -0.5], type: TensorType(dtype, shape: [2]))
      if let f = add(rng.pick([.add, .mul, .max]), [c1, c2]), let g = add(.exp, [f]) {
        if t.rank >= 1, t.dims.last == .known(2) { _ = add(.add, [x, g]) }
      }
    case 16:
      if t.rank >= 1, let n = t.dims[t.rank - 1].staticSize, n >= 2 {
        _ = add(.slice, [x], ["axes": .ints([Int64(t.rank - 1)]), "starts": .ints([1]), "limits": .ints([Int64(n)])])
      }
    case 17:
      if t.rank >= 1, t.dims[t.rank - 1].staticSize != nil { _ = add(.concat, [x, x], ["axis": .int(Int64(t.rank - 1))]) }
    case 18:
      if t.rank >= 1, let n = t.dims[t.rank - 1].staticSize, n >= 1 {
        let lows = (0..<t.rank).map { $0 == t.rank - 1 ? Int64(rng.int(0...1)) : 0 }
        _ = add(.pad, [x], ["low": .ints(lows), "high": .ints(lows.map { _ in 0 }), "value": .float(rng.pick([0, -0.0, 1]))])
      }
    default:
      _ = add(rng.pick([.sigmoid, .tanh, .relu]), [x])
    }
  }

  // MARK: real-model structures

  /// A value of rank 2 with the batch first (the argument x if nothing newer qualifies).
  mutating func batchValue() -> ValueID {
    let rows = pool.filter { type($0).dtype == dtype && type($0).rank == 2 && type($0).dims[0] == .symbol("B") }
    return rng.chance(0.6) ? rows.suffix(3).randomElement(using: &rng)! : rows.randomElement(using: &rng)!
  }

  static let batchReductions: [OpCode] = [.reduceSum, .reduceMean, .reduceMax, .reduceMin]

  mutating func lastAxis(_ t: TensorType, keep: Bool = true) -> [String: Attribute] {
    ["axes": .ints([Int64(t.rank - 1)]), "keepdims": .bool(keep)]
  }

  /// A row normalization of `x` [B, w] or [N, D]: softmax (as an op or spelled out with or
  /// without the max shift), log-softmax, layer norm or centering.
  mutating func rowNormalization(_ x: ValueID) -> ValueID? {
    let t = type(x)
    switch rng.int(0...5) {
    case 0: return add(rng.pick([.softmax, .logSoftmax]), [x])
    case 1:
      guard let m = add(.reduceMax, [x], lastAxis(t)), let d = add(.sub, [x, m]), let e = add(.exp, [d]),
            let s = add(.reduceSum, [e], lastAxis(t)) else { return nil }
      return add(.div, [e, s])
    case 2:
      // Unshifted: exp (or tanh) feeding a last-axis sum and then the elementwise rest.
      guard let e = add(rng.pick([.exp, .tanh]), [x]), let s = add(.reduceSum, [e], lastAxis(t)) else { return nil }
      return add(rng.pick([.sub, .div, .mul]), [e, s])
    case 3:
      guard let mu = add(.reduceMean, [x], lastAxis(t)), let d = add(.sub, [x, mu]), let sq = add(.mul, [d, d]),
            let v = add(.reduceMean, [sq], lastAxis(t)), let ve = add(.add, [v, constant([1e-5], type: TensorType(t.dtype, []))]),
            let r = add(.rsqrt, [ve]) else { return nil }
      return add(.mul, [d, r])
    case 4:
      guard let mu = add(.reduceMean, [x], lastAxis(t)) else { return nil }
      return add(.sub, [x, mu])
    default:
      guard let e = add(.exp, [x]), let s = add(.reduceSum, [e], lastAxis(t, keep: false)),
            let r = add(.reshape, [s], declared: t.with(dims: [t.dims[0], .known(1)])) else { return nil }
      return add(.div, [e, r])
    }
  }

  mutating func modelStep() {
    let x = batchValue()
    let t = type(x)
    switch rng.int(0...6) {
    case 0, 1:
      // Normalize each row, then a statistic over the batch combined with the rows (attention
      // probabilities' column sums, batch-norm statistics after a softmax, calibration).
      guard let y = rowNormalization(x) else { return }
      let keep = rng.chance(0.6)
      guard let c = add(rng.pick(Self.batchReductions), [y], ["axes": .ints([0]), "keepdims": .bool(keep)]) else { return }
      _ = add(rng.pick([.sub, .mul, .add, .div]), rng.chance(0.8) ? [y, c] : [c, y])
    case 2:
      // Several reductions over different axes in one region.
      guard let a = add(rng.pick(Self.batchReductions), [x], ["axes": .ints([0]), "keepdims": .bool(true)]),
            let b = add(rng.pick(Self.batchReductions), [x], lastAxis(t)),
            let d = add(.sub, [x, a]) else { return }
      _ = add(rng.pick([.add, .mul, .sub]), [d, b])
    case 3:
      // A residual step: h + f(h), f expensive, h read twice.
      guard let f = add(rng.pick([.tanh, .exp, .sigmoid, .gelu]), [x]) else { return }
      _ = add(.add, [f, x])
    case 4:
      // A call to a helper with its own symbols.
      let name = helper()
      let id = function.append(.call, [x], resultTypes: [t], callee: name)
      pool.append(function[id].results[0])
    case 5:
      // Negative zeros: a product with -0.0 summed over the batch (the sign of a sum of zeros).
      let z = splatLike(t, -0.0)
      guard let m = add(.mul, [rng.chance(0.5) ? x : pool.filter { type($0) == t }.last!, z]) else { return }
      let reduced = rng.chance(0.5) ? add(rng.pick(Self.batchReductions), [m], ["axes": .ints([0]), "keepdims": .bool(rng.chance(0.5))]) : m
      if let r = reduced { _ = add(rng.pick([.tanh, .neg, .sin, .relu, .abs, .sqrt]), [r]) }
    default:
      // A normalization whose result is reduced over everything (a scalar loss).
      guard let y = rowNormalization(x) else { return }
      _ = add(rng.pick(Self.batchReductions), [y], [:])
    }
  }

  /// The name of a helper function over [N, D] (a row normalization plus a residual), made on
  /// first use: its own symbols, bound at each call to the caller's dims.
  mutating func helper() -> String {
    if let existing = helpers.first, rng.chance(0.5) { return existing.name }
    let name = "helper\(helpers.count)"
    var saved = Function(name: name)
    let argument = saved.addArgument(name: "h", type: TensorType(dtype, [.symbol("N"), .symbol("D")]))
    // Build the body with this builder's machinery on a fresh function and pool.
    swap(&saved, &function)
    let savedPool = pool
    pool = [argument]
    var result = rowNormalization(argument) ?? argument
    if rng.chance(0.5), let r = add(.add, [result, argument]) { result = r }
    if result == argument, let r = add(.tanh, [argument]) { result = r }
    function.returnValues = [result]
    function.resultTypes = [type(result)]
    swap(&saved, &function)
    pool = savedPool
    helpers.append(saved)
    return name
  }
}
