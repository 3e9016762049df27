// SourceFile — shared by the subcommands: read a .ttir file, parse and verify it, and print any
// diagnostics clang-style to stderr. A subcommand that fails throws ExitCode.failure after printing.
import ArgumentParser
import Foundation
import TTIR

struct StandardError: TextOutputStream {
  mutating func write(_ string: String) { FileHandle.standardError.write(Data(string.utf8)) }
}
nonisolated(unsafe) var standardError = StandardError()

/// Prints `error: message` to stderr and returns the failure exit code to throw.
func fail(_ message: String) -> ExitCode {
  print("error: \(message)", to: &standardError)
  return ExitCode.failure
}

struct SourceFile {
  let path: String
  let text: String

  static func read(_ path: String) throws -> SourceFile {
    guard FileManager.default.fileExists(atPath: path) else { throw fail("cannot read '\(path)': no such file") }
    guard let data = FileManager.default.contents(atPath: path) else { throw fail("cannot read '\(path)'") }
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

/// Writes a text output the user named: through a symlink to its target, straight into a path
/// that is not a regular file (/dev/null, /dev/stdout, a FIFO: an atomic write would replace the
/// device node with a regular file), and atomically (temporary file, then rename) otherwise, so
/// a crash never leaves half a file.
func writeOutput(_ text: String, to path: String, what: String = "") throws {
  // Follow symlinks (dangling ones too: the write creates their target), at most 40 hops.
  var target = path
  for _ in 0..<40 {
    guard let destination = try? FileManager.default.destinationOfSymbolicLink(atPath: target) else { break }
    target = destination.hasPrefix("/") ? destination
      : URL(fileURLWithPath: target).deletingLastPathComponent().appendingPathComponent(destination).path
  }
  var info = stat()
  let exists = stat(target, &info) == 0
  if path.isEmpty { throw fail("cannot write \(what.isEmpty ? "" : what + " ")'': an empty path") }
  if exists && (info.st_mode & S_IFMT) == S_IFDIR { throw fail("cannot write \(what.isEmpty ? "" : what + " ")'\(path)': it is a directory") }
  let isSpecial = exists && (info.st_mode & S_IFMT) != S_IFREG
  // A file rewritten keeps its permission bits (the atomic write makes a new file).
  let previousMode: mode_t? = exists && !isSpecial ? info.st_mode & 0o7777 : nil
  do {
    if isSpecial {
      guard let handle = FileHandle(forWritingAtPath: target) else { throw CocoaError(.fileWriteNoPermission) }
      defer { try? handle.close() }
      try handle.write(contentsOf: Data(text.utf8))
    } else {
      try text.write(toFile: target, atomically: true, encoding: .utf8)
      if let previousMode { chmod(target, previousMode) }
    }
  } catch {
    let reason = FileManager.default.fileExists(atPath: URL(fileURLWithPath: target).deletingLastPathComponent().path)
      ? "permission denied or disk full" : "its directory does not exist"
    throw fail("cannot write \(what.isEmpty ? "" : what + " ")'\(path)': \(reason)")
  }
}
