// Every rule of the simplify table has lit cases under Passes/simplify/: one where it fires and
// one where it must not (a near miss), each marked in a comment `// rule: NAME (fires)` or
// `// rule: NAME (must not fire)`. The names come from the table itself (SimplifyRules.all), so a
// rule added without both cases, or a marker naming a rule that no longer exists, fails here.
import Foundation
import Testing
@testable import TTPasses

enum SimplifyLitCases {
  static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("Passes").appendingPathComponent("simplify")

  struct Marker: Hashable {
    var rule: String
    var fires: Bool
  }

  /// One `// -----`-separated case of a lit file: where it is, its markers, and its text.
  struct Case {
    var file: String
    var index: Int
    var markers: [Marker]
    var malformed: [String]
    var text: String
  }

  static let markerPrefix = "// rule: "

  static func files() throws -> [URL] {
    try FileManager.default.contentsOfDirectory(at: folder, includingPropertiesForKeys: nil)
      .filter { $0.pathExtension == "ttir" }
      .sorted { $0.lastPathComponent < $1.lastPathComponent }
  }

  static func cases(in file: URL) throws -> [Case] {
    let text = try String(contentsOf: file, encoding: .utf8)
    return text.components(separatedBy: "\n// -----\n").enumerated().map { index, chunk in
      var markers: [Marker] = [], malformed: [String] = []
      for line in chunk.split(separator: "\n", omittingEmptySubsequences: true) where line.hasPrefix(markerPrefix) {
        let rest = line.dropFirst(markerPrefix.count)
        let parts = rest.split(separator: " ", maxSplits: 1)
        switch parts.count == 2 ? String(parts[1]) : "" {
        case "(fires)": markers.append(Marker(rule: String(parts[0]), fires: true))
        case "(must not fire)": markers.append(Marker(rule: String(parts[0]), fires: false))
        default: malformed.append(String(line))
        }
      }
      return Case(file: file.lastPathComponent, index: index, markers: markers, malformed: malformed, text: chunk)
    }
  }

  static func allCases() throws -> [Case] { try files().flatMap { try cases(in: $0) } }
}

struct SimplifyRuleCoverageTests {
  @Test func ruleNamesAreUnique() {
    let names = SimplifyRules.all.map(\.name)
    let duplicates = Set(names.filter { n in names.filter { $0 == n }.count > 1 })
    #expect(duplicates.isEmpty, "rule names used twice: \(duplicates.sorted())")
  }

  @Test func everyRuleHasAFiringAndAMustNotFireLitCase() throws {
    let cases = try SimplifyLitCases.allCases()
    #expect(!cases.isEmpty, "no lit cases found in \(SimplifyLitCases.folder.path)")
    let markers = Set(cases.flatMap(\.markers))
    for rule in SimplifyRules.all {
      let fires = markers.contains(.init(rule: rule.name, fires: true))
      let mustNotFire = markers.contains(.init(rule: rule.name, fires: false))
      #expect(fires, "rule '\(rule.name)' has no lit case marked `// rule: \(rule.name) (fires)` in Passes/simplify/")
      #expect(mustNotFire, "rule '\(rule.name)' has no lit case marked `// rule: \(rule.name) (must not fire)` in Passes/simplify/")
    }
  }

  @Test func everyMarkerNamesARuleAndSitsInACheckedCase() throws {
    let names = Set(SimplifyRules.all.map(\.name))
    for file in try SimplifyLitCases.files() {
      let text = try String(contentsOf: file, encoding: .utf8)
      let cases = try SimplifyLitCases.cases(in: file)
      if cases.contains(where: { !$0.markers.isEmpty }) {
        #expect(text.contains("// RUN: ttfc opt %s -p simplify"), "\(file.lastPathComponent) has rule markers but no RUN line with -p simplify")
      }
      for c in cases {
        let place = "\(c.file), case \(c.index + 1)"
        #expect(c.malformed.isEmpty, "\(place): markers must read `// rule: NAME (fires)` or `// rule: NAME (must not fire)`: \(c.malformed)")
        for marker in c.markers {
          let known = names.contains(marker.rule)
          #expect(known, "\(place): '\(marker.rule)' is not a rule in SimplifyRules.all")
        }
        if !c.markers.isEmpty {
          #expect(c.text.contains("-LABEL: func @"), "\(place): a marked case needs a CHECK-LABEL for its function")
        }
      }
    }
  }
}
