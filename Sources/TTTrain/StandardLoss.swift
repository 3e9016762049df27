// StandardLoss — a loss function added to a module that has only a prediction function (an
// imported ONNX model): `ttfc train --objective softmax_cross_entropy --labels y` builds
//   func @loss(<the prediction function's arguments>, %y: LABELS) -> f32[] {
//     %p = call @main(...); %l = softmax_cross_entropy %p, %y; %m = reduce_mean %l; return %m }
// so training proceeds exactly as for a hand-written @loss (every parameter trainable).
import TTIR

/// The losses `--objective` offers, averaged over every element of the per-example loss.
public enum StandardLoss: String, CaseIterable, Sendable {
  /// Sparse integer labels (i32, the prediction's shape without its last axis) against logits.
  case softmaxCrossEntropy = "softmax_cross_entropy"
  /// Labels in [0, 1] of the prediction's type, against logits.
  case sigmoidCrossEntropy = "sigmoid_cross_entropy"
  /// Mean squared error against targets of the prediction's type.
  case mse

  /// Adds function `lossName` computing this loss of `predict`'s only result against a new
  /// argument `labels`. Errors name what does not fit (no such function, several results, a
  /// name already taken, an integer prediction).
  public func add(to module: inout Module, predict: String, labels: String, lossName: String) throws(StandardLossError) {
    guard let source = module.function(named: predict) else {
      throw StandardLossError("no function '@\(predict)' to train (the module has: \(module.functions.map { "@" + $0.name }.joined(separator: ", ")))")
    }
    guard module.function(named: lossName) == nil else {
      throw StandardLossError("the module already has a function '@\(lossName)'; name the new loss with --loss NAME or drop --objective")
    }
    guard source.resultTypes.count == 1, let prediction = source.resultTypes.first else {
      throw StandardLossError("'@\(predict)' returns \(source.resultTypes.count) results; --objective needs exactly one")
    }
    guard prediction.dtype.isFloat else { throw StandardLossError("'@\(predict)' returns \(prediction); a loss needs a float prediction") }
    let argumentNames = source.arguments.map { source[$0].name }
    guard !argumentNames.contains(labels) else {
      throw StandardLossError("'@\(predict)' already has an argument %\(labels); choose another --labels name")
    }
    let labelType: TensorType
    switch self {
    case .softmaxCrossEntropy:
      guard prediction.rank >= 1 else { throw StandardLossError("softmax_cross_entropy needs a prediction with a class axis, got \(prediction)") }
      labelType = TensorType(.i32, Array(prediction.dims.dropLast()))
    case .sigmoidCrossEntropy, .mse:
      labelType = prediction
    }
    var f = Function(name: lossName, resultTypes: [.scalar(prediction.dtype)])
    var arguments: [ValueID] = []
    for argument in source.arguments { arguments.append(f.addArgument(name: source[argument].name, type: source.type(of: argument))) }
    let y = f.addArgument(name: labels, type: labelType)
    let call = f.append(.call, arguments, resultTypes: [prediction], resultNames: ["prediction"], callee: predict)
    let p = f[call].results[0]
    let perExample: ValueID
    switch self {
    case .softmaxCrossEntropy:
      perExample = f.appendValue(.softmaxCrossEntropy, [p, y], type: labelType.with(dtype: prediction.dtype))
    case .sigmoidCrossEntropy:
      perExample = f.appendValue(.sigmoidCrossEntropy, [p, y], type: prediction)
    case .mse:
      let d = f.appendValue(.sub, [p, y], type: prediction)
      perExample = f.appendValue(.mul, [d, d], type: prediction)
    }
    let mean = f.appendValue(.reduceMean, [perExample], type: .scalar(prediction.dtype))
    f.values[mean.index].name = "loss"
    f.returnValues = [mean]
    module.functions.append(f)
    if let problem = Verifier.verify(module).first { throw StandardLossError("the added loss does not verify: \(problem.description)") }
  }
}

public struct StandardLossError: Error, CustomStringConvertible {
  public let description: String
  init(_ description: String) { self.description = description }
}
