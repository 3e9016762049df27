// Printer — writes a Module as canonical TTIR text: two-space indentation, attributes in sorted key
// order, floats in their shortest round-tripping spelling, one blank line between declarations.
// Canonical means print(parse(print(m))) == print(m) for every valid module; the round-trip tests
// hold the printer to it. Value names are kept from the source; a name used twice (possible only
// in graphs built by passes) gets a `.N` suffix so the output always parses. Given the source's
// comments (`Lexer.comments`), `ttfc fmt` prints each back in place: a comment on its own lines
// precedes the next op, parameter, table, function, `return` or closing brace and is printed
// before it at its indentation; a comment after code on a line trails that line's entity. No
// comment is ever dropped: any left over print at the end.

/// A `//` comment of the source: its position, its text (from `//`, trailing blanks removed) and
/// whether it stands on a line of its own.
public struct SourceComment: Hashable, Sendable {
  public var line: Int
  public var column: Int
  public var text: String
  public var ownLine: Bool
  public init(line: Int, column: Int, text: String, ownLine: Bool) {
    self.line = line; self.column = column; self.text = text; self.ownLine = ownLine
  }
}

/// Hands out the source's comments as the printer reaches the entities they belong to.
final class CommentPlacer {
  private let comments: [SourceComment]
  private var next = 0

  init(_ comments: [SourceComment]) { self.comments = comments.sorted { ($0.line, $0.column) < ($1.line, $1.column) } }

  /// Appends to `out` the comments that come before an entity starting at `anchor` (nothing
  /// when it has no source position): a comment on a line of its own as a line, and one that
  /// trailed code (the last line of a construct spanning several lines) at the end of the line
  /// printed last, where it stays attached to that construct.
  func leading(_ anchor: SourceLocation?, indent: String, into out: inout String) {
    guard let anchor else { return }
    while next < comments.count, comments[next].line < anchor.line {
      let comment = comments[next]
      next += 1
      if !comment.ownLine, out.hasSuffix("\n"), let lastLine = out.dropLast().split(separator: "\n", omittingEmptySubsequences: false).last,
         !lastLine.contains("//"), lastLine.contains(where: { $0 != " " }) {
        out.removeLast()
        out += "  " + comment.text + "\n"
      } else {
        out += indent + comment.text + "\n"
      }
    }
  }

  /// Attaches to the last line of `out` a comment that trailed code before `anchor` (the end of
  /// a construct spanning lines), before a blank line or a new block is printed; comments on
  /// lines of their own stay for `leading`.
  func trailingBefore(_ anchor: SourceLocation?, into out: inout String) {
    guard let anchor, next < comments.count, comments[next].line < anchor.line, !comments[next].ownLine,
          out.hasSuffix("\n"), let lastLine = out.dropLast().split(separator: "\n", omittingEmptySubsequences: false).last,
          !lastLine.contains("//"), lastLine.contains(where: { $0 != " " }) else { return }
    out.removeLast()
    out += "  " + comments[next].text + "\n"
    next += 1
  }

  /// The comment that ends the line of an entity starting at `anchor`, with its separating blanks.
  func trailing(_ anchor: SourceLocation?) -> String {
    guard let anchor, next < comments.count, comments[next].line == anchor.line, !comments[next].ownLine else { return "" }
    next += 1
    return "  " + comments[next - 1].text
  }

  /// Whatever is left (comments after the module), one per line.
  func rest() -> String {
    defer { next = comments.count }
    return comments[next...].map { $0.text + "\n" }.joined()
  }
}

/// Writes a ``Module`` or ``Function`` as canonical TTIR text, which ``Parser`` reads back to an
/// equal module.
public enum Printer {
  /// The canonical text of `module`; with the source's `comments`, each printed back in place.
  public static func print(_ module: Module, comments: [SourceComment] = []) -> String {
    let placer = CommentPlacer(comments)
    var out = ""
    placer.leading(module.location, indent: "", into: &out)
    out += "module @\(module.name) {" + placer.trailing(module.location) + "\n"
    for param in module.params {
      placer.leading(param.location, indent: "  ", into: &out)
      out += "  \(param.isState ? "state" : "param") @\(param.name) : \(param.type)"
      if let initializer = param.initializer { out += " = \(initializer)" }
      out += placer.trailing(param.location) + "\n"
    }
    for table in module.tables {
      placer.leading(table.location, indent: "  ", into: &out)
      out += "  table @\(table.name) : \(table.rowType)"
      if let initializer = table.initializer { out += " = \(initializer)" }
      let attributes = table.attributes.sortedPairs
      if !attributes.isEmpty { out += " {" + attributes.map { "\($0.key) = \($0.value)" }.joined(separator: ", ") + "}" }
      out += placer.trailing(table.location) + "\n"
    }
    for (i, function) in module.functions.enumerated() {
      placer.trailingBefore(function.location, into: &out)
      if i > 0 || !module.params.isEmpty || !module.tables.isEmpty { out += "\n" }
      out += print(function, indent: "  ", placer: placer)
    }
    placer.leading(module.endLocation, indent: "  ", into: &out)
    out += "}" + placer.trailing(module.endLocation) + "\n"
    return out + placer.rest()
  }

  public static func print(_ function: Function, indent: String = "") -> String {
    print(function, indent: indent, placer: CommentPlacer([]))
  }

  static func print(_ function: Function, indent: String, placer: CommentPlacer) -> String {
    let names = uniqueNames(function)
    var out = ""
    placer.leading(function.location, indent: indent, into: &out)
    out += indent + "func @\(function.name)("
    out += function.arguments.map { "%\(names[$0.index]): \(function.type(of: $0))" }.joined(separator: ", ")
    out += ") -> "
    if function.resultTypes.count == 1 { out += function.resultTypes[0].description }
    else { out += "(" + function.resultTypes.map(\.description).joined(separator: ", ") + ")" }
    out += " {" + placer.trailing(function.location) + "\n" + printBody(function, indent: indent, placer: placer)
    placer.leading(function.endLocation, indent: indent + "  ", into: &out)
    out += indent + "}" + placer.trailing(function.endLocation) + "\n"
    return out
  }

  /// The ops and the return of a function or fusion body, each line indented by `indent` + 2.
  static func printBody(_ function: Function, indent: String, placer: CommentPlacer) -> String {
    let names = uniqueNames(function)
    func ref(_ v: ValueID) -> String {
      if case .global(let g) = function[v].definition { return "@" + g }
      return "%" + names[v.index]
    }
    var out = ""
    for opID in function.body {
      let op = function[opID]
      placer.leading(op.location, indent: indent + "  ", into: &out)
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
        out += " {" + placer.trailing(op.location) + "\n" + printBody(body, indent: indent + "  ", placer: placer)
        placer.leading(body.endLocation, indent: indent + "    ", into: &out)
        out += indent + "  }" + placer.trailing(body.endLocation)
      } else {
        out += placer.trailing(op.location)
      }
      out += "\n"
    }
    placer.leading(function.returnLocation, indent: indent + "  ", into: &out)
    out += indent + "  return"
    if !function.returnValues.isEmpty { out += " " + function.returnValues.map(ref).joined(separator: ", ") }
    return out + placer.trailing(function.returnLocation) + "\n"
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
