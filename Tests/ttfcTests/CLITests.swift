// The ttfc command as a user meets it: exit codes, clang-style diagnostics on stderr, canonical
// formatting, and `ttfc run` on every example with NumPy-computed parameters and inputs, whose
// outputs must match NumPy's.
import Foundation
import Testing
import TTIR
import TTRuntime

enum CLI {
  static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent()

  /// The ttfc binary built alongside the tests.
  static let binary: URL = {
    if let override = ProcessInfo.processInfo.environment["TTFC_BIN"] { return URL(fileURLWithPath: override) }
    var directory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    for _ in 0..<4 {
      let candidate = directory.appendingPathComponent("ttfc")
      if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
      directory = directory.deletingLastPathComponent()
    }
    return repository.appendingPathComponent(".build/debug/ttfc")
  }()

  struct Result { var status: Int32; var stdout: String; var stderr: String }

  static func run(_ arguments: [String], environment: [String: String] = [:], directory: URL? = nil) throws -> Result {
    let process = Process()
    process.executableURL = binary
    process.arguments = arguments
    if !environment.isEmpty { process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
    process.currentDirectoryURL = directory ?? repository
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    let stdout = out.fileHandleForReading.readDataToEndOfFile()
    let stderr = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return Result(status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self),
                  stderr: String(decoding: stderr, as: UTF8.self))
  }

  static func temporaryDirectory() throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("ttfc-cli-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
  }
}

struct CLITests {
  @Test func checkAcceptsTheExamples() throws {
    let result = try CLI.run(["check", "examples/mlp.ttir", "examples/logreg.ttir", "examples/wide_deep.ttir"])
    #expect(result.status == 0, "\(result.stderr)")
    #expect(result.stdout.contains("examples/mlp.ttir: ok"))
  }

  @Test func checkReportsABrokenFileClangStyleAndExitsOne() throws {
    let dir = try CLI.temporaryDirectory()
    let file = dir.appendingPathComponent("broken.ttir")
    try "module @m {\n  func @f(%x: f32[4]) -> f32[4] {\n    %r = frob %x : f32[4]\n    return %r\n  }\n}\n"
      .write(to: file, atomically: true, encoding: .utf8)
    let result = try CLI.run(["check", file.path])
    #expect(result.status == 1)
    #expect(result.stderr.contains("\(file.path):3:10: error: unknown op 'frob'\n    %r = frob %x : f32[4]\n         ^"))
  }

  @Test func missingFilesAreNamedErrors() throws {
    let result = try CLI.run(["check", "no/such/file.ttir"])
    #expect(result.status == 1)
    #expect(result.stderr.contains("error: cannot read 'no/such/file.ttir': no such file"))
  }

  @Test func fmtPrintsCanonicalTextAndInPlaceIsIdempotent() throws {
    let dir = try CLI.temporaryDirectory()
    let copy = dir.appendingPathComponent("wd.ttir")
    let example = try String(contentsOf: CLI.repository.appendingPathComponent("examples/wide_deep.ttir"), encoding: .utf8)
    #expect(try CLI.run(["fmt", "--check", CLI.repository.appendingPathComponent("examples/wide_deep.ttir").path]).status == 0)
    // Not canonical: a trailing comment far from its code, an extra indent, a blank line.
    let messy = example.replacingOccurrences(of: "  func @", with: "\n    func @")
      .replacingOccurrences(of: "= zeros\n", with: "= zeros        // zero-initialized\n")
    try messy.write(to: copy, atomically: true, encoding: .utf8)
    let printed = try CLI.run(["fmt", copy.path])
    #expect(printed.status == 0)
    let comments = { (text: String) -> [String] in
      text.split(separator: "\n").compactMap { line in line.range(of: "//").map { String(line[$0.lowerBound...]) } }
    }
    #expect(comments(printed.stdout) == comments(messy), "every comment kept, in order")
    #expect(try CLI.run(["fmt", "--check", copy.path]).status == 1)
    #expect(try CLI.run(["fmt", "-i", copy.path]).status == 0)
    #expect(try String(contentsOf: copy, encoding: .utf8) == printed.stdout)
    #expect(try CLI.run(["fmt", "--check", copy.path]).status == 0)
    #expect(try CLI.run(["fmt", copy.path]).stdout == printed.stdout, "idempotent")
  }

  static let examples = [("example_mlp", "mlp.ttir", "loss"), ("example_logreg", "logreg.ttir", "loss"),
                         ("example_wide_deep", "wide_deep.ttir", "predict")]

  @Test(arguments: examples.map { [$0.0, $0.1, $0.2] })
  func runMatchesNumPyOnEveryExample(_ entry: [String]) throws {
    let dir = try CLI.temporaryDirectory()
    let fixture = CLI.repository.appendingPathComponent("Tests/TTInterpTests/Fixtures/\(entry[0]).npz")
    var params: [(name: String, tensor: Tensor)] = []
    var arguments = ["run", "examples/\(entry[1])", "--func", entry[2], "--output-dir", dir.path]
    var expected: Tensor?
    let module = try Parser.parseAndVerify(String(contentsOf: CLI.repository.appendingPathComponent("examples/\(entry[1])"), encoding: .utf8))
    let function = try #require(module.function(named: entry[2]))
    for (name, tensor) in try NpzArchive.read(path: fixture.path) {
      if name.hasPrefix("param.") { params.append((String(name.dropFirst(6)), tensor)) }
      else if name == "out0" { expected = tensor }
      else if name.hasPrefix("in"), let index = Int(name.dropFirst(2)) {
        let path = dir.appendingPathComponent("\(name).npy").path
        try NumpyFormat.write(tensor, path: path)
        arguments += ["--input", "\(function[function.arguments[index]].name)=\(path)"]
      }
    }
    let paramsPath = dir.appendingPathComponent("params.npz").path
    try NpzArchive.write(params, path: paramsPath)
    arguments += ["--params", paramsPath]
    let result = try CLI.run(arguments)
    #expect(result.status == 0, "\(result.stderr)")
    let output = try NumpyFormat.read(path: dir.appendingPathComponent("result0.npy").path)
    let want = try #require(expected)
    #expect(output.shape == want.shape)
    for (a, b) in zip(output.doubles, want.doubles) { #expect(abs(a - b) <= 1e-5 + 2e-5 * abs(b)) }
  }

  @Test func runRejectsWrongInputsWithNamedErrors() throws {
    let dir = try CLI.temporaryDirectory()
    let bad = dir.appendingPathComponent("x.npy").path
    try NumpyFormat.write(Tensor(.f32, shape: [2, 15], floats: [Double](repeating: 0, count: 30)), path: bad)
    let shape = try CLI.run(["run", "examples/logreg.ttir", "--func", "predict", "--input", "x=\(bad)"])
    #expect(shape.status == 1)
    #expect(shape.stderr.contains("input %x of '@predict': expected f32[B, 16], got f32[2, 15] (dimension 1 must be 16)"))
    let missing = try CLI.run(["run", "examples/logreg.ttir", "--func", "predict"])
    #expect(missing.status == 1)
    #expect(missing.stderr.contains("missing input %x : f32[B, 16]"))
    let noFile = try CLI.run(["run", "examples/logreg.ttir", "--func", "predict", "--input", "x=/nope.npy"])
    #expect(noFile.stderr.contains("cannot read '/nope.npy': no such file"))
    let noFunc = try CLI.run(["run", "examples/logreg.ttir", "--func", "nothere"])
    #expect(noFunc.stderr.contains("no function '@nothere'"))
  }

  @Test func randomInputsRunAndAreReproducible() throws {
    let a = try CLI.run(["run", "examples/mlp.ttir", "--func", "loss", "--random-inputs", "--dim", "B=4"])
    let b = try CLI.run(["run", "examples/mlp.ttir", "--func", "loss", "--random-inputs", "--dim", "B=4"])
    #expect(a.status == 0, "\(a.stderr)")
    #expect(a.stdout == b.stdout)
    #expect(a.stdout.contains("result 0 (%m): f32[]"))
  }

  @Test func versionReportsLLVMAndOpenBLAS() throws {
    let result = try CLI.run(["version"])
    #expect(result.status == 0)
    #expect(result.stdout.contains("LLVM 19."))
    #expect(result.stdout.contains("host CPU: "))
    #expect(result.stdout.contains("OpenBLAS"))
    #expect(result.stdout.contains("JIT check: ok"))
  }
}

struct TrainCLITests {
  /// A CSV training set for examples/logreg.ttir: columns x_0..x_15 and y.
  static func writeCSV(_ path: String, rows: Int) throws {
    var text = (0..<16).map { "x_\($0)" }.joined(separator: ",") + ",y\n"
    var state: UInt64 = 7
    func next() -> Double { state = state &* 6364136223846793005 &+ 1; return Double(Int64(bitPattern: state >> 11) % 2000) / 1000 }
    for _ in 0..<rows {
      let x = (0..<16).map { _ in next() }
      let y = x[0] + x[1] - x[2] > 0 ? 1 : 0
      text += x.map { String(format: "%.3f", $0) }.joined(separator: ",") + ",\(y)\n"
    }
    try text.write(toFile: path, atomically: true, encoding: .utf8)
  }

  @Test func trainsFromCSVWithCheckpointsAndResume() throws {
    let dir = try CLI.temporaryDirectory()
    let data = dir.appendingPathComponent("train.csv").path
    try Self.writeCSV(data, rows: 300)
    let checkpoint = dir.appendingPathComponent("ckpt").path
    let metrics = dir.appendingPathComponent("metrics.jsonl").path
    let first = try CLI.run(["train", "examples/logreg.ttir", "--data", data, "--eval-data", data, "--batch", "32", "--steps", "10",
                             "--optimizer", "adam", "--lr", "0.05", "--checkpoint", checkpoint, "--metrics", metrics])
    #expect(first.status == 0, "\(first.stderr)")
    #expect(first.stdout.contains("step 10/10 loss"))
    #expect(first.stdout.contains("eval auc"))
    #expect(FileManager.default.fileExists(atPath: checkpoint + "/checkpoint.safetensors"))
    let lines = try String(contentsOfFile: metrics, encoding: .utf8).split(separator: "\n")
    #expect(lines.count == 11)   // ten steps and one evaluation
    let resumed = try CLI.run(["train", "examples/logreg.ttir", "--data", data, "--batch", "32", "--steps", "15",
                               "--optimizer", "adam", "--lr", "0.05", "--checkpoint", checkpoint, "--resume"])
    #expect(resumed.status == 0, "\(resumed.stderr)")
    #expect(resumed.stdout.contains("resumed from step 10"))
    #expect(resumed.stdout.contains("step 15/15"))
  }

  @Test func badTrainingInputsAreNamedErrors() throws {
    let dir = try CLI.temporaryDirectory()
    let data = dir.appendingPathComponent("train.csv").path
    try Self.writeCSV(data, rows: 20)
    let optimizer = try CLI.run(["train", "examples/logreg.ttir", "--data", data, "--optimizer", "adamax"])
    #expect(optimizer.status == 1 && optimizer.stderr.contains("unknown optimizer 'adamax'"))
    let schedule = try CLI.run(["train", "examples/logreg.ttir", "--data", data, "--schedule", "triangle"])
    #expect(schedule.status == 1 && schedule.stderr.contains("cannot read schedule 'triangle'"))
    let wrongModel = try CLI.run(["train", "examples/mlp.ttir", "--data", data])
    #expect(wrongModel.status == 1 && wrongModel.stderr.contains("the data has no column 'x' for input %x : f32[B, 784]"))
    let missing = try CLI.run(["train", "examples/logreg.ttir", "--data", dir.appendingPathComponent("nope.npz").path])
    #expect(missing.status == 1 && missing.stderr.contains("no data at"))
    try "x_0,y\n1.0,abc\n".write(toFile: dir.appendingPathComponent("bad.csv").path, atomically: true, encoding: .utf8)
    let malformed = try CLI.run(["train", "examples/logreg.ttir", "--data", dir.appendingPathComponent("bad.csv").path])
    #expect(malformed.status == 1 && malformed.stderr.contains("'abc' in column 'y' is not a number"))
    let noCheckpoint = try CLI.run(["train", "examples/logreg.ttir", "--data", data, "--resume"])
    #expect(noCheckpoint.status == 1 && noCheckpoint.stderr.contains("--resume needs --checkpoint DIR"))
  }

  @Test func interruptSavesACheckpoint() throws {
    let dir = try CLI.temporaryDirectory()
    let data = dir.appendingPathComponent("train.csv").path
    try Self.writeCSV(data, rows: 200)
    let checkpoint = dir.appendingPathComponent("ckpt").path
    let process = Process()
    process.executableURL = CLI.binary
    process.arguments = ["train", "examples/logreg.ttir", "--data", data, "--batch", "8", "--steps", "100000000",
                         "--checkpoint", checkpoint]
    process.currentDirectoryURL = CLI.repository
    let out = Pipe()
    process.standardOutput = out
    process.standardError = Pipe()
    try process.run()
    // Give training time to start, then interrupt like Ctrl-C; never wait on the pipe unbounded.
    Thread.sleep(forTimeInterval: 4)
    kill(process.processIdentifier, SIGINT)
    let deadline = Date().addingTimeInterval(60)
    while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.1) }
    if process.isRunning { process.terminate(); Issue.record("ttfc train did not stop on SIGINT") }
    let seen = out.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    #expect(process.terminationStatus == 130)
    #expect(String(decoding: seen, as: UTF8.self).contains("interrupted at step"))
    #expect(FileManager.default.fileExists(atPath: checkpoint + "/checkpoint.safetensors"))
  }
}

/// `--threads 1` is one thread for OpenBLAS too: an f64 GEMM gives the same bits on one thread as
/// on two (an outside review found OpenBLAS kept its own threads under `--threads 1`, so 220 of
/// 6,400 elements of a [100,100]·[100,64] product differed between the two).
struct ThreadCountBitsCLITests {
  @Test func f64MatmulBitsDoNotDependOnThreads() throws {
    let dir = try CLI.temporaryDirectory()
    defer { try? FileManager.default.removeItem(at: dir) }
    let file = dir.appendingPathComponent("mm.ttir")
    try """
      module @m {
        func @f(%a: f64[100, 100], %b: f64[100, 64], %c: f64[6, 130, 130], %d: f64[6, 130, 64]) -> (f64[100, 64], f64[6, 130, 64]) {
          %p = matmul %a, %b : f64[100, 64]
          %q = matmul %c, %d : f64[6, 130, 64]
          return %p, %q
        }
      }
      """.write(to: file, atomically: true, encoding: .utf8)
    var outputs: [[Data]] = []
    for threads in ["1", "2"] {
      let out = dir.appendingPathComponent("out\(threads)")
      let result = try CLI.run(["run", file.path, "--func", "f", "--random-inputs", "--threads", threads, "--output-dir", out.path],
                               environment: ["OPENBLAS_NUM_THREADS": "2"])
      #expect(result.status == 0, "\(result.stderr)")
      outputs.append(try (0..<2).map { try Data(contentsOf: out.appendingPathComponent("result\($0).npy")) })
    }
    #expect(outputs[0] == outputs[1])
  }
}
