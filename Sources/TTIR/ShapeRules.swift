// ShapeRules — the result-type rule of every op. A rule sees the operand types, the attributes and
// the result types the IR declared, and returns the result types the op really has; the verifier
// then demands declared == inferred. Ops whose result shape is chosen by the writer (reshape,
// broadcast_to, cast, iota, constant) validate the declared type and return it.
// Symbolic dims: equal only when they are the same symbol; numpy broadcasting lets a static 1
// stretch to anything, but never unifies a symbol with a number or with another symbol.

/// What an op's shape rule sees: operand types, attributes, the declared result types, and for
/// `call` and `fusion` the callee's signature or the body.
public struct ShapeRuleInput {
  public var operands: [TensorType]
  public var attributes: Attributes
  public var declared: [TensorType]
  /// Signature lookup for `call`: (argument types, result types) of a function.
  public var callee: String?
  public var signature: (String) -> (arguments: [TensorType], results: [TensorType])?
  /// The body of a fusion op.
  public var body: Function?

  public init(operands: [TensorType], attributes: Attributes, declared: [TensorType], callee: String? = nil,
              signature: @escaping (String) -> (arguments: [TensorType], results: [TensorType])? = { _ in nil },
              body: Function? = nil) {
    self.operands = operands; self.attributes = attributes; self.declared = declared
    self.callee = callee; self.signature = signature; self.body = body
  }
}

public struct ShapeError: Error, CustomStringConvertible {
  public var message: String
  public init(_ message: String) { self.message = message }
  public var description: String { message }
}

/// An op's shape rule: the result types for the given operands and attributes, or a
/// ``ShapeError`` naming the mismatch.
public typealias ShapeRule = @Sendable (ShapeRuleInput) throws -> [TensorType]

public enum ShapeRules {
  // MARK: helpers

  /// numpy broadcasting of two dim lists (right-aligned).
  public static func broadcast(_ a: [Dim], _ b: [Dim]) throws -> [Dim] {
    let rank = Swift.max(a.count, b.count)
    var out: [Dim] = []
    out.reserveCapacity(rank)
    for i in 0..<rank {
      let da = i < rank - a.count ? Dim.known(1) : a[i - (rank - a.count)]
      let db = i < rank - b.count ? Dim.known(1) : b[i - (rank - b.count)]
      if da == db { out.append(da) }
      else if da == .known(1) { out.append(db) }
      else if db == .known(1) { out.append(da) }
      else {
        throw ShapeError("operand shapes [\(a.map(\.description).joined(separator: ", "))] and "
                         + "[\(b.map(\.description).joined(separator: ", "))] do not broadcast (\(da) vs \(db))")
      }
    }
    return out
  }

  /// Normalizes a possibly negative axis into 0..<rank.
  public static func axis(_ axis: Int, rank: Int, name: String = "axis") throws -> Int {
    guard axis >= -rank && axis < rank else {
      throw ShapeError("\(name) \(axis) is out of range for rank \(rank)")
    }
    return axis < 0 ? axis + rank : axis
  }

  static func sameDType(_ types: [TensorType]) throws {
    guard let first = types.first else { return }
    for t in types.dropFirst() where t.dtype != first.dtype {
      throw ShapeError("operand element types differ: \(first.dtype) vs \(t.dtype)")
    }
  }

  static func declared(_ input: ShapeRuleInput) throws -> TensorType {
    guard input.declared.count == 1 else { throw ShapeError("expects exactly one result type") }
    return input.declared[0]
  }

  // MARK: rules

  static let constant: ShapeRule = { input in
    let type = try declared(input)
    guard type.isStatic else { throw ShapeError("a constant must have a static shape, got \(type)") }
    return [type]
  }

  static let iota: ShapeRule = { input in
    let type = try declared(input)
    _ = try axis(input.attributes.int("dim") ?? 0, rank: type.rank, name: "dim")
    return [type]
  }

  static let unary: ShapeRule = { input in [input.operands[0]] }

  static let binary: ShapeRule = { input in
    try sameDType(input.operands)
    return [TensorType(input.operands[0].dtype, try broadcast(input.operands[0].dims, input.operands[1].dims))]
  }

  static let compare: ShapeRule = { input in
    try sameDType(input.operands)
    return [TensorType(.i1, try broadcast(input.operands[0].dims, input.operands[1].dims))]
  }

  static let select: ShapeRule = { input in
    let (cond, a, b) = (input.operands[0], input.operands[1], input.operands[2])
    guard cond.dtype == .i1 else { throw ShapeError("condition must be i1, got \(cond.dtype)") }
    guard a == b else { throw ShapeError("both branches must have the same type, got \(a) and \(b)") }
    guard cond.rank == 0 || cond.dims == a.dims else {
      throw ShapeError("condition must be a scalar or have the branches' shape, got \(cond) for \(a)")
    }
    return [a]
  }

  static let whereRule: ShapeRule = { input in
    let (cond, a, b) = (input.operands[0], input.operands[1], input.operands[2])
    guard cond.dtype == .i1 else { throw ShapeError("condition must be i1, got \(cond.dtype)") }
    try sameDType([a, b])
    return [TensorType(a.dtype, try broadcast(cond.dims, try broadcast(a.dims, b.dims)))]
  }

  static let cast: ShapeRule = { input in
    let type = try declared(input)
    guard type.dims == input.operands[0].dims else {
      throw ShapeError("cast changes only the element type; shape \(type) differs from \(input.operands[0])")
    }
    return [type]
  }

  /// Normalized, sorted, duplicate-free reduction axes (all axes when `axes` is absent).
  public static func reductionAxes(_ attributes: Attributes, rank: Int) throws -> [Int] {
    guard let axes = attributes.ints("axes") else { return Array(0..<rank) }
    var normalized: [Int] = []
    for a in axes {
      let n = try axis(a, rank: rank)
      guard !normalized.contains(n) else { throw ShapeError("axis \(a) is listed twice") }
      normalized.append(n)
    }
    return normalized.sorted()
  }

  static let reduce: ShapeRule = { input in
    let x = input.operands[0]
    let axes = try reductionAxes(input.attributes, rank: x.rank)
    let keep = input.attributes.bool("keepdims") ?? false
    var dims: [Dim] = []
    for (i, d) in x.dims.enumerated() {
      if axes.contains(i) { if keep { dims.append(.known(1)) } } else { dims.append(d) }
    }
    return [TensorType(x.dtype, dims)]
  }

  static let argReduce: ShapeRule = { input in
    let x = input.operands[0]
    let a = try axis(input.attributes.int("axis") ?? 0, rank: x.rank)
    let keep = input.attributes.bool("keepdims") ?? false
    var dims = x.dims
    if keep { dims[a] = .known(1) } else { dims.remove(at: a) }
    let resultType = input.declared.first?.dtype ?? .i64
    guard resultType == .i64 || resultType == .i32 else {
      throw ShapeError("result element type must be i32 or i64, got \(resultType)")
    }
    return [TensorType(resultType, dims)]
  }

  public static let matmulRule: ShapeRule = { input in try matmul(input) }
  static let matmul: ShapeRule = { input in
    let (a, b) = (input.operands[0], input.operands[1])
    try sameDType([a, b])
    guard a.rank >= 2, b.rank >= 2 else {
      throw ShapeError("operands must have rank 2 or more, got \(a) and \(b)")
    }
    let ta = input.attributes.bool("transpose_a") ?? false
    let tb = input.attributes.bool("transpose_b") ?? false
    let m = ta ? a.dims[a.rank - 1] : a.dims[a.rank - 2]
    let ka = ta ? a.dims[a.rank - 2] : a.dims[a.rank - 1]
    let kb = tb ? b.dims[b.rank - 1] : b.dims[b.rank - 2]
    let n = tb ? b.dims[b.rank - 2] : b.dims[b.rank - 1]
    guard ka == kb else { throw ShapeError("contracting dimensions do not match: \(ka) vs \(kb)") }
    let batch = try broadcast(Array(a.dims.dropLast(2)), Array(b.dims.dropLast(2)))
    return [TensorType(a.dtype, batch + [m, n])]
  }

  static let transpose: ShapeRule = { input in
    let x = input.operands[0]
    let perm = input.attributes.ints("perm") ?? []
    guard perm.count == x.rank, Set(perm) == Set(0..<x.rank) else {
      throw ShapeError("perm \(perm) is not a permutation of 0..<\(x.rank)")
    }
    return [x.with(dims: perm.map { x.dims[$0] })]
  }

  /// Static product and symbol multiset of a dim list: two shapes hold the same number of elements
  /// for every binding of the symbols exactly when both parts agree.
  static func sizeSignature(_ dims: [Dim]) -> (Int?, [String]) {
    var product: Int? = 1
    var symbols: [String] = []
    for d in dims {
      switch d {
      case .known(let n):
        if let p = product {
          let (r, o) = p.multipliedReportingOverflow(by: n)
          product = o ? nil : r
        }
      case .symbol(let s): symbols.append(s)
      }
    }
    if product == 0 { symbols = [] }
    return (product, symbols.sorted())
  }

  static let reshape: ShapeRule = { input in
    let type = try declared(input)
    let x = input.operands[0]
    guard type.dtype == x.dtype else { throw ShapeError("reshape cannot change the element type (\(x.dtype) to \(type.dtype))") }
    let (pa, sa) = sizeSignature(x.dims)
    let (pb, sb) = sizeSignature(type.dims)
    guard pa == pb, sa == sb else {
      throw ShapeError("cannot reshape \(x) to \(type): element counts differ")
    }
    return [type]
  }

  static let broadcastTo: ShapeRule = { input in
    let type = try declared(input)
    let x = input.operands[0]
    guard type.dtype == x.dtype else { throw ShapeError("broadcast_to cannot change the element type") }
    guard x.rank <= type.rank else { throw ShapeError("cannot broadcast \(x) to lower rank \(type)") }
    let offset = type.rank - x.rank
    for (i, d) in x.dims.enumerated() where d != type.dims[offset + i] && d != .known(1) {
      throw ShapeError("cannot broadcast \(x) to \(type): dimension \(i) is \(d), target \(type.dims[offset + i])")
    }
    return [type]
  }

  static let slice: ShapeRule = { input in
    let x = input.operands[0]
    let axes = input.attributes.ints("axes") ?? []
    let starts = input.attributes.ints("starts") ?? []
    let limits = input.attributes.ints("limits") ?? []
    let strides = input.attributes.ints("strides") ?? [Int](repeating: 1, count: axes.count)
    guard starts.count == axes.count, limits.count == axes.count, strides.count == axes.count else {
      throw ShapeError("axes, starts, limits and strides must have the same length")
    }
    var dims = x.dims
    var seen = Set<Int>()
    for i in 0..<axes.count {
      let a = try axis(axes[i], rank: x.rank)
      guard seen.insert(a).inserted else { throw ShapeError("axis \(axes[i]) is listed twice") }
      guard strides[i] >= 1 else { throw ShapeError("stride must be positive, got \(strides[i])") }
      // A symbolic axis is sliced with static bounds (x[:, 0, :] of [B, S, H]); whether the
      // limit fits is checked when S is bound (a named error at run time, `symbolicSliceBounds`).
      let size = x.dims[a].staticSize ?? Int.max
      guard starts[i] >= 0, starts[i] <= limits[i], limits[i] <= size else {
        throw ShapeError("slice [\(starts[i]), \(limits[i])) is out of bounds for dimension of size \(x.dims[a]) (axis \(a))")
      }
      // ceil(extent / stride) without forming extent + stride - 1 (which overflows for huge strides).
      let extent = limits[i] - starts[i]
      dims[a] = .known(extent == 0 ? 0 : (extent - 1) / strides[i] + 1)
    }
    return [x.with(dims: dims)]
  }

  /// What slices of symbolic axes need of the symbols' values: for each (symbol, the
  /// last index a slice reads along it), found in `function` and its regions. A binding below
  /// that is an error (`slice: index 4 is out of range [0, 3)`) before anything runs.
  public static func symbolicSliceBounds(_ function: Function) -> [(symbol: String, lastIndex: Int)] {
    var bounds: [(String, Int)] = []
    for id in function.body {
      let op = function[id]
      for region in op.regions { bounds += symbolicSliceBounds(region).map { ($0.symbol, $0.lastIndex) } }
      guard op.code == .slice, let x = op.operands.first.map({ function.type(of: $0) }) else { continue }
      let axes = op.attributes.ints("axes") ?? [], starts = op.attributes.ints("starts") ?? []
      let limits = op.attributes.ints("limits") ?? [], strides = op.attributes.ints("strides") ?? []
      for (k, a) in axes.enumerated() where k < starts.count && k < limits.count && limits[k] > starts[k] {
        let axis = a < 0 ? a + x.rank : a
        guard axis >= 0, axis < x.rank, case .symbol(let name) = x.dims[axis] else { continue }
        let stride = k < strides.count ? max(strides[k], 1) : 1
        bounds.append((name, starts[k] + (limits[k] - starts[k] - 1) / stride * stride))
      }
    }
    return bounds
  }

  static let concat: ShapeRule = { input in
    let first = input.operands[0]
    try sameDType(input.operands)
    let a = try axis(input.attributes.int("axis") ?? 0, rank: first.rank)
    var total: Int? = 0
    for t in input.operands {
      guard t.rank == first.rank else { throw ShapeError("operands have different ranks: \(first) and \(t)") }
      for i in 0..<t.rank where i != a && t.dims[i] != first.dims[i] {
        throw ShapeError("operands differ in dimension \(i): \(first.dims[i]) vs \(t.dims[i])")
      }
      if let n = t.dims[a].staticSize, let s = total {
        let (sum, overflow) = s.addingReportingOverflow(n)
        guard !overflow, sum <= maxTensorElements else { throw ShapeError("concatenated dimension \(a) is too large") }
        total = sum
      } else { total = nil }
    }
    var dims = first.dims
    if let total { dims[a] = .known(total) }
    else if input.operands.count == 1 { dims[a] = first.dims[a] }
    else { throw ShapeError("cannot concatenate along symbolic dimension (axis \(a))") }
    return [first.with(dims: dims)]
  }

  static let pad: ShapeRule = { input in
    let x = input.operands[0]
    let low = input.attributes.ints("low") ?? []
    let high = input.attributes.ints("high") ?? []
    guard low.count == x.rank, high.count == x.rank else {
      throw ShapeError("low and high must have one entry per dimension (rank \(x.rank))")
    }
    var dims = x.dims
    for i in 0..<x.rank {
      guard low[i] >= 0, high[i] >= 0 else { throw ShapeError("padding must be non-negative") }
      if low[i] == 0 && high[i] == 0 { continue }
      guard let n = x.dims[i].staticSize else {
        throw ShapeError("cannot pad symbolic dimension \(x.dims[i]) (axis \(i))")
      }
      let (withLow, o1) = n.addingReportingOverflow(low[i])
      let (total, o2) = withLow.addingReportingOverflow(high[i])
      guard !o1, !o2, total <= maxTensorElements else { throw ShapeError("padded dimension \(i) is too large") }
      dims[i] = .known(total)
    }
    return [x.with(dims: dims)]
  }

  static let gather: ShapeRule = { input in
    let (params, indices) = (input.operands[0], input.operands[1])
    guard indices.dtype == .i32 || indices.dtype == .i64 else {
      throw ShapeError("indices must be i32 or i64, got \(indices.dtype)")
    }
    guard params.rank >= 1 else { throw ShapeError("cannot gather from a scalar") }
    let a = try axis(input.attributes.int("axis") ?? 0, rank: params.rank)
    return [params.with(dims: Array(params.dims[..<a]) + indices.dims + Array(params.dims[(a + 1)...]))]
  }

  /// `scatter_add %operand, %indices, %updates {axis}`: the operand's type; the updates have the
  /// shape gather would give (`operand.shape[:axis] + indices.shape + operand.shape[axis+1:]`).
  static let scatterAdd: ShapeRule = { input in
    let (operand, indices, updates) = (input.operands[0], input.operands[1], input.operands[2])
    guard indices.dtype == .i32 || indices.dtype == .i64 else {
      throw ShapeError("indices must be i32 or i64, got \(indices.dtype)")
    }
    guard operand.rank >= 1 else { throw ShapeError("cannot scatter into a scalar") }
    guard updates.dtype == operand.dtype else {
      throw ShapeError("updates must have the operand's element type \(operand.dtype), got \(updates.dtype)")
    }
    let a = try axis(input.attributes.int("axis") ?? 0, rank: operand.rank)
    let expected = Array(operand.dims[..<a]) + indices.dims + Array(operand.dims[(a + 1)...])
    guard updates.dims == expected else {
      throw ShapeError("updates must have shape [\(expected.map(\.description).joined(separator: ", "))] (the gather shape), got \(updates)")
    }
    return [operand]
  }

  /// `embedding_lookup @table, %ids`: one row per id, so ids' shape followed by the row's.
  static let embeddingLookup: ShapeRule = { input in
    let (row, ids) = (input.operands[0], input.operands[1])
    guard ids.dtype == .i64 || ids.dtype == .i32 else { throw ShapeError("ids must be i64 or i32, got \(ids.dtype)") }
    guard row.rank == 1, row.isStatic else { throw ShapeError("a table's row type must be a static vector, got \(row)") }
    return [row.with(dims: ids.dims + row.dims)]
  }

  /// `embedding_lookup_pooled @table, %ids [, %lengths]`: ids [B, L] (multi-hot, padded with
  /// `padding_id`, or valid up to `lengths[b]`) combined over L into [B, dim].
  static let embeddingLookupPooled: ShapeRule = { input in
    let (row, ids) = (input.operands[0], input.operands[1])
    guard ids.dtype == .i64 || ids.dtype == .i32 else { throw ShapeError("ids must be i64 or i32, got \(ids.dtype)") }
    guard ids.rank == 2 else { throw ShapeError("pooled ids must have rank 2 ([batch, ids per example]), got \(ids)") }
    guard row.rank == 1, row.isStatic else { throw ShapeError("a table's row type must be a static vector, got \(row)") }
    if input.operands.count == 3 {
      let lengths = input.operands[2]
      guard lengths.dtype == .i64 || lengths.dtype == .i32, lengths.dims == [ids.dims[0]] else {
        throw ShapeError("lengths must be i32 or i64 of shape [\(ids.dims[0])], got \(lengths)")
      }
    }
    let combiner = input.attributes.string("combiner") ?? "sum"
    guard ["sum", "mean", "sqrtn"].contains(combiner) else {
      throw ShapeError("combiner must be \"sum\", \"mean\" or \"sqrtn\", got \"\(combiner)\"")
    }
    return [row.with(dims: [ids.dims[0]] + row.dims)]
  }

  static let oneHot: ShapeRule = { input in
    let indices = input.operands[0]
    guard indices.dtype == .i32 || indices.dtype == .i64 else {
      throw ShapeError("indices must be i32 or i64, got \(indices.dtype)")
    }
    let depth = input.attributes.int("depth") ?? 0
    guard depth >= 0 else { throw ShapeError("depth must be non-negative, got \(depth)") }
    guard depth <= maxTensorElements else { throw ShapeError("depth \(depth) is too large") }
    let dtype = input.declared.first?.dtype ?? .f32
    return [TensorType(dtype, indices.dims + [.known(depth)])]
  }

  static let softmax: ShapeRule = { input in
    let x = input.operands[0]
    guard x.rank >= 1 else { throw ShapeError("operand must have rank 1 or more") }
    _ = try axis(input.attributes.int("axis") ?? -1, rank: x.rank)
    return [x]
  }

  static let softmaxCrossEntropy: ShapeRule = { input in
    let (logits, labels) = (input.operands[0], input.operands[1])
    guard logits.rank >= 1 else { throw ShapeError("logits must have rank 1 or more") }
    let outer = Array(logits.dims.dropLast())
    if labels.dtype.isFloat {
      guard labels == logits else {
        throw ShapeError("dense labels must have the logits' type \(logits), got \(labels)")
      }
    } else {
      guard labels.dtype == .i32 || labels.dtype == .i64 else {
        throw ShapeError("sparse labels must be i32 or i64, got \(labels.dtype)")
      }
      guard labels.dims == outer else {
        throw ShapeError("sparse labels must have shape [\(outer.map(\.description).joined(separator: ", "))], got \(labels)")
      }
    }
    return [logits.with(dims: outer)]
  }

  static let sigmoidCrossEntropy: ShapeRule = { input in
    let (logits, labels) = (input.operands[0], input.operands[1])
    try sameDType([logits, labels])
    return [logits.with(dims: try broadcast(logits.dims, labels.dims))]
  }

  /// A fusion's body takes the operands' types and gives the results' types.
  static let fusion: ShapeRule = { input in
    guard let body = input.body else { throw ShapeError("a fusion needs a body") }
    guard body.argumentTypes == input.operands else {
      throw ShapeError("body arguments (\(body.argumentTypes.map(\.description).joined(separator: ", "))) do not match the operands (\(input.operands.map(\.description).joined(separator: ", ")))")
    }
    return body.resultTypes
  }

  /// Binds a callee's symbols to the caller's dims and returns the instantiated result types.
  static let call: ShapeRule = { input in
    guard let callee = input.callee else { throw ShapeError("call needs a callee") }
    guard let signature = input.signature(callee) else { throw ShapeError("unknown function @\(callee)") }
    guard signature.arguments.count == input.operands.count else {
      let n = signature.arguments.count
      throw ShapeError("@\(callee) takes \(n) argument\(n == 1 ? "" : "s"), got \(input.operands.count)")
    }
    var binding: [String: Dim] = [:]
    for (i, (formal, actual)) in zip(signature.arguments, input.operands).enumerated() {
      guard formal.dtype == actual.dtype, formal.rank == actual.rank else {
        throw ShapeError("argument \(i) of @\(callee) expects \(formal), got \(actual)")
      }
      for (f, a) in zip(formal.dims, actual.dims) {
        switch f {
        case .known:
          guard f == a else { throw ShapeError("argument \(i) of @\(callee) expects \(formal), got \(actual)") }
        case .symbol(let s):
          if let bound = binding[s] {
            guard bound == a else {
              throw ShapeError("symbol \(s) of @\(callee) is bound to both \(bound) and \(a)")
            }
          } else {
            binding[s] = a
          }
        }
      }
    }
    return try signature.results.map { result in
      TensorType(result.dtype, try result.dims.map { d in
        guard case .symbol(let s) = d else { return d }
        guard let bound = binding[s] else {
          throw ShapeError("result dimension \(s) of @\(callee) is not bound by its arguments")
        }
        return bound
      })
    }
  }
}
