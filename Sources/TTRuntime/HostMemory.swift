// HostMemory — the allocator of executables' long-lived buffers (parameters, constants, pinned
// training state, arenas): 64-byte aligned for vector loads, and counted per owner so a test can
// check that an executable gives back every byte it held.

import Glibc
import TTCodegen

/// The memory executables hold (parameters, constants, pinned state, arenas): 64-byte aligned,
/// and counted per owner, so tests can check that an executable gives back all it held.
public enum HostMemory {
  nonisolated(unsafe) private static var records: [UnsafeMutableRawPointer: (owner: Int, bytes: Int)] = [:]
  nonisolated(unsafe) private static var byOwner: [Int: Int] = [:]
  nonisolated(unsafe) private static var nextOwner = 0
  private static let lock = NSLockish()

  /// A fresh owner tag (one per executable).
  public static func newOwner() -> Int { lock.withLock { nextOwner += 1; return nextOwner } }

  public static func allocate(_ bytes: Int, owner: Int) -> UnsafeMutableRawPointer {
    var p: UnsafeMutableRawPointer?
    precondition(posix_memalign(&p, 64, bytes) == 0 && p != nil, "out of memory allocating \(bytes) bytes")
    lock.withLock {
      records[p!] = (owner, bytes)
      byOwner[owner, default: 0] += bytes
    }
    return p!
  }

  public static func release(_ p: UnsafeMutableRawPointer) {
    lock.withLock {
      if let record = records.removeValue(forKey: p) {
        byOwner[record.owner, default: 0] -= record.bytes
        if byOwner[record.owner] == 0 { byOwner[record.owner] = nil }
      }
    }
    free(p)
  }

  /// Bytes `owner` holds now.
  public static func liveBytes(owner: Int) -> Int { lock.withLock { byOwner[owner] ?? 0 } }
}

