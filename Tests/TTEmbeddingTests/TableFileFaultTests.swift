// .ttemb table files under forgery (issue 15): header values of 2^40 and more (rows, dim, slots)
// with the CRC recomputed must be named corruptions, never a trap or a huge allocation. A seeded
// family forges header fields and flips bytes, always re-sealing the CRC so the checks behind it run.
import Foundation
import Testing
@testable import TTEmbedding
import TTSupport

struct TableFileFaultTests {
  static func sample() throws -> [UInt8] {
    let table = try EmbeddingTable(dim: 4, initializer: .uniform(scale: 1), seed: 5, slotInitialValues: [0, 1])
    _ = table.lookup([3, 9, 27], training: true, step: 1)
    return table.serialized()
  }

  /// The file with its trailing CRC-32 recomputed, as a forger would.
  static func sealed(_ bytes: [UInt8]) -> [UInt8] {
    var body = Array(bytes.dropLast(8))
    let crc = UInt64(CRC32.checksum(of: body))
    body += (0..<8).map { UInt8(truncatingIfNeeded: crc >> (8 * UInt64($0))) }
    return body
  }

  static func setField(_ bytes: inout [UInt8], index: Int, to value: UInt64) {
    let at = 8 + 8 * index   // after the 8-byte magic: dim, storage, slots, rows, seed, kind
    for i in 0..<8 { bytes[at + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(i))) }
  }

  @Test func forgedHugeHeaderValuesAreCorruptions() throws {
    let original = try Self.sample()
    #expect(try EmbeddingTable.deserialize(original).statistics.size == 3)
    for field in [0, 2, 3] {
      for value: UInt64 in [1 << 40, 1 << 62, UInt64.max, 1 << 63, UInt64(Int64.max)] {
        var bytes = original
        Self.setField(&bytes, index: field, to: value)
        #expect(throws: EmbeddingError.self, "field \(field) = \(value)") { try EmbeddingTable.deserialize(Self.sealed(bytes)) }
      }
    }
  }

  @Test func mutatedTableFilesAreTablesOrNamedCorruptions() throws {
    let original = try Self.sample()
    var generator = TableFileGenerator(state: 4040)
    var corrupt = 0
    let extremes: [UInt64] = [0, 1, 2, 8, 9, 1 << 16, (1 << 16) + 1, 1 << 32, 1 << 40, 1 << 63, UInt64.max]
    for _ in 0..<2000 {
      var bytes = original
      switch generator.next() % 3 {
      case 0: Self.setField(&bytes, index: Int(generator.next() % 6), to: extremes[Int(generator.next() % UInt64(extremes.count))])
      case 1: for _ in 0..<(1 + generator.next() % 3) { bytes[8 + Int(generator.next() % UInt64(bytes.count - 16))] ^= UInt8(truncatingIfNeeded: 1 | generator.next()) }
      default: bytes = Array(bytes.prefix(16 + Int(generator.next() % UInt64(bytes.count - 16)))) + [UInt8](repeating: 0, count: 8)
      }
      do { _ = try EmbeddingTable.deserialize(Self.sealed(bytes)) }
      catch { #expect(!"\(error)".isEmpty); corrupt += 1 }
    }
    print("table file robustness: 2000 forged tables, \(corrupt) named corruptions")
    #expect(corrupt > 500)
  }
}

/// SplitMix64 for the table-file family.
struct TableFileGenerator {
  var state: UInt64
  mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }
}
