// Training with embedding tables: the sparse gradient of lookups and pooled lookups (every
// combiner, padding ids and lengths) against finite differences of the loss in the table's rows;
// NeuMF learning the latent structure of synthetic implicit feedback; exact resume with tables;
// named errors for what training cannot do.
import Foundation
import Testing
import TTEmbedding
import TTIR
import TTInterp
import TTRuntime
@testable import TTTrain

struct EmbeddingTrainingTests {
  static let pooledModel = """
    module @m {
      param @w : f32[3, 1] = glorot_uniform(seed: 1)
      table @t : f32[3] = normal(mean: 0, std: 0.5, seed: 2)
      func @loss(%id: i64[B], %multi: i64[B, 4], %n: i32[B], %y: f32[B]) -> f32[] {
        %e = embedding_lookup @t, %id : f32[B, 3]
        %s = embedding_lookup_pooled @t, %multi {combiner = "sum", padding_id = -1} : f32[B, 3]
        %m = embedding_lookup_pooled @t, %multi, %n {combiner = "mean"} : f32[B, 3]
        %q = embedding_lookup_pooled @t, %multi, %n {combiner = "sqrtn", padding_id = -1} : f32[B, 3]
        %a = mul %e, %s : f32[B, 3]
        %b = add %a, %m : f32[B, 3]
        %c = mul %b, %q : f32[B, 3]
        %z1 = matmul %c, @w : f32[B, 1]
        %z = reshape %z1 : f32[B]
        %l = sigmoid_cross_entropy %z, %y : f32[B]
        %r = reduce_mean %l : f32[]
        return %r
      }
    }
    """

  @Test func sparseGradientsMatchFiniteDifferences() throws {
    let module = try Parser.parseAndVerify(Self.pooledModel)
    let table = try EmbeddingTable(declaration: module.tables[0])
    let ids = Tensor(.i64, shape: [3], ints: [5, 6, 5])
    let multi = Tensor(.i64, shape: [3, 4], ints: [5, 7, -1, 6, 7, -1, -1, -1, 6, 6, 5, 8])
    let lengths = Tensor(.i32, shape: [3], ints: [3, 2, 0])
    let labels = Tensor(.f32, shape: [3], floats: [1, 0, 1])
    let inputs = [ids, multi, lengths, labels]
    _ = table.lookup([5, 6, 7, 8], training: true)    // every id gets a row
    // Analytic: the lowered loss with row inputs, differentiated with respect to them.
    let (lowered, sites) = try EmbeddingLowering.lower(module, function: "loss")
    #expect(sites.count == 4 && sites.filter(\.pooled).count == 3)
    let withGrad = try Autodiff.gradient(of: lowered, function: "loss", inputs: sites.map(\.rowsInput))
    var rowInputs: [Tensor] = []
    var positions: [[Int64?]] = []    // the id each row position reads (nil: padding or past the length)
    for site in sites {
      let siteIds = inputs[site.idsInput].int64s
      let width = site.pooled ? 4 : 1
      let n = site.lengthsInput.map { inputs[$0].int64s }
      let valid = siteIds.indices.map { p -> Int64? in
        !site.pooled || EmbeddingTable.isValid(id: siteIds[p], position: p % width, length: n?[p / width], paddingID: site.paddingID) ? siteIds[p] : nil
      }
      positions.append(valid)
      rowInputs.append(Tensor(.f32, shape: site.rowsType.dims.map { $0.staticSize ?? 3 }.enumerated().map { $0.offset == 0 ? 3 : $0.element },
                              floats: valid.flatMap { id in id.map { table.lookup([$0], training: false).map(Double.init) } ?? [0, 0, 0] }))
    }
    let params = try Interpreter(module: module).params
    let results = try Interpreter(module: withGrad, params: params).run("loss.grad", inputs + rowInputs)
    var analytic: [Int64: [Double]] = [:]
    for (k, site) in sites.enumerated() {
      let g = results[1 + module.params.count + k].doubles
      for (p, id) in positions[k].enumerated() {
        guard let id else { continue }
        var sum = analytic[id] ?? [0, 0, 0]
        for j in 0..<3 { sum[j] += g[p * 3 + j] }
        analytic[id] = sum
      }
      _ = site
    }
    // Numeric: perturb the table's rows (in the interpreter's copy of the trained table); the
    // loss reads them through evaluation lookups.
    var reference = try Interpreter(module: module, params: params, tables: ["t": ReferenceTable(contentsOf: table)])
    #expect(abs(try reference.run("loss", inputs)[0].doubles[0] - results[0].doubles[0]) < 1e-6, "the lowered loss equals the loss")
    let eps: Float = 1e-2
    for id in [Int64(5), 6, 7, 8] {
      for j in 0..<3 {
        var row = try #require(reference.tables["t"]?[id])
        let original = row[j]
        row[j] = original + eps; reference.tables["t"]?[id] = row
        let plus = try reference.run("loss", inputs)[0].doubles[0]
        row[j] = original - eps; reference.tables["t"]?[id] = row
        let minus = try reference.run("loss", inputs)[0].doubles[0]
        row[j] = original; reference.tables["t"]?[id] = row
        let numeric = (plus - minus) / Double(2 * eps)
        let value = analytic[id]?[j] ?? 0
        #expect(abs(numeric - value) <= 2e-3 + 2e-2 * abs(numeric), "d loss / d t[\(id)][\(j)]: analytic \(value), numeric \(numeric)")
      }
    }
  }

  /// Implicit feedback with latent structure: user u likes item i when their hidden 4-vectors agree.
  static func implicitData(users: Int, items: Int, count: Int, seed: UInt64) throws -> Dataset {
    func factor(_ kind: UInt64, _ id: Int) -> [Double] { (0..<4).map { SeededRandom.normal(kind, UInt64(id), UInt64($0)) } }
    var u: [Int64] = [], it: [Int64] = [], y: [Double] = []
    for k in 0..<count {
      let user = Int(SeededRandom.uniform(seed, UInt64(k), 1) * Double(users))
      let item = Int(SeededRandom.uniform(seed, UInt64(k), 2) * Double(items))
      let score = zip(factor(11, user), factor(12, item)).reduce(0) { $0 + $1.0 * $1.1 }
      u.append(Int64(user) * 1_000_003 + 17)     // sparse, unbounded ids
      it.append(Int64(item) &* 7_919 - 40_000)
      y.append(score > 0 ? 1 : 0)
    }
    return try Dataset(columns: ["user": Tensor(.i64, shape: [count], ints: u), "item": Tensor(.i64, shape: [count], ints: it),
                                 "label": Tensor(.f32, shape: [count], floats: y)])
  }

  @Test func neuMFLearnsLatentStructure() throws {
    var options = TrainingOptions()
    options.batch = 128
    options.epochs = 8
    options.learningRate = 0.01
    options.evalEvery = Int.max
    let loop = try TrainingLoop(module: TrainingFixtures.module("ncf.ttir"), loss: "loss", optimizer: OptimizerConfig(.adam),
                                data: Self.implicitData(users: 150, items: 80, count: 8000, seed: 1),
                                evalData: Self.implicitData(users: 150, items: 80, count: 2000, seed: 2), options: options)
    var evaluation: [String: Double] = [:]
    _ = try loop.run { if $0.kind == .evaluation { evaluation = $0.metrics } }
    let first = loop.losses.prefix(10).reduce(0, +) / 10, last = loop.losses.suffix(10).reduce(0, +) / 10
    #expect(last < first * 0.6, "loss \(first) -> \(last)")
    #expect((evaluation["auc"] ?? 0) > 0.85, "held-out \(evaluation)")
    let users = loop.trainer.tables["user_gmf"]!
    #expect(users.count == 150, "one row per distinct user, no collisions")
    #expect(loop.trainer.sparseOptimizer == .defaultSparseAdam)
  }

  @Test func resumingWithTablesIsExact() throws {
    let module = try TrainingFixtures.module("ncf.ttir")
    let data = try Self.implicitData(users: 40, items: 30, count: 700, seed: 3)
    func options(_ steps: Int, _ directory: String?) -> TrainingOptions {
      var o = TrainingOptions()
      o.batch = 64
      o.steps = steps
      o.learningRate = 0.01
      o.checkpointDirectory = directory
      return o
    }
    let straight = try TrainingLoop(module: module, loss: "loss", optimizer: OptimizerConfig(.adam), data: data, options: options(20, nil))
    _ = try straight.run { _ in }
    let directory = TrainingFixtures.temporaryDirectory()
    let first = try TrainingLoop(module: module, loss: "loss", optimizer: OptimizerConfig(.adam), data: data, options: options(10, directory))
    _ = try first.run { _ in }
    // A run that would end before the checkpoint's step is refused, not a silent no-op that
    // rewrites the checkpoint's settings (an outside review).
    let shorter = try TrainingLoop(module: module, loss: "loss", optimizer: OptimizerConfig(.adam), data: data, options: options(5, directory))
    #expect { try shorter.resume() } throws: { "\($0)".contains("it is at step 10, past this run's 5 steps in all") }
    let finished = try TrainingLoop(module: module, loss: "loss", optimizer: OptimizerConfig(.adam), data: data, options: options(10, directory))
    #expect(try finished.resume())
    let second = try TrainingLoop(module: module, loss: "loss", optimizer: OptimizerConfig(.adam), data: data, options: options(20, directory))
    #expect(try second.resume())
    _ = try second.run { _ in }
    for (a, b) in zip(straight.trainer.state, second.trainer.state) { #expect(a.isIdentical(to: b)) }
    for (name, table) in straight.trainer.tables {
      let other = second.trainer.tables[name]!
      let ids = table.ids.sorted()
      #expect(other.ids.sorted() == ids)
      #expect(other.lookup(ids, training: false) == table.lookup(ids, training: false), "table \(name)")
      for id in ids { #expect(other.metadata(of: id)! == table.metadata(of: id)!) }
    }
    let files = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".ttemb") }
    #expect(files.count == 4, "one file per table, older ones removed: \(files)")
    // A damaged table file is a named error.
    let path = directory + "/" + files[0]
    var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
    bytes[bytes.count / 2] ^= 0xff
    try bytes.write(to: URL(fileURLWithPath: path))
    let third = try TrainingLoop(module: module, loss: "loss", optimizer: OptimizerConfig(.adam), data: data, options: options(30, directory))
    #expect(throws: CheckpointError.self) { try third.resume() }
  }

  @Test func whatTrainingCannotDoIsNamed() throws {
    let computed = try Parser.parseAndVerify("""
      module @m {
        table @t : f32[2] = zeros
        func @loss(%x: i64[B]) -> f32[] {
          %one = constant 1 : i64[]
          %y = add %x, %one : i64[B]
          %e = embedding_lookup @t, %y : f32[B, 2]
          %s = reduce_sum %e : f32[]
          return %s
        }
      }
      """)
    #expect(throws: TrainingError.self) { try Trainer(module: computed, loss: "loss", optimizer: OptimizerConfig(.sgd)) }
    do { _ = try Trainer(module: computed, loss: "loss", optimizer: OptimizerConfig(.sgd)) } catch {
      #expect("\(error)".contains("training needs ids to be an input"))
    }
    // Differentiating a lookup directly names the way.
    #expect(throws: AutodiffError.self) { try Autodiff.gradient(of: computed, function: "loss") }
  }
}

/// Sparse CTR data for examples/deepfm.ttir and examples/wide_deep_sparse.ttir: latent user and ad
/// vectors, a site bias and interests overlapping the ad's topic decide the click.
func sparseClickData(count: Int, seed: UInt64, firstUser: Int = 0, users: Int = 100) throws -> Dataset {
  try sparseClickDataWithTeacher(count: count, seed: seed, firstUser: firstUser, users: users).data
}

/// The data and the teacher's logit of every example (its AUC is the best a model can reach).
func sparseClickDataWithTeacher(count: Int, seed: UInt64, firstUser: Int = 0, users: Int = 100) throws -> (data: Dataset, teacher: [Double]) {
  var teacherLogits: [Double] = []
  var user: [Int64] = [], ad: [Int64] = [], site: [Int64] = [], cross: [Int64] = [], interests: [Int64] = []
  var dense: [Double] = [], click: [Double] = []
  func vector(_ kind: UInt64, _ id: Int) -> [Double] { (0..<4).map { SeededRandom.normal(kind, UInt64(id), UInt64($0)) } }
  for k in 0..<count {
    let u = firstUser + Int(SeededRandom.uniform(seed, UInt64(k), 1) * Double(users))
    let a = Int(SeededRandom.uniform(seed, UInt64(k), 2) * 60)
    let s = Int(SeededRandom.uniform(seed, UInt64(k), 3) * 10)
    let topics = (0..<4).map { Int64(SeededRandom.uniform(91, UInt64(u), UInt64($0)) * 12) }
    let valid = 1 + Int(SeededRandom.uniform(92, UInt64(u), 0) * 4)
    let adTopic = Int64(SeededRandom.uniform(93, UInt64(a), 0) * 12)
    let overlap = topics.prefix(valid).contains(adTopic)
    let d = (0..<4).map { SeededRandom.normal(seed, UInt64(k), UInt64(10 + $0)) }
    let logit = zip(vector(94, u), vector(95, a)).reduce(0) { $0 + $1.0 * $1.1 } + (overlap ? 1.5 : 0) + 0.5 * d[0] - 0.5
    teacherLogits.append(logit)
    user.append(Int64(u) * 7919 + 1_000_000); ad.append(Int64(a) * 104_729 + 2_000_000_000); site.append(Int64(s) + 5_000_000_000)
    cross.append(Int64(u * 60 + a) * 31 + 9_000_000_000)
    interests += (0..<4).map { $0 < valid ? topics[$0] + 7_000_000_000 : -1 }
    dense += d
    click.append(SeededRandom.uniform(seed, UInt64(k), 4) < 1 / (1 + exp(-logit)) ? 1 : 0)
  }
  return (try Dataset(columns: [
    "user": Tensor(.i64, shape: [count], ints: user), "ad": Tensor(.i64, shape: [count], ints: ad),
    "site": Tensor(.i64, shape: [count], ints: site), "cross": Tensor(.i64, shape: [count], ints: cross),
    "interests": Tensor(.i64, shape: [count, 4], ints: interests), "dense": Tensor(.f32, shape: [count, 4], floats: dense),
    "click": Tensor(.f32, shape: [count], floats: click)]), teacherLogits)
}

struct SparseModelTests {
  @Test(arguments: ["deepfm.ttir", "wide_deep_sparse.ttir"])
  func sparseClickModelsLearn(_ file: String) throws {
    var options = TrainingOptions()
    options.batch = 128
    options.epochs = 6
    options.learningRate = 0.02
    options.evalEvery = Int.max
    let loop = try TrainingLoop(module: TrainingFixtures.module(file), loss: "loss", optimizer: OptimizerConfig(.adam),
                                data: sparseClickData(count: 8000, seed: 1), evalData: sparseClickData(count: 2000, seed: 2), options: options)
    var evaluation: [String: Double] = [:]
    _ = try loop.run { if $0.kind == .evaluation { evaluation = $0.metrics } }
    let eval = try sparseClickDataWithTeacher(count: 2000, seed: 2)
    let teacher = TrainingLoop.auc(scores: eval.teacher, labels: eval.data.columns["click"]!.doubles)
    // The teacher (the true logits) reaches about 0.87; chance is 0.5.
    #expect(teacher > 0.85)
    #expect((evaluation["auc"] ?? 0) > 0.65, "\(file): held-out \(evaluation), teacher AUC \(teacher)")
  }

  /// Users arrive and leave: each stretch of steps sees a new window of user ids. With a
  /// time-to-live the user table stays bounded (old users are evicted) while the loss falls;
  /// without it the table keeps every user ever seen.
  @Test func idsThatComeAndGoKeepMemoryBoundedAndLossFalling() throws {
    var windows: [Dataset] = []
    for w in 0..<6 { windows.append(try sparseClickData(count: 1500, seed: UInt64(10 + w), firstUser: w * 300, users: 300)) }
    var columns: [String: Tensor] = [:]
    for name in windows[0].columns.keys {
      let parts = windows.map { $0.columns[name]! }
      let rowShape = Array(parts[0].shape.dropFirst())
      let values = parts.flatMap { $0.dtype.isFloat ? $0.doubles : $0.int64s.map(Double.init) }
      let shape = [parts.reduce(0) { $0 + $1.shape[0] }] + rowShape
      columns[name] = parts[0].dtype.isFloat ? Tensor(parts[0].dtype, shape: shape, floats: values)
        : Tensor(parts[0].dtype, shape: shape, ints: values.map { Int64($0) })
    }
    let stream = try Dataset(columns: columns)
    func train(ttl: Int?) throws -> (TrainingLoop, [Int]) {
      var options = TrainingOptions()
      options.batch = 100
      options.epochs = 1
      options.shuffle = false           // in time order: windows one after another
      options.learningRate = 0.005
      options.tableTTL = ttl
      options.evictEvery = 5
      let loop = try TrainingLoop(module: TrainingFixtures.module("wide_deep_sparse.ttir"), loss: "loss", optimizer: OptimizerConfig(.adam),
                                  data: stream, options: options)
      var sizes: [Int] = []
      _ = try loop.run { event in if event.kind == .step { sizes.append(loop.trainer.tables["user_vectors"]!.count) } }
      return (loop, sizes)
    }
    let (bounded, boundedSizes) = try train(ttl: 8)
    let (unbounded, unboundedSizes) = try train(ttl: nil)
    #expect(unboundedSizes.last! >= 1500, "without eviction every user stays: \(unboundedSizes.last!)")
    #expect(boundedSizes.max()! < 650, "with a TTL of 8 steps the user table holds at most about two windows of 300 users: \(boundedSizes.max()!)")
    #expect(boundedSizes.last! <= 350, "and about one at the end: \(boundedSizes.last!)")
    let users = bounded.trainer.tables["user_vectors"]!
    #expect(users.statistics.evictions > 1000)
    #expect(users.rowCapacity <= 1024, "freed rows are reused, so capacity stays small: \(users.rowCapacity)")
    let losses = bounded.losses
    let first = losses.prefix(15).reduce(0, +) / 15, last = losses.suffix(15).reduce(0, +) / 15
    #expect(last < first, "loss \(first) -> \(last)")
    _ = unbounded
  }
}

struct SparseAdamTrainingTests {
  /// NeuMF on synthetic ratings, `steps` steps of batch 64 with the tables' optimizer `sparse`;
  /// the trainer afterwards, its tables caught up to the last step.
  static func train(_ sparse: SparseOptimizer, steps: Int, lr: Double) throws -> Trainer {
    let p = try NCFProtocol(MovieLens.synthetic(users: 120, items: 90, perUser: 8, seed: 4))
    let examples = p.epoch(0, negatives: 4, seed: 1)
    let trainer = try Trainer(module: TrainingFixtures.module("ncf.ttir"), loss: "loss", optimizer: OptimizerConfig(.adam), sparseOptimizer: sparse)
    for step in 0..<steps {
      let rows = (0..<64).map { (step * 64 + $0 * 37) % examples.users.count }
      _ = try trainer.step([Tensor(.i64, shape: [64], ints: rows.map { examples.users[$0] }),
                            Tensor(.i64, shape: [64], ints: rows.map { examples.items[$0] }),
                            Tensor(.f32, shape: [64], floats: rows.map { examples.labels[$0] })], lr: lr)
    }
    trainer.catchUpTables(lr: lr)
    return trainer
  }

  @Test func catchUpTrainsNeuMFLikeDenseAdam() throws {
    // 150 steps in which rows skip from 1 to about 100 steps: every table row and parameter
    // of the catch-up run matches dense Adam's to rounding (the two differ only in the order of
    // the sums); LazyAdam's are far off. The rows a step reads must be caught up before the
    // step reads them: catching up only at the update takes the gradient at a stale row, and
    // this test then fails by 0.66 after 150 steps.
    let dense = try Self.train(.defaultAdam, steps: 150, lr: 0.01), catchUp = try Self.train(.sparseAdam(.catchUp), steps: 150, lr: 0.01)
    let lazy = try Self.train(.defaultLazyAdam, steps: 150, lr: 0.01)
    var largest = 0.0, lazyLargest = 0.0
    for (name, table) in dense.tables {
      for id in table.ids {
        let a = table.lookup([id], training: false), b = catchUp.tables[name]!.lookup([id], training: false)
        let c = lazy.tables[name]!.lookup([id], training: false)
        for j in a.indices {
          largest = max(largest, Double(abs(a[j] - b[j])))
          lazyLargest = max(lazyLargest, Double(abs(a[j] - c[j])))
        }
      }
    }
    #expect(largest < 1e-4, "largest difference from dense Adam: \(largest)")
    #expect(lazyLargest > 100 * max(largest, 1e-7), "LazyAdam differs by \(lazyLargest)")
    for (name, value) in dense.params {
      let other = catchUp.params[name]!.doubles
      #expect(zip(value.doubles, other).allSatisfy { abs($0 - $1) < 1e-4 }, "@\(name)")
    }
  }
}

struct MovieLensTests {
  @Test func ratingsRoundTripAndErrorsAreNamed() throws {
    let ratings = MovieLens.synthetic(users: 200, items: 50, perUser: 6, seed: 3)
    #expect(ratings.count == 1200)
    #expect(Set(ratings.map(\.user)).count == 200)
    // Zipfian popularity: the most rated item is rated far more often than the median one.
    var counts: [Int64: Int] = [:]
    for r in ratings { counts[r.item, default: 0] += 1 }
    let sorted = counts.values.sorted()
    #expect(sorted.last! >= 3 * sorted[sorted.count / 2])
    let path = TrainingFixtures.temporaryDirectory() + "/ratings.csv"
    try MovieLens.write(ratings, to: path)
    #expect(try MovieLens.read(path) == ratings)
    try "userId,movieId,rating,timestamp\n1,2,x,3\n".write(toFile: path, atomically: true, encoding: .utf8)
    #expect(throws: DataError.self) { try MovieLens.read(path) }
    do { _ = try MovieLens.read(path) } catch { #expect("\(error)".contains("ratings.csv:2")) }
    try "user,item\n1,2\n".write(toFile: path, atomically: true, encoding: .utf8)
    #expect(throws: DataError.self) { try MovieLens.read(path) }
    #expect(throws: DataError.self) { try MovieLens.read(path + ".missing") }
  }

  @Test func theProtocolHoldsOutTheLatestRatingAndSamplesUnratedNegatives() throws {
    let ratings = [Rating(user: 1, item: 10, rating: 4, timestamp: 5), Rating(user: 1, item: 11, rating: 3, timestamp: 9),
                   Rating(user: 1, item: 12, rating: 5, timestamp: 7), Rating(user: 2, item: 10, rating: 1, timestamp: 1),
                   Rating(user: 2, item: 13, rating: 2, timestamp: 2), Rating(user: 3, item: 14, rating: 2, timestamp: 2)]
    let p = try NCFProtocol(ratings)
    #expect(p.test == [1: 11, 2: 13], "the latest rating is the test item; a user with one rating is left out")
    #expect(p.train.map { "\($0.user):\($0.item)" } == ["1:10", "1:12", "2:10"])
    let epoch = p.epoch(0, negatives: 4, seed: 1)
    #expect(epoch.users.count == 15 && epoch.labels.filter { $0 == 1 }.count == 3)
    for (u, (i, y)) in zip(epoch.users, zip(epoch.items, epoch.labels)) where y == 0 {
      #expect(!ratings.contains { $0.user == u && $0.item == i }, "a negative is an item the user did not rate")
    }
    let candidates = p.candidates(count: 5, seed: 2)
    #expect(candidates.allSatisfy { $0.items.count == 6 && $0.items[0] == p.test[$0.user]! })
    #expect(throws: DataError.self) { try NCFProtocol([Rating(user: 1, item: 1, rating: 1, timestamp: 1)]) }
  }

  @Test func hitRateAndNDCGFollowTheirDefinitions() {
    // Test item scored first; ranks 0, 3, 12 (ties do not push it down).
    let scores: [[Double]] = [[0.9, 0.1, 0.2, 0.9], [0.5, 0.6, 0.7, 0.8, 0.1], [0.0] + [Double](repeating: 1, count: 12)]
    let (hr, ndcg) = NCFProtocol.hitRateAndNDCG(scores: scores, k: 10)
    #expect(abs(hr - 2.0 / 3) < 1e-12)
    #expect(abs(ndcg - (1 + 1 / log2(5.0)) / 3) < 1e-12)
  }

  @Test func neuMFBeatsPopularityOnSyntheticRatings() throws {
    let p = try NCFProtocol(MovieLens.synthetic(users: 300, items: 200, perUser: 15, seed: 5))
    let result = try NCFExperiment.run(module: TrainingFixtures.module("ncf.ttir"), protocol: p, optimizer: OptimizerConfig(.adam),
                                       sparse: .defaultSparseAdam, epochs: 3, batch: 256, lr: 0.01, seed: 1)
    // Ranking 1 test item among 100 at random gives HR@10 = 0.1.
    #expect(result.hr > 0.3, "HR@10 \(result.hr), NDCG@10 \(result.ndcg)")
    #expect(result.ndcg > 0.15)
  }
}
