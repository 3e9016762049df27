// Printing is canonical: for every valid TTIR text in the repository, print(parse(x)) is a fixed
// point of parse-then-print, and it verifies.
import Testing
import TTIR

struct RoundTripTests {
  @Test func corpusIsNotEmpty() {
    #expect(Corpus.validSources.count >= 100)
    #expect(Corpus.validSources.contains { $0.name == "mlp.ttir" })
    #expect(Corpus.validSources.contains { $0.name.hasSuffix(".md#1") })
  }

  @Test(arguments: Corpus.validSources.map(\.name))
  func printParsePrintIsStable(_ name: String) throws {
    let text = try #require(Corpus.validSources.first { $0.name == name }?.text)
    let module = try Parser.parseAndVerify(text)
    let printed = Printer.print(module)
    let reparsed = try Parser.parseAndVerify(printed)
    #expect(Printer.print(reparsed) == printed)
    #expect(reparsed == module || Printer.print(reparsed) == printed)
  }

  @Test func specialFloatsSurviveTheRoundTrip() throws {
    let text = """
      module @m {
        func @f() -> (f32[5], f64[2], bf16[2], f16[1]) {
          %a = constant [inf, -inf, nan, -0.0, 0.1] : f32[5]
          %b = constant [1e-300, 0.1] : f64[2]
          %c = constant [3.14159, 1e30] : bf16[2]
          %d = constant 65504.0 : f16[1]
          return %a, %b, %c, %d
        }
      }
      """
    let printed = Printer.print(try Parser.parseAndVerify(text))
    #expect(printed.contains("[inf, -inf, nan, -0.0, 0.1] : f32[5]"))
    #expect(printed.contains("[1e-300, 0.1] : f64[2]"))
    // Rounded to bf16 when parsed, printed as the shortest decimal that rounds back to it.
    #expect(printed.contains("[3.14, 1e+30] : bf16[2]"))
    #expect(printed.contains("%d = constant 65500.0 : f16[1]"))       // a splat stays a splat
    #expect(Printer.print(try Parser.parseAndVerify(printed)) == printed)
  }

  @Test func canonicalFormSortsAttributesAndDropsComments() throws {
    let text = """
      module @m {  // comment
        func @f(%x: f32[2, 3]) -> f32[2, 1] {
          %r = reduce_sum %x {keepdims = true, axes = [1]} : f32[2, 1]   // sum rows
          return %r
        }
      }
      """
    #expect(Printer.print(try Parser.parseAndVerify(text)) == """
      module @m {
        func @f(%x: f32[2, 3]) -> f32[2, 1] {
          %r = reduce_sum %x {axes = [1], keepdims = true} : f32[2, 1]
          return %r
        }
      }

      """)
  }

  @Test func printerRenamesClashingValuesInBuiltGraphs() throws {
    var function = Function(name: "f", resultTypes: [TensorType(.f32, shape: [2])])
    let x = function.addArgument(name: "x", type: TensorType(.f32, shape: [2]))
    let a = function.append(.neg, [x], resultTypes: [TensorType(.f32, shape: [2])], resultNames: ["x"])
    function.returnValues = [function[a].results[0]]
    var module = Module(name: "built")
    module.functions = [function]
    let printed = Printer.print(module)
    #expect(printed.contains("%x.1 = neg %x : f32[2]"))
    #expect(Printer.print(try Parser.parseAndVerify(printed)) == printed)
  }
}
