// TableSerialization — a table as bytes, for checkpoints and for serving. The training form holds
// everything a resumed run needs to continue bit for bit: configuration, and per row its id,
// metadata, stored values and optimizer slots. The serving form keeps only ids and rows
// (optionally only rows seen in training since a given step) and loads as a slot-less table.
// Layout (little endian): magic "TTEMB001", a header of 64-bit fields, the rows, then a CRC-32 of
// everything before it. Reading checks magic, sizes and the checksum and names what is wrong.

import Glibc
import TTSupport

extension EmbeddingTable {
  static let magic: [UInt8] = Array("TTEMB001".utf8)

  /// The table with its slots and metadata (`withSlots`), or only ids and rows for serving,
  /// keeping rows seen at or after `seenSince` when given.
  public func serialized(withSlots: Bool = true, seenSince: Int64? = nil) -> [UInt8] {
    let liveRows = (0..<highWater).filter { r in meta[r].updates >= 0 && (seenSince.map { meta[r].lastSeen >= $0 } ?? true) }
    var out = Self.magic
    func put(_ v: UInt64) { for i in 0..<8 { out.append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))) } }
    func put(_ v: Int64) { put(UInt64(bitPattern: v)) }
    func put(_ f: Float) { let b = f.bitPattern; for i in 0..<4 { out.append(UInt8(truncatingIfNeeded: b >> (8 * UInt32(i)))) } }
    let slotsKept = withSlots ? slotCount : 0
    put(UInt64(dim)); put(UInt64(storage == .f32 ? 0 : 1)); put(UInt64(slotsKept)); put(UInt64(liveRows.count))
    put(seed)
    switch initializer {
    case .zeros: put(UInt64(0)); put(Float(0))
    case .constant(let c): put(UInt64(1)); put(c)
    case .uniform(let s): put(UInt64(2)); put(s)
    case .normal(let s): put(UInt64(3)); put(s)
    }
    put(defaultValue)
    for k in 0..<slotsKept { put(slotInitialValues[k]) }
    for r in liveRows {
      put(meta[r].id); put(Int64(meta[r].updates)); put(UInt64(meta[r].frequency)); put(meta[r].lastUpdate); put(meta[r].lastSeen)
      out.append(contentsOf: UnsafeRawBufferPointer(start: rowSlab.base! + r * rowBytes, count: rowBytes))
      if slotsKept > 0 { out.append(contentsOf: UnsafeRawBufferPointer(start: slotSlab.base! + r * slotBytesPerRow, count: slotBytesPerRow)) }
    }
    put(UInt64(CRC32.checksum(of: out)))
    return out
  }

  /// Reads a table written by `serialized` (admission state is not kept: a restored table
  /// admits as configured by `admission`).
  public static func deserialize(_ bytes: [UInt8], admission: AdmissionPolicy = .always) throws(EmbeddingError) -> EmbeddingTable {
    guard bytes.count >= magic.count + 8, Array(bytes[0..<magic.count]) == magic else { throw .corrupt("not an embedding table (bad magic)") }
    let stored = bytes[(bytes.count - 8)...].enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
    let actual = UInt64(CRC32.checksum(of: bytes[..<(bytes.count - 8)]))
    guard stored == actual else { throw .corrupt("checksum mismatch (truncated or damaged)") }
    var offset = magic.count
    let end = bytes.count - 8
    func u64() throws(EmbeddingError) -> UInt64 {
      guard offset + 8 <= end else { throw .corrupt("truncated header or row") }
      var v: UInt64 = 0
      for i in 0..<8 { v |= UInt64(bytes[offset + i]) << (8 * UInt64(i)) }
      offset += 8
      return v
    }
    func f32() throws(EmbeddingError) -> Float {
      guard offset + 4 <= end else { throw .corrupt("truncated header") }
      var v: UInt32 = 0
      for i in 0..<4 { v |= UInt32(bytes[offset + i]) << (8 * UInt32(i)) }
      offset += 4
      return Float(bitPattern: v)
    }
    // Header values are checked as unsigned numbers before becoming sizes (a forged 2^63 would
    // trap in the conversion), and the row count against the file's length (every row takes at
    // least 40 bytes) before anything is allocated for it.
    let rawDim = try u64(), storageCode = try u64(), rawSlotCount = try u64(), rawRowCount = try u64()
    guard rawDim >= 1, rawDim <= 1 << 16, storageCode <= 1, rawSlotCount <= 8 else {
      throw .corrupt("impossible header values (dim \(rawDim), storage \(storageCode), slots \(rawSlotCount))")
    }
    guard rawRowCount <= UInt64(max(0, end - offset - 24 - 4 * Int(rawSlotCount))) / 40 else {
      throw .corrupt("the header claims \(rawRowCount) rows, more than the file's \(bytes.count) bytes can hold")
    }
    let dim = Int(rawDim), slotCount = Int(rawSlotCount), rowCount = Int(rawRowCount)
    let seed = try u64()
    let kind = try u64(), parameter = try f32()
    let initializer: RowInitializer
    switch kind {
    case 0: initializer = .zeros
    case 1: initializer = .constant(parameter)
    case 2: initializer = .uniform(scale: parameter)
    case 3: initializer = .normal(stddev: parameter)
    default: throw .corrupt("unknown initializer \(kind)")
    }
    let defaultValue = try f32()
    var slotInitial: [Float] = []
    for _ in 0..<slotCount { slotInitial.append(try f32()) }
    let storage: RowStorage = storageCode == 0 ? .f32 : .bf16
    let table = try EmbeddingTable(dim: dim, storage: storage, initializer: initializer, seed: seed, defaultValue: defaultValue,
                                   admission: admission, slotInitialValues: slotInitial, initialCapacity: max(rowCount, 1))
    let perRow = 40 + table.rowBytes + table.slotBytesPerRow
    guard end - offset == rowCount * perRow else { throw .corrupt("expected \(rowCount) rows of \(perRow) bytes") }
    for _ in 0..<rowCount {
      let id = Int64(bitPattern: try u64())
      let updates = Int32(truncatingIfNeeded: Int64(bitPattern: try u64())), frequency = UInt32(truncatingIfNeeded: try u64())
      let lastUpdate = Int64(bitPattern: try u64()), lastSeen = Int64(bitPattern: try u64())
      guard table.row(of: id) < 0, updates >= 0 else { throw .corrupt("duplicate id \(id) or bad metadata") }
      let r = table.insert(id, step: lastSeen)
      table.meta[r] = RowMeta(id: id, updates: updates, frequency: frequency, lastUpdate: lastUpdate, lastSeen: lastSeen)
      bytes.withUnsafeBytes { raw in
        memcpy(table.rowSlab.base! + r * table.rowBytes, raw.baseAddress! + offset, table.rowBytes)
        if table.slotBytesPerRow > 0 {
          memcpy(table.slotSlab.base! + r * table.slotBytesPerRow, raw.baseAddress! + offset + table.rowBytes, table.slotBytesPerRow)
        }
      }
      offset += table.rowBytes + table.slotBytesPerRow
    }
    table.stats = TableStatistics()
    return table
  }
}

extension EmbeddingTable {
  /// Takes over the contents of `other` (a table deserialized from a checkpoint): rows, slots,
  /// metadata and index. Both must have the same dimension, storage and slots.
  public func replaceContents(with other: EmbeddingTable) throws(EmbeddingError) {
    guard other.dim == dim, other.storage == storage, other.slotCount == slotCount else {
      throw .invalid("a table of dim \(other.dim), \(other.storage), \(other.slotCount) slots cannot replace one of dim \(dim), \(storage), \(slotCount) slots")
    }
    swap(&indexKeys, &other.indexKeys)
    swap(&indexRows, &other.indexRows)
    swap(&rowSlab, &other.rowSlab)
    swap(&slotSlab, &other.slotSlab)
    swap(&metaSlab, &other.metaSlab)
    swap(&indexCapacity, &other.indexCapacity)
    swap(&rowCapacity, &other.rowCapacity)
    swap(&highWater, &other.highWater)
    swap(&freeRows, &other.freeRows)
    swap(&count, &other.count)
    scratchPosition = []
  }

  /// Adds the rows of `other` whose id passes `keep`, with their values, slots and metadata: the
  /// union of a table's shards, or one rank's shard of a whole table. An id already here is an
  /// error (two shards that both hold it).
  public func merge(rowsOf other: EmbeddingTable, where keep: (Int64) -> Bool) throws(EmbeddingError) {
    guard other.dim == dim, other.storage == storage, other.slotCount == slotCount else {
      throw .invalid("a table of dim \(other.dim), \(other.storage), \(other.slotCount) slots cannot merge into one of dim \(dim), \(storage), \(slotCount) slots")
    }
    for r in 0..<other.highWater where other.meta[r].updates >= 0 && keep(other.meta[r].id) {
      let m = other.meta[r]
      guard row(of: m.id) < 0 else { throw .corrupt("id \(m.id) is in two shards") }
      let n = insert(m.id, step: m.lastSeen)
      meta[n] = m
      memcpy(rowSlab.base! + n * rowBytes, other.rowSlab.base! + r * rowBytes, rowBytes)
      if slotBytesPerRow > 0 {
        memcpy(slotSlab.base! + n * slotBytesPerRow, other.slotSlab.base! + r * slotBytesPerRow, slotBytesPerRow)
      }
    }
  }

  /// An empty table with this one's configuration (the start of a union of shards).
  public func emptyCopy() throws(EmbeddingError) -> EmbeddingTable {
    try EmbeddingTable(dim: dim, storage: storage, initializer: initializer, seed: seed, defaultValue: defaultValue,
                       admission: admission, slotInitialValues: slotInitialValues, initialCapacity: 1)
  }
}
