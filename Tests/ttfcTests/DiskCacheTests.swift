// The persistent kernel cache across processes: a second `ttfc run` compiles nothing and prints the
// same results; damaged entries (a flipped byte, a truncated file) and a killed writer's
// temporary file are detected and rebuilt; processes starting together on an empty cache all
// succeed. And `ttfc run --stats` with several sizes reports bucketing.
import Foundation
import Testing

struct DiskCacheTests {
  static let arguments = ["run", "examples/wide_deep.ttir", "--func", "loss", "--random-inputs", "--dim", "B=5", "--stats"]

  /// (compiled, loaded from disk, damaged) from a --stats report.
  static func counters(_ stderr: String) -> (Int, Int, Int)? {
    guard let line = stderr.split(separator: "\n").first(where: { $0.hasPrefix("kernel cache:") }) else { return nil }
    // "kernel cache: C compiled, D from the disk cache (...kernels-HEX), M hits in memory, K damaged ..."
    let words = line.split(separator: " ")
    func number(before word: String) -> Int? {
      guard let i = words.firstIndex(where: { $0.hasPrefix(word) }), i > 0 else { return nil }
      return Int(words[i - 1])
    }
    guard let compiled = number(before: "compiled"), let damaged = number(before: "damaged") else { return nil }
    guard let fromIndex = words.firstIndex(of: "from"), fromIndex > 0, let disk = Int(words[fromIndex - 1]) else { return nil }
    return (compiled, disk, damaged)
  }

  @Test func aSecondProcessCompilesNothingAndDamageIsRebuilt() throws {
    let cache = try CLI.temporaryDirectory().path
    let environment = ["TTFC_CACHE_DIR": cache]
    let first = try CLI.run(Self.arguments, environment: environment)
    #expect(first.status == 0, "\(first.stderr)")
    let (compiled, _, _) = try #require(Self.counters(first.stderr), "\(first.stderr)")
    #expect(compiled > 0)

    let second = try CLI.run(Self.arguments, environment: environment)
    #expect(second.stdout == first.stdout)
    #expect(Self.counters(second.stderr).map { $0.0 == 0 && $0.1 == compiled } == true, "\(second.stderr)")

    // Damage two entries and leave a killed writer's temporary file behind.
    let directory = try #require(try FileManager.default.contentsOfDirectory(atPath: cache).first { $0.hasPrefix("kernels-") })
    let entries = try FileManager.default.contentsOfDirectory(atPath: cache + "/" + directory).filter { $0.hasSuffix(".ttko") }.sorted()
    #expect(entries.count == compiled)
    let flipped = cache + "/" + directory + "/" + entries[0]
    var bytes = try Data(contentsOf: URL(fileURLWithPath: flipped))
    bytes[bytes.count / 2] ^= 0x5a
    try bytes.write(to: URL(fileURLWithPath: flipped))
    let truncated = cache + "/" + directory + "/" + entries[1]
    let whole = try Data(contentsOf: URL(fileURLWithPath: truncated))
    try whole.prefix(whole.count / 3).write(to: URL(fileURLWithPath: truncated))
    try whole.prefix(100).write(to: URL(fileURLWithPath: truncated + ".tmp.99999.1"))

    let third = try CLI.run(Self.arguments, environment: environment)
    #expect(third.status == 0)
    #expect(third.stdout == first.stdout)
    #expect(Self.counters(third.stderr).map { $0.0 == 2 && $0.2 == 2 && $0.1 == compiled - 2 } == true, "\(third.stderr)")
    let fourth = try CLI.run(Self.arguments, environment: environment)
    #expect(Self.counters(fourth.stderr).map { $0.0 == 0 && $0.2 == 0 } == true, "\(fourth.stderr)")
    #expect(fourth.stdout == first.stdout)
  }

  @Test func processesStartingTogetherShareAnEmptyCache() throws {
    let cache = try CLI.temporaryDirectory().path
    let environment = ["TTFC_CACHE_DIR": cache]
    var processes: [(Process, Pipe)] = []
    for _ in 0..<3 {
      let process = Process()
      process.executableURL = CLI.binary
      process.arguments = Self.arguments
      process.currentDirectoryURL = CLI.repository
      process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
      let out = Pipe()
      process.standardOutput = out
      process.standardError = Pipe()
      try process.run()
      processes.append((process, out))
    }
    var outputs: [String] = []
    for (process, out) in processes {
      outputs.append(String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self))
      process.waitUntilExit()
      #expect(process.terminationStatus == 0)
    }
    #expect(Set(outputs).count == 1 && !outputs[0].isEmpty)
    let after = try CLI.run(Self.arguments, environment: environment)
    #expect(Self.counters(after.stderr).map { $0.0 == 0 && $0.2 == 0 } == true, "\(after.stderr)")
    #expect(after.stdout == outputs[0])
  }

  @Test func runWithSeveralSizesReportsBuckets() throws {
    let result = try CLI.run(["run", "examples/mlp.ttir", "--func", "loss", "--random-inputs", "--dim", "B=3,17,64,5,30,64",
                              "--stats", "--bucket-policy", "pow2"], environment: ["TTFC_CACHE_DIR": "off"])
    #expect(result.status == 0, "\(result.stderr)")
    #expect(result.stdout.contains("run 6 (B=64):"))
    #expect(result.stderr.contains("shapes: 6 runs, policy pow2"))
    #expect(result.stderr.contains("bucket B<=64: 2 runs"))
    #expect(result.stderr.contains("kernel cache:") && result.stderr.contains("(disabled)"))
    // The same sizes one at a time give the same numbers.
    let single = try CLI.run(["run", "examples/mlp.ttir", "--func", "loss", "--random-inputs", "--dim", "B=30"])
    let value = single.stdout.split(separator: "\n").first { $0.hasPrefix("result 0") }!.split(separator: " ").last!
    #expect(result.stdout.contains("run 5 (B=30):\n  result 0: f32[] \(value)"))
    let bad = try CLI.run(["run", "examples/mlp.ttir", "--func", "loss", "--random-inputs", "--dim", "B=3", "--bucket-policy", "pow3"])
    #expect(bad.status == 1 && bad.stderr.contains("unknown bucket policy 'pow3'"))
  }
}
