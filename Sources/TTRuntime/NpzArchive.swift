// NpzArchive — `.npz` files: zip archives of `.npy` members, as np.savez (stored) and
// np.savez_compressed (deflate) write them, including the ZIP64 records NumPy uses for large
// members. Reading inflates with zlib; writing stores members uncompressed with their CRC-32.

import CZlib
import Foundation
import TTIR
import TTSupport

/// Reads and writes NumPy `.npz` archives of named tensors.
public enum NpzArchive {
  /// Reads every array in the archive, keyed by member name without the `.npy` suffix.
  public static func read(path: String) throws(NumpyError) -> [(name: String, tensor: Tensor)] {
    try decode(NumpyFormat.readFile(path))
  }

  public static func decode(_ bytes: [UInt8]) throws(NumpyError) -> [(name: String, tensor: Tensor)] {
    func u16(_ i: Int) throws(NumpyError) -> Int {
      guard i >= 0, i + 2 <= bytes.count else { throw .badArchive("record runs past the end of the file") }
      return Int(bytes[i]) | Int(bytes[i + 1]) << 8
    }
    func u32(_ i: Int) throws(NumpyError) -> Int { try u16(i) | (try u16(i + 2)) << 16 }
    func u64(_ i: Int) throws(NumpyError) -> Int {
      let low = try u32(i), high = try u32(i + 4)
      guard high < (1 << 30) else { throw .badArchive("size out of range") }
      return low | high << 32
    }
    // End of central directory: the last 0x06054b50 signature (a comment of up to 64 KiB may follow).
    guard bytes.count >= 22 else { throw .badArchive("too short to be a zip file") }
    var eocd = -1
    var i = bytes.count - 22
    let lowest = Swift.max(0, bytes.count - 22 - 65535)
    while i >= lowest {
      if bytes[i] == 0x50 && bytes[i + 1] == 0x4B && bytes[i + 2] == 0x05 && bytes[i + 3] == 0x06 { eocd = i; break }
      i -= 1
    }
    guard eocd >= 0 else { throw .badArchive("no end-of-central-directory record (not a zip file)") }
    var entryCount = try u16(eocd + 10)
    var directoryOffset = try u32(eocd + 16)
    if directoryOffset == 0xFFFF_FFFF || entryCount == 0xFFFF {
      // ZIP64: the locator sits just before the EOCD and points at the ZIP64 EOCD record.
      let locator = eocd - 20
      guard locator >= 0, try u32(locator) == 0x0706_4b50 else { throw .badArchive("missing ZIP64 locator") }
      let record = try u64(locator + 8)
      guard try u32(record) == 0x0606_4b50 else { throw .badArchive("bad ZIP64 end record") }
      entryCount = try u64(record + 32)
      directoryOffset = try u64(record + 48)
    }
    var result: [(String, Tensor)] = []
    var cursor = directoryOffset
    for _ in 0..<entryCount {
      guard try u32(cursor) == 0x0201_4b50 else { throw .badArchive("bad central directory entry") }
      let method = try u16(cursor + 10)
      let storedCRC = try u32(cursor + 16)
      var compressedSize = try u32(cursor + 20)
      var size = try u32(cursor + 24)
      let nameLength = try u16(cursor + 28), extraLength = try u16(cursor + 30), commentLength = try u16(cursor + 32)
      var localOffset = try u32(cursor + 42)
      guard cursor + 46 + nameLength <= bytes.count else { throw .badArchive("entry name runs past the end") }
      let name = String(decoding: bytes[(cursor + 46)..<(cursor + 46 + nameLength)], as: UTF8.self)
      // ZIP64 extended information: the 0xFFFFFFFF fields, in order, in extra field 0x0001.
      var extra = cursor + 46 + nameLength
      let extraEnd = extra + extraLength
      while extra + 4 <= extraEnd {
        let tag = try u16(extra), length = try u16(extra + 2)
        if tag == 1 {
          var field = extra + 4
          if size == 0xFFFF_FFFF { size = try u64(field); field += 8 }
          if compressedSize == 0xFFFF_FFFF { compressedSize = try u64(field); field += 8 }
          if localOffset == 0xFFFF_FFFF { localOffset = try u64(field) }
        }
        extra += 4 + length
      }
      cursor = extraEnd + commentLength

      guard try u32(localOffset) == 0x0403_4b50 else { throw .badArchive("bad local header for '\(name)'") }
      let dataStart = localOffset + 30 + (try u16(localOffset + 26)) + (try u16(localOffset + 28))
      guard dataStart + compressedSize <= bytes.count else { throw .badArchive("member '\(name)' is truncated") }
      let raw = Array(bytes[dataStart..<(dataStart + compressedSize)])
      let member: [UInt8]
      switch method {
      case 0: member = raw
      case 8: member = try inflate(raw, expectedSize: size, name: name)
      default: throw .badArchive("member '\(name)' uses compression method \(method) (only stored and deflate are supported)")
      }
      guard member.count == size else { throw .badArchive("member '\(name)' has the wrong size") }
      guard CRC32.checksum(of: member) == UInt32(storedCRC) else { throw .badArchive("CRC mismatch in member '\(name)' (the file is corrupt)") }
      let key = name.hasSuffix(".npy") ? String(name.dropLast(4)) : name
      do { result.append((key, try NumpyFormat.decode(member))) }
      catch { throw .badArchive("member '\(name)': \(error)") }
    }
    return result
  }

  /// Deflate never expands data more than about 1032 to 1, so a member claiming more than this
  /// many bytes per compressed byte is forged (a 200-byte file claiming 1 TiB).
  static let maximumInflateRatio = 1032

  static func inflate(_ input: [UInt8], expectedSize: Int, name: String) throws(NumpyError) -> [UInt8] {
    let (limit, overflow) = input.count.multipliedReportingOverflow(by: maximumInflateRatio)
    guard expectedSize >= 0, overflow || expectedSize <= limit + 64 else {
      throw .badArchive("member '\(name)' claims \(expectedSize) bytes from \(input.count) compressed bytes, more than deflate can produce (the archive is corrupt)")
    }
    if let shortfall = MemoryBudget.shortfall(expectedSize) { throw .badArchive("member '\(name)' \(shortfall)") }
    var output = [UInt8](repeating: 0, count: expectedSize)
    var stream = z_stream()
    var status = inflateInit2_(&stream, -15, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size))
    guard status == Z_OK else { throw .badArchive("zlib could not start") }
    defer { inflateEnd(&stream) }
    var source = input
    // zlib counts in 32 bits: feed and drain at most 1 GiB at a time (members of 4 GiB or more).
    let piece = 1 << 30
    let produced: Int = source.withUnsafeMutableBufferPointer { src in
      output.withUnsafeMutableBufferPointer { dst in
        var consumed = 0, written = 0
        repeat {
          let inputPiece = min(piece, src.count - consumed), outputPiece = min(piece, dst.count - written)
          stream.next_in = src.baseAddress.map { $0 + consumed }
          stream.avail_in = UInt32(inputPiece)
          stream.next_out = dst.baseAddress.map { $0 + written }
          stream.avail_out = UInt32(outputPiece)
          let finishing = consumed + inputPiece == src.count && written + outputPiece == dst.count
          status = CZlib.inflate(&stream, finishing ? Z_FINISH : Z_NO_FLUSH)
          consumed += inputPiece - Int(stream.avail_in)
          written += outputPiece - Int(stream.avail_out)
          if status == Z_BUF_ERROR && !finishing { status = Z_OK }
          // No progress with input and room left: the stream is damaged (never loop on it).
          if status == Z_OK && inputPiece - Int(stream.avail_in) == 0 && outputPiece - Int(stream.avail_out) == 0 { status = Z_DATA_ERROR }
        } while status == Z_OK && (consumed < src.count || written < dst.count)
        return written
      }
    }
    guard status == Z_STREAM_END else { throw .badArchive("member '\(name)' does not inflate (zlib status \(status))") }
    return Array(output[0..<produced])
  }

  /// Writes arrays as an uncompressed .npz (each member `NAME.npy`), readable by np.load.
  public static func write(_ arrays: [(name: String, tensor: Tensor)], path: String) throws(NumpyError) {
    try NumpyFormat.writeFile(encode(arrays), path: path)
  }

  public static func encode(_ arrays: [(name: String, tensor: Tensor)]) -> [UInt8] {
    var out: [UInt8] = []
    var central: [UInt8] = []
    func put16(_ v: Int, _ buffer: inout [UInt8]) { buffer += [UInt8(v & 0xFF), UInt8((v >> 8) & 0xFF)] }
    func put32(_ v: Int, _ buffer: inout [UInt8]) { put16(v & 0xFFFF, &buffer); put16((v >> 16) & 0xFFFF, &buffer) }
    for (name, tensor) in arrays {
      let data = NumpyFormat.encode(tensor)
      let fileName = Array((name + ".npy").utf8)
      let crc = Int(CRC32.checksum(of: data))
      let offset = out.count
      put32(0x0403_4b50, &out); put16(20, &out); put16(0, &out); put16(0, &out)
      put16(0, &out); put16(0x21, &out)                 // time, date (1980-01-01)
      put32(crc, &out); put32(data.count, &out); put32(data.count, &out)
      put16(fileName.count, &out); put16(0, &out)
      out += fileName
      out += data
      put32(0x0201_4b50, &central); put16(20, &central); put16(20, &central); put16(0, &central); put16(0, &central)
      put16(0, &central); put16(0x21, &central)
      put32(crc, &central); put32(data.count, &central); put32(data.count, &central)
      put16(fileName.count, &central); put16(0, &central); put16(0, &central)
      put16(0, &central); put16(0, &central); put32(0, &central); put32(offset, &central)
      central += fileName
    }
    let directoryOffset = out.count
    out += central
    put32(0x0605_4b50, &out); put16(0, &out); put16(0, &out)
    put16(arrays.count, &out); put16(arrays.count, &out)
    put32(central.count, &out); put32(directoryOffset, &out); put16(0, &out)
    return out
  }
}
