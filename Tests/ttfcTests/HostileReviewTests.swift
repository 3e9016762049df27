// Defects an outside attack on issues 14 and 15 found after the first fixes: regions too long
// for the kernel emitter's recursion, forged checkpoint positions with valid CRCs, a FIFO planted
// as a kernel-cache entry, f32-overflowing options, negative option values, schedule parameters.
import Foundation
import Testing
import TTIR
import TTInterp
import TTPasses
import TTRuntime
import TTTrain

struct HostileReviewTests {
  /// A chain of `n` unary ops (neg, abs, relu in turn) on f32[B, 4].
  static func chain(_ n: Int) -> String {
    var lines = ["module @m {", "  func @f(%v0: f32[B, 4]) -> f32[B, 4] {"]
    for i in 1...n { lines.append("    %v\(i) = \(["neg", "abs", "relu"][i % 3]) %v\(i - 1) : f32[B, 4]") }
    lines += ["    return %v\(n)", "  }", "}"]
    return lines.joined(separator: "\n") + "\n"
  }

  /// 3,000 elementwise ops run compiled (fusion caps regions at 128 ops; the emitter used to
  /// recurse once per op of a region and overflowed the stack near 900), and a hand-written
  /// fusion body of 1,100 ops runs on the interpreter instead of crashing.
  @Test func longChainsAndHugeRegionsRun() throws {
    let module = try Parser.parseAndVerify(Self.chain(3000))
    let x = Tensor(.f32, shape: [2, 4], floats: [-1, 2, -3, 4, 0.5, -0.5, 0, -0.0])
    let executable = try Executable(module: module, function: "f")
    #expect(executable.statistics.kernels >= 8, "regions of at most 128 ops: \(executable.statistics.kernels) kernels")
    let got = try executable.run([x])[0]
    let expected = try Interpreter(module: module).run("f", [x])[0]
    #expect(got.isIdentical(to: expected))

    var body = ["module @m {", "  func @f(%x: f32[B, 4]) -> f32[B, 4] {", "    %r = fusion(%v0 = %x) {kind = \"loop\"} : f32[B, 4] {"]
    for i in 1...1100 { body.append("      %v\(i) = \(["neg", "abs"][i % 2]) %v\(i - 1) : f32[B, 4]") }
    body += ["      return %v1100", "    }", "    return %r", "  }", "}"]
    let huge = try Parser.parseAndVerify(body.joined(separator: "\n"))
    let fallback = try Executable(module: huge, function: "f", pipeline: Pipeline([]))
    #expect(fallback.statistics.interpreted >= 1)
    #expect(try fallback.run([x])[0].isIdentical(to: Interpreter(module: huge).run("f", [x])[0]))
  }

  /// A checkpoint whose step, epoch or offset was forged with recomputed CRCs is refused by name.
  @Test func forgedPositionsInACheckpointAreNamed() throws {
    let dir = try CLI.temporaryDirectory()
    let data = dir.appendingPathComponent("data.csv").path
    try TrainCLITests.writeCSV(data, rows: 64)
    let checkpoint = dir.appendingPathComponent("ckpt").path, file = checkpoint + "/checkpoint.safetensors"
    let base = ["train", "examples/logreg.ttir", "--data", data, "--batch", "8", "--checkpoint", checkpoint]
    #expect(try CLI.run(base + ["--steps", "4"]).status == 0)
    let good = try Checkpoint.read(from: file)
    for (key, value, message) in [("offset", "-5", "offset -5"), ("offset", "100000", "offset 100000"), ("epoch", "-1", "epoch -1"),
                                  ("epoch", String(Int.max), "epoch"), ("step", "-3", "step -3"), ("step", String(Int.max), "step")] {
      var forged = good
      forged.metadata[key] = value
      try forged.write(to: file)
      let result = try CLI.run(base + ["--steps", "8", "--resume"])
      #expect(result.status == 1, "\(key) = \(value): \(result.stderr)")
      #expect(result.stderr.contains(message) && result.stderr.contains("out"), "\(key) = \(value): \(result.stderr)")
    }
  }

  /// A FIFO planted where a kernel-cache entry belongs is a damaged entry, rebuilt; never a hang.
  @Test func aFIFOInTheKernelCacheIsRebuilt() throws {
    let cache = try CLI.temporaryDirectory().path
    let arguments = ["run", "examples/mlp.ttir", "--func", "logits", "--random-inputs", "--dim", "B=2"]
    #expect(try CLI.run(arguments, environment: ["TTFC_CACHE_DIR": cache]).status == 0)
    let directory = try FileManager.default.contentsOfDirectory(atPath: cache).first { $0.hasPrefix("kernels-") }
    let entries = try FileManager.default.contentsOfDirectory(atPath: cache + "/" + directory!).filter { $0.hasSuffix(".ttko") }
    #expect(!entries.isEmpty)
    for entry in entries {
      let path = cache + "/" + directory! + "/" + entry
      try FileManager.default.removeItem(atPath: path)
      #expect(mkfifo(path, 0o644) == 0)
    }
    let start = Date()
    let again = try CLI.run(arguments, environment: ["TTFC_CACHE_DIR": cache])
    #expect(again.status == 0, "\(again.stderr)")
    #expect(Date().timeIntervalSince(start) < 60)
  }

  /// Options that would overflow f32, negative values (read as values, not as options), and
  /// schedule parameters that are not finite are named errors.
  @Test func numericOptionEdgesAreNamed() throws {
    let cases: [([String], String)] = [
      (["--clip-norm", "1e39"], "--clip-norm must be a number from 1.2e-38 to 3.4e38"),
      (["--clip-norm", "1e-320"], "--clip-norm must be a number from 1.2e-38 to 3.4e38"),
      (["--clip-norm", "-1"], "--clip-norm must be a number"),
      (["--lr", "1e39"], "--lr must be a number from 0 to 3.4e38"),
      (["--lr", "-0.0"], "--lr must be a number from 0 to 3.4e38"),
      (["--lr", "-inf"], "--lr must be a number from 0 to 3.4e38"),
      (["--steps", "-1"], "--steps must be 0 to"),
      (["--schedule", "exponential:1:nan"], "cannot read schedule"),
      (["--schedule", "step:1:inf"], "cannot read schedule"),
    ]
    for (options, message) in cases {
      let result = try CLI.run(["train", "examples/logreg.ttir", "--data", "no-such.csv"] + options)
      #expect(result.status == 1, "\(options): \(result.stderr)")
      #expect(result.stderr.contains(message), "\(options): \(result.stderr)")
    }
  }
}
