// The embedding features from the command line: training NeuMF from a CSV of i64 ids with table
// statistics, eviction and a serving export (each SparseAdam variant by name); `ttfc ncf` on
// synthetic ratings written in the MovieLens formats and read back, with per-band and
// per-epoch results; named errors for bad arguments.
import Foundation
import Testing

struct EmbeddingCLITests {
  @Test func trainsNeuMFFromCSVIdsWithStatisticsAndExport() throws {
    let dir = try CLI.temporaryDirectory()
    var text = "user,item,label\n"
    for k in 0..<600 {
      let user = 1_000_000_007 + (k * 7) % 50, item = -5 + (k * 13) % 40
      text += "\(user),\(item),\((user + item) % 3 == 0 ? 1 : 0)\n"
    }
    try text.write(toFile: dir.appendingPathComponent("train.csv").path, atomically: true, encoding: .utf8)
    let export = dir.appendingPathComponent("tables").path
    let result = try CLI.run(["train", "examples/ncf.ttir", "--data", dir.appendingPathComponent("train.csv").path, "--batch", "64",
                              "--epochs", "2", "--sparse-optimizer", "lazyadam", "--table-ttl", "1000", "--stats",
                              "--export-tables", export, "--export-recent", "5"])
    #expect(result.status == 0, "\(result.stderr)")
    #expect(result.stderr.contains("table @user_gmf: 50 rows"), "\(result.stderr)")
    #expect(result.stderr.contains("table @item_gmf: 40 rows"))
    #expect(result.stdout.contains("table exported to \(export)/user_mlp.ttemb"))
    #expect(FileManager.default.fileExists(atPath: export + "/item_mlp.ttemb"))
    let bad = try CLI.run(["train", "examples/ncf.ttir", "--data", dir.appendingPathComponent("train.csv").path, "--sparse-optimizer", "rmsprop"])
    #expect(bad.status == 1 && bad.stderr.contains("unknown sparse optimizer 'rmsprop'"))
  }

  @Test func everySparseAdamVariantTrainsByNameWithEvaluation() throws {
    let dir = try CLI.temporaryDirectory()
    var text = "user,item,label\n"
    for k in 0..<300 { text += "\(k % 37),\((k * 11) % 23),\(k % 3 == 0 ? 1 : 0)\n" }
    let data = dir.appendingPathComponent("train.csv").path
    try text.write(toFile: data, atomically: true, encoding: .utf8)
    for name in ["sparseadam-published", "sparseadam-rowcount", "sparseadam-catchup", "sparse_adam_catchup"] {
      let result = try CLI.run(["train", "examples/ncf.ttir", "--data", data, "--eval-data", data, "--batch", "32", "--epochs", "2",
                                "--sparse-optimizer", name, "--eval-every", "5"])
      #expect(result.status == 0, "\(name): \(result.stderr)")
    }
    let bad = try CLI.run(["train", "examples/ncf.ttir", "--data", data, "--sparse-optimizer", "sparseadam-lazy"])
    #expect(bad.status == 1 && bad.stderr.contains("sparseadam-published, sparseadam-rowcount, sparseadam-catchup"), "\(bad.stderr)")
  }

  @Test func ncfReadsRatingsDatAndReportsBandsAndEpochs() throws {
    let dir = try CLI.temporaryDirectory()
    let dat = dir.appendingPathComponent("ratings.dat").path
    let written = try CLI.run(["ncf", "--synthetic", "ml1m:0.01", "--data-seed", "3", "--write-ratings", dat, "--write-only"])
    #expect(written.status == 0, "\(written.stderr)")
    #expect(written.stdout.contains("10002 ratings (ml1m:0.01, data seed 3) written to \(dat)"), "\(written.stdout)")
    let firstLine = try String(contentsOfFile: dat, encoding: .utf8).split(separator: "\n")[0]
    #expect(firstLine.split(separator: ":", omittingEmptySubsequences: false).count == 7, "UserID::MovieID::Rating::Timestamp: \(firstLine)")
    let results = dir.appendingPathComponent("results.json").path
    let run = try CLI.run(["ncf", "--ratings", dat, "--epochs", "2", "--eval-every-epoch", "--seeds", "1,2", "--candidates", "20",
                           "--optimizers", "sparseadam-published,sparseadam-catchup", "--results", results])
    #expect(run.status == 0, "\(run.stderr)")
    #expect(run.stdout.contains("NCF: 60 users"))
    #expect(run.stdout.contains("item popularity bands: head"), "\(run.stdout)")
    #expect(run.stdout.contains("sparseadam-catchup seed 2 epoch 2:"))
    let object = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: results))) as! [String: Any]
    let runs = object["runs"] as! [[String: Any]]
    #expect(runs.count == 4)
    for entry in runs {
      let epochs = entry["epochs"] as! [[String: Any]]
      #expect(epochs.count == 2 && (epochs[1]["hr"] as! Double) == (entry["hr"] as! Double))
      let bands = entry["bands"] as! [String: [String: Any]]
      #expect(Set(bands.keys) == ["head", "torso", "tail"])
      #expect(bands.values.reduce(0) { $0 + ($1["users"] as! Int) } == 60)
    }
    #expect((object["item_bands"] as? [String: Any])?.count == 3)
    // The same ratings converted to ratings.csv read to the same results.
    let csv = dir.appendingPathComponent("ratings.csv").path
    #expect(try CLI.run(["ncf", "--ratings", dat, "--write-ratings", csv, "--write-only"]).status == 0)
    let again = try CLI.run(["ncf", "--ratings", csv, "--epochs", "2", "--eval-every-epoch", "--seeds", "1,2", "--candidates", "20",
                             "--optimizers", "sparseadam-published,sparseadam-catchup"])
    let summary = { (text: String) in text.split(separator: "\n").filter { $0.contains("±") } }
    #expect(summary(again.stdout) == summary(run.stdout) && !summary(run.stdout).isEmpty)
    // Named errors.
    let noFile = try CLI.run(["ncf", "--synthetic", "ml1m:0.01", "--write-only"])
    #expect(noFile.status == 1 && noFile.stderr.contains("--write-only needs --write-ratings"))
    for shape in ["ml2m", "ml1m:0", "ml1m:x", "sparse:2"] {
      let bad = try CLI.run(["ncf", "--synthetic", shape])
      #expect(bad.status == 1 && bad.stderr.contains("--synthetic takes ml1m, sparse"), "\(shape): \(bad.stderr)")
    }
    let garbage = dir.appendingPathComponent("garbage.dat").path
    try "1::2::3::4\n1;2;3;4\n".write(toFile: garbage, atomically: true, encoding: .utf8)
    let malformed = try CLI.run(["ncf", "--ratings", garbage])
    #expect(malformed.status == 1 && malformed.stderr.contains("garbage.dat:2: the fields are not separated by '::'"), "\(malformed.stderr)")
  }

  @Test func ncfRunsOnSyntheticRatingsAndReadsThemBack() throws {
    let dir = try CLI.temporaryDirectory()
    let ratings = dir.appendingPathComponent("ratings.csv").path
    let first = try CLI.run(["ncf", "--synthetic", "120,80,8", "--epochs", "1", "--seeds", "1", "--optimizers", "sparseadam",
                             "--write-ratings", ratings, "--candidates", "20"])
    #expect(first.status == 0, "\(first.stderr)")
    #expect(first.stdout.contains("NCF: 120 users"))
    #expect(try String(contentsOfFile: ratings, encoding: .utf8).hasPrefix("userId,movieId,rating,timestamp\n"))
    let line = first.stdout.split(separator: "\n").first { $0.hasPrefix("sparseadam ") && $0.contains("±") }
    #expect(line != nil, "\(first.stdout)")
    let again = try CLI.run(["ncf", "--ratings", ratings, "--epochs", "1", "--seeds", "1", "--optimizers", "sparseadam", "--candidates", "20"])
    #expect(again.status == 0)
    #expect(again.stdout.split(separator: "\n").first { $0.hasPrefix("sparseadam ") && $0.contains("±") } == line,
            "the same ratings from the file give the same result")
    let missing = try CLI.run(["ncf", "--ratings", dir.appendingPathComponent("none.csv").path])
    #expect(missing.status == 1 && missing.stderr.contains("cannot read ratings file"))
    let badOptimizer = try CLI.run(["ncf", "--synthetic", "10,10,3", "--optimizers", "adamax"])
    #expect(badOptimizer.status == 1 && badOptimizer.stderr.contains("unknown table optimizer 'adamax'"))
    let badSynthetic = try CLI.run(["ncf", "--synthetic", "10,10"])
    #expect(badSynthetic.status == 1 && badSynthetic.stderr.contains("USERS,ITEMS,PER_USER"))
  }
}

struct CSVIdTests {
  @Test func largeIdsStayExactAndFractionalIdsAreRefused() throws {
    let dir = try CLI.temporaryDirectory()
    // 2^60 + 1 and 2^60 + 3 differ only below double precision: as doubles they would be one id.
    var text = "user,item,label\n"
    for k in 0..<64 { text += "\(k % 2 == 0 ? 1_152_921_504_606_846_977 : 1_152_921_504_606_846_979),\(k % 5),\(k % 2)\n" }
    try text.write(toFile: dir.appendingPathComponent("big.csv").path, atomically: true, encoding: .utf8)
    let result = try CLI.run(["train", "examples/ncf.ttir", "--data", dir.appendingPathComponent("big.csv").path, "--batch", "32",
                              "--steps", "2", "--stats"])
    #expect(result.status == 0, "\(result.stderr)")
    #expect(result.stderr.contains("table @user_gmf: 2 rows"), "two distinct ids, two rows: \(result.stderr)")
    try "user,item,label\n1.5,2,1\n".write(toFile: dir.appendingPathComponent("frac.csv").path, atomically: true, encoding: .utf8)
    let fractional = try CLI.run(["train", "examples/ncf.ttir", "--data", dir.appendingPathComponent("frac.csv").path])
    #expect(fractional.status == 1 && fractional.stderr.contains("not an exact integer"), "\(fractional.stderr)")
  }
}
