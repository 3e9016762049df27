// `ttfc train MODEL.ttir` — compile the loss function's training step (autodiff + optimizer) and
// train it on data, with a progress bar on a terminal (plain lines otherwise), evaluation,
// JSON-lines metrics and checkpoints. Ctrl-C saves a checkpoint before exiting.
import ArgumentParser
import Foundation
import TTEmbedding
import TTIR
import TTCompiler
import TTRuntime
import TTTrain

nonisolated(unsafe) var interruptRequested: sig_atomic_t = 0

struct Train: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Train a model's loss function on data.",
    discussion: helpText("""
      The loss function's inputs are bound to the data's columns by name (an .npz, a directory of
      .npy files, or a CSV with a header).

      Optimizers: sgd momentum nesterov adagrad rmsprop adam adamw. Schedules: constant,
      step:EVERY:FACTOR, exponential:STEPS:RATE, cosine[:FINAL], each optionally after warmup:N+.

      Example:
        ttfc train examples/mlp.ttir --data train.npz --eval-data test.npz \\
          --batch 64 --epochs 3 --optimizer adam --lr 1e-3 \\
          --schedule warmup:50+cosine --checkpoint out/ckpt
      """))

  @Argument(help: "The .ttir model.") var file: String
  @Option(help: "Training data: .npz, .csv, or a directory of .npy files.") var data: String
  @Option(name: .customLong("loss"), help: "The loss function.") var lossName = "loss"
  @Option(help: "Add the loss function: softmax_cross_entropy (i32 labels), sigmoid_cross_entropy or mse of --predict's result against --labels (for a model with no loss of its own, e.g. from `ttfc import`).") var objective: String?
  @Option(help: "With --objective: the data column of the labels (a new argument of the loss).") var labels = "labels"
  @Option(help: "With --objective: the function whose result is trained (default: the only function, or @main).") var predict: String?
  @Option(parsing: .unconditional, help: "Examples per batch (1 to 2^30).") var batch = 32
  @Option(parsing: .unconditional, help: "Training steps, 0 to 10^12 (default: one epoch, or --epochs).") var steps: Int?
  @Option(parsing: .unconditional, help: "Epochs over the data, 1 to 10^9 (ignored when --steps is given; steps in all at most 10^12).") var epochs: Int?
  @Option(help: "sgd, momentum, nesterov, adagrad, rmsprop, adam or adamw.") var optimizer = "adam"
  @Option(parsing: .unconditional, help: "Base learning rate, 0 to 3.4e38.") var lr = 1e-3
  @Option(help: "Learning-rate schedule (see above).") var schedule = "constant"
  @Option(parsing: .unconditional, help: "Clip gradients to this global L2 norm, 1.2e-38 to 3.4e38.") var clipNorm: Double?
  @Option(parsing: .unconditional, help: "Seed for the data order (0 to 2^64-1).") var seed: UInt64 = 0
  @Option(help: "Evaluation data (same columns as --data).") var evalData: String?
  @Option(parsing: .unconditional, help: "Evaluate every N steps, N at least 1 (default: at the end).") var evalEvery: Int?
  @Option(help: "Append JSON-lines metrics to this file.") var metrics: String?
  @Option(help: "Directory for checkpoints (written at the end, every --checkpoint-every steps, and on Ctrl-C).") var checkpoint: String?
  @Option(parsing: .unconditional, help: "Checkpoint every N steps, N at least 1.") var checkpointEvery: Int?
  @Option(help: "On a non-finite loss, gradient, parameter or data value: stop (a named error, exit 1, no checkpoint of that state) or skip-step (undo the step's update, go on, report the count).")
  var onNonfinite = "stop"
  @Flag(help: "Continue from the checkpoint in --checkpoint (exactly where it stopped).") var resume = false
  @Flag(help: "With --resume: accept a learning rate, schedule, step count or clipping other than the checkpoint's (each change is reported).") var allowChangedSchedule = false
  @Option(help: "Write the optimized IR of the training step to this file.") var emitIr: String?
  @Option(help: "Initial parameter values from an .npz (arrays named like the parameters).") var initParams: String?
  @Flag(inversion: .prefixedNo, help: "Shuffle the examples every epoch (--no-shuffle: file order).") var shuffle = true
  @Option(help: "Variable-length sequences: the data column of per-example lengths; each batch is cut on axis 1 (of every input whose axis 1 is symbolic and padded to the data's length) to its longest example.") var sequenceLengths: String?
  @Option(help: "How batch sizes map to memory layouts of the one compiled step: exact, pow2, geometric:R, list:E1,E2,..., adaptive.")
  var bucketPolicy = "pow2"
  @Flag(help: "At the end, print compiles, kernel cache hits, shape buckets, padding and compile seconds (to stderr).")
  var stats = false
  @Flag(help: "Verify the training step after every compiler pass; stop at the first pass that breaks it.")
  var verifyEach = false
  @Option(help: "Optimizer of embedding tables: sgd, adagrad, ftrl, adam (dense semantics), lazyadam, sparseadam-published, sparseadam-rowcount, sparseadam-catchup, or sparseadam (one of those, IR-specs/embeddings.md; the default for Adam-family optimizers, else the sparse form of --optimizer).")
  var sparseOptimizer: String?
  @Option(parsing: .unconditional, help: "Evict table rows not seen in training for more than N steps, N at least 0 (checked every 100 steps).") var tableTtl: Int?
  @Option(parsing: .unconditional, help: "Keep at most N rows per table, N at least 1, evicting the least frequently used (checked every 100 steps).") var tableCapacity: Int?
  @Option(help: "After training, write each table for serving (rows only) to DIR/NAME.ttemb.") var exportTables: String?
  @Option(parsing: .unconditional, help: "With --export-tables, keep only rows seen in the last N steps, N at least 1.") var exportRecent: Int?
  @Option(help: "fp32 (default), bf16 or f16 (every step in mixed precision: the amp rewrite, f32 master weights), or auto (each step's precision chosen by --precision-policy).")
  var precision = "fp32"
  @Option(help: "With --precision auto: fixed:fp32|bf16|f16, lr-change:HOLD (HOLD steps in fp32 from each learning-rate change; default lr-change:100) or loss:HOLD[:RISE[:DECAY]] (HOLD steps in fp32 after a non-finite loss or a loss RISE above its moving average).")
  var precisionPolicy: String?
  @Option(help: "With --precision auto: the half type of mixed steps, bf16 (default) or f16.") var halfType: String?
  @Option(help: "Loss scaling of mixed steps: none, a fixed factor, or dynamic[:KEY=N,...] with keys initial, growth, backoff, interval, min and max (default: dynamic for f16, none for bf16).")
  var lossScale: String?
  @Flag(help: "Print the precision the amp rewrite gave each op of the loss, and why (to stderr).") var explainAmp = false
  @Option(help: "Write a Chrome trace-event profile of training steps here (JSON: open it in Perfetto or chrome://tracing): a slice per thunk on each pool thread's track, each step as a slice, and the compile's phases.")
  var trace: String?
  @Option(help: "With --trace: the steps to record, A:B (inclusive, 1 <= A <= B; default 1:10).") var traceSteps: String?
  @Flag(help: "Data-parallel training over MPI: start with `mpirun -np N ttfc train ... --distributed`; each rank computes 1/N of every global batch of --batch examples (a multiple of N), gradients are summed by allreduce, rank 0 writes metrics and checkpoints. TTFC_MPI_TIMEOUT (seconds, default 120) bounds every collective.")
  var distributed = false
  @Flag(help: "With --distributed: split every embedding table among the ranks by a hash of the id (each rank holds, updates, evicts and checkpoints its shard; lookups and row gradients travel by alltoallv) instead of a replica on every rank. --table-capacity then applies per shard.")
  var shardTables = false

  /// Every numeric option's range, checked before anything is read or compiled.
  func checkOptionRanges() throws {
    guard (1...TrainingOptions.maximumBatch).contains(batch) else { throw fail("--batch must be 1 to \(TrainingOptions.maximumBatch), got \(batch)") }
    if let steps, !(0...TrainingOptions.maximumSteps).contains(steps) { throw fail("--steps must be 0 to \(TrainingOptions.maximumSteps), got \(steps)") }
    if let epochs, !(1...1_000_000_000).contains(epochs) { throw fail("--epochs must be 1 to 1000000000, got \(epochs)") }
    // The step computes in f32: the rate and the clipping norm must be f32 numbers (1e39 would
    // round to inf, 1e-320 to 0), and -0.0 is not a rate.
    let f32Max = Double(Float.greatestFiniteMagnitude), f32Min = Double(Float.leastNormalMagnitude)
    guard lr.isFinite, lr == 0 || (lr >= f32Min && lr <= f32Max), lr.sign == .plus else {
      throw fail("--lr must be 0 or a number from 1.2e-38 to 3.4e38, got \(lr)")
    }
    if let clipNorm {
      guard clipNorm.isFinite, clipNorm >= f32Min, clipNorm <= f32Max else {
        throw fail("--clip-norm must be a number from 1.2e-38 to 3.4e38, got \(clipNorm)")
      }
    }
    if let evalEvery, evalEvery < 1 { throw fail("--eval-every must be at least 1, got \(evalEvery)") }
    if let checkpointEvery, checkpointEvery < 1 { throw fail("--checkpoint-every must be at least 1, got \(checkpointEvery)") }
    if let tableTtl, tableTtl < 0 { throw fail("--table-ttl must be at least 0, got \(tableTtl)") }
    if let tableCapacity, tableCapacity < 1 { throw fail("--table-capacity must be at least 1, got \(tableCapacity)") }
    if let exportRecent, exportRecent < 1 { throw fail("--export-recent must be at least 1, got \(exportRecent)") }
    guard NonFinitePolicy(rawValue: onNonfinite) != nil else { throw fail("--on-nonfinite must be stop or skip-step, got '\(onNonfinite)'") }
    if let traceSteps {
      guard trace != nil else { throw fail("--trace-steps needs --trace FILE") }
      guard ExecutionTrace.parseSteps(traceSteps) != nil else { throw fail("--trace-steps must be A:B with whole numbers 1 <= A <= B, got '\(traceSteps)'") }
    }
    if let trace, let reason = ExecutionTrace.unwritableReason(trace) { throw fail("--trace: cannot write '\(trace)': \(reason)") }
  }

  /// The mixed-precision setup from --precision, --precision-policy, --half-type and --loss-scale
  /// (nil for fp32); an option that the chosen precision would ignore is an error.
  func mixedPrecisionOptions() throws -> MixedPrecisionOptions? {
    let fixedHalf: DType?
    switch precision {
    case "fp32": fixedHalf = nil
    case "bf16": fixedHalf = .bf16
    case "f16": fixedHalf = .f16
    case "auto": fixedHalf = nil
    default: throw fail("--precision \(precision): expected fp32, bf16, f16 or auto")
    }
    if precision != "auto" {
      if precisionPolicy != nil { throw fail("--precision-policy needs --precision auto (--precision \(precision) fixes every step's precision)") }
      if halfType != nil { throw fail("--half-type needs --precision auto (--precision \(precision) names the type)") }
    }
    if precision == "fp32" {
      if lossScale != nil { throw fail("--loss-scale scales mixed-precision steps: it needs --precision bf16, f16 or auto") }
      if explainAmp { throw fail("--explain-amp needs mixed precision: --precision bf16, f16 or auto") }
      return nil
    }
    var half = fixedHalf ?? .bf16
    if let halfType {
      guard let parsed = DType(rawValue: halfType), parsed == .bf16 || parsed == .f16 else { throw fail("--half-type \(halfType): expected bf16 or f16") }
      half = parsed
    }
    let policy: PrecisionPolicy
    do {
      if let fixedHalf { policy = FixedPrecisionPolicy(.mixed, spelling: "fixed:\(fixedHalf)") }
      else {
        policy = try MixedPrecisionOptions.policy(named: precisionPolicy ?? "lr-change:100")
        if let fixed = policy as? FixedPrecisionPolicy, fixed.precision == .mixed {
          let named = DType(rawValue: String(fixed.description.dropFirst("fixed:".count)))!
          if halfType != nil && named != half { throw fail("--precision-policy \(fixed.description) and --half-type \(half) disagree") }
          half = named
        }
        if let fixed = policy as? FixedPrecisionPolicy, fixed.precision == .full {
          // Every step in fp32: the mixed-precision options would be ignored.
          for (flag, given) in [("--loss-scale", lossScale != nil), ("--half-type", halfType != nil), ("--explain-amp", explainAmp)] where given {
            throw fail("\(flag) has no effect with --precision-policy fixed:fp32 (no step runs in mixed precision)")
          }
        }
      }
      let scaling = try lossScale.map { text throws(PrecisionOptionError) in try LossScaling.parse(text) }
      return MixedPrecisionOptions(halfType: half, lossScaling: scaling, policy: policy)
    } catch let error as PrecisionOptionError { throw fail(error.description) }
  }

  /// Where `--emit-ir FILE` puts the mixed step beside the full one: `NAME.mixed.EXT`.
  static func mixedPath(_ path: String) -> String {
    let ext = (path as NSString).pathExtension
    let stem = ext.isEmpty ? path : (path as NSString).deletingPathExtension
    return stem + ".mixed" + (ext.isEmpty ? "" : "." + ext)
  }

  func run() throws {
    try checkOptionRanges()
    // MPI first: every rank's errors then name their rank, and rank 0 alone prints progress.
    var communicator: Communicator? = nil
    if distributed {
      if let problem = Communicator.environmentError() { throw fail(problem) }
      do { communicator = try Communicator.world() } catch { throw fail("\(error)") }
      if let communicator, communicator.rank != 0 {
        // The other ranks' standard output goes nowhere; their errors still reach stderr.
        let null = open("/dev/null", O_WRONLY)
        if null >= 0 { dup2(null, STDOUT_FILENO); close(null) }
      }
    }
    do { try train(communicator: communicator) } catch let exit as ExitCode {
      if let communicator, exit.rawValue == 130 {
        // Ctrl-C: every rank stopped after the same step and the checkpoint is complete.
        communicator.finalize()
      } else if let communicator, exit != .success {
        if communicator.size > 1 { print("ttfc: rank \(communicator.rank) of \(communicator.size) stops", to: &standardError) }
        // One rank's named error ends the job (the others would wait at the next collective).
        communicator.abort(code: exit.rawValue)
      }
      throw exit
    }
    communicator?.finalize()
  }

  func train(communicator: Communicator?) throws {
    var module = try SourceFile.read(file).module()
    if let objective {
      guard let kind = StandardLoss(rawValue: objective) else {
        throw fail("unknown --objective '\(objective)' (expected \(StandardLoss.allCases.map(\.rawValue).joined(separator: ", ")))")
      }
      let target = predict ?? (module.functions.count == 1 ? module.functions[0].name : "main")
      do { try kind.add(to: &module, predict: target, labels: labels, lossName: lossName) } catch { throw fail("--objective: \(error)") }
    } else if predict != nil || labels != "labels" {
      throw fail("--predict and --labels describe the loss that --objective adds; give --objective too")
    } else if module.function(named: lossName) == nil {
      // An imported model has no loss of its own: name how to add one.
      let functions = module.functions.map { "@" + $0.name }.joined(separator: ", ")
      throw fail("\(file) has no function @\(lossName) to train (it has \(functions)); name the loss with --loss, or add one with --objective softmax_cross_entropy|sigmoid_cross_entropy|mse")
    }
    guard let kind = OptimizerConfig.Kind(rawValue: optimizer) else {
      throw fail("unknown optimizer '\(optimizer)' (expected \(OptimizerConfig.Kind.allCases.map(\.rawValue).joined(separator: ", ")))")
    }
    guard let parsedSchedule = LearningRateSchedule.parse(schedule) else { throw fail("cannot read schedule '\(schedule)'") }
    if resume && checkpoint == nil { throw fail("--resume needs --checkpoint DIR") }
    var config = OptimizerConfig(kind)
    config.clipNorm = clipNorm
    var options = TrainingOptions()
    options.batch = batch
    options.steps = steps
    options.epochs = epochs
    options.learningRate = lr
    options.schedule = parsedSchedule
    options.seed = seed
    options.verifyEach = verifyEach || CompileOptions.verifyEachByDefault
    options.evalEvery = evalEvery ?? (evalData != nil ? Int.max : nil)
    options.checkpointDirectory = checkpoint
    options.checkpointEvery = checkpointEvery
    options.metricsPath = metrics
    options.shuffle = shuffle
    options.sequenceLengths = sequenceLengths
    options.onNonFinite = NonFinitePolicy(rawValue: onNonfinite)!
    options.allowChangedSchedule = allowChangedSchedule
    options.resumesFromCheckpoint = resume && checkpoint.map { FileManager.default.fileExists(atPath: ($0 as NSString).appendingPathComponent("checkpoint.safetensors")) } == true
    do { options.bucketPolicy = try BucketPolicy(parsing: bucketPolicy) } catch { throw fail("--bucket-policy: \(error)") }
    options.tableTTL = tableTtl
    options.tableCapacity = tableCapacity
    options.mixedPrecision = try mixedPrecisionOptions()
    options.communicator = communicator
    if shardTables && !distributed { throw fail("--shard-tables needs --distributed") }
    options.shardTables = shardTables
    if let sparseOptimizer {
      guard let parsed = SparseOptimizer(name: sparseOptimizer) else {
        throw fail("unknown sparse optimizer '\(sparseOptimizer)' (expected \(SparseOptimizer.names.joined(separator: ", ")))")
      }
      options.sparseOptimizer = parsed
    }
    // A resume takes every value from the checkpoint: the same command line, --init-params
    // included, may start a run and then resume it (scripts do), so the unused option is
    // reported rather than refused, never ignored silently.
    if let initParams, options.resumesFromCheckpoint {
      print("note: resuming from '\(checkpoint!)/checkpoint.safetensors', which holds every parameter; --init-params \(initParams) is not used",
            to: &standardError)
    } else if let initParams {
      do {
        for (name, t) in try NpzArchive.read(path: initParams) {
          guard options.initialParams[name] == nil else { throw fail("--init-params: '\(initParams)' holds two arrays named '\(name)'") }
          options.initialParams[name] = t
        }
      } catch let exit as ExitCode { throw exit }
      catch { throw fail("--init-params: \(error)") }
    }

    let loop: TrainingLoop
    do {
      let trainData = try Dataset.load(data)
      let evaluation = try evalData.map { path throws(DataError) in try Dataset.load(path) }
      loop = try TrainingLoop(module: module, loss: lossName, optimizer: config, data: trainData, evalData: evaluation, options: options)
      if resume {
        if try loop.resume() {
          print("resumed from step \(loop.trainer.stepCount) (\(checkpoint!)/checkpoint.safetensors)")
          for change in loop.settingChanges { print("warning: resumed with a changed setting: \(change)") }
          for note in loop.reshardNotes { print("note: \(note)", to: &standardError) }
        }
        else { print("no checkpoint in \(checkpoint!) yet; starting from step 0") }
      }
      // Every path written later is checked now, before step 1.
      try loop.checkOutputs()
      if let exportTables { try TrainingLoop.checkWritableDirectory(exportTables) }
    } catch { throw fail("\(error)") }

    if explainAmp {
      for line in loop.trainer.ampExplanations { print("amp: \(line)", to: &standardError) }
    }
    if let mixed = options.mixedPrecision, loop.trainer.mixedProgram != nil, loop.trainer.ampLoweredOps == 0 {
      print("warning: --precision \(precision): the amp rewrite lowered no op of @\(lossName) to \(mixed.halfType) (it has no f32 allow-list op such as matmul); its mixed steps compute what fp32 steps do", to: &standardError)
    }
    if let emitIr {
      // The compiler's own output for the step, not a second run of the pipeline. With both a
      // full and a mixed step, the mixed one goes beside it (NAME.mixed.EXT).
      try writeOutput(Printer.print(loop.trainer.program.optimizedModule), to: emitIr, what: "--emit-ir")
      let which = loop.trainer.hasFullProgram ? "training step" : "mixed-precision training step"
      print("optimized \(which) written to \(emitIr)")
      if loop.trainer.hasFullProgram, let mixed = loop.trainer.mixedProgram {
        let path = Self.mixedPath(emitIr)
        try writeOutput(Printer.print(mixed.optimizedModule), to: path, what: "--emit-ir")
        print("optimized mixed-precision training step written to \(path)")
      }
    }
    print("training @\(lossName) of \(file): \(loop.totalSteps) steps, batch \(batch), \(optimizer) lr \(lr) (\(parsedSchedule)), \(module.params.count) parameters"
          + (options.mixedPrecision.map { ", mixed precision \($0.halfType) (policy \($0.policy.description), loss scale \($0.lossScaling))" } ?? ""))
    fflush(nil)
    signal(SIGINT) { _ in interruptRequested = 1 }
    // A parent may have started us with SIGINT blocked (spawned from a thread that blocks it):
    // unblock it, or Ctrl-C would never arrive.
    var unblock = sigset_t()
    sigemptyset(&unblock)
    sigaddset(&unblock, SIGINT)
    sigprocmask(SIG_UNBLOCK, &unblock, nil)
    loop.stopRequested = { interruptRequested != 0 }
    let progress = ProgressReporter(total: loop.totalSteps)
    // --trace: record the steps in range (the step about to run is stepCount + 1).
    let recorder = trace.map { _ in ExecutionTrace(threads: ThreadPool.shared.threadCount) }
    let tracedSteps = traceSteps.flatMap(ExecutionTrace.parseSteps) ?? 1...10
    func traceNextStep() {
      guard let recorder else { return }
      let next = loop.trainer.stepCount + 1
      if tracedSteps.contains(next) {
        loop.trainer.attachTrace(recorder)
        recorder.nextRunLabel = "step \(next)"
      } else {
        loop.trainer.attachTrace(nil)
      }
    }
    if let recorder { loop.trainer.attachTrace(recorder) }   // its compile phases, even if no step is traced
    traceNextStep()
    func writeTrace() throws {
      guard let trace, let recorder else { return }
      loop.trainer.attachTrace(nil)
      do { try recorder.write(to: trace) } catch { throw fail("--trace: cannot write '\(trace)': \(error)") }
      print("trace of \(recorder.runCount) step\(recorder.runCount == 1 ? "" : "s") written to \(trace) (open it in Perfetto or chrome://tracing)")
    }
    let finished: Bool
    do {
      finished = try loop.run { event in
        progress.report(event)
        if event.kind == .step { traceNextStep() }
      }
    }
    catch {
      progress.finish(); try? writeTrace()
      if let communicator, let checkpoint {
        let exitCode = fail("\(error)")
        print("ttfc: rank \(communicator.rank): " + (loop.lastCheckpointStep.map { "the last complete checkpoint is step \($0) in \(checkpoint)" }
              ?? "no checkpoint was completed in \(checkpoint) in this run"), to: &standardError)
        throw exitCode
      }
      throw fail("\(error)")
    }
    progress.finish()
    try writeTrace()
    if !finished {
      print("interrupted at step \(loop.trainer.stepCount)" + (checkpoint.map { "; checkpoint saved in \($0)" } ?? ""))
      throw ExitCode(130)
    }
    if stats, let communicator, let step = loop.trainer.distributed {
      // Bytes this rank put on the network per step (payloads; a ring allreduce sends 2(N-1)/N of its payload).
      let t = communicator.traffic, steps = max(1, t.steps)
      let dense = t.denseGradientBytes / steps
      print("distributed: rank \(communicator.rank) of \(communicator.size), \(t.steps) steps, \(step.plan.buckets.count) gradient bucket\(step.plan.buckets.count == 1 ? "" : "s") "
            + "(\(step.plan.buckets.map { "\($0.bytes)" }.joined(separator: "+")) bytes)", to: &standardError)
      print("distributed: per step: dense gradients \(dense) bytes allreduced (ring: \(Traffic.ringAllreduceBytes(payload: dense, ranks: communicator.size)) bytes sent per rank), "
            + "ids \(t.idBytes / steps) bytes, rows \(t.rowBytes / steps) bytes, row gradients \(t.rowGradientBytes / steps) bytes gathered; "
            + String(format: "%.3f ms waiting in collectives", t.waitSeconds / Double(steps) * 1000)
            + "; \(t.bucketsOverlapped) of \(step.plan.buckets.count * t.steps) bucket allreduces started before the backward pass ended", to: &standardError)
    }
    if stats {
      for line in loop.trainer.shapes.report() { print(line, to: &standardError) }
      if loop.trainer.hasFullProgram, let shapes = loop.trainer.mixedShapes {
        for line in shapes.report() { print("mixed-precision step: " + line, to: &standardError) }
      }
      if options.mixedPrecision != nil {
        let counters = loop.trainer.ampStatistics.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        print("amp: \(counters.isEmpty ? "no op lowered" : counters)", to: &standardError)
      }
      for (name, table) in loop.trainer.tables.sorted(by: { $0.key < $1.key }) {
        let t = table.statistics
        print(String(format: "table @%@: %d rows (capacity %d), %.2f MiB, %d inserts, %d evictions, hit rate %.3f", name as NSString,
                     t.size, t.rowCapacity, Double(t.bytes) / 1_048_576, t.inserts, t.evictions, t.hitRate), to: &standardError)
      }
    }
    if let exportTables {
      do {
        try FileManager.default.createDirectory(atPath: exportTables, withIntermediateDirectories: true)
        for path in try loop.exportTables(to: exportTables, recent: exportRecent) { print("table exported to \(path)") }
      } catch { throw fail("--export-tables: \(error)") }
    }
    if loop.skippedSteps > 0 {
      print(options.mixedPrecision == nil ? "skipped \(loop.skippedSteps) steps with non-finite values (--on-nonfinite skip-step)"
            : "skipped \(loop.skippedSteps) updates with non-finite values (--on-nonfinite skip-step, loss scaling or the precision policy)")
    }
    if options.mixedPrecision != nil {
      let counts = loop.precisionCounts
      print("precision: \(counts.full) steps fp32, \(counts.mixed) steps \(options.mixedPrecision!.halfType)"
            + (loop.trainer.lossScaler.scaling == .none ? "" : ", final loss scale \(loop.trainer.lossScaler.scale)"))
    }
    if let last = loop.losses.last { print(String(format: "done: %d steps, final training loss %.6f", loop.trainer.stepCount, last)) }
    if let checkpoint { print("checkpoint: \(checkpoint)/checkpoint.safetensors") }
  }
}

/// A progress bar with step, loss, steps/s and ETA on a terminal; a plain line every 5% otherwise.
final class ProgressReporter {
  let total: Int
  let interactive = isatty(STDOUT_FILENO) != 0
  var lastLine = -1
  var lastDraw = 0.0

  init(total: Int) { self.total = total }

  func report(_ event: TrainingEvent) {
    switch event.kind {
    case .evaluation:
      clear()
      let parts = event.metrics.sorted { $0.key < $1.key }.map { String(format: "%@ %.4f", $0.key as NSString, $0.value) }
      print("step \(event.step): eval " + parts.joined(separator: ", "))
    case .checkpoint:
      break
    case .step:
      let remaining = Double(total - event.step) / max(event.stepsPerSecond, 1e-9)
      let eta = String(format: "%d:%02d", Int(remaining) / 60, Int(remaining) % 60)
      if interactive {
        let now = Date().timeIntervalSince1970
        guard now - lastDraw > 0.05 || event.step == total else { return }
        lastDraw = now
        let width = 30
        let filled = width * event.step / max(total, 1)
        let bar = String(repeating: "=", count: filled) + (filled < width ? ">" : "") + String(repeating: " ", count: max(0, width - filled - 1))
        let lossText = event.updateSkipped ? "skipped" : String(format: "loss %.4f", event.loss)
        print(String(format: "\r[%@] %d/%d %@ %.1f steps/s ETA %@%@", bar as NSString, event.step, total, lossText as NSString,
                     event.stepsPerSecond, eta as NSString, (event.precision.map { " " + $0 } ?? "") as NSString), terminator: "")
        fflush(nil)
      } else {
        let line = event.step * 20 / max(total, 1)
        guard line != lastLine || event.step == total else { return }
        lastLine = line
        let lossText = event.updateSkipped ? "update skipped" : String(format: "loss %.6f", event.loss)
        print(String(format: "step %d/%d %@ lr %.3g %.1f steps/s ETA %@%@", event.step, total, lossText as NSString,
                     event.learningRate, event.stepsPerSecond, eta as NSString, (event.precision.map { " " + $0 } ?? "") as NSString))
      }
    }
  }

  func clear() { if interactive { print("\r\u{1B}[K", terminator: "") } }
  func finish() { if interactive { print("") } }
}
