// DistributedStep — one data-parallel training step. Every rank runs the compiled gradient step
// on its share of the global batch; the dense gradients, each scaled by the rank's share of the
// examples, are packed into buckets whose allreduce starts as each bucket is packed (the last
// parameters' first, the order the backward pass finishes them); the row gradients of the
// (replicated) tables are gathered in global position order; then every rank applies the same
// update to the same state, so the replicas stay equal to one another and to a one-process run.

import CMPI
import Foundation
import TTCompiler
import TTIR
import TTRuntime
import TTSupport

/// The data-parallel form of a ``Trainer``'s step: its communicator, the compiled update step
/// (which holds the state) and the buffers of the gradient buckets.
public final class DistributedStep {
  public let communicator: Communicator
  let gradient: Executable
  let update: Executable
  let updateRun: Executable.PreparedRun
  let gradientCount: Int
  /// How the dense gradients are grouped for allreduce.
  public let plan: BucketPlan
  var bucketBuffers: [UnsafeMutableRawPointer] = []
  /// Set before a step when this rank wants to stop (Ctrl-C); ``stopAgreed`` is true after a
  /// step in which any rank wanted to, on every rank (the flag rides on the loss's allreduce).
  public var localStopRequest = false
  public private(set) var stopAgreed = false
  /// Whether each table is split among the ranks by id (ShardedTables.swift) instead of
  /// replicated on every rank.
  public let shardsTables: Bool
  /// Per bucket, the thunk of the gradient step after which all its gradients are final.
  public let bucketReady: [Int]
  let thunkCount: Int

  init(communicator: Communicator, gradient: Executable, update: Executable, gradientCount: Int, shardsTables: Bool) throws(ExecutableError) {
    self.communicator = communicator
    self.shardsTables = shardsTables
    self.gradient = gradient
    self.update = update
    self.gradientCount = gradientCount
    updateRun = try update.prepare(inputTypes: update.function.argumentTypes)
    let types = Array(update.function.argumentTypes.prefix(gradientCount))
    // Buckets in the order the gradient step finishes the gradients (the thunk that last writes
    // each), so each bucket's allreduce starts while the rest of the backward pass runs.
    let readiness = gradient.resultReadiness
    let order = (0..<gradientCount).sorted { (readiness[1 + $0], -$0) < (readiness[1 + $1], -$1) }
    plan = BucketPlan(sizes: types.map { t in
      (elementCount(t.staticShape ?? []) ?? 0, t.dtype == .f32 || t.dtype == .f64 ? t.dtype.byteSize : 0)
    }, order: order, capacityBytes: BucketPlan.defaultCapacityBytes)
    bucketReady = plan.buckets.map { bucket in bucket.members.map { readiness[1 + $0.gradient] }.max() ?? -1 }
    thunkCount = gradient.thunkCount
    bucketBuffers = plan.buckets.map { bucket in
      var p: UnsafeMutableRawPointer?
      posix_memalign(&p, 64, max(1, bucket.bytes))
      return p!
    }
  }

  deinit { for p in bucketBuffers { free(p) } }

  /// The compiled update step (clipping and the optimizer on the summed gradients).
  public var updateProgram: Program { update.program }

  /// Dense bytes one step allreduces (every bucket, and the loss with the stop flag).
  public var denseBytesPerStep: Int { plan.buckets.reduce(16) { $0 + $1.bytes } }
}

extension Trainer {
  /// One data-parallel step on the global batch `batch` (every rank passes the same): this rank
  /// computes the gradient of its share, the ranks sum them, and every rank applies the update.
  /// Returns the global batch's loss (the mean over its examples, as one process reports it).
  func distributedStep(_ batch: [Tensor], lr: Double) throws(TrainingError) -> Double {
    let d = distributed!
    let comm = d.communicator
    let t = Int64(stepCount + 1)
    comm.step = Int(t)
    guard batch.count == inputTypes.count else { throw .step("the step takes \(inputTypes.count) inputs, got \(batch.count)") }
    let global = batch.first?.shape.first ?? 0
    guard batch.allSatisfy({ $0.shape.first == global }) else { throw .step("the batch's inputs differ in their number of examples") }
    let share = BatchSplit.share(of: global, rank: comm.rank, size: comm.size)
    let weight = BatchSplit.weight(share: share.count, of: global)
    let run = d.updateRun
    let dtype = d.update.function.argumentTypes[firstStateArgument - 2].dtype
    writePendingState(into: run)
    current = run
    if keepsPreviousState { keepState(of: run) }
    let perExample = sites.map { batch[$0.idsInput].count / max(global, 1) * tables[$0.table]!.dim }
    // Rows of this rank's positions per site; the rows whose gradients this rank applies (all
    // the global batch's with replicated tables, those its shard served with sharded ones).
    var localRows: [[Float]] = []
    var siteRows: [[Int32]] = []
    var exchanges: [ShardExchange] = []
    if d.shardsTables {
      do throws(DistributedError) {
        for site in sites {
          let (rows, exchange) = try shardedLookup(site, batch: batch, share: share, global: global, step: t, lr: lr)
          localRows.append(rows)
          exchanges.append(exchange)
          siteRows.append(exchange.servedRows)
        }
      } catch { throw .distributed(error) }
    } else {
      if case .sparseAdam(_, _, _, .catchUp) = sparseOptimizer {
        for site in sites {
          batch[site.idsInput].int64s.withUnsafeBufferPointer { ids in
            tables[site.table]!.catchUp(sparseOptimizer, ids: ids, throughStep: t - 1, lr: Float(lr))
          }
        }
      }
      // Every rank looks up the whole global batch in the same order, so its replica of each table
      // inserts, counts and admits exactly as one process would; it computes with its share's rows.
      for (k, site) in sites.enumerated() {
        let dim = tables[site.table]!.dim
        var values = [Float](repeating: 0, count: batch[site.idsInput].count * dim)
        siteRows.append(values.withUnsafeMutableBufferPointer { lookUp(site, batch: batch, into: $0.baseAddress!, step: t) })
        localRows.append(Array(values[(share.lowerBound * perExample[k])..<(share.upperBound * perExample[k])]))
      }
    }
    let paramCount = module.params.count
    var localLoss = 0.0
    var gradientRun: Executable.PreparedRun? = nil
    if !share.isEmpty {
      let indices = Array(share)
      let local = batch.map { Dataset.rows($0, indices) }
      let rowTypes = sites.map { TensorType(.f32, shape: local[$0.idsInput].shape + [tables[$0.table]!.dim]) }
      let r: Executable.PreparedRun
      do { r = try fullStep!.shapes.prepare(inputTypes: local.map(\.type) + rowTypes + Array(stateTypes.prefix(paramCount))) }
      catch { throw .step("\(error)") }
      for (i, tensor) in local.enumerated() { RawTensor.write(tensor, to: r.inputs[i]) }
      for k in sites.indices {
        localRows[k].withUnsafeBufferPointer { g in _ = memcpy(r.inputs[inputTypes.count + k], g.baseAddress!, g.count * 4) }
      }
      // The parameters, from the update step's state buffers (where every step leaves them).
      for i in 0..<paramCount { memcpy(r.inputs[inputTypes.count + rowInputCount + i], run.inputs[firstStateArgument + i], bytes(i)) }
      gradientRun = r
    }
    // Buffers that MPI reads and writes while the collectives run: allocated, so nothing moves.
    let scalars = UnsafeMutableBufferPointer<Double>.allocate(capacity: 3)
    let sent = sites.indices.map { UnsafeMutableBufferPointer<Float>.allocate(capacity: max(1, share.count * perExample[$0])) }
    let gathered = sites.indices.map { k in
      UnsafeMutableBufferPointer<Float>.allocate(capacity: max(1, d.shardsTables ? exchanges[k].served * tables[sites[k].table]!.dim : global * perExample[k]))
    }
    defer {
      scalars.deallocate()
      for b in sent + gathered { b.deallocate() }
    }
    var requests: [Communicator.Request] = []
    var started = 0
    // Packs bucket b (this rank's gradients scaled by its weight; zeros without a share) and
    // starts its allreduce. Every rank starts the buckets in plan order.
    func startBucket(_ b: Int) throws(DistributedError) {
      let bucket = d.plan.buckets[b]
      let buffer = d.bucketBuffers[b]
      for member in bucket.members {
        let destination = buffer + member.offset * bucket.elementBytes
        guard let r = gradientRun else { memset(destination, 0, member.count * bucket.elementBytes); continue }
        let source = r.outputs[1 + member.gradient]
        if bucket.elementBytes == 4 {
          let s = source.assumingMemoryBound(to: Float.self), o = destination.assumingMemoryBound(to: Float.self)
          let w = Float(weight)
          for i in 0..<member.count { o[i] = s[i] * w }
        } else {
          let s = source.assumingMemoryBound(to: Double.self), o = destination.assumingMemoryBound(to: Double.self)
          for i in 0..<member.count { o[i] = s[i] * weight }
        }
      }
      requests.append(try comm.startAllreduce(buffer, count: bucket.count, type: Int32(bucket.elementBytes == 4 ? TTFC_MPI_F32 : TTFC_MPI_F64),
                                              what: "the allreduce of gradient bucket \(b + 1) of \(d.plan.buckets.count)"))
      comm.traffic.denseGradientBytes += bucket.bytes
      started += 1
    }
    do {
      if let r = gradientRun {
        if fullStep!.executable.trace == nil {
          // Each bucket starts after the thunk that finishes it; between thunks MPI is given a
          // chance to progress the ones in flight (Open MPI progresses only inside its calls).
          var failure: DistributedError? = nil
          do {
            try r.execute { i in
              do {
                while started < d.plan.buckets.count && d.bucketReady[started] <= i {
                  try startBucket(started)
                  if i < d.thunkCount - 1 { comm.traffic.bucketsOverlapped += 1 }
                }
                if started > 0 { try comm.progress(&requests) }
              } catch let error as DistributedError { failure = error; throw error }
            }
          } catch {
            if let failure { throw failure }
            throw TrainingError.step("\(error)")
          }
        } else {
          try r.execute()
        }
        localLoss = RawTensor.read(dtype, shape: [], from: r.outputs[0]).doubles[0]
      }
      while started < d.plan.buckets.count { try startBucket(started) }
    } catch let error as DistributedError { throw .distributed(error) }
    catch let error as TrainingError { throw error }
    catch { throw .step("\(error)") }
    // This rank's row gradients, scaled by its share (in the owners' order with sharded tables),
    // and whether they are all finite (a rank's verdict goes to every rank with the loss).
    var rowsFinite = true
    for (k, site) in sites.enumerated() {
      let count = share.count * perExample[k]
      guard let r = gradientRun else { continue }
      let source = r.outputs[1 + d.gradientCount + k].assumingMemoryBound(to: Float.self)
      let w = Float(weight)
      if d.shardsTables {
        let dim = tables[site.table]!.dim
        for (slot, p) in exchanges[k].order.enumerated() {
          for j in 0..<dim { sent[k][slot * dim + j] = source[p * dim + j] * w }
        }
      } else {
        for i in 0..<count { sent[k][i] = source[i] * w }
      }
      if !Self.allFinite(.f32, sent[k].baseAddress!, count: count) { rowsFinite = false }
    }
    scalars[0] = localLoss * weight
    scalars[1] = d.localStopRequest ? 1 : 0
    scalars[2] = rowsFinite ? 0 : 1
    do {
      // The loss (weighted), the stop flag and the row-gradient verdict.
      requests.append(try comm.startAllreduce(scalars.baseAddress!, count: 3, type: Int32(TTFC_MPI_F64), what: "the allreduce of the loss"))
      comm.traffic.denseGradientBytes += 24
      for (k, site) in sites.enumerated() {
        let count = share.count * perExample[k]
        if d.shardsTables {
          // Row gradients to the owners of the rows, in the order they served them.
          let e = exchanges[k], dim = Int32(tables[site.table]!.dim)
          requests.append(try comm.startAlltoallv(UnsafeRawPointer(sent[k].baseAddress!), sendCounts: e.sendCounts.map { $0 * dim },
                                                  sendOffsets: e.sendOffsets.map { $0 * dim }, into: UnsafeMutableRawPointer(gathered[k].baseAddress!),
                                                  receiveCounts: e.receiveCounts.map { $0 * dim }, receiveOffsets: e.receiveOffsets.map { $0 * dim },
                                                  type: Int32(TTFC_MPI_F32), what: "the exchange of the row gradients of table '@\(site.table)'"))
          comm.traffic.rowGradientBytes += (count - Int(e.sendCounts[comm.rank]) * Int(dim)) * 4
          continue
        }
        // Replicated tables: gathered in global position order.
        let counts = (0..<comm.size).map { Int32(BatchSplit.share(of: global, rank: $0, size: comm.size).count * perExample[k]) }
        let offsets = (0..<comm.size).map { Int32(BatchSplit.share(of: global, rank: $0, size: comm.size).lowerBound * perExample[k]) }
        requests.append(try comm.startAllgatherv(sent[k].baseAddress, sendCount: count, into: gathered[k].baseAddress, counts: counts,
                                                 offsets: offsets, type: Int32(TTFC_MPI_F32),
                                                 what: "the gather of the row gradients of table '@\(site.table)'"))
        comm.traffic.rowGradientBytes += (global - share.count) * perExample[k] * 4
      }
      for i in requests.indices { try comm.wait(&requests[i]) }
    } catch { throw .distributed(error) }
    comm.traffic.steps += 1
    // The summed gradients into the update step's inputs.
    for (b, bucket) in d.plan.buckets.enumerated() {
      for member in bucket.members {
        memcpy(run.inputs[member.gradient], d.bucketBuffers[b] + member.offset * bucket.elementBytes, member.count * bucket.elementBytes)
      }
    }
    let loss = scalars[0]
    d.setStopAgreed(scalars[1] > 0)
    let rowProblem = scalars[2] > 0
    RawTensor.write(Tensor.scalar(loss, dtype), to: run.inputs[d.gradientCount])
    RawTensor.write(Tensor.scalar(lr, dtype), to: run.inputs[d.gradientCount + 1])
    RawTensor.write(Tensor.scalar(Double(t), dtype), to: run.inputs[d.gradientCount + 2])
    do { try run.execute() } catch { throw .step("\(error)") }
    previousLearningRate = lr
    let moved = stateTypes.indices.filter { run.outputs[1 + $0] != run.inputs[firstStateArgument + $0] }
    for i in moved { memcpy(staging[i], run.outputs[1 + i], bytes(i)) }
    for i in moved { memcpy(run.inputs[firstStateArgument + i], staging[i], bytes(i)) }
    lastStep = StepReport(step: Int(t), precision: .full, lossScale: nil, updateSkipped: false, reason: nil)
    // The same checks as one process makes, on the same (global) values: every rank decides alike.
    var problem: String? = loss.isFinite ? nil : "the loss is \(loss)"
    if problem == nil && rowProblem { problem = "a gradient of a table is not finite" }
    if problem == nil, let bad = stateTypes.indices.prefix(paramCount).first(where: {
      !Self.allFiniteOnThePool(stateTypes[$0].dtype, run.inputs[firstStateArgument + $0], count: elementCount(stateTypes[$0].staticShape!) ?? 0)
    }) {
      problem = "'\(stateNames[bad])' is not finite after the update (a non-finite gradient or learning rate \(lr))"
    }
    if let problem {
      if keepsPreviousState {
        restoreKeptState(of: run)
        stepCount += 1
      } else {
        stateIsNonFinite = true
      }
      throw .nonFinite(step: Int(t), reason: problem)
    }
    try applySparseUpdates(siteRows: siteRows, step: t, lr: lr) { UnsafePointer(gathered[$0].baseAddress!) }
    stepCount += 1
    return loss
  }
}

extension DistributedStep {
  func setStopAgreed(_ value: Bool) { stopAgreed = value }
}
