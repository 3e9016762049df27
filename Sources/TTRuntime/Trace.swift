// ExecutionTrace — a profile a person can look at: what each thunk of an executable's runs did,
// on which thread and when, written in the Chrome trace-event format (JSON; opens in Perfetto and
// chrome://tracing, as XLA's and JAX's profiles do), and summed per thunk for a table
// (`ttfc-bench --profile`, TTFC_PROFILE).
//
// Recording: an Executable with a trace attached (`executable.trace`) times each thunk of a
// prepared run on the calling thread, and the thread pool times each chunk a worker runs while
// the trace is attached to it (for the run's duration). Each thread appends to a log of its own
// (no lock; the pool's job hand-off orders a worker's appends before the caller reads them), so
// recording costs two clock reads per slice. With no trace attached, a run checks one optional
// reference per run and the pool one per chunk: no allocation, no locking, no clock reads.
//
// Tracks (tid): 0 is the thread that runs the thunks (it also runs chunks of the pool's jobs),
// 1..n-1 the pool's workers, and `compileTrack` the compile's phases (each pass run, kernel
// compilation, lowering, parameters), laid out from the times the compiler recorded.

import Foundation
import TTIR
import TTSupport

public final class ExecutionTrace: @unchecked Sendable {
  /// One slice: a thunk (on the running thread), a pool chunk of a thunk (on a worker), or a run.
  struct Event {
    enum Kind: UInt8 { case thunk, chunk, run }
    var kind: Kind
    var thunk: Int32
    var run: Int32
    var start: Double
    var end: Double
  }

  /// A growable buffer that only its own thread appends to.
  final class ThreadLog {
    var events: UnsafeMutablePointer<Event>
    var count = 0
    var capacity: Int
    init(capacity: Int = 1024) {
      self.capacity = capacity
      events = .allocate(capacity: capacity)
    }
    deinit { events.deallocate() }
    @inline(__always) func append(_ event: Event) {
      if count == capacity {
        let grown = UnsafeMutablePointer<Event>.allocate(capacity: capacity * 2)
        grown.moveInitialize(from: events, count: count)
        events.deallocate()
        events = grown
        capacity *= 2
      }
      (events + count).initialize(to: event)
      count += 1
    }
    var all: UnsafeBufferPointer<Event> { UnsafeBufferPointer(start: events, count: count) }
  }

  /// The track of the compile's phases.
  public static let compileTrack = 1000

  let logs: [ThreadLog]
  /// The thunk the running thread is executing (what a worker's chunk belongs to).
  var currentThunk: Int32 = -1
  /// Runs recorded so far; `runLabels[k]` names run k (a training step: "step 12").
  var runs: Int32 = 0
  var runLabels: [String] = []
  /// The label the next run gets (set by a training loop before each traced step).
  public var nextRunLabel: String?
  /// Per executable traced: its thunk descriptions, by the run they first appeared in.
  var thunkInfo: [ObjectIdentifier: [ThunkInfo]] = [:]
  var runExecutable: [Int32: ObjectIdentifier] = [:]
  var compileSlices: [ExecutableStatistics.PhaseSlice] = []

  /// What a slice of a thunk shows: its kernel (or routine) name and arguments.
  public struct ThunkInfo: Sendable {
    public var name: String
    public var ops: [String]
    public var bytes: Int
    public var flops: Int
    public var listing: String
  }

  /// A trace for a pool of `threads` threads (the caller's included).
  public init(threads: Int = ThreadPool.shared.threadCount) {
    logs = (0..<max(threads, 1)).map { _ in ThreadLog() }
  }

  /// Adds an executable's compile phases to the compile track.
  public func addCompilePhases(_ statistics: ExecutableStatistics, label: String? = nil) {
    compileSlices += statistics.phaseSlices.map { slice in
      var s = slice
      if let label { s.name = label + ": " + s.name }
      return s
    }
  }

  // MARK: recording (called by Executable and ThreadPool)

  @inline(__always) func beginThunk(_ index: Int) { currentThunk = Int32(index) }

  @inline(__always) func recordThunk(_ index: Int, start: Double, end: Double) {
    logs[0].append(Event(kind: .thunk, thunk: Int32(index), run: runs, start: start, end: end))
  }

  /// A worker's chunk (worker index >= 1: the caller's own chunks lie inside its thunk slice).
  @inline(__always) func recordChunk(worker: Int, start: Double, end: Double) {
    guard worker > 0, worker < logs.count else { return }
    logs[worker].append(Event(kind: .chunk, thunk: currentThunk, run: runs, start: start, end: end))
  }

  /// Called when a run of `executable` ends: its slice, and (once per executable and shape) the
  /// thunks' descriptions, computed after the run so they do not stretch its slices.
  func finishRun(_ executable: Executable, start: Double, end: Double, shapes: [[Int]]) {
    logs[0].append(Event(kind: .run, thunk: -1, run: runs, start: start, end: end))
    runLabels.append(nextRunLabel ?? "run \(runs + 1)")
    nextRunLabel = nil
    let id = ObjectIdentifier(executable)
    if thunkInfo[id] == nil { thunkInfo[id] = executable.describeThunks(shapes: shapes) }
    runExecutable[runs] = id
    runs += 1
  }

  // MARK: reading

  /// How many runs were recorded.
  public var runCount: Int { Int(runs) }

  /// Per thunk of every traced executable: calls, total seconds, and its description, most
  /// expensive first (the table of `ttfc-bench --profile` and TTFC_PROFILE).
  public func thunkTable() -> [(seconds: Double, calls: Int, info: ThunkInfo)] {
    struct Key: Hashable { let executable: ObjectIdentifier; let thunk: Int32 }
    var seconds: [Key: Double] = [:], calls: [Key: Int] = [:]
    for event in logs[0].all where event.kind == .thunk {
      guard let executable = runExecutable[event.run] else { continue }
      let key = Key(executable: executable, thunk: event.thunk)
      seconds[key, default: 0] += event.end - event.start
      calls[key, default: 0] += 1
    }
    return seconds.compactMap { key, total -> (seconds: Double, calls: Int, info: ThunkInfo)? in
      guard let info = thunkInfo[key.executable]?[Int(key.thunk)] else { return nil }
      return (total, calls[key]!, info)
    }.sorted { $0.seconds > $1.seconds }
  }

  /// The per-thunk table as text: milliseconds in all, calls, what the thunk is.
  public func thunkTableText(limit: Int = .max) -> String {
    thunkTable().prefix(limit).map { row in
      String(format: "%9.3f ms %6d x  ", row.seconds * 1e3, row.calls) + row.info.listing
        + (row.info.ops.isEmpty ? "" : "  [\(row.info.ops.joined(separator: " "))]")
    }.joined(separator: "\n")
  }

  /// The trace as Chrome trace-event JSON: metadata naming the process and each track, a
  /// complete ("X") slice per run, thunk, worker chunk and compile phase; times in microseconds
  /// from the earliest slice.
  public func json(processName: String = "ttfc") -> String {
    var origin = Double.infinity
    for log in logs { for e in log.all { origin = min(origin, e.start) } }
    for s in compileSlices { origin = min(origin, s.start) }
    if !origin.isFinite { origin = 0 }
    var out = "{\"displayTimeUnit\":\"ms\",\"traceEvents\":[\n"
    var first = true
    func emit(_ object: String) {
      if !first { out += ",\n" }
      first = false
      out += object
    }
    func us(_ seconds: Double) -> String { String(format: "%.3f", max(0, seconds) * 1e6) }
    emit("{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":1,\"tid\":0,\"args\":{\"name\":\(Self.quote(processName))}}")
    for k in logs.indices {
      let name = k == 0 ? "thread 0 (runs the thunks)" : "pool worker \(k)"
      emit("{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":1,\"tid\":\(k),\"args\":{\"name\":\(Self.quote(name))}}")
      emit("{\"name\":\"thread_sort_index\",\"ph\":\"M\",\"pid\":1,\"tid\":\(k),\"args\":{\"sort_index\":\(k + 1)}}")
    }
    if !compileSlices.isEmpty {
      emit("{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":1,\"tid\":\(Self.compileTrack),\"args\":{\"name\":\"compile\"}}")
      emit("{\"name\":\"thread_sort_index\",\"ph\":\"M\",\"pid\":1,\"tid\":\(Self.compileTrack),\"args\":{\"sort_index\":0}}")
      for s in compileSlices {
        emit("{\"name\":\(Self.quote(s.name)),\"cat\":\"compile\",\"ph\":\"X\",\"pid\":1,\"tid\":\(Self.compileTrack),\"ts\":\(us(s.start - origin)),\"dur\":\(us(s.end - s.start))}")
      }
    }
    for (k, log) in logs.enumerated() {
      for e in log.all {
        let info = runExecutable[e.run].flatMap { thunkInfo[$0] }.flatMap { e.thunk >= 0 && Int(e.thunk) < $0.count ? $0[Int(e.thunk)] : nil }
        let run = Int(e.run) < runLabels.count ? runLabels[Int(e.run)] : "run \(e.run + 1)"
        let timing = "\"ph\":\"X\",\"pid\":1,\"tid\":\(k),\"ts\":\(us(e.start - origin)),\"dur\":\(us(e.end - e.start))"
        switch e.kind {
        case .run:
          emit("{\"name\":\(Self.quote(run)),\"cat\":\"run\",\(timing)}")
        case .thunk:
          let name = info?.name ?? "thunk \(e.thunk)"
          let ops = (info?.ops ?? []).map(Self.quote).joined(separator: ",")
          emit("{\"name\":\(Self.quote(name)),\"cat\":\"thunk\",\(timing),\"args\":{\"thunk\":\(e.thunk),\"run\":\(Self.quote(run)),\"ops\":[\(ops)],\"bytes\":\(info?.bytes ?? 0),\"flops\":\(info?.flops ?? 0),\"what\":\(Self.quote(info?.listing ?? ""))}}")
        case .chunk:
          let name = info?.name ?? "thunk \(e.thunk)"
          emit("{\"name\":\(Self.quote(name)),\"cat\":\"chunk\",\(timing),\"args\":{\"thunk\":\(e.thunk),\"run\":\(Self.quote(run))}}")
        }
      }
    }
    out += "\n]}\n"
    return out
  }

  /// Writes `json()` to the output file `path` (AtomicFile.writeOutput: a regular file is
  /// replaced atomically, so a reader never sees half a trace).
  public func write(to path: String, processName: String = "ttfc") throws(OutputFileError) {
    try AtomicFile.writeOutput(Array(json(processName: processName).utf8), to: path)
  }

  /// Why a trace could not be written to `path` (checked before anything runs), or nil: an empty
  /// name, a directory, a missing or unwritable directory.
  public static func unwritableReason(_ path: String) -> String? {
    guard !path.isEmpty else { return "an empty path" }
    var info = stat()
    if stat(path, &info) == 0 {
      if (info.st_mode & S_IFMT) == S_IFDIR { return "it is a directory" }
      if (info.st_mode & S_IFMT) == S_IFREG && access(path, W_OK) != 0 { return "it is not writable" }
      return nil
    }
    let directory = (path as NSString).deletingLastPathComponent
    let parent = directory.isEmpty ? "." : directory
    guard stat(parent, &info) == 0, (info.st_mode & S_IFMT) == S_IFDIR else { return "its directory does not exist" }
    guard access(parent, W_OK) == 0 else { return "its directory is not writable" }
    return nil
  }

  /// Parses `--trace-steps A:B` (1 <= A <= B, both inclusive; `A` alone is A:A).
  public static func parseSteps(_ text: String) -> ClosedRange<Int>? {
    let parts = text.split(separator: ":", omittingEmptySubsequences: false)
    guard parts.count == 1 || parts.count == 2, let a = Int(parts[0]), let b = Int(parts.last!), a >= 1, a <= b else { return nil }
    return a...b
  }

  static func quote(_ text: String) -> String {
    var out = "\""
    for scalar in text.unicodeScalars {
      switch scalar {
      case "\"": out += "\\\""
      case "\\": out += "\\\\"
      case "\n": out += "\\n"
      case "\t": out += "\\t"
      default:
        if scalar.value < 0x20 { out += String(format: "\\u%04x", scalar.value) } else { out.unicodeScalars.append(scalar) }
      }
    }
    return out + "\""
  }
}

extension Executable {
  /// A description of each thunk for traces: kernel or routine name, the ops it computes (a
  /// fusion's body), the bytes it reads and writes and its floating-point operations at these
  /// slot shapes (a GEMM's 2mnk; a kernel's ops times its output elements, an estimate).
  func describeThunks(shapes: [[Int]]) -> [ExecutionTrace.ThunkInfo] {
    let listing = thunkListing
    let lowered = program.lowered
    func bytes(_ slot: Int) -> Int { (elementCount(shapes[slot]) ?? 0) * slots[slot].type.dtype.byteSize }
    func elements(_ slot: Int) -> Int { elementCount(shapes[slot]) ?? 0 }
    return thunks.enumerated().map { k, thunk in
      var ops: [String] = []
      if k < program.thunkOps.count {
        let op = lowered[lowered.body[program.thunkOps[k]]]
        if let body = op.body { ops = body.body.map { body[$0].code }.filter { $0 != .constant }.map { "\($0)" } }
        else { ops = ["\(op.code)"] }
      }
      let (reads, writes) = Self.uses(thunk)
      let moved = (reads + writes).filter { $0 >= 0 }.reduce(0) { $0 + bytes($1) }
      var name: String
      var flops = 0
      switch thunk {
      case .kernel(let kernel, _, let results, _):
        name = kernel.name
        // A gemm region's epilogue kernel computes the ops after the matmul.
        if ops.first == "matmul" { ops.removeFirst() }
        flops = max(1, ops.count) * elements(results[0])
      case .gemm(let a, _, let c, let transposeA, _):
        name = "gemm"
        let inner = transposeA ? (shapes[a].dropLast().last ?? 1) : (shapes[a].last ?? 1)
        flops = 2 * elements(c) * inner
        ops = ["matmul"]
      case .gemmSummedOverBatch(let a, _, let c):
        name = "gemm summed over batch"
        flops = 2 * elements(c) * shapes[a].dropLast().reduce(1, *)
        ops = ["matmul", "reduce_sum"]
      case .conv(let kind, let g, let operands, _, _):
        // Every convolution op multiplies and adds once per output position, output channel and
        // tap of its group's input channels (operand 0's first dimension is the batch).
        name = kind.rawValue
        flops = 2 * (shapes[operands[0]].first ?? 0) * g.oh * g.ow * g.cout * g.kh * g.kw * g.cg
      case .rows(let routine, _, _):
        name = "\(routine)"
      case .copy:
        name = "layout copy"
      case .pool(let kind, let g, _, let result):
        name = kind.rawValue
        flops = (shapes[result].first ?? 0) * g.oh * g.ow * g.c * g.kh * g.kw
      case .interpretOp(let op, _, _): name = "interpret \(op.code)"
      case .interpretRegion: name = "interpret region"
      case .table(let table, let op, _, _): name = "\(op.code) @\(table)"
      }
      return ExecutionTrace.ThunkInfo(name: name, ops: ops, bytes: moved, flops: flops, listing: listing[k])
    }
  }
}
