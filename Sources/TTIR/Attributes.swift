// Attributes — the compile-time parameters of an op (`{axes = [0], keepdims = true}`) and the
// literal payload of a constant. Kept as a small closed enum so passes can hash and compare ops
// (CSE) and the printer has one canonical spelling for each value.

/// An attribute value: integer, bool, float, string, list or tensor literal.
public enum Attribute: Hashable, Sendable, CustomStringConvertible {
  case int(Int64)
  case float(Double)
  case bool(Bool)
  case string(String)
  case ints([Int64])
  case floats([Double])
  /// A constant's literal value (printed in op position, not in the attribute dictionary).
  case tensor(Tensor)

  public var kindName: String {
    switch self {
    case .int: return "integer"
    case .float: return "float"
    case .bool: return "bool"
    case .string: return "string"
    case .ints: return "integer list"
    case .floats: return "float list"
    case .tensor: return "tensor"
    }
  }

  public var intValue: Int? { if case .int(let v) = self { return Int(v) }; return nil }
  public var boolValue: Bool? { if case .bool(let v) = self { return v }; return nil }
  /// Integers are accepted where a float is expected (`value = 0`).
  public var doubleValue: Double? {
    switch self { case .float(let v): return v; case .int(let v): return Double(v); default: return nil }
  }
  public var intList: [Int]? {
    if case .ints(let v) = self { return v.map { Int($0) } }
    return nil
  }

  public var description: String {
    switch self {
    case .int(let v): return String(v)
    case .float(let v): return formatDouble(v)
    case .bool(let v): return v ? "true" : "false"
    case .string(let s): return quoteString(s)
    case .ints(let v): return "[" + v.map(String.init).joined(separator: ", ") + "]"
    case .floats(let v): return "[" + v.map(formatDouble).joined(separator: ", ") + "]"
    case .tensor(let t): return TensorLiteral.format(t, limit: nil)
    }
  }
}

/// An op's attributes: a dictionary printed in sorted key order, so printing is canonical.
public struct Attributes: Hashable, Sendable {
  public private(set) var storage: [String: Attribute] = [:]
  public init() {}
  public init(_ pairs: [String: Attribute]) { storage = pairs }

  public subscript(_ key: String) -> Attribute? {
    get { storage[key] }
    set { storage[key] = newValue }
  }
  public var isEmpty: Bool { storage.isEmpty }
  public var sortedPairs: [(key: String, value: Attribute)] {
    storage.sorted { $0.key < $1.key }.map { (key: $0.key, value: $0.value) }
  }
  public func int(_ key: String) -> Int? { storage[key]?.intValue }
  public func bool(_ key: String) -> Bool? { storage[key]?.boolValue }
  public func double(_ key: String) -> Double? { storage[key]?.doubleValue }
  public func ints(_ key: String) -> [Int]? { storage[key]?.intList }
  public func string(_ key: String) -> String? { if case .string(let s)? = storage[key] { return s }; return nil }
}

/// Shortest text that reads back as the same double; `inf`, `-inf`, `nan` spelled as in the lexer.
public func formatDouble(_ x: Double) -> String {
  if x.isNaN { return "nan" }
  if x.isInfinite { return x < 0 ? "-inf" : "inf" }
  return x.description
}

/// Shortest text for a value of float dtype `dtype` (f32/f16/bf16 values print as floats, so
/// 0.1 in f32 prints as `0.1`, not as its exact double expansion).
public func formatFloat(_ x: Double, _ dtype: DType) -> String {
  if dtype == .f64 || x.isNaN || x.isInfinite { return formatDouble(x) }
  if (dtype == .f16 || dtype == .bf16), x != 0, let short = shortestHalfText(x, dtype) { return short }
  return Float(x).description
}

/// The shortest decimal (fewest significant digits) that rounds back to `x` in f16 or bf16:
/// `constant 0.1 : f16` prints `0.1`, not the f32 digits of its f16 value (`0.099975586`).
func shortestHalfText(_ x: Double, _ dtype: DType) -> String? {
  let magnitude = abs(x)
  var exponent = 0
  var scaled = magnitude
  while scaled >= 10 { scaled /= 10; exponent += 1 }
  while scaled < 1 { scaled *= 10; exponent -= 1 }
  for digits in 1...9 {
    // magnitude ≈ m × 10^(exponent - digits + 1) with m of `digits` digits.
    var m = scaled
    for _ in 1..<digits { m *= 10 }
    let text = (x < 0 ? "-" : "") + "\(Int64(m.rounded()))e\(exponent - digits + 1)"
    guard let parsed = Double(text), roundToFloat(parsed, dtype) == x else { continue }
    return parsed.description
  }
  return nil
}

func quoteString(_ s: String) -> String {
  var out = "\""
  for ch in s.unicodeScalars {
    switch ch {
    case "\"": out += "\\\""
    case "\\": out += "\\\\"
    case "\n": out += "\\n"
    case "\t": out += "\\t"
    default:
      if ch.value < 0x20 { out += "\\u{\(String(ch.value, radix: 16))}" } else { out.unicodeScalars.append(ch) }
    }
  }
  return out + "\""
}

/// The nested-list spelling of tensor literals: `[[1.0, 2.0], [3.0, 4.0]]`, a bare scalar for rank
/// 0 (and for a splat), `true`/`false` for i1.
public enum TensorLiteral {
  public static func format(_ t: Tensor, limit: Int?) -> String {
    let elements: [String]
    switch t.storage {
    case .floats(let v): elements = v.map { formatFloat($0, t.dtype) }
    case .ints(let v): elements = t.dtype == .i1 ? v.map { $0 != 0 ? "true" : "false" } : v.map(String.init)
    }
    if t.shape.isEmpty { return elements.first ?? "" }
    if let limit, elements.count > limit {
      return "[" + elements.prefix(limit).joined(separator: ", ") + ", ...]"
    }
    var index = 0
    func nest(_ axis: Int) -> String {
      if axis == t.shape.count { defer { index += 1 }; return elements[index] }
      var parts: [String] = []
      parts.reserveCapacity(t.shape[axis])
      for _ in 0..<t.shape[axis] { parts.append(nest(axis + 1)) }
      return "[" + parts.joined(separator: ", ") + "]"
    }
    return nest(0)
  }
}
