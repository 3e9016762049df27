// Distributed — data-parallel training over MPI (Open MPI, loaded at run time by CMPI): the
// communicator with a deadline on every collective, the split of a global batch among ranks, the
// plan of gradient buckets, and the bytes each step moves. The step itself is in
// DistributedStep.swift, sharded tables in ShardedTables.swift; README.md, "Training on several
// machines", describes the whole.

import CMPI
import Foundation

/// Why distributed training cannot start or go on; the message names the rank and the cause.
public enum DistributedError: Error, CustomStringConvertible, Equatable {
  /// `--distributed` in a process that mpirun (or another MPI launcher) did not start.
  case notLaunchedByMPI
  /// libmpi cannot be loaded or initialized.
  case mpiUnavailable(String)
  /// A collective failed (MPI returned an error: a peer's connection broke).
  case collectiveFailed(rank: Int, what: String, step: Int, reason: String)
  /// A collective did not complete within the deadline: a rank died, hangs, or cannot be reached.
  case timedOut(rank: Int, what: String, step: Int, seconds: Double)
  /// The ranks were started with different models, options or data.
  case ranksDisagree(String)
  /// The global batch does not split evenly among the ranks.
  case batchNotDivisible(batch: Int, ranks: Int)
  /// Something distributed training does not support (named).
  case unsupported(String)

  public var description: String {
    switch self {
    case .notLaunchedByMPI:
      return "--distributed: this process was not started by mpirun (no OMPI_COMM_WORLD_SIZE or PMIX_RANK in the environment); launch it as `mpirun -np N ttfc train ... --distributed`"
    case .mpiUnavailable(let m): return "--distributed: MPI is unavailable: \(m)"
    case .collectiveFailed(let rank, let what, let step, let reason):
      return "distributed training: rank \(rank): \(what) failed at step \(step): \(reason) (another rank died or its connection broke)"
    case .timedOut(let rank, let what, let step, let seconds):
      return "distributed training: rank \(rank): \(what) did not complete within \(Self.format(seconds)) s at step \(step): another rank died, hangs or cannot be reached (TTFC_MPI_TIMEOUT sets the deadline)"
    case .ranksDisagree(let m): return "distributed training: the ranks disagree: \(m)"
    case .batchNotDivisible(let batch, let ranks):
      return "distributed training: the global batch \(batch) does not divide among \(ranks) ranks (give a --batch that is a multiple of \(ranks))"
    case .unsupported(let m): return "distributed training: \(m)"
    }
  }
  static func format(_ seconds: Double) -> String { seconds == seconds.rounded() ? String(Int(seconds)) : String(seconds) }
}

/// The examples of a global batch that each rank computes: contiguous, in rank order, sizes
/// differing by at most one (a short last batch of an epoch may leave a rank none).
public enum BatchSplit {
  /// Positions `lo..<hi` of rank `rank` among `size` in a batch of `count` examples.
  public static func share(of count: Int, rank: Int, size: Int) -> Range<Int> {
    precondition(size >= 1 && (0..<size).contains(rank) && count >= 0)
    return (count * rank / size)..<(count * (rank + 1) / size)
  }

  /// The weight of a rank's gradient in the global one: its share of the examples. The loss is a
  /// mean over the batch, so the global mean's gradient is the sum of the ranks' mean gradients
  /// each scaled by `share / global` (exact in binary when the split is even and the world a
  /// power of two).
  public static func weight(share: Int, of count: Int) -> Double { count == 0 ? 0 : Double(share) / Double(count) }
}

/// Dense gradients grouped into buckets of at most `capacityBytes` (a gradient larger than that
/// is a bucket of its own), each bucket of one element type, in the order the backward pass
/// finishes them: the last parameter's gradient first.
public struct BucketPlan: Equatable, Sendable {
  public struct Member: Equatable, Sendable {
    /// The gradient (index among the trained parameters) and where it starts in the bucket.
    public var gradient: Int
    public var offset: Int
    public var count: Int
  }
  public struct Bucket: Equatable, Sendable {
    public var elementBytes: Int
    public var members: [Member]
    public var count: Int
    public var bytes: Int { count * elementBytes }
  }
  public var buckets: [Bucket]

  /// `sizes[k]` = (elements, element bytes) of gradient k; element bytes 0 marks one that is not
  /// communicated (an integer parameter's). `order`: the gradients in the order they are ready.
  public init(sizes: [(count: Int, elementBytes: Int)], order: [Int]? = nil, capacityBytes: Int) {
    var buckets: [Bucket] = []
    var open: Bucket? = nil
    for k in order ?? Array(sizes.indices.reversed()) {
      let (count, width) = sizes[k]
      guard width > 0, count > 0 else { continue }
      if let current = open, current.elementBytes != width || (current.count + count) * width > capacityBytes {
        buckets.append(current)
        open = nil
      }
      var bucket = open ?? Bucket(elementBytes: width, members: [], count: 0)
      bucket.members.append(Member(gradient: k, offset: bucket.count, count: count))
      bucket.count += count
      open = bucket
    }
    if let open { buckets.append(open) }
    self.buckets = buckets
  }

  /// The default bucket size: 4 MiB (`TTFC_MPI_BUCKET_BYTES` overrides it).
  public static var defaultCapacityBytes: Int {
    ProcessInfo.processInfo.environment["TTFC_MPI_BUCKET_BYTES"].flatMap { Int($0) }.map { max(1, $0) } ?? 4 << 20
  }
}

/// Bytes that crossed the network, per category, summed over the steps (this rank's payload).
public struct Traffic: Sendable, Equatable {
  /// Dense gradients (and the loss) summed by allreduce: the payload each rank contributes.
  public var denseGradientBytes = 0
  /// Row gradients of the tables gathered from the other ranks (replicated tables).
  public var rowGradientBytes = 0
  /// Ids sent to the ranks that own them and rows received back (sharded tables).
  public var idBytes = 0
  public var rowBytes = 0
  /// Steps counted, and seconds this rank spent waiting in collectives.
  public var steps = 0
  public var waitSeconds = 0.0
  /// Gradient buckets whose allreduce started before the gradient step's last thunk (overlapping
  /// the rest of the backward pass), of all buckets started.
  public var bucketsOverlapped = 0
  public init() {}

  /// The bytes a ring allreduce of `payload` bytes sends from each rank: 2 (N - 1) / N of it.
  public static func ringAllreduceBytes(payload: Int, ranks: Int) -> Int {
    ranks <= 1 ? 0 : 2 * (ranks - 1) * payload / ranks
  }
}

/// The world of MPI ranks this process belongs to, and the collectives training uses. Every
/// collective has a deadline (`timeoutSeconds`): a rank that died or cannot be reached makes the
/// others stop with a named error instead of waiting for ever.
public final class Communicator: @unchecked Sendable {
  public let rank: Int
  public let size: Int
  /// How long a collective may take before the job stops (TTFC_MPI_TIMEOUT, default 120 s).
  public var timeoutSeconds: Double
  /// The step being run (for messages).
  public var step = 0
  public internal(set) var traffic = Traffic()

  /// Whether an MPI launcher started this process (Open MPI's mpirun sets OMPI_COMM_WORLD_SIZE;
  /// PMIx launchers set PMIX_RANK).
  public static func launchedByMPI(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> Bool {
    environment["OMPI_COMM_WORLD_SIZE"] != nil || environment["PMIX_RANK"] != nil
  }

  /// What is wrong with TTFC_MPI_TIMEOUT or TTFC_MPI_BUCKET_BYTES, if either is set to something
  /// other than a number in range (checked before training starts, not silently replaced).
  public static func environmentError(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> String? {
    if let text = environment["TTFC_MPI_TIMEOUT"] {
      guard let seconds = Double(text), seconds >= 0.001, seconds <= 86_400 else {
        return "TTFC_MPI_TIMEOUT must be a number of seconds from 0.001 to 86400, got '\(text)'"
      }
    }
    if let text = environment["TTFC_MPI_BUCKET_BYTES"] {
      guard let bytes = Int(text), bytes >= 1, bytes <= 1 << 31 else {
        return "TTFC_MPI_BUCKET_BYTES must be a whole number of bytes from 1 to 2147483648, got '\(text)'"
      }
    }
    return nil
  }

  /// The default deadline of a collective: TTFC_MPI_TIMEOUT seconds, else 120.
  public static var defaultTimeout: Double {
    ProcessInfo.processInfo.environment["TTFC_MPI_TIMEOUT"].flatMap { Double($0) }.flatMap { $0 > 0 && $0.isFinite ? $0 : nil } ?? 120
  }

  nonisolated(unsafe) private static var world: Communicator?

  /// Loads libmpi and joins the world (once per process: MPI initializes once).
  public static func world(timeout: Double = defaultTimeout) throws(DistributedError) -> Communicator {
    if let world { return world }
    guard launchedByMPI() else { throw .notLaunchedByMPI }
    var error = [CChar](repeating: 0, count: 512)
    let path = ProcessInfo.processInfo.environment["TTFC_MPI_LIBRARY"]
    if ttfc_mpi_load(path, &error, error.count) != 0 { throw .mpiUnavailable(Self.text(error)) }
    var rank: Int32 = 0, size: Int32 = 0
    let rc = ttfc_mpi_init(&rank, &size)
    guard rc == 0 else { throw .mpiUnavailable("MPI_Init: \(errorString(rc))") }
    let made = Communicator(rank: Int(rank), size: Int(size), timeout: timeout)
    world = made
    return made
  }

  init(rank: Int, size: Int, timeout: Double) {
    self.rank = rank
    self.size = size
    self.timeoutSeconds = timeout
  }

  static func errorString(_ code: Int32) -> String {
    var characters = [CChar](repeating: 0, count: 1024)
    ttfc_mpi_error_string(code, &characters, characters.count)
    return text(characters)
  }

  static func text(_ characters: [CChar]) -> String {
    String(decoding: characters.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
  }

  /// A started collective; `wait` completes it.
  public struct Request {
    var handle: UnsafeMutableRawPointer?
    let what: String
  }

  func check(_ rc: Int32, _ what: String) throws(DistributedError) {
    guard rc == 0 else { throw .collectiveFailed(rank: rank, what: what, step: step, reason: Self.errorString(rc)) }
  }

  /// Starts summing `count` elements at `buffer` over every rank, in place.
  public func startAllreduce(_ buffer: UnsafeMutableRawPointer, count: Int, type: Int32, what: String) throws(DistributedError) -> Request {
    var request = Request(handle: nil, what: what)
    try check(ttfc_mpi_iallreduce_sum(buffer, Int64(count), type, &request.handle), what)
    return request
  }

  /// Starts gathering every rank's `sendCount` elements into `receive` (rank r's at `offsets[r]`).
  public func startAllgatherv(_ send: UnsafeRawPointer?, sendCount: Int, into receive: UnsafeMutableRawPointer?,
                              counts: [Int32], offsets: [Int32], type: Int32, what: String) throws(DistributedError) -> Request {
    var request = Request(handle: nil, what: what)
    let rc = counts.withUnsafeBufferPointer { c in
      offsets.withUnsafeBufferPointer { o in
        ttfc_mpi_iallgatherv(send, Int64(sendCount), receive, c.baseAddress, o.baseAddress, type, &request.handle)
      }
    }
    try check(rc, what)
    return request
  }

  /// Starts an all-to-all exchange: `sendCounts[r]` elements from `send + sendOffsets[r]` go to rank r.
  public func startAlltoallv(_ send: UnsafeRawPointer?, sendCounts: [Int32], sendOffsets: [Int32], into receive: UnsafeMutableRawPointer?,
                             receiveCounts: [Int32], receiveOffsets: [Int32], type: Int32, what: String) throws(DistributedError) -> Request {
    var request = Request(handle: nil, what: what)
    let rc = sendCounts.withUnsafeBufferPointer { sc in sendOffsets.withUnsafeBufferPointer { so in
      receiveCounts.withUnsafeBufferPointer { rc in receiveOffsets.withUnsafeBufferPointer { ro in
        ttfc_mpi_ialltoallv(send, sc.baseAddress, so.baseAddress, receive, rc.baseAddress, ro.baseAddress, type, &request.handle)
      } } } }
    try check(rc, what)
    return request
  }

  /// Completes `request` within the deadline, or throws the named error.
  public func wait(_ request: inout Request) throws(DistributedError) {
    let start = DispatchTime.now().uptimeNanoseconds
    let rc = ttfc_mpi_wait(&request.handle, timeoutSeconds)
    traffic.waitSeconds += Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9
    if rc == TTFC_MPI_TIMEOUT { throw .timedOut(rank: rank, what: request.what, step: step, seconds: timeoutSeconds) }
    try check(rc, request.what)
  }

  /// Lets MPI progress the collectives in flight (tests each; completed ones become null handles).
  public func progress(_ requests: inout [Request]) throws(DistributedError) {
    for i in requests.indices {
      var done: Int32 = 0
      try check(ttfc_mpi_test(&requests[i].handle, &done), requests[i].what)
    }
  }

  /// Sums doubles over every rank (blocking, with the deadline).
  public func allreduce(_ values: inout [Double], what: String) throws(DistributedError) {
    guard !values.isEmpty else { return }
    let buffer = UnsafeMutableBufferPointer<Double>.allocate(capacity: values.count)
    defer { buffer.deallocate() }
    _ = buffer.initialize(from: values)
    var request = try startAllreduce(buffer.baseAddress!, count: values.count, type: Int32(TTFC_MPI_F64), what: what)
    try wait(&request)
    values = Array(buffer)
  }

  /// Every rank's `values` (the same count on each), rank by rank.
  public func allgather(_ values: [Int64], what: String) throws(DistributedError) -> [[Int64]] {
    let n = values.count
    let send = UnsafeMutableBufferPointer<Int64>.allocate(capacity: max(1, n))
    let all = UnsafeMutableBufferPointer<Int64>.allocate(capacity: max(1, n * size))
    defer { send.deallocate(); all.deallocate() }
    for (i, v) in values.enumerated() { send[i] = v }
    let counts = [Int32](repeating: Int32(n), count: size), offsets = (0..<size).map { Int32($0 * n) }
    var request = try startAllgatherv(UnsafeRawPointer(send.baseAddress!), sendCount: n, into: UnsafeMutableRawPointer(all.baseAddress!),
                                      counts: counts, offsets: offsets, type: Int32(TTFC_MPI_I64), what: what)
    try wait(&request)
    return (0..<size).map { r in (0..<n).map { all[r * n + $0] } }
  }

  /// Waits until every rank arrives (with the deadline).
  public func barrier(what: String) throws(DistributedError) {
    var request = Request(handle: nil, what: what)
    try check(ttfc_mpi_ibarrier(&request.handle), what)
    try wait(&request)
  }

  /// What this process prints when mpirun stops it with SIGTERM (a rank of the job died), and
  /// the exit status it then uses.
  public func onTermination(_ message: String, code: Int32 = 75) {
    ttfc_mpi_on_sigterm(message + "\n", code)
  }

  /// Stops every rank of the job (after a named error on this one).
  public func abort(code: Int32) -> Never {
    fflush(nil)
    ttfc_mpi_abort(code)
    exit(code)
  }

  /// Leaves MPI (at the end of a run).
  public func finalize() { _ = ttfc_mpi_finalize() }
}

/// A 64-bit FNV-1a hash of text (what ranks compare to agree on the model and the run).
public func fingerprint(_ text: String) -> Int64 {
  var h: UInt64 = 0xcbf2_9ce4_8422_2325
  for byte in text.utf8 { h = (h ^ UInt64(byte)) &* 0x100_0000_01b3 }
  return Int64(bitPattern: h)
}
