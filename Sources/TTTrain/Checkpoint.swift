// Checkpoint — training state in the safetensors format (8-byte little-endian header length, a JSON
// header naming each tensor's dtype, shape and byte range, then the raw little-endian data), so
// other tools can read it. ttfc stores parameters, optimizer slots, the step, the data-order
// state and a hash of the model in the header's __metadata__, plus a CRC-32 of the data.
// Writing is atomic: a temporary file in the same directory, fsync, rename, fsync of the
// directory; a crash leaves the previous checkpoint intact. Loading verifies everything and
// names what is wrong: truncation, corruption (CRC), a different model, a missing tensor.

import Foundation
import TTCodegen
import TTIR
import TTRuntime

public enum CheckpointError: Error, CustomStringConvertible, Equatable {
  case notFound(String)
  case corrupt(path: String, reason: String)
  case mismatch(path: String, reason: String)
  case cannotWrite(path: String, reason: String)
  public var description: String {
    switch self {
    case .notFound(let p): return "no checkpoint at '\(p)'"
    case .corrupt(let p, let r): return "checkpoint '\(p)' is corrupt: \(r)"
    case .mismatch(let p, let r): return "checkpoint '\(p)' does not match this model: \(r)"
    case .cannotWrite(let p, let r): return "cannot write checkpoint '\(p)': \(r)"
    }
  }
}

public struct Checkpoint {
  public var tensors: [(name: String, tensor: Tensor)]
  public var metadata: [String: String]

  public init(tensors: [(name: String, tensor: Tensor)], metadata: [String: String]) {
    self.tensors = tensors; self.metadata = metadata
  }

  static let dtypeNames: [DType: String] = [.f64: "F64", .f32: "F32", .f16: "F16", .bf16: "BF16", .i64: "I64", .i32: "I32", .i8: "I8", .i1: "BOOL"]

  /// A stable 64-bit FNV-1a hash of the model's canonical text.
  public static func modelHash(_ module: Module) -> String {
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    for byte in Printer.print(module).utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
    return String(hash, radix: 16)
  }

  public func encode() -> [UInt8] {
    var data: [UInt8] = []
    var header: [String: Any] = [:]
    for (name, tensor) in tensors {
      let start = data.count
      let bytes = tensor.count * tensor.dtype.byteSize
      data += [UInt8](repeating: 0, count: bytes)
      data.withUnsafeMutableBytes { RawTensor.write(tensor, to: $0.baseAddress! + start) }
      header[name] = ["dtype": Self.dtypeNames[tensor.dtype]!, "shape": tensor.shape, "data_offsets": [start, data.count]]
    }
    var meta = metadata
    meta["crc32"] = String(data.withUnsafeBytes { Checksum.crc32($0) })
    header["__metadata__"] = meta
    var json = (try? JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])) ?? Data("{}".utf8)
    while (json.count + 8) % 8 != 0 { json.append(0x20) }   // align the data to 8 bytes
    var out: [UInt8] = []
    var length = UInt64(json.count).littleEndian
    withUnsafeBytes(of: &length) { out += $0 }
    out += json
    out += data
    return out
  }

  public static func decode(_ bytes: [UInt8], path: String) throws(CheckpointError) -> Checkpoint {
    func corrupt(_ reason: String) -> CheckpointError { .corrupt(path: path, reason: reason) }
    guard bytes.count >= 8 else { throw corrupt("shorter than the 8-byte header length") }
    var length: UInt64 = 0
    for i in 0..<8 { length |= UInt64(bytes[i]) << (8 * UInt64(i)) }
    guard length <= UInt64(bytes.count - 8), length < 1 << 30 else { throw corrupt("header length \(length) exceeds the file (truncated?)") }
    let headerBytes = Data(bytes[8..<(8 + Int(length))])
    guard let header = (try? JSONSerialization.jsonObject(with: headerBytes)) as? [String: Any] else { throw corrupt("the header is not JSON") }
    let dataStart = 8 + Int(length)
    let dataCount = bytes.count - dataStart
    let metadata = (header["__metadata__"] as? [String: String]) ?? [:]
    var tensors: [(String, Tensor, Int)] = []
    var end = 0
    for (name, value) in header where name != "__metadata__" {
      guard let entry = value as? [String: Any], let dtypeName = entry["dtype"] as? String,
            let dtype = dtypeNames.first(where: { $0.value == dtypeName })?.key,
            let shape = entry["shape"] as? [Int], let offsets = entry["data_offsets"] as? [Int], offsets.count == 2 else {
        throw corrupt("entry '\(name)' is malformed")
      }
      guard let count = elementCount(shape), offsets[0] >= 0, offsets[1] - offsets[0] == count * dtype.byteSize else {
        throw corrupt("entry '\(name)' has the wrong size for \(dtypeName)\(shape)")
      }
      guard offsets[1] <= dataCount else { throw corrupt("tensor '\(name)' runs past the end of the file (truncated)") }
      let tensor = bytes.withUnsafeBytes { RawTensor.read(dtype, shape: shape, from: $0.baseAddress! + dataStart + offsets[0]) }
      tensors.append((name, tensor, offsets[0]))
      end = max(end, offsets[1])
    }
    guard end == dataCount else { throw corrupt("\(dataCount - end) unexpected bytes after the last tensor") }
    if let stored = metadata["crc32"] {
      let actual = bytes.withUnsafeBytes { Checksum.crc32(UnsafeRawBufferPointer(rebasing: $0[dataStart...])) }
      guard String(actual) == stored else { throw corrupt("CRC-32 of the data is \(actual), the header says \(stored)") }
    }
    return Checkpoint(tensors: tensors.sorted { $0.2 < $1.2 }.map { ($0.0, $0.1) }, metadata: metadata)
  }

  /// Writes atomically to `path` (temporary file, fsync, rename, fsync of the directory).
  public func write(to path: String) throws(CheckpointError) {
    try Self.writeAtomically(encode(), to: path)
  }

  /// Writes `bytes` to `path` atomically (temporary file, fsync, rename, fsync of the directory).
  public static func writeAtomically(_ bytes: [UInt8], to path: String) throws(CheckpointError) {
    let directory = (path as NSString).deletingLastPathComponent
    do { try FileManager.default.createDirectory(atPath: directory.isEmpty ? "." : directory, withIntermediateDirectories: true) }
    catch { throw .cannotWrite(path: path, reason: error.localizedDescription) }
    if let reason = AtomicFile.write(bytes, to: path) { throw .cannotWrite(path: path, reason: reason) }
  }

  public static func read(from path: String) throws(CheckpointError) -> Checkpoint {
    guard FileManager.default.fileExists(atPath: path) else { throw .notFound(path) }
    guard let data = FileManager.default.contents(atPath: path) else { throw .corrupt(path: path, reason: "unreadable") }
    return try decode([UInt8](data), path: path)
  }
}
