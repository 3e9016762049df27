// HostMemory — the allocator of executables' long-lived buffers (parameters, constants, pinned
// training state, arenas): 64-byte aligned for vector loads, and counted per owner so a test can
// check that an executable gives back every byte it held. MemoryBudget says, before a large
// allocation, whether it can fit this machine at all (so a huge size is a named error, not a trap).

import Glibc
import TTSupport

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


/// What this machine can hold: physical memory, or TTFC_MEMORY_BUDGET bytes when set (tests).
/// Sizes read from files or derived from types are checked against it before being allocated.
public enum MemoryBudget {
  public static var bytes: Int {
    if let configured = getenv("TTFC_MEMORY_BUDGET").flatMap({ Int(String(cString: $0)) }), configured > 0 { return configured }
    let (total, overflow) = Int(sysconf(Int32(_SC_PHYS_PAGES))).multipliedReportingOverflow(by: Int(sysconf(Int32(_SC_PAGESIZE))))
    return overflow || total <= 0 ? Int.max : total
  }

  /// nil when `needed` bytes fit the budget; else "needs 3.6 TiB; this machine has 24 GiB".
  public static func shortfall(_ needed: Int) -> String? {
    let budget = bytes
    guard needed > budget else { return nil }
    return "needs \(describe(needed)); this machine has \(describe(budget))"
  }

  /// A byte count for people: "512 B", "3.6 TiB".
  public static func describe(_ bytes: Int) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"]
    var value = Double(bytes), unit = 0
    while value >= 1024 && unit < units.count - 1 { value /= 1024; unit += 1 }
    if unit == 0 { return "\(bytes) B" }
    let tenths = (value * 10).rounded() / 10
    return (tenths == tenths.rounded() ? String(Int(tenths)) : String(tenths)) + " " + units[unit]
  }
}
