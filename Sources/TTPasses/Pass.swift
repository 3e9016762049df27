// Pass infrastructure. A pass is a value: a command-line name, a one-line summary, and a function
// that rewrites a module and says whether it changed anything (XLA's `Run() -> changed`, Swift's
// SIL `FunctionPass`). Pipelines are lists of passes and fixpoint groups; a fixpoint group reruns
// its passes until none changes the module or an iteration cap is hit (XLA's HloPassFix uses 25),
// so a rule that keeps flip-flopping cannot hang the compiler. The PassManager runs a pipeline,
// times each pass, keeps per-pass statistics, optionally verifies after every pass and reports the
// IR after passes for `--print-ir-after-all` / `--print-ir-after=NAME`.

import Foundation
import TTIR

public struct PassOptions: Sendable {
  /// Enables rewrites that are exact only without IEEE corner cases (NaN, ±inf, -0.0, rounding):
  /// x + 0 -> x, x * 0 -> 0, log(exp x) -> x, x / c -> x * (1/c) for any c, ...
  public var fastMath = false
  /// Constant folding never creates a constant with more elements than this.
  public var constantFoldElementLimit = 1 << 16
  /// Most reductions one fusion region may hold (softmax counts as two).
  public var maxReductionsPerFusion = 2
  /// Most ops one fusion region may hold: a kernel's code is an expression per output element,
  /// so its size (LLVM's compile time, the emitter's recursion) grows with the region's.
  public var maxOpsPerFusion = 128
  /// The half type the `amp` pass lowers f32 ops to (bf16 or f16).
  public var ampType: DType = .bf16
  /// Whether `fusion` writes `PassContext.fusionExplanations` (`--explain-fusion`): a line per
  /// producer/consumer pair left apart, which costs a walk over every edge (2% of a deep
  /// model's compile), so only when asked.
  public var explainFusion = false
  /// Whether `attention-fusion` replaces attention written in primitives by the `attention` op;
  /// on unless the environment says TTFC_ATTENTION_FUSION=off (to compare fused with unfused).
  public var fuseAttention = PassOptions.attentionFusionByDefault
  public static let attentionFusionByDefault = ProcessInfo.processInfo.environment["TTFC_ATTENTION_FUSION"] != "off"
  public init() {}
}

/// What passes report: counters per pass, time per pass run, and explanations.
public final class PassContext {
  public var options: PassOptions
  public private(set) var statistics: [String: [String: Int]] = [:]
  /// Each pass run: wall seconds, and seconds of this thread's CPU (passes run on one thread; on a
  /// shared host the CPU time is the pass's own work, the wall time adds the waits for a core).
  /// `start` is CLOCK_MONOTONIC seconds (DispatchClock's clock), for a trace's compile track.
  public private(set) var timings: [(pass: String, start: Double, seconds: Double, cpuSeconds: Double)] = []
  /// Lines written by `fusion` for `--explain-fusion`: why adjacent ops were kept apart.
  public var fusionExplanations: [String] = []
  /// Lines written by `amp` for `--explain-amp`: each op's precision and why.
  public var ampExplanations: [String] = []
  /// Steps of the passes' searches whose length depends on the graph's shape rather than on its
  /// size (fusion's candidate tries and cycle-check visits). Tests bound it by a small multiple of
  /// the function's size, so a pass turning quadratic fails a test instead of a user's compile.
  public var work = 0
  /// Things a user should know that are not errors (a fixpoint group stopped by its cap while
  /// its passes were still changing the module); `ttfc opt` prints them as warnings.
  public var warnings: [String] = []
  /// Run-time conditions an expanded op leaves behind (lower-composites): the executable checks
  /// each for every new binding of the symbols, so the expansion fails where the op would have.
  public var nonEmptyRequirements: [NonEmptyRequirement] = []

  public init(options: PassOptions = PassOptions()) { self.options = options }

  public func count(_ pass: String, _ counter: String, by amount: Int = 1) {
    statistics[pass, default: [:]][counter, default: 0] += amount
  }
  func recordTime(_ pass: String, start: Double, _ seconds: Double, cpu: Double) { timings.append((pass, start, seconds, cpu)) }

  /// Total wall and CPU seconds per pass, in the order the passes first ran (`--stats`' phases).
  public var timeByPass: [(pass: String, runs: Int, seconds: Double, cpuSeconds: Double)] {
    var index: [String: Int] = [:]
    var result: [(pass: String, runs: Int, seconds: Double, cpuSeconds: Double)] = []
    for (pass, _, seconds, cpu) in timings {
      if let k = index[pass] { result[k].runs += 1; result[k].seconds += seconds; result[k].cpuSeconds += cpu; continue }
      index[pass] = result.count
      result.append((pass, 1, seconds, cpu))
    }
    return result
  }

  /// CLOCK_MONOTONIC seconds.
  public static func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
  }

  /// Seconds of CPU the calling thread has used (CLOCK_THREAD_CPUTIME_ID).
  public static func threadCPUSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
  }

  /// Statistics and total time per pass (wall, and this thread's CPU), as `ttfc opt --stats`
  /// prints them.
  public func report() -> String {
    var seconds: [String: Double] = [:]
    var cpuSeconds: [String: Double] = [:]
    var runs: [String: Int] = [:]
    var order: [String] = []
    for (pass, _, time, cpu) in timings {
      if seconds[pass] == nil { order.append(pass) }
      seconds[pass, default: 0] += time
      cpuSeconds[pass, default: 0] += cpu
      runs[pass, default: 0] += 1
    }
    var lines: [String] = []
    for pass in order {
      let counters = (statistics[pass] ?? [:]).sorted { $0.key < $1.key }
        .map { "\($0.key)=\($0.value)" }.joined(separator: " ")
      let name = pass.padding(toLength: max(pass.count, 16), withPad: " ", startingAt: 0)
      let runText = "\(runs[pass]!) run\(runs[pass]! == 1 ? " " : "s")".padding(toLength: 8, withPad: " ", startingAt: 0)
      let time = String(format: "%9.3f ms (CPU %.3f ms)", seconds[pass]! * 1000, cpuSeconds[pass]! * 1000)
      lines.append("\(name) \(runText) \(time)  \(counters.isEmpty ? "(no changes)" : counters)")
    }
    for (group, counters) in statistics.sorted(by: { $0.key < $1.key }) where seconds[group] == nil {
      let text = counters.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
      lines.append("\(group.padding(toLength: max(group.count, 16), withPad: " ", startingAt: 0)) (fixpoint)  \(text)")
    }
    return lines.joined(separator: "\n")
  }
}

public struct Pass: Sendable {
  public let name: String
  public let summary: String
  public let run: @Sendable (inout Module, PassContext) -> Bool

  public init(name: String, summary: String, run: @escaping @Sendable (inout Module, PassContext) -> Bool) {
    self.name = name; self.summary = summary; self.run = run
  }

  /// A pass that rewrites each function independently.
  public static func perFunction(name: String, summary: String,
                                 _ body: @escaping @Sendable (inout Function, PassContext) -> Bool) -> Pass {
    Pass(name: name, summary: summary) { module, context in
      var changed = false
      for i in module.functions.indices { changed = body(&module.functions[i], context) || changed }
      return changed
    }
  }
}

public indirect enum PipelineStep: Sendable {
  case pass(Pass)
  /// Rerun `steps` until nothing changes, at most `cap` times.
  case fixpoint(name: String, steps: [PipelineStep], cap: Int)
}

public struct Pipeline: Sendable {
  public var steps: [PipelineStep]
  public init(_ steps: [PipelineStep]) { self.steps = steps }

  /// Pass names in the order they first run (for `--print-ir-after` validation and listings).
  public var passNames: [String] {
    func names(_ steps: [PipelineStep]) -> [String] {
      steps.flatMap { step -> [String] in
        switch step {
        case .pass(let p): return [p.name]
        case .fixpoint(_, let inner, _): return names(inner)
        }
      }
    }
    return names(steps)
  }
}

public struct PassFailure: Error, CustomStringConvertible {
  public var pass: String
  public var problems: [Diagnostic]
  public var description: String {
    "the module does not verify after pass '\(pass)':\n" + problems.map(\.description).joined(separator: "\n")
  }
}

public struct PassManager {
  public var verifyEach = false
  /// Called after every pass run with the pass name, whether it changed the module, and the module.
  public var afterPass: ((String, Bool, Module) -> Void)?

  public init(verifyEach: Bool = false) { self.verifyEach = verifyEach }

  @discardableResult
  public func run(_ pipeline: Pipeline, on module: inout Module, context: PassContext) throws(PassFailure) -> Bool {
    try run(pipeline.steps, on: &module, context: context)
  }

  func run(_ steps: [PipelineStep], on module: inout Module, context: PassContext) throws(PassFailure) -> Bool {
    var changed = false
    for step in steps {
      switch step {
      case .pass(let pass):
        let start = PassContext.monotonicSeconds()
        let cpuStart = PassContext.threadCPUSeconds()
        let passChanged = pass.run(&module, context)
        context.recordTime(pass.name, start: start, PassContext.monotonicSeconds() - start,
                           cpu: PassContext.threadCPUSeconds() - cpuStart)
        if verifyEach {
          let problems = Verifier.verify(module)
          if !problems.isEmpty { throw PassFailure(pass: pass.name, problems: problems) }
        }
        afterPass?(pass.name, passChanged, module)
        changed = changed || passChanged
      case .fixpoint(let name, let inner, let cap):
        var iterations = 0
        var stillChanging = false
        while iterations < cap {
          iterations += 1
          stillChanging = try run(inner, on: &module, context: context)
          if !stillChanging { break }
          changed = true
        }
        context.count(name, "iterations", by: iterations)
        if stillChanging {
          // The cap ended the loop, not a fixed point: say so instead of returning silently.
          context.count(name, "cap-reached")
          context.warnings.append("'\(name)' stopped at its cap of \(cap) rounds while its passes were still changing the module")
        }
      }
    }
    return changed
  }
}
