// `ttfc ncf` — the NCF experiment: NeuMF (built in, the text of examples/ncf.ttir, or --model) trained under the MLPerf
// NCF protocol on MovieLens ratings (ml-1m's ratings.dat, ml-20m's ratings.csv, or synthetic
// ones in that format) with each sparse optimizer for the embedding tables, over several seeds;
// prints HR@10 and NDCG@10, overall and per popularity band of the test items.
import ArgumentParser
import Foundation
import TTEmbedding
import TTIR
import TTTrain

struct NCF: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "ncf",
    abstract: "Train NeuMF on MovieLens-format ratings (MLPerf NCF protocol) and report HR@10 and NDCG@10.",
    usage: "ttfc ncf [--ratings <file> | --synthetic <shape>] [<options>]",
    discussion: helpText("""
      Ratings come from --ratings (ml-1m's ratings.dat, UserID::MovieID::Rating::Timestamp, or a
      ratings.csv with the header userId,movieId,rating,timestamp as in ml-20m and ml-25m) or
      --synthetic: ml1m (ml-1m's size, long-tailed activity and popularity), sparse (12,000
      users, 30,000 items, most rated a few times), either scaled down as NAME:F (ml1m:0.05),
      or USERS,ITEMS,PER_USER (every user alike);
      --data-seed varies them, --write-ratings saves them (.dat: ratings.dat format), and
      --write-only stops there. Each rating is a positive; each user's latest one is its test
      item; training adds 4 sampled negatives per positive each epoch; evaluation ranks the test
      item among 99 sampled unrated items (--candidates 999 for MLPerf's quality target, HR@10
      0.635 on ml-20m), overall and per band of the test item's popularity
      (head, torso, tail: the items holding the first, second and last third of the training
      positives) and of the user's activity. Dense parameters use Adam; the tables use each of
      --optimizers (adam = dense semantics, lazyadam, sparseadam-published, sparseadam-rowcount,
      sparseadam-catchup, sparseadam = \(SparseOptimizer.defaultSparseAdam.name), adagrad, ftrl, sgd).
      Examples: ttfc ncf --synthetic 2000,1000,40 --epochs 4 --seeds 1,2,3
                ttfc ncf --ratings ml-1m/ratings.dat --epochs 20 --optimizers lazyadam
      """))

  @Option(help: "A MovieLens ratings file: ml-1m's ratings.dat or a ratings.csv (ml-20m, ml-25m).") var ratings: String?
  @Option(help: "Synthetic ratings instead of --ratings: ml1m, sparse, NAME:F (scaled by F), or USERS,ITEMS,PER_USER.") var synthetic: String?
  @Option(parsing: .unconditional, help: "Seed of the synthetic ratings (0 to 2^64-1).") var dataSeed: UInt64 = 7
  @Option(help: "Write the ratings used to this file (ratings.csv format; ratings.dat format if it ends in .dat).") var writeRatings: String?
  @Flag(help: "With --write-ratings: write the ratings and stop (no training).") var writeOnly = false
  @Option(help: "Write every run's HR@10, NDCG@10 (overall, per band, per epoch with --eval-every-epoch), loss and time to this JSON file (for `tools/plot ncf`).") var results: String?
  @Option(help: "The model (a @loss(%user, %item, %label) and @predict(%user, %item)); default: the built-in NeuMF, the text of examples/ncf.ttir.") var model: String?
  @Option(parsing: .unconditional, help: "Epochs per run (1 to 10^6).") var epochs = 4
  @Flag(help: "Evaluate after every epoch, not only at the end (the results file keeps each).") var evalEveryEpoch = false
  @Option(parsing: .unconditional, help: "Examples per batch (1 to 2^30).") var batch = 256
  @Option(parsing: .unconditional, help: "Learning rate, dense and tables, 0 to 3.4e38.") var lr = 2e-3
  @Option(help: "Table optimizers to compare, comma-separated.") var optimizers = "adam,lazyadam,sparseadam"
  @Option(help: "Seeds, comma-separated (data order, negatives, table initialization).") var seeds = "1,2,3"
  @Option(name: .customLong("candidates"), parsing: .unconditional, help: "Candidates per user at evaluation besides the test item, 1 to 10^6 (default: 99 as in the NCF paper, or fewer when some user has fewer unrated items; MLPerf's quality target ranks among 999).") var candidatesOption: Int?

  /// Limits of --synthetic: users and items each, and ratings in all.
  static let maximumSyntheticEntities = 10_000_000
  static let maximumSyntheticRatings = 100_000_000

  func run() throws {
    guard (1...1_000_000).contains(epochs) else { throw fail("--epochs must be 1 to 1000000, got \(epochs)") }
    guard (1...TrainingOptions.maximumBatch).contains(batch) else { throw fail("--batch must be 1 to \(TrainingOptions.maximumBatch), got \(batch)") }
    guard lr.isFinite, lr >= 0, lr <= Double(Float.greatestFiniteMagnitude) else { throw fail("--lr must be a number from 0 to 3.4e38, got \(lr)") }
    if let results, !FileManager.default.createFile(atPath: results, contents: nil) {
      throw fail("--results: cannot write '\(results)' (does its directory exist?)")
    }
    if let candidatesOption, !(1...1_000_000).contains(candidatesOption) { throw fail("--candidates must be 1 to 1000000, got \(candidatesOption)") }
    let module = try (model.map { try SourceFile.read($0) } ?? SourceFile(path: "<built-in ncf.ttir>", text: BuiltinModels.ncf)).module()
    var data: [Rating]
    if ratings != nil && synthetic != nil { throw fail("--ratings and --synthetic: give one source of ratings") }
    if writeOnly && writeRatings == nil { throw fail("--write-only needs --write-ratings FILE") }
    if let ratings {
      do { data = try MovieLens.read(ratings) } catch { throw fail("\(error)") }
    } else if let synthetic, synthetic.first?.isLetter == true {
      guard let shape = SyntheticShape.parse(synthetic) else {
        throw fail("--synthetic takes ml1m, sparse (optionally scaled, e.g. ml1m:0.05) or USERS,ITEMS,PER_USER, got '\(synthetic)'")
      }
      if let problem = shape.problem { throw fail("--synthetic \(synthetic): \(problem)") }
      if writeOnly, let writeRatings {
        // Streamed to the file as generated: nothing else is kept.
        do {
          let count = try MovieLens.writeSynthetic(shape, seed: dataSeed, to: writeRatings)
          print("\(count) ratings (\(shape.name), data seed \(dataSeed)) written to \(writeRatings)")
        } catch { throw fail("\(error)") }
        return
      }
      data = SyntheticRatings.ratings(shape, seed: dataSeed)
    } else {
      let text = synthetic ?? "2000,1000,40"
      let parts = text.split(separator: ",", omittingEmptySubsequences: false).map { Int($0.trimmingCharacters(in: .whitespaces)) ?? Double($0).flatMap { $0 == $0.rounded() && abs($0) < 9e18 ? Int($0) : nil } }
      guard parts.count == 3, let users = parts[0], let items = parts[1], let perUser = parts[2], users > 0, items > 0, perUser > 0 else {
        throw fail("--synthetic takes ml1m, sparse or USERS,ITEMS,PER_USER (three positive integers), got '\(text)'")
      }
      guard users <= Self.maximumSyntheticEntities, items <= Self.maximumSyntheticEntities,
            users.multipliedReportingOverflow(by: min(perUser, items)).partialValue <= Self.maximumSyntheticRatings else {
        throw fail("--synthetic \(text) is too large: at most \(Self.maximumSyntheticEntities) users and items and \(Self.maximumSyntheticRatings) ratings")
      }
      data = MovieLens.synthetic(users: users, items: items, perUser: perUser, seed: dataSeed)
    }
    if let writeRatings {
      do { try MovieLens.write(data, to: writeRatings) } catch { throw fail("\(error)") }
      print("ratings written to \(writeRatings)")
      if writeOnly { return }
    }
    let protocolData: NCFProtocol
    do { protocolData = try NCFProtocol(data) } catch { throw fail("\(error)") }
    // Candidates are distinct unrated items: more than a user has would repeat items and deflate
    // HR@10 without a word.
    let fewest = protocolData.fewestUnratedItems
    let candidates: Int
    if let candidatesOption {
      guard candidatesOption <= fewest else {
        throw fail("--candidates \(candidatesOption): some user has only \(fewest) unrated items to rank the test item against; use at most that many")
      }
      candidates = candidatesOption
    } else {
      candidates = min(99, fewest)
      if candidates < 99 { print("note: evaluating against \(candidates) candidates per user, not 99 (some user has only \(fewest) unrated items)") }
    }
    var kinds: [(String, SparseOptimizer)] = []
    for name in optimizers.split(separator: ",", omittingEmptySubsequences: false).map(String.init) {
      guard let o = SparseOptimizer(name: name) else {
        throw fail("--optimizers: unknown table optimizer '\(name)' (\(SparseOptimizer.names.joined(separator: ", ")))")
      }
      guard !kinds.contains(where: { $0.0 == name }) else { throw fail("--optimizers names '\(name)' twice") }
      kinds.append((name, o))
    }
    let seedTexts = seeds.split(separator: ",", omittingEmptySubsequences: false)
    let seedList = seedTexts.compactMap { UInt64($0.trimmingCharacters(in: .whitespaces)) }
    guard !seedList.isEmpty, seedList.count == seedTexts.count else { throw fail("--seeds takes comma-separated integers 0 to 2^64-1, got '\(seeds)'") }
    guard Set(seedList).count == seedList.count else { throw fail("--seeds names a seed twice ('\(seeds)'): the runs would repeat") }
    print("NCF: \(protocolData.users.count) users, \(protocolData.items.count) items, \(protocolData.train.count) training positives; \(epochs) epochs, batch \(batch), lr \(lr)")
    // The popularity bands of the test items (what the per-band columns mean).
    var bandSummary: [String: [String: Int]] = [:]
    var bandText: [String] = []
    for band in PopularityBand.allCases {
      let items = protocolData.items.filter { protocolData.itemBands[$0] == band }
      let counts = items.map { protocolData.itemPositives[$0] ?? 0 }
      let testUsers = protocolData.users.filter { protocolData.itemBands[protocolData.test[$0]!] == band }.count
      bandSummary[band.rawValue] = ["items": items.count, "positives": counts.reduce(0, +), "test_users": testUsers,
                                    "least_positives": counts.min() ?? 0, "most_positives": counts.max() ?? 0]
      bandText.append("\(band.rawValue) \(items.count) items (\(counts.min() ?? 0)-\(counts.max() ?? 0) positives), \(testUsers) test users")
    }
    print("item popularity bands: " + bandText.joined(separator: "; "))
    // Columns: optimizer, seed, HR@10, NDCG@10, HR@10 per item band, loss, time.
    func row(_ cells: [String], _ widths: [Int]) -> String {
      zip(cells, widths).map { cell, width in width == 0 ? cell : width < 0 ? cell.padding(toLength: max(-width, cell.count), withPad: " ", startingAt: 0)
        : String(repeating: " ", count: max(0, width - cell.count)) + cell }.joined(separator: "  ")
    }
    let nameWidth = -max(12, kinds.map(\.0.count).max() ?? 0)
    let widths = [nameWidth, 4, 7, 7, 7, 7, 7, 7, 8]
    print(row(["optimizer", "seed", "HR@10", "NDCG@10", "head", "torso", "tail", "loss", "time"], widths))
    var summary: [(name: String, runs: [NCFExperiment.Result])] = []
    var runs: [[String: Any]] = []
    func json(_ m: NCFEvaluation.Metrics) -> [String: Any] { ["hr": m.hr, "ndcg": m.ndcg, "users": m.users] }
    func json(_ bands: [PopularityBand: NCFEvaluation.Metrics]) -> [String: Any] {
      Dictionary(uniqueKeysWithValues: bands.map { ($0.key.rawValue, json($0.value) as Any) })
    }
    for (name, sparse) in kinds {
      var seedResults: [NCFExperiment.Result] = []
      for seed in seedList {
        let result: NCFExperiment.Result
        do {
          result = try NCFExperiment.run(module: module, protocol: protocolData, optimizer: OptimizerConfig(.adam), sparse: sparse,
                                         epochs: epochs, batch: batch, lr: lr, candidates: candidates, seed: seed,
                                         evaluateEveryEpoch: evalEveryEpoch,
                                         progress: { line in if evalEveryEpoch { print("  \(name) seed \(seed) \(line)"); fflush(nil) } })
        } catch { throw fail("\(error)") }
        seedResults.append(result)
        let bandHR = PopularityBand.allCases.map { String(format: "%.4f", result.evaluation.itemBands[$0]?.hr ?? .nan) }
        print(row([name, String(seed), String(format: "%.4f", result.hr), String(format: "%.4f", result.ndcg)] + bandHR
                  + [String(format: "%.4f", result.finalLoss), String(format: "%.1f s", result.seconds)], widths))
        var entry: [String: Any] = ["optimizer": name, "definition": sparse.name, "seed": seed, "hr": result.hr, "ndcg": result.ndcg,
                                    "loss": result.finalLoss, "seconds": result.seconds, "bands": json(result.evaluation.itemBands),
                                    "user_bands": json(result.evaluation.userBands)]
        if evalEveryEpoch {
          entry["epochs"] = result.epochs.enumerated().map { k, e in
            ["epoch": k + 1, "hr": e.overall.hr, "ndcg": e.overall.ndcg, "bands": json(e.itemBands), "user_bands": json(e.userBands)] as [String: Any]
          }
        }
        runs.append(entry)
        fflush(nil)
      }
      summary.append((name, seedResults))
    }
    func meanAndSpread(_ x: [Double]) -> String {
      let mean = x.reduce(0, +) / Double(x.count)
      let sd = (x.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(max(1, x.count - 1))).squareRoot()
      return String(format: "%.4f ± %.4f", mean, sd)
    }
    let summaryWidths = [nameWidth, -19, -19, -19, -19, 0]
    print("\n" + row(["optimizer", "HR@10 (mean ± sd)", "NDCG@10 (mean ± sd)", "HR@10 head", "HR@10 torso", "HR@10 tail"], summaryWidths))
    for (name, results) in summary {
      let bands = PopularityBand.allCases.map { band in meanAndSpread(results.map { $0.evaluation.itemBands[band]?.hr ?? .nan }) }
      print(row([name, meanAndSpread(results.map(\.hr)), meanAndSpread(results.map(\.ndcg))] + bands, summaryWidths))
    }
    if let results {
      let source: [String: Any] = ratings.map { ["ratings": $0] } ?? ["synthetic": synthetic ?? "2000,1000,40", "data_seed": dataSeed]
      let object: [String: Any] = ["users": protocolData.users.count, "items": protocolData.items.count, "epochs": epochs,
                                   "batch": batch, "lr": lr, "candidates": candidates, "runs": runs, "data": source,
                                   "positives": protocolData.train.count, "item_bands": bandSummary]
      do {
        let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
        try data.write(to: URL(fileURLWithPath: results))
      } catch { throw fail("cannot write '\(results)': \(error.localizedDescription)") }
      print("results written to \(results)")
    }
  }
}
