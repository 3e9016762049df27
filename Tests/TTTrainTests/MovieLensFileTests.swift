// MovieLens files and synthetic sets: ml-1m's ratings.dat and ml-20m's ratings.csv read the same
// ratings; bad input (CRLF is fine; other separators, missing and extra fields, numbers that do
// not parse, ids past 2^63-1, empty files, binary noise, seeded mutations) is a named error with
// the file and line, never a crash; the writer round-trips both formats; the long-tailed
// generator is deterministic in its seed, exact in its totals, streams what it would return,
// and has the long tails it promises; popularity bands and per-band metrics follow their
// definitions.
import Foundation
import Testing
@testable import TTTrain

/// A linear congruential generator for seeded test inputs.
struct Lcg {
  var state: UInt64
  mutating func next() -> Int {
    state = state &* 6364136223846793005 &+ 1442695040888963407
    return Int(state >> 33)
  }
}

struct MovieLensFileTests {
  static func file(_ name: String, _ text: String) throws -> String {
    let path = DataFaultTests.temporaryPath(name)
    try text.write(toFile: path, atomically: true, encoding: .utf8)
    return path
  }

  static func error(_ path: String) -> String? {
    do { _ = try MovieLens.read(path); return nil } catch { return "\(error)" }
  }

  @Test func ml1mDatAndMl20mCsvReadTheSameRatings() throws {
    let dat = try Self.file("ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\r\n\n2::1357::4.5::978298709\n")
    let csv = try Self.file("ratings.csv", "userId,movieId,rating,timestamp\n1,1193,5.0,978300760\n1,661,3.0,978302109\n2,1357,4.5,978298709\n\n")
    let want = [Rating(user: 1, item: 1193, rating: 5, timestamp: 978300760), Rating(user: 1, item: 661, rating: 3, timestamp: 978302109),
                Rating(user: 2, item: 1357, rating: 4.5, timestamp: 978298709)]
    #expect(try MovieLens.read(dat) == want)
    #expect(try MovieLens.read(csv) == want)
    // A byte order mark, spaces around fields and extra columns after the four are accepted.
    let extra = try Self.file("extra.csv", "\u{FEFF}userId,movieId,rating,timestamp,tag\r\n 1 , 1193 ,5, 978300760 ,x\r\n")
    #expect(try MovieLens.read(extra) == [want[0]])
    // Ids up to 2^63-1 and negative timestamps read exactly.
    let big = try Self.file("big.dat", "9223372036854775807::0::1::-5\n")
    #expect(try MovieLens.read(big) == [Rating(user: Int64.max, item: 0, rating: 1, timestamp: -5)])
  }

  @Test(arguments: [
    ("", "the file is empty"),
    ("\n  \r\n\n", "the file is empty"),
    ("userId,movieId,rating,timestamp\n", "no ratings after the header"),
    ("userId,movieId,rating,timestamp\r\n\r\n", "no ratings after the header"),
    ("user,item,rating\n1,2,3\n", ":1: expected MovieLens ratings"),
    ("1\t2\t3\t4\n", ":1: expected MovieLens ratings"),
    ("1;2;3;4\n", ":1: expected MovieLens ratings"),
    ("1,2,3,4\n", ":1: expected MovieLens ratings"),
    ("UserID::MovieID::Rating::Timestamp\n1::2::3::4\n", ":1: userId 'UserID' is not an id"),
    ("userId,movieId,rating,timestamp\n1,2,3,4\n1\t2\t3\t4\n", ":3: the fields are not separated by commas"),
    ("userId,movieId,rating,timestamp\n1::2::3::4\n", ":2: the fields are not separated by commas"),
    ("1::2::3::4\n1,2,3,4\n", ":2: the fields are not separated by '::'"),
    ("1::2::3::4\n1::2::3\n", ":2: expected 4 fields (UserID::MovieID::Rating::Timestamp), got 3"),
    ("1::2::3::4::5\n", ":1: expected 4 fields"),
    ("userId,movieId,rating,timestamp\n1,2,3\n", ":2: expected 4 fields (userId,movieId,rating,timestamp), got 3"),
    ("userId,movieId,rating,timestamp\n1,2,3,4,5\n", ":2: expected 4 fields"),
    ("userId,movieId,rating,timestamp\n99999999999999999999,2,3,4\n", ":2: userId 99999999999999999999 is out of range"),
    ("1::9223372036854775808::3::4\n", ":1: movieId 9223372036854775808 is out of range"),
    ("1::-2::3::4\n", ":1: movieId '-2' is not an id"),
    ("1::2.5::3::4\n", ":1: movieId '2.5' is not an id"),
    ("::2::3::4\n", ":1: userId '' is not an id"),
    ("1::2::x::4\n", ":1: the rating 'x' is not a finite number"),
    ("1::2::nan::4\n", ":1: the rating 'nan' is not a finite number"),
    ("1::2::1e999::4\n", ":1: the rating '1e999' is not a finite number"),
    ("1::2::3::4.5\n", ":1: the timestamp '4.5' is not an integer"),
    ("1::2::3::99999999999999999999\n", ":1: the timestamp '99999999999999999999' is not an integer"),
    ("1::2::3::\n", ":1: the timestamp '' is not an integer"),
  ])
  func badInputIsANamedErrorWithItsLine(_ text: String, _ expected: String) throws {
    let path = try Self.file("bad.ratings", text)
    let message = Self.error(path)
    #expect(message?.contains(expected) == true, "\(text.debugDescription): \(message ?? "no error")")
    #expect(message?.hasPrefix(path) == true || message?.contains(path) == true, "the error names the file: \(message ?? "")")
  }

  @Test func unreadablePathsAreNamedErrors() throws {
    #expect(Self.error("/nonexistent/ratings.dat")?.contains("no such file") == true)
    let directory = DataFaultTests.temporaryPath("dir")
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    #expect(Self.error(directory)?.contains("is a directory") == true)
    // Binary noise shows escaped in the message.
    let noise = DataFaultTests.temporaryPath("noise.dat")
    try Data([0x00, 0xFF, 0x3A, 0x3A, 0x01, 0x0A]).write(to: URL(fileURLWithPath: noise))
    let message = Self.error(noise)
    #expect(message?.contains("\\x0") == true && message?.contains(":1:") == true, "\(message ?? "")")
  }

  /// Seeded mutations of valid files of both formats (bytes flipped, deleted, duplicated,
  /// separators swapped, cut short): every read gives ratings or a DataError naming the file.
  @Test func mutatedRatingsFilesReadOrFailByName() throws {
    let base = ["1::1193::5::978300760\n1::661::3::978302109\n2::1357::4::978298709\n",
                "userId,movieId,rating,timestamp\r\n1,1193,5.0,978300760\r\n1,661,3.5,978302109\r\n"]
    var generator = Lcg(state: 0x5EED)
    func next() -> Int { generator.next() }
    let path = DataFaultTests.temporaryPath("mutated.ratings")
    for round in 0..<400 {
      var bytes = Array(base[round % 2].utf8)
      for _ in 0..<(1 + next() % 4) {
        let at = next() % bytes.count
        switch next() % 6 {
        case 0: bytes[at] = UInt8(truncatingIfNeeded: next())
        case 1: bytes.remove(at: at)
        case 2: bytes.insert(bytes[at], at: at)
        case 3: bytes[at] = [0x3A, 0x2C, 0x09, 0x0D, 0x0A, 0x2D][next() % 6]
        case 4: bytes = Array(bytes.prefix(at))
        default: bytes.insert(contentsOf: Array("99999999999999999999".utf8), at: at)
        }
        if bytes.isEmpty { break }
      }
      try Data(bytes).write(to: URL(fileURLWithPath: path))
      do { _ = try MovieLens.read(path) } catch {
        #expect("\(error)".contains(path), "round \(round): \(error)")
      }
    }
  }

  @Test func theWriterRoundTripsBothFormatsAndFailsByName() throws {
    let ratings = [Rating(user: 3, item: 9, rating: 4, timestamp: 100), Rating(user: 3, item: 2, rating: 3.5, timestamp: -1),
                   Rating(user: Int64.max, item: 0, rating: 0.5, timestamp: 7)]
    for name in ["out.csv", "out.dat"] {
      let path = DataFaultTests.temporaryPath(name)
      try MovieLens.write(ratings, to: path)
      #expect(try MovieLens.read(path) == ratings)
      #expect(!FileManager.default.fileExists(atPath: path + ".partial"))
    }
    let dat = DataFaultTests.temporaryPath("x.dat")
    try MovieLens.write(ratings, to: dat)
    let text = try String(contentsOfFile: dat, encoding: .utf8)
    #expect(text.hasPrefix("3::9::4.0::100\n3::2::3.5::-1\n"))
    #expect { try MovieLens.write(ratings, to: "/nonexistent-directory/ratings.csv") } throws: {
      "\($0)".contains("cannot write ratings to '/nonexistent-directory/ratings.csv'")
    }
  }
}

struct SyntheticRatingsTests {
  /// ml1m at a twentieth: 302 users, 829 items, 50,010 ratings.
  static let small = SyntheticShape.parse("ml1m:0.05")!

  @Test func namedShapesHaveTheirSizesAndParse() {
    #expect(SyntheticShape.ml1m.users == 6040 && SyntheticShape.ml1m.items == 3706 && SyntheticShape.ml1m.ratings == 1_000_209)
    for shape in SyntheticShape.named {
      #expect(shape.problem == nil)
      let counts = SyntheticRatings.activity(shape)
      #expect(counts.reduce(0, +) == shape.ratings, "\(shape.name)")
      #expect(counts.min()! >= shape.minimumPerUser && counts.max()! <= shape.maximumPerUser)
      // Long-tailed activity: the most active user rates many times the median user.
      #expect(counts[0] > 8 * counts.sorted()[counts.count / 2], "\(shape.name): \(counts[0]) vs median")
      #expect(SyntheticShape.parse(shape.name) == shape)
    }
    #expect(Self.small.users == 302 && Self.small.items == 829 && Self.small.ratings == 50_010)
    #expect(SyntheticShape.parse("ml1m:0") == nil && SyntheticShape.parse("ml1m:2") == nil && SyntheticShape.parse("ml2m") == nil)
    #expect(SyntheticShape.parse("ml1m:x") == nil && SyntheticShape.parse("ml1m:0.5:1") == nil)
    var bad = SyntheticShape.ml1m
    bad.ratings = 10
    #expect(bad.problem?.contains("do not fit") == true)
  }

  @Test func theGeneratorIsDeterministicExactAndStreamsWhatItReturns() throws {
    let ratings = SyntheticRatings.ratings(Self.small, seed: 7)
    #expect(ratings.count == Self.small.ratings)
    #expect(ratings == SyntheticRatings.ratings(Self.small, seed: 7))
    #expect(ratings != SyntheticRatings.ratings(Self.small, seed: 8))
    // Per user: the activity's count, distinct items in range, stars 1...5.
    let counts = SyntheticRatings.activity(Self.small)
    var byUser: [Int64: [Int64]] = [:]
    for r in ratings { byUser[r.user, default: []].append(r.item) }
    for (user, items) in byUser {
      #expect(items.count == counts[Int(user) - 1] && Set(items).count == items.count)
      #expect(items.allSatisfy { (1...Int64(Self.small.items)).contains($0) })
    }
    #expect(ratings.allSatisfy { (1...5).contains($0.rating) && $0.rating == $0.rating.rounded() })
    let path = DataFaultTests.temporaryPath("ml1m-small.dat")
    #expect(try MovieLens.writeSynthetic(Self.small, seed: 7, to: path) == ratings.count)
    #expect(try MovieLens.read(path) == ratings)
  }

  @Test func theSparseShapeHasALongTailOfRarelyRatedItems() throws {
    // A fifth of the sparse shape: 2,400 users, 13,416 items, 96,000 ratings.
    let shape = SyntheticShape.parse("sparse:0.2")!
    let ratings = SyntheticRatings.ratings(shape, seed: 3)
    var counts = [Int](repeating: 0, count: shape.items)
    for r in ratings { counts[Int(r.item) - 1] += 1 }
    let sorted = counts.sorted()
    #expect(sorted[sorted.count / 2] <= 6, "half the items are rated a few times at most (median \(sorted[sorted.count / 2]))")
    #expect(sorted.last! >= shape.users / 10, "and the head is rated by many users (\(sorted.last!))")
    #expect(sorted.last! <= shape.users)
    // Popularity drives the counts: the first hundred items are rated far more than the last.
    #expect(counts.prefix(100).reduce(0, +) > 20 * counts.suffix(100).reduce(0, +))
  }

  @Test func tasteShapesTheChoices() {
    // With taste, users rate items of high affinity more than popularity alone would make them.
    var tasteless = Self.small
    tasteless.tasteStrength = 0
    func meanStars(_ shape: SyntheticShape) -> Double {
      let r = SyntheticRatings.ratings(shape, seed: 5)
      return r.map(\.rating).reduce(0, +) / Double(r.count)
    }
    #expect(meanStars(Self.small) > meanStars(tasteless) + 0.3)
  }
}

struct PopularityBandTests {
  @Test func bandsSplitThePositivesInThirds() {
    // Counts 60, 30, 30, 20, 10, 10, 0 (total 160): items before 1/3 (53.3) of the total are head.
    let counts: [Int64: Int] = [1: 60, 2: 30, 3: 30, 4: 20, 5: 10, 6: 10]
    let bands = NCFProtocol.bands(counts, keys: [1, 2, 3, 4, 5, 6, 7])
    #expect(bands == [1: .head, 2: .torso, 3: .torso, 4: .tail, 5: .tail, 6: .tail, 7: .tail])
    // Ties go to the smaller id first.
    #expect(NCFProtocol.bands([1: 5, 2: 5, 3: 5], keys: [3, 2, 1]) == [1: .head, 2: .torso, 3: .tail])
  }

  @Test func perBandMetricsAddUpToTheOverallOnes() throws {
    let p = try NCFProtocol(SyntheticRatings.ratings(SyntheticRatingsTests.small, seed: 2))
    let lists = p.candidates(count: 20, seed: 1)
    var state: UInt64 = 4
    let scores = lists.map { entry in
      entry.items.map { _ in
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return Double(state >> 11) * 0x1p-53
      }
    }
    let evaluation = p.evaluation(users: lists.map(\.user), scores: scores)
    let (hr, ndcg) = NCFProtocol.hitRateAndNDCG(scores: scores)
    #expect(abs(evaluation.overall.hr - hr) < 1e-12 && abs(evaluation.overall.ndcg - ndcg) < 1e-12)
    for bands in [evaluation.itemBands, evaluation.userBands] {
      #expect(bands.values.reduce(0) { $0 + $1.users } == lists.count)
      let weighted = bands.values.reduce(0.0) { $0 + $1.hr * Double($1.users) } / Double(lists.count)
      #expect(abs(weighted - hr) < 1e-12)
    }
    // Every band has test users on a long-tailed set (test items are drawn like training ones).
    #expect(PopularityBand.allCases.allSatisfy { (evaluation.itemBands[$0]?.users ?? 0) > lists.count / 10 })
  }
}
