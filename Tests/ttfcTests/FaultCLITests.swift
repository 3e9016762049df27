// `ttfc train` and `ttfc ncf` under bad input (issue 15): divergence stops training by name and
// keeps the last good checkpoint, outputs are checked before step 1, every numeric option has a
// range, duplicate and unfitting data columns are named, CRLF text reads, negative sampling ends.
// Plus a seeded family of out-of-range option values, each of which must be a named error.
import Foundation
import Testing
import TTRuntime

struct FaultCLITests {
  /// The logreg CSV with one field of example `row` (0-based) in column x_3 replaced by `value`.
  static func writeCSV(_ path: String, rows: Int, poisonRow: Int? = nil, value: String = "nan", lineEnd: String = "\n") throws {
    try TrainCLITests.writeCSV(path, rows: rows)
    var lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map(String.init)
    if let poisonRow {
      var fields = lines[poisonRow + 1].split(separator: ",").map(String.init)
      fields[3] = value
      lines[poisonRow + 1] = fields.joined(separator: ",")
    }
    try (lines.joined(separator: lineEnd) + lineEnd).write(toFile: path, atomically: true, encoding: .utf8)
  }

  static let logreg = "examples/logreg.ttir"

  @Test func nanDataStopsByNameAndKeepsTheLastGoodCheckpoint() throws {
    let dir = try CLI.temporaryDirectory()
    let good = dir.appendingPathComponent("good.csv").path, poisoned = dir.appendingPathComponent("nan.csv").path
    try Self.writeCSV(good, rows: 64)
    try Self.writeCSV(poisoned, rows: 64, poisonRow: 39)
    let checkpoint = dir.appendingPathComponent("ckpt").path
    let first = try CLI.run(["train", Self.logreg, "--data", good, "--batch", "8", "--steps", "4", "--checkpoint", checkpoint])
    #expect(first.status == 0, "\(first.stderr)")
    let saved = try Data(contentsOf: URL(fileURLWithPath: checkpoint + "/checkpoint.safetensors"))
    let resumed = try CLI.run(["train", Self.logreg, "--data", poisoned, "--batch", "8", "--steps", "8", "--no-shuffle",
                               "--checkpoint", checkpoint, "--checkpoint-every", "1", "--resume"])
    #expect(resumed.status == 1)
    #expect(resumed.stderr.contains("training diverged at step 5: batch 4 of epoch 0: column 'x' holds nan (example 39 of the data)"), "\(resumed.stderr)")
    #expect(try Data(contentsOf: URL(fileURLWithPath: checkpoint + "/checkpoint.safetensors")) == saved)
  }

  @Test func infiniteDataIsSkippedWithSkipStep() throws {
    let dir = try CLI.temporaryDirectory()
    let poisoned = dir.appendingPathComponent("inf.csv").path
    try Self.writeCSV(poisoned, rows: 64, poisonRow: 10, value: "inf")
    let result = try CLI.run(["train", Self.logreg, "--data", poisoned, "--batch", "8", "--steps", "8", "--no-shuffle",
                              "--on-nonfinite", "skip-step"])
    #expect(result.status == 0, "\(result.stderr)")
    #expect(result.stdout.contains("skipped 1 steps with non-finite values"))
    #expect(!result.stdout.contains("loss nan"))
  }

  @Test func divergingParametersStopWithoutACheckpoint() throws {
    let dir = try CLI.temporaryDirectory()
    let data = dir.appendingPathComponent("train.csv").path
    try Self.writeCSV(data, rows: 64)
    let checkpoint = dir.appendingPathComponent("ckpt").path
    // SGD at 1e38 overflows the parameters at step 1 or 2; nothing non-finite may be saved.
    let result = try CLI.run(["train", Self.logreg, "--data", data, "--batch", "8", "--steps", "8", "--optimizer", "sgd",
                              "--lr", "1e38", "--checkpoint", checkpoint, "--checkpoint-every", "1"])
    #expect(result.status == 1)
    #expect(result.stderr.contains("training diverged at step"), "\(result.stderr)")
    #expect(!result.stdout.contains("final training loss"))
    if let bytes = FileManager.default.contents(atPath: checkpoint + "/checkpoint.safetensors") {
      #expect(!String(decoding: bytes, as: UTF8.self).contains("\"step\":\"8\""))
    }
  }

  @Test func outputsAndEvalDataAreCheckedBeforeStepOne() throws {
    let dir = try CLI.temporaryDirectory()
    let data = dir.appendingPathComponent("train.csv").path
    try Self.writeCSV(data, rows: 64)
    let blocker = dir.appendingPathComponent("file").path
    try "not a directory".write(toFile: blocker, atomically: true, encoding: .utf8)
    let unwritableCheckpoint = try CLI.run(["train", Self.logreg, "--data", data, "--steps", "3", "--checkpoint", blocker + "/ckpt"])
    #expect(unwritableCheckpoint.status == 1 && unwritableCheckpoint.stderr.contains("cannot write '\(blocker)/ckpt'"), "\(unwritableCheckpoint.stderr)")
    #expect(!unwritableCheckpoint.stdout.contains("step 1/3"))
    let unwritableMetrics = try CLI.run(["train", Self.logreg, "--data", data, "--steps", "3", "--metrics", blocker + "/m.jsonl"])
    #expect(unwritableMetrics.status == 1 && unwritableMetrics.stderr.contains("cannot write '\(blocker)/m.jsonl'"), "\(unwritableMetrics.stderr)")
    #expect(!unwritableMetrics.stdout.contains("step 1/3"))
    let narrow = dir.appendingPathComponent("narrow.csv").path
    try "x_0,y\n1,0\n".write(toFile: narrow, atomically: true, encoding: .utf8)
    let badEval = try CLI.run(["train", Self.logreg, "--data", data, "--steps", "3", "--eval-data", narrow])
    #expect(badEval.status == 1 && badEval.stderr.contains("--eval-data: the data has no column 'x'"), "\(badEval.stderr)")
    #expect(!badEval.stdout.contains("step 1/3"))
  }

  @Test func fullDiskMetricsIsANamedErrorAndSavesTheState() throws {
    guard FileManager.default.fileExists(atPath: "/dev/full") else { return }
    let dir = try CLI.temporaryDirectory()
    let data = dir.appendingPathComponent("train.csv").path
    try Self.writeCSV(data, rows: 64)
    let checkpoint = dir.appendingPathComponent("ckpt").path
    let result = try CLI.run(["train", Self.logreg, "--data", data, "--steps", "3", "--metrics", "/dev/full", "--checkpoint", checkpoint])
    #expect(result.status == 1)
    #expect(result.stderr.contains("cannot write '/dev/full'") && result.stderr.contains("checkpoint saved at step 1"), "\(result.stderr)")
    #expect(FileManager.default.fileExists(atPath: checkpoint + "/checkpoint.safetensors"))
  }

  @Test func killedSavesTemporaryFilesAreSweptAtTheNextSave() throws {
    let dir = try CLI.temporaryDirectory()
    let data = dir.appendingPathComponent("train.csv").path
    try Self.writeCSV(data, rows: 32)
    let checkpoint = dir.appendingPathComponent("ckpt").path
    try FileManager.default.createDirectory(atPath: checkpoint, withIntermediateDirectories: true)
    // The pid of a process that has exited: its temporary files are abandoned.
    let finished = Process()
    finished.executableURL = URL(fileURLWithPath: "/bin/true")
    try finished.run()
    finished.waitUntilExit()
    let pid = finished.processIdentifier
    let abandoned = ["checkpoint.safetensors.tmp.\(pid).1", "table.user.40.ttemb.tmp.\(pid).3"]
    let foreign = ["notes.txt.tmp.\(pid).1", "checkpoint.safetensors.tmp.\(getpid()).1"]
    for name in abandoned + foreign { #expect(FileManager.default.createFile(atPath: checkpoint + "/" + name, contents: Data(repeating: 1, count: 100))) }
    let result = try CLI.run(["train", Self.logreg, "--data", data, "--steps", "2", "--checkpoint", checkpoint])
    #expect(result.status == 0, "\(result.stderr)")
    for name in abandoned { #expect(!FileManager.default.fileExists(atPath: checkpoint + "/" + name), "\(name)") }
    for name in foreign { #expect(FileManager.default.fileExists(atPath: checkpoint + "/" + name), "\(name)") }
  }

  @Test func fmtInPlaceWritesThroughASymlink() throws {
    let dir = try CLI.temporaryDirectory()
    let target = dir.appendingPathComponent("real.ttir").path, link = dir.appendingPathComponent("link.ttir").path
    try "module @m {\n  func @f(%x: f32[2]) -> f32[2] {\n    %y = neg %x : f32[2]   // comment\n    return %y\n  }\n}\n"
      .write(toFile: target, atomically: true, encoding: .utf8)
    try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: target)
    let result = try CLI.run(["fmt", "-i", link])
    #expect(result.status == 0, "\(result.stderr)")
    #expect(try FileManager.default.destinationOfSymbolicLink(atPath: link) == target, "the link stays a link")
    #expect(try String(contentsOfFile: target, encoding: .utf8).contains("%y = neg %x : f32[2]  // comment\n"), "the target is formatted")
  }

  @Test func runWithSeveralSizesWritesEachSizesResults() throws {
    let dir = try CLI.temporaryDirectory()
    let output = dir.appendingPathComponent("out").path
    let result = try CLI.run(["run", Self.logreg, "--func", "predict", "--random-inputs", "--dim", "B=3,5", "--output-dir", output])
    #expect(result.status == 0, "\(result.stderr)")
    for size in [3, 5] {
      let path = output + "/B=\(size)/result0.npy"
      #expect(FileManager.default.fileExists(atPath: path), "\(path)")
      if FileManager.default.fileExists(atPath: path) { #expect(try NumpyFormat.read(path: path).shape == [size]) }
    }
  }

  @Test func hugeSizesFromTypesAreNamedErrors() throws {
    let dir = try CLI.temporaryDirectory()
    let file = dir.appendingPathComponent("broadcast.ttir").path
    try "module @m {\n  func @main(%x: f32[B, 1]) -> f32[B, 1000000000] {\n    %y = broadcast_to %x : f32[B, 1000000000]\n    return %y\n  }\n}\n"
      .write(toFile: file, atomically: true, encoding: .utf8)
    let result = try CLI.run(["run", file, "--random-inputs", "--dim", "B=1000"])
    #expect(result.status == 1 && result.stderr.contains("needs 3.7 TiB; this machine has"), "\(result.stderr)")
    let slice = dir.appendingPathComponent("slice.ttir").path
    try "module @m {\n  func @main(%x: f32[8]) -> f32[1] {\n    %y = slice %x {axes = [0], starts = [0], limits = [8], strides = [9223372036854775807]} : f32[1]\n    return %y\n  }\n}\n"
      .write(toFile: slice, atomically: true, encoding: .utf8)
    #expect(try CLI.run(["check", slice]).status == 0)
    #expect(try CLI.run(["fmt", "-i", slice]).status == 0)
  }

  @Test func namedOptionErrors() throws {
    let dir = try CLI.temporaryDirectory()
    let data = dir.appendingPathComponent("train.csv").path
    try Self.writeCSV(data, rows: 16)
    let cases: [([String], String)] = [
      (["--checkpoint-every", "0"], "--checkpoint-every must be at least 1"), (["--eval-every", "0"], "--eval-every must be at least 1"),
      (["--epochs", "9223372036854775807"], "--epochs must be 1 to"), (["--batch", "9223372036854775807"], "--batch must be 1 to"),
      (["--steps=-1"], "--steps must be 0 to"), (["--epochs=-1"], "--epochs must be 1 to"),
      (["--clip-norm=-1"], "--clip-norm must be a number from 1.2e-38 to 3.4e38"), (["--clip-norm", "nan"], "--clip-norm must be"),
      (["--lr", "inf"], "--lr must be 0 or a number from 1.2e-38 to 3.4e38"), (["--lr", "nan"], "--lr must be 0 or a number from 1.2e-38 to 3.4e38"),
      (["--on-nonfinite", "ignore"], "--on-nonfinite must be stop or skip-step"),
    ]
    for (options, message) in cases {
      let result = try CLI.run(["train", Self.logreg, "--data", data] + options)
      #expect(result.status == 1 && result.stderr.contains("error: " + message), "\(options): \(result.stderr)")
    }
    let ncfCases: [([String], String)] = [
      (["--batch", "0"], "--batch must be 1 to"), (["--candidates=-1"], "--candidates must be 1 to"), (["--epochs=-1"], "--epochs must be 1 to"),
      (["--lr", "nan"], "--lr must be a number from 0 to 3.4e38"), (["--synthetic", "1e9,1e9,1e9"], "--synthetic 1e9,1e9,1e9 is too large"),
    ]
    for (options, message) in ncfCases {
      let result = try CLI.run(["ncf"] + options)
      #expect(result.status == 1 && result.stderr.contains("error: " + message), "\(options): \(result.stderr)")
    }
  }

  @Test func duplicateColumnsAndUnfittingIntegersAreNamed() throws {
    let dir = try CLI.temporaryDirectory()
    let data = dir.appendingPathComponent("train.csv").path
    try Self.writeCSV(data, rows: 16)
    let lines = try String(contentsOfFile: data, encoding: .utf8).split(separator: "\n")
    let duplicated = dir.appendingPathComponent("dup.csv").path
    try ([lines[0] + ",y"] + lines.dropFirst().map { $0 + ",1" }).joined(separator: "\n").write(toFile: duplicated, atomically: true, encoding: .utf8)
    let result = try CLI.run(["train", Self.logreg, "--data", duplicated, "--steps", "1"])
    #expect(result.status == 1 && result.stderr.contains("the header names column 'y' twice"), "\(result.stderr)")
  }

  @Test func crlfDataAndRatingsRead() throws {
    let dir = try CLI.temporaryDirectory()
    let data = dir.appendingPathComponent("crlf.csv").path
    try Self.writeCSV(data, rows: 32, lineEnd: "\r\n")
    let train = try CLI.run(["train", Self.logreg, "--data", data, "--steps", "2"])
    #expect(train.status == 0, "\(train.stderr)")
    let ratings = dir.appendingPathComponent("ratings.csv").path
    var text = "userId,movieId,rating,timestamp\r\n"
    for user in 1...6 { for item in 1...4 where (user + item) % 3 != 0 { text += "\(user),\(item),4,\(100 * item)\r\n" } }
    try text.write(toFile: ratings, atomically: true, encoding: .utf8)
    let ncf = try CLI.run(["ncf", "--ratings", ratings, "--epochs", "1", "--seeds", "1", "--optimizers", "sgd", "--candidates", "1"])
    #expect(ncf.status == 0, "\(ncf.stderr)")
    #expect(ncf.stdout.contains("NCF: 6 users, 4 items"))
  }

  @Test func negativeSamplingOfASaturatedUserIsANamedErrorNotAHang() throws {
    let synthetic = try CLI.run(["ncf", "--synthetic", "10,5,5", "--epochs", "1", "--seeds", "1"])
    #expect(synthetic.status == 1 && synthetic.stderr.contains("rated every one of the 5 items"), "\(synthetic.stderr)")
    let dir = try CLI.temporaryDirectory()
    let ratings = dir.appendingPathComponent("ratings.csv").path
    try "userId,movieId,rating,timestamp\n1,1,5,100\n1,2,4,200\n2,1,3,100\n2,2,5,300\n".write(toFile: ratings, atomically: true, encoding: .utf8)
    let file = try CLI.run(["ncf", "--ratings", ratings, "--epochs", "1", "--seeds", "1"])
    #expect(file.status == 1 && file.stderr.contains("user 1 rated every one of the 2 items"), "\(file.stderr)")
  }

  /// Seeded adversarial options: for each numeric option of `train`, random values outside its
  /// documented range (negative, zero where excluded, huge, non-finite); each must be a named
  /// error (exit 1, "error: --OPTION"), never a crash, a hang or a silent acceptance.
  @Test func randomOutOfRangeOptionsAreNamedErrors() throws {
    let dir = try CLI.temporaryDirectory()
    let data = dir.appendingPathComponent("train.csv").path
    try Self.writeCSV(data, rows: 16)
    var generator = SeededGenerator(seed: UInt64(ProcessInfo.processInfo.environment["TTFC_FUZZ_SEED"] ?? "") ?? 15)
    let hugeIntegers = ["9223372036854775807", "-9223372036854775808", "1099511627776000", "-1", "-7"]
    let integerOptions: [(String, [String])] = [
      ("--batch", ["0"] + hugeIntegers), ("--steps", ["-1", "-1000", "9223372036854775807", "1000000000001"]),
      ("--epochs", ["0"] + hugeIntegers), ("--eval-every", ["0", "-1", "-9223372036854775808"]),
      ("--checkpoint-every", ["0", "-3", "-9223372036854775808"]), ("--table-ttl", ["-1", "-9223372036854775808"]),
      ("--table-capacity", ["0", "-1"]), ("--export-recent", ["0", "-5"]),
    ]
    let realOptions: [(String, [String])] = [
      ("--lr", ["nan", "inf", "-inf", "-1e-3", "-1e308"]), ("--clip-norm", ["nan", "inf", "0", "-1", "-inf"]),
    ]
    let all = integerOptions + realOptions
    var started = Date()
    for _ in 0..<12 {
      let (option, values) = all[Int(generator.next() % UInt64(all.count))]
      let value = values[Int(generator.next() % UInt64(values.count))]
      started = Date()
      let result = try CLI.run(["train", Self.logreg, "--data", data, "\(option)=\(value)"])
      #expect(result.status == 1, "\(option)=\(value): exit \(result.status)")
      #expect(result.stderr.hasPrefix("error: \(option) must be"), "\(option)=\(value): \(result.stderr)")
      #expect(Date().timeIntervalSince(started) < 30)
    }
    // ncf's options the same way (each fails before any data is made or read).
    let ncfOptions: [(String, [String])] = [
      ("--epochs", ["0", "-1", "9223372036854775807"]), ("--batch", ["0", "-1", "9223372036854775807"]),
      ("--lr", ["nan", "inf", "-1"]), ("--candidates", ["0", "-1", "9223372036854775807"]),
    ]
    for _ in 0..<6 {
      let (option, values) = ncfOptions[Int(generator.next() % UInt64(ncfOptions.count))]
      let value = values[Int(generator.next() % UInt64(values.count))]
      let result = try CLI.run(["ncf", "\(option)=\(value)"])
      #expect(result.status == 1 && result.stderr.hasPrefix("error: \(option) must be"), "ncf \(option)=\(value): \(result.stderr)")
    }
  }
}

/// SplitMix64: a small seeded generator for the adversarial families.
struct SeededGenerator: RandomNumberGenerator {
  var state: UInt64
  init(seed: UInt64) { state = seed }
  mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }
}
