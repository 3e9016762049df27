// Types of TTIR: element types (DType), dimensions that are static sizes or named symbols (Dim),
// and ranked tensor types (TensorType). Scalars are rank-0 tensors (`f32[]`). Symbolic dimensions
// name sizes known only at run time; two dims are equal only if both are the same number or the
// same symbol. The textual forms here are the ones the printer writes and the parser reads.

/// An element type: floats `f64`, `f32`, `f16`, `bf16`; integers `i64`, `i32`, `i8`; and `i1`
/// (booleans). The raw value is the IR spelling.
public enum DType: String, CaseIterable, Hashable, Sendable, CustomStringConvertible {
  case f64, f32, f16, bf16, i64, i32, i8, i1

  public var isFloat: Bool {
    switch self { case .f64, .f32, .f16, .bf16: return true; default: return false }
  }
  public var isInteger: Bool { !isFloat }
  public var isBool: Bool { self == .i1 }
  /// Bytes per element in memory and in .npy files (i1 is stored as one byte).
  public var byteSize: Int {
    switch self {
    case .f64, .i64: return 8
    case .f32, .i32: return 4
    case .f16, .bf16: return 2
    case .i8, .i1: return 1
    }
  }
  /// Bit width of an integer type (i1 is 1).
  public var integerBits: Int {
    switch self { case .i64: return 64; case .i32: return 32; case .i8: return 8; case .i1: return 1; default: return 0 }
  }
  public var description: String { rawValue }
}

/// One dimension of a tensor type: a static size, or a symbol (`B`) whose size is bound at run
/// time by the function's inputs.
public enum Dim: Hashable, Sendable, CustomStringConvertible {
  case known(Int)
  case symbol(String)

  public var staticSize: Int? { if case .known(let n) = self { return n }; return nil }
  public var isSymbolic: Bool { if case .symbol = self { return true }; return false }
  public var description: String {
    switch self { case .known(let n): return String(n); case .symbol(let s): return s }
  }
}

/// A ranked tensor type: an element type and its dimensions, written `f32[B, 784]` (`f32[]` is a
/// scalar).
public struct TensorType: Hashable, Sendable, CustomStringConvertible {
  public var dtype: DType
  public var dims: [Dim]

  public init(_ dtype: DType, _ dims: [Dim]) { self.dtype = dtype; self.dims = dims }
  public init(_ dtype: DType, shape: [Int]) { self.init(dtype, shape.map { .known($0) }) }
  public static func scalar(_ dtype: DType) -> TensorType { TensorType(dtype, []) }

  public var rank: Int { dims.count }
  public var isStatic: Bool { dims.allSatisfy { !$0.isSymbolic } }
  /// The concrete shape when every dimension is static.
  public var staticShape: [Int]? {
    var shape: [Int] = []
    shape.reserveCapacity(dims.count)
    for d in dims { guard let n = d.staticSize else { return nil }; shape.append(n) }
    return shape
  }
  /// The symbols this type mentions, in order of first appearance.
  public var symbols: [String] {
    var seen: [String] = []
    for case .symbol(let s) in dims where !seen.contains(s) { seen.append(s) }
    return seen
  }
  public func with(dtype: DType) -> TensorType { TensorType(dtype, dims) }
  public func with(dims: [Dim]) -> TensorType { TensorType(dtype, dims) }

  public var description: String {
    "\(dtype)[\(dims.map(\.description).joined(separator: ", "))]"
  }
}

/// Largest element count a tensor type may describe; keeps shape arithmetic far from overflow and
/// lets every consumer allocate without checking for absurd sizes (2^40 elements = 4 TiB of f32).
public let maxTensorElements = 1 << 40

/// The number of elements of a concrete shape, or nil when it overflows `maxTensorElements`.
public func elementCount(_ shape: [Int]) -> Int? {
  var count = 1
  for n in shape {
    guard n >= 0 else { return nil }
    let (product, overflow) = count.multipliedReportingOverflow(by: n)
    if overflow || product > maxTensorElements { return nil }
    count = product
  }
  return count
}

/// Row-major strides of a concrete shape.
public func rowMajorStrides(_ shape: [Int]) -> [Int] {
  var strides = [Int](repeating: 1, count: shape.count)
  var running = 1
  for axis in stride(from: shape.count - 1, through: 0, by: -1) {
    strides[axis] = running
    running *= shape[axis]
  }
  return strides
}

/// The product of `dims` must not be zero at run time: `op` (expanded into primitives that would
/// silently give NaN) has no answer for an empty batch.
public struct NonEmptyRequirement: Sendable, Equatable {
  public var dims: [Dim]
  public var op: String
  public init(dims: [Dim], op: String) { self.dims = dims; self.op = op }
}
