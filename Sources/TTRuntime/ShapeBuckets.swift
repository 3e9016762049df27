// ShapeBuckets — adaptive dynamic-shape execution. A compiled executable is shape-polymorphic:
// its kernels take every symbolic dimension as a runtime loop bound, and the OpenBLAS calls take
// sizes at run time, so one compilation serves every batch size and sequence length with exactly
// the results of an exact-shape run (no padding, nothing masked). What varies with the shape is
// memory: each run needs an arena laid out for its sizes. The bucket policy maps a symbol's size
// to a bucket edge, and one layout planned at the edge serves every size in the bucket, so a
// stream of varying shapes builds a handful of layouts instead of one per distinct shape.
//
// Why runtime bounds instead of padding to the bucket edge (measured on the W4 step, see
// IR-specs/dynamic-shapes.md): kernels specialized to a static batch of 256 ran no faster than the
// shape-polymorphic ones (20.3-24.4 ms vs 20.6-21.7 ms, machine noise), while padding to powers
// of two would add 39% more rows on average for W6's uniform 1..512 batch sizes, and padding
// changes the meaning of every reduction, mean, softmax, loss and optimizer update over the
// padded axis. Runtime bounds make padding unnecessary, so there is nothing to mask.
//
// Policies: exact (a layout per size), powers of two, geometric with a ratio, an explicit list
// of edges, and adaptive (edges chosen from the observed size histogram to minimize expected
// slack plus the cost of each bucket, revised when the distribution shifts). A megamorphic guard
// stops building layouts for a function that keeps seeing new shapes and serves it from its
// largest layout (grown geometrically when a size exceeds it). A size whose bucket has no layout
// yet runs at once in an existing larger layout while its own is built on a background thread.

import Foundation
import TTCodegen
import TTIR
import TTSupport

/// How a symbol's size maps to the bucket whose memory layout serves it (results never depend on
/// the policy, only memory and layout builds do).
public enum BucketPolicy: Equatable, Sendable, CustomStringConvertible {
  /// A layout per distinct size.
  case exact
  /// The next power of two (the default).
  case powersOfTwo
  /// The next edge of a geometric series with this ratio (in (1, 16]).
  case geometric(ratio: Double)
  /// The smallest listed edge at or above the size (above the largest: the next power of two).
  case list([Int])
  /// Edges chosen from the observed sizes, revised when their distribution shifts.
  case adaptive

  /// Parses `exact`, `pow2`, `geometric:R`, `list:E1,E2,...` or `adaptive`.
  public init(parsing text: String) throws(ExecutableError) {
    let parts = text.split(separator: ":", maxSplits: 1).map(String.init)
    switch parts.first ?? "" {
    case "exact" where parts.count == 1: self = .exact
    case "pow2" where parts.count == 1, "powers-of-two" where parts.count == 1: self = .powersOfTwo
    case "adaptive" where parts.count == 1: self = .adaptive
    case "geometric":
      guard parts.count == 2, let r = Double(parts[1]), r > 1, r <= 16 else {
        throw .invalid("bucket policy 'geometric:R' needs a ratio R in (1, 16], got '\(text)'")
      }
      self = .geometric(ratio: r)
    case "list":
      let edges = parts.count == 2 ? parts[1].split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) } : []
      guard !edges.isEmpty, edges.allSatisfy({ ($0 ?? 0) > 0 }) else {
        throw .invalid("bucket policy 'list:E1,E2,...' needs positive integer edges, got '\(text)'")
      }
      self = .list(edges.map { $0! }.sorted())
    default:
      throw .invalid("unknown bucket policy '\(text)' (expected exact, pow2, geometric:R, list:E1,E2,... or adaptive)")
    }
  }

  public var description: String {
    switch self {
    case .exact: return "exact"
    case .powersOfTwo: return "pow2"
    case .geometric(let r): return "geometric:\(r)"
    case .list(let edges): return "list:" + edges.map(String.init).joined(separator: ",")
    case .adaptive: return "adaptive"
    }
  }

  /// The smallest power of two at least `size` (0 stays 0).
  static func powerOfTwo(atLeast size: Int) -> Int {
    // Past 2^62 the next power of two does not fit an Int: the size is its own edge (it is far
    // beyond any memory anyway, and the memory budget names it).
    if size > 1 << 62 { return size }
    return size <= 1 ? size : 1 << (Int.bitWidth - (size - 1).leadingZeroBitCount)
  }

  /// The bucket edge of a size under a fixed (non-adaptive) policy. Sizes beyond an explicit
  /// list's last edge fall back to powers of two.
  func fixedEdge(for size: Int) -> Int {
    switch self {
    case .exact, .adaptive: return size
    case .powersOfTwo: return Self.powerOfTwo(atLeast: size)
    case .geometric(let r):
      var edge = 1.0
      while edge.rounded(.up) < Double(size) { edge *= r }
      let rounded = edge.rounded(.up)
      return rounded >= 0x1p62 ? size : max(size, Int(rounded))
    case .list(let edges): return edges.first { $0 >= size } ?? Self.powerOfTwo(atLeast: size)
    }
  }
}

/// Chooses bucket edges for one symbol from the sizes it has seen. The expected cost of a set of
/// edges, in symbol elements per run: the slack E[edge(s) - s] over the observed distribution of
/// sizes s (the rows a layout holds beyond need; the rows a padding design would compute), plus
/// `bucketCost` per bucket (building and holding a layout, amortized). Over edges drawn from the
/// observed sizes the optimum is a 1-D partition, solved exactly by dynamic programming over the
/// sorted distinct sizes (O(n^2), n <= `maxDistinct`). The histogram decays (each revision halves
/// old counts), so edges follow a shifting distribution; edges are revised every
/// `revisionInterval` observations (at once when a size exceeds the largest edge) and adopted
/// only when they lower the expected cost by at least `hysteresis`, so a stable stream keeps its
/// buckets. With the default cost, sizes uniform over 1..512 settle on about 5 buckets and a
/// stream where most runs share a few sizes settles on those sizes.
public struct AdaptiveBucketer: Sendable {
  public var bucketCost: Double
  public var revisionInterval: Int
  public var hysteresis = 0.1
  let maxDistinct = 2048
  public private(set) var histogram: [Int: Double] = [:]
  public private(set) var edges: [Int] = []
  public private(set) var revisions = 0
  var sinceRevision = 0

  public init(bucketCost: Double = 10, revisionInterval: Int = 32) {
    self.bucketCost = bucketCost
    self.revisionInterval = revisionInterval
  }

  /// Records a size and returns its bucket edge.
  public mutating func edge(for size: Int) -> Int {
    histogram[size, default: 0] += 1
    sinceRevision += 1
    let beyond = edges.last.map { size > $0 } ?? true
    if beyond || sinceRevision >= revisionInterval { revise(force: beyond) }
    return edges.first { $0 >= size } ?? size
  }

  /// Expected cost per run of `candidate` edges under the current histogram.
  public func cost(of candidate: [Int]) -> Double {
    var slack = 0.0, weight = 0.0
    for (size, count) in histogram {
      slack += count * Double((candidate.first { $0 >= size } ?? size) - size)
      weight += count
    }
    return (weight > 0 ? slack / weight : 0) + bucketCost * Double(candidate.count)
  }

  mutating func revise(force: Bool) {
    sinceRevision = 0
    let best = Self.optimalEdges(histogram, bucketCost: bucketCost)
    // Always cover the largest size seen; otherwise adopt only a clear improvement.
    if force || cost(of: best) < cost(of: edges) * (1 - hysteresis) {
      if best != edges { revisions += 1 }
      edges = best
    }
    // Decay: the next revision weighs recent sizes as much as all older ones together.
    for (k, v) in histogram { histogram[k] = v / 2 < 1e-3 ? nil : v / 2 }
    if histogram.count > maxDistinct {
      // Keep the most frequent sizes and the largest (so the edges still cover it).
      let largest = histogram.keys.max()!
      var trimmed = Dictionary(uniqueKeysWithValues: histogram.sorted { $0.value > $1.value }.prefix(maxDistinct - 1).map { ($0.key, $0.value) })
      trimmed[largest] = histogram[largest]
      histogram = trimmed
    }
  }

  /// Edges minimizing E[edge(s) - s] + bucketCost * (number of edges) for sizes drawn from
  /// `histogram` (counts, normalized here).
  public static func optimalEdges(_ histogram: [Int: Double], bucketCost: Double) -> [Int] {
    let sizes = histogram.keys.sorted()
    let n = sizes.count
    guard n > 0 else { return [] }
    let total = histogram.values.reduce(0, +)
    // Prefix sums of probabilities and probability * size make each group's slack O(1).
    var mass = [Double](repeating: 0, count: n + 1), weighted = [Double](repeating: 0, count: n + 1)
    for (i, s) in sizes.enumerated() {
      let p = histogram[s]! / total
      mass[i + 1] = mass[i] + p
      weighted[i + 1] = weighted[i] + p * Double(s)
    }
    // best[j]: the cost of covering sizes[0..<j]; the group sizes[i..<j] has edge sizes[j-1].
    var best = [Double](repeating: .infinity, count: n + 1)
    var cut = [Int](repeating: 0, count: n + 1)
    best[0] = 0
    for j in 1...n {
      let edge = Double(sizes[j - 1])
      for i in 0..<j {
        let c = best[i] + edge * (mass[j] - mass[i]) - (weighted[j] - weighted[i]) + bucketCost
        if c < best[j] { best[j] = c; cut[j] = i }
      }
    }
    var edges: [Int] = []
    var j = n
    while j > 0 { edges.append(sizes[j - 1]); j = cut[j] }
    return edges.reversed()
  }
}

/// What shape bucketing did, for `--stats`.
public struct ShapeStatistics: Sendable {
  public var runs = 0
  /// Runs served by a layout that already existed for their bucket.
  public var bucketHits = 0
  /// Runs served at once by a larger layout while their own was built in the background.
  public var servedByLargerBucket = 0
  public var layoutsBuilt = 0
  /// Layouts dropped after the adaptive policy moved its edges.
  public var layoutsDropped = 0
  public var backgroundBuilds = 0
  public var layoutSeconds = 0.0
  public var megamorphic = false
  /// Runs per bucket (capacity symbol values).
  public var occupancy: [[Int]: Int] = [:]
  /// Sum over runs of the elements of every symbol's actual size and of its layout's capacity:
  /// capacity / actual - 1 is the memory slack of bucketing (there is no compute padding).
  public var actualElements = 0
  public var capacityElements = 0
  public var paddingOverhead: Double { actualElements == 0 ? 0 : Double(capacityElements) / Double(actualElements) - 1 }
}

/// Serves runs of one executable at varying shapes through bucketed layouts.
public final class ShapeSpecializer: @unchecked Sendable {
  public let executable: Executable
  public let policy: BucketPolicy
  /// Distinct layouts after which the function is declared megamorphic.
  public let megamorphicLimit: Int
  /// Build layouts for new buckets on a background thread when a larger layout can serve meanwhile.
  public var backgroundBuilds = true
  private var adaptive: [AdaptiveBucketer]
  private var prepared: [[Int]: Executable.PreparedRun] = [:]   // key: input shapes, flattened
  private var building: Set<[Int]> = []
  private var stats = ShapeStatistics()
  private let lock = NSLockish()
  private let queue = DispatchQueue(label: "ttfc.layouts", qos: .utility)

  public init(_ executable: Executable, policy: BucketPolicy = .powersOfTwo, megamorphicLimit: Int = 16) {
    self.executable = executable
    self.policy = policy
    self.megamorphicLimit = megamorphicLimit
    adaptive = executable.symbols.map { _ in AdaptiveBucketer() }
  }

  public var statistics: ShapeStatistics { lock.withLock { stats } }
  public var symbols: [String] { executable.symbols }

  /// The bucket edges the adaptive policy currently uses, per symbol.
  public var adaptiveEdges: [String: [Int]] {
    lock.withLock { Dictionary(uniqueKeysWithValues: zip(executable.symbols, adaptive.map(\.edges))) }
  }

  /// Waits until every background layout build has finished.
  public func waitForBackgroundBuilds() { queue.sync {} }

  /// A prepared run for inputs of these types, in the layout of their bucket.
  public func prepare(inputTypes: [TensorType]) throws(ExecutableError) -> Executable.PreparedRun {
    let values = try executable.symbolValues(inputTypes: inputTypes)
    let shapeKey = inputTypes.flatMap { [$0.rank] + ($0.staticShape ?? []) }
    return try lock.withLock { () throws(ExecutableError) -> Executable.PreparedRun in
      stats.runs += 1
      stats.actualElements += values.reduce(0, +)
      let capacity = bucket(for: values)
      let run = try runInBucket(capacity, inputTypes: inputTypes, shapeKey: shapeKey)
      stats.capacityElements += run.capacity.reduce(0, +)
      stats.occupancy[run.capacity, default: 0] += 1
      return run
    }
  }

  private func runInBucket(_ capacity: [Int], inputTypes: [TensorType], shapeKey: [Int]) throws(ExecutableError) -> Executable.PreparedRun {
    if let run = prepared[shapeKey] {
      if run.capacity == capacity { stats.bucketHits += 1; return run }
      // Ran in a larger layout while its own is still being built: keep doing so.
      if building.contains(capacity) { stats.servedByLargerBucket += 1; return run }
    }
    var target = capacity
    if executable.hasLayout(capacity: capacity) {
      stats.bucketHits += 1
    } else if let larger = smallestCovering(capacity), backgroundBuilds {
      // Run at once in the smallest existing layout that covers the bucket; build its own meanwhile.
      target = larger
      stats.servedByLargerBucket += 1
      if !building.contains(capacity) {
        building.insert(capacity)
        stats.backgroundBuilds += 1
        queue.async { [self] in
          let start = DispatchClock.now()
          let built = (try? executable.buildLayout(capacity: capacity)) != nil
          lock.withLock {
            building.remove(capacity)
            if built { stats.layoutsBuilt += 1 }
            stats.layoutSeconds += DispatchClock.now() - start
          }
        }
      }
    } else {
      let start = DispatchClock.now()
      try executable.buildLayout(capacity: capacity)
      stats.layoutsBuilt += 1
      stats.layoutSeconds += DispatchClock.now() - start
    }
    let run = try executable.prepare(inputTypes: inputTypes, capacity: target)
    // Prepared runs are small and cheap to remake; a stream of endless new shapes must not
    // accumulate them.
    if prepared.count >= 4096 { prepared.removeAll(keepingCapacity: true) }
    prepared[shapeKey] = run
    return run
  }

  private func smallestCovering(_ capacity: [Int]) -> [Int]? {
    existingCapacities().filter { zip($0, capacity).allSatisfy { $0 >= $1 } }.min { $0.reduce(0, +) < $1.reduce(0, +) }
  }

  private func existingCapacities() -> [[Int]] { Array(executable.layoutBytes.keys) }

  /// After the adaptive policy moves its edges, layouts that are no longer a bucket are
  /// dropped (their memory returns once no prepared run uses them), so memory follows the
  /// distribution instead of accumulating every bucket ever used.
  private func dropStaleLayouts() {
    for capacity in existingCapacities() where !building.contains(capacity) {
      let current = zip(capacity.indices, capacity).allSatisfy { adaptive[$0.0].edges.contains($0.1) }
      if !current {
        executable.dropLayout(capacity: capacity)
        prepared = prepared.filter { $0.value.capacity != capacity }
        stats.layoutsDropped += 1
      }
    }
  }

  /// The capacity (bucket edge per symbol) for these symbol values, applying the megamorphic guard.
  private func bucket(for values: [Int]) -> [Int] {
    let revisionsBefore = adaptive.map(\.revisions)
    var capacity = zip(values.indices, values).map { (k, size) -> Int in
      if case .adaptive = policy { return adaptive[k].edge(for: size) }
      return policy.fixedEdge(for: size)
    }
    if adaptive.map(\.revisions) != revisionsBefore, !stats.megamorphic { dropStaleLayouts() }
    let existing = existingCapacities()
    if !stats.megamorphic, !existing.contains(capacity), existing.count + building.count >= megamorphicLimit {
      stats.megamorphic = true
    }
    if stats.megamorphic, !existing.contains(capacity) {
      // Stop building layouts: serve from the smallest layout that covers the size; past every
      // layout, the largest is replaced by one grown geometrically (the layout count stays put).
      if let covering = smallestCovering(capacity) { return covering }
      let largest = existing.max { $0.reduce(0, +) < $1.reduce(0, +) } ?? capacity
      let grown = zip(largest, capacity).map { max($0, BucketPolicy.powerOfTwo(atLeast: $1)) }
      if existing.contains(largest), !building.contains(largest) {
        executable.dropLayout(capacity: largest)
        prepared = prepared.filter { $0.value.capacity != largest }
        stats.layoutsDropped += 1
      }
      capacity = grown
    }
    return capacity
  }
}

extension ShapeSpecializer {
  /// Lines for `--stats`: compilation (this executable and the process's kernel caches) and what
  /// bucketing did.
  public func report() -> [String] {
    var lines = executable.compileReport()
    let s = statistics
    let layouts = executable.layoutBytes
    lines.append(String(format: "shapes: %d runs, policy %@: %d layouts built (%d in the background, %.3f s), %d bucket hits, %d runs served by a larger bucket, %d layouts dropped%@",
                        s.runs, policy.description as NSString, s.layoutsBuilt, s.backgroundBuilds, s.layoutSeconds, s.bucketHits,
                        s.servedByLargerBucket, s.layoutsDropped, s.megamorphic ? ", megamorphic (guard on: no new layouts)" : ""))
    lines.append(String(format: "padding: %.1f%% more symbol rows reserved than used (memory only: kernels loop over the exact sizes, no padded compute)",
                        100 * s.paddingOverhead))
    for (capacity, runs) in s.occupancy.sorted(by: { $0.key.lexicographicallyPrecedes($1.key) }) {
      let edge = zip(executable.symbols, capacity).map { "\($0)<=\($1)" }.joined(separator: ", ")
      let bytes = layouts[capacity].map { String(format: ", arena %.2f MiB", Double($0) / 1_048_576) } ?? " (dropped)"
      lines.append("  bucket \(edge): \(runs) runs\(bytes)")
    }
    return lines
  }
}

extension Executable {
  /// Lines for `--stats`: what this executable compiled and the process's kernel cache counters.
  public func compileReport() -> [String] {
    let s = statistics
    let cache = KernelCache.shared.counters
    // Convolution routines (ConvKernels) and layout copies (LayoutCopy) are named only when
    // there are some.
    let convolutions = (s.convolutions > 0 ? "\(s.convolutions) convolutions, " : "")
      + (s.layoutCopies > 0 ? "\(s.layoutCopies) layout copies, " : "")
    var lines = [String(format: "compile: %d kernels, %d BLAS calls, %@%d interpreter thunks in %.3f s (passes %.3f s, parameters %.3f s)",
                        s.kernels, s.gemms, convolutions as NSString, s.interpreted, s.compileSeconds, s.optimizeSeconds, s.parameterSeconds)]
    lines += phaseReport()
    let where_ = KernelCache.shared.disk.map { " (\($0.directory))" } ?? " (disabled)"
    lines.append(String(format: "kernel cache: %d compiled, %d from the disk cache%@, %d hits in memory, %d damaged entries rebuilt, %.3f s",
                        cache.compiled, cache.diskHits, where_ as NSString, cache.memoryHits, cache.diskCorrupt, cache.seconds))
    if let summary = s.interpretedSummary { lines.append(summary) }
    for (reason, count) in s.fallbackReasons.sorted(by: { $0.key < $1.key }) { lines.append("  why (\(count)): \(reason)") }
    return lines
  }
}

extension Executable {
  /// `--stats`' compile phases: each pass (wall and this thread's CPU seconds; on a shared host
  /// the CPU time is the pass's own work), kernel compilation by phase (summed over the
  /// compiling threads), and ttfc's GEMM routines (compiled on a thread of their own, beside the
  /// passes, once per process).
  public func phaseReport() -> [String] {
    let s = statistics
    let passCPU = s.passTimes.reduce(0) { $0 + $1.cpuSeconds }
    var lines = [String(format: "compile phases: passes %.3f s (CPU %.3f s, search work %d):", s.optimizeSeconds, passCPU, s.passWork)]
    for t in s.passTimes {
      lines.append(String(format: "  pass %@ %d run%@ %.3f s (CPU %.3f s)", t.pass.padding(toLength: 18, withPad: " ", startingAt: 0) as NSString,
                          t.runs, t.runs == 1 ? " " : "s", t.seconds, t.cpuSeconds))
    }
    let k = s.kernelPhases
    lines.append(String(format: "  kernels (summed over compile threads): LLVM IR %.3f s, LLVM optimization %.3f s, machine code %.3f s, linking %.3f s",
                        k.emit, k.optimize, k.machineCode, k.link))
    lines.append(String(format: "  GEMM routines %.3f s (on their own thread, beside the passes%@)", s.gemmRoutineSeconds,
                        s.gemmRoutineSeconds == 0 ? "; none compiled for this program" : ""))
    return lines
  }
}
