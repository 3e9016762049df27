// Defects an outside attack on issues 14 and 15 found after the first fixes: regions too long
// for the kernel emitter's recursion, forged checkpoint positions with valid CRCs, a FIFO planted
// as a kernel-cache entry, f32-overflowing options, negative option values, schedule parameters.
import Foundation
import Testing
import TTCompiler
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
      (["--lr", "1e39"], "--lr must be 0 or a number from 1.2e-38 to 3.4e38"),
      (["--lr", "-0.0"], "--lr must be 0 or a number from 1.2e-38 to 3.4e38"),
      (["--lr", "-inf"], "--lr must be 0 or a number from 1.2e-38 to 3.4e38"),
      (["--steps", "-1"], "--steps must be 0 to"),
      (["--lr", "1e-50"], "--lr must be 0 or a number from 1.2e-38 to 3.4e38"),
      (["--schedule", "cosine:"], "cannot read schedule"),
      (["--schedule", "exponential:1:nan"], "cannot read schedule"),
      (["--schedule", "step:1:inf"], "cannot read schedule"),
    ]
    for (options, message) in cases {
      let result = try CLI.run(["train", "examples/logreg.ttir", "--data", "no-such.csv"] + options)
      #expect(result.status == 1, "\(options): \(result.stderr)")
      #expect(result.stderr.contains(message), "\(options): \(result.stderr)")
    }
  }

  /// Second review (issues 16 and 25): parameters read only by evaluation functions are not
  /// required to train; unknown names in --init-params / --params are refused and --init-params with a
  /// resume are reported; rewritten outputs keep their permissions; conflicting options named.
  @Test func secondReviewDefectsAreNamed() throws {
    let dir = try CLI.temporaryDirectory()
    let model = dir.appendingPathComponent("p.ttir").path
    try """
      module @m {
        param @w : f32[3, 1]
        param @pp : f32[1]
        func @loss(%x: f32[B, 3], %y: f32[B]) -> f32[] {
          %z = matmul %x, @w : f32[B, 1]
          %r = reshape %z : f32[B]
          %d = sub %r, %y : f32[B]
          %s = mul %d, %d : f32[B]
          %m = reduce_mean %s : f32[]
          return %m
        }
        func @predict(%x: f32[B, 3]) -> f32[B] {
          %z = matmul %x, @w : f32[B, 1]
          %b = add %z, @pp : f32[B, 1]
          %r = reshape %b : f32[B]
          return %r
        }
      }
      """.write(toFile: model, atomically: true, encoding: .utf8)
    let initial = dir.appendingPathComponent("w.npz").path, typo = dir.appendingPathComponent("typo.npz").path
    let data = dir.appendingPathComponent("d.npz").path
    try NpzArchive.write([("w", Tensor(.f32, shape: [3, 1], floats: [1, 1, 1]))], path: initial)
    try NpzArchive.write([("W", Tensor(.f32, shape: [3, 1], floats: [1, 1, 1]))], path: typo)
    try NpzArchive.write([("x", Tensor(.f32, shape: [8, 3], floats: (0..<24).map { Double($0) / 10 })),
                          ("y", Tensor(.f32, shape: [8], floats: [Double](repeating: 1, count: 8)))], path: data)
    let train = try CLI.run(["train", model, "--data", data, "--init-params", initial, "--steps", "2", "--batch", "4"])
    #expect(train.status == 0, "@pp is read only by @predict, which no evaluation runs: \(train.stderr)")
    let evaluated = try CLI.run(["train", model, "--data", data, "--eval-data", data, "--init-params", initial, "--steps", "2", "--batch", "4"])
    #expect(evaluated.status == 1 && evaluated.stderr.contains("@predict reads '@pp'"), "\(evaluated.stderr)")
    let misspelled = try CLI.run(["train", model, "--data", data, "--init-params", typo, "--steps", "1"])
    #expect(misspelled.status == 1 && misspelled.stderr.contains("'W' matches no parameter"), "\(misspelled.stderr)")
    let run = try CLI.run(["run", model, "--func", "loss", "--random-inputs", "--dim", "B=2", "--params", typo])
    #expect(run.status == 1 && run.stderr.contains("'W' matches no parameter"), "\(run.stderr)")
    let checkpoint = dir.appendingPathComponent("ck").path
    #expect(try CLI.run(["train", model, "--data", data, "--init-params", initial, "--steps", "1", "--checkpoint", checkpoint]).status == 0)
    let both = try CLI.run(["train", model, "--data", data, "--init-params", initial, "--steps", "2", "--checkpoint", checkpoint, "--resume"])
    #expect(both.status == 0 && both.stderr.contains("--init-params \(initial) is not used"), "\(both.stderr)")

    let output = dir.appendingPathComponent("o.ttir").path
    try "x".write(toFile: output, atomically: true, encoding: .utf8)
    chmod(output, 0o600)
    #expect(try CLI.run(["opt", "examples/mlp.ttir", "-o", output]).status == 0)
    var info = stat()
    #expect(stat(output, &info) == 0 && info.st_mode & 0o777 == 0o600, "the rewritten file keeps its permissions")
    #expect(try CLI.run(["opt", "examples/mlp.ttir", "-o", dir.path]).stderr.contains("it is a directory"))

    for (arguments, message) in [(["fmt", "--check", "-i", "examples/mlp.ttir"], "--check and -i"),
                                 (["run", "examples/mlp.ttir", "--func", "loss", "--random-inputs", "--dim", "B=2", "--dim", "B=3"], "--dim B is given twice"),
                                 (["ncf", "--optimizers", "adam,,sgd"], "unknown table optimizer ''"),
                                 (["ncf", "--seeds", "1,1"], "names a seed twice"),
                                 (["ncf", "--ratings", "r.csv", "--synthetic", "5,5,2"], "give one source of ratings"),
                                 (["ncf", "--synthetic", "50,20,5", "--candidates", "99"], "--candidates 99: some user has only"),
                                 (["help", "bogus"], "no subcommand 'bogus'")] {
      let result = try CLI.run(arguments)
      #expect(result.status == 1 && result.stderr.contains(message), "\(arguments): \(result.stderr)")
    }
  }

  /// --random-inputs follows an index through a cast; an --input of the wrong rank gets the
  /// shape error, not an index-range error computed from misread dims.
  @Test func randomIndicesThroughACastAndShapeErrorsFirst() throws {
    let dir = try CLI.temporaryDirectory()
    let model = dir.appendingPathComponent("g.ttir").path
    try """
      module @m {
        func @g(%p: f32[5, 3], %i: i64[B]) -> f32[B, 3] {
          %c = cast %i : i32[B]
          %g = gather %p, %c {axis = 0} : f32[B, 3]
          return %g
        }
      }
      """.write(toFile: model, atomically: true, encoding: .utf8)
    for seed in 1...3 {
      let result = try CLI.run(["run", model, "--random-inputs", "--dim", "B=200", "--seed", String(seed)])
      #expect(result.status == 0, "\(result.stderr)")
    }
  }
}
