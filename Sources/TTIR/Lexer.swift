// Lexer — turns TTIR source text into tokens with their line and column. Works on UTF-8 bytes in a
// single forward pass (positions are tracked incrementally, so lexing is linear in the input).
// Comments run from `//` to the end of the line. Numbers carry their text; the parser converts them
// so it can report overflow at the right place.

public struct Token: Sendable, CustomStringConvertible {
  public enum Kind: Sendable, Equatable {
    case identifier        // module, f32, add, B, true, inf, ...
    case valueName         // %x  (text holds the name without %)
    case globalName        // @w1 (text holds the name without @)
    case integer           // 42, -7
    case float             // 1.5, -2e-3
    case string            // "text" (text holds the unescaped contents)
    case lBrace, rBrace, lParen, rParen, lBracket, rBracket
    case comma, colon, equal, arrow, minus
    case endOfFile
    case invalid           // text holds the message
  }
  public var kind: Kind
  public var text: String
  public var location: SourceLocation

  public var description: String {
    switch kind {
    case .identifier, .integer, .float: return "'\(text)'"
    case .valueName: return "'%\(text)'"
    case .globalName: return "'@\(text)'"
    case .string: return "string"
    case .lBrace: return "'{'"
    case .rBrace: return "'}'"
    case .lParen: return "'('"
    case .rParen: return "')'"
    case .lBracket: return "'['"
    case .rBracket: return "']'"
    case .comma: return "','"
    case .colon: return "':'"
    case .equal: return "'='"
    case .arrow: return "'->'"
    case .minus: return "'-'"
    case .endOfFile: return "end of file"
    case .invalid: return "invalid token"
    }
  }
}

public struct Lexer {
  private let bytes: [UInt8]
  private var position = 0
  private var line = 1
  private var lineStart = 0

  /// The comments passed so far, in order.
  public private(set) var comments: [SourceComment] = []

  public init(_ source: String) { bytes = Array(source.utf8) }

  /// Every comment of `source` (a comment-like text inside a string literal is not one).
  public static func comments(in source: String) -> [SourceComment] {
    var lexer = Lexer(source)
    while true {
      let kind = lexer.next().kind
      if kind == .endOfFile || kind == .invalid { return lexer.comments }
    }
  }

  /// Lexes the whole input; the last token is `.endOfFile` (or `.invalid`, which stops lexing).
  public static func tokenize(_ source: String) -> [Token] {
    var lexer = Lexer(source)
    var tokens: [Token] = []
    while true {
      let token = lexer.next()
      tokens.append(token)
      if token.kind == .endOfFile || token.kind == .invalid { return tokens }
    }
  }

  private var location: SourceLocation { SourceLocation(line: line, column: position - lineStart + 1) }

  private func peek(_ offset: Int = 0) -> UInt8? {
    let i = position + offset
    return i < bytes.count ? bytes[i] : nil
  }

  private static func isIdentStart(_ c: UInt8) -> Bool {
    (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x5F
  }
  private static func isDigit(_ c: UInt8) -> Bool { c >= 0x30 && c <= 0x39 }
  private static func isIdentBody(_ c: UInt8) -> Bool { isIdentStart(c) || isDigit(c) || c == 0x2E || c == 0x24 }

  private mutating func skipTrivia() {
    while let c = peek() {
      if c == 0x0A { position += 1; line += 1; lineStart = position }
      else if c == 0x20 || c == 0x09 || c == 0x0D { position += 1 }
      else if c == 0x2F && peek(1) == 0x2F {
        let start = position
        let ownLine = bytes[lineStart..<start].allSatisfy { $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }
        let column = start - lineStart + 1
        while let d = peek(), d != 0x0A { position += 1 }
        var end = position
        while end > start, bytes[end - 1] == 0x0D || bytes[end - 1] == 0x20 || bytes[end - 1] == 0x09 { end -= 1 }
        comments.append(SourceComment(line: line, column: column, text: String(decoding: bytes[start..<end], as: UTF8.self), ownLine: ownLine))
      } else { return }
    }
  }

  private func text(_ start: Int) -> String { String(decoding: bytes[start..<position], as: UTF8.self) }

  public mutating func next() -> Token {
    skipTrivia()
    let start = position
    let loc = location
    guard let c = peek() else { return Token(kind: .endOfFile, text: "", location: loc) }
    func single(_ kind: Token.Kind) -> Token {
      position += 1
      return Token(kind: kind, text: String(UnicodeScalar(c)), location: loc)
    }
    switch c {
    case UInt8(ascii: "{"): return single(.lBrace)
    case UInt8(ascii: "}"): return single(.rBrace)
    case UInt8(ascii: "("): return single(.lParen)
    case UInt8(ascii: ")"): return single(.rParen)
    case UInt8(ascii: "["): return single(.lBracket)
    case UInt8(ascii: "]"): return single(.rBracket)
    case UInt8(ascii: ","): return single(.comma)
    case UInt8(ascii: ":"): return single(.colon)
    case UInt8(ascii: "="): return single(.equal)
    case UInt8(ascii: "-"):
      if peek(1) == UInt8(ascii: ">") { position += 2; return Token(kind: .arrow, text: "->", location: loc) }
      if let d = peek(1), Lexer.isDigit(d) { return number(start, loc) }
      return single(.minus)
    case UInt8(ascii: "%"), UInt8(ascii: "@"):
      position += 1
      let nameStart = position
      while let d = peek(), Lexer.isIdentBody(d) { position += 1 }
      if position == nameStart {
        return Token(kind: .invalid, text: "expected a name after '\(String(UnicodeScalar(c)))'", location: loc)
      }
      return Token(kind: c == UInt8(ascii: "%") ? .valueName : .globalName, text: text(nameStart), location: loc)
    case UInt8(ascii: "\""):
      return string(loc)
    default:
      if Lexer.isDigit(c) { return number(start, loc) }
      if Lexer.isIdentStart(c) {
        while let d = peek(), Lexer.isIdentBody(d) { position += 1 }
        return Token(kind: .identifier, text: text(start), location: loc)
      }
      let shown = c >= 0x20 && c < 0x7F ? "'\(String(UnicodeScalar(c)))'" : "byte 0x\(String(c, radix: 16))"
      return Token(kind: .invalid, text: "unexpected character \(shown)", location: loc)
    }
  }

  private mutating func number(_ start: Int, _ loc: SourceLocation) -> Token {
    if peek() == UInt8(ascii: "-") { position += 1 }
    var isFloat = false
    while let d = peek(), Lexer.isDigit(d) { position += 1 }
    if peek() == UInt8(ascii: "."), let d = peek(1), Lexer.isDigit(d) {
      isFloat = true
      position += 1
      while let d = peek(), Lexer.isDigit(d) { position += 1 }
    }
    if let e = peek(), e == UInt8(ascii: "e") || e == UInt8(ascii: "E") {
      var look = 1
      if let s = peek(1), s == UInt8(ascii: "+") || s == UInt8(ascii: "-") { look = 2 }
      if let d = peek(look), Lexer.isDigit(d) {
        isFloat = true
        position += look
        while let d = peek(), Lexer.isDigit(d) { position += 1 }
      }
    }
    if let d = peek(), Lexer.isIdentStart(d) {
      return Token(kind: .invalid, text: "invalid character in number", location: location)
    }
    return Token(kind: isFloat ? .float : .integer, text: text(start), location: loc)
  }

  private mutating func string(_ loc: SourceLocation) -> Token {
    position += 1
    var out: [UInt8] = []
    while let c = peek() {
      switch c {
      case UInt8(ascii: "\""):
        position += 1
        return Token(kind: .string, text: String(decoding: out, as: UTF8.self), location: loc)
      case 0x0A:
        return Token(kind: .invalid, text: "unterminated string", location: loc)
      case UInt8(ascii: "\\"):
        guard let e = peek(1) else { return Token(kind: .invalid, text: "unterminated string", location: loc) }
        switch e {
        case UInt8(ascii: "n"): out.append(0x0A)
        case UInt8(ascii: "t"): out.append(0x09)
        case UInt8(ascii: "\""), UInt8(ascii: "\\"): out.append(e)
        default:
          return Token(kind: .invalid, text: "unknown escape sequence in string", location: location)
        }
        position += 2
      default:
        out.append(c)
        position += 1
      }
    }
    return Token(kind: .invalid, text: "unterminated string", location: loc)
  }
}
