// Diagnostics — clang-style error reports: `file:line:col: error: message`, followed by the source
// line and a caret under the column. Every stage (lexer, parser, verifier, interpreter's input
// checks) reports through these types so the command-line tool prints them one way.

/// A 1-based line and column in TTIR source.
public struct SourceLocation: Hashable, Sendable, CustomStringConvertible {
  public var line: Int
  public var column: Int
  public init(line: Int, column: Int) { self.line = line; self.column = column }
  public var description: String { "\(line):\(column)" }
}

/// An error, warning or note about TTIR source, at a location when there is one.
public struct Diagnostic: Error, Hashable, Sendable, CustomStringConvertible {
  public enum Severity: String, Sendable { case error, warning, note }
  public var severity: Severity
  public var location: SourceLocation?
  public var message: String

  public init(_ message: String, at location: SourceLocation?, severity: Severity = .error) {
    self.message = message
    self.location = location
    self.severity = severity
  }

  public var description: String {
    if let location { return "\(location): \(severity.rawValue): \(message)" }
    return "\(severity.rawValue): \(message)"
  }

  /// The clang-style rendering with the file name, the offending source line and a caret.
  public func render(file: String, source: String?) -> String {
    guard let location else { return "\(file): \(severity.rawValue): \(message)" }
    var text = "\(file):\(location.line):\(location.column): \(severity.rawValue): \(message)"
    if let source, let line = SourceText.line(location.line, of: source) {
      let visible = line.replacingTabs()
      text += "\n" + visible
      let caretColumn = max(1, min(location.column, visible.count + 1))
      text += "\n" + String(repeating: " ", count: caretColumn - 1) + "^"
    }
    return text
  }
}

/// A list of diagnostics thrown as one error (the verifier reports every problem it finds).
public struct DiagnosticList: Error, Sendable, CustomStringConvertible {
  public var diagnostics: [Diagnostic]
  public init(_ diagnostics: [Diagnostic]) { self.diagnostics = diagnostics }
  public var description: String { diagnostics.map(\.description).joined(separator: "\n") }
  public func render(file: String, source: String?) -> String {
    diagnostics.map { $0.render(file: file, source: source) }.joined(separator: "\n")
  }
}

enum SourceText {
  /// The text of 1-based line `number` (without its newline), or nil past the end.
  static func line(_ number: Int, of source: String) -> String? {
    var current = 1
    var start = source.utf8.startIndex
    var index = start
    let utf8 = source.utf8
    while index != utf8.endIndex {
      if utf8[index] == UInt8(ascii: "\n") {
        if current == number { return String(decoding: utf8[start..<index], as: UTF8.self) }
        current += 1
        start = utf8.index(after: index)
      }
      index = utf8.index(after: index)
    }
    return current == number ? String(decoding: utf8[start..<index], as: UTF8.self) : nil
  }
}

extension String {
  fileprivate func replacingTabs() -> String {
    String(self.map { $0 == "\t" ? " " : $0 })
  }
}
