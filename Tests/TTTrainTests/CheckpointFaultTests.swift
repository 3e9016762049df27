// Checkpoint headers under damage and forgery (issue 15): an edited step, epoch or offset, a
// tensor shifted by a byte, overlapping or gapped data_offsets are all named corruptions; plus a
// seeded family that mutates header fields (keeping the header length consistent), each decode
// being the original checkpoint or a named corruption.
import Foundation
import Testing
import TTIR
@testable import TTTrain

struct CheckpointFaultTests {
  static var original: Checkpoint { Checkpoint(
    tensors: [("w", Tensor(.f32, shape: [2, 3], floats: [1, 2, 3, 4, 5, 6])), ("b", Tensor(.f32, shape: [3], floats: [7, 8, 9])),
              ("w.m", Tensor(.f64, shape: [2], floats: [0.5, 0.25]))],
    metadata: ["format": Checkpoint.currentFormat, "step": "40", "epoch": "3", "offset": "96", "seed": "0", "batch": "32"]) }

  /// The checkpoint's header text and data, and a re-encoding with an edited header.
  static func split(_ bytes: [UInt8]) -> (header: String, data: [UInt8]) {
    var length = 0
    for i in 0..<8 { length |= Int(bytes[i]) << (8 * i) }
    return (String(decoding: bytes[8..<(8 + length)], as: UTF8.self), Array(bytes[(8 + length)...]))
  }

  static func join(_ header: String, _ data: [UInt8]) -> [UInt8] {
    var json = Array(header.utf8)
    while json.count % 8 != 0 { json.append(0x20) }
    return (0..<8).map { UInt8(truncatingIfNeeded: json.count >> (8 * $0)) } + json + data
  }

  static func isCorrupt(_ bytes: [UInt8], _ message: String = "") -> Bool {
    do { _ = try Checkpoint.decode(bytes, path: "c"); return false }
    catch { if case .corrupt(_, let reason) = error { return message.isEmpty || reason.contains(message) }; return false }
  }

  /// Format 1 (ttfc before the header CRC) still resumes on its data CRC; a current-format file
  /// whose header CRC was removed is a named corruption.
  @Test func formatOneCheckpointsStillReadAndFormatTwoNeedsItsHeaderCRC() throws {
    func withoutHeaderCRC(_ checkpoint: Checkpoint) -> [UInt8] {
      let (header, data) = Self.split(checkpoint.encode())
      var object = try! JSONSerialization.jsonObject(with: Data(header.utf8)) as! [String: Any]
      var meta = object["__metadata__"] as! [String: String]
      meta["header_crc32"] = nil
      object["__metadata__"] = meta
      let text = String(decoding: try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self)
      return Self.join(text, data)
    }
    var old = Self.original
    old.metadata["format"] = "ttfc-checkpoint-1"
    let legacy = try Checkpoint.decode(withoutHeaderCRC(old), path: "c")
    #expect(legacy.metadata["step"] == "40" && legacy.tensors.count == 3)
    #expect(Self.isCorrupt(withoutHeaderCRC(Self.original), "no CRC-32"))
  }

  @Test func editedHeaderValuesAreCaught() throws {
    let (header, data) = Self.split(Self.original.encode())
    for (from, to) in [("\"step\":\"40\"", "\"step\":\"41\""), ("\"epoch\":\"3\"", "\"epoch\":\"2\""), ("\"offset\":\"96\"", "\"offset\":\"64\"")] {
      #expect(header.contains(from))
      #expect(Self.isCorrupt(Self.join(header.replacingOccurrences(of: from, with: to), data), "CRC-32 of the header"), "\(to)")
    }
    #expect(try Checkpoint.decode(Self.join(header, data), path: "c").metadata["step"] == "40")
  }

  @Test func shiftedOverlappingAndGappedTensorsAreCaught() throws {
    let (header, data) = Self.split(Self.original.encode())
    // Offsets as written: w [0,24), b [24,36), w.m [36,52).
    #expect(header.contains("\"data_offsets\":[24,36]"))
    let shifted = header.replacingOccurrences(of: "[24,36]", with: "[25,37]")
    #expect(Self.isCorrupt(Self.join(shifted, data + [0])))
    let overlapping = header.replacingOccurrences(of: "[24,36]", with: "[20,32]")
    #expect(Self.isCorrupt(Self.join(overlapping, data), "overlaps"))
    let descending = header.replacingOccurrences(of: "[24,36]", with: "[36,24]")
    #expect(Self.isCorrupt(Self.join(descending, data), "not an ascending range"))
    let negative = header.replacingOccurrences(of: "[24,36]", with: "[-9223372036854775808,36]")
    #expect(Self.isCorrupt(Self.join(negative, data)))
  }

  /// Seeded mutations of the header's numbers and strings; the header length stays consistent so
  /// the JSON is read and every check below it is exercised.
  @Test func mutatedHeadersDecodeToTheOriginalOrANamedCorruption() throws {
    let (header, data) = Self.split(Self.original.encode())
    var generator = SeededGenerator(seed: 808)
    let replacements = ["0", "1", "-1", "9223372036854775807", "-9223372036854775808", "1e300", "40", "52", "\"F16\"", "\"I64\"",
                        "[]", "[2,3]", "[9223372036854775807,2]", "null", "\"x\"", "{}", "[0,0]"]
    let numbers = try NSRegularExpression(pattern: "-?[0-9]+|\"[A-Z0-9]+\"|\\[[^\\[\\]]*\\]")
    let matches = numbers.matches(in: header, range: NSRange(header.startIndex..., in: header))
    var corrupt = 0
    for _ in 0..<1500 {
      var mutated = header
      for _ in 0..<(1 + generator.next() % 2) {
        let match = matches[Int(generator.next() % UInt64(matches.count))]
        let range = Range(match.range, in: header)!
        guard mutated.count == header.count else { break }
        mutated.replaceSubrange(range, with: replacements[Int(generator.next() % UInt64(replacements.count))])
      }
      var bytes = Self.join(mutated, data)
      if generator.next() % 8 == 0 { bytes[bytes.count - 1 - Int(generator.next() % UInt64(data.count))] ^= 0x10 }
      do {
        let decoded = try Checkpoint.decode(bytes, path: "c")
        #expect(decoded.metadata == (try Checkpoint.decode(Self.original.encode(), path: "c")).metadata, "\(mutated) vs \(header)")
        let expected = Dictionary(uniqueKeysWithValues: Self.original.tensors.map { ($0.name, $0.tensor) })
        #expect(Dictionary(uniqueKeysWithValues: decoded.tensors.map { ($0.name, $0.tensor) }) == expected, "\(mutated)")
      } catch {
        guard case .corrupt = error else { Issue.record("not a corruption: \(error)"); continue }
        corrupt += 1
      }
    }
    print("checkpoint header robustness: 1500 mutants, \(corrupt) named corruptions")
    #expect(corrupt > 1000)
  }
}
