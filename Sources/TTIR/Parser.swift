// Parser — hand-written recursive descent from tokens to a Module. It checks what the grammar and
// name scopes decide (syntax, unknown ops, undefined and redefined names, operand counts, literal
// shapes); types and attributes are checked by the Verifier afterwards. The first error stops the
// parse and is thrown as a Diagnostic with its line and column. Nesting is capped so that
// adversarial input cannot exhaust the stack, and every loop consumes a token, so parsing is linear.

/// Reads TTIR text into a ``Module``. ``parseAndVerify(_:)`` is the usual entry point.
public enum Parser {
  /// Parses a whole module. Throws the first syntax or scoping error.
  public static func parse(_ source: String) throws(Diagnostic) -> Module {
    var state = ParserState(tokens: Lexer.tokenize(source))
    return try state.parseModule()
  }

  /// Parses and verifies: the usual entry point. Throws every problem found.
  public static func parseAndVerify(_ source: String) throws(DiagnosticList) -> Module {
    let module: Module
    do { module = try parse(source) } catch { throw DiagnosticList([error]) }
    let problems = Verifier.verify(module)
    if !problems.isEmpty { throw DiagnosticList(problems) }
    return module
  }
}

/// Deepest bracket nesting accepted in a tensor literal (the rank of the literal).
let maxLiteralNesting = 32

struct ParserState {
  let tokens: [Token]
  var index = 0
  var module = Module(name: "")
  /// Uses of parameters not declared yet: checked when the module is complete.
  var pendingGlobals: [(function: Int, value: ValueID, location: SourceLocation)] = []
  /// Parameters declared so far, by name.
  var paramTypes: [String: TensorType] = [:]

  init(tokens: [Token]) { self.tokens = tokens }

  var current: Token { tokens[index] }

  mutating func advance() -> Token {
    let token = tokens[index]
    if index < tokens.count - 1 { index += 1 }
    return token
  }

  func error(_ message: String, at token: Token? = nil) -> Diagnostic {
    let token = token ?? current
    if token.kind == .invalid { return Diagnostic(token.text, at: token.location) }
    return Diagnostic(message, at: token.location)
  }

  @discardableResult
  mutating func expect(_ kind: Token.Kind, _ what: String) throws(Diagnostic) -> Token {
    guard current.kind == kind else { throw error("expected \(what), found \(current)") }
    return advance()
  }

  mutating func consume(_ kind: Token.Kind) -> Bool {
    if current.kind == kind { _ = advance(); return true }
    return false
  }

  func isKeyword(_ word: String) -> Bool { current.kind == .identifier && current.text == word }

  // MARK: module

  mutating func parseModule() throws(Diagnostic) -> Module {
    guard isKeyword("module") else { throw error("expected 'module', found \(current)") }
    let start = advance()
    let name = try expect(.globalName, "a module name like '@model'")
    module = Module(name: name.text, location: start.location)
    try expect(.lBrace, "'{' after the module name")
    var globalNames: [String: SourceLocation] = [:]
    while current.kind != .rBrace {
      // Parameters and tables share the module's global names; their types resolve '@name' uses.
      func declare(_ name: String, _ type: TensorType, at location: SourceLocation?) throws(Diagnostic) {
        if let previous = globalNames[name] {
          throw Diagnostic("redefinition of '@\(name)' (first defined at \(previous))", at: location)
        }
        globalNames[name] = location
        paramTypes[name] = type
      }
      if isKeyword("param") || isKeyword("state") {
        let param = try parseParam()
        try declare(param.name, param.type, at: param.location)
        module.params.append(param)
      } else if isKeyword("table") {
        let table = try parseTable()
        try declare(table.name, table.rowType, at: table.location)
        module.tables.append(table)
      } else if isKeyword("func") {
        let nameToken = tokens[Swift.min(index + 1, tokens.count - 1)]
        let function = try parseFunction(index: module.functions.count)
        if let previous = globalNames[function.name] {
          throw Diagnostic("redefinition of '@\(function.name)' (first defined at \(previous))", at: nameToken.location)
        }
        globalNames[function.name] = nameToken.location
        module.functions.append(function)
      } else if current.kind == .endOfFile {
        throw error("expected '}' to close module '@\(module.name)'")
      } else {
        throw error("expected 'param', 'state', 'table', 'func' or '}', found \(current)")
      }
    }
    module.endLocation = advance().location
    guard current.kind == .endOfFile else { throw error("unexpected \(current) after the end of the module") }
    try resolvePendingGlobals()
    return module
  }

  mutating func resolvePendingGlobals() throws(Diagnostic) {
    for use in pendingGlobals {
      let name = module.functions[use.function].values[use.value.index].name
      if let type = paramTypes[name] {
        module.functions[use.function].values[use.value.index].type = type
      } else if module.function(named: name) != nil {
        throw Diagnostic("'@\(name)' is a function, not a parameter; use 'call @\(name)(...)'", at: use.location)
      } else {
        throw Diagnostic("use of undefined parameter '@\(name)'", at: use.location)
      }
    }
  }

  // MARK: params

  mutating func parseParam() throws(Diagnostic) -> Param {
    let start = advance()
    let name = try expect(.globalName, start.text == "state" ? "a state name like '@bn.mean'" : "a parameter name like '@w'")
    try expect(.colon, "':' after the parameter name")
    let type = try parseTensorType()
    var initializer: Initializer?
    if consume(.equal) { initializer = try parseInitializer() }
    return Param(name: name.text, type: type, initializer: initializer, location: name.location, isState: start.text == "state")
  }

  mutating func parseTable() throws(Diagnostic) -> TableDecl {
    _ = advance()
    let name = try expect(.globalName, "a table name like '@users'")
    try expect(.colon, "':' after the table name")
    let type = try parseTensorType()
    var initializer: Initializer?
    if consume(.equal) { initializer = try parseInitializer() }
    let attributes = current.kind == .lBrace ? try parseAttributes() : Attributes()
    return TableDecl(name: name.text, rowType: type, initializer: initializer, attributes: attributes, location: name.location)
  }

  mutating func parseInitializer() throws(Diagnostic) -> Initializer {
    let kind = try expect(.identifier, "an initializer like 'zeros' or 'glorot_uniform(seed: 1)'")
    guard consume(.lParen) else { return Initializer(kind: kind.text) }
    var arguments: [Initializer.Argument] = []
    if current.kind != .rParen {
      repeat {
        var label: String?
        if current.kind == .identifier, tokens[index + 1].kind == .colon {
          label = advance().text
          _ = advance()
        }
        let value = try parseNumber()
        arguments.append(.init(label: label, value: value))
      } while consume(.comma)
    }
    try expect(.rParen, "')' to close the initializer arguments")
    return Initializer(kind: kind.text, arguments: arguments, hasParentheses: true)
  }

  /// A float or integer literal as a double, including `inf`, `-inf` and `nan`.
  mutating func parseNumber() throws(Diagnostic) -> Double {
    let negative = consume(.minus)
    let token = current
    switch token.kind {
    case .integer, .float:
      if negative { throw error("expected a number after '-'") }
      _ = advance()
      guard let value = Double(token.text) else { throw error("invalid number '\(token.text)'", at: token) }
      return value
    case .identifier where token.text == "inf":
      _ = advance(); return negative ? -.infinity : .infinity
    case .identifier where token.text == "nan":
      _ = advance(); return .nan
    default:
      throw error("expected a number, found \(token)")
    }
  }

  // MARK: types

  mutating func parseTensorType() throws(Diagnostic) -> TensorType {
    let dtypeToken = current
    guard dtypeToken.kind == .identifier else { throw error("expected a tensor type like 'f32[B, 10]', found \(current)") }
    guard let dtype = DType(rawValue: dtypeToken.text) else {
      throw error("unknown element type '\(dtypeToken.text)' (expected one of \(DType.allCases.map(\.rawValue).joined(separator: ", ")))")
    }
    _ = advance()
    try expect(.lBracket, "'[' after the element type")
    var dims: [Dim] = []
    if current.kind != .rBracket {
      repeat {
        let token = current
        switch token.kind {
        case .integer:
          guard let n = Int(token.text), n >= 0 else {
            throw error(token.text.hasPrefix("-") ? "dimension sizes must be non-negative" : "dimension size '\(token.text)' is too large", at: token)
          }
          _ = advance()
          dims.append(.known(n))
        case .identifier:
          _ = advance()
          dims.append(.symbol(token.text))
        default:
          throw error("expected a dimension (a size or a symbol like 'B'), found \(token)")
        }
      } while consume(.comma)
    }
    try expect(.rBracket, "']' to close the shape")
    if let shape = TensorType(dtype, dims).staticShape, elementCount(shape) == nil {
      throw Diagnostic("tensor type has too many elements (the limit is 2^40)", at: dtypeToken.location)
    }
    return TensorType(dtype, dims)
  }

  mutating func parseResultTypes() throws(Diagnostic) -> [TensorType] {
    guard consume(.lParen) else { return [try parseTensorType()] }
    var types: [TensorType] = []
    if current.kind != .rParen {
      repeat { types.append(try parseTensorType()) } while consume(.comma)
    }
    try expect(.rParen, "')' to close the result types")
    return types
  }

  // MARK: functions

  mutating func parseFunction(index functionIndex: Int) throws(Diagnostic) -> Function {
    let start = advance()
    let name = try expect(.globalName, "a function name like '@loss'")
    var function = Function(name: name.text, location: start.location)
    var scope: [String: SourceLocation] = [:]
    try expect(.lParen, "'(' to start the argument list")
    if current.kind != .rParen {
      repeat {
        let argument = try expect(.valueName, "an argument like '%x: f32[B, 4]'")
        if let previous = scope[argument.text] {
          throw Diagnostic("redefinition of value '%\(argument.text)' (first defined at \(previous))", at: argument.location)
        }
        try expect(.colon, "':' after the argument name")
        let type = try parseTensorType()
        scope[argument.text] = argument.location
        function.addArgument(name: argument.text, type: type)
      } while consume(.comma)
    }
    try expect(.rParen, "')' to close the argument list")
    try expect(.arrow, "'->' and the result types")
    function.resultTypes = try parseResultTypes()
    try expect(.lBrace, "'{' to start the function body")
    try parseBody(into: &function, scope: &scope, functionIndex: functionIndex)
    return function
  }

  /// Ops up to and including `return ...` and the closing brace. `functionIndex` is -1 inside a
  /// fusion body, which is isolated: it sees only its own arguments, not parameters.
  mutating func parseBody(into function: inout Function, scope: inout [String: SourceLocation],
                          functionIndex: Int) throws(Diagnostic) {
    let what = functionIndex >= 0 ? "function '@\(function.name)'" : "the fusion body"
    var names: [String: ValueID] = [:]
    for id in function.arguments { names[function[id].name] = id }
    while !isKeyword("return") {
      if current.kind == .rBrace { throw error("\(what) must end with 'return'") }
      if current.kind == .endOfFile { throw error("expected 'return' and '}' to close \(what)") }
      try parseOperation(into: &function, names: &names, scope: &scope, functionIndex: functionIndex)
    }
    function.returnLocation = advance().location
    if current.kind != .rBrace {
      repeat {
        function.returnValues.append(try parseOperand(&function, names: names, functionIndex: functionIndex))
      } while consume(.comma)
    }
    function.endLocation = try expect(.rBrace, "'}' after 'return'").location
  }

  mutating func parseOperand(_ function: inout Function, names: [String: ValueID],
                             functionIndex: Int) throws(Diagnostic) -> ValueID {
    let token = current
    switch token.kind {
    case .valueName:
      _ = advance()
      guard let id = names[token.text] else { throw error("use of undefined value '%\(token.text)'", at: token) }
      return id
    case .globalName:
      _ = advance()
      guard functionIndex >= 0 else {
        throw Diagnostic("a fusion body cannot read '@\(token.text)'; pass it as an operand", at: token.location)
      }
      if let type = paramTypes[token.text] {
        return function.globalValue(name: token.text, type: type)
      }
      let existing = function.globalValues[token.text]
      let id = function.globalValue(name: token.text, type: .scalar(.f32))
      if existing == nil { pendingGlobals.append((functionIndex, id, token.location)) }
      return id
    default:
      throw error("expected an operand ('%value' or '@param'), found \(token)")
    }
  }

  mutating func parseOperation(into function: inout Function, names: inout [String: ValueID],
                               scope: inout [String: SourceLocation], functionIndex: Int) throws(Diagnostic) {
    // Results: %a, %b =
    var resultTokens: [Token] = []
    repeat {
      let token = current
      guard token.kind == .valueName else {
        throw error("expected an operation like '%y = add %a, %b : f32[4]', found \(token)")
      }
      _ = advance()
      if let previous = scope[token.text] {
        throw Diagnostic("redefinition of value '%\(token.text)' (first defined at \(previous))", at: token.location)
      }
      if resultTokens.contains(where: { $0.text == token.text }) {
        throw Diagnostic("redefinition of value '%\(token.text)'", at: token.location)
      }
      resultTokens.append(token)
    } while consume(.comma)
    try expect(.equal, "'=' after the result names")

    let opToken = current
    guard opToken.kind == .identifier else { throw error("expected an op name, found \(opToken)") }
    guard let code = OpCode.named(opToken.text) else { throw error("unknown op '\(opToken.text)'") }
    _ = advance()

    var operands: [ValueID] = []
    var attributes = Attributes()
    var callee: String?
    var literal: (value: LiteralNode, location: SourceLocation)?
    var bodyArguments: [Token] = []

    switch code {
    case .constant:
      let location = current.location
      literal = (try parseLiteral(depth: 0), location)
    case .call:
      let target = try expect(.globalName, "a function name after 'call'")
      callee = target.text
      try expect(.lParen, "'(' after the callee")
      if current.kind != .rParen {
        repeat { operands.append(try parseOperand(&function, names: names, functionIndex: functionIndex)) } while consume(.comma)
      }
      try expect(.rParen, "')' to close the call's arguments")
    case .fusion:
      try expect(.lParen, "'(' and the fusion's bindings like '(%x = %a)'")
      if current.kind != .rParen {
        repeat {
          let binding = try expect(.valueName, "a body argument like '%x = %a'")
          try expect(.equal, "'=' after the body argument")
          bodyArguments.append(binding)
          operands.append(try parseOperand(&function, names: names, functionIndex: functionIndex))
        } while consume(.comma)
      }
      try expect(.rParen, "')' to close the fusion's bindings")
    default:
      if current.kind == .valueName || current.kind == .globalName {
        repeat { operands.append(try parseOperand(&function, names: names, functionIndex: functionIndex)) } while consume(.comma)
      }
    }
    if current.kind == .lBrace { attributes = try parseAttributes() }
    try expect(.colon, "':' and the result type")
    var types: [TensorType] = []
    repeat { types.append(try parseTensorType()) } while consume(.comma)

    let info = code.info
    if code != .call && !info.operands.contains(operands.count) {
      let expected = info.operands.upperBound == Int.max ? "at least \(info.operands.lowerBound)"
        : info.operands.lowerBound == info.operands.upperBound ? "\(info.operands.lowerBound)"
        : "\(info.operands.lowerBound) to \(info.operands.upperBound)"
      throw Diagnostic("'\(code)' expects \(expected) operand\(expected == "1" ? "" : "s"), got \(operands.count)",
                       at: opToken.location)
    }
    var regions: [Function] = []
    if code == .fusion {
      guard functionIndex >= 0 else { throw Diagnostic("a fusion body cannot contain another fusion", at: opToken.location) }
      var body = Function(name: "", location: opToken.location)
      var bodyScope: [String: SourceLocation] = [:]
      for (token, operand) in zip(bodyArguments, operands) {
        if let previous = bodyScope[token.text] {
          throw Diagnostic("redefinition of value '%\(token.text)' (first defined at \(previous))", at: token.location)
        }
        bodyScope[token.text] = token.location
        body.addArgument(name: token.text, type: function.type(of: operand))
      }
      body.resultTypes = types
      try expect(.lBrace, "'{' to start the fusion body")
      try parseBody(into: &body, scope: &bodyScope, functionIndex: -1)
      regions = [body]
    }
    if code != .call && code != .fusion && resultTokens.count != code.info.results {
      let n = code.info.results
      throw Diagnostic("'\(code)' has \(n == 1 ? "one result" : "\(n) results"), but \(resultTokens.count) name\(resultTokens.count == 1 ? " is" : "s are") bound", at: opToken.location)
    }
    guard types.count == resultTokens.count else {
      throw Diagnostic("\(resultTokens.count) result\(resultTokens.count == 1 ? "" : "s") but \(types.count) result type\(types.count == 1 ? "" : "s")",
                       at: opToken.location)
    }
    if let literal {
      attributes["value"] = .tensor(try makeConstant(literal.value, type: types[0], at: literal.location))
    }
    let op = function.append(code, operands, resultTypes: types, resultNames: resultTokens.map(\.text),
                             attributes: attributes, callee: callee, location: opToken.location, regions: regions)
    for (token, id) in zip(resultTokens, function[op].results) {
      names[token.text] = id
      scope[token.text] = token.location
    }
  }

  // MARK: attributes

  mutating func parseAttributes() throws(Diagnostic) -> Attributes {
    try expect(.lBrace, "'{'")
    var attributes = Attributes()
    if current.kind != .rBrace {
      repeat {
        let key = try expect(.identifier, "an attribute name")
        if attributes[key.text] != nil { throw error("attribute '\(key.text)' is given twice", at: key) }
        try expect(.equal, "'=' after attribute '\(key.text)'")
        attributes[key.text] = try parseAttributeValue()
      } while consume(.comma)
    }
    try expect(.rBrace, "'}' to close the attributes")
    return attributes
  }

  mutating func parseAttributeValue() throws(Diagnostic) -> Attribute {
    let token = current
    switch token.kind {
    case .identifier where token.text == "true": _ = advance(); return .bool(true)
    case .identifier where token.text == "false": _ = advance(); return .bool(false)
    case .string: _ = advance(); return .string(token.text)
    case .integer:
      _ = advance()
      guard let v = Int64(token.text) else { throw error("integer literal '\(token.text)' is too large", at: token) }
      return .int(v)
    case .lBracket:
      _ = advance()
      var ints: [Int64] = []
      var floats: [Double] = []
      var isFloat = false
      if current.kind != .rBracket {
        repeat {
          let element = current
          if element.kind == .integer {
            _ = advance()
            guard let v = Int64(element.text) else { throw error("integer literal '\(element.text)' is too large", at: element) }
            ints.append(v)
            floats.append(Double(v))
          } else {
            isFloat = true
            floats.append(try parseNumber())
          }
        } while consume(.comma)
      }
      try expect(.rBracket, "']' to close the list")
      return isFloat ? .floats(floats) : .ints(ints)
    default:
      return .float(try parseNumber())
    }
  }

  // MARK: literals

  indirect enum LiteralNode {
    case number(Double, isInteger: Bool, text: String, SourceLocation)
    case boolean(Bool, SourceLocation)
    case list([LiteralNode], SourceLocation)
  }

  mutating func parseLiteral(depth: Int) throws(Diagnostic) -> LiteralNode {
    let token = current
    switch token.kind {
    case .lBracket:
      guard depth < maxLiteralNesting else { throw error("tensor literal is nested too deeply (the limit is \(maxLiteralNesting))") }
      _ = advance()
      var elements: [LiteralNode] = []
      if current.kind != .rBracket {
        repeat { elements.append(try parseLiteral(depth: depth + 1)) } while consume(.comma)
      }
      try expect(.rBracket, "']' to close the literal")
      return .list(elements, token.location)
    case .identifier where token.text == "true" || token.text == "false":
      _ = advance()
      return .boolean(token.text == "true", token.location)
    case .integer:
      _ = advance()
      return .number(Double(token.text) ?? .nan, isInteger: true, text: token.text, token.location)
    default:
      let value = try parseNumber()
      return .number(value, isInteger: false, text: "", token.location)
    }
  }

  /// Checks a literal against the declared type and builds the constant's tensor. A single scalar
  /// is a splat: it stands for every element (kept as one element, shape []).
  func makeConstant(_ literal: LiteralNode, type: TensorType, at location: SourceLocation) throws(Diagnostic) -> Tensor {
    guard let shape = type.staticShape else {
      throw Diagnostic("a constant must have a static shape, got \(type)", at: location)
    }
    var floats: [Double] = []
    var ints: [Int64] = []
    // The literal's shape: sizes of the lists seen at each depth, and the depth at which the
    // scalars sit (every scalar must sit at the same depth, every list above it).
    var found: [Int] = []
    var leafDepth: Int? = nil
    func walk(_ node: LiteralNode, depth: Int) throws(Diagnostic) {
      switch node {
      case .list(let elements, let loc):
        if let leafDepth, depth >= leafDepth { throw Diagnostic("tensor literal is not rectangular", at: loc) }
        if depth == found.count { found.append(elements.count) }
        else if found[depth] != elements.count { throw Diagnostic("tensor literal is not rectangular", at: loc) }
        for e in elements { try walk(e, depth: depth + 1) }
      case .number(let value, let isInteger, let text, let loc):
        try leaf(depth, loc)
        if type.dtype.isFloat { floats.append(value) }
        else {
          guard isInteger else {
            throw Diagnostic("a literal for \(type.dtype) must be an integer, found '\(formatDouble(value))'", at: loc)
          }
          guard let v = Int64(text) else { throw Diagnostic("integer literal '\(text)' is too large", at: loc) }
          guard type.dtype != .i1 || v == 0 || v == 1 else {
            throw Diagnostic("an i1 literal must be true, false, 0 or 1", at: loc)
          }
          ints.append(v)
        }
      case .boolean(let v, let loc):
        guard type.dtype == .i1 else { throw Diagnostic("'\(v)' is only a literal for i1, not \(type.dtype)", at: loc) }
        try leaf(depth, loc)
        ints.append(v ? 1 : 0)
      }
    }
    func leaf(_ depth: Int, _ loc: SourceLocation) throws(Diagnostic) {
      if let leafDepth { if depth != leafDepth { throw Diagnostic("tensor literal is not rectangular", at: loc) } }
      else if depth != found.count { throw Diagnostic("tensor literal is not rectangular", at: loc) }
      else { leafDepth = depth }
    }
    try walk(literal, depth: 0)
    let count = type.dtype.isFloat ? floats.count : ints.count
    if found.isEmpty && count == 1 {
      return type.dtype.isFloat ? Tensor(type.dtype, shape: [], floats: floats) : Tensor(type.dtype, shape: [], ints: ints)
    }
    // An empty literal (`[]`, `[[], []]`) stands for a tensor with no elements of the declared shape.
    let emptyMatches = count == 0 && elementCount(shape) == 0 && found.count <= shape.count
      && zip(found, shape).allSatisfy { $0 == $1 }
    guard found == shape || emptyMatches else {
      throw Diagnostic("literal of shape [\(found.map(String.init).joined(separator: ", "))] does not match type \(type)",
                       at: location)
    }
    return type.dtype.isFloat ? Tensor(type.dtype, shape: shape, floats: floats) : Tensor(type.dtype, shape: shape, ints: ints)
  }
}
