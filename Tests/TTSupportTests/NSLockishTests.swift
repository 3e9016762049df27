// The lock under contention (several threads, no lost update, never two holders at once, released
// on a throw) and the clock (never goes back, measures a sleep).
import Dispatch
import Glibc
import Testing
import TTSupport

/// State the tests share between threads; every access is under the lock being tested.
final class GuardedCounters: @unchecked Sendable {
  var total = 0
  var holders = 0
  var overlaps = 0
}

struct NSLockishTests {
  @Test func contendedIncrementsAreNeverLost() {
    let lock = NSLockish()
    let counters = GuardedCounters()
    let threads = 8, increments = 20_000
    DispatchQueue.concurrentPerform(iterations: threads) { _ in
      for _ in 0..<increments {
        lock.withLock {
          counters.holders += 1
          if counters.holders != 1 { counters.overlaps += 1 }
          counters.total += 1
          counters.holders -= 1
        }
      }
    }
    #expect(counters.total == threads * increments)
    #expect(counters.overlaps == 0, "two threads held the lock at once")
  }

  struct Refusal: Error {}

  @Test func aThrowingBodyReleasesTheLockAndValuesPassThrough() throws {
    let lock = NSLockish()
    #expect(throws: Refusal.self) { try lock.withLock { () throws(Refusal) -> Int in throw Refusal() } }
    // Were the lock still held, this would never return.
    let value = lock.withLock { 42 }
    #expect(value == 42)
    // And another thread can take it too.
    let other = DispatchGroup()
    let counters = GuardedCounters()
    DispatchQueue.global().async(group: other) { lock.withLock { counters.total = 7 } }
    other.wait()
    #expect(lock.withLock { counters.total } == 7)
  }
}

struct DispatchClockTests {
  @Test func readingsNeverDecreaseAndMeasureASleep() {
    var last = DispatchClock.now()
    var decreases = 0
    for _ in 0..<100_000 {
      let now = DispatchClock.now()
      if now < last { decreases += 1 }
      last = now
    }
    #expect(decreases == 0)
    let start = DispatchClock.now()
    usleep(50_000)
    let elapsed = DispatchClock.now() - start
    #expect(elapsed >= 0.05 && elapsed < 5, "a 50 ms sleep measured \(elapsed) s")
  }
}
