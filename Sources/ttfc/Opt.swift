// `ttfc opt FILE` — run a pass pipeline and print the optimized IR (like mlir-opt or hlo-opt).
// Diagnostics, --stats, --print-ir-after* and --explain-fusion go to stderr so stdout is the IR.
import ArgumentParser
import Foundation
import TTIR
import TTPasses

/// Pipeline options shared by `opt` and `compile`.
struct PipelineOptions: ParsableArguments {
  @Option(name: .customShort("O", allowingJoined: true), help: "Optimization level 0, 1 or 2.")
  var level: Int = 2

  @Option(name: [.customShort("p"), .customLong("passes")],
          help: ArgumentHelp("An explicit pipeline: comma-separated pass names (\((Pipelines.passes.map(\.name) + ["canonicalize", "inference"]).joined(separator: ", "))). Overrides -O."))
  var passes: String?

  @Flag(help: "The serving pipeline (inline, fold-batch-norm, canonicalize, fusion, dce): batch norm folded into convolutions. Same as -p inference.")
  var inference = false

  @Flag(help: "Allow rewrites that ignore IEEE corner cases (NaN, inf, -0.0, rounding), e.g. x*0 -> 0.")
  var fastMath = false

  @Flag(help: "Verify the module after every pass; stop at the first pass that breaks it.")
  var verifyEach = false

  @Flag(help: "Print the IR after every pass (to stderr).")
  var printIrAfterAll = false

  @Option(help: "Print the IR after each run of the named pass (to stderr).")
  var printIrAfter: String?

  @Flag(help: "Print per-pass statistics and times (to stderr).")
  var stats = false

  @Flag(help: "For each producer/consumer pair that did not fuse, print the rule that kept them apart (to stderr).")
  var explainFusion = false

  @Option(help: "The half type the amp pass lowers to: bf16 (default) or f16.")
  var ampType: String?

  @Flag(help: "For each op the amp pass saw, print the precision it got and why (to stderr).")
  var explainAmp = false

  func pipeline() throws -> Pipeline {
    if inference {
      guard passes == nil else { throw fail("--inference and -p name two pipelines: give one") }
      return Pipeline(Pipelines.inference)
    }
    if let passes {
      switch Pipelines.parse(passes) {
      case .success(let p): return p
      case .failure(let e): throw fail(e.message)
      }
    }
    guard (0...2).contains(level) else { throw fail("-O\(level): the levels are 0, 1 and 2") }
    return Pipelines.standard(level: level)
  }

  /// Runs the pipeline on `module`, printing what the flags ask for; throws after printing on failure.
  func optimize(_ module: inout Module) throws -> PassContext {
    let pipeline = try pipeline()
    if let name = printIrAfter, !pipeline.passNames.contains(name) {
      throw fail("--print-ir-after=\(name): the pipeline has no pass '\(name)' (it runs: \(pipeline.passNames.joined(separator: ", ")))")
    }
    var options = PassOptions()
    options.fastMath = fastMath
    options.explainFusion = explainFusion
    if let ampType {
      guard let half = DType(rawValue: ampType), half == .bf16 || half == .f16 else {
        throw fail("--amp-type \(ampType): the half types are bf16 and f16")
      }
      options.ampType = half
    }
    for (flag, given) in [("--explain-amp", explainAmp), ("--amp-type", ampType != nil)] where given && !pipeline.passNames.contains("amp") {
      throw fail("\(flag): the pipeline has no amp pass (add it: -p amp,...)")
    }
    let context = PassContext(options: options)
    var manager = PassManager(verifyEach: verifyEach)
    let printAll = printIrAfterAll, printAfter = printIrAfter
    manager.afterPass = { name, changed, module in
      guard printAll || name == printAfter else { return }
      print("// ----- IR after \(name)\(changed ? "" : " (unchanged)") -----", to: &standardError)
      print(Printer.print(module), terminator: "", to: &standardError)
    }
    do { try manager.run(pipeline, on: &module, context: context) }
    catch { throw fail("\(error)") }
    for warning in context.warnings { print("warning: \(warning)", to: &standardError) }
    if stats { print(context.report(), to: &standardError) }
    if explainFusion {
      print(context.fusionExplanations.isEmpty ? "explain-fusion: every producer/consumer pair fused (or fusion did not run)"
            : context.fusionExplanations.joined(separator: "\n"), to: &standardError)
    }
    if explainAmp {
      print(context.ampExplanations.isEmpty ? "explain-amp: no op lowered (no f32 allow-list op)"
            : context.ampExplanations.map { "amp: \($0)" }.joined(separator: "\n"), to: &standardError)
    }
    return context
  }
}

struct Opt: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Optimize a TTIR file and print the result.",
    usage: "ttfc opt <file> [-O <level> | -p <passes>] [<options>]",
    discussion: helpText("""
      Examples:
        ttfc opt examples/mlp.ttir --stats            # -O2, with statistics
        ttfc opt model.ttir -p simplify,dce           # an explicit pipeline
        ttfc opt model.ttir -O1 --print-ir-after-all  # watch each pass

      -O2 canonicalizes, fuses, cleans up and schedules. Regression tests split one file into
      cases with --split-input-file (at lines `// -----`).
      """))

  @Argument(help: "The .ttir file to optimize.")
  var file: String

  @OptionGroup var pipeline: PipelineOptions

  @Option(name: .shortAndLong, help: "Write the result here instead of stdout.")
  var output: String?

  @Flag(help: "Treat `// -----` lines as separators between independent modules (for lit tests).")
  var splitInputFile = false

  func run() throws {
    let source = try SourceFile.read(file)
    let chunks = splitInputFile ? source.text.components(separatedBy: "\n// -----\n") : [source.text]
    var outputs: [String] = []
    var failed = false
    for chunk in chunks {
      do {
        var module = try SourceFile(path: source.path, text: chunk).module()
        _ = try pipeline.optimize(&module)
        outputs.append(Printer.print(module))
      } catch {
        failed = true
      }
    }
    let text = outputs.joined(separator: "// -----\n")
    if let output {
      try writeOutput(text, to: output)
    } else {
      print(text, terminator: "")
    }
    if failed { throw ExitCode.failure }
  }
}
