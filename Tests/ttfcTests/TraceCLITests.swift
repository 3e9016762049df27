// `ttfc run --trace` and `ttfc train --trace --trace-steps`: the written file is Chrome
// trace-event JSON (parsed here with JSONSerialization, as Perfetto and chrome://tracing read
// it), with process and thread names, a run slice per traced step, a thunk slice per thunk per
// step on thread 0, worker chunks on the workers' tracks, compile phases on their own track, and
// nonnegative durations; bad --trace options are named errors.
import Foundation
import Testing

enum TraceFile {
  /// The trace's events, by phase ("M" metadata, "X" slices).
  static func events(_ path: String) throws -> [[String: Any]] {
    let data = try Data(contentsOf: URL(fileURLWithPath: path))
    let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    return try #require(object["traceEvents"] as? [[String: Any]])
  }

  static func slices(_ events: [[String: Any]], category: String) -> [[String: Any]] {
    events.filter { $0["ph"] as? String == "X" && $0["cat"] as? String == category }
  }

  /// Every slice has a name, a pid and tid, and a nonnegative start and duration.
  static func checkSlices(_ events: [[String: Any]]) {
    for e in events where e["ph"] as? String == "X" {
      #expect((e["name"] as? String).map { !$0.isEmpty } == true)
      #expect(e["pid"] as? Int == 1 && e["tid"] is Int)
      #expect(((e["ts"] as? Double) ?? -1) >= 0 && ((e["dur"] as? Double) ?? -1) >= 0, "\(e)")
    }
  }
}

struct TraceCLITests {
  @Test func trainWritesAChromeTraceOfTheRequestedSteps() throws {
    let dir = try CLI.temporaryDirectory()
    let data = dir.appendingPathComponent("train.csv").path
    try TrainCLITests.writeCSV(data, rows: 200)
    let trace = dir.appendingPathComponent("step.json").path
    let result = try CLI.run(["train", "examples/logreg.ttir", "--data", data, "--batch", "32", "--steps", "5",
                              "--trace", trace, "--trace-steps", "2:4"])
    #expect(result.status == 0, "\(result.stderr)")
    #expect(result.stdout.contains("trace of 3 steps written to \(trace)"))
    let events = try TraceFile.events(trace)
    TraceFile.checkSlices(events)
    // Metadata: the process, thread 0, and the compile track are named.
    let names = events.filter { $0["ph"] as? String == "M" && $0["name"] as? String == "thread_name" }
      .compactMap { ($0["args"] as? [String: Any])?["name"] as? String }
    #expect(names.contains("thread 0 (runs the thunks)") && names.contains("compile"))
    #expect(events.contains { $0["ph"] as? String == "M" && $0["name"] as? String == "process_name" })
    // Steps 2, 3 and 4 only, in order.
    let runs = TraceFile.slices(events, category: "run")
    #expect(runs.map { $0["name"] as? String } == ["step 2", "step 3", "step 4"])
    // Every thunk once per traced step, on thread 0, inside its step's slice.
    let thunks = TraceFile.slices(events, category: "thunk")
    #expect(thunks.allSatisfy { $0["tid"] as? Int == 0 })
    var perStep: [String: [Int]] = [:]
    for t in thunks {
      let args = t["args"] as? [String: Any] ?? [:]
      perStep[args["run"] as? String ?? "", default: []].append(args["thunk"] as? Int ?? -1)
      #expect(args["bytes"] is Int && args["flops"] is Int && args["ops"] is [Any])
    }
    #expect(perStep.keys.sorted() == ["step 2", "step 3", "step 4"])
    let thunkCount = perStep["step 2"]?.count ?? 0
    #expect(thunkCount >= 3)
    for (_, indices) in perStep { #expect(indices == Array(0..<thunkCount), "each thunk once per step, in order") }
    for run in runs {
      let start = run["ts"] as! Double, end = start + (run["dur"] as! Double)
      let inside = thunks.filter { ($0["args"] as? [String: Any])?["run"] as? String == run["name"] as? String }
      var previousEnd = start - 0.002
      for t in inside {
        let ts = t["ts"] as! Double
        #expect(ts >= previousEnd - 0.002 && ts + (t["dur"] as! Double) <= end + 0.002, "thunks in order inside their step")
        previousEnd = ts + (t["dur"] as! Double)
      }
    }
    // A GEMM and a kernel, named as such.
    #expect(thunks.contains { $0["name"] as? String == "gemm" })
    #expect(thunks.contains { ($0["name"] as? String)?.hasPrefix("ttfc_k_") == true })
    // The compile's phases: the whole compile and each pass.
    let phases = TraceFile.slices(events, category: "compile")
    #expect(phases.allSatisfy { $0["tid"] as? Int == 1000 })
    #expect(phases.contains { $0["name"] as? String == "compile" } && phases.contains { $0["name"] as? String == "pass fusion" })
  }

  @Test func runWritesATraceWithWorkerChunks() throws {
    let dir = try CLI.temporaryDirectory()
    let model = dir.appendingPathComponent("big.ttir").path
    try """
      module @big {
        func @main(%x: f32[B, 1024]) -> f32[B, 1024] {
          %t = tanh %x : f32[B, 1024]
          %y = mul %t, %x : f32[B, 1024]
          return %y
        }
      }
      """.write(toFile: model, atomically: true, encoding: .utf8)
    let trace = dir.appendingPathComponent("run.json").path
    let result = try CLI.run(["run", model, "--random-inputs", "--dim", "B=2048,2048,2048,2048", "--trace", trace, "--threads", "2"])
    #expect(result.status == 0, "\(result.stderr)")
    let events = try TraceFile.events(trace)
    TraceFile.checkSlices(events)
    #expect(TraceFile.slices(events, category: "run").map { $0["name"] as? String } == ["run 1", "run 2", "run 3", "run 4"])
    let thunks = TraceFile.slices(events, category: "thunk")
    #expect(thunks.count == 4, "one thunk, once per run")
    let args = thunks.first?["args"] as? [String: Any]
    #expect(args?["ops"] as? [String] == ["tanh", "mul"])
    #expect(args?["bytes"] as? Int == 2 * 2048 * 1024 * 4)
    #expect(args?["flops"] as? Int == 2 * 2048 * 1024)
    // Both pool threads have a named track; the kernel is split over the pool, and the chunks
    // the worker ran are on its track, named like the thunk.
    let tracks = Set(events.filter { $0["name"] as? String == "thread_name" }.compactMap { $0["tid"] as? Int })
    #expect(tracks == [0, 1, 1000])
    let chunks = TraceFile.slices(events, category: "chunk")
    #expect(!chunks.isEmpty, "the worker ran no chunk in four runs of a 2M-element kernel")
    #expect(chunks.allSatisfy { $0["tid"] as? Int == 1 && $0["name"] as? String == thunks[0]["name"] as? String })
  }

  @Test func badTraceOptionsAreNamedErrors() throws {
    let dir = try CLI.temporaryDirectory()
    let data = dir.appendingPathComponent("train.csv").path
    try TrainCLITests.writeCSV(data, rows: 40)
    let base = ["train", "examples/logreg.ttir", "--data", data, "--steps", "2"]
    let missingDirectory = try CLI.run(base + ["--trace", dir.appendingPathComponent("no/such/dir/t.json").path])
    #expect(missingDirectory.status != 0 && missingDirectory.stderr.contains("--trace: cannot write") && missingDirectory.stderr.contains("its directory does not exist"))
    let directory = try CLI.run(base + ["--trace", dir.path])
    #expect(directory.status != 0 && directory.stderr.contains("it is a directory"))
    for bad in ["3:2", "0:4", "a:b", "1:2:3", ""] {
      let result = try CLI.run(base + ["--trace", dir.appendingPathComponent("t.json").path, "--trace-steps", bad])
      #expect(result.status != 0 && result.stderr.contains("--trace-steps must be A:B"), "\(bad): \(result.stderr)")
    }
    let stepsAlone = try CLI.run(base + ["--trace-steps", "1:2"])
    #expect(stepsAlone.status != 0 && stepsAlone.stderr.contains("--trace-steps needs --trace FILE"))
    let interpreted = try CLI.run(["run", "examples/logreg.ttir", "--func", "predict", "--random-inputs", "--dim", "B=4", "--interpret",
                                   "--trace", dir.appendingPathComponent("i.json").path])
    #expect(interpreted.status != 0 && interpreted.stderr.contains("--trace applies to compiled runs"))
    #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("t.json").path))
  }
}
