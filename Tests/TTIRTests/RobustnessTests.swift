// Robustness: the parser and verifier must answer every input with a module or a diagnostic —
// never a crash, a hang, or super-linear time. A seeded mutator damages the valid corpus 20,000
// times per run (byte flips, truncations, token swaps, deletions and duplications, deep nesting,
// spliced lines); TTFC_FUZZ_ITERATIONS raises the count for a long run. Linear time is checked by
// growing inputs 8x and requiring the time to grow by well under 64x.
import Foundation
import Testing
import TTIR
import TTFuzz

/// The seeded SplitMix64 generator shared by the test suites, so every run mutates the same way.
typealias SeededGenerator = GraphRandom

enum Mutator {
  static let interestingBytes: [UInt8] = Array("{}[]()%@,:=->0123456789.e-_ \n\"abcxyzBf32i1".utf8) + [0, 0x80, 0xFF, 0x93, 0x09]

  static func mutate(_ text: String, with other: String, _ rng: inout SeededGenerator) -> (kind: String, text: String) {
    var bytes = Array(text.utf8)
    switch Int.random(in: 0..<7, using: &rng) {
    case 0:
      let n = Int.random(in: 1...4, using: &rng)
      for _ in 0..<n where !bytes.isEmpty {
        bytes[Int.random(in: 0..<bytes.count, using: &rng)] = interestingBytes.randomElement(using: &rng)!
      }
      return ("byte flip", String(decoding: bytes, as: UTF8.self))
    case 1:
      return ("truncation", String(decoding: bytes.prefix(Int.random(in: 0...bytes.count, using: &rng)), as: UTF8.self))
    case 2, 3:
      var tokens = tokenTexts(text)
      guard tokens.count > 2 else { return ("token swap", text) }
      let i = Int.random(in: 0..<tokens.count, using: &rng), j = Int.random(in: 0..<tokens.count, using: &rng)
      switch Int.random(in: 0..<3, using: &rng) {
      case 0: tokens.swapAt(i, j); return ("token swap", tokens.joined(separator: " "))
      case 1: tokens.remove(at: i); return ("token deletion", tokens.joined(separator: " "))
      default: tokens.insert(tokens[j], at: i); return ("token duplication", tokens.joined(separator: " "))
      }
    case 4:
      let opener = ["[", "(", "{", "[[", "-", "%", "@"].randomElement(using: &rng)!
      let depth = Int.random(in: 1...20_000, using: &rng)
      let at = Int.random(in: 0...bytes.count, using: &rng)
      bytes.insert(contentsOf: Array(String(repeating: opener, count: depth).utf8), at: at)
      return ("deep nesting", String(decoding: bytes, as: UTF8.self))
    case 5:
      var lines = text.split(separator: "\n", omittingEmptySubsequences: false)
      let donor = other.split(separator: "\n", omittingEmptySubsequences: false)
      guard !lines.isEmpty, !donor.isEmpty else { return ("splice", text) }
      lines.insert(donor.randomElement(using: &rng)!, at: Int.random(in: 0...lines.count, using: &rng))
      return ("line splice", lines.joined(separator: "\n"))
    default:
      var lines = text.split(separator: "\n", omittingEmptySubsequences: false)
      guard lines.count > 1 else { return ("line deletion", text) }
      lines.remove(at: Int.random(in: 0..<lines.count, using: &rng))
      return ("line deletion", lines.joined(separator: "\n"))
    }
  }

  /// The source split into token texts (rejoined with spaces, so strings and comments may break:
  /// that is part of the damage).
  static func tokenTexts(_ text: String) -> [String] {
    var lexer = Lexer(text)
    var out: [String] = []
    while true {
      let t = lexer.next()
      if t.kind == .endOfFile || t.kind == .invalid { return out }
      switch t.kind {
      case .valueName: out.append("%" + t.text)
      case .globalName: out.append("@" + t.text)
      case .string: out.append("\"" + t.text + "\"")
      default: out.append(t.text)
      }
    }
  }
}

struct RobustnessTests {
  static var iterations: Int { Int(ProcessInfo.processInfo.environment["TTFC_FUZZ_ITERATIONS"] ?? "") ?? 20_000 }

  @Test func mutatedInputsGetAModuleOrADiagnostic() {
    let corpus = Corpus.validSources.map(\.text).filter { $0.utf8.count < 4000 }
    #expect(corpus.count > 10)
    var rng = SeededGenerator(state: 0xC0FFEE)
    var counts: [String: Int] = [:]
    var accepted = 0
    var slowest: (seconds: Double, kind: String) = (0, "")
    for _ in 0..<Self.iterations {
      let base = corpus.randomElement(using: &rng)!
      let (kind, text) = Mutator.mutate(base, with: corpus.randomElement(using: &rng)!, &rng)
      counts[kind, default: 0] += 1
      let start = DispatchTime.now().uptimeNanoseconds
      let found = diagnostics(of: text)
      let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
      if seconds > slowest.seconds { slowest = (seconds, kind) }
      if found.isEmpty {
        accepted += 1
        // Anything accepted must print canonically.
        if let module = try? Parser.parseAndVerify(text) {
          let printed = Printer.print(module)
          #expect(Printer.print((try? Parser.parseAndVerify(printed)) ?? Module(name: "")) == printed)
        }
      } else {
        let lineCount = text.utf8.reduce(1) { $1 == 0x0A ? $0 + 1 : $0 }
        for d in found {
          #expect(!d.message.isEmpty)
          if let location = d.location { #expect(location.line >= 1 && location.line <= lineCount && location.column >= 1) }
        }
      }
    }
    // Print what ran, for the record (visible with `swift test --verbose` or in CI logs).
    print("robustness: \(Self.iterations) mutations \(counts.sorted { $0.key < $1.key }), \(accepted) still valid, slowest \(String(format: "%.4f", slowest.seconds)) s (\(slowest.kind))")
    #expect(slowest.seconds < 2.0, "one input took \(slowest.seconds) s (\(slowest.kind))")
  }

  /// A valid module with `n` chained ops that all read one parameter.
  static func chain(_ n: Int) -> String {
    var text = "module @big {\n  param @w : f32[4] = zeros\n  func @f(%x0: f32[B, 4]) -> f32[B, 4] {\n"
    for i in 1...n { text += "    %x\(i) = add %x\(i - 1), @w : f32[B, 4]\n" }
    return text + "    return %x\(n)\n  }\n}\n"
  }

  static func bestTime(_ body: () -> Void) -> Double {
    var best = Double.infinity
    for _ in 0..<3 {
      let start = DispatchTime.now().uptimeNanoseconds
      body()
      best = min(best, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
    }
    return best
  }

  @Test func parsingAndVerifyingAreLinear() {
    let small = Self.chain(1_000), large = Self.chain(8_000)
    let tSmall = Self.bestTime { _ = diagnostics(of: small) }
    let tLarge = Self.bestTime { _ = diagnostics(of: large) }
    #expect(diagnostics(of: large).isEmpty)
    print("linearity: 1000 ops \(tSmall) s, 8000 ops \(tLarge) s (ratio \(tLarge / tSmall))")
    #expect(tLarge < 24 * tSmall, "8x the ops took \(tLarge / tSmall)x the time")
  }

  @Test func pathologicalInputsAreLinear() {
    for opener in ["[", "{", "(", "%", "-"] {
      let small = "module @m {\n  func @f() -> f32[1] {\n    %r = constant " + String(repeating: opener, count: 20_000)
      let large = "module @m {\n  func @f() -> f32[1] {\n    %r = constant " + String(repeating: opener, count: 160_000)
      let tSmall = Self.bestTime { _ = diagnostics(of: small) }
      let tLarge = Self.bestTime { _ = diagnostics(of: large) }
      #expect(!diagnostics(of: large).isEmpty)
      #expect(tLarge < 24 * max(tSmall, 1e-4), "'\(opener)' x8 took \(tLarge / tSmall)x the time")
    }
  }
}
