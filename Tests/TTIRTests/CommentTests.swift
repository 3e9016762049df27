// The formatter never loses user text (issue 16, defect 1): comments attach to the op,
// parameter, table, function, `return` or closing brace they precede (or the line they trail)
// and print back in place; formatting is idempotent with comments; a seeded family scatters
// comments through every valid file of the corpus and checks that each survives, once, in order.
import Foundation
import Testing
import TTIR
import TTFuzz

enum Formatting {
  /// `ttfc fmt`'s output for `source`.
  static func format(_ source: String) throws -> String {
    Printer.print(try Parser.parse(source), comments: Lexer.comments(in: source))
  }
  static func commentTexts(_ source: String) -> [String] { Lexer.comments(in: source).map(\.text) }
}

struct CommentTests {
  @Test func commentsPrintBackInPlace() throws {
    let source = """
      // File header.
      module @m { // the module
        // About w.
        param @w : f32[4] = zeros   // trailing w
        table @t : f32[2] = zeros

        // About f,
        // two lines.
        func @f(%x: f32[4]) -> f32[4] {  // header
          // Before a.
          %a = add %x, @w : f32[4]  // after a
          %b.fused = fusion(%a = %a) {kind = "loop"} : f32[4] {  // fusion header
            // inside the body
            %n = neg %a : f32[4]
            return %n  // body return
            // before the body's brace
          }  // after the body's brace
          // Before return.
          return %b.fused
          // Before the closing brace.
        }  // end of f
        // Before the module's end.
      }
      // After everything.
      """
    let formatted = try Formatting.format(source)
    #expect(formatted == """
      // File header.
      module @m {  // the module
        // About w.
        param @w : f32[4] = zeros  // trailing w
        table @t : f32[2] = zeros

        // About f,
        // two lines.
        func @f(%x: f32[4]) -> f32[4] {  // header
          // Before a.
          %a = add %x, @w : f32[4]  // after a
          %b.fused = fusion(%a = %a) {kind = "loop"} : f32[4] {  // fusion header
            // inside the body
            %n = neg %a : f32[4]
            return %n  // body return
            // before the body's brace
          }  // after the body's brace
          // Before return.
          return %b.fused
          // Before the closing brace.
        }  // end of f
        // Before the module's end.
      }
      // After everything.

      """)
    #expect(try Formatting.format(formatted) == formatted, "fmt is idempotent with comments")
    #expect(Formatting.commentTexts(formatted) == Formatting.commentTexts(source))
  }

  /// A comment trailing the last line of a construct that spans lines stays with it (it used to
  /// move onto the next op, or past a parameter to the next function).
  @Test func aCommentAfterAMultiLineConstructStaysWithIt() throws {
    let source = """
      module @m {
        param @w : f32[2] = normal(0.0,
                                   0.1, seed: 1)  // about w
        func @f(%x: f32[2]) -> f32[2] {
          %c = constant [1.0,
                         2.0] : f32[2]  // about c
          %y = add %x, %c : f32[2]
          return %y
        }
      }
      """
    let formatted = try Formatting.format(source)
    #expect(formatted.contains("param @w : f32[2] = normal(0.0, 0.1, seed: 1)  // about w\n"), "\(formatted)")
    #expect(formatted.contains("%c = constant [1.0, 2.0] : f32[2]  // about c\n"), "\(formatted)")
    #expect(try Formatting.format(formatted) == formatted)
  }

  @Test func aCommentLikeStringIsNotAComment() throws {
    let source = "module @m {\n  table @t : f32[2] = zeros {storage = \"f32\"}  // real\n}\n"
    #expect(Formatting.commentTexts(source) == ["// real"])
    #expect(try Formatting.format(source).contains("// real"))
  }

  @Test func everyExampleKeepsItsCommentsAndIsCanonical() throws {
    for url in Corpus.files(in: "examples", suffix: ".ttir") {
      let source = try String(contentsOf: url, encoding: .utf8)
      let formatted = try Formatting.format(source)
      #expect(Formatting.commentTexts(formatted) == Formatting.commentTexts(source), "\(url.lastPathComponent)")
      #expect(formatted == source, "\(url.lastPathComponent) is not in canonical form (ttfc fmt -i)")
    }
  }

  /// Seeded: comments inserted on their own lines or after code at random lines of every valid
  /// corpus text all survive formatting, in order, and a second formatting changes nothing.
  @Test func scatteredCommentsSurviveFormatting() throws {
    var rng = GraphRandom(state: 2026)
    var checked = 0
    for (name, text) in Corpus.validSources {
      guard (try? Parser.parse(text)) != nil else { continue }
      for round in 0..<4 {
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        var serial = 0
        var k = 0
        while k < lines.count {
          if Double.random(in: 0..<1, using: &rng) < 0.3 {
            serial += 1
            if Bool.random(using: &rng) {
              let indent = String(lines[k].prefix { $0 == " " })
              lines.insert(indent + "// note \(serial) of round \(round)", at: k)
              k += 1
            } else if !lines[k].contains("//"), !lines[k].trimmingCharacters(in: .whitespaces).isEmpty {
              lines[k] += "  // tail \(serial)"
            }
          }
          k += 1
        }
        let commented = lines.joined(separator: "\n")
        let formatted = try Formatting.format(commented)
        #expect(Formatting.commentTexts(formatted) == Formatting.commentTexts(commented), "\(name), round \(round)")
        #expect(try Formatting.format(formatted) == formatted, "\(name), round \(round): not idempotent")
        checked += 1
      }
    }
    #expect(checked > 40)
  }
}
