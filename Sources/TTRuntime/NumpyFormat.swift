// NumpyFormat — reading and writing NumPy `.npy` tensors (format versions 1, 2 and 3; little-endian,
// C order) for the dtypes of TTIR. bf16 has no NumPy dtype of its own; it is written with descr
// '<V2' (two raw bytes, the ml_dtypes convention) and read back from '<V2' or '|V2'. Anything else
// (big-endian, Fortran order, object arrays, other dtypes, truncated data) is a named NumpyError.

import Foundation
import TTIR

/// Why an `.npy` or `.npz` file could not be read or written.
public enum NumpyError: Error, Equatable, CustomStringConvertible {
  case cannotRead(path: String, reason: String)
  case cannotWrite(path: String, reason: String)
  case notNpy(String)
  case unsupportedDType(String)
  case fortranOrder
  case truncated(expected: Int, got: Int)
  case badHeader(String)
  case badArchive(String)
  case missingArray(name: String, available: [String])

  public var description: String {
    switch self {
    case .cannotRead(let p, let r): return "cannot read '\(p)': \(r)"
    case .cannotWrite(let p, let r): return "cannot write '\(p)': \(r)"
    case .notNpy(let r): return "not a .npy file: \(r)"
    case .unsupportedDType(let d):
      return "unsupported dtype '\(d)' (supported: <f8 <f4 <f2 <V2(bf16) <i8 <i4 |i1 |b1, little-endian)"
    case .fortranOrder: return "Fortran-ordered arrays are not supported; save with np.ascontiguousarray"
    case .truncated(let e, let g): return "array data is truncated: expected \(e) bytes, found \(g)"
    case .badHeader(let r): return "malformed .npy header: \(r)"
    case .badArchive(let r): return "malformed .npz archive: \(r)"
    case .missingArray(let n, let a): return "no array '\(n)' in the archive (it has: \(a.joined(separator: ", ")))"
    }
  }
}

/// Reads and writes NumPy `.npy` files (format versions 1 to 3).
public enum NumpyFormat {
  static let magic: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]  // \x93NUMPY

  public static func descr(for dtype: DType) -> String {
    switch dtype {
    case .f64: return "<f8"
    case .f32: return "<f4"
    case .f16: return "<f2"
    case .bf16: return "<V2"
    case .i64: return "<i8"
    case .i32: return "<i4"
    case .i8: return "|i1"
    case .i1: return "|b1"
    }
  }

  static func dtype(forDescr descr: String) throws(NumpyError) -> DType {
    var d = descr
    if d.hasPrefix("=") { d = "<" + d.dropFirst() }
    if d.hasPrefix(">") {
      // Single-byte types are endianness-free; others are not supported big-endian.
      if d == ">i1" || d == ">b1" || d == ">V2" { d = "|" + d.dropFirst() } else { throw .unsupportedDType(descr) }
    }
    switch d {
    case "<f8": return .f64
    case "<f4": return .f32
    case "<f2": return .f16
    case "<V2", "|V2": return .bf16
    case "<i8": return .i64
    case "<i4": return .i32
    case "|i1", "<i1": return .i8
    case "|b1", "<b1", "|?": return .i1
    default: throw .unsupportedDType(descr)
    }
  }

  // MARK: reading

  public static func read(path: String) throws(NumpyError) -> Tensor {
    try decode(readFile(path))
  }

  static func readFile(_ path: String) throws(NumpyError) -> [UInt8] {
    guard FileManager.default.fileExists(atPath: path) else { throw .cannotRead(path: path, reason: "no such file") }
    do { return [UInt8](try Data(contentsOf: URL(fileURLWithPath: path))) }
    catch { throw .cannotRead(path: path, reason: error.localizedDescription) }
  }

  public static func decode(_ bytes: [UInt8]) throws(NumpyError) -> Tensor {
    guard bytes.count >= 10, Array(bytes[0..<6]) == magic else { throw .notNpy("missing the \\x93NUMPY magic") }
    let major = bytes[6]
    let headerLength: Int
    let headerStart: Int
    switch major {
    case 1:
      headerLength = Int(bytes[8]) | Int(bytes[9]) << 8
      headerStart = 10
    case 2, 3:
      guard bytes.count >= 12 else { throw .notNpy("file ends inside the header length") }
      headerLength = Int(bytes[8]) | Int(bytes[9]) << 8 | Int(bytes[10]) << 16 | Int(bytes[11]) << 24
      headerStart = 12
    default:
      throw .notNpy("unknown format version \(major).\(bytes[7])")
    }
    guard headerStart + headerLength <= bytes.count else { throw .notNpy("file ends inside the header") }
    let header = String(decoding: bytes[headerStart..<(headerStart + headerLength)], as: UTF8.self)
    let (descr, fortran, shape) = try parseHeader(header)
    if fortran { throw .fortranOrder }
    let dtype = try dtype(forDescr: descr)
    guard let count = elementCount(shape) else { throw .badHeader("shape \(shape) is too large") }
    let dataStart = headerStart + headerLength
    let needed = count * dtype.byteSize
    guard bytes.count - dataStart >= needed else { throw .truncated(expected: needed, got: bytes.count - dataStart) }
    return decodeElements(bytes, offset: dataStart, dtype: dtype, shape: shape, count: count)
  }

  static func decodeElements(_ bytes: [UInt8], offset: Int, dtype: DType, shape: [Int], count: Int) -> Tensor {
    func word<T: FixedWidthInteger>(_ i: Int, _: T.Type) -> T {
      var v: T = 0
      let size = MemoryLayout<T>.size
      let base = offset + i * size
      for b in 0..<size { v |= T(truncatingIfNeeded: bytes[base + b]) << (8 * b) }
      return v
    }
    switch dtype {
    case .f64: return Tensor(dtype, shape: shape, floats: (0..<count).map { Double(bitPattern: word($0, UInt64.self)) })
    case .f32: return Tensor(dtype, shape: shape, floats: (0..<count).map { Double(Float(bitPattern: word($0, UInt32.self))) })
    case .f16: return Tensor(dtype, shape: shape, floats: (0..<count).map { Double(Float(Float16(bitPattern: word($0, UInt16.self)))) })
    case .bf16: return Tensor(dtype, shape: shape, floats: (0..<count).map { Double(bfloat16FromBits(word($0, UInt16.self))) })
    case .i64: return Tensor(dtype, shape: shape, ints: (0..<count).map { Int64(bitPattern: word($0, UInt64.self)) })
    case .i32: return Tensor(dtype, shape: shape, ints: (0..<count).map { Int64(Int32(bitPattern: word($0, UInt32.self))) })
    case .i8: return Tensor(dtype, shape: shape, ints: (0..<count).map { Int64(Int8(bitPattern: bytes[offset + $0])) })
    case .i1: return Tensor(dtype, shape: shape, ints: (0..<count).map { bytes[offset + $0] != 0 ? 1 : 0 })
    }
  }

  /// Parses the Python-literal header: {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }.
  static func parseHeader(_ header: String) throws(NumpyError) -> (String, Bool, [Int]) {
    func value(after key: String) throws(NumpyError) -> Substring {
      guard let keyRange = header.range(of: "'\(key)'") ?? header.range(of: "\"\(key)\"") else {
        throw .badHeader("no '\(key)' entry")
      }
      var rest = header[keyRange.upperBound...].drop { $0 == " " }
      guard rest.first == ":" else { throw .badHeader("expected ':' after '\(key)'") }
      rest = rest.dropFirst().drop { $0 == " " }
      return rest
    }
    var descrText = try value(after: "descr")
    guard let quote = descrText.first, quote == "'" || quote == "\"" else {
      throw .unsupportedDType(String(descrText.prefix(20)))  // structured dtypes are lists
    }
    descrText = descrText.dropFirst()
    guard let end = descrText.firstIndex(of: quote) else { throw .badHeader("unterminated descr") }
    let descr = String(descrText[..<end])
    let fortranText = try value(after: "fortran_order")
    let fortran: Bool
    if fortranText.hasPrefix("True") { fortran = true }
    else if fortranText.hasPrefix("False") { fortran = false }
    else { throw .badHeader("fortran_order is neither True nor False") }
    let shapeText = try value(after: "shape")
    guard shapeText.first == "(", let close = shapeText.firstIndex(of: ")") else { throw .badHeader("shape is not a tuple") }
    var shape: [Int] = []
    for part in shapeText[shapeText.index(after: shapeText.startIndex)..<close].split(separator: ",") {
      let trimmed = part.trimmingCharacters(in: .whitespaces).replacingOccurrences(of: "L", with: "")
      if trimmed.isEmpty { continue }
      guard let n = Int(trimmed), n >= 0 else { throw .badHeader("shape entry '\(trimmed)' is not a size") }
      shape.append(n)
    }
    return (descr, fortran, shape)
  }

  // MARK: writing

  public static func encode(_ tensor: Tensor) -> [UInt8] {
    let shapeText = tensor.shape.isEmpty ? "()" : tensor.shape.count == 1 ? "(\(tensor.shape[0]),)"
      : "(" + tensor.shape.map(String.init).joined(separator: ", ") + ")"
    var header = "{'descr': '\(descr(for: tensor.dtype))', 'fortran_order': False, 'shape': \(shapeText), }"
    // Pad with spaces so the data starts on a 64-byte boundary; the header ends with '\n'.
    let useVersion2 = header.utf8.count + 11 > 65535
    let prefix = useVersion2 ? 12 : 10
    let total = prefix + header.utf8.count + 1
    header += String(repeating: " ", count: (64 - total % 64) % 64) + "\n"
    var out = magic
    let length = header.utf8.count
    if useVersion2 {
      out += [2, 0, UInt8(length & 0xFF), UInt8((length >> 8) & 0xFF), UInt8((length >> 16) & 0xFF), UInt8(length >> 24)]
    } else {
      out += [1, 0, UInt8(length & 0xFF), UInt8(length >> 8)]
    }
    out += Array(header.utf8)
    out.reserveCapacity(out.count + tensor.count * tensor.dtype.byteSize)
    func put<T: FixedWidthInteger>(_ v: T) {
      for b in 0..<MemoryLayout<T>.size { out.append(UInt8(truncatingIfNeeded: v >> (8 * b))) }
    }
    switch tensor.dtype {
    case .f64: for v in tensor.doubles { put(v.bitPattern) }
    case .f32: for v in tensor.doubles { put(Float(v).bitPattern) }
    case .f16: for v in tensor.doubles { put(Float16(Float(v)).bitPattern) }
    case .bf16: for v in tensor.doubles { put(bfloat16Bits(Float(v))) }
    case .i64: for v in tensor.int64s { put(UInt64(bitPattern: v)) }
    case .i32: for v in tensor.int64s { put(UInt32(truncatingIfNeeded: v)) }
    case .i8, .i1: for v in tensor.int64s { out.append(UInt8(truncatingIfNeeded: v)) }
    }
    return out
  }

  public static func write(_ tensor: Tensor, path: String) throws(NumpyError) {
    try writeFile(encode(tensor), path: path)
  }

  static func writeFile(_ bytes: [UInt8], path: String) throws(NumpyError) {
    do { try Data(bytes).write(to: URL(fileURLWithPath: path), options: .atomic) }
    catch { throw .cannotWrite(path: path, reason: error.localizedDescription) }
  }
}
