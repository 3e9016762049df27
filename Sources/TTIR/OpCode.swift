// OpCode — every TTIR op, with its IR spelling as the raw value, and OpInfo, the one declarative
// table that the parser (operand counts), verifier (attributes, dtypes, shape rule), interpreter
// (class), passes and fusion (class, cost, side effects) read. Adding an op starts here; its shape
// rule lives in ShapeRules.swift and its semantics in TTInterp.

public enum OpCode: String, CaseIterable, Hashable, Sendable, CustomStringConvertible {
  // Sources
  case constant, iota
  // Elementwise unary
  case neg, abs, exp, log, log1p, sqrt, rsqrt, tanh, sigmoid, relu, gelu, erf, sin, cos, floor, ceil, sign, not
  // Elementwise binary (numpy broadcasting)
  case add, sub, mul, div, pow, max, min
  case eq, ne, lt, le, gt, ge
  case and, or
  // Selection and conversion
  case select, `where`, cast
  // Reductions
  case reduceSum = "reduce_sum", reduceMean = "reduce_mean", reduceMax = "reduce_max"
  case reduceMin = "reduce_min", reduceProd = "reduce_prod", argmax, argmin
  // Linear algebra
  case matmul
  // Data movement
  case transpose, reshape, broadcastTo = "broadcast_to", slice, concat, pad, gather, oneHot = "one_hot"
  // Normalizations and losses
  case softmax, logSoftmax = "log_softmax"
  case softmaxCrossEntropy = "softmax_cross_entropy", sigmoidCrossEntropy = "sigmoid_cross_entropy"
  // Embedding tables (the first operand is a table; IR-specs/embeddings.md)
  case embeddingLookup = "embedding_lookup", embeddingLookupPooled = "embedding_lookup_pooled"
  // Functions and fusion regions
  case call, fusion

  public var description: String { rawValue }
  public var info: OpInfo { OpInfo.table[self]! }

  public static func named(_ name: String) -> OpCode? { OpCode(rawValue: name) }
}

/// How an op touches its operands: fusion and the interpreter dispatch on it.
public enum OpClass: String, Sendable {
  case source, elementwiseUnary, elementwiseBinary, compare, select, cast
  case reduction, argReduction, matmul, layout, gather, softmax, loss, table, call, fusion
}

/// Which element types an op accepts for its (first) data operand.
public enum DTypeConstraint: Sendable {
  case any, float, numeric, integer

  public func admits(_ d: DType) -> Bool {
    switch self {
    case .any: return true
    case .float: return d.isFloat
    case .numeric: return d != .i1
    case .integer: return d.isInteger
    }
  }
  var phrase: String {
    switch self {
    case .any: return "any element type"
    case .float: return "a float element type"
    case .numeric: return "a numeric (non-i1) element type"
    case .integer: return "an integer or i1 element type"
    }
  }
}

/// Cost class used by fusion: expensive producers are not duplicated into several consumers.
public enum CostClass: Sendable { case free, cheap, expensive, gemm, opaque }

public enum AttributeKind: Sendable {
  case int, bool, float, ints, floats, string

  func accepts(_ a: Attribute) -> Bool {
    switch (self, a) {
    case (.int, .int), (.bool, .bool), (.float, .float), (.float, .int), (.ints, .ints), (.floats, .floats),
         (.floats, .ints), (.string, .string):
      return true
    default:
      return false
    }
  }
  var name: String {
    switch self {
    case .int: return "integer"; case .bool: return "bool"; case .float: return "float"
    case .ints: return "integer list"; case .floats: return "float list"; case .string: return "string"
    }
  }
}

public struct AttributeSpec: Sendable {
  public let name: String
  public let kind: AttributeKind
  public let required: Bool
}

public struct OpInfo: Sendable {
  public let code: OpCode
  public let opClass: OpClass
  /// Operand count: exact when lower == upper; `Int.max` upper bound means variadic.
  public let operands: ClosedRange<Int>
  public let dtypes: DTypeConstraint
  public let attributes: [AttributeSpec]
  public let cost: CostClass
  /// Ops that must never be merged, reordered past each other or dropped (none yet in this set;
  /// random number generation and table updates will be).
  public let hasSideEffects: Bool
  public let shapeRule: ShapeRule

  public var isElementwise: Bool {
    switch opClass {
    case .elementwiseUnary, .elementwiseBinary, .compare, .select, .cast: return true
    default: return false
    }
  }
  public func attributeSpec(_ name: String) -> AttributeSpec? { attributes.first { $0.name == name } }
}

extension OpInfo {
  static let table: [OpCode: OpInfo] = {
    var t: [OpCode: OpInfo] = [:]
    func add(_ code: OpCode, _ cls: OpClass, _ operands: ClosedRange<Int>, _ dtypes: DTypeConstraint,
             _ attrs: [AttributeSpec] = [], cost: CostClass = .cheap, rule: @escaping ShapeRule) {
      t[code] = OpInfo(code: code, opClass: cls, operands: operands, dtypes: dtypes, attributes: attrs,
                       cost: cost, hasSideEffects: false, shapeRule: rule)
    }
    func attr(_ name: String, _ kind: AttributeKind, required: Bool = false) -> AttributeSpec {
      AttributeSpec(name: name, kind: kind, required: required)
    }
    let variadic = Int.max

    add(.constant, .source, 0...0, .any, [], cost: .free,
        rule: ShapeRules.constant)
    add(.iota, .source, 0...0, .numeric, [attr("dim", .int, required: true)], cost: .free, rule: ShapeRules.iota)

    let floatUnary: [OpCode] = [.exp, .log, .log1p, .sqrt, .rsqrt, .tanh, .sigmoid, .gelu, .erf, .sin, .cos]
    for code in floatUnary {
      add(code, .elementwiseUnary, 1...1, .float, code == .gelu ? [attr("approximate", .bool)] : [],
          cost: .expensive, rule: ShapeRules.unary)
    }
    for code in [OpCode.floor, .ceil] { add(code, .elementwiseUnary, 1...1, .float, rule: ShapeRules.unary) }
    for code in [OpCode.neg, .abs, .relu, .sign] { add(code, .elementwiseUnary, 1...1, .numeric, rule: ShapeRules.unary) }
    add(.not, .elementwiseUnary, 1...1, .integer, rule: ShapeRules.unary)

    for code in [OpCode.add, .sub, .mul, .max, .min] {
      add(code, .elementwiseBinary, 2...2, .numeric, rule: ShapeRules.binary)
    }
    add(.div, .elementwiseBinary, 2...2, .numeric, cost: .expensive, rule: ShapeRules.binary)
    add(.pow, .elementwiseBinary, 2...2, .float, cost: .expensive, rule: ShapeRules.binary)
    for code in [OpCode.eq, .ne, .lt, .le, .gt, .ge] { add(code, .compare, 2...2, .any, rule: ShapeRules.compare) }
    for code in [OpCode.and, .or] { add(code, .elementwiseBinary, 2...2, .integer, rule: ShapeRules.binary) }

    add(.select, .select, 3...3, .any, rule: ShapeRules.select)
    add(.where, .select, 3...3, .any, rule: ShapeRules.whereRule)
    add(.cast, .cast, 1...1, .any, rule: ShapeRules.cast)

    let reduceAttrs = [attr("axes", .ints), attr("keepdims", .bool)]
    for code in [OpCode.reduceSum, .reduceMean, .reduceMax, .reduceMin, .reduceProd] {
      add(code, .reduction, 1...1, .numeric, reduceAttrs, rule: ShapeRules.reduce)
    }
    for code in [OpCode.argmax, .argmin] {
      add(code, .argReduction, 1...1, .numeric, [attr("axis", .int, required: true), attr("keepdims", .bool)],
          rule: ShapeRules.argReduce)
    }

    add(.matmul, .matmul, 2...2, .numeric, [attr("transpose_a", .bool), attr("transpose_b", .bool)],
        cost: .gemm, rule: ShapeRules.matmul)

    add(.transpose, .layout, 1...1, .any, [attr("perm", .ints, required: true)], rule: ShapeRules.transpose)
    add(.reshape, .layout, 1...1, .any, cost: .free, rule: ShapeRules.reshape)
    add(.broadcastTo, .layout, 1...1, .any, rule: ShapeRules.broadcastTo)
    add(.slice, .layout, 1...1, .any,
        [attr("axes", .ints, required: true), attr("starts", .ints, required: true),
         attr("limits", .ints, required: true), attr("strides", .ints)], rule: ShapeRules.slice)
    add(.concat, .layout, 1...variadic, .any, [attr("axis", .int, required: true)], rule: ShapeRules.concat)
    add(.pad, .layout, 1...1, .any,
        [attr("low", .ints, required: true), attr("high", .ints, required: true), attr("value", .float)],
        rule: ShapeRules.pad)
    add(.gather, .gather, 2...2, .any, [attr("axis", .int)], rule: ShapeRules.gather)
    add(.oneHot, .gather, 1...1, .integer,
        [attr("depth", .int, required: true), attr("on_value", .float), attr("off_value", .float)],
        rule: ShapeRules.oneHot)

    add(.softmax, .softmax, 1...1, .float, [attr("axis", .int)], cost: .expensive, rule: ShapeRules.softmax)
    add(.logSoftmax, .softmax, 1...1, .float, [attr("axis", .int)], cost: .expensive, rule: ShapeRules.softmax)
    add(.softmaxCrossEntropy, .loss, 2...2, .float, cost: .expensive, rule: ShapeRules.softmaxCrossEntropy)
    add(.sigmoidCrossEntropy, .loss, 2...2, .float, cost: .expensive, rule: ShapeRules.sigmoidCrossEntropy)

    add(.embeddingLookup, .table, 2...2, .float, cost: .opaque, rule: ShapeRules.embeddingLookup)
    add(.embeddingLookupPooled, .table, 2...3, .float, [attr("combiner", .string), attr("padding_id", .int)],
        cost: .opaque, rule: ShapeRules.embeddingLookupPooled)

    add(.call, .call, 0...variadic, .any, cost: .opaque, rule: ShapeRules.call)
    add(.fusion, .fusion, 0...variadic, .any, [attr("kind", .string)], cost: .opaque, rule: ShapeRules.fusion)
    return t
  }()
}
