// ThreadPool — persistent worker threads for splitting large kernels across cores. `parallelFor`
// runs chunks on the calling thread and on the workers, each taking the next chunk when free, then
// waits. After a job a worker spins for `spinSeconds` watching for the next one before it sleeps
// on a condition variable: waking a sleeping thread costs 0.1-0.2 ms on these virtual machines
// (measured: a 0.44 ms softmax ran no faster on 2 threads, the caller had taken both chunks before
// the worker woke), while a training step issues kernels and GEMMs (ParallelGemm) back to back.
// The spin is short so an idle pool still costs nothing.
// The thread count is a knob (TTFC_THREADS, default: the number of online cores). While a traced
// run has an ExecutionTrace attached (`attach`), each worker records its chunks in it (a worker
// knows its index: its track in the trace); detached, a chunk costs one extra load.

import Glibc
import Synchronization
import TTSupport

/// Persistent worker threads that split large kernels and GEMMs across cores.
public final class ThreadPool: @unchecked Sendable {
  /// Most threads a pool starts (`--threads` refuses more; TTFC_THREADS is capped to it).
  public static let maxThreads = 1024
  /// The process's pool: `TTFC_THREADS` threads, or one per online core.
  public static let shared = ThreadPool(threads: {
    if let text = getenv("TTFC_THREADS"), let n = Int(String(cString: text)), n >= 1 { return min(n, maxThreads) }
    return max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN)))
  }())

  /// A pool of the calling thread alone: work that is already one part of a split (a batch
  /// element's small GEMM inside a pool job) runs its code path for one thread.
  public static let callingThread = ThreadPool(threads: 1)

  /// Threads that run chunks, the caller's included.
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
  /// `generation`, readable without the mutex (for spinning workers).
  private let published = Atomic<Int>(0)
  /// How long an idle worker watches for the next job before sleeping.
  public static let spinSeconds = 50e-6
  /// Set by `quiesce` (spinning workers go to sleep at once), cleared by the next job.
  private let quiet = Atomic<Bool>(false)
  /// The trace recording the workers' chunks (a traced run attaches it for its duration); read
  /// with the mutex held, so nil costs a worker one load per chunk.
  private var trace: ExecutionTrace?

  /// A pool of `threads` threads in all (the caller and `threads - 1` workers).
  public init(threads: Int) {
    threadCount = threads
    pthread_mutex_init(&mutex, nil)
    pthread_mutex_init(&submission, nil)
    pthread_cond_init(&wake, nil)
    pthread_cond_init(&done, nil)
    for worker in 1..<max(threads, 1) {
      var thread = pthread_t()
      let context = Unmanaged.passRetained(WorkerStart(pool: self, index: worker)).toOpaque()
      pthread_create(&thread, nil, { argument in
        let start = Unmanaged<WorkerStart>.fromOpaque(argument!).takeRetainedValue()
        start.pool.workerLoop(index: start.index)
        return nil
      }, context)
      pthread_detach(thread)
    }
  }

  /// What a new worker thread is handed: its pool and its index (its track in a trace).
  private final class WorkerStart {
    let pool: ThreadPool
    let index: Int
    init(pool: ThreadPool, index: Int) { self.pool = pool; self.index = index }
  }

  /// Records the workers' chunks in `trace` until detached (nil). Called between jobs.
  func attach(_ trace: ExecutionTrace?) {
    pthread_mutex_lock(&mutex)
    self.trace = trace
    pthread_mutex_unlock(&mutex)
  }

  private func workerLoop(index: Int) {
    var seen = 0
    pthread_mutex_lock(&mutex)
    while true {
      if generation == seen {
        pthread_mutex_unlock(&mutex)
        let deadline = DispatchClock.now() + Self.spinSeconds
        while published.load(ordering: .acquiring) == seen && !quiet.load(ordering: .relaxed) && DispatchClock.now() < deadline {}
        pthread_mutex_lock(&mutex)
      }
      while generation == seen { pthread_cond_wait(&wake, &mutex) }
      seen = generation
      runChunks(thread: index)
    }
  }

  /// Takes chunks until none are left (called with the mutex held; releases it while working).
  private func runChunks(thread: Int) {
    while nextChunk < chunks, let body = job {
      let chunk = nextChunk
      nextChunk += 1
      let trace = self.trace
      pthread_mutex_unlock(&mutex)
      if let trace {
        let start = DispatchClock.now()
        body(chunk)
        trace.recordChunk(worker: thread, start: start, end: DispatchClock.now())
      } else {
        body(chunk)
      }
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
    quiet.store(false, ordering: .relaxed)
    published.store(generation, ordering: .releasing)
    pthread_cond_broadcast(&wake)
    runChunks(thread: 0)
    while finished < chunks { pthread_cond_wait(&done, &mutex) }
    job = nil
    pthread_mutex_unlock(&mutex)
  }

  /// Tells idle workers to stop spinning and sleep: the caller is about to run something that
  /// uses every core itself (a multithreaded library call).
  public func quiesce() { quiet.store(true, ordering: .relaxed) }
}
