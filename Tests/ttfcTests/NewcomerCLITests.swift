// What a new user trips over (issue 16): the built-in NCF model outside the repository, random
// integer inputs inside the range of the indices they feed, range errors that name the input
// and the op, and unknown --dim symbols.
import Foundation
import Testing

struct NewcomerCLITests {
  static let classifier = """
    module @m {
      param @w : f32[3, 2] = glorot_uniform(seed: 1)
      func @loss(%x: f32[B, 3], %y: i32[B]) -> f32[] {
        %l = matmul %x, @w : f32[B, 2]
        %ce = softmax_cross_entropy %l, %y : f32[B]
        %m = reduce_mean %ce {axes = [0]} : f32[]
        return %m
      }
      func @pick(%t: f32[4, 5], %i: i64[B]) -> (f32[B, 5], f32[B, 3]) {
        %r = reshape %i : i64[B, 1]
        %g = gather %t, %i {axis = 0} : f32[B, 5]
        %o = one_hot %i {depth = 3} : f32[B, 3]
        return %g, %o
      }
    }
    """

  @Test func ncfRunsOutsideTheRepository() throws {
    let dir = try CLI.temporaryDirectory()
    let result = try CLI.run(["ncf", "--synthetic", "60,40,6", "--epochs", "1", "--seeds", "1", "--optimizers", "sparseadam"], directory: dir)
    #expect(result.status == 0, "\(result.stderr)")
    #expect(result.stdout.contains("HR@10"), "\(result.stdout)")
  }

  @Test func theBuiltInNCFModelIsTheExample() throws {
    let help = try CLI.run(["help", "ncf"])
    #expect(help.stdout.contains("--model"))
    // The embedded text is the example's text (BuiltinModels.swift embeds it verbatim).
    let source = try String(contentsOf: CLI.repository.appendingPathComponent("Sources/ttfc/BuiltinModels.swift"), encoding: .utf8)
    let example = try String(contentsOf: CLI.repository.appendingPathComponent("examples/ncf.ttir"), encoding: .utf8)
    #expect(source.contains("static let ncf = \"\"\"\n" + example + "\"\"\""), "BuiltinModels.ncf differs from examples/ncf.ttir")
  }

  @Test func randomIntegerInputsStayInsideTheRangeOfTheIndicesTheyFeed() throws {
    let dir = try CLI.temporaryDirectory()
    let file = dir.appendingPathComponent("m.ttir")
    try Self.classifier.write(to: file, atomically: true, encoding: .utf8)
    for seed in 1...5 {
      let loss = try CLI.run(["run", file.path, "--func", "loss", "--random-inputs", "--dim", "B=200", "--seed", String(seed)])
      #expect(loss.status == 0, "seed \(seed): \(loss.stderr)")
      let pick = try CLI.run(["run", file.path, "--func", "pick", "--random-inputs", "--dim", "B=100", "--seed", String(seed), "--full"])
      #expect(pick.status == 0, "seed \(seed): \(pick.stderr)")
    }
  }

  @Test func anIndexOutOfRangeNamesTheInputAndTheOp() throws {
    let dir = try CLI.temporaryDirectory()
    let file = dir.appendingPathComponent("m.ttir")
    try Self.classifier.write(to: file, atomically: true, encoding: .utf8)
    // x: f32 [4, 3] ones; y: i32 [4] = 0, 1, 9, 1 (written as .npy by hand).
    func npy(_ descr: String, _ shape: String, _ payload: Data) -> Data {
      var header = "{'descr': '\(descr)', 'fortran_order': False, 'shape': \(shape), }"
      while (10 + header.utf8.count + 1) % 64 != 0 { header += " " }
      header += "\n"
      var data = Data([0x93]) + Data("NUMPY".utf8) + Data([1, 0, UInt8(header.utf8.count & 0xFF), UInt8(header.utf8.count >> 8)])
      data += Data(header.utf8)
      return data + payload
    }
    var ones = Data(); for _ in 0..<12 { withUnsafeBytes(of: Float(1).bitPattern.littleEndian) { ones += Data($0) } }
    var labels = Data(); for v in [Int32(0), 1, 9, 1] { withUnsafeBytes(of: v.littleEndian) { labels += Data($0) } }
    try npy("<f4", "(4, 3)", ones).write(to: dir.appendingPathComponent("x.npy"))
    try npy("<i4", "(4,)", labels).write(to: dir.appendingPathComponent("y.npy"))
    let result = try CLI.run(["run", file.path, "--func", "loss", "--input", "x=" + dir.appendingPathComponent("x.npy").path,
                              "--input", "y=" + dir.appendingPathComponent("y.npy").path])
    #expect(result.status == 1)
    #expect(result.stderr.contains("input %y: element 2 is 9, outside [0, 2) for 'softmax_cross_entropy'"), "\(result.stderr)")
  }

  @Test func anUnknownDimSymbolIsANamedError() throws {
    let result = try CLI.run(["run", "examples/mlp.ttir", "--func", "loss", "--random-inputs", "--dim", "B=4", "--dim", "C=32"])
    #expect(result.status == 1)
    #expect(result.stderr.contains("--dim C: '@loss' has no symbolic dimension C (its symbols: B)"), "\(result.stderr)")
  }

  /// Help is wrapped once: no line longer than 80 columns, and no line of a paragraph broken
  /// early (a short line followed by a line that continues its sentence in lower case).
  @Test(arguments: [["--help"], ["help", "run"], ["help", "train"], ["help", "ncf"], ["help", "opt"], ["help", "compile"]])
  func helpIsWrappedOnce(_ arguments: [String]) throws {
    let help = try CLI.run(arguments)
    #expect(help.status == 0)
    let lines = help.stdout.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    for (k, line) in lines.enumerated() {
      #expect(line.count <= 80, "\(arguments): too long: \(line)")
      if k + 1 < lines.count, !line.hasPrefix(" "), line.count < 40, line.count > 0, !line.hasSuffix(":"),
         let next = lines[k + 1].first, next.isLowercase {
        Issue.record("\(arguments): a paragraph broken early at '\(line)' / '\(lines[k + 1])'")
      }
      // An indented line (a command, an example) wrapped by the help printer continues at column 0.
      if k + 1 < lines.count, line.hasPrefix("  "), !line.hasPrefix("   "), line.count > 76,
         let next = lines[k + 1].first, next != " " {
        Issue.record("\(arguments): an indented line wrapped: '\(line)' / '\(lines[k + 1])'")
      }
    }
  }

  @Test func theOverviewSaysRunCompilesAndErrorsSayErrorInLowerCase() throws {
    let help = try CLI.run(["--help"])
    #expect(!help.stdout.contains("execute on the reference interpreter"))
    #expect(help.stdout.contains("JIT-compiled"))
    let missing = try CLI.run(["run"])
    #expect(missing.status != 0)
    #expect(missing.stderr.hasPrefix("error: Missing expected argument"), "\(missing.stderr)")
    let unknown = try CLI.run(["run", "examples/mlp.ttir", "--bogus"])
    #expect(unknown.stderr.hasPrefix("error: Unknown option '--bogus'"), "\(unknown.stderr)")
  }

  @Test func benchHelpPrintsUsageWithoutRunningTheBenchmark() throws {
    let bench = CLI.binary.deletingLastPathComponent().appendingPathComponent("ttfc-bench")
    let process = Process()
    process.executableURL = bench
    process.arguments = ["--help"]
    let out = Pipe()
    process.standardOutput = out
    try process.run()
    let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    #expect(process.terminationStatus == 0)
    #expect(text.contains("USAGE: ttfc-bench"), "\(text)")
    #expect(!text.contains("memcpy"), "--help ran the benchmark")
  }

  /// Outputs named by the user: a device such as /dev/null is written, never replaced by a
  /// regular file (an atomic rename over it would); a symlink, dangling or not, keeps pointing
  /// at its target, which receives the text; a missing directory is a named error.
  @Test func outputsGoThroughDevicesAndSymlinks() throws {
    var before = stat()
    #expect(stat("/dev/null", &before) == 0 && (before.st_mode & S_IFMT) == S_IFCHR)
    for arguments in [["opt", "examples/mlp.ttir", "-O2", "-o", "/dev/null"],
                      ["compile", "examples/mlp.ttir", "--emit=ir", "-o", "/dev/null"]] {
      let result = try CLI.run(arguments)
      #expect(result.status == 0, "\(arguments): \(result.stderr)")
      var after = stat()
      #expect(stat("/dev/null", &after) == 0 && (after.st_mode & S_IFMT) == S_IFCHR, "\(arguments) replaced /dev/null")
    }
    let dir = try CLI.temporaryDirectory()
    let link = dir.appendingPathComponent("link.ttir").path
    try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: "target.ttir")
    #expect(try CLI.run(["opt", "examples/mlp.ttir", "-o", link]).status == 0)
    #expect(try FileManager.default.destinationOfSymbolicLink(atPath: link) == "target.ttir")
    #expect(try String(contentsOfFile: dir.appendingPathComponent("target.ttir").path, encoding: .utf8).contains("module @mlp"))
    let missing = try CLI.run(["opt", "examples/mlp.ttir", "-o", dir.appendingPathComponent("no/such/dir/o.ttir").path])
    #expect(missing.status == 1 && missing.stderr.contains("its directory does not exist"), "\(missing.stderr)")
  }

  /// The checkpoint records the learning rate, schedule, step count and clipping; a resume that
  /// changes them is refused by name unless --allow-changed-schedule, which reports each change.
  @Test func resumeChecksTheRunsSettings() throws {
    let dir = try CLI.temporaryDirectory()
    let data = dir.appendingPathComponent("data.csv").path
    try TrainCLITests.writeCSV(data, rows: 64)
    let checkpoint = dir.appendingPathComponent("ckpt").path
    let base = ["train", "examples/logreg.ttir", "--data", data, "--batch", "8", "--schedule", "warmup:5+cosine", "--checkpoint", checkpoint]
    let first = try CLI.run(base + ["--steps", "20", "--lr", "0.01"])
    #expect(first.status == 0, "\(first.stderr)")
    let longer = try CLI.run(base + ["--steps", "30", "--lr", "0.01", "--resume"])
    #expect(longer.status == 1)
    #expect(longer.stderr.contains("--steps (in all) 20 -> 30") && longer.stderr.contains("--allow-changed-schedule"), "\(longer.stderr)")
    let otherRate = try CLI.run(base + ["--steps", "20", "--lr", "0.02", "--resume"])
    #expect(otherRate.status == 1 && otherRate.stderr.contains("--lr 0.01 -> 0.02"), "\(otherRate.stderr)")
    let allowed = try CLI.run(base + ["--steps", "30", "--lr", "0.01", "--resume", "--allow-changed-schedule"])
    #expect(allowed.status == 0, "\(allowed.stderr)")
    #expect(allowed.stdout.contains("resumed with a changed setting: --steps (in all) 20 -> 30"), "\(allowed.stdout)")
    let same = try CLI.run(base + ["--steps", "30", "--lr", "0.01", "--resume"])
    #expect(same.status == 0, "the allowed resume recorded its settings: \(same.stderr)")
  }
}
