// ONNXModel — the parts of the ONNX schema (onnx/onnx.proto3) the importer reads, decoded from
// protobuf bytes with WireFormat: ModelProto, GraphProto, NodeProto, AttributeProto, TensorProto,
// ValueInfoProto and TypeProto (tensor types only). Field numbers are the schema's; unknown fields
// are skipped, as protobuf requires. Tensor payloads (raw_data or the typed lists) become TTIR
// tensors; element types TTIR has no counterpart for are kept as their ONNX code so the importer
// can name them.
import TTIR

/// Why an ONNX file cannot be imported.
public enum ONNXError: Error, CustomStringConvertible, Equatable {
  /// The bytes are not a well-formed ONNX model (truncated, wrong wire types, absurd sizes).
  case malformed(String)
  /// The model is well formed, but uses things TTIR cannot express: every one is listed.
  case unsupported([UnsupportedItem])

  public var description: String {
    switch self {
    case .malformed(let m): return "malformed ONNX model: \(m)"
    case .unsupported(let items):
      return "the ONNX model uses \(items.count) thing\(items.count == 1 ? "" : "s") ttfc cannot import:\n"
        + items.map { "  " + $0.description }.joined(separator: "\n")
    }
  }
}

/// One thing of a model that the importer does not translate: the node (name and op type) and why.
public struct UnsupportedItem: Equatable, Sendable, CustomStringConvertible {
  public var node: String
  public var opType: String
  public var reason: String
  public var description: String { "node '\(node)' (\(opType)): \(reason)" }
}

/// ONNX TensorProto.DataType codes.
public enum ONNXDataType {
  public static func dtype(_ code: Int) -> DType? {
    switch code {
    case 1: return .f32
    case 3: return .i8
    case 6: return .i32
    case 7: return .i64
    case 9: return .i1
    case 10: return .f16
    case 11: return .f64
    case 16: return .bf16
    default: return nil
    }
  }
  public static func name(_ code: Int) -> String {
    let names = [0: "UNDEFINED", 1: "FLOAT", 2: "UINT8", 3: "INT8", 4: "UINT16", 5: "INT16", 6: "INT32", 7: "INT64",
                 8: "STRING", 9: "BOOL", 10: "FLOAT16", 11: "DOUBLE", 12: "UINT32", 13: "UINT64", 14: "COMPLEX64",
                 15: "COMPLEX128", 16: "BFLOAT16", 17: "FLOAT8E4M3FN", 18: "FLOAT8E4M3FNUZ", 19: "FLOAT8E5M2",
                 20: "FLOAT8E5M2FNUZ", 21: "UINT4", 22: "INT4", 23: "FLOAT4E2M1"]
    return names[code] ?? "data type \(code)"
  }
}

/// One dimension of a tensor shape: a size, a named symbol, or unknown.
public enum ONNXDim: Equatable, Sendable, CustomStringConvertible {
  case value(Int64), param(String), unknown
  public var description: String {
    switch self { case .value(let n): return String(n); case .param(let s): return s; case .unknown: return "?" }
  }
}

/// A tensor type (TypeProto.Tensor), or a note of what other kind of type it was.
public struct ONNXType: Equatable, Sendable {
  public var elementType: Int = 0
  /// nil when the shape is absent (unknown rank).
  public var shape: [ONNXDim]?
  /// Set when the type is not a tensor type (sequence, map, optional, sparse tensor).
  public var nonTensorKind: String?
}

public struct ONNXValueInfo: Equatable, Sendable {
  public var name = ""
  public var type: ONNXType?
}

/// A TensorProto: dims, element type code, and its values decoded to a TTIR tensor when the
/// element type has a TTIR counterpart.
public struct ONNXTensor: Sendable {
  public var name = ""
  public var dims: [Int64] = []
  public var dataType = 0
  public var tensor: Tensor?
  /// Set when the data lives in an external file (not supported).
  public var isExternal = false
}

public enum ONNXAttributeValue: Sendable {
  case float(Float), int(Int64), string(String), tensor(ONNXTensor), graph
  case floats([Float]), ints([Int64]), strings([String]), tensors, graphs, other(Int)
}

public struct ONNXAttribute: Sendable {
  public var name = ""
  public var value: ONNXAttributeValue = .other(0)
  /// A reference to a function's attribute (only meaningful inside functions).
  public var refAttrName = ""
}

public struct ONNXNode: Sendable {
  public var inputs: [String] = []
  public var outputs: [String] = []
  public var name = ""
  public var opType = ""
  public var domain = ""
  public var attributes: [ONNXAttribute] = []
  public func attribute(_ name: String) -> ONNXAttribute? { attributes.first { $0.name == name } }
}

public struct ONNXGraph: Sendable {
  public var name = ""
  public var nodes: [ONNXNode] = []
  public var initializers: [ONNXTensor] = []
  public var inputs: [ONNXValueInfo] = []
  public var outputs: [ONNXValueInfo] = []
  public var valueInfo: [ONNXValueInfo] = []
  public var hasSparseInitializers = false
}

public struct ONNXModel: Sendable {
  public var irVersion: Int64 = 0
  /// Operator set versions by domain ("" is the default ONNX domain).
  public var opsets: [String: Int64] = [:]
  public var graph = ONNXGraph()
  public var hasFunctions = false

  /// Decodes a serialized ModelProto.
  public init(bytes: [UInt8]) throws(ONNXError) {
    var reader = WireReader(bytes[...], context: "ModelProto")
    var sawGraph = false
    while let f = try reader.next() {
      switch f.number {
      case 1: irVersion = try f.int64("ModelProto", "ir_version")
      case 7:
        graph = try ONNXGraph.decode(try f.message("ModelProto", "graph"), context: "ModelProto.graph")
        sawGraph = true
      case 8:
        var r = WireReader(try f.message("ModelProto", "opset_import"), context: "ModelProto.opset_import")
        var domain = "", version: Int64 = 0
        while let g = try r.next() {
          if g.number == 1 { domain = try g.string(r.context, "domain") }
          if g.number == 2 { version = try g.int64(r.context, "version") }
        }
        opsets[domain] = version
      case 25: hasFunctions = true
      default: break
      }
    }
    guard sawGraph else { throw .malformed("ModelProto has no graph (is this an ONNX model file?)") }
  }
}

extension ONNXGraph {
  static func decode(_ bytes: ArraySlice<UInt8>, context: String) throws(ONNXError) -> ONNXGraph {
    var g = ONNXGraph()
    var reader = WireReader(bytes, context: context)
    while let f = try reader.next() {
      switch f.number {
      case 1: g.nodes.append(try ONNXNode.decode(try f.message(context, "node"), context: "\(context).node[\(g.nodes.count)]"))
      case 2: g.name = try f.string(context, "name")
      case 5: g.initializers.append(try ONNXTensor.decode(try f.message(context, "initializer"), context: "\(context).initializer[\(g.initializers.count)]"))
      case 11: g.inputs.append(try ONNXValueInfo.decode(try f.message(context, "input"), context: "\(context).input"))
      case 12: g.outputs.append(try ONNXValueInfo.decode(try f.message(context, "output"), context: "\(context).output"))
      case 13: g.valueInfo.append(try ONNXValueInfo.decode(try f.message(context, "value_info"), context: "\(context).value_info"))
      case 15: g.hasSparseInitializers = true
      default: break
      }
    }
    return g
  }
}

extension ONNXNode {
  static func decode(_ bytes: ArraySlice<UInt8>, context: String) throws(ONNXError) -> ONNXNode {
    var n = ONNXNode()
    var reader = WireReader(bytes, context: context)
    while let f = try reader.next() {
      switch f.number {
      case 1: n.inputs.append(try f.string(context, "input"))
      case 2: n.outputs.append(try f.string(context, "output"))
      case 3: n.name = try f.string(context, "name")
      case 4: n.opType = try f.string(context, "op_type")
      case 5: n.attributes.append(try ONNXAttribute.decode(try f.message(context, "attribute"), context: "\(context).attribute"))
      case 7: n.domain = try f.string(context, "domain")
      default: break
      }
    }
    return n
  }
}

extension ONNXAttribute {
  static func decode(_ bytes: ArraySlice<UInt8>, context: String) throws(ONNXError) -> ONNXAttribute {
    var a = ONNXAttribute()
    var type = 0
    var f32: Float = 0, i64: Int64 = 0, s = "", t: ONNXTensor?
    var floats: [UInt64] = [], ints: [Int64] = [], strings: [String] = []
    var hasGraph = false, tensorCount = 0, graphCount = 0
    var reader = WireReader(bytes, context: context)
    while let f = try reader.next() {
      switch f.number {
      case 1: a.name = try f.string(context, "name")
      case 2: f32 = try f.float32(context, "f")
      case 3: i64 = try f.int64(context, "i")
      case 4: s = try f.string(context, "s")
      case 5: t = try ONNXTensor.decode(try f.message(context, "t"), context: "\(context).t")
      case 6: hasGraph = true
      case 7: try f.appendFixed(4, to: &floats, context, "floats")
      case 8: try f.appendVarints(to: &ints, context, "ints")
      case 9: strings.append(try f.string(context, "strings"))
      case 10: tensorCount += 1
      case 11: graphCount += 1
      case 20: type = Int(try f.int64(context, "type"))
      case 21: a.refAttrName = try f.string(context, "ref_attr_name")
      default: break
      }
    }
    switch type {
    case 1: a.value = .float(f32)
    case 2: a.value = .int(i64)
    case 3: a.value = .string(s)
    case 4:
      guard let t else { throw .malformed("\(context) '\(a.name)': a TENSOR attribute without a tensor") }
      a.value = .tensor(t)
    case 5: a.value = .graph
    case 6: a.value = .floats(floats.map { Float(bitPattern: UInt32(truncatingIfNeeded: $0)) })
    case 7: a.value = .ints(ints)
    case 8: a.value = .strings(strings)
    case 9: a.value = .tensors
    case 10: a.value = .graphs
    default:
      _ = (hasGraph, tensorCount, graphCount)
      a.value = .other(type)
    }
    return a
  }
}

extension ONNXValueInfo {
  static func decode(_ bytes: ArraySlice<UInt8>, context: String) throws(ONNXError) -> ONNXValueInfo {
    var v = ONNXValueInfo()
    var reader = WireReader(bytes, context: context)
    while let f = try reader.next() {
      switch f.number {
      case 1: v.name = try f.string(context, "name")
      case 2: v.type = try ONNXType.decode(try f.message(context, "type"), context: "\(context).type")
      default: break
      }
    }
    return v
  }
}

extension ONNXType {
  static func decode(_ bytes: ArraySlice<UInt8>, context: String) throws(ONNXError) -> ONNXType {
    var t = ONNXType()
    var reader = WireReader(bytes, context: context)
    while let f = try reader.next() {
      switch f.number {
      case 1:
        var r = WireReader(try f.message(context, "tensor_type"), context: "\(context).tensor_type")
        while let g = try r.next() {
          switch g.number {
          case 1: t.elementType = Int(try g.int64(r.context, "elem_type"))
          case 2:
            var dims: [ONNXDim] = []
            var sr = WireReader(try g.message(r.context, "shape"), context: "\(r.context).shape")
            while let d = try sr.next() {
              guard d.number == 1 else { continue }
              var dim = ONNXDim.unknown
              var dr = WireReader(try d.message(sr.context, "dim"), context: "\(sr.context).dim")
              while let e = try dr.next() {
                if e.number == 1 { dim = .value(try e.int64(dr.context, "dim_value")) }
                if e.number == 2 { dim = .param(try e.string(dr.context, "dim_param")) }
              }
              dims.append(dim)
            }
            t.shape = dims
          default: break
          }
        }
      case 4: t.nonTensorKind = "a sequence"
      case 5: t.nonTensorKind = "a map"
      case 9: t.nonTensorKind = "an optional"
      case 8: t.nonTensorKind = "a sparse tensor"
      default: break
      }
    }
    return t
  }
}

extension ONNXTensor {
  /// Largest element count accepted from a file (TTIR's own limit).
  static let maxElements = maxTensorElements

  static func decode(_ bytes: ArraySlice<UInt8>, context: String) throws(ONNXError) -> ONNXTensor {
    var t = ONNXTensor()
    var raw: ArraySlice<UInt8>?
    var ints32: [Int64] = [], ints64: [Int64] = [], floats: [UInt64] = [], doubles: [UInt64] = [], uints64: [Int64] = []
    var reader = WireReader(bytes, context: context)
    while let f = try reader.next() {
      switch f.number {
      case 1: try f.appendVarints(to: &t.dims, context, "dims")
      case 2: t.dataType = Int(try f.int64(context, "data_type"))
      case 4: try f.appendFixed(4, to: &floats, context, "float_data")
      case 5: try f.appendVarints(to: &ints32, context, "int32_data")
      case 7: try f.appendVarints(to: &ints64, context, "int64_data")
      case 8: t.name = try f.string(context, "name")
      case 9: raw = try f.message(context, "raw_data")
      case 10: try f.appendFixed(8, to: &doubles, context, "double_data")
      case 11: try f.appendVarints(to: &uints64, context, "uint64_data")
      case 13: t.isExternal = true
      case 14: if try f.int64(context, "data_location") == 1 { t.isExternal = true }
      default: break
      }
    }
    let where_ = t.name.isEmpty ? context : "\(context) '\(t.name)'"
    guard t.dims.allSatisfy({ $0 >= 0 }) else { throw .malformed("\(where_): negative dimension in \(t.dims)") }
    guard let count = elementCount(t.dims.map { Int($0) }) else {
      throw .malformed("\(where_): dims \(t.dims) describe more than 2^40 elements")
    }
    guard !t.isExternal, let dtype = ONNXDataType.dtype(t.dataType) else { return t }
    let shape = t.dims.map { Int($0) }
    if let raw {
      guard raw.count == count * dtype.byteSize else {
        throw .malformed("\(where_): raw_data holds \(raw.count) bytes; \(count) \(ONNXDataType.name(t.dataType)) elements need \(count * dtype.byteSize)")
      }
      var r = WireReader(raw, context: where_)
      switch dtype {
      case .f32: t.tensor = Tensor(.f32, shape: shape, floats: try (0..<count).map { _ throws(ONNXError) in Double(Float(bitPattern: UInt32(try r.readFixed(4)))) })
      case .f64: t.tensor = Tensor(.f64, shape: shape, floats: try (0..<count).map { _ throws(ONNXError) in Double(bitPattern: try r.readFixed(8)) })
      case .f16: t.tensor = Tensor(.f16, shape: shape, floats: try (0..<count).map { _ throws(ONNXError) in halfToDouble(UInt16(try r.readFixed(2))) })
      case .bf16: t.tensor = Tensor(.bf16, shape: shape, floats: try (0..<count).map { _ throws(ONNXError) in Double(bfloat16FromBits(UInt16(try r.readFixed(2)))) })
      case .i64: t.tensor = Tensor(.i64, shape: shape, ints: try (0..<count).map { _ throws(ONNXError) in Int64(bitPattern: try r.readFixed(8)) })
      case .i32: t.tensor = Tensor(.i32, shape: shape, ints: try (0..<count).map { _ throws(ONNXError) in Int64(Int32(bitPattern: UInt32(try r.readFixed(4)))) })
      case .i8: t.tensor = Tensor(.i8, shape: shape, ints: try (0..<count).map { _ throws(ONNXError) in Int64(Int8(bitPattern: UInt8(try r.readFixed(1)))) })
      case .i1: t.tensor = Tensor(.i1, shape: shape, ints: try (0..<count).map { _ throws(ONNXError) in try r.readFixed(1) != 0 ? 1 : 0 })
      }
      return t
    }
    func check(_ n: Int, _ field: String) throws(ONNXError) {
      guard n == count else { throw .malformed("\(where_): \(field) holds \(n) values, dims \(t.dims) need \(count)") }
    }
    switch dtype {
    case .f32:
      try check(floats.count, "float_data")
      t.tensor = Tensor(.f32, shape: shape, floats: floats.map { Double(Float(bitPattern: UInt32(truncatingIfNeeded: $0))) })
    case .f64:
      try check(doubles.count, "double_data")
      t.tensor = Tensor(.f64, shape: shape, floats: doubles.map { Double(bitPattern: $0) })
    case .i64:
      try check(ints64.count, "int64_data")
      t.tensor = Tensor(.i64, shape: shape, ints: ints64)
    case .i32, .i8, .i1:
      try check(ints32.count, "int32_data")
      t.tensor = Tensor(dtype, shape: shape, ints: ints32.map { dtype == .i1 ? ($0 != 0 ? 1 : 0) : wrapToInteger($0, dtype) })
    case .f16:
      try check(ints32.count, "int32_data")
      t.tensor = Tensor(.f16, shape: shape, floats: ints32.map { halfToDouble(UInt16(truncatingIfNeeded: $0)) })
    case .bf16:
      try check(ints32.count, "int32_data")
      t.tensor = Tensor(.bf16, shape: shape, floats: ints32.map { Double(bfloat16FromBits(UInt16(truncatingIfNeeded: $0))) })
    }
    return t
  }
}

/// IEEE binary16 bits to a double (exact).
func halfToDouble(_ bits: UInt16) -> Double {
  let sign: Double = bits & 0x8000 != 0 ? -1 : 1
  let exponent = Int((bits >> 10) & 0x1F)
  let fraction = Double(bits & 0x3FF)
  if exponent == 0 { return sign * fraction * 0x1p-24 }
  if exponent == 31 { return fraction == 0 ? sign * .infinity : .nan }
  return sign * (1 + fraction / 1024) * Double(sign: .plus, exponent: exponent - 15, significand: 1)
}
