// The vision ops' stated conventions on hand-checked inputs: max_pool's tie and NaN rule and its
// gradient, avg_pool's divisor, hostile-but-valid windows (2^40 taps over padding) that must run
// in no time, and named errors for what only shows at run time.
import Testing
import TTIR
import TTInterp

struct VisionInterpreterTests {
  func run(_ source: String, _ inputs: [Tensor]) throws -> [Tensor] {
    try Interpreter(module: try Parser.parseAndVerify(source)).run("f", inputs)
  }

  @Test func maxPoolTakesTheFirstMaximumAndPropagatesNaN() throws {
    let source = """
      module @m {
        func @f(%x: f64[1, 2, 3, 1], %dy: f64[1, 1, 2, 1]) -> (f64[1, 1, 2, 1], f64[1, 2, 3, 1]) {
          %y = max_pool %x {strides = [1, 1], window = [2, 2]} : f64[1, 1, 2, 1]
          %dx = max_pool_grad %x, %dy {strides = [1, 1], window = [2, 2]} : f64[1, 2, 3, 1]
          return %y, %dx
        }
      }
      """
    // Window 0 reads [7, 7; 1, 7] (three equal maxima: the first, at (0, 0), gets the gradient);
    // window 1 reads [7, nan; 7, 2] (NaN wins, at (0, 2)).
    let x = Tensor(.f64, shape: [1, 2, 3, 1], floats: [7, 7, .nan, 1, 7, 2])
    let dy = Tensor(.f64, shape: [1, 1, 2, 1], floats: [10, 100])
    let r = try run(source, [x, dy])
    #expect(r[0].doubles[0] == 7 && r[0].doubles[1].isNaN)
    #expect(r[1].doubles == [10, 0, 100, 0, 0, 0])
  }

  @Test func avgPoolCountsOnlyInputElementsUnlessAskedTo() throws {
    let source = """
      module @m {
        func @f(%x: f64[1, 2, 2, 1]) -> (f64[1, 2, 2, 1], f64[1, 2, 2, 1]) {
          %a = avg_pool %x {pads = [1, 0, 1, 0], window = [2, 2]} : f64[1, 2, 2, 1]
          %b = avg_pool %x {count_include_pad = true, pads = [1, 0, 1, 0], window = [2, 2]} : f64[1, 2, 2, 1]
          return %a, %b
        }
      }
      """
    let r = try run(source, [Tensor(.f64, shape: [1, 2, 2, 1], floats: [1, 2, 3, 4])])
    #expect(r[0].doubles == [1, 1.5, 2, 2.5])
    #expect(r[1].doubles == [0.25, 0.75, 1, 2.5])
  }

  @Test(.timeLimit(.minutes(1)))
  func aWindowOfTwoToTheFortyTapsOverPaddingRunsAtOnce() throws {
    // Valid: the pad (2^40 - 1) is smaller than the window (2^40), and one tap reads the input.
    let source = """
      module @m {
        func @f(%x: f64[1, 1, 1, 1], %dy: f64[1, 1, 1, 1]) -> (f64[1, 1, 1, 1], f64[1, 1, 1, 1], f64[1, 1, 1, 1], f64[1, 1, 1, 1]) {
          %a = avg_pool %x {count_include_pad = true, pads = [1099511627775, 0, 0, 0], window = [1099511627776, 1]} : f64[1, 1, 1, 1]
          %m = max_pool %x {pads = [1099511627775, 0, 0, 0], window = [1099511627776, 1]} : f64[1, 1, 1, 1]
          %g = avg_pool_grad %dy {count_include_pad = true, pads = [1099511627775, 0, 0, 0], window = [1099511627776, 1]} : f64[1, 1, 1, 1]
          %h = max_pool_grad %x, %dy {pads = [1099511627775, 0, 0, 0], window = [1099511627776, 1]} : f64[1, 1, 1, 1]
          return %a, %m, %g, %h
        }
      }
      """
    let one = Tensor(.f64, shape: [1, 1, 1, 1], floats: [1099511627776])
    let r = try run(source, [one, one])
    #expect(r[0].doubles == [1])
    #expect(r[1].doubles == [1099511627776])
    #expect(r[2].doubles == [1])
    #expect(r[3].doubles == [1099511627776])
  }

  @Test func anEmptyBatchHasNoStatistics() throws {
    let source = """
      module @m {
        func @f(%x: f32[B, 3], %s: f32[3]) -> f32[3] {
          %y, %m, %v = batch_norm_training %x, %s, %s : f32[B, 3], f32[3], f32[3]
          return %m
        }
      }
      """
    #expect(throws: InterpreterError.emptyReduction(op: "batch_norm_training")) {
      try run(source, [Tensor(.f32, shape: [0, 3], floats: []), Tensor(.f32, shape: [3], floats: [1, 1, 1])])
    }
  }

  @Test func depthwiseConvolutionKeepsChannelsApart() throws {
    // groups = channels, multiplier 2: output channel co reads input channel co / 2 only.
    let source = """
      module @m {
        func @f(%x: f64[1, 1, 1, 2], %w: f64[1, 1, 1, 4]) -> f64[1, 1, 1, 4] {
          %y = conv2d %x, %w {groups = 2} : f64[1, 1, 1, 4]
          return %y
        }
      }
      """
    let r = try run(source, [Tensor(.f64, shape: [1, 1, 1, 2], floats: [3, 5]), Tensor(.f64, shape: [1, 1, 1, 4], floats: [1, 2, 10, 20])])
    #expect(r[0].doubles == [3, 6, 50, 100])
  }
}
