// TrainingLoop — what `ttfc train` runs: batches from a Dataset in a seeded order, the learning
// rate from a schedule, one compiled step per batch, periodic evaluation (loss, plus accuracy when
// the model has an @accuracy function and AUC when it has @predict and float labels), JSON-lines
// metrics, and checkpoints that make a resumed run bit-identical to an uninterrupted one.

import Foundation
import TTCompiler
import TTIR
import TTRuntime
import TTSupport
import TTEmbedding

/// How a ``TrainingLoop`` trains: batch size, length, learning rate and schedule, data order,
/// evaluation, checkpoints and metrics. Every setting has a default (`ttfc train`'s), so a run
/// sets only what it changes.
public struct TrainingOptions {
  /// Examples per step (1 to ``maximumBatch``); the last batch of an epoch may be smaller.
  public var batch = 32
  /// Steps in all, counted from step 0 even after a resume (takes precedence over `epochs`).
  public var steps: Int? = nil
  /// Passes over the data when `steps` is nil (default one).
  public var epochs: Int? = nil
  /// The base learning rate that `schedule` scales.
  public var learningRate = 1e-3
  public var schedule = LearningRateSchedule()
  /// Seed of the data order (the parameters' seeds are in the model's initializers).
  public var seed: UInt64 = 0
  /// Evaluate on the evaluation data every this many steps and after the last one (nil: never
  /// during ``TrainingLoop/run(report:)``; ``TrainingLoop/evaluate()`` still works).
  public var evalEvery: Int? = nil
  /// Where checkpoints go (`checkpoint.safetensors` and table files); nil: no checkpoints.
  public var checkpointDirectory: String? = nil
  /// Also save a checkpoint every this many steps (one is always saved at the end).
  public var checkpointEvery: Int? = nil
  /// A file to which every step and evaluation is appended as one JSON line.
  public var metricsPath: String? = nil
  /// Shuffle the examples every epoch (seeded by `seed`); false: file order.
  public var shuffle = true
  /// How batch sizes map to memory layouts of the one compiled step (see ShapeBuckets).
  public var bucketPolicy = BucketPolicy.powersOfTwo
  /// The optimizer of embedding tables (nil: the default for the dense optimizer).
  public var sparseOptimizer: SparseOptimizer? = nil
  /// Table eviction, applied every `evictEvery` steps: rows not seen for more than `tableTTL`
  /// steps, and least frequently used rows beyond `tableCapacity` rows per table.
  public var tableTTL: Int? = nil
  public var tableCapacity: Int? = nil
  public var evictEvery = 100
  /// Initial parameter values by name (instead of the initializers).
  public var initialParams: [String: Tensor] = [:]
  /// What a non-finite loss, gradient, updated state or batch value does (see NonFinitePolicy).
  public var onNonFinite = NonFinitePolicy.stop
  /// Resume even if the checkpoint was written with another learning rate, schedule, step count
  /// or clipping (the changes are reported in `settingChanges`); otherwise that is an error.
  public var allowChangedSchedule = false
  /// The run resumes from a checkpoint that holds every parameter (parameters without a value
  /// or initializer are then not an error).
  public var resumesFromCheckpoint = false
  /// Verify the step module after every compiler pass (always on in debug builds).
  public var verifyEach = CompileOptions.verifyEachByDefault
  /// Mixed precision (nil: every step in full precision).
  public var mixedPrecision: MixedPrecisionOptions? = nil
  /// Variable-length sequences: the data column of per-example lengths; each batch (training and
  /// evaluation) is cut on axis 1 to its longest example (see ``SequenceTrimming``).
  public var sequenceLengths: String? = nil
  /// Data-parallel training over these MPI ranks (``Communicator/world(timeout:)``): each rank
  /// computes its share of every global batch of `batch` examples, and rank 0 alone writes
  /// metrics and checkpoints (nil: one process).
  public var communicator: Communicator? = nil
  /// With a communicator: split every embedding table among the ranks by id (each rank holds the
  /// rows of the ids it owns, ``TableSharding``) instead of a replica of the whole table on each.
  public var shardTables = false
  public init() {}

  /// The most steps a run may take (so step arithmetic, progress and ETA never overflow).
  public static let maximumSteps = 1_000_000_000_000
  /// The largest batch (examples per step).
  public static let maximumBatch = 1 << 30
}

/// What ``TrainingLoop/run(report:)`` reports after each step and each evaluation.
public struct TrainingEvent {
  /// `step` after every step, `evaluation` after every evaluation (`checkpoint` is not reported).
  public enum Kind { case step, evaluation, checkpoint }
  public var kind: Kind
  /// The number of steps taken so far (1-based after the first).
  public var step: Int
  public var totalSteps: Int
  /// The step's training loss, or the evaluation loss.
  public var loss: Double
  public var learningRate: Double
  public var stepsPerSecond: Double
  /// Evaluation metrics by name: `loss`, and `accuracy` / `auc` when the model defines them.
  public var metrics: [String: Double] = [:]
  public var message: String = ""
  /// With mixed precision: the step's precision (`fp32`, `bf16` or `f16`), and whether its
  /// update was skipped (a non-finite mixed step that loss scaling or the policy handled).
  public var precision: String? = nil
  public var updateSkipped = false
}

/// Trains a module's loss function on a ``Dataset``: the entry point for training from Swift,
/// and what `ttfc train` runs.
///
/// It builds a ``Trainer`` (the compiled step), binds the loss function's inputs to the data's
/// columns by name, and then ``run(report:)`` takes ``totalSteps`` steps in a seeded order with
/// the scheduled learning rate, evaluating and checkpointing as ``TrainingOptions`` says. A
/// checkpoint holds the parameters, optimizer slots, step and data position, so ``resume()``
/// continues bit-identically to an uninterrupted run.
public final class TrainingLoop {
  /// The compiled training step and the training state (parameters: ``Trainer/params``).
  public let trainer: Trainer
  public let options: TrainingOptions
  let data: Dataset
  let evalData: Dataset?
  let columns: [Tensor]
  let columnNames: [String]
  /// With `options.sequenceLengths`: the training data's lengths and which inputs are cut.
  let trimming: (lengths: SequenceTrimming, inputs: [Bool])?
  /// The position in the data: epoch and offset of the next batch.
  public private(set) var order: BatchOrder
  /// Steps the run takes in all (from `options.steps`, or epochs times batches per epoch).
  public let totalSteps: Int
  /// Polled before each step; when it returns true, `run` saves a checkpoint and returns false.
  public var stopRequested: () -> Bool = { false }
  /// The training loss of every step this loop ran (skipped steps excluded).
  public private(set) var losses: [Double] = []
  /// Steps skipped under `NonFinitePolicy.skipStep` (their update was not applied), and mixed
  /// steps whose update loss scaling or the precision policy skipped.
  public private(set) var skippedSteps = 0
  /// Steps this loop ran in each precision (with mixed precision).
  public private(set) var precisionCounts = (full: 0, mixed: 0)
  let modelHash: String

  /// Compiles the training step of `module`'s function `loss` (which returns a scalar) with
  /// `optimizer`, and binds the function's inputs to the columns of `data` (and of `evalData`, if
  /// given) by name. Every problem with the model, the data or the options is thrown now, as
  /// ``TrainingError/setup(_:)``, before any step runs.
  public init(module: Module, loss: String, optimizer: OptimizerConfig, data: Dataset, evalData: Dataset? = nil,
              options: TrainingOptions) throws(TrainingError) {
    trainer = try Trainer(module: module, loss: loss, optimizer: optimizer, params: options.initialParams,
                          bucketPolicy: options.bucketPolicy, sparseOptimizer: options.sparseOptimizer,
                          valuesFollow: options.resumesFromCheckpoint, verifyEach: options.verifyEach,
                          mixedPrecision: options.mixedPrecision, communicator: options.communicator,
                          shardTables: options.shardTables)
    self.options = options
    self.data = data
    self.evalData = evalData
    let function = module.function(named: loss)!
    var bound: [Tensor] = []
    for (argument, type) in zip(function.arguments, function.argumentTypes) {
      do { bound.append(try data.column(for: function[argument].name, type: type)) } catch { throw .setup("\(error)") }
    }
    columns = bound
    columnNames = function.arguments.map { function[$0].name }
    if let lengths = options.sequenceLengths {
      do { trimming = try Self.sequenceTrimming(lengths, data: data, types: function.argumentTypes, columns: bound) }
      catch { throw .setup("\(error)") }
    } else {
      trimming = nil
    }
    guard data.count > 0 else { throw .setup("the training data has no examples") }
    if let every = options.evalEvery, every < 1 { throw .setup("the evaluation interval must be at least 1 step, got \(every)") }
    if let every = options.checkpointEvery, every < 1 { throw .setup("the checkpoint interval must be at least 1 step, got \(every)") }
    guard (1...TrainingOptions.maximumBatch).contains(options.batch) else { throw .setup("the batch must be 1 to \(TrainingOptions.maximumBatch), got \(options.batch)") }
    // A batch dimension written as a number (an imported model's static batch) takes batches of
    // exactly that size: say so now, not at the epoch's last, partial batch.
    let effectiveBatch = min(options.batch, data.count)   // a batch past the data's size takes all of it
    for (argument, type) in zip(function.arguments, function.argumentTypes) {
      guard let size = type.dims.first?.staticSize else { continue }
      let name = function[argument].name
      guard size == effectiveBatch else {
        throw .setup("@\(loss) takes batches of exactly \(size) examples ('%\(name)' is \(type)), but the batch is \(effectiveBatch)")
      }
      guard data.count % size == 0 else {
        throw .setup("@\(loss) takes batches of exactly \(size) examples ('%\(name)' is \(type)), and the data's \(data.count) examples leave a last batch of \(data.count % size): give a multiple of \(size) examples, or a model whose batch dimension is symbolic")
      }
    }
    // Every function evaluation runs must accept the eval data now, not after the last step,
    // and have a value for every parameter it reads.
    if let evalData {
      for name in [loss, "eval_loss", "accuracy", "predict"] {
        guard let evaluated = module.function(named: name) else { continue }
        let unvalued = module.parametersRead(by: name).intersection(trainer.parametersWithoutValues).sorted()
        if !unvalued.isEmpty && !options.resumesFromCheckpoint {
          throw .setup("--eval-data: @\(name) reads \(unvalued.map { "'@\($0)'" }.joined(separator: ", ")), which \(unvalued.count == 1 ? "has" : "have") no value and no initializer (give \(unvalued.count == 1 ? "it" : "them") with --init-params)")
        }
        var evalColumns: [Tensor] = []
        for (argument, type) in zip(evaluated.arguments, evaluated.argumentTypes) {
          do { evalColumns.append(try evalData.column(for: evaluated[argument].name, type: type)) } catch { throw .setup("--eval-data: \(error)") }
        }
        if let lengths = options.sequenceLengths {
          do { _ = try Self.sequenceTrimming(lengths, data: evalData, types: evaluated.argumentTypes, columns: evalColumns) }
          catch { throw .setup("--eval-data: @\(name): \(error)") }
        }
      }
      guard evalData.count > 0 else { throw .setup("--eval-data has no examples") }
    }
    order = BatchOrder(count: data.count, batch: options.batch, seed: options.seed, shuffle: options.shuffle)
    let perEpoch = (data.count + options.batch - 1) / options.batch
    if let steps = options.steps {
      totalSteps = steps
    } else {
      let (product, overflow) = (options.epochs ?? 1).multipliedReportingOverflow(by: perEpoch)
      guard !overflow, product <= TrainingOptions.maximumSteps else {
        throw .setup("\(options.epochs ?? 1) epochs of \(perEpoch) steps exceed the limit of \(TrainingOptions.maximumSteps) steps")
      }
      totalSteps = product
    }
    guard (0...TrainingOptions.maximumSteps).contains(totalSteps) else { throw .setup("the number of steps must be 0 to \(TrainingOptions.maximumSteps), got \(totalSteps)") }
    modelHash = Checkpoint.modelHash(module)
    trainer.keepsPreviousState = options.onNonFinite == .skipStep
    if let communicator = options.communicator {
      guard options.batch % communicator.size == 0 else {
        throw .distributed(.batchNotDivisible(batch: options.batch, ranks: communicator.size))
      }
      if options.shardTables && evalData != nil && !trainer.tables.isEmpty {
        throw .distributed(.unsupported("evaluation (--eval-data) with sharded tables is not supported yet: rank 0 holds only its shard of each table"))
      }
      try agree(communicator, loss: loss, optimizer: optimizer)
      communicator.onTermination(terminationMessage(communicator, checkpointStep: nil))
    }
  }

  /// Whether this process writes metrics and checkpoints (rank 0, or the only process).
  public var isWriter: Bool { (options.communicator?.rank ?? 0) == 0 }

  /// The ranks compare fingerprints of the model, the run's settings and the data; a rank that
  /// differs is named (rather than training a different model, or hanging at a collective).
  func agree(_ communicator: Communicator, loss: String, optimizer: OptimizerConfig) throws(TrainingError) {
    let settings = "\(loss) \(optimizer) batch \(options.batch) steps \(totalSteps) seed \(options.seed) lr \(options.learningRate) "
      + "\(options.schedule) shuffle \(options.shuffle) sparse \(trainer.sparseOptimizer) ttl \(String(describing: options.tableTTL)) "
      + "capacity \(String(describing: options.tableCapacity)) evict \(options.evictEvery) nonfinite \(options.onNonFinite.rawValue) "
      + "shard \(options.shardTables) resume \(options.resumesFromCheckpoint) checkpoint \(options.checkpointDirectory ?? "-") every \(String(describing: options.checkpointEvery)) "
      + "buckets \(BucketPlan.defaultCapacityBytes) lengths \(options.sequenceLengths ?? "-")"
    // The data and the initial parameters (--init-params): every value, hashed.
    var dataText = "\(data.count)"
    for (name, column) in zip(columnNames, columns) { dataText += " \(name) \(column.type) \(Self.valueHash(column))" }
    var initText = ""
    for name in options.initialParams.keys.sorted() { initText += " \(name) \(options.initialParams[name]!.type) \(Self.valueHash(options.initialParams[name]!))" }
    let mine = [fingerprint(modelHash), fingerprint(settings), fingerprint(dataText), fingerprint(initText)]
    let all: [[Int64]]
    do { all = try communicator.allgather(mine, what: "the comparison of the ranks' models") } catch { throw .distributed(error) }
    for (r, theirs) in all.enumerated() where theirs != all[0] {
      let what = theirs[0] != all[0][0] ? "a different model (its hash)"
        : theirs[1] != all[0][1] ? "different training options (or TTFC_MPI_BUCKET_BYTES)"
        : theirs[2] != all[0][2] ? "different training data" : "different initial parameters (--init-params)"
      throw .distributed(.ranksDisagree("rank \(r) was started with \(what) from rank 0; every rank must run the same command on the same files"))
    }
  }

  /// A 64-bit hash of every value of a tensor (FNV-style over the values' bit patterns), so ranks
  /// given files that differ anywhere disagree.
  static func valueHash(_ t: Tensor) -> UInt64 {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    switch t.storage {
    case .floats(let v): for x in v { h = (h ^ x.bitPattern) &* 0x100_0000_01b3 }
    case .ints(let v): for x in v { h = (h ^ UInt64(bitPattern: x)) &* 0x100_0000_01b3 }
    }
    return h
  }

  func terminationMessage(_ communicator: Communicator, checkpointStep: Int?) -> String {
    let last = options.checkpointDirectory.map { directory in
      checkpointStep.map { "the last complete checkpoint is step \($0) in \(directory)" } ?? "no checkpoint was completed in \(directory) in this run"
    } ?? "no checkpoint directory"
    return "ttfc: error: distributed training: rank \(communicator.rank) of \(communicator.size) was stopped by mpirun (SIGTERM): another rank of the job died or was killed; \(last)"
  }

  /// The lengths column of `data` and which of a function's inputs it cuts: those with a symbolic
  /// axis 1 as long as the longest such column (the padded length).
  static func sequenceTrimming(_ column: String, data: Dataset, types: [TensorType],
                               columns: [Tensor]) throws(DataError) -> (lengths: SequenceTrimming, inputs: [Bool]) {
    let sequences = zip(types, columns).filter { $0.0.rank >= 2 && $0.0.dims[1].staticSize == nil }
    guard let padded = sequences.first?.1.shape[1] else {
      throw .binding("--sequence-lengths: no input of the function has a symbolic axis 1 to cut (inputs: \(types.map { "\($0)" }.joined(separator: ", ")))")
    }
    // Every symbolic axis 1 is cut to one length, so all must be padded alike.
    if sequences.contains(where: { $0.1.shape[1] != padded }) {
      throw .binding("--sequence-lengths: the inputs with a symbolic axis 1 are padded to different lengths (\(sequences.map { "\($0.0): \($0.1.shape[1])" }.joined(separator: ", "))); each batch cuts them all to one length")
    }
    let lengths = try SequenceTrimming(column: column, data: data, paddedLength: padded)
    return (lengths, SequenceTrimming.trimmed(types: types, columns: columns, paddedLength: padded))
  }

  /// Rows `indices` of each column, cut to the batch's longest sequence where `trimming` says.
  static func batchRows(_ columns: [Tensor], _ indices: [Int], trimming: (lengths: SequenceTrimming, inputs: [Bool])?) -> [Tensor] {
    guard let trimming else { return columns.map { Dataset.rows($0, indices) } }
    let length = trimming.lengths.length(of: indices)
    return zip(columns, trimming.inputs).map { column, cut in
      cut ? SequenceTrimming.rows(column, indices, length: length) : Dataset.rows(column, indices)
    }
  }

  /// Checks before step 1 that every file training writes can be written: the checkpoint
  /// directory (created if missing) and the metrics file, so no late failure loses the steps.
  public func checkOutputs() throws(TrainingError) {
    guard isWriter else { return }
    if let directory = options.checkpointDirectory { try Self.checkWritableDirectory(directory) }
    if let path = options.metricsPath {
      let existed = FileManager.default.fileExists(atPath: path)
      var isDirectory: ObjCBool = false
      if existed, FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
        throw .unwritable(path: path, reason: "it is a directory (--metrics takes a file)")
      }
      guard let handle = FileHandle(forUpdatingAtPath: path) ?? (FileManager.default.createFile(atPath: path, contents: nil) ? FileHandle(forUpdatingAtPath: path) : nil) else {
        throw .unwritable(path: path, reason: String(cString: strerror(errno)))
      }
      try? handle.close()
    }
  }

  /// Creates `directory` if needed and proves it writable with a probe file (removed again).
  public static func checkWritableDirectory(_ directory: String) throws(TrainingError) {
    do { try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) }
    catch { throw .unwritable(path: directory, reason: "cannot create the directory (\(error.localizedDescription))") }
    let probe = (directory as NSString).appendingPathComponent(".ttfc-write-probe-\(getpid())")
    guard FileManager.default.createFile(atPath: probe, contents: Data()) else {
      throw .unwritable(path: directory, reason: "the directory is not writable")
    }
    try? FileManager.default.removeItem(atPath: probe)
  }

  /// The first non-finite value of a batch: its column and row within the batch.
  static func firstNonFinite(in batch: [Tensor], names: [String]) -> (column: String, row: Int, value: Double)? {
    for (tensor, name) in zip(batch, names) {
      guard case .floats(let values) = tensor.storage, let index = values.firstIndex(where: { !$0.isFinite }) else { continue }
      let width = max(1, tensor.shape.dropFirst().reduce(1, *))
      return (name, index / width, values[index])
    }
    return nil
  }

  /// The checkpoint file, `checkpoint.safetensors` in `options.checkpointDirectory` (nil
  /// without one); ``Checkpoint/read(from:)`` reads it.
  public var checkpointPath: String? { options.checkpointDirectory.map { ($0 as NSString).appendingPathComponent("checkpoint.safetensors") } }

  /// Writes the training state to ``checkpointPath`` atomically (nothing without a checkpoint
  /// directory). A state that is not finite is refused, so the last good checkpoint stays.
  public func saveCheckpoint() throws(CheckpointError) {
    guard let path = checkpointPath else { return }
    if let communicator = options.communicator {
      // Dense state is the same on every rank: rank 0 writes it. Sharded tables: every rank
      // writes its shards first (atomically), all meet, and rank 0 writes the checkpoint, which
      // names them, last; a crash at any point leaves the previous complete checkpoint.
      var shardFiles: [String: [String]]? = nil
      if trainer.distributed?.shardsTables == true {
        let directory = (path as NSString).deletingLastPathComponent
        for (name, table) in trainer.tables.sorted(by: { $0.key < $1.key }) {
          let file = Self.shardFile(name, step: trainer.stepCount, rank: communicator.rank, of: communicator.size)
          try Checkpoint.writeAtomically(table.serialized(), to: (directory as NSString).appendingPathComponent(file))
        }
        do { try communicator.barrier(what: "the barrier after the table shards of checkpoint \(trainer.stepCount)") }
        catch { throw .cannotWrite(path: path, reason: "\(error)") }
        shardFiles = Dictionary(uniqueKeysWithValues: trainer.tables.keys.map { name in
          (name, (0..<communicator.size).map { Self.shardFile(name, step: trainer.stepCount, rank: $0, of: communicator.size) })
        })
      }
      if communicator.rank == 0 {
        // Complete once rank 0 has written it (the shards were written before the metadata).
        try writeCheckpoint(to: path, shardFiles: shardFiles)
        lastCheckpointStep = trainer.stepCount
        communicator.onTermination(terminationMessage(communicator, checkpointStep: trainer.stepCount))
      }
      do { try communicator.barrier(what: "the barrier after checkpoint \(trainer.stepCount)") }
      catch { throw .cannotWrite(path: path, reason: "\(error)") }
      lastCheckpointStep = trainer.stepCount
      communicator.onTermination(terminationMessage(communicator, checkpointStep: trainer.stepCount))
      return
    }
    try writeCheckpoint(to: path)
    lastCheckpointStep = trainer.stepCount
  }

  /// The file of rank `rank`'s shard of table `name` in the checkpoint of step `step`.
  static func shardFile(_ name: String, step: Int, rank: Int, of ranks: Int) -> String {
    "table.\(name).\(step).shard-\(rank)-of-\(ranks).ttemb"
  }

  /// The step of the last checkpoint this run completed (nil: none yet).
  public private(set) var lastCheckpointStep: Int?

  /// Re-sharding done by the last resume (a checkpoint of another number of shards), for the user.
  public private(set) var reshardNotes: [String] = []

  func writeCheckpoint(to path: String, shardFiles: [String: [String]]? = nil) throws(CheckpointError) {
    guard trainer.stateIsFinite() else {
      throw .cannotWrite(path: path, reason: "the training state is not finite; the last good checkpoint is kept")
    }
    let metadata = ["format": Checkpoint.currentFormat, "model_hash": modelHash, "step": String(trainer.stepCount),
                    "optimizer": trainer.optimizer.kind.rawValue, "epoch": String(order.epoch),
                    "offset": String(order.offset), "seed": String(options.seed), "batch": String(options.batch)]
      .merging(runSettings) { $1 }
      .merging(trainer.precisionMetadata) { $1 }
    // Tables go to files of their own named by step, written first; the checkpoint (written
    // last, atomically) names them, so a crash at any point leaves a consistent older checkpoint.
    var withTables = metadata
    let directory = (path as NSString).deletingLastPathComponent
    // Temporary files of saves that were killed (kill -9 mid-write) are swept now.
    AtomicFile.removeAbandonedTemporaries(in: directory) { target in
      target == "checkpoint.safetensors" || (target.hasPrefix("table.") && target.hasSuffix(".ttemb"))
    }
    if let shardFiles {
      for (name, files) in shardFiles { withTables["table." + name] = files.joined(separator: ",") }
      withTables["table_shards"] = String(shardFiles.values.first?.count ?? 1)
    }
    for (name, table) in trainer.tables.sorted(by: { $0.key < $1.key }) where shardFiles == nil {
      let file = "table.\(name).\(trainer.stepCount).ttemb"
      try Checkpoint.writeAtomically(table.serialized(), to: (directory as NSString).appendingPathComponent(file))
      withTables["table." + name] = file
    }
    try Checkpoint(tensors: zip(trainer.stateNames, trainer.state).map { ($0, $1) }, metadata: withTables).write(to: path)
    // Table files of earlier checkpoints are no longer named by any checkpoint.
    let current = Set(withTables.filter { $0.key.hasPrefix("table.") }.flatMap { $0.value.split(separator: ",").map(String.init) })
    for file in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
    where file.hasPrefix("table.") && file.hasSuffix(".ttemb") && !current.contains(file) {
      try? FileManager.default.removeItem(atPath: (directory as NSString).appendingPathComponent(file))
    }
  }

  /// The settings that shape the learning-rate curve, recorded in each checkpoint: a resume that
  /// changes them would make the rate jump (a cosine over another total, another base rate).
  var runSettings: [String: String] {
    ["lr": String(options.learningRate), "schedule": options.schedule.description, "total_steps": String(totalSteps),
     "clip_norm": trainer.optimizer.clipNorm.map { String($0) } ?? "none",
     "precision": trainer.precisionSetting ?? "fp32"]
  }

  /// What a resume with `allowChangedSchedule` changed: "--lr 0.001 -> 0.002", ...
  public private(set) var settingChanges: [String] = []

  /// Restores the training state and data position from ``checkpointPath``; false when there is
  /// no checkpoint yet. A checkpoint of another model, optimizer, seed or batch is refused, and
  /// so are changed learning-rate settings unless `options.allowChangedSchedule`.
  @discardableResult
  public func resume() throws(CheckpointError) -> Bool {
    guard let path = checkpointPath, FileManager.default.fileExists(atPath: path) else { return false }
    let checkpoint = try Checkpoint.read(from: path)
    func mismatch(_ reason: String) -> CheckpointError { .mismatch(path: path, reason: reason) }
    guard let format = checkpoint.metadata["format"], Checkpoint.readableFormats.contains(format) else {
      throw .corrupt(path: path, reason: "not a ttfc checkpoint (format \(checkpoint.metadata["format"] ?? "none"))")
    }
    guard checkpoint.metadata["model_hash"] == modelHash else { throw mismatch("it was written for another model (hash \(checkpoint.metadata["model_hash"] ?? "?"), this one is \(modelHash))") }
    guard checkpoint.metadata["optimizer"] == trainer.optimizer.kind.rawValue else {
      throw mismatch("it holds \(checkpoint.metadata["optimizer"] ?? "?") state, this run uses \(trainer.optimizer.kind.rawValue)")
    }
    guard let step = Int(checkpoint.metadata["step"] ?? ""), let epoch = Int(checkpoint.metadata["epoch"] ?? ""),
          let offset = Int(checkpoint.metadata["offset"] ?? "") else { throw .corrupt(path: path, reason: "missing step metadata") }
    // Ranges, so that forged values (with recomputed CRCs) are named, never trapped on.
    guard (0...TrainingOptions.maximumSteps).contains(step) else { throw .corrupt(path: path, reason: "step \(step) is out of range") }
    guard (0...TrainingOptions.maximumSteps).contains(epoch) else { throw .corrupt(path: path, reason: "epoch \(epoch) is out of range") }
    guard (0...data.count).contains(offset) else {
      throw .corrupt(path: path, reason: "offset \(offset) is outside the data's \(data.count) examples")
    }
    // --steps counts from step 0: a run that ends before the checkpoint would train nothing and
    // then rewrite the checkpoint's settings.
    guard step <= totalSteps else {
      throw mismatch("it is at step \(step), past this run's \(totalSteps) steps in all (--steps counts from step 0); give more steps to train on")
    }
    guard checkpoint.metadata["seed"] == String(options.seed), checkpoint.metadata["batch"] == String(options.batch) else {
      throw mismatch("it was written with seed \(checkpoint.metadata["seed"] ?? "?") and batch \(checkpoint.metadata["batch"] ?? "?")")
    }
    // Checkpoints of earlier versions carry no settings: nothing to compare.
    let flags = ["lr": "--lr", "schedule": "--schedule", "total_steps": "--steps (in all)", "clip_norm": "--clip-norm",
                 "precision": "--precision"]
    // The total number of steps matters only to a schedule that spans it (cosine): extending a
    // constant, step or exponential run with more --steps is the ordinary way to train longer.
    var usesTotal = false
    if case .cosine = options.schedule.kind { usesTotal = true }
    // Rates compare as the f32 numbers the step computes with (0.01 and 0.010000000001 are one).
    func same(_ key: String, _ a: String, _ b: String) -> Bool {
      if a == b { return true }
      guard key == "lr" || key == "clip_norm", let x = Double(a), let y = Double(b) else { return false }
      return Float(x) == Float(y)
    }
    let changes = runSettings.sorted { $0.key < $1.key }.compactMap { key, now -> String? in
      guard let then = checkpoint.metadata[key], !same(key, then, now), key != "total_steps" || usesTotal else { return nil }
      return "\(flags[key] ?? key) \(then) -> \(now)"
    }
    if !changes.isEmpty && !options.allowChangedSchedule {
      throw mismatch("this run changes settings the checkpoint was trained with (\(changes.joined(separator: ", "))); "
        + "run with the same settings, or pass --allow-changed-schedule to resume with the new ones")
    }
    settingChanges = changes
    do { try trainer.restore(Dictionary(uniqueKeysWithValues: checkpoint.tensors.map { ($0.name, $0.tensor) }), step: step) }
    catch { throw mismatch("\(error)") }
    do { try trainer.restorePrecision(from: checkpoint.metadata) } catch { throw .corrupt(path: path, reason: "\(error)") }
    let directory = (path as NSString).deletingLastPathComponent
    reshardNotes = []
    let sharded = trainer.distributed?.shardsTables == true
    let rank = options.communicator?.rank ?? 0, ranks = options.communicator?.size ?? 1
    for (name, table) in trainer.tables.sorted(by: { $0.key < $1.key }) {
      guard let list = checkpoint.metadata["table." + name] else { throw mismatch("it has no table '@\(name)'") }
      let files = list.split(separator: ",").map(String.init)
      func load(_ file: String) throws(CheckpointError) -> EmbeddingTable {
        let tablePath = (directory as NSString).appendingPathComponent(file)
        guard let data = FileManager.default.contents(atPath: tablePath) else { throw .corrupt(path: tablePath, reason: "the table file is missing") }
        do { return try EmbeddingTable.deserialize([UInt8](data)) } catch { throw .corrupt(path: tablePath, reason: "\(error)") }
      }
      let sameSharding = sharded ? files.count == ranks : files.count == 1
      if sameSharding {
        // This rank's shard (or the whole table) as it was written: exact.
        let file = files[sharded ? rank : 0]
        do { try table.replaceContents(with: try load(file)) } catch let error as CheckpointError { throw error }
        catch { throw .corrupt(path: file, reason: "\(error)") }
        continue
      }
      // Another number of shards: the union of the checkpoint's, keeping the ids this rank owns.
      do {
        let union = try table.emptyCopy()
        for file in files {
          try union.merge(rowsOf: try load(file)) { !sharded || TableSharding.owner(of: $0, ranks: ranks) == rank }
        }
        try table.replaceContents(with: union)
      } catch let error as CheckpointError { throw error }
      catch { throw .corrupt(path: list, reason: "\(error)") }
      reshardNotes.append("table '@\(name)': re-sharded from \(files.count) shard\(files.count == 1 ? "" : "s") to \(sharded ? ranks : 1) (rank \(rank) keeps \(table.count) rows)")
    }
    order = BatchOrder(count: data.count, batch: options.batch, seed: options.seed, epoch: epoch, offset: offset, shuffle: options.shuffle)
    return true
  }

  /// Trains until ``totalSteps``; calls `report` after every step and evaluation, and saves a
  /// checkpoint at the end when there is a checkpoint directory. Returns false when stopped by
  /// ``stopRequested`` (after saving a checkpoint). A non-finite step throws
  /// ``TrainingError/nonFinite(step:reason:)`` (policy stop) or is skipped and counted (policy
  /// skip-step); a metrics file that cannot be written saves a checkpoint, then throws.
  @discardableResult
  public func run(report: (TrainingEvent) -> Void = { _ in }) throws -> Bool {
    try checkOutputs()
    var metricsFile: FileHandle? = nil
    if let path = options.metricsPath, isWriter {
      guard let handle = FileHandle(forWritingAtPath: path) else { throw TrainingError.unwritable(path: path, reason: String(cString: strerror(errno))) }
      metricsFile = handle
      do { try handle.seekToEnd() } catch { throw TrainingError.unwritable(path: path, reason: "\(error.localizedDescription)") }
    }
    defer { try? metricsFile?.close() }
    func log(_ object: [String: Any]) throws {
      guard let metricsFile, let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) else { return }
      do { try metricsFile.write(contentsOf: data + Data("\n".utf8)) }
      catch {
        // A full disk or a vanished file: keep the training done so far, then stop by name.
        let saved = (try? saveCheckpoint()) != nil && options.checkpointDirectory != nil
        throw TrainingError.unwritable(path: options.metricsPath!, reason: "\(error.localizedDescription) at step \(trainer.stepCount)"
                                       + (saved ? "; checkpoint saved at step \(trainer.stepCount)" : ""))
      }
    }
    let start = DispatchClock.now()
    let firstStep = trainer.stepCount
    while trainer.stepCount < totalSteps {
      // Data-parallel: a stop request rides on the step's collectives, so every rank stops
      // after the same step (below).
      if let distributed = trainer.distributed {
        distributed.localStopRequest = stopRequested()
      } else if stopRequested() {
        try saveCheckpoint()
        return false
      }
      let epoch = order.epoch, batchInEpoch = order.offset / options.batch
      let indices = order.next()
      let batch = Self.batchRows(columns, indices, trimming: trimming)
      let stepNumber = trainer.stepCount + 1
      let lr = options.schedule.rate(base: options.learningRate, step: stepNumber, total: totalSteps)
      // A step is taken, or skipped with a reason (bad data under skip-step, a non-finite step
      // under skip-step, or a mixed step whose update loss scaling or the policy skipped); either
      // way the evaluation, eviction and checkpoint schedule below goes on.
      var loss = Double.nan
      var skipReason: String? = nil
      if let bad = Self.firstNonFinite(in: batch, names: columnNames) {
        let reason = "batch \(batchInEpoch) of epoch \(epoch): column '\(bad.column)' holds \(bad.value) (example \(indices[bad.row]) of the data)"
        guard options.onNonFinite == .skipStep else { throw TrainingError.nonFinite(step: stepNumber, reason: reason) }
        trainer.skipStep()
        skipReason = reason
      } else {
        do { loss = try trainer.step(batch, lr: lr) } catch {
          guard case .nonFinite(_, let reason) = error, options.onNonFinite == .skipStep else { throw error }
          skipReason = reason
        }
      }
      // Mixed precision: each step's precision and loss scale go into the metrics.
      var precisionFields: [String: Any] = [:]
      if trainer.mixedPrecision != nil, let last = trainer.lastStep, last.step == stepNumber {
        if last.precision == .full { precisionCounts.full += 1 } else { precisionCounts.mixed += 1 }
        precisionFields["precision"] = last.precision == .full ? "fp32" : trainer.mixedPrecision!.halfType.rawValue
        if let scale = last.lossScale { precisionFields["loss_scale"] = scale }
        if last.updateSkipped { skipReason = last.reason ?? "update skipped" }
      }
      let rate = Double(trainer.stepCount - firstStep) / max(DispatchClock.now() - start, 1e-9)
      if let skipReason {
        skippedSteps += 1
        try log(["step": stepNumber, "skipped": true, "reason": skipReason, "lr": lr].merging(precisionFields) { $1 })
        report(TrainingEvent(kind: .step, step: trainer.stepCount, totalSteps: totalSteps, loss: loss, learningRate: lr,
                             stepsPerSecond: rate, precision: precisionFields["precision"] as? String, updateSkipped: true))
      } else {
        losses.append(loss)
        report(TrainingEvent(kind: .step, step: trainer.stepCount, totalSteps: totalSteps, loss: loss, learningRate: lr, stepsPerSecond: rate,
                             precision: precisionFields["precision"] as? String))
        try log(["step": trainer.stepCount, "loss": loss, "lr": lr, "steps_per_second": rate].merging(precisionFields) { $1 })
      }
      if let every = options.evalEvery, trainer.stepCount % every == 0 || trainer.stepCount == totalSteps, evalData != nil, isWriter {
        let metrics = try evaluate()
        report(TrainingEvent(kind: .evaluation, step: trainer.stepCount, totalSteps: totalSteps, loss: metrics["loss"] ?? .nan,
                             learningRate: lr, stepsPerSecond: rate, metrics: metrics))
        var entry: [String: Any] = ["step": trainer.stepCount, "eval": true]
        for (k, v) in metrics { entry["eval_" + k] = v }
        try log(entry)
      }
      if (options.tableTTL != nil || options.tableCapacity != nil), trainer.stepCount % max(1, options.evictEvery) == 0 {
        evictTableRows()
      }
      if let every = options.checkpointEvery, trainer.stepCount % every == 0 { try saveCheckpoint() }
      if trainer.distributed?.stopAgreed == true {
        try saveCheckpoint()
        return false
      }
    }
    try saveCheckpoint()
    return true
  }

  /// The rate of the last step taken (of step 1 before any): what a catch-up of the tables uses.
  var currentLearningRate: Double {
    options.schedule.rate(base: options.learningRate, step: max(1, trainer.stepCount), total: totalSteps)
  }

  /// Applies the eviction policies to every table (in name order, so runs stay reproducible).
  public func evictTableRows() {
    for (_, table) in trainer.tables.sorted(by: { $0.key < $1.key }) {
      if let ttl = options.tableTTL { table.evictExpired(step: Int64(trainer.stepCount), ttl: Int64(ttl)) }
      if let capacity = options.tableCapacity { table.evictLeastFrequent(keeping: capacity) }
    }
  }

  /// Writes every table for serving (rows only, optionally only rows seen in the last `recent`
  /// steps) as DIR/NAME.ttemb; returns the paths.
  public func exportTables(to directory: String, recent: Int? = nil) throws(CheckpointError) -> [String] {
    let sharded = trainer.distributed?.shardsTables == true
    // Replicated tables: rank 0 writes them; sharded ones: each rank its shard, NAME.shard-R-of-N.ttemb.
    guard sharded || isWriter else { return [] }
    trainer.catchUpTables(lr: currentLearningRate)
    var paths: [String] = []
    for (name, table) in trainer.tables.sorted(by: { $0.key < $1.key }) {
      let file = sharded ? "\(name).shard-\(options.communicator!.rank)-of-\(options.communicator!.size).ttemb" : "\(name).ttemb"
      let path = (directory as NSString).appendingPathComponent(file)
      let since = recent.map { Int64(trainer.stepCount - $0 + 1) }
      try Checkpoint.writeAtomically(table.serialized(withSlots: false, seenSince: since), to: path)
      paths.append(path)
    }
    return paths
  }

  /// Evaluation executables by function, built at the first evaluation and given the current
  /// parameters at each later one (no passes, no recompilation, no new buffers).
  var evaluationExecutables: [String: Executable] = [:]

  func evaluationExecutable(_ name: String, params: [String: Tensor]) throws -> Executable {
    if let executable = evaluationExecutables[name] {
      try executable.updateParameters(params)
      return executable
    }
    let executable = try Executable(module: trainer.module, function: name, params: params, tables: trainer.tables)
    evaluationExecutables[name] = executable
    return executable
  }

  /// Metrics on the evaluation data with the current parameters: `loss` (the loss function's
  /// mean over every example), `accuracy` when the module has a scalar `@accuracy` function, and
  /// `auc` when it has `@predict` and the labels are floats. Empty without evaluation data.
  public func evaluate() throws -> [String: Double] {
    guard let evalData else { return [:] }
    trainer.catchUpTables(lr: currentLearningRate)
    let module = trainer.module
    let params = trainer.params
    var metrics: [String: Double] = [:]
    func meanOver(_ name: String) throws -> Double? {
      guard let function = module.function(named: name), function.resultTypes == [.scalar(function.resultTypes[0].dtype)] else { return nil }
      let executable = try evaluationExecutable(name, params: params)
      let cols = try zip(function.arguments, function.argumentTypes).map { try evalData.column(for: function[$0.0].name, type: $0.1) }
      let cut = try options.sequenceLengths.map { try Self.sequenceTrimming($0, data: evalData, types: function.argumentTypes, columns: cols) }
      var total = 0.0
      var start = 0
      while start < evalData.count {
        let indices = Array(start..<min(start + options.batch, evalData.count))
        total += try executable.run(Self.batchRows(cols, indices, trimming: cut))[0].doubles[0] * Double(indices.count)
        start += options.batch
      }
      return total / Double(evalData.count)
    }
    // A module whose loss trains in another mode than it evaluates (batch norm on batch
    // statistics) gives its evaluation loss as @eval_loss.
    metrics["loss"] = try meanOver(module.function(named: "eval_loss") != nil ? "eval_loss" : trainer.lossName)
    if let accuracy = try meanOver("accuracy") { metrics["accuracy"] = accuracy }
    if let predict = module.function(named: "predict"), let labelType = module.function(named: trainer.lossName)?.argumentTypes.last,
       labelType.rank == 1, labelType.dtype.isFloat, predict.resultTypes.first?.rank == 1 {
      let lossFunction = module.function(named: trainer.lossName)!
      let labels = try evalData.column(for: lossFunction[lossFunction.arguments.last!].name, type: labelType).doubles
      let executable = try evaluationExecutable("predict", params: params)
      let cols = try zip(predict.arguments, predict.argumentTypes).map { try evalData.column(for: predict[$0.0].name, type: $0.1) }
      let cut = try options.sequenceLengths.map { try Self.sequenceTrimming($0, data: evalData, types: predict.argumentTypes, columns: cols) }
      var scores: [Double] = []
      var start = 0
      while start < evalData.count {
        let indices = Array(start..<min(start + options.batch, evalData.count))
        scores += try executable.run(Self.batchRows(cols, indices, trimming: cut))[0].doubles
        start += options.batch
      }
      metrics["auc"] = Self.auc(scores: scores, labels: labels)
    }
    return metrics
  }

  /// Area under the ROC curve: the probability that a random positive outranks a random negative
  /// (ties count one half), by sorting once.
  public static func auc(scores: [Double], labels: [Double]) -> Double {
    let order = scores.indices.sorted { scores[$0] < scores[$1] }
    var rankSum = 0.0, positives = 0.0
    var i = 0
    while i < order.count {
      var j = i
      while j + 1 < order.count && scores[order[j + 1]] == scores[order[i]] { j += 1 }
      let averageRank = Double(i + j) / 2 + 1
      for k in i...j where labels[order[k]] > 0.5 { rankSum += averageRank; positives += 1 }
      i = j + 1
    }
    let negatives = Double(scores.count) - positives
    guard positives > 0, negatives > 0 else { return .nan }
    return (rankSum - positives * (positives + 1) / 2) / (positives * negatives)
  }
}
