// EmbeddingTable — a dynamic embedding: a trainable map from i64 ids to rows of `dim` floats that
// grows and shrinks during training. Distinct ids never share a row (ids are not hashed into a
// fixed range, so two users never share a vector).
//
// Layout, chosen for lookup speed and a small per-row overhead:
//   - an open-addressing index (linear probing, power-of-two capacity, load factor <= 1/2) from
//     id to row number; deletion by backward shift, so there are no tombstones to slow probes;
//   - a slab of rows (f32, or bf16 storage that halves memory and is widened on lookup), a slab of
//     optimizer slots ([row][slot][dim] f32, so one row's state is contiguous), and per-row
//     metadata (id, update count, step of the last update, step last seen, frequency);
//   - freed rows go on a free list and are reused; when the table shrinks below a quarter of its
//     row capacity, live rows are compacted to the front and the slabs reallocated at half size.
//     Slabs are mmap'd, so unmapping really returns the pages to the system.
// Rows start from (seed, id) alone through a counter-based generator, so a row's initial value
// does not depend on when it was inserted: runs are reproducible and resumes exact.
// Not thread-safe; the runtime serializes table operations.

import CSupport
import Dispatch
import Glibc

/// Why a table could not be made, updated or read back.
public enum EmbeddingError: Error, CustomStringConvertible, Equatable {
  /// A setting or argument out of range (dimension, slots, admission, optimizer).
  case invalid(String)
  /// Serialized table data that is truncated or damaged.
  case corrupt(String)
  public var description: String {
    switch self {
    case .invalid(let m): return m
    case .corrupt(let m): return "corrupt embedding table data: \(m)"
    }
  }
}

/// How rows are stored: f32, or bf16 (half the memory; widened to f32 on lookup).
public enum RowStorage: String, Sendable, CaseIterable {
  case f32, bf16
  public var byteSize: Int { self == .f32 ? 4 : 2 }
}

/// How a new row starts: zeros, a constant, uniform in [-scale, scale], or normal with stddev.
public enum RowInitializer: Equatable, Sendable {
  case zeros
  case constant(Float)
  case uniform(scale: Float)
  case normal(stddev: Float)
}

/// Which ids get a row when first seen in training.
public enum AdmissionPolicy: Equatable, Sendable {
  /// Every id.
  case always
  /// An id once it has been seen `count` times (exact counts; memory grows with distinct ids).
  case minimumCount(Int)
  /// The same with a count-min sketch of `width` x `depth` counters: memory bounded; may admit
  /// an id early when its counters collide with frequent ids, never late.
  case sketch(count: Int, width: Int, depth: Int)
}

/// A table's size and counters since it was made.
public struct TableStatistics: Sendable, Equatable {
  /// Rows held now, the rows and index slots allocated, and the bytes mapped for them.
  public var size = 0
  public var rowCapacity = 0
  public var indexCapacity = 0
  public var bytes = 0
  public var inserts = 0
  public var removals = 0
  public var evictions = 0
  public var lookups = 0
  public var hits = 0
  public var notAdmitted = 0
  public var hitRate: Double { lookups == 0 ? 0 : Double(hits) / Double(lookups) }
}

/// Memory from mmap, so that freeing or shrinking really returns pages to the system. A slab
/// reserves address space for growth up front (PROT_NONE, no memory committed) and commits pages
/// as it grows, so growing never copies; shrinking gives the tail's pages back (MADV_DONTNEED)
/// in place. Beyond its reservation a slab moves to a larger mapping.
struct Slab {
  private(set) var base: UnsafeMutableRawPointer?
  private(set) var bytes = 0
  private var reserved = 0
  static let page = Int(sysconf(Int32(_SC_PAGESIZE)))

  init(bytes: Int, reserve: Int = 0) {
    self.bytes = bytes
    guard bytes > 0 || reserve > 0 else { return }
    let size = Self.roundUp(max(bytes, reserve))
    let p = mmap(nil, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
    precondition(p != MAP_FAILED, "out of address space: cannot reserve \(size) bytes for an embedding table")
    base = p
    reserved = size
    if bytes > 0 { precondition(mprotect(p, Self.roundUp(bytes), PROT_READ | PROT_WRITE) == 0, "cannot commit \(bytes) bytes") }
  }

  static func roundUp(_ n: Int) -> Int { (n + page - 1) / page * page }

  /// Resizes to `newBytes`, keeping the first `keep` bytes.
  mutating func resize(to newBytes: Int, keep: Int) {
    if let base, newBytes <= reserved {
      let old = Self.roundUp(bytes), new = Self.roundUp(newBytes)
      if new > old {
        precondition(mprotect(base + old, new - old, PROT_READ | PROT_WRITE) == 0, "cannot commit \(new - old) more bytes")
      } else if new < old {
        madvise(base + new, old - new, MADV_DONTNEED)
        mprotect(base + new, old - new, PROT_NONE)
      }
      bytes = newBytes
      return
    }
    let next = Slab(bytes: newBytes, reserve: max(newBytes, reserved) * 4)
    if let base, let target = next.base, keep > 0 { memcpy(target, base, min(keep, newBytes)) }
    release()
    self = next
  }

  mutating func release() {
    if let base { munmap(base, reserved) }
    base = nil
    bytes = 0
    reserved = 0
  }
}

/// A reference handed to worker threads that only read through it, or write disjoint parts.
struct SharedReference<T: AnyObject>: @unchecked Sendable { let object: T }

/// Per-row metadata (32 bytes a row). `updates` is -1 for a freed row.
struct RowMeta {
  var id: Int64
  var updates: Int32
  var frequency: UInt32
  var lastUpdate: Int64
  var lastSeen: Int64
}

/// A dynamic embedding table: a trainable map from i64 ids to rows of ``dim`` floats that grows
/// when new ids arrive in training and shrinks when ids are removed or evicted. Ids are never
/// hashed into a fixed range, so distinct ids never share a row.
///
/// ``lookup(_:training:step:)`` reads rows (in training, new ids get rows); the sparse optimizers
/// (``SparseOptimizer``) update only the rows a batch touched; ``evictExpired(step:ttl:)`` and
/// ``evictLeastFrequent(keeping:)`` bound its size; ``serialized(withSlots:seenSince:)`` and
/// ``deserialize(_:admission:)`` write and read it. Not thread-safe.
public final class EmbeddingTable {
  /// Floats per row.
  public let dim: Int
  public let storage: RowStorage
  /// How a new row starts; with ``seed``, its values depend only on the id.
  public let initializer: RowInitializer
  public let seed: UInt64
  /// The row looked up for an id without a row outside training, or not admitted yet.
  public let defaultValue: Float
  public let admission: AdmissionPolicy
  /// Optimizer slots per row, each `dim` floats (2 for Adam: m and v), and their initial values.
  public let slotCount: Int
  public let slotInitialValues: [Float]

  var indexKeys = Slab(bytes: 0)
  var indexRows = Slab(bytes: 0)
  public internal(set) var indexCapacity = 0
  var rowSlab = Slab(bytes: 0)
  var slotSlab = Slab(bytes: 0)
  var metaSlab = Slab(bytes: 0)
  public internal(set) var rowCapacity = 0
  /// Rows handed out so far, live or freed (freed ones are on `freeRows`).
  var highWater = 0
  var freeRows: [Int32] = []
  /// Ids with a row.
  public internal(set) var count = 0
  var stats = TableStatistics()
  var exactCounts: [Int64: Int32] = [:]
  var sketch: [UInt32] = []
  let minimumRowCapacity = 16
  /// Scratch for summing gradients per row (all -1 between uses).
  var scratchPosition: [Int32] = []

  /// An empty table of rows of `dim` floats (1 to 65536), each with `slotInitialValues.count`
  /// optimizer slots (at most 8) that start at those values.
  public init(dim: Int, storage: RowStorage = .f32, initializer: RowInitializer = .uniform(scale: 0.05), seed: UInt64 = 0,
              defaultValue: Float = 0, admission: AdmissionPolicy = .always, slotInitialValues: [Float] = [],
              initialCapacity: Int = 1024) throws(EmbeddingError) {
    guard dim >= 1, dim <= 1 << 16 else { throw .invalid("an embedding dimension must be in 1...65536, got \(dim)") }
    guard slotInitialValues.count <= 8 else { throw .invalid("an embedding table has 0 to 8 optimizer slots, got \(slotInitialValues.count)") }
    switch admission {
    case .always: break
    case .minimumCount(let n): guard n >= 1 else { throw .invalid("the admission count must be at least 1, got \(n)") }
    case .sketch(let n, let width, let depth):
      guard n >= 1, width >= 16, depth >= 1, depth <= 8 else {
        throw .invalid("sketch admission needs count >= 1, width >= 16 and depth 1...8")
      }
      sketch = [UInt32](repeating: 0, count: width * depth)
    }
    self.dim = dim
    self.storage = storage
    self.initializer = initializer
    self.seed = seed
    self.defaultValue = defaultValue
    self.admission = admission
    self.slotCount = slotInitialValues.count
    self.slotInitialValues = slotInitialValues
    let capacity = max(minimumRowCapacity, Self.powerOfTwo(atLeast: initialCapacity))
    resizeRows(to: capacity)
    rebuildIndex(capacity: capacity * 2)
  }

  deinit { indexKeys.release(); indexRows.release(); rowSlab.release(); slotSlab.release(); metaSlab.release() }

  static func powerOfTwo(atLeast n: Int) -> Int { n <= 1 ? 1 : 1 << (Int.bitWidth - (n - 1).leadingZeroBitCount) }

  // MARK: the index

  @inline(__always) static func mix(_ key: Int64) -> UInt64 {
    var z = UInt64(bitPattern: key) &+ 0x9e3779b97f4a7c15
    z = (z ^ (z >> 30)) &* 0xbf58476d1ce4e5b9
    z = (z ^ (z >> 27)) &* 0x94d049bb133111eb
    return z ^ (z >> 31)
  }

  @inline(__always) var keys: UnsafeMutablePointer<Int64> { indexKeys.base!.assumingMemoryBound(to: Int64.self) }
  @inline(__always) var bucketRows: UnsafeMutablePointer<Int32> { indexRows.base!.assumingMemoryBound(to: Int32.self) }
  @inline(__always) var meta: UnsafeMutablePointer<RowMeta> { metaSlab.base!.assumingMemoryBound(to: RowMeta.self) }

  /// The row number of `id`, or -1 when it has none.
  @inline(__always) public func row(of id: Int64) -> Int {
    let mask = indexCapacity - 1
    var b = Int(truncatingIfNeeded: Self.mix(id)) & mask
    let k = keys, r = bucketRows
    while true {
      let row = r[b]
      if row < 0 { return -1 }
      if k[b] == id { return Int(row) }
      b = (b + 1) & mask
    }
  }

  func indexInsert(_ id: Int64, row: Int) {
    let mask = indexCapacity - 1
    var b = Int(truncatingIfNeeded: Self.mix(id)) & mask
    while bucketRows[b] >= 0 { b = (b + 1) & mask }
    keys[b] = id
    bucketRows[b] = Int32(row)
  }

  /// Removes `id` by backward shift: entries later in its probe run move into the hole when their
  /// home bucket allows, so every remaining id is still found from its home bucket.
  func indexRemove(_ id: Int64) {
    let mask = indexCapacity - 1
    var b = Int(truncatingIfNeeded: Self.mix(id)) & mask
    while bucketRows[b] >= 0 && keys[b] != id { b = (b + 1) & mask }
    guard bucketRows[b] >= 0 else { return }
    var hole = b
    var next = (hole + 1) & mask
    while bucketRows[next] >= 0 {
      let home = Int(truncatingIfNeeded: Self.mix(keys[next])) & mask
      // Movable when the hole lies on the path from its home to where it sits.
      if (next - home) & mask >= (next - hole) & mask {
        keys[hole] = keys[next]
        bucketRows[hole] = bucketRows[next]
        hole = next
      }
      next = (next + 1) & mask
    }
    bucketRows[hole] = -1
  }

  func rebuildIndex(capacity: Int) {
    indexKeys.release(); indexRows.release()
    indexKeys = Slab(bytes: capacity * 8)
    indexRows = Slab(bytes: capacity * 4)
    indexCapacity = capacity
    memset(indexRows.base!, 0xff, capacity * 4)
    for r in 0..<highWater where meta[r].updates >= 0 { indexInsert(meta[r].id, row: r) }
  }

  // MARK: rows

  var rowBytes: Int { dim * storage.byteSize }
  var slotBytesPerRow: Int { dim * 4 * slotCount }

  func resizeRows(to capacity: Int) {
    let keep = min(capacity, highWater)
    rowSlab.resize(to: capacity * rowBytes, keep: keep * rowBytes)
    slotSlab.resize(to: capacity * slotBytesPerRow, keep: keep * slotBytesPerRow)
    metaSlab.resize(to: capacity * MemoryLayout<RowMeta>.stride, keep: keep * MemoryLayout<RowMeta>.stride)
    rowCapacity = capacity
  }

  /// The f32 row of `row` (f32 storage only).
  @inline(__always) public func f32Row(_ row: Int) -> UnsafeMutablePointer<Float> {
    (rowSlab.base! + row * rowBytes).assumingMemoryBound(to: Float.self)
  }

  @inline(__always) func bf16Row(_ row: Int) -> UnsafeMutablePointer<UInt16> {
    (rowSlab.base! + row * rowBytes).assumingMemoryBound(to: UInt16.self)
  }

  /// Slot `slot` of `row`: `dim` floats.
  @inline(__always) public func slot(_ slot: Int, of row: Int) -> UnsafeMutablePointer<Float> {
    (slotSlab.base! + row * slotBytesPerRow).assumingMemoryBound(to: Float.self) + slot * dim
  }

  /// Copies row `row` as f32 into `out`.
  @inline(__always) public func read(row: Int, into out: UnsafeMutablePointer<Float>) {
    if storage == .f32 { out.update(from: f32Row(row), count: dim); return }
    let source = bf16Row(row)
    for j in 0..<dim { out[j] = Float(bitPattern: UInt32(source[j]) << 16) }
  }

  /// Stores f32 values into row `row` (rounded to nearest even for bf16 storage).
  @inline(__always) public func write(row: Int, from values: UnsafePointer<Float>) {
    if storage == .f32 { f32Row(row).update(from: values, count: dim); return }
    let target = bf16Row(row)
    for j in 0..<dim { target[j] = Self.bf16(values[j]) }
  }

  @inline(__always) static func bf16(_ x: Float) -> UInt16 {
    let bits = x.bitPattern
    if x.isNaN { return UInt16(truncatingIfNeeded: bits >> 16) | 0x40 }
    let rounded = bits &+ 0x7fff &+ ((bits >> 16) & 1)
    return UInt16(truncatingIfNeeded: rounded >> 16)
  }

  /// The initial value of element `j` of the row of `id`: a function of (seed, id, j) only. The
  /// row's stream is splitmix64 keyed by seed and id, one mix per element (uniform), or two
  /// uniforms through Box-Muller (normal).
  public func initialValue(id: Int64, element j: Int) -> Float {
    let key = Self.mix(Int64(bitPattern: seed ^ 0x5851_f42d_4c95_7f2d) ^ id)
    @inline(__always) func unit(_ k: Int) -> Double {
      Double(Self.mix(Int64(bitPattern: key &+ UInt64(k) &* 0x9e37_79b9_7f4a_7c15)) >> 11) * 0x1.0p-53
    }
    switch initializer {
    case .zeros: return 0
    case .constant(let c): return c
    case .uniform(let scale): return Float(2 * unit(j) - 1) * scale
    case .normal(let stddev):
      let u1 = 1 - unit(2 * j), u2 = unit(2 * j + 1)
      return Float((-2 * Glibc.log(u1)).squareRoot() * Glibc.cos(2 * Double.pi * u2)) * stddev
    }
  }

  /// Gives `id` a fresh row (initialized, slots at their initial value) and returns it.
  func insert(_ id: Int64, step: Int64) -> Int {
    if count + 1 > indexCapacity / 2 { rebuildIndex(capacity: indexCapacity * 2) }
    let r: Int
    if let free = freeRows.popLast() { r = Int(free) } else {
      if highWater == rowCapacity { resizeRows(to: rowCapacity * 2) }
      r = highWater
      highWater += 1
    }
    if storage == .f32, case .uniform(let scale) = initializer {
      // The common case, one mix per element straight into the row.
      let key = Self.mix(Int64(bitPattern: seed ^ 0x5851_f42d_4c95_7f2d) ^ id), target = f32Row(r)
      for j in 0..<dim {
        let bits = Self.mix(Int64(bitPattern: key &+ UInt64(j) &* 0x9e37_79b9_7f4a_7c15)) >> 11
        target[j] = Float(2 * (Double(bits) * 0x1.0p-53) - 1) * scale
      }
    } else {
      withUnsafeTemporaryAllocation(of: Float.self, capacity: dim) { values in
        for j in 0..<dim { values[j] = initialValue(id: id, element: j) }
        write(row: r, from: values.baseAddress!)
      }
    }
    for s in 0..<slotCount { slot(s, of: r).update(repeating: slotInitialValues[s], count: dim) }
    meta[r] = RowMeta(id: id, updates: 0, frequency: 0, lastUpdate: 0, lastSeen: step)
    indexInsert(id, row: r)
    count += 1
    stats.inserts += 1
    return r
  }

  /// Removes `id` and its row (its slots and metadata go with it). False if it had none.
  @discardableResult
  public func remove(_ id: Int64) -> Bool {
    let r = row(of: id)
    guard r >= 0 else { return false }
    release(row: r)
    stats.removals += 1
    shrinkIfSparse()
    return true
  }

  func release(row r: Int) {
    indexRemove(meta[r].id)
    meta[r].updates = -1
    freeRows.append(Int32(r))
    count -= 1
  }

  /// When fewer than a quarter of the rows are live, compacts them and halves the slabs (and the
  /// index), so a table that shrank gives its memory back.
  func shrinkIfSparse() {
    guard rowCapacity > minimumRowCapacity, count < rowCapacity / 4 else { return }
    // Move live rows from the top down into free rows below `count`.
    var target = 0
    for r in 0..<highWater where meta[r].updates >= 0 {
      if r != target {
        memcpy(rowSlab.base! + target * rowBytes, rowSlab.base! + r * rowBytes, rowBytes)
        if slotBytesPerRow > 0 { memcpy(slotSlab.base! + target * slotBytesPerRow, slotSlab.base! + r * slotBytesPerRow, slotBytesPerRow) }
        meta[target] = meta[r]
      }
      target += 1
    }
    highWater = count
    freeRows.removeAll(keepingCapacity: false)
    var capacity = rowCapacity
    while capacity > minimumRowCapacity && count < capacity / 4 { capacity /= 2 }
    resizeRows(to: capacity)
    rebuildIndex(capacity: capacity * 2)
  }

  // MARK: admission

  /// Records a sighting of an id without a row; true once it may have one.
  func admit(_ id: Int64) -> Bool {
    switch admission {
    case .always: return true
    case .minimumCount(let n):
      let seen = (exactCounts[id] ?? 0) + 1
      if seen >= n { exactCounts[id] = nil; return true }
      exactCounts[id] = seen
      return false
    case .sketch(let n, let width, let depth):
      var least = UInt32.max
      let h = Self.mix(id)
      for d in 0..<depth {
        let column = Int(truncatingIfNeeded: (h >> UInt64(d * 7)) ^ (h &* UInt64(2 * d + 1))) & Int.max % width
        let i = d * width + column
        if sketch[i] < UInt32.max { sketch[i] += 1 }
        least = min(least, sketch[i])
      }
      return least >= UInt32(n)
    }
  }

  // MARK: lookup

  /// Looks up `ids` into `out` (ids.count x dim floats). In training an id without a row gets one
  /// (if admitted), and every id's frequency and last-seen step are recorded; otherwise missing
  /// ids read `defaultValue`. Returns the number of ids that had a row. `rowsOut` receives the
  /// row of each id (-1 for ids served the default), for the gradient.
  @discardableResult
  public func lookup(_ ids: UnsafeBufferPointer<Int64>, into out: UnsafeMutablePointer<Float>, training: Bool,
                     step: Int64 = 0, rowsOut: UnsafeMutablePointer<Int32>? = nil) -> Int {
    let hits: Int
    if training {
      hits = trainingLookup(ids, into: out, step: step, rowsOut: rowsOut)
    } else if ids.count >= 8192 && storage == .f32 {
      // Evaluation reads only: split the batch across the cores.
      let chunks = 4
      let counts = UnsafeMutablePointer<Int>.allocate(capacity: chunks)
      defer { counts.deallocate() }
      let idsAddress = UInt(bitPattern: ids.baseAddress), outAddress = UInt(bitPattern: out), rowsAddress = UInt(bitPattern: rowsOut)
      let countsAddress = UInt(bitPattern: counts), total = ids.count
      let table = SharedReference(object: self)
      DispatchQueue.concurrentPerform(iterations: chunks) { c in
        let lo = total * c / chunks, hi = total * (c + 1) / chunks
        let part = UnsafeBufferPointer(start: UnsafePointer<Int64>(bitPattern: idsAddress)! + lo, count: hi - lo)
        let n = table.object.evaluationLookup(part, into: UnsafeMutablePointer<Float>(bitPattern: outAddress)! + lo * table.object.dim,
                                              rowsOut: UnsafeMutablePointer<Int32>(bitPattern: rowsAddress).map { $0 + lo })
        UnsafeMutablePointer<Int>(bitPattern: countsAddress)![c] = n
      }
      hits = (0..<chunks).reduce(0) { $0 + counts[$1] }
    } else {
      hits = evaluationLookup(ids, into: out, rowsOut: rowsOut)
    }
    stats.lookups += ids.count
    stats.hits += hits
    return hits
  }

  /// Read-only lookups (safe to run on several threads at once).
  func evaluationLookup(_ ids: UnsafeBufferPointer<Int64>, into out: UnsafeMutablePointer<Float>, rowsOut: UnsafeMutablePointer<Int32>?) -> Int {
    let mask = indexCapacity - 1, k = keys, bucket = bucketRows, n = dim, fallback = defaultValue
    var hits = 0
    let ahead = 16
    for (i, id) in ids.enumerated() {
      // The index buckets of a later id are fetched while this one is served.
      if i + ahead < ids.count {
        let later = Int(truncatingIfNeeded: Self.mix(ids[i + ahead])) & mask
        ttfc_prefetch(bucket + later)
        ttfc_prefetch(k + later)
      }
      // And the row of a nearer id, whose bucket has arrived by now.
      if i + ahead / 2 < ids.count {
        let nearer = ids[i + ahead / 2]
        var b = Int(truncatingIfNeeded: Self.mix(nearer)) & mask
        while bucket[b] >= 0 && k[b] != nearer { b = (b + 1) & mask }
        if bucket[b] >= 0 { ttfc_prefetch(rowSlab.base! + Int(bucket[b]) * rowBytes) }
      }
      var b = Int(truncatingIfNeeded: Self.mix(id)) & mask
      var r: Int32 = -1
      while true {
        let candidate = bucket[b]
        if candidate < 0 { break }
        if k[b] == id { r = candidate; break }
        b = (b + 1) & mask
      }
      let target = out + i * n
      if r >= 0 {
        hits += 1
        if storage == .f32 { target.update(from: f32Row(Int(r)), count: n) } else { read(row: Int(r), into: target) }
      } else {
        target.update(repeating: fallback, count: n)
      }
      rowsOut?[i] = r
    }
    return hits
  }

  /// Training lookups in two phases: the ids that have rows are served in parallel (reads
  /// only), then one pass in order inserts the missing ids (admission counts and insertions stay
  /// in id order, so runs are deterministic) and records frequency and last-seen step.
  func trainingLookup(_ ids: UnsafeBufferPointer<Int64>, into out: UnsafeMutablePointer<Float>, step: Int64,
                      rowsOut: UnsafeMutablePointer<Int32>?) -> Int {
    let rows = rowsOut ?? UnsafeMutablePointer<Int32>.allocate(capacity: ids.count)
    defer { if rowsOut == nil { rows.deallocate() } }
    var hits: Int
    if ids.count >= 8192 {
      hits = lookup(ids, into: out, training: false, rowsOut: rows)
      stats.lookups -= ids.count
      stats.hits -= hits
    } else {
      hits = evaluationLookup(ids, into: out, rowsOut: rows)
    }
    var notAdmitted = 0
    let ahead = 8
    for i in 0..<ids.count {
      if i + ahead < ids.count, rows[i + ahead] >= 0 { ttfc_prefetch_for_write(meta + Int(rows[i + ahead])) }
      var r = Int(rows[i])
      if r < 0 {
        r = row(of: ids[i])        // an id first seen earlier in this batch has a row by now
        if r >= 0 { hits += 1 } else {
          if admit(ids[i]) { r = insert(ids[i], step: step) } else { notAdmitted += 1 }
        }
        if r >= 0 { read(row: r, into: out + i * dim) }
        rows[i] = Int32(r)
      }
      if r >= 0 {
        let m = meta + r
        m.pointee.frequency &+= 1
        m.pointee.lastSeen = step
      }
    }
    stats.notAdmitted += notAdmitted
    return hits
  }

  /// Convenience for tests and tools: the rows of `ids` as an array.
  public func lookup(_ ids: [Int64], training: Bool, step: Int64 = 0) -> [Float] {
    var out = [Float](repeating: 0, count: ids.count * dim)
    ids.withUnsafeBufferPointer { i in out.withUnsafeMutableBufferPointer { o in _ = lookup(i, into: o.baseAddress!, training: training, step: step) } }
    return out
  }

  /// The ids with rows, in row order.
  public var ids: [Int64] { (0..<highWater).compactMap { meta[$0].updates >= 0 ? meta[$0].id : nil } }

  /// Metadata of the row of `id`: (updates, frequency, lastUpdate, lastSeen).
  public func metadata(of id: Int64) -> (updates: Int, frequency: Int, lastUpdate: Int64, lastSeen: Int64)? {
    let r = row(of: id)
    guard r >= 0 else { return nil }
    return (Int(meta[r].updates), Int(meta[r].frequency), meta[r].lastUpdate, meta[r].lastSeen)
  }

  // MARK: eviction

  /// Evicts rows not seen in training for more than `ttl` steps before `step`; returns how many.
  @discardableResult
  public func evictExpired(step: Int64, ttl: Int64) -> Int {
    var evicted = 0
    for r in 0..<highWater where meta[r].updates >= 0 && step - meta[r].lastSeen > ttl {
      release(row: r)
      evicted += 1
    }
    stats.evictions += evicted
    shrinkIfSparse()
    return evicted
  }

  /// Keeps at most `capacity` rows, evicting the least frequently looked-up ones (ties: the
  /// least recently seen first); returns how many were evicted.
  @discardableResult
  public func evictLeastFrequent(keeping capacity: Int) -> Int {
    guard count > capacity else { return 0 }
    let live = (0..<highWater).filter { meta[$0].updates >= 0 }
    let order = live.sorted { (meta[$0].frequency, meta[$0].lastSeen) < (meta[$1].frequency, meta[$1].lastSeen) }
    let victims = order.prefix(count - capacity)
    for r in victims { release(row: r) }
    stats.evictions += victims.count
    shrinkIfSparse()
    return victims.count
  }

  public var statistics: TableStatistics {
    var s = stats
    s.size = count
    s.rowCapacity = rowCapacity
    s.indexCapacity = indexCapacity
    s.bytes = indexKeys.bytes + indexRows.bytes + rowSlab.bytes + slotSlab.bytes + metaSlab.bytes
      + freeRows.capacity * 4 + exactCounts.count * 16 + sketch.count * 4
    return s
  }

  /// A table whose rows carry the slots `optimizer` needs.
  public convenience init(dim: Int, optimizer: SparseOptimizer, storage: RowStorage = .f32,
                          initializer: RowInitializer = .uniform(scale: 0.05), seed: UInt64 = 0, defaultValue: Float = 0,
                          admission: AdmissionPolicy = .always, initialCapacity: Int = 1024) throws(EmbeddingError) {
    try self.init(dim: dim, storage: storage, initializer: initializer, seed: seed, defaultValue: defaultValue,
                  admission: admission, slotInitialValues: optimizer.slotInitialValues, initialCapacity: initialCapacity)
  }

  /// Raw bytes of what a row holds (values and slots), the yardstick for memory overhead.
  public var rawBytesPerRow: Int { rowBytes + slotBytesPerRow }
}

/// How `embedding_lookup_pooled` combines the valid rows of an example: their sum, their mean,
/// or their sum divided by the square root of their count (an example with no valid id gets 0).
public enum Combiner: String, Sendable, CaseIterable {
  case sum, mean, sqrtn

  /// The weight of each valid row for an example with `count` valid rows.
  public func weight(count: Int) -> Float {
    guard count > 0 else { return 0 }
    switch self {
    case .sum: return 1
    case .mean: return 1 / Float(count)
    case .sqrtn: return 1 / Float(count).squareRoot()
    }
  }
}

extension EmbeddingTable {
  /// Whether position `l` of an example with `length` valid positions holds a real id.
  @inline(__always)
  public static func isValid(id: Int64, position l: Int, length: Int64?, paddingID: Int64?) -> Bool {
    if let length, Int64(l) >= length { return false }
    if let paddingID, id == paddingID { return false }
    return true
  }

  /// Pooled evaluation lookups: `ids` is batch x width; positions past `lengths[b]` or holding
  /// `paddingID` are skipped; the valid rows of each example are combined into `out` (batch x dim).
  public func lookupPooled(_ ids: UnsafeBufferPointer<Int64>, width: Int, lengths: UnsafeBufferPointer<Int64>?, paddingID: Int64?,
                           combiner: Combiner, into out: UnsafeMutablePointer<Float>) {
    let batch = width == 0 ? (lengths?.count ?? 0) : ids.count / width
    withUnsafeTemporaryAllocation(of: Float.self, capacity: dim) { rowBuffer in
      let row = rowBuffer.baseAddress!
      for b in 0..<batch {
        let target = out + b * dim
        target.update(repeating: 0, count: dim)
        // Two passes over the example's positions: count the valid ones (the combiner's weight
        // depends on the count), then accumulate their rows; no per-example allocation.
        func valid(_ l: Int) -> Bool { Self.isValid(id: ids[b * width + l], position: l, length: lengths?[b], paddingID: paddingID) }
        let count = (0..<width).reduce(0) { $0 + (valid($1) ? 1 : 0) }
        let w = combiner.weight(count: count)
        for l in 0..<width where valid(l) {
          let r = self.row(of: ids[b * width + l])
          if r >= 0 { read(row: r, into: row) } else { row.update(repeating: defaultValue, count: dim) }
          for j in 0..<dim { target[j] += w * row[j] }
        }
        stats.lookups += count
      }
    }
  }
}
