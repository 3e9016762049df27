// Printer — writes a Module as canonical TTIR text: two-space indentation, attributes in sorted key
// order, floats in their shortest round-tripping spelling, one blank line between declarations,
// no comments. Canonical means print(parse(print(m))) == print(m) for every valid module; the
// round-trip tests hold the printer to it. Value names are kept from the source; a name used twice
// (possible only in graphs built by passes) gets a `.N` suffix so the output always parses.

public enum Printer {
  public static func print(_ module: Module) -> String {
    var out = "module @\(module.name) {\n"
    for param in module.params {
      out += "  param @\(param.name) : \(param.type)"
      if let initializer = param.initializer { out += " = \(initializer)" }
      out += "\n"
    }
    for table in module.tables {
      out += "  table @\(table.name) : \(table.rowType)"
      if let initializer = table.initializer { out += " = \(initializer)" }
      let attributes = table.attributes.sortedPairs
      if !attributes.isEmpty { out += " {" + attributes.map { "\($0.key) = \($0.value)" }.joined(separator: ", ") + "}" }
      out += "\n"
    }
    for (i, function) in module.functions.enumerated() {
      if i > 0 || !module.params.isEmpty || !module.tables.isEmpty { out += "\n" }
      out += print(function, indent: "  ")
    }
    out += "}\n"
    return out
  }

  public static func print(_ function: Function, indent: String = "") -> String {
    let names = uniqueNames(function)
    var out = indent + "func @\(function.name)("
    out += function.arguments.map { "%\(names[$0.index]): \(function.type(of: $0))" }.joined(separator: ", ")
    out += ") -> "
    if function.resultTypes.count == 1 { out += function.resultTypes[0].description }
    else { out += "(" + function.resultTypes.map(\.description).joined(separator: ", ") + ")" }
    out += " {\n" + printBody(function, indent: indent) + indent + "}\n"
    return out
  }

  /// The ops and the return of a function or fusion body, each line indented by `indent` + 2.
  static func printBody(_ function: Function, indent: String) -> String {
    let names = uniqueNames(function)
    func ref(_ v: ValueID) -> String {
      if case .global(let g) = function[v].definition { return "@" + g }
      return "%" + names[v.index]
    }
    var out = ""
    for opID in function.body {
      let op = function[opID]
      out += indent + "  " + op.results.map(ref).joined(separator: ", ") + " = \(op.code)"
      switch op.code {
      case .constant:
        if let value = op.constantValue { out += " " + TensorLiteral.format(value, limit: nil) }
      case .call:
        out += " @\(op.callee ?? "?")(" + op.operands.map(ref).joined(separator: ", ") + ")"
      case .fusion:
        let body = op.body
        let bodyNames = body.map(uniqueNames) ?? []
        let bindings = op.operands.enumerated().map { i, v in
          let argument = body.map { i < $0.arguments.count ? "%" + bodyNames[$0.arguments[i].index] : "%?" } ?? "%?"
          return "\(argument) = \(ref(v))"
        }
        out += "(" + bindings.joined(separator: ", ") + ")"
      default:
        if !op.operands.isEmpty { out += " " + op.operands.map(ref).joined(separator: ", ") }
      }
      let attributes = op.attributes.sortedPairs.filter { !(op.code == .constant && $0.key == "value") }
      if !attributes.isEmpty {
        out += " {" + attributes.map { "\($0.key) = \($0.value)" }.joined(separator: ", ") + "}"
      }
      out += " : " + op.results.map { function.type(of: $0).description }.joined(separator: ", ")
      if let body = op.body {
        out += " {\n" + printBody(body, indent: indent + "  ") + indent + "  }"
      }
      out += "\n"
    }
    out += indent + "  return"
    if !function.returnValues.isEmpty { out += " " + function.returnValues.map(ref).joined(separator: ", ") }
    return out + "\n"
  }

  /// Names for every value, unique within the function and valid in the grammar.
  static func uniqueNames(_ function: Function) -> [String] {
    var used = Set<String>()
    var names = [String](repeating: "", count: function.values.count)
    func isValid(_ name: String) -> Bool {
      !name.isEmpty && name.utf8.allSatisfy { c in
        (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x5F || c == 0x2E || c == 0x24
      }
    }
    for (i, value) in function.values.enumerated() {
      if case .global = value.definition { names[i] = value.name; continue }
      var name = isValid(value.name) ? value.name : "v\(i)"
      if used.contains(name) {
        var k = 1
        while used.contains("\(name).\(k)") { k += 1 }
        name = "\(name).\(k)"
      }
      used.insert(name)
      names[i] = name
    }
    return names
  }
}
