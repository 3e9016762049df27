// Tensor — a concrete host tensor: dtype, shape and elements in row-major order. Float tensors
// keep their elements as Double and integer tensors as Int64, always already rounded (or wrapped)
// to their dtype, so one code path serves every dtype in the interpreter and in constants.
// Rounding rules: f32 by Float(x), f16 and bf16 round-to-nearest-even through f32 (as the
// hardware does), integers wrap two's-complement to their width, i1 is 0 or 1.

/// A concrete tensor in host memory: element type, shape, and elements in row-major order, kept
/// as `Double` (float types) or `Int64` (integer types) and already rounded or wrapped to the
/// element type. Parameters, inputs, results, constants and data are all `Tensor`s.
public struct Tensor: Sendable, CustomStringConvertible {
  public enum Storage: Sendable {
    case floats([Double])
    case ints([Int64])
  }

  public let dtype: DType
  public let shape: [Int]
  public private(set) var storage: Storage

  public var count: Int {
    switch storage { case .floats(let v): return v.count; case .ints(let v): return v.count }
  }
  public var rank: Int { shape.count }
  public var type: TensorType { TensorType(dtype, shape: shape) }

  /// A float tensor; elements are rounded to `dtype`.
  public init(_ dtype: DType, shape: [Int], floats: [Double]) {
    precondition(dtype.isFloat, "float storage for \(dtype)")
    precondition(elementCount(shape) == floats.count, "element count does not match shape \(shape)")
    self.dtype = dtype
    self.shape = shape
    self.storage = .floats(floats.map { roundToFloat($0, dtype) })
  }

  /// An integer (or i1) tensor; elements are wrapped to `dtype`'s width.
  public init(_ dtype: DType, shape: [Int], ints: [Int64]) {
    precondition(dtype.isInteger, "integer storage for \(dtype)")
    precondition(elementCount(shape) == ints.count, "element count does not match shape \(shape)")
    self.dtype = dtype
    self.shape = shape
    self.storage = .ints(ints.map { wrapToInteger($0, dtype) })
  }

  /// A tensor with every element equal to `value` (converted to `dtype`).
  public static func filled(_ dtype: DType, shape: [Int], value: Double) -> Tensor {
    let n = elementCount(shape) ?? 0
    if dtype.isFloat { return Tensor(dtype, shape: shape, floats: [Double](repeating: value, count: n)) }
    return Tensor(dtype, shape: shape, ints: [Int64](repeating: integerFromDouble(value), count: n))
  }

  /// A rank-0 tensor holding `value`.
  public static func scalar(_ value: Double, _ dtype: DType = .f32) -> Tensor {
    filled(dtype, shape: [], value: value)
  }

  /// Elements as doubles (integers converted exactly up to 2^53).
  public var doubles: [Double] {
    switch storage { case .floats(let v): return v; case .ints(let v): return v.map { Double($0) } }
  }
  /// Elements as integers (floats truncated toward zero, saturating; NaN becomes 0).
  public var int64s: [Int64] {
    switch storage { case .floats(let v): return v.map(integerFromDouble); case .ints(let v): return v }
  }

  /// The same elements with another shape of the same element count.
  public func reshaped(_ newShape: [Int]) -> Tensor {
    precondition(elementCount(newShape) == count)
    var copy = self
    copy.reshape(newShape)
    return copy
  }
  private mutating func reshape(_ newShape: [Int]) {
    self = Tensor(unchecked: dtype, shape: newShape, storage: storage)
  }

  /// Builds a tensor from storage that is already rounded to `dtype` (no per-element pass).
  public init(unchecked dtype: DType, shape: [Int], storage: Storage) {
    self.dtype = dtype
    self.shape = shape
    self.storage = storage
  }

  /// Bitwise equality of dtype, shape and elements (NaN equals NaN, -0.0 differs from 0.0).
  public func isIdentical(to other: Tensor) -> Bool {
    guard dtype == other.dtype, shape == other.shape else { return false }
    switch (storage, other.storage) {
    case (.floats(let a), .floats(let b)):
      return a.count == b.count && zip(a, b).allSatisfy { $0.bitPattern == $1.bitPattern || ($0.isNaN && $1.isNaN) }
    case (.ints(let a), .ints(let b)):
      return a == b
    default:
      return false
    }
  }

  public var description: String {
    "\(type) \(TensorLiteral.format(self, limit: 8))"
  }
}

extension Tensor: Hashable {
  public static func == (a: Tensor, b: Tensor) -> Bool { a.isIdentical(to: b) }
  public func hash(into hasher: inout Hasher) {
    hasher.combine(dtype)
    hasher.combine(shape)
    switch storage {
    case .floats(let v): for x in v.prefix(16) { hasher.combine(x.isNaN ? 0x7ff8 : x.bitPattern) }
    case .ints(let v): for x in v.prefix(16) { hasher.combine(x) }
    }
  }
}

// MARK: - Rounding and wrapping to a dtype

/// Rounds a double to the nearest value representable in float dtype `dtype`.
@inline(__always)
public func roundToFloat(_ x: Double, _ dtype: DType) -> Double {
  switch dtype {
  case .f64: return x
  case .f32: return Double(Float(x))
  case .f16: return Double(Float(Float16(Float(x))))
  case .bf16: return Double(bfloat16Round(Float(x)))
  default: return x
  }
}

/// Rounds an f32 to the nearest bf16 (ties to even), returning it as an f32. NaN stays NaN.
public func bfloat16Round(_ x: Float) -> Float {
  if x.isNaN { return x }
  let bits = x.bitPattern
  let rounded = bits &+ 0x7FFF &+ ((bits >> 16) & 1)
  return Float(bitPattern: rounded & 0xFFFF_0000)
}

/// The 16 bits of a bf16 value (after rounding).
public func bfloat16Bits(_ x: Float) -> UInt16 { UInt16(truncatingIfNeeded: bfloat16Round(x).bitPattern >> 16) }
public func bfloat16FromBits(_ bits: UInt16) -> Float { Float(bitPattern: UInt32(bits) << 16) }

/// Wraps an integer to the width of integer dtype `dtype` (two's complement); i1 keeps the low bit.
@inline(__always)
public func wrapToInteger(_ x: Int64, _ dtype: DType) -> Int64 {
  switch dtype {
  case .i64: return x
  case .i32: return Int64(Int32(truncatingIfNeeded: x))
  case .i8: return Int64(Int8(truncatingIfNeeded: x))
  case .i1: return x & 1
  default: return x
  }
}

/// Float-to-integer conversion used by cast: truncation toward zero, saturating at Int64's range,
/// NaN to 0 (the result is then wrapped to the target width).
public func integerFromDouble(_ x: Double) -> Int64 {
  if x.isNaN { return 0 }
  if x >= 9.223372036854775807e18 { return Int64.max }
  if x <= -9.223372036854775808e18 { return Int64.min }
  return Int64(x.rounded(.towardZero))
}
