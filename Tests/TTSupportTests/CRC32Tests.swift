// CRC32 against published check values, against a bit-at-a-time reference written from the
// definition, and incremental updates (in any split, through every overload) against one-shot.
import Testing
import TTSupport

/// A small deterministic generator (SplitMix64), so failures reproduce.
struct SeededGenerator: RandomNumberGenerator {
  var state: UInt64
  mutating func next() -> UInt64 {
    state &+= 0x9e37_79b9_7f4a_7c15
    var z = state
    z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
    z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
    return z ^ (z >> 31)
  }
}

struct CRC32Tests {
  /// The CRC-32 definition, one bit at a time: reflected polynomial 0xEDB88320, register
  /// starting at all ones, result inverted.
  static func bitwiseReference(_ bytes: [UInt8]) -> UInt32 {
    var register: UInt32 = 0xFFFF_FFFF
    for byte in bytes {
      register ^= UInt32(byte)
      for _ in 0..<8 { register = register & 1 == 1 ? (register >> 1) ^ 0xEDB8_8320 : register >> 1 }
    }
    return ~register
  }

  @Test func knownCheckValues() {
    let vectors: [(String, UInt32)] = [
      ("", 0),
      ("123456789", 0xCBF4_3926),
      ("a", 0xE8B7_BE43),
      ("abc", 0x3524_41C2),
      ("The quick brown fox jumps over the lazy dog", 0x414F_A339),
    ]
    for (text, expected) in vectors {
      #expect(CRC32.checksum(of: Array(text.utf8)) == expected, "\"\(text)\"")
      #expect(CRC32.checksum(of: text.utf8) == expected, "\"\(text)\" as a UTF-8 view")
      #expect(Self.bitwiseReference(Array(text.utf8)) == expected, "the reference itself on \"\(text)\"")
    }
    #expect(CRC32.checksum(of: [UInt8](repeating: 0, count: 32)) == 0x190A_55AD)
    #expect(CRC32.checksum(of: [UInt8](repeating: 0xFF, count: 32)) == 0xFF6C_AB0B)
    #expect(CRC32().value == 0, "nothing checksummed yet")
  }

  @Test func randomBuffersMatchTheBitwiseReference() {
    var rng = SeededGenerator(state: 17)
    for _ in 0..<200 {
      let bytes = (0..<Int.random(in: 0..<3000, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
      #expect(CRC32.checksum(of: bytes) == Self.bitwiseReference(bytes), "\(bytes.count) bytes")
    }
  }

  @Test func incrementalUpdatesEqualOneShot() {
    var rng = SeededGenerator(state: 99)
    for _ in 0..<200 {
      let bytes = (0..<Int.random(in: 0..<5000, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
      let whole = CRC32.checksum(of: bytes)
      // Cut into random pieces (empty ones included), fed alternately through each overload:
      // raw buffers, array slices and a sequence without contiguous storage.
      var crc = CRC32()
      var start = 0, piece = 0
      while start < bytes.count {
        let end = min(bytes.count, start + Int.random(in: 0...700, using: &rng))
        switch piece % 3 {
        case 0: bytes[start..<end].withUnsafeBytes { crc.update($0) }
        case 1: crc.update(bytes[start..<end])
        default: crc.update(bytes[start..<end].lazy.map { $0 })
        }
        start = end
        piece += 1
      }
      #expect(crc.value == whole, "\(bytes.count) bytes in \(piece) pieces")
      bytes.withUnsafeBytes { #expect(CRC32.checksum(of: $0) == whole) }
    }
  }
}
