// ParamInitializer — turns a parameter's declared initializer into a tensor, reproducibly: element
// i of a parameter depends only on (seed, i), drawn from a counter-based generator (SplitMix64 of
// seed and index), so values are the same on every machine, thread count and run.
// Fan-in/fan-out follow Keras: rank 2 [in, out]; rank > 2 multiplies the leading (receptive
// field) dims into both; rank 1 uses its size for both.

import Foundation
import TTIR

public enum ParamInitializer {
  public static func materialize(_ initializer: Initializer, type: TensorType, name: String) throws(InterpreterError) -> Tensor {
    guard let shape = type.staticShape, let count = elementCount(shape), count <= maxInterpreterElements else {
      throw .tooLarge(op: "initializer of @\(name)", elements: elementCount(type.staticShape ?? []) ?? Int.max)
    }
    let parameters: [String: Double]
    switch InitializerSpec.resolve(initializer) {
    case .success(let p): parameters = p
    case .failure(let e): throw .invalidModule("parameter '@\(name)': \(e.message)")
    }
    let seed = UInt64(parameters["seed"] ?? 0)
    let (fanIn, fanOut) = fans(shape)
    let values: [Double]
    switch initializer.kind {
    case "zeros": values = [Double](repeating: 0, count: count)
    case "ones": values = [Double](repeating: 1, count: count)
    case "constant": values = [Double](repeating: parameters["value"]!, count: count)
    case "uniform":
      let low = parameters["low"]!, high = parameters["high"]!
      values = (0..<count).map { low + (high - low) * uniform(seed, UInt64($0), 0) }
    case "normal":
      values = (0..<count).map { parameters["mean"]! + parameters["std"]! * normal(seed, UInt64($0), 0) }
    case "truncated_normal":
      values = (0..<count).map { parameters["mean"]! + parameters["std"]! * truncatedNormal(seed, UInt64($0)) }
    case "glorot_uniform":
      let limit = (6 / Double(fanIn + fanOut)).squareRoot()
      values = (0..<count).map { limit * (2 * uniform(seed, UInt64($0), 0) - 1) }
    case "glorot_normal":
      let std = (2 / Double(fanIn + fanOut)).squareRoot()
      values = (0..<count).map { std * normal(seed, UInt64($0), 0) }
    case "he_normal":
      let std = (2 / Double(fanIn)).squareRoot()
      values = (0..<count).map { std * normal(seed, UInt64($0), 0) }
    case "he_uniform":
      let limit = (6 / Double(fanIn)).squareRoot()
      values = (0..<count).map { limit * (2 * uniform(seed, UInt64($0), 0) - 1) }
    default:
      throw .invalidModule("unknown initializer '\(initializer.kind)'")
    }
    if type.dtype.isFloat { return Tensor(type.dtype, shape: shape, floats: values) }
    return Tensor(type.dtype, shape: shape, ints: values.map(integerFromDouble))
  }

  static func fans(_ shape: [Int]) -> (Int, Int) {
    switch shape.count {
    case 0: return (1, 1)
    case 1: return (Swift.max(shape[0], 1), Swift.max(shape[0], 1))
    default:
      let receptive = shape.dropLast(2).reduce(1, *)
      return (Swift.max(shape[shape.count - 2] * receptive, 1), Swift.max(shape[shape.count - 1] * receptive, 1))
    }
  }

  /// SplitMix64's finalizer: a good 64-bit mix of one word.
  static func mix(_ z0: UInt64) -> UInt64 {
    var z = z0 &+ 0x9E37_79B9_7F4A_7C15
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }

  /// A uniform double in [0, 1) for (seed, index, stream).
  static func uniform(_ seed: UInt64, _ index: UInt64, _ stream: UInt64) -> Double {
    let bits = mix(mix(seed ^ 0x5851_F42D_4C95_7F2D) ^ mix(index &* 4 &+ stream))
    return Double(bits >> 11) * 0x1.0p-53
  }

  /// A standard normal for (seed, index, draw) by Box-Muller.
  static func normal(_ seed: UInt64, _ index: UInt64, _ draw: UInt64) -> Double {
    let u1 = 1 - uniform(seed, index, draw * 2 + 0)   // (0, 1]: log is finite
    let u2 = uniform(seed, index, draw * 2 + 1)
    return (-2 * Foundation.log(u1)).squareRoot() * Foundation.cos(2 * Double.pi * u2)
  }

  /// A standard normal conditioned on |z| <= 2 (redrawn until it lands there).
  static func truncatedNormal(_ seed: UInt64, _ index: UInt64) -> Double {
    var draw: UInt64 = 0
    while true {
      let z = normal(seed, index, draw &* 7919)
      if Swift.abs(z) <= 2 { return z }
      draw += 1
    }
  }
}
