// ttfc — the command-line driver. Each subcommand lives in its own file; this one only lists them.
// Errors are printed clang-style to stderr and turn into exit status 1.
import ArgumentParser
import Foundation

@main
struct Ttfc: ParsableCommand {
  static let version = "0.1.0"

  static let configuration = CommandConfiguration(
    commandName: "ttfc",
    abstract: "A training compiler for TTIR models: check, format and run them.",
    discussion: helpText("""
      Models are written in TTIR (.ttir), a textual dataflow IR; see IR-specs/ for the language.
      Start with `ttfc check examples/mlp.ttir`, then

        ttfc run examples/mlp.ttir --func logits --random-inputs --dim B=4

      to see a model JIT-compiled and run (add --interpret for the reference interpreter).
      """),
    version: version,
    subcommands: [Check.self, Fmt.self, Opt.self, Compile.self, Run.self, Train.self, NCF.self, Import.self, Version.self]
  )

  /// Runs the command; argument errors print as `error: ...` on stderr like every other error
  /// (ArgumentParser's own spelling is `Error:`), followed by its usage lines.
  static func main() {
    // `ttfc help NAME` with an unknown NAME would print the top-level help and succeed.
    let arguments = Array(CommandLine.arguments.dropFirst())
    if arguments.count >= 2, arguments[0] == "help",
       !configuration.subcommands.contains(where: { $0._commandName == arguments[1] }) && arguments[1] != "help" {
      let names = configuration.subcommands.map { $0._commandName }.joined(separator: ", ")
      print("error: no subcommand '\(arguments[1])' (the subcommands: \(names))", to: &standardError)
      exit(withError: ExitCode.failure)
    }
    do {
      var command = try parseAsRoot()
      try command.run()
    } catch {
      let code = exitCode(for: error)
      if code == .success || error is ExitCode { exit(withError: error) }
      var message = fullMessage(for: error)
      if message.hasPrefix("Error: ") { message = "error: " + message.dropFirst(7) }
      print(message, to: &standardError)
      exit(withError: ExitCode(code.rawValue))
    }
  }
}

/// Help text for ArgumentParser, which wraps each line at the terminal width: the lines of a
/// paragraph are joined so it wraps them once (not at the source's breaks and again at 80
/// columns); lines indented two spaces (commands, examples) and lines starting `Example:` keep
/// their own line.
func helpText(_ text: String) -> String {
  var out: [String] = []
  var paragraph: [String] = []
  func flush() { if !paragraph.isEmpty { out.append(paragraph.joined(separator: " ")); paragraph = [] } }
  for line in text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) {
    if line.trimmingCharacters(in: .whitespaces).isEmpty { flush(); out.append(""); continue }
    if line.hasPrefix("  ") || line.hasPrefix("Example:") { flush(); out.append(line); continue }
    paragraph.append(line)
  }
  flush()
  while out.last == "" { out.removeLast() }
  return out.joined(separator: "\n")
}
