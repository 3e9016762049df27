// Training data and ratings under bad input (issue 15): duplicate columns, integers that do not
// fit the model's input type, CRLF line ends, users with no unrated item; plus a seeded family of
// mutated .npy/.npz/CSV files, each of which must load or fail with a named DataError.
import Foundation
import Testing
import TTIR
import TTRuntime
@testable import TTTrain

struct DataFaultTests {
  static func temporaryPath(_ name: String) -> String {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("ttfc-data-\(UUID().uuidString)")
    try? FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    return directory.appendingPathComponent(name).path
  }

  @Test func npzWithTwoMembersOfOneNameIsANamedError() throws {
    let path = Self.temporaryPath("dup.npz")
    try NpzArchive.write([("y", Tensor(.f32, shape: [2], floats: [1, 2])), ("y", Tensor(.f32, shape: [2], floats: [3, 4]))], path: path)
    #expect { try Dataset.load(path) } throws: { "\($0)".contains("holds two arrays named 'y'") }
  }

  @Test func csvHeaderWithARepeatedColumnIsANamedError() throws {
    let path = Self.temporaryPath("dup.csv")
    try "x,y,y\n1,2,3\n".write(toFile: path, atomically: true, encoding: .utf8)
    #expect { try Dataset.load(path) } throws: { "\($0)".contains("the header names column 'y' twice") }
  }

  @Test func integersThatDoNotFitTheInputTypeAreNamed() throws {
    let data = try Dataset(columns: ["ids": Tensor(.i64, shape: [2], ints: [3, (1 << 40) + 3])])
    #expect { try data.column(for: "ids", type: TensorType(.i32, [.symbol("B")])) } throws: {
      "\($0)".contains("column 'ids' holds 1099511627779, which does not fit input %ids : i32[B]")
    }
    let fits = try Dataset(columns: ["ids": Tensor(.i64, shape: [2], ints: [3, Int64(Int32.max)])])
    #expect(try fits.column(for: "ids", type: TensorType(.i32, [.symbol("B")])).int64s == [3, Int64(Int32.max)])
  }

  /// A loss whose batch dimension is a number (an imported model's static batch) is refused
  /// before the first step when the batch or the data's size would give it another size (an
  /// outside review: 25 steps ran, then the epoch's last batch of 3 failed).
  @Test func aStaticBatchThatTheDataCannotFillIsNamedAtTheStart() throws {
    let module = try Parser.parseAndVerify("""
      module @m {
        param @w : f32[4] = zeros
        func @loss(%x: f32[8, 4]) -> f32[] {
          %y = mul %x, @w : f32[8, 4]
          %s = reduce_sum %y : f32[]
          return %s
        }
      }
      """)
    func setup(examples: Int, batch: Int) -> String? {
      var options = TrainingOptions()
      options.batch = batch
      options.epochs = 1
      do {
        let data = try Dataset(columns: ["x": Tensor(.f32, shape: [examples, 4], floats: Array(repeating: 1, count: examples * 4))])
        _ = try TrainingLoop(module: module, loss: "loss", optimizer: OptimizerConfig(.sgd), data: data, options: options)
        return nil
      } catch { return "\(error)" }
    }
    #expect(setup(examples: 16, batch: 8) == nil)
    #expect(setup(examples: 8, batch: 32) == nil)   // one batch of all 8
    #expect(setup(examples: 203, batch: 8)?.contains("leave a last batch of 3") == true)
    #expect(setup(examples: 16, batch: 4)?.contains("takes batches of exactly 8 examples") == true)
  }

  @Test func crlfFilesReadLikeLFFiles() throws {
    let csv = Self.temporaryPath("crlf.csv")
    try "a,b\r\n1,2\r\n3,4\r\n".write(toFile: csv, atomically: true, encoding: .utf8)
    #expect(try Dataset.load(csv).columns["b"]?.int64s == [2, 4])
    let ratings = Self.temporaryPath("ratings.csv")
    try "userId,movieId,rating,timestamp\r\n1,1,5,100\r\n1,2,4,200\r\n".write(toFile: ratings, atomically: true, encoding: .utf8)
    #expect(try MovieLens.read(ratings).map(\.item) == [1, 2])
  }

  @Test func aUserWhoRatedEveryItemIsANamedErrorAndSamplingEnds() throws {
    let saturated = [Rating(user: 1, item: 1, rating: 5, timestamp: 100), Rating(user: 1, item: 2, rating: 4, timestamp: 200),
                     Rating(user: 2, item: 1, rating: 3, timestamp: 100), Rating(user: 2, item: 2, rating: 5, timestamp: 300)]
    #expect { try NCFProtocol(saturated) } throws: { "\($0)".contains("user 1 rated every one of the 2 items") }
    // One unrated item among many: sampling still ends, always with that item.
    var nearly = (1...200).map { Rating(user: 1, item: Int64($0), rating: 4, timestamp: Int64($0)) }
    nearly += [Rating(user: 2, item: 201, rating: 4, timestamp: 1), Rating(user: 2, item: 1, rating: 4, timestamp: 2)]
    let p = try NCFProtocol(nearly)
    #expect((0..<50).allSatisfy { p.negative(for: 1, seed: 3, draw: UInt64($0)) == 201 })
  }

  /// Seeded mutations of valid .npy, .npz and CSV training files (bytes flipped, truncated,
  /// extended, fields replaced); every load either succeeds or throws a DataError with a message.
  @Test func mutatedDataFilesLoadOrFailByName() throws {
    let directory = (Self.temporaryPath("x") as NSString).deletingLastPathComponent
    let npz = NpzArchive.encode([("x", Tensor(.f32, shape: [4, 3], floats: (0..<12).map(Double.init))),
                                 ("y", Tensor(.i64, shape: [4], ints: [0, 1, 1, 0]))])
    let npy = NumpyFormat.encode(Tensor(.f64, shape: [3, 2], floats: [1, 2, 3, 4, 5, 6]))
    let csv = Array("x_0,x_1,y\n1.5,2,0\n3,4.25,1\n-1,0,1\n".utf8)
    var generator = SeededGenerator(seed: 1515)
    var outcomes: [String: Int] = [:]
    for iteration in 0..<600 {
      let (original, suffix): ([UInt8], String) = [(npz, "npz"), (npy, "npy"), (csv, "csv")][iteration % 3]
      var bytes = original
      switch generator.next() % 5 {
      case 0: for _ in 0..<(1 + generator.next() % 4) { bytes[Int(generator.next() % UInt64(bytes.count))] = UInt8(truncatingIfNeeded: generator.next()) }
      case 1: bytes = Array(bytes.prefix(Int(generator.next() % UInt64(bytes.count))))
      case 2: bytes += (0..<(1 + generator.next() % 16)).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
      case 3:   // a 32-bit field set to a large or boundary value (zip sizes, offsets, header lengths)
        let at = Int(generator.next() % UInt64(max(1, bytes.count - 4)))
        let value = [UInt32.max, 0x8000_0000, 0xFFFF, 0, UInt32(bytes.count)][Int(generator.next() % 5)]
        for k in 0..<min(4, bytes.count - at) { bytes[at + k] = UInt8(truncatingIfNeeded: value >> (8 * UInt32(k))) }
      default:  // text-level: a field or line end replaced
        let replacements: [[UInt8]] = [Array("nan".utf8), Array("\r\n".utf8), Array(",".utf8), Array("1e999".utf8), Array("x_0".utf8), []]
        let at = Int(generator.next() % UInt64(bytes.count))
        bytes.replaceSubrange(at..<min(bytes.count, at + 1 + Int(generator.next() % 3)), with: replacements[Int(generator.next() % 6)])
      }
      let path = (directory as NSString).appendingPathComponent("m\(iteration % 7).\(suffix)")
      #expect(FileManager.default.createFile(atPath: path, contents: Data(bytes)))
      do {
        if suffix == "npy" {
          let folder = (directory as NSString).appendingPathComponent("npy\(iteration % 7)")
          try? FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
          #expect(FileManager.default.createFile(atPath: (folder as NSString).appendingPathComponent("x.npy"), contents: Data(bytes)))
          _ = try Dataset.load(folder)
        } else {
          _ = try Dataset.load(path)
        }
        outcomes["loaded", default: 0] += 1
      } catch {
        #expect(!"\(error)".isEmpty)
        outcomes["named error", default: 0] += 1
      }
    }
    print("data robustness: 600 mutants \(outcomes.sorted { $0.key < $1.key })")
    #expect(outcomes["named error", default: 0] > 0)
  }
}

/// SplitMix64: a small seeded generator for the adversarial families.
struct SeededGenerator: RandomNumberGenerator {
  var state: UInt64
  init(seed: UInt64) { state = seed }
  mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }
}
