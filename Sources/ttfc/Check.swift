// `ttfc check FILE...` — parse and verify; exit 1 if any file has an error.
import ArgumentParser
import TTIR

struct Check: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Parse and verify TTIR files; print clang-style diagnostics and exit 1 on any error.")

  @Argument(help: "The .ttir files to check.")
  var files: [String]

  @Flag(name: .shortAndLong, help: "Print nothing for files without errors.")
  var quiet = false

  func run() throws {
    var failed = false
    for path in files {
      do {
        let module = try SourceFile.read(path).module()
        if !quiet {
          let ops = module.functions.reduce(0) { $0 + $1.body.count }
          print("\(path): ok (\(module.params.count) params, \(module.functions.count) functions, \(ops) ops)")
        }
      } catch {
        failed = true
      }
    }
    if failed { throw ExitCode.failure }
  }
}
