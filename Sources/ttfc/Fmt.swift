// `ttfc fmt FILE [-i]` — print the canonical form of a TTIR file (or rewrite it in place).
import ArgumentParser
import Foundation
import TTIR

struct Fmt: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Print a TTIR file in canonical form, its comments kept in place.")

  @Argument(help: "The .ttir file to format.")
  var file: String

  @Flag(name: .customShort("i"), help: "Rewrite the file in place instead of printing it.")
  var inPlace = false

  @Flag(help: "Exit 1 if the file is not already in canonical form; change nothing.")
  var check = false

  func run() throws {
    if check && inPlace { throw fail("--check and -i: choose one (--check changes nothing)") }
    let source = try SourceFile.read(file)
    let canonical = Printer.print(try source.module(), comments: Lexer.comments(in: source.text))
    if check {
      if canonical != source.text { throw fail("'\(file)' is not in canonical form (run `ttfc fmt -i \(file)`)") }
      return
    }
    if inPlace {
      // Through a symlink to its target (an atomic write to the link's path would replace the
      // link with a regular file).
      try writeOutput(canonical, to: file)
    } else {
      print(canonical, terminator: "")
    }
  }
}
