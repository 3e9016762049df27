// ThreadPool — persistent worker threads for splitting large kernels across cores. `parallelFor`
// runs chunks on the calling thread and on the workers, each taking the next chunk when free, then
// waits. After a job a worker spins for `spinSeconds` watching for the next one before it sleeps
// on a condition variable: waking a sleeping thread costs 0.1-0.2 ms on these virtual machines
// (measured: a 0.44 ms softmax ran no faster on 2 threads, the caller had taken both chunks before
// the worker woke), while a training step issues kernels and GEMMs (ParallelGemm) back to back.
// The spin is short so an idle pool still costs nothing.
// Placement: each worker is bound to a CPU of its own and the process's main thread, when it
// submits work, to another (TTFC_BIND=off leaves placement to the kernel). Unbound, about half
// of the processes on these 2-vCPU machines ran the caller and the worker on one CPU for their
// whole life, every parallel kernel at half speed (a Winograd convolution: 0.62 ms or 1.24 ms
// by process, 1.24 ms always under `taskset -c 0`; bound, 0.62 ms in every process). Binding
// needs a CPU per thread of every process of an MPI node (OMPI_COMM_WORLD_LOCAL_SIZE), or it
// is skipped; other threads that submit work (tests' threads, background compiles) stay free.
// The thread count is a knob (TTFC_THREADS, default: the number of online cores). While a traced
// run has an ExecutionTrace attached (`attach`), each worker records its chunks in it (a worker
// knows its index: its track in the trace); detached, a chunk costs one extra load.

import CSupport
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

  /// The CPUs the pool's threads are bound to (index 0: the main thread when it submits work),
  /// or nil when they are left to the kernel.
  let boundCPUs: [Int32]?

  /// The CPUs this process may bind `threads` threads to: its share of its affinity mask (MPI
  /// ranks on one node take consecutive shares), nil when there are too few or TTFC_BIND=off.
  /// A pool of one thread submits no work and binds nothing.
  static func placement(threads: Int) -> [Int32]? {
    if let text = getenv("TTFC_BIND"), String(cString: text) == "off" { return nil }
    guard threads > 1 else { return nil }
    var allowed = [Int32](repeating: 0, count: 4096)
    let count = Int(ttfc_allowed_cpus(&allowed, 4096))
    return share(of: Array(allowed.prefix(max(count, 0))), threads: threads,
                 localSize: getenv("OMPI_COMM_WORLD_LOCAL_SIZE").map { String(cString: $0) },
                 localRank: getenv("OMPI_COMM_WORLD_LOCAL_RANK").map { String(cString: $0) })
  }

  /// Rank `localRank`'s `threads` CPUs of `allowed` when the node's `localSize` ranks each get
  /// as many; nil when they do not fit or the rank is outside 0 ..< localSize. A size that is
  /// absent or not a number counts as one rank, an absent or unreadable rank as rank 0.
  static func share(of allowed: [Int32], threads: Int, localSize: String?, localRank: String?) -> [Int32]? {
    let ranks = max(localSize.flatMap { Int($0) } ?? 1, 1), rank = localRank.flatMap { Int($0) } ?? 0
    // allowed.count / threads, not threads * ranks: the environment's number may be near Int.max.
    guard threads > 0, allowed.count / threads >= ranks, rank >= 0, rank < ranks else { return nil }
    return Array(allowed[(rank * threads)..<((rank + 1) * threads)])
  }

  /// Whether the main thread has been bound (it is bound once, on its first submission).
  nonisolated(unsafe) private static var mainThreadBound = false

  /// A pool of `threads` threads in all (the caller and `threads - 1` workers).
  public init(threads: Int) {
    threadCount = threads
    boundCPUs = Self.placement(threads: threads)
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
    if let boundCPUs { _ = ttfc_bind_current_thread(boundCPUs[index]) }
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
    if let boundCPUs, !Self.mainThreadBound, ttfc_is_main_thread() != 0 {
      Self.mainThreadBound = true
      _ = ttfc_bind_current_thread(boundCPUs[0])
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
