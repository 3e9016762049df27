// WireFormat — a small reader of the protobuf wire format, enough for ONNX files: varints,
// fixed32/fixed64, length-delimited fields (sub-messages, strings, packed repeated numbers).
// Every read is bounds-checked; a truncated field, a wire type a field does not allow, or a
// length past the end is a named ONNXError.malformed, never a crash.

/// A protobuf wire type (the low three bits of a field key).
enum WireType: Int {
  case varint = 0, fixed64 = 1, lengthDelimited = 2, startGroup = 3, endGroup = 4, fixed32 = 5
}

/// One field of a message: its number, wire type and payload.
struct WireField {
  let number: Int
  let wireType: WireType
  /// The varint, or the fixed32/fixed64 bits.
  let scalar: UInt64
  /// The bytes of a length-delimited field.
  let bytes: ArraySlice<UInt8>
}

/// Reads the fields of one message from a byte range.
struct WireReader {
  private let bytes: ArraySlice<UInt8>
  private var position: Int
  /// What is being read, for error messages (`ModelProto.graph.node[3]`).
  let context: String

  init(_ bytes: ArraySlice<UInt8>, context: String) {
    self.bytes = bytes; self.position = bytes.startIndex; self.context = context
  }

  var isAtEnd: Bool { position >= bytes.endIndex }

  mutating func readVarint() throws(ONNXError) -> UInt64 {
    var result: UInt64 = 0
    var shift: UInt64 = 0
    while true {
      guard position < bytes.endIndex else { throw .malformed("\(context): truncated varint") }
      let byte = bytes[position]
      position += 1
      if shift == 63 && byte > 1 { throw .malformed("\(context): varint longer than 64 bits") }
      result |= UInt64(byte & 0x7F) << shift
      if byte & 0x80 == 0 { return result }
      shift += 7
      if shift > 63 { throw .malformed("\(context): varint longer than 10 bytes") }
    }
  }

  mutating func readFixed(_ size: Int) throws(ONNXError) -> UInt64 {
    guard bytes.endIndex - position >= size else { throw .malformed("\(context): truncated fixed\(size * 8) field") }
    var value: UInt64 = 0
    for k in 0..<size { value |= UInt64(bytes[position + k]) << (8 * UInt64(k)) }
    position += size
    return value
  }

  /// The next field, or nil at the end of the message.
  mutating func next() throws(ONNXError) -> WireField? {
    guard !isAtEnd else { return nil }
    let key = try readVarint()
    let number = Int(truncatingIfNeeded: key >> 3)
    guard number >= 1 && number < (1 << 29) else { throw .malformed("\(context): invalid field number \(key >> 3)") }
    guard let wireType = WireType(rawValue: Int(key & 7)) else {
      throw .malformed("\(context): field \(number) has unknown wire type \(key & 7)")
    }
    switch wireType {
    case .varint: return WireField(number: number, wireType: wireType, scalar: try readVarint(), bytes: [])
    case .fixed64: return WireField(number: number, wireType: wireType, scalar: try readFixed(8), bytes: [])
    case .fixed32: return WireField(number: number, wireType: wireType, scalar: try readFixed(4), bytes: [])
    case .lengthDelimited:
      let length = try readVarint()
      guard length <= UInt64(bytes.endIndex - position) else {
        throw .malformed("\(context): field \(number) claims \(length) bytes, only \(bytes.endIndex - position) remain")
      }
      let start = position
      position += Int(length)
      return WireField(number: number, wireType: wireType, scalar: 0, bytes: bytes[start..<position])
    case .startGroup, .endGroup:
      throw .malformed("\(context): field \(number) uses the deprecated group wire type")
    }
  }
}

extension WireField {
  func expect(_ type: WireType, _ context: String, _ name: String) throws(ONNXError) {
    guard wireType == type else {
      throw .malformed("\(context): field '\(name)' (\(number)) has wire type \(wireType.rawValue), expected \(type.rawValue)")
    }
  }
  func int64(_ context: String, _ name: String) throws(ONNXError) -> Int64 {
    try expect(.varint, context, name)
    return Int64(bitPattern: scalar)
  }
  func string(_ context: String, _ name: String) throws(ONNXError) -> String {
    try expect(.lengthDelimited, context, name)
    return String(decoding: bytes, as: UTF8.self)
  }
  func message(_ context: String, _ name: String) throws(ONNXError) -> ArraySlice<UInt8> {
    try expect(.lengthDelimited, context, name)
    return bytes
  }
  func float32(_ context: String, _ name: String) throws(ONNXError) -> Float {
    try expect(.fixed32, context, name)
    return Float(bitPattern: UInt32(truncatingIfNeeded: scalar))
  }

  /// A repeated varint field, packed or not, appended to `out`.
  func appendVarints(to out: inout [Int64], _ context: String, _ name: String) throws(ONNXError) {
    switch wireType {
    case .varint: out.append(Int64(bitPattern: scalar))
    case .lengthDelimited:
      var reader = WireReader(bytes, context: "\(context).\(name)")
      while !reader.isAtEnd { out.append(Int64(bitPattern: try reader.readVarint())) }
    default: throw .malformed("\(context): field '\(name)' (\(number)) has wire type \(wireType.rawValue), expected a varint list")
    }
  }

  /// A repeated fixed-width field (4 or 8 bytes), packed or not, as raw bits appended to `out`.
  func appendFixed(_ size: Int, to out: inout [UInt64], _ context: String, _ name: String) throws(ONNXError) {
    let single: WireType = size == 4 ? .fixed32 : .fixed64
    switch wireType {
    case single: out.append(scalar)
    case .lengthDelimited:
      guard bytes.count % size == 0 else { throw .malformed("\(context): packed field '\(name)' is \(bytes.count) bytes, not a multiple of \(size)") }
      var reader = WireReader(bytes, context: "\(context).\(name)")
      while !reader.isAtEnd { out.append(try reader.readFixed(size)) }
    default: throw .malformed("\(context): field '\(name)' (\(number)) has wire type \(wireType.rawValue), expected fixed\(size * 8) values")
    }
  }
}
