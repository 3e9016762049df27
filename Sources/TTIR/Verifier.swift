// Verifier — checks that a module means something: every op's operand count, attributes, element
// types and declared result types agree with the op table's rules (ShapeRules); values are defined
// before use; every symbolic dimension is bound by the function's arguments (so the interpreter
// and the runtime can learn its size from the inputs); calls name existing functions and do not
// recurse; parameters have static shapes and known initializers. It reports every problem it finds,
// each naming the op and the value, at the op's source location when there is one.

/// Checks that a ``Module`` means something: operand counts, attributes, element types and
/// declared result types agree with each op's rules; names are defined before use; symbolic
/// dimensions are bound by arguments; calls do not recurse; parameters are static.
public enum Verifier {
  /// Every problem of `module` (empty when it is valid), each at its source location.
  public static func verify(_ module: Module) -> [Diagnostic] {
    var problems: [Diagnostic] = []
    for param in module.params {
      if !param.type.isStatic {
        problems.append(Diagnostic("parameter '@\(param.name)' must have a static shape, got \(param.type)", at: param.location))
      }
      if let initializer = param.initializer, let message = InitializerSpec.validate(initializer, type: param.type) {
        problems.append(Diagnostic("parameter '@\(param.name)': \(message)", at: param.location))
      }
    }
    for table in module.tables { problems += tableProblems(table) }
    var paramTypes = Dictionary(module.params.map { ($0.name, $0.type) }, uniquingKeysWith: { first, _ in first })
    for table in module.tables where paramTypes[table.name] == nil { paramTypes[table.name] = table.rowType }
    let tableNames = Set(module.tables.map(\.name))
    for function in module.functions { problems += tableUseProblems(function, tables: tableNames) }
    let signatures = Dictionary(module.functions.map { ($0.name, (arguments: $0.argumentTypes, results: $0.resultTypes)) },
                                uniquingKeysWith: { first, _ in first })
    for function in module.functions {
      problems += verify(function, paramTypes: paramTypes, signatures: signatures)
    }
    problems += recursionProblems(module)
    return problems
  }

  /// A table's row type is a static float vector; its initializer is one a table can use; its
  /// attributes are `default` (a number) and `storage` ("f32" or "bf16").
  static func tableProblems(_ table: TableDecl) -> [Diagnostic] {
    var problems: [String] = []
    if !(table.rowType.rank == 1 && table.rowType.isStatic && table.rowType.dtype == .f32) {
      problems.append("its row type must be a static f32 vector like f32[16], got \(table.rowType)")
    }
    if let initializer = table.initializer {
      switch InitializerSpec.resolve(initializer) {
      case .failure(let e): problems.append(e.message)
      case .success(let values):
        switch initializer.kind {
        case "zeros", "ones", "constant": break
        case "uniform" where values["low"] == -(values["high"] ?? 0): break
        case "normal" where values["mean"] == 0: break
        default: problems.append("a table initializer is zeros, ones, constant(value), uniform(low: -s, high: s, seed: n) or normal(mean: 0, std: s, seed: n), got \(initializer)")
        }
      }
    }
    for (key, value) in table.attributes.sortedPairs {
      switch (key, value) {
      case ("default", .float), ("default", .int): break
      case ("storage", .string(let s)) where s == "f32" || s == "bf16": break
      case ("storage", _): problems.append("attribute 'storage' is \"f32\" or \"bf16\"")
      default: problems.append("unknown table attribute '\(key)' (tables take 'default' and 'storage')")
      }
    }
    return problems.map { Diagnostic("table '@\(table.name)': \($0)", at: table.location) }
  }

  /// Tables are read only by the embedding ops, always as their first operand, and those ops
  /// read nothing else as their first operand.
  static func tableUseProblems(_ function: Function, tables: Set<String>) -> [Diagnostic] {
    func table(_ v: ValueID) -> String? {
      if case .global(let name) = function[v].definition, tables.contains(name) { return name }
      return nil
    }
    var problems: [Diagnostic] = []
    for id in function.body {
      let op = function[id]
      let at = op.location ?? function.location
      let isLookup = op.code == .embeddingLookup || op.code == .embeddingLookupPooled
      for (k, operand) in op.operands.enumerated() {
        if let name = table(operand), !(isLookup && k == 0) {
          problems.append(Diagnostic("\(describe(op, in: function)): '@\(name)' is an embedding table; only embedding_lookup and embedding_lookup_pooled read it", at: at))
        }
      }
      if isLookup, let first = op.operands.first, table(first) == nil {
        problems.append(Diagnostic("\(describe(op, in: function)): the first operand must be an embedding table ('@name' declared with 'table')", at: at))
      }
    }
    return problems
  }

  static func describe(_ op: OpNode, in function: Function) -> String {
    let names = op.results.map { "%" + function[$0].name }.joined(separator: ", ")
    return "'\(op.code)' op defining \(names)"
  }

  public static func verify(_ function: Function, paramTypes: [String: TensorType],
                            signatures: [String: (arguments: [TensorType], results: [TensorType])]) -> [Diagnostic] {
    var problems: [Diagnostic] = []
    var defined = Set<ValueID>(function.arguments)
    for (i, value) in function.values.enumerated() {
      if case .global(let name) = value.definition {
        if let declared = paramTypes[name] {
          if declared != value.type {
            problems.append(Diagnostic("'@\(name)' is used as \(value.type) but declared \(declared)", at: function.location))
          }
        } else {
          problems.append(Diagnostic("use of undefined parameter '@\(name)' in '@\(function.name)'", at: function.location))
        }
        defined.insert(ValueID(i))
      }
    }
    var bound = Set<String>()
    for t in function.argumentTypes { bound.formUnion(t.symbols) }
    for t in function.resultTypes {
      for s in t.symbols where !bound.contains(s) {
        problems.append(Diagnostic("result dimension \(s) of '@\(function.name)' is not bound by any argument", at: function.location))
      }
    }

    for opID in function.body {
      let op = function[opID]
      let at = op.location ?? function.location
      let what = describe(op, in: function)
      var opProblems: [String] = []
      for operand in op.operands where !defined.contains(operand) {
        opProblems.append("operand \(operand.index < function.values.count ? "%" + function[operand].name : "\(operand)") is used before it is defined")
      }
      let info = op.code.info
      if op.code != .call && !info.operands.contains(op.operands.count) {
        opProblems.append("expects \(info.operands) operands, got \(op.operands.count)")
      }
      opProblems += attributeProblems(op)
      if opProblems.isEmpty, let first = op.operands.first, !info.dtypes.admits(function.type(of: first).dtype) {
        opProblems.append("operand has element type \(function.type(of: first).dtype), but '\(op.code)' needs \(info.dtypes.phrase)")
      }
      let declared = op.results.map { function.type(of: $0) }
      for t in declared {
        for s in t.symbols where !bound.contains(s) {
          opProblems.append("dimension \(s) in result type \(t) is not bound by any argument of '@\(function.name)'")
        }
      }
      if opProblems.isEmpty {
        let input = ShapeRuleInput(operands: op.operands.map { function.type(of: $0) }, attributes: op.attributes,
                                   declared: declared, callee: op.callee, signature: { signatures[$0] }, body: op.body)
        do {
          let inferred = try info.shapeRule(input)
          if let tooBig = inferred.first(where: { $0.staticShape.map { elementCount($0) == nil } ?? false }) {
            opProblems.append("result type \(tooBig) has too many elements (the limit is 2^40)")
          } else if inferred.count != declared.count {
            opProblems.append("has \(inferred.count) result\(inferred.count == 1 ? "" : "s") but declares \(declared.count)")
          } else {
            for (d, i) in zip(declared, inferred) where d != i {
              opProblems.append("result type \(d) does not match the inferred type \(i)")
            }
          }
        } catch let error as ShapeError {
          opProblems.append(error.message)
        } catch {
          opProblems.append("\(error)")
        }
      }
      if op.code == .constant, let value = op.constantValue, let type = declared.first {
        if value.dtype != type.dtype || (value.shape != [] && value.shape != type.staticShape) {
          opProblems.append("literal \(value.type) does not match result type \(type)")
        }
      }
      if op.code != .fusion && !op.regions.isEmpty { opProblems.append("only a fusion has a body") }
      if let body = op.body, op.code == .fusion {
        // The body's arguments are the operands: same types, symbols included (a body carrying
        // a callee's symbols after inlining would compile to a kernel nothing can bind).
        if body.arguments.count != op.operands.count {
          opProblems.append("the body takes \(body.arguments.count) arguments for \(op.operands.count) operands")
        } else {
          for (k, (argument, operand)) in zip(body.arguments, op.operands).enumerated()
          where body.type(of: argument) != function.type(of: operand) {
            opProblems.append("body argument \(k) is \(body.type(of: argument)) but its operand %\(function[operand].name) is \(function.type(of: operand))")
          }
        }
        if body.resultTypes != op.results.map({ function.type(of: $0) }) {
          opProblems.append("the body returns \(body.resultTypes.map(\.description).joined(separator: ", ")) but the fusion's results are \(op.results.map { function.type(of: $0).description }.joined(separator: ", "))")
        }
        for inner in body.body where body[inner].code == .fusion || body[inner].code == .call {
          problems.append(Diagnostic("a fusion body cannot contain '\(body[inner].code)'", at: body[inner].location ?? at))
        }
        problems += verify(body, paramTypes: [:], signatures: [:])
      }
      problems += opProblems.map { Diagnostic("\(what): \($0)", at: at) }
      defined.formUnion(op.results)
    }

    let at = function.returnLocation ?? function.location
    if function.returnValues.count != function.resultTypes.count {
      problems.append(Diagnostic("'@\(function.name)' declares \(function.resultTypes.count) result\(function.resultTypes.count == 1 ? "" : "s") but returns \(function.returnValues.count)", at: at))
    } else {
      for (i, (value, type)) in zip(function.returnValues, function.resultTypes).enumerated() {
        if !defined.contains(value) {
          problems.append(Diagnostic("returned value %\(function[value].name) is not defined", at: at))
        } else if function.type(of: value) != type {
          problems.append(Diagnostic("result \(i) of '@\(function.name)' is declared \(type) but %\(function[value].name) is \(function.type(of: value))", at: at))
        }
      }
    }
    return problems
  }

  static func attributeProblems(_ op: OpNode) -> [String] {
    let info = op.code.info
    var problems: [String] = []
    for (key, value) in op.attributes.sortedPairs {
      if op.code == .constant && key == "value" {
        if case .tensor = value { continue }
        problems.append("attribute 'value' must be a tensor literal")
        continue
      }
      guard let spec = info.attributeSpec(key) else {
        let known = info.attributes.map { "'\($0.name)'" }.joined(separator: ", ")
        problems.append("unknown attribute '\(key)'" + (known.isEmpty ? " (the op takes none)" : " (expected \(known))"))
        continue
      }
      if !spec.kind.accepts(value) {
        let article = spec.kind.name.hasPrefix("i") ? "an" : "a"
        problems.append("attribute '\(key)' must be \(article) \(spec.kind.name), got \(value.kindName) \(value)")
      }
    }
    for spec in info.attributes where spec.required && op.attributes[spec.name] == nil {
      problems.append("missing required attribute '\(spec.name)'")
    }
    if op.code == .constant && op.constantValue == nil { problems.append("missing its literal value") }
    return problems
  }

  /// Calls must form a DAG: a recursive function would never finish in the interpreter.
  static func recursionProblems(_ module: Module) -> [Diagnostic] {
    var callees: [String: [(String, SourceLocation?)]] = [:]
    for f in module.functions {
      callees[f.name] = f.body.compactMap { id in
        let op = f[id]
        return op.code == .call ? op.callee.map { ($0, op.location) } : nil
      }
    }
    var problems: [Diagnostic] = []
    var state: [String: Int] = [:]  // 1 = on the stack, 2 = done
    func visit(_ name: String) {
      state[name] = 1
      for (callee, location) in callees[name] ?? [] {
        if state[callee] == 1 {
          problems.append(Diagnostic("call to '@\(callee)' from '@\(name)' is recursive; recursion is not supported", at: location))
        } else if state[callee] == nil, callees[callee] != nil {
          visit(callee)
        }
      }
      state[name] = 2
    }
    for f in module.functions where state[f.name] == nil { visit(f.name) }
    return problems
  }
}

/// The parameter initializers, their parameters (in positional order) and defaults.
public enum InitializerSpec {
  public static let parameters: [String: [(name: String, defaultValue: Double?)]] = [
    "zeros": [],
    "ones": [],
    "constant": [("value", nil)],
    "normal": [("mean", 0), ("std", 1), ("seed", 0)],
    "truncated_normal": [("mean", 0), ("std", 1), ("seed", 0)],
    "uniform": [("low", 0), ("high", 1), ("seed", 0)],
    "glorot_uniform": [("seed", 0)],
    "glorot_normal": [("seed", 0)],
    "he_normal": [("seed", 0)],
    "he_uniform": [("seed", 0)],
  ]

  /// The initializer's parameters with defaults filled in, or an error message.
  public static func resolve(_ initializer: Initializer) -> Result<[String: Double], InitializerError> {
    guard let spec = parameters[initializer.kind] else {
      return .failure(.init(message: "unknown initializer '\(initializer.kind)' (expected one of \(parameters.keys.sorted().joined(separator: ", ")))"))
    }
    var values: [String: Double] = [:]
    var position = 0
    var sawLabel = false
    for argument in initializer.arguments {
      if let label = argument.label {
        sawLabel = true
        guard spec.contains(where: { $0.name == label }) else {
          return .failure(.init(message: "initializer '\(initializer.kind)' has no parameter '\(label)'"))
        }
        guard values[label] == nil else { return .failure(.init(message: "parameter '\(label)' is given twice")) }
        values[label] = argument.value
      } else {
        guard !sawLabel else { return .failure(.init(message: "positional arguments must come before labelled ones")) }
        guard position < spec.count else {
          return .failure(.init(message: "initializer '\(initializer.kind)' takes at most \(spec.count) argument\(spec.count == 1 ? "" : "s")"))
        }
        values[spec[position].name] = argument.value
        position += 1
      }
    }
    for p in spec where values[p.name] == nil {
      guard let d = p.defaultValue else {
        return .failure(.init(message: "initializer '\(initializer.kind)' needs '\(p.name)'"))
      }
      values[p.name] = d
    }
    if let seed = values["seed"], seed != seed.rounded() || seed < 0 || seed > 9.007199254740992e15 {
      return .failure(.init(message: "seed must be a non-negative integer"))
    }
    if let std = values["std"], !(std >= 0) { return .failure(.init(message: "std must be non-negative")) }
    if let low = values["low"], let high = values["high"], !(low <= high) {
      return .failure(.init(message: "uniform needs low <= high"))
    }
    return .success(values)
  }

  public struct InitializerError: Error { public var message: String }

  static func validate(_ initializer: Initializer, type: TensorType) -> String? {
    switch resolve(initializer) {
    case .failure(let error): return error.message
    case .success:
      if initializer.kind != "zeros" && initializer.kind != "ones" && initializer.kind != "constant" && !type.dtype.isFloat {
        return "initializer '\(initializer.kind)' needs a float type, got \(type.dtype)"
      }
      return nil
    }
  }
}
