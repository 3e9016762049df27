// IR-specs examples are executable: every ```ttir block with a function @example and
// `// expect: LITERAL` lines is run by the interpreter, and result i must equal the i-th literal.
import Foundation
import Testing
import TTIR
import TTInterp

struct SpecExample: CustomTestStringConvertible, Sendable {
  var origin: String
  var source: String
  var expected: [String]
  var testDescription: String { origin }

  static let all: [SpecExample] = {
    var examples: [SpecExample] = []
    let walker = FileManager.default.enumerator(at: Paths.specs, includingPropertiesForKeys: nil)
    let files = (walker?.compactMap { $0 as? URL } ?? []).filter { $0.pathExtension == "md" }.sorted { $0.path < $1.path }
    for url in files {
      guard let text = try? String(contentsOf: url, encoding: .utf8) else { continue }
      var block: [Substring]? = nil
      var index = 0
      for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
        if block == nil, line == "```ttir" { block = []; index += 1 }
        else if block != nil, line == "```" {
          let source = block!.joined(separator: "\n")
          let expected = block!.compactMap { l -> String? in
            guard let r = l.range(of: "// expect: ") else { return nil }
            return String(l[r.upperBound...])
          }
          if !expected.isEmpty { examples.append(SpecExample(origin: "\(url.lastPathComponent) block \(index)", source: source, expected: expected)) }
          block = nil
        } else if block != nil { block!.append(line) }
      }
    }
    return examples
  }()
}

struct SpecExampleTests {
  @Test func everyOpPageHasARunnableExample() {
    let pages = Set(SpecExample.all.map { $0.origin.split(separator: " ")[0] })
    for page in ["sources.md", "elementwise.md", "reductions.md", "linalg.md", "layout.md", "nn.md", "random.md", "functions.md", "types.md"] {
      #expect(pages.contains(Substring(page)), "\(page) has no example with // expect:")
    }
  }

  @Test(arguments: SpecExample.all)
  func exampleProducesItsStatedResults(_ example: SpecExample) throws {
    let module = try Parser.parseAndVerify(example.source)
    let function = try #require(module.function(named: "example"))
    #expect(function.resultTypes.count == example.expected.count, "one // expect: line per result")
    let results = try Interpreter(module: module).run("example", [])
    for (i, (result, literal)) in zip(results, example.expected).enumerated() {
      let type = function.resultTypes[i]
      let wrapper = "module @expect {\n  func @f() -> \(type) {\n    %e = constant \(literal) : \(type)\n    return %e\n  }\n}\n"
      let expected = try Interpreter(module: try Parser.parseAndVerify(wrapper)).run("f", [])[0]
      #expect(mismatch(result, expected) == nil, "\(example.origin) result \(i): \(mismatch(result, expected) ?? "") got \(result)")
    }
  }
}
