// CRC32 — the one checksum ttfc writes and checks: kernel-cache entries, .ttemb table files,
// .npz members and checkpoints. It is zlib's CRC-32 (the one of ZIP and gzip: reflected
// polynomial 0xEDB88320, initial and final value 0xFFFFFFFF; "123456789" gives 0xCBF43926),
// computed by zlib. `update` continues a running checksum, so data checksummed in pieces gives the
// same value as data checksummed at once; lengths are 64-bit (zlib's crc32_z), so buffers of
// 4 GiB and more need no splitting by the caller.

import CZlib

public struct CRC32: Equatable, Sendable {
  /// The checksum of every byte given to `update` so far (0 before any).
  public private(set) var value: UInt32 = 0

  public init() {}

  /// Continues the checksum over `bytes`.
  public mutating func update(_ bytes: UnsafeRawBufferPointer) {
    guard let base = bytes.baseAddress, bytes.count > 0 else { return }
    value = UInt32(truncatingIfNeeded: crc32_z(uLong(value), base.assumingMemoryBound(to: Bytef.self), bytes.count))
  }

  /// Continues the checksum over `bytes` (an array, a slice, any sequence of bytes).
  public mutating func update(_ bytes: some Sequence<UInt8>) {
    let done: Void? = bytes.withContiguousStorageIfAvailable { update(UnsafeRawBufferPointer($0)) }
    if done == nil { Array(bytes).withUnsafeBytes { update($0) } }
  }

  /// The checksum of `bytes` alone.
  public static func checksum(of bytes: UnsafeRawBufferPointer) -> UInt32 {
    var crc = CRC32()
    crc.update(bytes)
    return crc.value
  }

  /// The checksum of `bytes` alone.
  public static func checksum(of bytes: some Sequence<UInt8>) -> UInt32 {
    var crc = CRC32()
    crc.update(bytes)
    return crc.value
  }
}
