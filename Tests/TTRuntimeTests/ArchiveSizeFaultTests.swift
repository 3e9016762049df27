// Sizes that .npz files and types claim (issue 15): a small archive whose zip directory claims a
// member of 4 GiB or 1 TiB is a named error before anything is allocated, and so is a run whose
// buffers exceed the machine's memory.
import Foundation
import Testing
import TTCompiler
import TTIR
@testable import TTRuntime

struct ArchiveSizeFaultTests {
  /// A one-member zip: local header, `data`, a central directory entry (with a ZIP64 extra field
  /// carrying `claimedSize` when it does not fit 32 bits) and the end record.
  static func archive(name: String, method: UInt16, data: [UInt8], claimedSize: UInt64) -> [UInt8] {
    func u16(_ v: UInt16) -> [UInt8] { [UInt8(v & 0xff), UInt8(v >> 8)] }
    func u32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * UInt32($0))) } }
    func u64(_ v: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: v >> (8 * UInt64($0))) } }
    let nameBytes = Array(name.utf8)
    let zip64 = claimedSize >= 0xFFFF_FFFF
    let size32 = zip64 ? UInt32.max : UInt32(claimedSize)
    var out = u32(0x0403_4b50) + u16(20) + u16(0) + u16(method) + u32(0) + u32(0) + u32(UInt32(data.count)) + u32(size32)
      + u16(UInt16(nameBytes.count)) + u16(0) + nameBytes + data
    let directory = out.count
    let extra = zip64 ? u16(1) + u16(8) + u64(claimedSize) : []
    out += u32(0x0201_4b50) + u16(20) + u16(20) + u16(0) + u16(method) + u32(0) + u32(0) + u32(UInt32(data.count)) + u32(size32)
      + u16(UInt16(nameBytes.count)) + u16(UInt16(extra.count)) + u16(0) + u16(0) + u16(0) + u32(0) + u32(0) + nameBytes + extra
    let directorySize = out.count - directory
    out += u32(0x0605_4b50) + u16(0) + u16(0) + u16(1) + u16(1) + u32(UInt32(directorySize)) + u32(UInt32(directory)) + u16(0)
    return out
  }

  @Test func smallArchivesClaimingHugeMembersAreNamedErrors() throws {
    for claimed: UInt64 in [1 << 40, 0xFFFF_FFFE, 1 << 32, (1 << 62) - 1] {
      let bytes = Self.archive(name: "x.npy", method: 8, data: [UInt8](repeating: 0x4b, count: 120), claimedSize: claimed)
      #expect(bytes.count < 300)
      #expect(throws: NumpyError.self, "claimed \(claimed)") { try NpzArchive.decode(bytes) }
    }
  }

  @Test func theClaimIsNamedWithTheCompressedSize() throws {
    let bytes = Self.archive(name: "y.npy", method: 8, data: [UInt8](repeating: 0, count: 100), claimedSize: 1 << 40)
    #expect { try NpzArchive.decode(bytes) } throws: { "\($0)".contains("claims 1099511627776 bytes from 100 compressed bytes") }
  }

  @Test func aRunLargerThanMemoryIsANamedError() throws {
    let module = try Parser.parseAndVerify("""
      module @m {
        func @main() -> f32[1000000, 1000000] {
          %y = iota {dim = 0} : f32[1000000, 1000000]
          return %y
        }
      }
      """)
    let executable = try Executable(module: module, function: "main")
    #expect { try executable.run([]) } throws: { "\($0)".contains("needs 3.6 TiB; this machine has") }
  }

  @Test func byteCountsReadForPeople() {
    #expect(MemoryBudget.describe(512) == "512 B")
    #expect(MemoryBudget.describe(4_000_000_000_000) == "3.6 TiB")
    #expect(MemoryBudget.describe(24 << 30) == "24 GiB")
  }
}
