// StandardLossTests — `--objective`'s losses added to a module with only a prediction function:
// each against a hand-computed value on the interpreter, and the named refusals.
import Foundation
import Testing
import TTIR
import TTInterp
import TTTrain

@Suite struct StandardLossTests {
  static let source = """
    module @m {
      param @w : f32[2, 3] = zeros
      func @main(%x: f32[B, 2]) -> f32[B, 3] {
        %y = matmul %x, @w : f32[B, 3]
        return %y
      }
    }
    """

  func lossValue(_ kind: StandardLoss, labels: Tensor) throws -> Double {
    var module = try Parser.parseAndVerify(Self.source)
    try kind.add(to: &module, predict: "main", labels: "y", lossName: "loss")
    let w = Tensor(.f32, shape: [2, 3], floats: [1, 0, 0, 0, 1, 0])
    let x = Tensor(.f32, shape: [2, 2], floats: [1, 2, 3, 4])  // predictions [[1, 2, 0], [3, 4, 0]]
    return try Interpreter(module: module, params: ["w": w]).run("loss", [x, labels])[0].doubles[0]
  }

  @Test func eachObjectiveMatchesHandComputation() throws {
    func lse(_ v: [Double]) -> Double { log(v.map { exp($0) }.reduce(0, +)) }
    let sce = try lossValue(.softmaxCrossEntropy, labels: Tensor(.i32, shape: [2], ints: [1, 2]))
    #expect(abs(sce - ((lse([1, 2, 0]) - 2) + (lse([3, 4, 0]) - 0)) / 2) < 1e-6)
    let target = Tensor(.f32, shape: [2, 3], floats: [0, 0, 0, 1, 1, 1])
    let mse = try lossValue(.mse, labels: target)
    #expect(abs(mse - (1 + 4 + 0 + 4 + 9 + 1) / 6.0) < 1e-6)
    let bce = try lossValue(.sigmoidCrossEntropy, labels: target)
    let logits: [Double] = [1, 2, 0, 3, 4, 0], z: [Double] = [0, 0, 0, 1, 1, 1]
    var expected = 0.0
    for (x, label) in zip(logits, z) {
      let term: Double = max(x, 0) - x * label + log(1 + exp(-abs(x)))
      expected += term / 6
    }
    #expect(abs(bce - expected) < 1e-6)
  }

  @Test func refusalsAreNamed() throws {
    var module = try Parser.parseAndVerify(Self.source)
    #expect(throws: StandardLossError.self) { try StandardLoss.mse.add(to: &module, predict: "nope", labels: "y", lossName: "loss") }
    #expect(throws: StandardLossError.self) { try StandardLoss.mse.add(to: &module, predict: "main", labels: "x", lossName: "loss") }
    try StandardLoss.mse.add(to: &module, predict: "main", labels: "y", lossName: "loss")
    do {
      try StandardLoss.mse.add(to: &module, predict: "main", labels: "y", lossName: "loss")
      Issue.record("a second @loss was added")
    } catch {
      #expect(error.description.contains("already has a function '@loss'"))
    }
  }
}
