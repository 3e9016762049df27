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
    let table = try Tables.make(module.tables[0])
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
    // Numeric: perturb the table's rows; the loss reads them through evaluation lookups.
    let reference = try Interpreter(module: module, params: params, tables: ["t": table])
    #expect(abs(try reference.run("loss", inputs)[0].doubles[0] - results[0].doubles[0]) < 1e-6, "the lowered loss equals the loss")
    let eps: Float = 1e-2
    for id in [Int64(5), 6, 7, 8] {
      for j in 0..<3 {
        let r = table.row(of: id)
        var row = [Float](repeating: 0, count: 3)
        table.read(row: r, into: &row)
        let original = row[j]
        row[j] = original + eps; table.write(row: r, from: row)
        let plus = try reference.run("loss", inputs)[0].doubles[0]
        row[j] = original - eps; table.write(row: r, from: row)
        let minus = try reference.run("loss", inputs)[0].doubles[0]
        row[j] = original; table.write(row: r, from: row)
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
