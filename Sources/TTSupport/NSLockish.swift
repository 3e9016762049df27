// NSLockish — ttfc's one mutual-exclusion lock: a pthread mutex used through `withLock`, for the
// modules that do without Foundation (the name says what it stands in for: NSLock). It guards
// the JIT, the kernel caches, executables' statistics, host-memory accounting and the shape
// buckets. The lock is not recursive: a thread that holds it must not take it again.

import Glibc

public final class NSLockish: @unchecked Sendable {
  private let mutex: UnsafeMutablePointer<pthread_mutex_t>

  public init() {
    // The mutex lives at a fixed address (a pthread mutex must not move once initialized).
    mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    mutex.initialize(to: pthread_mutex_t())
    pthread_mutex_init(mutex, nil)
  }

  deinit {
    pthread_mutex_destroy(mutex)
    mutex.deinitialize(count: 1)
    mutex.deallocate()
  }

  /// Runs `body` holding the lock, and releases it however `body` ends (a return or a throw).
  public func withLock<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T {
    pthread_mutex_lock(mutex)
    defer { pthread_mutex_unlock(mutex) }
    return try body()
  }
}
