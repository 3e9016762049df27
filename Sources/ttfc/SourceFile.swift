// SourceFile — shared by the subcommands: read a .ttir file, parse and verify it, and print any
// diagnostics clang-style to stderr. A subcommand that fails throws ExitCode.failure after printing.
import ArgumentParser
import Foundation
import TTIR
import TTSupport

struct StandardError: TextOutputStream {
  mutating func write(_ string: String) { FileHandle.standardError.write(Data(string.utf8)) }
}
nonisolated(unsafe) var standardError = StandardError()

/// Prints `error: message` to stderr and returns the failure exit code to throw.
func fail(_ message: String) -> ExitCode {
  print("error: \(message)", to: &standardError)
  return ExitCode.failure
}

/// Why `path` could not be read: missing, a directory, or not readable by this user.
func unreadableReason(_ path: String) -> String {
  var isDirectory: ObjCBool = false
  guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { return "no such file" }
  if isDirectory.boolValue { return "it is a directory" }
  return FileManager.default.isReadableFile(atPath: path) ? "the read failed" : "permission denied"
}

struct SourceFile {
  let path: String
  let text: String

  static func read(_ path: String) throws -> SourceFile {
    guard let data = FileManager.default.contents(atPath: path) else { throw fail("cannot read '\(path)': \(unreadableReason(path))") }
    guard let text = String(data: data, encoding: .utf8) else { throw fail("'\(path)' is not UTF-8 text") }
    return SourceFile(path: path, text: text)
  }

  /// Parses and verifies; on failure prints every diagnostic and throws ExitCode.failure.
  func module() throws -> Module {
    do { return try Parser.parseAndVerify(text) }
    catch {
      print(error.render(file: path, source: text), to: &standardError)
      throw ExitCode.failure
    }
  }
}

/// Writes a text output the user named (TTSupport's AtomicFile.writeOutput: through symlinks to
/// their target, straight into devices and FIFOs, atomically and keeping permissions otherwise);
/// a failure is printed as a named error and thrown as ExitCode.failure.
func writeOutput(_ text: String, to path: String, what: String = "") throws {
  do { try AtomicFile.writeOutput(Array(text.utf8), to: path) }
  catch { throw fail("cannot write \(what.isEmpty ? "" : what + " ")'\(path)': \(error)") }
}
