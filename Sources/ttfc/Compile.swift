// `ttfc compile FILE --emit=KIND` — optimize and emit a compiled form: the optimized IR, or a
// Graphviz picture of the fused graph (each fusion region drawn as a cluster of its ops).
import ArgumentParser
import Foundation
import TTIR
import TTPasses

struct Compile: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Optimize a model and emit it as IR or as a Graphviz graph of its fusion regions.",
    discussion: """
      Examples:
        ttfc compile examples/mlp.ttir --emit=ir
        ttfc compile examples/mlp.ttir --emit=dot -o mlp.dot && dot -Tsvg mlp.dot > mlp.svg
      """)

  enum Emit: String, ExpressibleByArgument, CaseIterable { case ir, dot }

  @Argument(help: "The .ttir model.")
  var file: String

  @Option(help: "What to emit: ir (optimized TTIR) or dot (Graphviz, fusion regions as clusters).")
  var emit: Emit = .ir

  @OptionGroup var pipeline: PipelineOptions

  @Option(name: .shortAndLong, help: "Write the result here instead of stdout.")
  var output: String?

  func run() throws {
    var module = try SourceFile.read(file).module()
    _ = try pipeline.optimize(&module)
    let text = emit == .ir ? Printer.print(module) : GraphvizWriter.dot(module)
    if let output {
      do { try text.write(toFile: output, atomically: true, encoding: .utf8) }
      catch { throw fail("cannot write '\(output)': \(error.localizedDescription)") }
    } else {
      print(text, terminator: "")
    }
  }
}
