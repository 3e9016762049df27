// Graph — the in-memory form of a TTIR module. Values and ops live in per-function arrays and are
// referred to by typed indices (ValueID, OpID), never by object references: copies are cheap, there
// are no reference cycles, and a pass can rewrite a function by editing arrays. A function's `body`
// lists its ops in execution order (every operand is defined earlier); ops dropped from `body` are
// dead and their slots are simply never visited again.

/// A value of a function: an index into ``Function/values``.
public struct ValueID: Hashable, Comparable, Sendable, CustomStringConvertible {
  public let raw: UInt32
  public init(_ raw: Int) { self.raw = UInt32(raw) }
  public var index: Int { Int(raw) }
  public static func < (a: ValueID, b: ValueID) -> Bool { a.raw < b.raw }
  public var description: String { "v\(raw)" }
}

/// An op of a function: an index into ``Function/ops``.
public struct OpID: Hashable, Comparable, Sendable, CustomStringConvertible {
  public let raw: UInt32
  public init(_ raw: Int) { self.raw = UInt32(raw) }
  public var index: Int { Int(raw) }
  public static func < (a: OpID, b: OpID) -> Bool { a.raw < b.raw }
  public var description: String { "op\(raw)" }
}

/// Where a value comes from.
public enum ValueDefinition: Hashable, Sendable {
  /// The function's `index`-th argument.
  case argument(Int)
  /// The `index`-th result of an op.
  case result(OpID, Int)
  /// A module-level parameter read by name (`@w1`).
  case global(String)
}

/// A value's name, type and where it comes from.
public struct ValueInfo: Hashable, Sendable {
  /// The name without its sigil (`h0` for `%h0`, `w1` for `@w1`).
  public var name: String
  public var type: TensorType
  public var definition: ValueDefinition
  public init(name: String, type: TensorType, definition: ValueDefinition) {
    self.name = name; self.type = type; self.definition = definition
  }
}

/// One op of a function: what it computes (``OpCode``), its operand and result values, its
/// attributes, the callee of a `call` and the body of a `fusion`.
public struct OpNode: Hashable, Sendable {
  public var code: OpCode
  public var operands: [ValueID]
  public var results: [ValueID]
  public var attributes: Attributes
  /// The function a `call` invokes (name without `@`).
  public var callee: String?
  public var location: SourceLocation?
  /// The body of a `fusion` op: a function whose arguments are bound to the operands and whose
  /// results are the op's results. Empty for every other op. (An array gives the recursive type
  /// the indirection it needs.)
  public var regions: [Function]

  public init(code: OpCode, operands: [ValueID], results: [ValueID], attributes: Attributes = Attributes(),
              callee: String? = nil, location: SourceLocation? = nil, regions: [Function] = []) {
    self.code = code; self.operands = operands; self.results = results
    self.attributes = attributes; self.callee = callee; self.location = location; self.regions = regions
  }

  /// The body of a fusion op.
  public var body: Function? { regions.first }

  /// A constant's literal value.
  public var constantValue: Tensor? {
    if case .tensor(let t)? = attributes["value"] { return t }
    return nil
  }
}

/// A function of a module: typed arguments, ops in execution order (``body``) and return values.
/// Values and ops live in arrays indexed by ``ValueID`` and ``OpID``.
public struct Function: Hashable, Sendable {
  public var name: String
  public var arguments: [ValueID]
  public var resultTypes: [TensorType]
  public var values: [ValueInfo] = []
  public var ops: [OpNode] = []
  /// The live ops in execution order.
  public var body: [OpID] = []
  public var returnValues: [ValueID] = []
  public var location: SourceLocation?
  public var returnLocation: SourceLocation?
  /// Where the closing brace is (comments before it stay inside when formatting).
  public var endLocation: SourceLocation?
  /// The value that reads each global in this function (one per global), for O(1) lookup.
  public private(set) var globalValues: [String: ValueID] = [:]

  public init(name: String, resultTypes: [TensorType] = [], location: SourceLocation? = nil) {
    self.name = name; self.arguments = []; self.resultTypes = resultTypes; self.location = location
  }

  public subscript(value: ValueID) -> ValueInfo {
    get { values[value.index] }
    set { values[value.index] = newValue }
  }
  public subscript(op: OpID) -> OpNode {
    get { ops[op.index] }
    set { ops[op.index] = newValue }
  }
  public func type(of value: ValueID) -> TensorType { values[value.index].type }

  public var argumentTypes: [TensorType] { arguments.map { type(of: $0) } }

  @discardableResult
  public mutating func addArgument(name: String, type: TensorType) -> ValueID {
    let id = ValueID(values.count)
    values.append(ValueInfo(name: name, type: type, definition: .argument(arguments.count)))
    arguments.append(id)
    return id
  }

  /// The value that reads global `name` in this function, created on first use.
  public mutating func globalValue(name: String, type: TensorType) -> ValueID {
    if let existing = globalValues[name] { return existing }
    let id = ValueID(values.count)
    values.append(ValueInfo(name: name, type: type, definition: .global(name)))
    globalValues[name] = id
    return id
  }

  /// Appends an op at the end of the body with fresh result values named `resultNames`.
  @discardableResult
  public mutating func append(_ code: OpCode, _ operands: [ValueID], resultTypes: [TensorType],
                              resultNames: [String]? = nil, attributes: Attributes = Attributes(),
                              callee: String? = nil, location: SourceLocation? = nil,
                              regions: [Function] = []) -> OpID {
    let opID = makeOp(code, operands, resultTypes: resultTypes, resultNames: resultNames, attributes: attributes,
                      callee: callee, location: location, regions: regions)
    body.append(opID)
    return opID
  }

  /// Appends a single-result op and returns its result value.
  @discardableResult
  public mutating func appendValue(_ code: OpCode, _ operands: [ValueID], type: TensorType,
                                   attributes: Attributes = Attributes()) -> ValueID {
    let id = append(code, operands, resultTypes: [type], attributes: attributes)
    return self[id].results[0]
  }

  /// Creates an op and its result values without placing it in the body (the caller decides where).
  public mutating func makeOp(_ code: OpCode, _ operands: [ValueID], resultTypes: [TensorType],
                              resultNames: [String]? = nil, attributes: Attributes = Attributes(),
                              callee: String? = nil, location: SourceLocation? = nil,
                              regions: [Function] = []) -> OpID {
    let opID = OpID(ops.count)
    var results: [ValueID] = []
    for (i, type) in resultTypes.enumerated() {
      let name = resultNames?[i] ?? freshName()
      results.append(ValueID(values.count))
      values.append(ValueInfo(name: name, type: type, definition: .result(opID, i)))
    }
    ops.append(OpNode(code: code, operands: operands, results: results, attributes: attributes,
                      callee: callee, location: location, regions: regions))
    return opID
  }

  /// Whether every op is elementwise or a constant: element i of each result depends only on
  /// element i of the full-shape operands (fusion bodies that run as one parallel loop, merge into
  /// multi-output kernels and flatten to one shape-free kernel).
  public var isElementwise: Bool {
    body.allSatisfy { self[$0].code.info.isElementwise || self[$0].code == .constant }
  }

  /// This function with symbolic dimensions renamed or fixed by `binding` in every value type,
  /// result type and nested region (fusion bodies carry their own copies of the types): what
  /// inlining a callee into a caller whose dims differ needs.
  public func instantiatingSymbols(_ binding: [String: Dim]) -> Function {
    func instantiate(_ t: TensorType) -> TensorType {
      t.with(dims: t.dims.map { d in if case .symbol(let s) = d { return binding[s] ?? d }; return d })
    }
    var copy = self
    copy.resultTypes = resultTypes.map(instantiate)
    for k in copy.values.indices { copy.values[k].type = instantiate(copy.values[k].type) }
    for k in copy.ops.indices where !copy.ops[k].regions.isEmpty {
      copy.ops[k].regions = copy.ops[k].regions.map { $0.instantiatingSymbols(binding) }
    }
    return copy
  }

  /// A value name for a value created by a pass: `%N` with N its index. The printer renames any
  /// clash with a source name, so no scan of existing names is needed here.
  public func freshName() -> String { String(values.count) }
}

/// Initializer of a parameter: `glorot_uniform(seed: 1)`, `normal(0.0, 0.01, seed: 3)`, `zeros`.
public struct Initializer: Hashable, Sendable, CustomStringConvertible {
  public struct Argument: Hashable, Sendable {
    public var label: String?
    public var value: Double
    public init(label: String?, value: Double) { self.label = label; self.value = value }
  }
  public var kind: String
  public var arguments: [Argument]
  /// Whether the source wrote parentheses (`zeros` vs `zeros()`), kept so printing round-trips.
  public var hasParentheses: Bool

  public init(kind: String, arguments: [Argument] = [], hasParentheses: Bool = false) {
    self.kind = kind; self.arguments = arguments; self.hasParentheses = hasParentheses || !arguments.isEmpty
  }

  public var description: String {
    guard hasParentheses else { return kind }
    let args = arguments.map { arg in
      let text = arg.value == arg.value.rounded() && abs(arg.value) < 1e15 && arg.label == "seed"
        ? String(Int64(arg.value)) : formatDouble(arg.value)
      return arg.label.map { "\($0): \(text)" } ?? text
    }
    return "\(kind)(\(args.joined(separator: ", ")))"
  }
}

/// A module-level parameter, `param @w : f32[16, 1] = zeros`: a named tensor of static shape
/// that functions read as `@w` and training updates, with an optional initializer. Declared with
/// `state` instead of `param` (`state @bn1.mean : f32[64] = zeros`), it is non-trained state:
/// read like a parameter, not differentiated and not touched by the optimizer, but replaced at
/// every training step by a value the loss function returns (IR-specs/modules.md).
public struct Param: Hashable, Sendable {
  public var name: String
  public var type: TensorType
  public var initializer: Initializer?
  public var location: SourceLocation?
  /// Non-trained state (`state @name`): updated by the step's own result, not by the optimizer.
  public var isState: Bool
  public init(name: String, type: TensorType, initializer: Initializer?, location: SourceLocation? = nil, isState: Bool = false) {
    self.name = name; self.type = type; self.initializer = initializer; self.location = location; self.isState = isState
  }
}

/// A dynamic embedding table: `table @users : f32[16] = normal(std: 0.01, seed: 3) {default = 0.0}`.
/// Its type is the type of one row; ids are i64 and unbounded (IR-specs/embeddings.md).
public struct TableDecl: Hashable, Sendable {
  public var name: String
  public var rowType: TensorType
  public var initializer: Initializer?
  public var attributes: Attributes
  public var location: SourceLocation?
  public init(name: String, rowType: TensorType, initializer: Initializer?, attributes: Attributes = Attributes(),
              location: SourceLocation? = nil) {
    self.name = name; self.rowType = rowType; self.initializer = initializer; self.attributes = attributes; self.location = location
  }
  /// The value a lookup of an id without a row reads (attribute `default`, 0 when absent).
  public var defaultValue: Double {
    switch attributes["default"] { case .float(let f)?: return f; case .int(let i)?: return Double(i); default: return 0 }
  }
  /// Row storage: "f32" (default) or "bf16".
  public var storage: String { if case .string(let s)? = attributes["storage"] { return s }; return "f32" }
}

/// A TTIR module: parameters, embedding tables and functions. ``Parser`` reads one from text,
/// ``Verifier`` checks it, ``Printer`` writes it back; the interpreter, the compiler and training
/// all take a `Module`.
public struct Module: Hashable, Sendable {
  public var name: String
  public var params: [Param] = []
  public var tables: [TableDecl] = []
  public var functions: [Function] = []
  public var location: SourceLocation?
  /// Where the module's closing brace is.
  public var endLocation: SourceLocation?

  public init(name: String, location: SourceLocation? = nil) { self.name = name; self.location = location }

  /// The function called `name` (without `@`).
  public func function(named name: String) -> Function? { functions.first { $0.name == name } }
  public func functionIndex(named name: String) -> Int? { functions.firstIndex { $0.name == name } }
  public func param(named name: String) -> Param? { params.first { $0.name == name } }
  /// The parameters the optimizer trains (every `param`, no `state`), in declaration order.
  public var trainedParams: [Param] { params.filter { !$0.isState } }
  /// The non-trained state declarations (`state`), in declaration order: a training step's loss
  /// function returns their new values after the loss, in this order.
  public var stateParams: [Param] { params.filter(\.isState) }
  public func table(named name: String) -> TableDecl? { tables.first { $0.name == name } }

  /// The parameters `function` reads, directly or through the functions it calls.
  public func parametersRead(by function: String) -> Set<String> {
    var read = Set<String>(), visited = Set<String>(), pending = [function]
    while let name = pending.popLast() {
      guard visited.insert(name).inserted, let f = self.function(named: name) else { continue }
      for v in f.values { if case .global(let g) = v.definition { read.insert(g) } }
      for id in f.body where f[id].code == .call { if let callee = f[id].callee { pending.append(callee) } }
    }
    return read
  }

  /// Why `name`, given as a parameter value, names no parameter (nil when it names one): a table,
  /// or an unknown name with the parameters listed.
  public func unknownParameterReason(_ name: String) -> String? {
    guard param(named: name) == nil else { return nil }
    if table(named: name) != nil { return "'\(name)' is a table (tables start from their declared initializer)" }
    let known = params.map { "'\($0.name)'" }.joined(separator: ", ")
    return "'\(name)' matches no parameter (the parameters: \(known.isEmpty ? "none" : known))"
  }
}
