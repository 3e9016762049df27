// Checkpoint — training state in the safetensors format (8-byte little-endian header length, a JSON
// header naming each tensor's dtype, shape and byte range, then the raw little-endian data), so
// other tools can read it. ttfc stores parameters, optimizer slots, the step, the data-order
// state and a hash of the model in the header's __metadata__, plus a CRC-32 of the data and a
// CRC-32 of the header's content (every tensor's name, dtype, shape and offsets, and every
// metadata entry but the two CRCs), so an edited step, epoch, offset or tensor range is caught.
// Tensor ranges are validated as safetensors does: in the file, sized by dtype and shape, and
// packed in order from the start of the data without gaps or overlaps.
// Writing is atomic: a temporary file in the same directory, fsync, rename, fsync of the
// directory; a crash leaves the previous checkpoint intact. Loading verifies everything and
// names what is wrong: truncation, corruption (CRC), a different model, a missing tensor.

import Foundation
import TTIR
import TTRuntime
import TTSupport

/// Why a checkpoint could not be read, used or written; the message names the file and the cause.
public enum CheckpointError: Error, CustomStringConvertible, Equatable {
  case notFound(String)
  case corrupt(path: String, reason: String)
  case mismatch(path: String, reason: String)
  case cannotWrite(path: String, reason: String)
  public var description: String {
    switch self {
    case .notFound(let p): return "no checkpoint at '\(p)'"
    case .corrupt(let p, let r): return "checkpoint '\(p)' is corrupt: \(r)"
    case .mismatch(let p, let r): return "checkpoint '\(p)' does not match this run: \(r)"
    case .cannotWrite(let p, let r): return "cannot write checkpoint '\(p)': \(r)"
    }
  }
}

/// A safetensors file of named tensors and string metadata. ``TrainingLoop`` writes one with the
/// parameters (named like them), the optimizer slots (`SLOT.PARAM`, e.g. `m.w`) and the run's
/// position; any safetensors reader can open it.
public struct Checkpoint {
  /// The tensors in file order.
  public var tensors: [(name: String, tensor: Tensor)]
  /// The `__metadata__` entries (ttfc's: format, model hash, step, epoch, optimizer, CRCs, ...).
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

  /// The file's bytes, with the data and header CRCs added to the metadata.
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
    meta["crc32"] = String(CRC32.checksum(of: data))
    meta["header_crc32"] = String(Self.headerChecksum(entries: tensors.indices.map { k in
      let start = tensors[..<k].reduce(0) { $0 + $1.tensor.count * $1.tensor.dtype.byteSize }
      return (tensors[k].name, Self.dtypeNames[tensors[k].tensor.dtype]!, tensors[k].tensor.shape, start, start + tensors[k].tensor.count * tensors[k].tensor.dtype.byteSize)
    }, metadata: meta))
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

  /// CRC-32 of a canonical text of the header: entries sorted by name, then metadata sorted by
  /// key (without "crc32" and "header_crc32"); the same whatever JSON spelling the file uses.
  static func headerChecksum(entries: [(name: String, dtype: String, shape: [Int], start: Int, end: Int)], metadata: [String: String]) -> UInt32 {
    var text = ""
    for entry in entries.sorted(by: { $0.name < $1.name }) {
      text += "tensor \(entry.name.utf8.count):\(entry.name) \(entry.dtype) \(entry.shape) \(entry.start) \(entry.end)\n"
    }
    for (key, value) in metadata.sorted(by: { $0.key < $1.key }) where key != "crc32" && key != "header_crc32" {
      text += "meta \(key.utf8.count):\(key) \(value.utf8.count):\(value)\n"
    }
    return CRC32.checksum(of: text.utf8)
  }

  /// Reads and checks a file's bytes (`path` names it in errors): sizes, ranges and CRCs.
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
    guard header["__metadata__"] == nil || header["__metadata__"] is [String: String] else {
      throw corrupt("__metadata__ is not a map of strings")
    }
    let metadata = (header["__metadata__"] as? [String: String]) ?? [:]
    // First every entry's dtype, shape and byte range; tensors are read only once the ranges are
    // known to tile the data exactly.
    var entries: [(name: String, dtype: String, shape: [Int], start: Int, end: Int)] = []
    for (name, value) in header where name != "__metadata__" {
      guard let entry = value as? [String: Any], let dtypeName = entry["dtype"] as? String,
            dtypeNames.values.contains(dtypeName),
            let shape = entry["shape"] as? [Int], let offsets = entry["data_offsets"] as? [Int], offsets.count == 2 else {
        throw corrupt("entry '\(name)' is malformed")
      }
      let dtype = dtypeNames.first(where: { $0.value == dtypeName })!.key
      guard offsets[0] >= 0, offsets[1] >= offsets[0] else { throw corrupt("tensor '\(name)' has offsets \(offsets), not an ascending range") }
      guard let count = elementCount(shape), offsets[1] - offsets[0] == count * dtype.byteSize else {
        throw corrupt("entry '\(name)' has the wrong size for \(dtypeName)\(shape)")
      }
      guard offsets[1] <= dataCount else { throw corrupt("tensor '\(name)' runs past the end of the file (truncated)") }
      entries.append((name, dtypeName, shape, offsets[0], offsets[1]))
    }
    entries.sort { ($0.start, $0.end) < ($1.start, $1.end) }
    var end = 0
    for entry in entries {
      guard entry.start == end else {
        throw corrupt(entry.start < end ? "tensor '\(entry.name)' overlaps the tensor before it" : "a gap of \(entry.start - end) bytes before tensor '\(entry.name)'")
      }
      end = entry.end
    }
    guard end == dataCount else { throw corrupt("\(dataCount - end) unexpected bytes after the last tensor") }
    // A ttfc checkpoint must have its data CRC, and one of the current format its header CRC
    // too: without this rule, deleting the header CRC's key would switch the header check off.
    // Checkpoints of format 1 (ttfc before the header CRC) resume with the data CRC only, so
    // an upgrade never strands a run's trained work.
    let format = metadata["format"] ?? ""
    let writtenByTTFC = format.hasPrefix("ttfc-checkpoint")
    if writtenByTTFC && metadata["crc32"] == nil { throw corrupt("the data has no CRC-32 (crc32); it was edited") }
    let legacy = format == "ttfc-checkpoint-1" && metadata["header_crc32"] == nil
    if !legacy && (writtenByTTFC || metadata["crc32"] != nil || metadata["header_crc32"] != nil) {
      guard let stored = metadata["header_crc32"] else { throw corrupt("the header has no CRC-32 (header_crc32); it was edited or written by an older ttfc") }
      let actual = headerChecksum(entries: entries, metadata: metadata)
      guard String(actual) == stored else { throw corrupt("CRC-32 of the header is \(actual), the header says \(stored) (edited?)") }
    }
    if let stored = metadata["crc32"] {
      let actual = CRC32.checksum(of: bytes[dataStart...])
      guard String(actual) == stored else { throw corrupt("CRC-32 of the data is \(actual), the header says \(stored)") }
    }
    let tensors = entries.map { entry in
      let dtype = dtypeNames.first(where: { $0.value == entry.dtype })!.key
      return (entry.name, bytes.withUnsafeBytes { RawTensor.read(dtype, shape: entry.shape, from: $0.baseAddress! + dataStart + entry.start) }, entry.start)
    }
    return Checkpoint(tensors: tensors.sorted { $0.2 < $1.2 }.map { ($0.0, $0.1) }, metadata: metadata)
  }

  /// The format ttfc writes: 2 adds the header CRC (and the run's settings) to format 1.
  public static let currentFormat = "ttfc-checkpoint-2"
  /// Formats a resume accepts: format 1 files (no header CRC) still resume.
  public static let readableFormats: Set<String> = ["ttfc-checkpoint-1", "ttfc-checkpoint-2"]

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

  /// Reads and checks the checkpoint at `path`.
  public static func read(from path: String) throws(CheckpointError) -> Checkpoint {
    guard FileManager.default.fileExists(atPath: path) else { throw .notFound(path) }
    guard let data = FileManager.default.contents(atPath: path) else { throw .corrupt(path: path, reason: "unreadable") }
    return try decode([UInt8](data), path: path)
  }
}
