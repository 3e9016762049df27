// ThreadPool — persistent worker threads for splitting large kernels across cores. `parallelFor`
// runs chunk 0 on the calling thread and the rest on the workers, then waits; workers sleep on a
// condition variable between jobs, so an idle pool costs nothing. The thread count is a knob
// (TTFC_THREADS, default: the number of online cores).

import Glibc

public final class ThreadPool: @unchecked Sendable {
  public static let shared = ThreadPool(threads: {
    if let text = getenv("TTFC_THREADS"), let n = Int(String(cString: text)), n >= 1 { return n }
    return max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN)))
  }())

  public let threadCount: Int
  private var mutex = pthread_mutex_t()
  private var submission = pthread_mutex_t()
  private var wake = pthread_cond_t()
  private var done = pthread_cond_t()
  private var job: ((Int) -> Void)?
  private var chunks = 0
  private var nextChunk = 0
  private var finished = 0
  private var generation = 0

  public init(threads: Int) {
    threadCount = threads
    pthread_mutex_init(&mutex, nil)
    pthread_mutex_init(&submission, nil)
    pthread_cond_init(&wake, nil)
    pthread_cond_init(&done, nil)
    for _ in 1..<max(threads, 1) {
      var thread = pthread_t()
      let context = Unmanaged.passRetained(self).toOpaque()
      pthread_create(&thread, nil, { argument in
        let pool = Unmanaged<ThreadPool>.fromOpaque(argument!).takeRetainedValue()
        pool.workerLoop()
        return nil
      }, context)
      pthread_detach(thread)
    }
  }

  private func workerLoop() {
    var seen = 0
    pthread_mutex_lock(&mutex)
    while true {
      while generation == seen { pthread_cond_wait(&wake, &mutex) }
      seen = generation
      runChunks()
    }
  }

  /// Takes chunks until none are left (called with the mutex held; releases it while working).
  private func runChunks() {
    while nextChunk < chunks, let body = job {
      let chunk = nextChunk
      nextChunk += 1
      pthread_mutex_unlock(&mutex)
      body(chunk)
      pthread_mutex_lock(&mutex)
      finished += 1
      if finished == chunks { pthread_cond_broadcast(&done) }
    }
  }

  /// Runs body(0..<count), spread over the pool; returns when all chunks are done.
  public func parallelFor(_ count: Int, _ body: @escaping (Int) -> Void) {
    if count <= 1 || threadCount == 1 {
      for i in 0..<count { body(i) }
      return
    }
    // One job at a time: callers on other threads wait here, not inside a running job.
    pthread_mutex_lock(&submission)
    defer { pthread_mutex_unlock(&submission) }
    pthread_mutex_lock(&mutex)
    job = body
    chunks = count
    nextChunk = 0
    finished = 0
    generation += 1
    pthread_cond_broadcast(&wake)
    runChunks()
    while finished < chunks { pthread_cond_wait(&done, &mutex) }
    job = nil
    pthread_mutex_unlock(&mutex)
  }
}
