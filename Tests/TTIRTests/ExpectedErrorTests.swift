// Malformed inputs with the exact line, column and message of their first diagnostic, in the style
// of MLIR's expected-error tests: Inputs/invalid.ttir and the ```ttir-error blocks of IR-specs/.
import Foundation
import Testing
import TTIR

struct ExpectedError: CustomTestStringConvertible, Sendable {
  var origin: String
  var source: String
  var line: Int
  var column: Int
  var message: String
  var testDescription: String { "\(origin): \(message)" }

  /// Splits a file at `// -----` and reads each chunk's `expected-error@+N:C {{text}}` annotation.
  static func load(_ text: String, origin: String) -> [ExpectedError] {
    var cases: [ExpectedError] = []
    let chunks = text.components(separatedBy: "\n// -----\n")
    for (index, chunk) in chunks.enumerated() {
      let lines = chunk.split(separator: "\n", omittingEmptySubsequences: false)
      for (lineIndex, line) in lines.enumerated() {
        guard let marker = line.range(of: "expected-error@+") else { continue }
        let rest = line[marker.upperBound...]
        guard let colon = rest.firstIndex(of: ":"), let open = rest.range(of: "{{"), let close = rest.range(of: "}}"),
              let offset = Int(rest[..<colon]),
              let column = Int(rest[rest.index(after: colon)..<open.lowerBound].trimmingCharacters(in: .whitespaces))
        else { continue }
        cases.append(ExpectedError(origin: "\(origin) case \(index + 1)", source: chunk, line: lineIndex + 1 + offset,
                                   column: column, message: String(rest[open.upperBound..<close.lowerBound])))
      }
    }
    return cases
  }

  static let all: [ExpectedError] = {
    var cases: [ExpectedError] = []
    let invalid = Corpus.repository.appendingPathComponent("Tests/TTIRTests/Inputs/invalid.ttir")
    if let text = try? String(contentsOf: invalid, encoding: .utf8) { cases += load(text, origin: "invalid.ttir") }
    for url in Corpus.files(in: "IR-specs", suffix: ".md") {
      guard let text = try? String(contentsOf: url, encoding: .utf8) else { continue }
      for (i, block) in Corpus.ttirBlocks(of: text, fence: "```ttir-error").enumerated() {
        cases += load(block, origin: "\(url.lastPathComponent) error block \(i + 1)")
      }
    }
    return cases
  }()
}

struct ExpectedErrorTests {
  @Test func thereAreAtLeastFortyCases() {
    #expect(ExpectedError.all.count >= 40)
  }

  @Test(arguments: ExpectedError.all)
  func firstDiagnosticMatches(_ expected: ExpectedError) throws {
    let found = diagnostics(of: expected.source)
    let first = try #require(found.first, "no diagnostic for \(expected.origin)")
    #expect(first.location?.line == expected.line && first.location?.column == expected.column,
            "\(expected.origin): expected \(expected.line):\(expected.column), got \(first)")
    #expect(first.message.contains(expected.message), "\(expected.origin): got \(first)")
  }

  @Test func renderingIsClangStyleWithCaret() throws {
    let source = "module @m {\n  func @f(%x: f32[4]) -> f32[4] {\n    %r = bogus %x : f32[4]\n    return %r\n  }\n}\n"
    let first = try #require(diagnostics(of: source).first)
    #expect(first.render(file: "m.ttir", source: source) == """
      m.ttir:3:10: error: unknown op 'bogus'
          %r = bogus %x : f32[4]
               ^
      """)
  }

  @Test func verifierReportsEveryProblem() {
    let source = """
      module @m {
        func @f(%a: f32[3], %b: f32[4]) -> f32[4] {
          %r = add %a, %b : f32[4]
          %s = exp %r : f32[5]
          return %s
        }
      }
      """
    let found = diagnostics(of: source)
    #expect(found.count == 3)  // bad broadcast, wrong declared type, wrong return type
    #expect(found.map { $0.location?.line } == [3, 4, 5])
  }
}
