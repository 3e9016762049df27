// `ttfc compile FILE --emit=KIND` — optimize and emit a compiled form: the optimized IR, or a
// Graphviz picture of the fused graph (each fusion region drawn as a cluster of its ops).
import ArgumentParser
import Foundation
import TTCompiler
import TTIR
import TTPasses
import TTRuntime
import TTCodegen
import TTTrain

struct Compile: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Optimize a model and emit it as IR or as a Graphviz graph of its fusion regions.",
    discussion: helpText("""
      Examples:
        ttfc compile examples/mlp.ttir --emit=ir
        ttfc compile examples/mlp.ttir --emit=dot -o mlp.dot
        dot -Tsvg mlp.dot -o mlp.svg
      """))

  enum Emit: String, ExpressibleByArgument, CaseIterable { case ir, dot, thunks, llvm, asm }

  @Argument(help: "The .ttir model.")
  var file: String

  @Option(help: "What to emit: ir (optimized TTIR), dot (Graphviz, fusion regions as clusters), thunks (the executable's steps), llvm (optimized LLVM IR per kernel) or asm (machine code per kernel).")
  var emit: Emit = .ir

  @Option(name: .customLong("func"), help: "For thunks/llvm/asm: the function to compile (default: all).")
  var function: String?

  @Flag(help: "Differentiate first: add @F.grad (loss, parameter gradients, then the gradients of embedding row inputs) for --func F (default @loss) and emit it too.")
  var grad = false

  @Option(help: "A .npz whose arrays give parameters their values (code does not depend on them: parameters without a value or initializer compile as zeros).")
  var params: String?

  @OptionGroup var pipeline: PipelineOptions

  @Option(name: .shortAndLong, help: "Write the result here instead of stdout.")
  var output: String?

  func run() throws {
    var original = try SourceFile.read(file).module()
    if grad {
      let name = function ?? "loss"
      // Embedding lookups become row inputs first; their gradients follow the parameters'.
      do {
        let (lowered, sites) = try EmbeddingLowering.lower(original, function: name)
        original = try Autodiff.gradient(of: lowered, function: name, inputs: sites.map(\.rowsInput))
      } catch { throw fail("\(error)") }
    }
    var paramValues: [String: Tensor] = [:]
    if let params {
      do { for (name, tensor) in try NpzArchive.read(path: params) { paramValues[name] = tensor } }
      catch { throw fail("\(error)") }
    }
    var module = original
    let text: String
    switch emit {
    case .ir, .dot:
      _ = try pipeline.optimize(&module)
      text = emit == .ir ? Printer.print(module) : GraphvizWriter.dot(module)
    case .thunks, .llvm, .asm:
      KernelCache.shared.keepListings = true
      var out = ""
      let names = function.map { grad ? [$0 + ".grad"] : [$0] } ?? original.functions.map(\.name)
      for name in names {
        let executable: Executable
        do { executable = try Executable(module: original, function: name, params: paramValues, placeholderParams: true,
                                                    verifyEach: pipeline.verifyEach || CompileOptions.verifyEachByDefault) }
        catch { throw fail("\(error)") }
        out += "// ===== @\(name): \(executable.statistics.kernels) kernels, \(executable.statistics.gemms) BLAS calls, \(executable.statistics.interpreted) interpreted\n"
        if emit == .thunks { out += executable.thunkListing.joined(separator: "\n") + "\n"; continue }
        for kernel in executable.kernels {
          out += "// ----- kernel \(kernel.name) : (\(kernel.signature.inputs.map(\.description).joined(separator: ", "))) -> \(kernel.signature.output)\n"
          out += (emit == .llvm ? kernel.llvmIR : kernel.assembly) ?? "// (compiled before listings were requested)\n"
        }
      }
      text = out
    }
    if let output {
      try writeOutput(text, to: output)
    } else {
      print(text, terminator: "")
    }
  }
}
