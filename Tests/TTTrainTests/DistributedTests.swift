// The parts of data-parallel training that need no MPI: how a global batch splits among ranks,
// the gradient buckets, the traffic arithmetic, the named errors, and the split training step
// (gradient step, then update step) against the fused one on the same batch.
import Foundation
import Testing
import TTCompiler
import TTEmbedding
import TTIR
import TTRuntime
@testable import TTTrain

struct DistributedTests {
  @Test func batchSharesAreContiguousAndBalanced() {
    for count in [0, 1, 5, 32, 33, 1000] {
      for size in 1...5 {
        let shares = (0..<size).map { BatchSplit.share(of: count, rank: $0, size: size) }
        #expect(shares.first!.lowerBound == 0 && shares.last!.upperBound == count)
        for (a, b) in zip(shares, shares.dropFirst()) { #expect(a.upperBound == b.lowerBound) }
        let sizes = shares.map(\.count)
        #expect(sizes.max()! - sizes.min()! <= 1, "count \(count) size \(size): \(sizes)")
        let weights = shares.map { BatchSplit.weight(share: $0.count, of: count) }
        if count > 0 { #expect(abs(weights.reduce(0, +) - 1) < 1e-15) }
      }
    }
    // An even split among a power of two: the weight is exact, so scaling a rank's mean gradient
    // by it equals taking the global mean's share.
    #expect(BatchSplit.weight(share: 16, of: 32) == 0.5)
    #expect(BatchSplit.share(of: 3, rank: 0, size: 4).isEmpty)
  }

  @Test func bucketsFollowTheBackwardOrderAndTheCapacity() {
    // Gradients: 100 f32, 10 f64, 300 f32, an integer parameter's (not sent), 50 f32.
    let sizes = [(count: 100, elementBytes: 4), (count: 10, elementBytes: 8), (count: 300, elementBytes: 4),
                 (count: 7, elementBytes: 0), (count: 50, elementBytes: 4)]
    let plan = BucketPlan(sizes: sizes, capacityBytes: 1000)
    // Reverse order: 4 (50 f32), then 2 (300 f32: 1400 bytes would overflow 1000, and 1200 alone
    // too, so a bucket of its own), then 1 (f64: another type), then 0.
    #expect(plan.buckets.map { $0.members.map(\.gradient) } == [[4], [2], [1], [0]])
    #expect(plan.buckets.map(\.bytes) == [200, 1200, 80, 400])
    let merged = BucketPlan(sizes: sizes, capacityBytes: 4 << 20)
    #expect(merged.buckets.map { $0.members.map(\.gradient) } == [[4, 2], [1], [0]])
    #expect(merged.buckets[0].members.map(\.offset) == [0, 50])
    // Every communicated gradient exactly once; a gradient larger than the capacity alone.
    let tiny = BucketPlan(sizes: sizes, capacityBytes: 8)
    #expect(tiny.buckets.flatMap { $0.members.map(\.gradient) }.sorted() == [0, 1, 2, 4])
    #expect(tiny.buckets.allSatisfy { $0.members.count == 1 })
    // An explicit order.
    #expect(BucketPlan(sizes: sizes, order: [0, 2, 4], capacityBytes: 1 << 20).buckets.map { $0.members.map(\.gradient) } == [[0, 2, 4]])
  }

  @Test func trafficArithmetic() {
    #expect(Traffic.ringAllreduceBytes(payload: 1000, ranks: 1) == 0)
    #expect(Traffic.ringAllreduceBytes(payload: 1000, ranks: 2) == 1000)
    #expect(Traffic.ringAllreduceBytes(payload: 1000, ranks: 4) == 1500)
    #expect(fingerprint("model a") != fingerprint("model b"))
    #expect(fingerprint("same") == fingerprint("same"))
  }

  @Test func withoutALauncherDistributedIsANamedError() {
    #expect(!Communicator.launchedByMPI(["PATH": "/usr/bin"]))
    #expect(Communicator.launchedByMPI(["OMPI_COMM_WORLD_SIZE": "2"]))
    #expect(Communicator.launchedByMPI(["PMIX_RANK": "0"]))
    if !Communicator.launchedByMPI() {
      #expect(throws: DistributedError.notLaunchedByMPI) { _ = try Communicator.world() }
    }
    #expect(DistributedError.batchNotDivisible(batch: 33, ranks: 2).description.contains("does not divide among 2 ranks"))
    #expect(DistributedError.timedOut(rank: 1, what: "the allreduce of the loss", step: 7, seconds: 5).description
            == "distributed training: rank 1: the allreduce of the loss did not complete within 5 s at step 7: another rank died, hangs or cannot be reached (TTFC_MPI_TIMEOUT sets the deadline)")
  }

  static let model = """
    module @two_layer {
      param @w : f64[3, 4] = glorot_uniform(seed: 5)
      param @b : f64[4] = constant(0.1)
      param @v : f64[4, 1] = glorot_uniform(seed: 6)
      func @loss(%x: f64[B, 3], %y: f64[B]) -> f64[] {
        %h = matmul %x, @w : f64[B, 4]
        %hb = add %h, @b : f64[B, 4]
        %r = tanh %hb : f64[B, 4]
        %o = matmul %r, @v : f64[B, 1]
        %z = reshape %o : f64[B]
        %d = sub %z, %y : f64[B]
        %s = mul %d, %d : f64[B]
        %m = reduce_mean %s : f64[]
        return %m
      }
    }
    """

  /// The split step (what each rank runs, around the allreduce) updates exactly as the fused step,
  /// and the gradient of a batch is the share-weighted sum of its halves' gradients.
  @Test(arguments: [OptimizerConfig.Kind.adam, .momentum, .sgd])
  func splitStepEqualsFusedStep(kind: OptimizerConfig.Kind) throws {
    let module = try Parser.parseAndVerify(Self.model)
    var optimizer = OptimizerConfig(kind)
    optimizer.clipNorm = 0.5
    let fused = try TrainStep.build(module, loss: "loss", optimizer: optimizer)
    let split = try TrainStep.buildSplit(module, loss: "loss", optimizer: optimizer)
    let step = try Executable(module: fused, function: "loss.train_step")
    let gradient = try Executable(module: split, function: "loss.grad_step")
    let update = try Executable(module: split, function: "loss.apply_step")
    var rng = SystemRandomNumberGenerator()
    let batch = 6
    let x = Tensor(.f64, shape: [batch, 3], floats: (0..<(batch * 3)).map { _ in Double.random(in: -1...1, using: &rng) })
    let y = Tensor(.f64, shape: [batch], floats: (0..<batch).map { _ in Double.random(in: -1...1, using: &rng) })
    var params: [Tensor] = [
      Tensor(.f64, shape: [3, 4], floats: (0..<12).map { _ in Double.random(in: -0.5...0.5, using: &rng) }),
      Tensor(.f64, shape: [4], floats: [0.1, -0.1, 0.2, 0]),
      Tensor(.f64, shape: [4, 1], floats: (0..<4).map { _ in Double.random(in: -0.5...0.5, using: &rng) }),
    ]
    var slots = params.flatMap { p in optimizer.slots.map { Tensor.filled(.f64, shape: p.shape, value: $0.initial) } }
    var fusedParams = params, fusedSlots = slots
    for t in 1...3 {
      let lr = Tensor.scalar(0.05 * Double(t), .f64), stepNumber = Tensor.scalar(Double(t), .f64)
      let out = try step.run([x, y, lr, stepNumber] + fusedParams + fusedSlots)
      fusedParams = Array(out[1...3])
      fusedSlots = Array(out[4...])
      // Two "ranks" of 3 examples each, weight 1/2: their gradients summed.
      let halves = [Array(0..<3), Array(3..<6)].map { rows in try! gradient.run([Dataset.rows(x, rows), Dataset.rows(y, rows)] + params) }
      let summed = (1...3).map { k in
        Tensor(.f64, shape: params[k - 1].shape, floats: zip(halves[0][k].doubles, halves[1][k].doubles).map { 0.5 * $0 + 0.5 * $1 })
      }
      let whole = try gradient.run([x, y] + params)
      for k in 1...3 {
        for (a, b) in zip(whole[k].doubles, summed[k - 1].doubles) { #expect(abs(a - b) <= 1e-14 * max(1, abs(a))) }
      }
      let loss = Tensor.scalar(0.5 * halves[0][0].doubles[0] + 0.5 * halves[1][0].doubles[0], .f64)
      let updated = try update.run(summed + [loss, lr, stepNumber] + params + slots)
      #expect(abs(updated[0].doubles[0] - out[0].doubles[0]) <= 1e-14)
      params = Array(updated[1...3])
      slots = Array(updated[4...])
      for (a, b) in zip(params + slots, fusedParams + fusedSlots) {
        for (u, v) in zip(a.doubles, b.doubles) { #expect(abs(u - v) <= 1e-13 * max(1, abs(u)), "\(kind) step \(t)") }
      }
    }
  }

  @Test func stateParametersAreRefused() throws {
    let module = try Parser.parseAndVerify("""
      module @s {
        param @w : f64[2, 1] = constant(1.0)
        state @n : f64[] = constant(0.0)
        func @loss(%x: f64[B, 2]) -> (f64[], f64[]) {
          %p = matmul %x, @w : f64[B, 1]
          %m = reduce_mean %p : f64[]
          %one = constant 1.0 : f64[]
          %n = add @n, %one : f64[]
          return %m, %n
        }
      }
      """)
    do {
      _ = try TrainStep.buildSplit(module, loss: "loss", optimizer: OptimizerConfig(.sgd))
      Issue.record("a module with a state parameter was split")
    } catch {
      #expect("\(error)".contains("does not support state parameters ('@n'"), "\(error)")
    }
  }

  @Test func idsHaveOneOwnerSpreadEvenly() {
    // Fixed values (tools/mpi_check.py computes the same function in Python to check shard files).
    #expect((0..<8).map { TableSharding.owner(of: Int64($0), ranks: 2) } == [1, 1, 0, 1, 0, 0, 0, 1])
    #expect(TableSharding.owner(of: 12345, ranks: 3) == 2)
    #expect(TableSharding.owner(of: -1, ranks: 4) == 0)
    #expect(TableSharding.owner(of: (1 << 40) + 7, ranks: 5) == 2)
    for ranks in [1, 2, 3, 7] {
      var counts = [Int](repeating: 0, count: ranks)
      // Dense ids and strided ones (multiples of the rank count) both spread.
      for id in 0..<7000 { counts[TableSharding.owner(of: Int64(id * 7 * ranks), ranks: ranks)] += 1 }
      #expect(counts.allSatisfy { abs($0 - 7000 / ranks) < 7000 / ranks / 10 + 5 }, "\(ranks): \(counts)")
    }
    let (order, counts) = TableSharding.groupByOwner([1, 0, 1, 2, 0, 1], ranks: 3)
    #expect(order == [1, 4, 0, 2, 5, 3])
    #expect(counts == [2, 3, 1])
  }

  /// A table split by owner into shards, and the shards merged again, hold what the table held.
  @Test func shardsOfATableUniteIntoIt() throws {
    let table = try EmbeddingTable(dim: 4, optimizer: .defaultAdagrad, initializer: .normal(stddev: 0.1), seed: 9)
    let ids = (0..<60).map { Int64($0 * $0 % 97) }
    _ = table.lookup(ids, training: true, step: 3)
    _ = table.lookup(Array(ids.prefix(20)), training: true, step: 5)
    let shards = try (0..<3).map { r in
      let shard = try table.emptyCopy()
      try shard.merge(rowsOf: table) { TableSharding.owner(of: $0, ranks: 3) == r }
      return shard
    }
    #expect(shards.map(\.count).reduce(0, +) == table.count)
    for (r, shard) in shards.enumerated() {
      for id in Set(ids) { #expect((shard.row(of: id) >= 0) == (TableSharding.owner(of: id, ranks: 3) == r)) }
    }
    let union = try table.emptyCopy()
    for shard in shards { try union.merge(rowsOf: shard) { _ in true } }
    #expect(union.count == table.count)
    #expect(union.lookup(ids, training: false) == table.lookup(ids, training: false))
    // The same rows in the same serialized form, up to order: compare the tables row by row.
    let a = try EmbeddingTable.deserialize(union.serialized()), b = try EmbeddingTable.deserialize(table.serialized())
    #expect(a.lookup(ids, training: false) == b.lookup(ids, training: false))
    #expect(union.serialized().count == table.serialized().count)
    #expect(throws: EmbeddingError.self) { try union.merge(rowsOf: shards[0]) { _ in true } }
  }

  /// Bad TTFC_MPI_TIMEOUT / TTFC_MPI_BUCKET_BYTES values are named, not replaced by defaults.
  @Test func environmentValuesAreChecked() {
    #expect(Communicator.environmentError([:]) == nil)
    #expect(Communicator.environmentError(["TTFC_MPI_TIMEOUT": "5", "TTFC_MPI_BUCKET_BYTES": "16384"]) == nil)
    for bad in ["0", "-1", "abc", "nan", "inf", "", "1e300"] {
      #expect(Communicator.environmentError(["TTFC_MPI_TIMEOUT": bad])?.contains("TTFC_MPI_TIMEOUT") == true, "\(bad)")
    }
    for bad in ["abc", "1e3", "1.5", "0", "-1", "99999999999999999999"] {
      #expect(Communicator.environmentError(["TTFC_MPI_BUCKET_BYTES": bad])?.contains("TTFC_MPI_BUCKET_BYTES") == true, "\(bad)")
    }
  }

  /// The ranks' data fingerprint sees a change anywhere in a column, not only at its ends.
  @Test func dataFingerprintCoversEveryValue() {
    var values = (0..<1000).map(Double.init)
    let a = TrainingLoop.valueHash(Tensor(.f64, shape: [1000], floats: values))
    values[500] = -0.0 + 500.5
    let b = TrainingLoop.valueHash(Tensor(.f64, shape: [1000], floats: values))
    #expect(a != b)
    #expect(TrainingLoop.valueHash(Tensor(.i32, shape: [3], ints: [1, 2, 3])) != TrainingLoop.valueHash(Tensor(.i32, shape: [3], ints: [1, 3, 2])))
  }
}
