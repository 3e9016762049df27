// ttfc — the command-line driver. Each subcommand lives in its own file; this one only lists them.
// Errors are printed clang-style to stderr and turn into exit status 1.
import ArgumentParser

@main
struct Ttfc: ParsableCommand {
  static let version = "0.1.0"

  static let configuration = CommandConfiguration(
    commandName: "ttfc",
    abstract: "A training compiler for TTIR models: check, format and run them.",
    discussion: """
      Models are written in TTIR (.ttir), a textual dataflow IR; see IR-specs/ for the language.
      Start with `ttfc check examples/mlp.ttir`, then
        ttfc run examples/mlp.ttir --func logits --random-inputs --dim B=4
      to see a model execute on the reference interpreter.
      """,
    version: version,
    subcommands: [Check.self, Fmt.self, Opt.self, Compile.self, Run.self, Train.self, NCF.self, Version.self]
  )
}
