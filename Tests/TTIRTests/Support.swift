// Shared by the TTIR tests: repository paths, the corpus of valid TTIR (examples, IR-specs code
// blocks, interpreter fixtures), and the first diagnostic of a source text.
import Foundation
import TTIR

enum Corpus {
  static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent()

  static func files(in folder: String, suffix: String) -> [URL] {
    let root = repository.appendingPathComponent(folder)
    guard let walker = FileManager.default.enumerator(at: root, includingPropertiesForKeys: nil) else { return [] }
    return walker.compactMap { $0 as? URL }.filter { $0.path.hasSuffix(suffix) }.sorted { $0.path < $1.path }
  }

  /// ```ttir code blocks of a Markdown file (```ttir-error blocks are invalid on purpose).
  static func ttirBlocks(of markdown: String, fence: String = "```ttir") -> [String] {
    var blocks: [String] = []
    var current: [Substring]? = nil
    for line in markdown.split(separator: "\n", omittingEmptySubsequences: false) {
      if current == nil, line.trimmingCharacters(in: .whitespaces) == fence { current = [] }
      else if current != nil, line.trimmingCharacters(in: .whitespaces) == "```" {
        blocks.append(current!.joined(separator: "\n") + "\n")
        current = nil
      } else if current != nil { current!.append(line) }
    }
    return blocks
  }

  /// Every valid TTIR text in the repository, named by where it came from.
  static let validSources: [(name: String, text: String)] = {
    var sources: [(String, String)] = []
    for url in files(in: "examples", suffix: ".ttir") + files(in: "Tests/TTInterpTests/Fixtures", suffix: ".ttir") {
      if let text = try? String(contentsOf: url, encoding: .utf8) { sources.append((url.lastPathComponent, text)) }
    }
    for url in files(in: "IR-specs", suffix: ".md") {
      guard let text = try? String(contentsOf: url, encoding: .utf8) else { continue }
      for (i, block) in ttirBlocks(of: text).enumerated() { sources.append(("\(url.lastPathComponent)#\(i + 1)", block)) }
    }
    return sources
  }()
}

/// The diagnostics that parsing and verifying `source` produce (empty when it is valid).
func diagnostics(of source: String) -> [Diagnostic] {
  do { _ = try Parser.parseAndVerify(source); return [] }
  catch { return error.diagnostics }
}
