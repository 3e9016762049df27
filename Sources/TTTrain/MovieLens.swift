// MovieLens — MovieLens-format ratings (files: MovieLensFiles.swift; long-tailed synthetic sets:
// SyntheticRatings.swift), the original small generator, and the MLPerf NCF protocol over them:
// implicit feedback (every rating is a positive), the latest rating of each user held out as its
// test item, training on the other positives with `negatives` sampled unrated items per positive
// (fresh each epoch), and evaluation by ranking each user's test item among `candidates` sampled
// unrated items: HR@10 (is it in the top 10) and NDCG@10 (1 / log2(rank + 2) when it is).
// Test users are also split by their test item's popularity (head, torso, tail: the items that
// hold the first, second and last third of the training positives) and by their own activity,
// since what sets sparse optimizers apart is how they treat rarely updated rows.
// The small generator (`synthetic(users:items:perUser:)`) gives items Zipfian popularity and
// every user the same number of ratings among popular items that agree with its tastes.

import Foundation
import TTEmbedding
import TTInterp
import TTCompiler
import TTIR
import TTRuntime

public struct Rating: Equatable, Sendable {
  public var user: Int64
  public var item: Int64
  public var rating: Double
  public var timestamp: Int64
  public init(user: Int64, item: Int64, rating: Double, timestamp: Int64) {
    self.user = user; self.item = item; self.rating = rating; self.timestamp = timestamp
  }
}

public enum MovieLens {
  /// Writes ratings in the MovieLens format (ratings.dat for a `.dat` path, else ratings.csv).
  public static func write(_ ratings: [Rating], to path: String) throws(DataError) {
    let writer = try RatingsWriter(path: path)
    for r in ratings { try writer.append(r) }
    try writer.finish()
  }

  /// Synthetic ratings: `users` users rating about `perUser` of `items` items each. Item k's
  /// popularity follows Zipf(exponent); users and items have latent vectors of `rank`; a user
  /// rates the popular items with the highest affinity among a random candidate pool.
  public static func synthetic(users: Int, items: Int, perUser: Int, rank: Int = 8, exponent: Double = 1.0, seed: UInt64) -> [Rating] {
    func latent(_ kind: UInt64, _ id: Int) -> [Double] { (0..<rank).map { SeededRandom.normal(seed &+ kind, UInt64(id), UInt64($0)) } }
    let itemVectors = (0..<items).map { latent(2, $0) }
    // Zipf weights and their cumulative distribution for popularity-biased candidate draws.
    var cumulative = [Double](repeating: 0, count: items)
    var total = 0.0
    for k in 0..<items { total += pow(Double(k + 1), -exponent); cumulative[k] = total }
    var ratings: [Rating] = []
    for u in 0..<users {
      let taste = latent(1, u)
      var pool = Set<Int>()
      var draw: UInt64 = 0
      while pool.count < min(items, perUser * 4) && draw < UInt64(perUser * 40) {
        let x = SeededRandom.uniform(seed &+ 3, UInt64(u), draw) * total
        draw += 1
        var lo = 0, hi = items - 1
        while lo < hi { let mid = (lo + hi) / 2; if cumulative[mid] < x { lo = mid + 1 } else { hi = mid } }
        pool.insert(lo)
      }
      let chosen = pool.sorted().map { i in (i, zip(taste, itemVectors[i]).reduce(0) { $0 + $1.0 * $1.1 }) }
        .sorted { $0.1 > $1.1 }.prefix(perUser)
      for (k, (item, affinity)) in chosen.enumerated() {
        let stars = max(0.5, min(5, (3 + affinity).rounded()))
        ratings.append(Rating(user: Int64(u + 1), item: Int64(item + 1), rating: stars,
                              timestamp: 1_000_000_000 + Int64(u) * 10_000 + Int64((Int(SeededRandom.uniform(seed &+ 4, UInt64(u), UInt64(k)) * 9_000)))))
      }
    }
    return ratings
  }
}

/// The MLPerf NCF protocol over implicit feedback.
public struct NCFProtocol {
  public let users: [Int64]
  public let items: [Int64]
  /// Training positives (user, item) and each user's held-out test item.
  public let train: [(user: Int64, item: Int64)]
  public let test: [Int64: Int64]
  let rated: [Int64: Set<Int64>]

  public init(_ ratings: [Rating]) throws(DataError) {
    var byUser: [Int64: [Rating]] = [:]
    for r in ratings { byUser[r.user, default: []].append(r) }
    var train: [(Int64, Int64)] = []
    var test: [Int64: Int64] = [:]
    var rated: [Int64: Set<Int64>] = [:]
    for (user, list) in byUser where list.count >= 2 {
      // Leave the latest out (ties: the larger item id, so the split is deterministic).
      let latest = list.max { ($0.timestamp, $0.item) < ($1.timestamp, $1.item) }!
      test[user] = latest.item
      for r in list where !(r.item == latest.item && r.timestamp == latest.timestamp) { train.append((user, r.item)) }
      rated[user] = Set(list.map(\.item))
    }
    guard !test.isEmpty else { throw .malformed("no user has two or more ratings (leave-last-out needs a training and a test item)") }
    let items = Set(ratings.map(\.item)).sorted()
    // Negative sampling draws items a user has not rated: every user needs one.
    if let saturated = test.keys.sorted().first(where: { rated[$0]!.count >= items.count }) {
      throw .malformed("user \(saturated) rated every one of the \(items.count) items, so there is no unrated item to sample as a negative")
    }
    self.users = test.keys.sorted()
    self.items = items
    self.train = train.sorted { ($0.0, $0.1) < ($1.0, $1.1) }
    self.test = test
    self.rated = rated
    var itemPositives: [Int64: Int] = [:], userPositives: [Int64: Int] = [:]
    for (user, item) in train { itemPositives[item, default: 0] += 1; userPositives[user, default: 0] += 1 }
    self.itemPositives = itemPositives
    itemBands = Self.bands(itemPositives, keys: items)
    userBands = Self.bands(userPositives, keys: test.keys.sorted())
  }

  /// Training positives per item and per user (absent: none).
  public let itemPositives: [Int64: Int]
  /// Every item's popularity band and every test user's activity band (`bands`).
  public let itemBands: [Int64: PopularityBand]
  public let userBands: [Int64: PopularityBand]

  /// Head, torso and tail: with keys sorted by count, most first (ties: the smaller key first),
  /// a key is head while the keys before it hold less than a third of all counts, torso while
  /// they hold less than two thirds, tail after (keys without a count are tail).
  public static func bands(_ counts: [Int64: Int], keys: [Int64]) -> [Int64: PopularityBand] {
    let order = keys.sorted { (counts[$0] ?? 0, -$0) > (counts[$1] ?? 0, -$1) }
    let total = order.reduce(0) { $0 + (counts[$1] ?? 0) }
    var before = 0
    var result: [Int64: PopularityBand] = [:]
    for key in order {
      let c = counts[key] ?? 0
      result[key] = c == 0 ? .tail : before * 3 < total ? .head : before * 3 < 2 * total ? .torso : .tail
      before += c
    }
    return result
  }

  /// HR@10 and NDCG@10 over every test user and per band (`scores`: one row per user of
  /// `evaluatedUsers`, the test item's score first).
  public func evaluation(users evaluatedUsers: [Int64], scores: [[Double]]) -> NCFEvaluation {
    var all = NCFEvaluation.Accumulator(), byItem: [PopularityBand: NCFEvaluation.Accumulator] = [:]
    var byUser: [PopularityBand: NCFEvaluation.Accumulator] = [:]
    for (user, row) in zip(evaluatedUsers, scores) {
      let rank = Self.rank(of: row)
      all.add(rank)
      byItem[itemBands[test[user]!] ?? .tail, default: .init()].add(rank)
      byUser[userBands[user] ?? .tail, default: .init()].add(rank)
    }
    return NCFEvaluation(overall: all.metrics, itemBands: byItem.mapValues(\.metrics), userBands: byUser.mapValues(\.metrics))
  }

  /// How many candidates score strictly higher than the test item (the first; ties favour it).
  static func rank(of row: [Double]) -> Int { row.dropFirst().filter { $0 > row[0] }.count }

  /// The fewest unrated items any user has: evaluation can sample that many distinct candidates.
  public var fewestUnratedItems: Int { users.map { items.count - (rated[$0]?.count ?? 0) }.min() ?? 0 }

  /// Rejection draws before `negative` scans for an unrated item instead (users who rated most items).
  static let negativeDrawAttempts: UInt64 = 64

  /// An item the user has not rated, drawn uniformly (deterministic in seed, user and draw). At most
  /// `negativeDrawAttempts` rejection draws, then the first unrated item from the last draw on, so
  /// it always ends (`init` made sure every user has an unrated item).
  func negative(for user: Int64, seed: UInt64, draw: UInt64) -> Int64 {
    let ratedItems = rated[user] ?? []
    var k = 0
    for attempt in 0..<Self.negativeDrawAttempts {
      k = min(Int(SeededRandom.uniform(seed, UInt64(bitPattern: user) &* 1_000_003 &+ draw, attempt) * Double(items.count)), items.count - 1)
      if !ratedItems.contains(items[k]) { return items[k] }
    }
    for step in 1..<items.count where !ratedItems.contains(items[(k + step) % items.count]) { return items[(k + step) % items.count] }
    return items[k]
  }

  /// One epoch's training examples: every positive, then `negatives` sampled unrated items per
  /// positive (label 0), as (users, items, labels).
  public func epoch(_ epoch: Int, negatives: Int, seed: UInt64) -> (users: [Int64], items: [Int64], labels: [Double]) {
    var u: [Int64] = [], i: [Int64] = [], y: [Double] = []
    for (k, p) in train.enumerated() {
      u.append(p.user); i.append(p.item); y.append(1)
      for n in 0..<negatives {
        u.append(p.user)
        i.append(negative(for: p.user, seed: seed &+ UInt64(epoch) &* 7_919, draw: UInt64(k * negatives + n)))
        y.append(0)
      }
    }
    return (u, i, y)
  }

  /// Each user's evaluation candidates: the test item first, then `count` sampled unrated items.
  public func candidates(count: Int, seed: UInt64) -> [(user: Int64, items: [Int64])] {
    users.map { user in (user, [test[user]!] + (0..<count).map { negative(for: user, seed: seed, draw: UInt64($0)) }) }
  }

  /// HR@k and NDCG@k of scores (one row per user, the test item's score first).
  public static func hitRateAndNDCG(scores: [[Double]], k: Int = 10) -> (hr: Double, ndcg: Double) {
    var hits = 0.0, gain = 0.0
    for row in scores {
      let rank = Self.rank(of: row)
      if rank < k { hits += 1; gain += 1 / log2(Double(rank) + 2) }
    }
    return (hits / Double(scores.count), gain / Double(scores.count))
  }
}

/// A test case's band: by its item's popularity (head items are the most popular) or its
/// user's activity (head users the most active).
public enum PopularityBand: String, CaseIterable, Sendable, Comparable {
  case head, torso, tail
  public static func < (a: Self, b: Self) -> Bool { allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)! }
}

/// HR@10 and NDCG@10 over every test user, and over the users of each band.
public struct NCFEvaluation: Sendable, Equatable {
  public struct Metrics: Sendable, Equatable {
    public var hr: Double
    public var ndcg: Double
    public var users: Int
  }
  public var overall: Metrics
  public var itemBands: [PopularityBand: Metrics]
  public var userBands: [PopularityBand: Metrics]

  struct Accumulator {
    var hits = 0.0, gain = 0.0, users = 0
    mutating func add(_ rank: Int) {
      users += 1
      if rank < 10 { hits += 1; gain += 1 / log2(Double(rank) + 2) }
    }
    var metrics: Metrics { Metrics(hr: users == 0 ? 0 : hits / Double(users), ndcg: users == 0 ? 0 : gain / Double(users), users: users) }
  }
}

/// NCF trained and evaluated under the protocol: dense parameters with `optimizer`, tables with
/// `sparse`, `epochs` epochs of positives plus sampled negatives, then HR@10 and NDCG@10.
public enum NCFExperiment {
  public struct Result: Sendable {
    public var hr: Double
    public var ndcg: Double
    public var finalLoss: Double
    public var seconds: Double
    /// The final evaluation, overall and per band.
    public var evaluation: NCFEvaluation
    /// With `evaluateEveryEpoch`: the evaluation after each epoch (the last is `evaluation`).
    public var epochs: [NCFEvaluation]
  }

  /// The model with every table initializer's seed moved by `seed`, so seeds vary the start too.
  public static func reseeded(_ module: Module, by seed: UInt64) -> Module {
    var m = module
    for k in m.tables.indices {
      guard var initializer = m.tables[k].initializer else { continue }
      if let i = initializer.arguments.firstIndex(where: { $0.label == "seed" }) {
        initializer.arguments[i].value += Double(seed) * 101
      } else {
        initializer.arguments.append(.init(label: "seed", value: Double(seed) * 101))
      }
      initializer.hasParentheses = true
      m.tables[k].initializer = initializer
    }
    return m
  }

  public static func run(module: Module, protocol p: NCFProtocol, optimizer: OptimizerConfig, sparse: SparseOptimizer,
                         epochs: Int, batch: Int, lr: Double, negatives: Int = 4, candidates: Int = 99, seed: UInt64,
                         evaluateEveryEpoch: Bool = false, progress: (String) -> Void = { _ in }) throws -> Result {
    let start = Date()
    let model = reseeded(module, by: seed)
    let trainer = try Trainer(module: model, loss: "loss", optimizer: optimizer, sparseOptimizer: sparse)
    var lastLoss = Double.nan
    // Evaluation: the test item among `candidates` sampled unrated items, per user (the same
    // candidates at every evaluation of the run).
    let lists = p.candidates(count: candidates, seed: seed &+ 999)
    var predict: Executable?
    func evaluate() throws -> NCFEvaluation {
      // A catch-up SparseAdam table holds rows behind the current step until they are touched.
      trainer.catchUpTables(lr: lr)
      let executable: Executable
      if let predict { try predict.updateParameters(trainer.params); executable = predict } else {
        executable = try Executable(module: model, function: "predict", params: trainer.params, tables: trainer.tables)
        predict = executable
      }
      var scores: [[Double]] = []
      scores.reserveCapacity(lists.count)
      for chunk in stride(from: 0, to: lists.count, by: 64) {
        let part = lists[chunk..<min(chunk + 64, lists.count)]
        let users = part.flatMap { entry in [Int64](repeating: entry.user, count: entry.items.count) }
        let items = part.flatMap(\.items)
        let s = try executable.run([Tensor(.i64, shape: [users.count], ints: users), Tensor(.i64, shape: [items.count], ints: items)])[0].doubles
        for k in 0..<part.count { scores.append(Array(s[(k * (candidates + 1))..<((k + 1) * (candidates + 1))])) }
      }
      return p.evaluation(users: lists.map(\.user), scores: scores)
    }
    var perEpoch: [NCFEvaluation] = []
    for epoch in 0..<epochs {
      let examples = p.epoch(epoch, negatives: negatives, seed: seed)
      var order = BatchOrder(count: examples.users.count, batch: batch, seed: seed &+ UInt64(epoch), shuffle: true)
      var losses: [Double] = []
      let steps = (examples.users.count + batch - 1) / batch
      for _ in 0..<steps {
        let rows = order.next()
        let u = Tensor(.i64, shape: [rows.count], ints: rows.map { examples.users[$0] })
        let i = Tensor(.i64, shape: [rows.count], ints: rows.map { examples.items[$0] })
        let y = Tensor(.f32, shape: [rows.count], floats: rows.map { examples.labels[$0] })
        losses.append(try trainer.step([u, i, y], lr: lr))
      }
      lastLoss = losses.suffix(50).reduce(0, +) / Double(min(50, losses.count))
      var line = String(format: "epoch %d: %d steps, loss %.4f", epoch + 1, steps, lastLoss)
      if evaluateEveryEpoch || epoch == epochs - 1 {
        let evaluation = try evaluate()
        perEpoch.append(evaluation)
        line += String(format: ", HR@10 %.4f, NDCG@10 %.4f", evaluation.overall.hr, evaluation.overall.ndcg)
      }
      progress(line)
    }
    let final = perEpoch.last!
    return Result(hr: final.overall.hr, ndcg: final.overall.ndcg, finalLoss: lastLoss, seconds: Date().timeIntervalSince(start),
                  evaluation: final, epochs: evaluateEveryEpoch ? perEpoch : [final])
  }
}
