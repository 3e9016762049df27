// `ttfc ncf` — the NCF experiment: NeuMF (built in, the text of examples/ncf.ttir, or --model) trained under the MLPerf
// NCF protocol on MovieLens ratings (a ratings.csv, or synthetic ones in that format) with each
// sparse optimizer for the embedding tables, over several seeds; prints HR@10 and NDCG@10.
import ArgumentParser
import Foundation
import TTEmbedding
import TTIR
import TTTrain

struct NCF: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "ncf",
    abstract: "Train NeuMF on MovieLens-format ratings (MLPerf NCF protocol) and report HR@10 and NDCG@10.",
    usage: "ttfc ncf [--ratings <file> | --synthetic <u,i,n>] [<options>]",
    discussion: helpText("""
      Ratings come from --ratings (MovieLens ratings.csv: userId,movieId,rating,timestamp, e.g.
      ml-1m or ml-20m converted) or --synthetic USERS,ITEMS,PER_USER (Zipfian popularity, latent
      tastes; --write-ratings saves them). Each rating is a positive; each user's latest one is its
      test item; training adds 4 sampled negatives per positive each epoch; evaluation ranks the
      test item among 99 sampled unrated items. Dense parameters use Adam; the tables use each of
      --optimizers (adam = dense semantics, lazyadam, sparseadam, adagrad, ftrl, sgd).
      Example: ttfc ncf --synthetic 2000,1000,40 --epochs 4 --seeds 1,2,3
      """))

  @Option(help: "A MovieLens ratings.csv.") var ratings: String?
  @Option(help: "Synthetic ratings USERS,ITEMS,PER_USER instead of --ratings.") var synthetic: String?
  @Option(help: "Write the (synthetic) ratings used to this CSV.") var writeRatings: String?
  @Option(help: "Write every run's HR@10, NDCG@10, loss and time to this JSON file (for `tools/plot ncf`).") var results: String?
  @Option(help: "The model (a @loss(%user, %item, %label) and @predict(%user, %item)); default: the built-in NeuMF, the text of examples/ncf.ttir.") var model: String?
  @Option(parsing: .unconditional, help: "Epochs per run (1 to 10^6).") var epochs = 4
  @Option(parsing: .unconditional, help: "Examples per batch (1 to 2^30).") var batch = 256
  @Option(parsing: .unconditional, help: "Learning rate, dense and tables, 0 to 3.4e38.") var lr = 2e-3
  @Option(help: "Table optimizers to compare, comma-separated.") var optimizers = "adam,lazyadam,sparseadam"
  @Option(help: "Seeds, comma-separated (data order, negatives, table initialization).") var seeds = "1,2,3"
  @Option(name: .customLong("candidates"), parsing: .unconditional, help: "Candidates per user at evaluation besides the test item, 1 to 10^6 (default: 99, the MLPerf protocol, or fewer when some user has fewer unrated items).") var candidatesOption: Int?

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
    if let ratings {
      do { data = try MovieLens.read(ratings) } catch { throw fail("\(error)") }
    } else {
      let text = synthetic ?? "2000,1000,40"
      let parts = text.split(separator: ",", omittingEmptySubsequences: false).map { Int($0.trimmingCharacters(in: .whitespaces)) ?? Double($0).flatMap { $0 == $0.rounded() && abs($0) < 9e18 ? Int($0) : nil } }
      guard parts.count == 3, let users = parts[0], let items = parts[1], let perUser = parts[2], users > 0, items > 0, perUser > 0 else {
        throw fail("--synthetic takes USERS,ITEMS,PER_USER, three positive integers, got '\(text)'")
      }
      guard users <= Self.maximumSyntheticEntities, items <= Self.maximumSyntheticEntities,
            users.multipliedReportingOverflow(by: min(perUser, items)).partialValue <= Self.maximumSyntheticRatings else {
        throw fail("--synthetic \(text) is too large: at most \(Self.maximumSyntheticEntities) users and items and \(Self.maximumSyntheticRatings) ratings")
      }
      data = MovieLens.synthetic(users: users, items: items, perUser: perUser, seed: 7)
    }
    if let writeRatings {
      do { try MovieLens.write(data, to: writeRatings) } catch { throw fail("\(error)") }
      print("ratings written to \(writeRatings)")
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
      guard let o = SparseOptimizer(name: name) else { throw fail("--optimizers: unknown table optimizer '\(name)' (adam, lazyadam, sparseadam, adagrad, ftrl, sgd)") }
      guard !kinds.contains(where: { $0.0 == name }) else { throw fail("--optimizers names '\(name)' twice") }
      kinds.append((name, o))
    }
    let seedTexts = seeds.split(separator: ",", omittingEmptySubsequences: false)
    let seedList = seedTexts.compactMap { UInt64($0.trimmingCharacters(in: .whitespaces)) }
    guard !seedList.isEmpty, seedList.count == seedTexts.count else { throw fail("--seeds takes comma-separated integers 0 to 2^64-1, got '\(seeds)'") }
    guard Set(seedList).count == seedList.count else { throw fail("--seeds names a seed twice ('\(seeds)'): the runs would repeat") }
    print("NCF: \(protocolData.users.count) users, \(protocolData.items.count) items, \(protocolData.train.count) training positives; \(epochs) epochs, batch \(batch), lr \(lr)")
    // Columns: optimizer (12), seed (6), HR@10 (8), NDCG@10 (9), loss (9), time; headers padded alike.
    func row(_ cells: [String], _ widths: [Int]) -> String {
      zip(cells, widths).map { cell, width in width == 0 ? cell : width < 0 ? cell.padding(toLength: max(-width, cell.count), withPad: " ", startingAt: 0)
        : String(repeating: " ", count: max(0, width - cell.count)) + cell }.joined(separator: "  ")
    }
    let widths = [-12, 4, 7, 7, 7, 8]
    print(row(["optimizer", "seed", "HR@10", "NDCG@10", "loss", "time"], widths))
    var summary: [(String, [Double], [Double])] = []
    var runs: [[String: Any]] = []
    for (name, sparse) in kinds {
      var hrs: [Double] = [], ndcgs: [Double] = []
      for seed in seedList {
        let result: NCFExperiment.Result
        do {
          result = try NCFExperiment.run(module: module, protocol: protocolData, optimizer: OptimizerConfig(.adam), sparse: sparse,
                                         epochs: epochs, batch: batch, lr: lr, candidates: candidates, seed: seed)
        } catch { throw fail("\(error)") }
        hrs.append(result.hr); ndcgs.append(result.ndcg)
        print(row([name, String(seed), String(format: "%.4f", result.hr), String(format: "%.4f", result.ndcg),
                   String(format: "%.4f", result.finalLoss), String(format: "%.1f s", result.seconds)], widths))
        runs.append(["optimizer": name, "seed": seed, "hr": result.hr, "ndcg": result.ndcg, "loss": result.finalLoss, "seconds": result.seconds])
        fflush(nil)
      }
      summary.append((name, hrs, ndcgs))
    }
    func meanAndSpread(_ x: [Double]) -> String {
      let mean = x.reduce(0, +) / Double(x.count)
      let sd = (x.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(max(1, x.count - 1))).squareRoot()
      return String(format: "%.4f ± %.4f", mean, sd)
    }
    let summaryWidths = [-12, -19, 0]
    print("\n" + row(["optimizer", "HR@10 (mean ± sd)", "NDCG@10 (mean ± sd)"], summaryWidths))
    for (name, hrs, ndcgs) in summary {
      print(row([name, meanAndSpread(hrs), meanAndSpread(ndcgs)], summaryWidths))
    }
    if let results {
      let object: [String: Any] = ["users": protocolData.users.count, "items": protocolData.items.count, "epochs": epochs,
                                   "batch": batch, "lr": lr, "candidates": candidates, "runs": runs]
      do {
        let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
        try data.write(to: URL(fileURLWithPath: results))
      } catch { throw fail("cannot write '\(results)': \(error.localizedDescription)") }
      print("results written to \(results)")
    }
  }
}
