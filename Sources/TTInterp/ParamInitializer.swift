// ParamInitializer — turns a parameter's declared initializer into a tensor, reproducibly: element
// i of a parameter depends only on (seed, i), drawn from a counter-based generator (SplitMix64 of
// seed and index), so values are the same on every machine, thread count and run.
// Fan-in/fan-out follow Keras: rank 2 [in, out]; rank > 2 multiplies the leading (receptive
// field) dims into both; rank 1 uses its size for both.

import Foundation
import TTIR

public enum ParamInitializer {
  /// The value of every element: element i is `element(i)`, before rounding to the dtype.
  public struct Generator: Sendable {
    public let count: Int
    public let element: @Sendable (Int) -> Double
  }

  /// How to compute `initializer` for `type` (checked now: an unknown initializer, a missing
  /// argument or a too-large parameter is an error here, before any value is drawn).
  public static func generator(_ initializer: Initializer, type: TensorType, name: String) throws(InterpreterError) -> Generator {
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
    let element: @Sendable (Int) -> Double
    switch initializer.kind {
    case "zeros": element = { _ in 0 }
    case "ones": element = { _ in 1 }
    case "constant":
      let value = parameters["value"]!
      element = { _ in value }
    case "uniform":
      let low = parameters["low"]!, high = parameters["high"]!
      element = { low + (high - low) * SeededRandom.uniform(seed, UInt64($0), 0) }
    case "normal":
      let mean = parameters["mean"]!, std = parameters["std"]!
      element = { mean + std * SeededRandom.normal(seed, UInt64($0), 0) }
    case "truncated_normal":
      let mean = parameters["mean"]!, std = parameters["std"]!
      element = { mean + std * SeededRandom.truncatedNormal(seed, UInt64($0)) }
    case "glorot_uniform":
      let limit = (6 / Double(fanIn + fanOut)).squareRoot()
      element = { limit * (2 * SeededRandom.uniform(seed, UInt64($0), 0) - 1) }
    case "glorot_normal":
      let std = (2 / Double(fanIn + fanOut)).squareRoot()
      element = { std * SeededRandom.normal(seed, UInt64($0), 0) }
    case "he_normal":
      let std = (2 / Double(fanIn)).squareRoot()
      element = { std * SeededRandom.normal(seed, UInt64($0), 0) }
    case "he_uniform":
      let limit = (6 / Double(fanIn)).squareRoot()
      element = { limit * (2 * SeededRandom.uniform(seed, UInt64($0), 0) - 1) }
    default:
      throw .invalidModule("unknown initializer '\(initializer.kind)'")
    }
    return Generator(count: count, element: element)
  }

  public static func materialize(_ initializer: Initializer, type: TensorType, name: String) throws(InterpreterError) -> Tensor {
    let g = try generator(initializer, type: type, name: name)
    let values = generate(g.count, g.element)
    let shape = type.staticShape!
    if type.dtype.isFloat { return Tensor(type.dtype, shape: shape, floats: values) }
    return Tensor(type.dtype, shape: shape, ints: values.map(integerFromDouble))
  }

  /// Writes an f32 or f64 parameter's initial values straight into `destination` (native layout),
  /// on all cores, with exactly the values `materialize` gives; false for other dtypes. A cold
  /// start writes its parameters this way, without the [Double] array and tensor in between.
  public static func write(_ g: Generator, dtype: DType, to destination: UnsafeMutableRawPointer) -> Bool {
    guard dtype == .f32 || dtype == .f64 else { return false }
    let address = UInt(bitPattern: destination)   // each chunk writes its own elements
    let chunkSize = 1 << 16
    let chunks = (g.count + chunkSize - 1) / chunkSize
    DispatchQueue.concurrentPerform(iterations: chunks) { c in
      let range = (c * chunkSize)..<min(g.count, (c + 1) * chunkSize)
      if dtype == .f32 {
        let out = UnsafeMutablePointer<Float>(bitPattern: address)!
        for i in range { out[i] = Float(g.element(i)) }
      } else {
        let out = UnsafeMutablePointer<Double>(bitPattern: address)!
        for i in range { out[i] = g.element(i) }
      }
    }
    return true
  }

  /// element(0..<count), rounded to f32 precision as Tensor(.f32) would, computed on all cores
  /// for large parameters: element i depends only on i, so the split cannot change a value (the
  /// cold start of a model, W5, spent 70 ms here serially for 1.5M parameters).
  static func generate(_ count: Int, _ element: @Sendable (Int) -> Double) -> [Double] {
    let chunkSize = 1 << 16
    let chunks = (count + chunkSize - 1) / chunkSize
    return [Double](unsafeUninitializedCapacity: count) { buffer, initialized in
      if let base = buffer.baseAddress {
        let address = UInt(bitPattern: base)   // each chunk writes its own elements
        DispatchQueue.concurrentPerform(iterations: chunks) { c in
          let out = UnsafeMutablePointer<Double>(bitPattern: address)!
          for i in (c * chunkSize)..<min(count, (c + 1) * chunkSize) { (out + i).initialize(to: element(i)) }
        }
      }
      initialized = count
    }
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
}
