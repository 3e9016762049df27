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

/// Hostile attribute values on every vision op: the shape rule either names the problem or gives
/// a type; when it gives one, the interpreter runs the op to a result or a named error.
struct VisionHostileAttributeTests {
  static let big: Int64 = 1 << 40
  // Benign values repeat so that a good share of the combinations is valid and runs.
  static let pairs: [[Int64]?] = [nil, nil, [1, 1], [1, 1], [2, 3], [2, 2], [3, 1], [0, 1], [-1, 1], [big, 1], [big + 1, 1],
                                  [Int64.max, Int64.max], [Int64.min, 2], [1, 2, 3], []]
  static let padLists: [[Int64]?] = [nil, nil, nil, nil, [0, 0, 0, 0], [1, 2, 0, 1], [1, 0, 1, 0], [-1, 0, 0, 0], [big, 0, 0, big],
                                     [Int64.max, 0, 0, 0], [1, 1], [1 << 26, 0, 0, 0]]
  static let paddings: [String?] = [nil, nil, "VALID", "SAME", "SAME", "EXPLICIT", "same"]

  @Test(.timeLimit(.minutes(2)))
  func neverTrapsAndAlwaysNames() throws {
    let x = TensorType(.f64, shape: [2, 5, 4, 4])
    let w = TensorType(.f64, shape: [3, 2, 2, 4])
    var ruled = 0, ran = 0, named = 0
    var state: UInt64 = 0x9E37_79B9_7F4A_7C15
    func pick<T>(_ options: [T]) -> T {
      state = state &* 6364136223846793005 &+ 1442695040888963407
      return options[Int((state >> 33) % UInt64(options.count))]
    }
    for trial in 0..<4000 {
      let code: OpCode = pick([.conv2d, .conv2dBackpropFilter, .maxPool, .avgPool, .maxPoolGrad, .avgPoolGrad])
      var attributes = Attributes()
      if let s = pick(Self.pairs) { attributes["strides"] = .ints(s) }
      if let p = pick(Self.padLists) { attributes["pads"] = .ints(p) }
      if let p = pick(Self.paddings) { attributes["padding"] = .string(p) }
      if code == .conv2d || code == .conv2dBackpropFilter {
        if let d = pick(Self.pairs) { attributes["dilations"] = .ints(d) }
        attributes["groups"] = .int(pick([1, 2, 0, -2, 3, Int64.max]))
      } else if let window = pick(Self.pairs) {
        attributes["window"] = .ints(window)
      }
      if trial % 7 == 0 { attributes["count_include_pad"] = .bool(true) }
      let forwardOperands = code == .conv2d || code == .conv2dBackpropFilter ? [x, w] : [x]
      // The forward type first (the gradient ops check theirs against it).
      let forwardCode: OpCode = code == .conv2d || code == .conv2dBackpropFilter ? .conv2d : (code == .avgPoolGrad ? .avgPool : .maxPool)
      guard let y = try? forwardCode.info.shapeRule(ShapeRuleInput(operands: forwardOperands, attributes: attributes, declared: [])).first else {
        // Named: the rule threw a ShapeError (anything else would have trapped by now).
        do { _ = try forwardCode.info.shapeRule(ShapeRuleInput(operands: forwardOperands, attributes: attributes, declared: [])) }
        catch { #expect(error is ShapeError) }
        continue
      }
      ruled += 1
      let (operands, result): ([TensorType], TensorType)
      switch code {
      case .conv2d, .maxPool, .avgPool: (operands, result) = (forwardOperands, y)
      case .conv2dBackpropFilter: (operands, result) = ([x, y], w)
      case .maxPoolGrad: (operands, result) = ([x, y], x)
      default: (operands, result) = ([y], x)
      }
      var f = Function(name: "f", resultTypes: [result])
      let arguments = operands.enumerated().map { f.addArgument(name: "a\($0.offset)", type: $0.element) }
      let r = f.appendValue(code, arguments, type: result, attributes: attributes)
      f.returnValues = [r]
      var module = Module(name: "m")
      module.functions = [f]
      let problems = Verifier.verify(module)
      guard problems.isEmpty else { continue }
      // An operand must exist to be given (a verified dy of 2^40 elements cannot be allocated).
      guard operands.allSatisfy({ elementCount($0.staticShape!).map { $0 <= 1 << 20 } ?? false }) else { continue }
      let inputs = operands.map { t in Tensor(.f64, shape: t.staticShape!, floats: (0..<elementCount(t.staticShape!)!).map { Double($0 % 7) - 3 }) }
      do {
        let out = try Interpreter(module: module).run("f", inputs)
        #expect(out[0].shape == result.staticShape!)
        ran += 1
      } catch {
        named += 1
      }
    }
    // A verified convolution whose output is beyond what the interpreter holds is a named error.
    let huge = """
      module @m {
        func @f(%x: f64[2, 5, 4, 4], %w: f64[3, 2, 2, 4]) -> f64[2, 67108867, 3, 4] {
          %y = conv2d %x, %w {groups = 2, pads = [67108864, 0, 0, 0]} : f64[2, 67108867, 3, 4]
          return %y
        }
      }
      """
    let zeros = [Tensor.filled(.f64, shape: [2, 5, 4, 4], value: 0), Tensor.filled(.f64, shape: [3, 2, 2, 4], value: 0)]
    #expect(throws: InterpreterError.tooLarge(op: "conv2d", elements: 2 * 67108867 * 3 * 4)) {
      try Interpreter(module: try Parser.parseAndVerify(huge)).run("f", zeros)
    }
    print("vision hostile attributes: 4000 trials, \(ruled) typed by the shape rule, \(ran) ran, \(named) named errors")
    #expect(ruled > 150 && ran > 100)
  }
}
