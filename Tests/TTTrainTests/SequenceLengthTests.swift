// `--sequence-lengths` (TrainingOptions.sequenceLengths): each batch is cut on axis 1 to its
// longest example in every input whose axis 1 is symbolic, for training and evaluation, and bad
// lengths columns are named errors before any step.
import Foundation
import Testing
import TTIR
import TTInterp
@testable import TTTrain

struct SequenceLengthTests {
  /// The loss is the mean over T of x·w: it changes if T is the padded length instead of the
  /// batch's longest sequence, so the test sees which length each step ran at.
  static let model = """
    module @seq {
      param @w : f64[2] = ones
      func @loss(%x: f64[B, T, 2], %len: i32[B], %other: f64[B, 3]) -> f64[] {
        %y = mul %x, @w : f64[B, T, 2]
        %l = reduce_mean %y : f64[]
        return %l
      }
    }
    """

  static func data(lengths: [Int64], padded: Int) -> Dataset {
    let n = lengths.count
    let x = (0..<(n * padded * 2)).map { Double($0 % 7) + 1 }
    return try! Dataset(columns: ["x": Tensor(.f64, shape: [n, padded, 2], floats: x),
                                  "len": Tensor(.i32, shape: [n], ints: lengths),
                                  "other": Tensor(.f64, shape: [n, 3], floats: [Double](repeating: 1, count: n * 3))])
  }

  @Test func eachBatchRunsAtItsLongestSequence() throws {
    let lengths: [Int64] = [2, 5, 1, 3, 4, 1]
    let data = Self.data(lengths: lengths, padded: 6)
    var options = TrainingOptions()
    options.batch = 2
    options.steps = 3
    options.shuffle = false
    options.learningRate = 0
    options.sequenceLengths = "len"
    let module = try Parser.parseAndVerify(Self.model)
    let loop = try TrainingLoop(module: module, loss: "loss", optimizer: OptimizerConfig(.sgd), data: data, evalData: data, options: options)
    _ = try loop.run()
    let x = data.columns["x"]!.doubles
    for (step, loss) in loop.losses.enumerated() {
      let rows = [2 * step, 2 * step + 1]
      let t = Int(rows.map { lengths[$0] }.max()!)
      var sum = 0.0
      for r in rows { for k in 0..<(t * 2) { sum += x[r * 12 + k] } }
      #expect(abs(loss - sum / Double(2 * t * 2)) < 1e-12, "step \(step + 1): loss \(loss), expected at T = \(t)")
    }
    // Evaluation cuts its batches the same way.
    let metrics = try loop.evaluate()
    #expect(abs(metrics["loss"]! - loop.losses.reduce(0, +) / 3) < 1e-12)
  }

  @Test(arguments: [
    ("lengths", [Int64(2), 7], "example 1 has length 7, outside 0 to 6"),
    ("missing", [Int64(2), 3], "the data has no column 'missing'"),
    ("other", [Int64(2), 3], "must be integer lengths"),
  ])
  func badLengthsAreNamedErrors(_ column: String, _ lengths: [Int64], _ message: String) throws {
    var data = Self.data(lengths: lengths, padded: 6)
    data.columns["lengths"] = data.columns["len"]
    var options = TrainingOptions()
    options.batch = 2
    options.sequenceLengths = column
    let module = try Parser.parseAndVerify(Self.model)
    #expect { _ = try TrainingLoop(module: module, loss: "loss", optimizer: OptimizerConfig(.sgd), data: data, options: options) } throws: {
      "\($0)".contains(message)
    }
  }

  @Test func aModelWithoutASymbolicSequenceAxisIsANamedError() throws {
    let module = try Parser.parseAndVerify("""
      module @flat {
        param @w : f64[3] = ones
        func @loss(%other: f64[B, 3], %len: i32[B]) -> f64[] {
          %y = mul %other, @w : f64[B, 3]
          %l = reduce_mean %y : f64[]
          return %l
        }
      }
      """)
    var options = TrainingOptions()
    options.sequenceLengths = "len"
    #expect { _ = try TrainingLoop(module: module, loss: "loss", optimizer: OptimizerConfig(.sgd), data: Self.data(lengths: [1, 2], padded: 4), options: options) } throws: {
      "\($0)".contains("no input of the function has a symbolic axis 1")
    }
  }

  @Test func emptySequencesRunAtLengthOneUnlessThePaddedLengthIsZero() throws {
    let data = Self.data(lengths: [0, 0, 2], padded: 4)
    let cut = try SequenceTrimming(column: "len", data: data, paddedLength: 4)
    #expect(cut.length(of: [0, 1]) == 1 && cut.length(of: [0, 2]) == 2)
    let empty = try Dataset(columns: ["x": Tensor(.f64, shape: [2, 0, 2], floats: []), "len": Tensor(.i32, shape: [2], ints: [0, 0])])
    #expect(try SequenceTrimming(column: "len", data: empty, paddedLength: 0).length(of: [0, 1]) == 0)
  }

  @Test func inputsPaddedToDifferentLengthsAreANamedError() throws {
    let module = try Parser.parseAndVerify("""
      module @two {
        param @w : f64[2] = ones
        func @loss(%x: f64[B, T, 2], %z: f64[B, P], %len: i32[B]) -> f64[] {
          %y = mul %x, @w : f64[B, T, 2]
          %l = reduce_mean %y : f64[]
          return %l
        }
      }
      """)
    var data = Self.data(lengths: [1, 2], padded: 4)
    data.columns["z"] = Tensor(.f64, shape: [2, 7], floats: [Double](repeating: 0, count: 14))
    var options = TrainingOptions()
    options.sequenceLengths = "len"
    #expect { _ = try TrainingLoop(module: module, loss: "loss", optimizer: OptimizerConfig(.sgd), data: data, options: options) } throws: {
      "\($0)".contains("padded to different lengths")
    }
  }
}
