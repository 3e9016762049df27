// Dynamic embedding tables against models that cannot be wrong: a dictionary for 10^6 random
// operations (insert on lookup, lookup, remove, growth and shrink), hand-written references for
// every sparse optimizer over rows that skip steps, and exact export/import.
import Foundation
import Testing
@testable import TTEmbedding

struct Rng: RandomNumberGenerator {
  var state: UInt64
  mutating func next() -> UInt64 {
    state = state &* 6364136223846793005 &+ 1442695040888963407
    var z = state
    z = (z ^ (z >> 33)) &* 0xff51afd7ed558ccd
    return z ^ (z >> 33)
  }
}

struct EmbeddingTableTests {
  @Test(arguments: [RowStorage.f32, .bf16])
  func aMillionRandomOperationsAgreeWithADictionary(_ storage: RowStorage) throws {
    let table = try EmbeddingTable(dim: 3, storage: storage, initializer: .uniform(scale: 1), seed: 7, defaultValue: -9,
                                   initialCapacity: 16)
    var model: [Int64: [Float]] = [:]
    var known: [Int64] = []                 // model's keys, for picking an existing id at random
    var position: [Int64: Int] = [:]
    var rng = Rng(state: 1)
    var peakCapacity = 0, shrinks = 0, lastCapacity = table.rowCapacity
    for step in 0..<1_000_000 {
      // Phases of 250,000 operations: grow, churn, then shrink (mostly removals of existing ids).
      let phase = step / 250_000
      let removeShare = [10, 30, 45, 75][phase]
      let action = Int.random(in: 0..<100, using: &rng)
      let existing = !known.isEmpty && Bool.random(using: &rng)
      let id = existing ? known[Int.random(in: 0..<known.count, using: &rng)] : Int64.random(in: -400_000...400_000, using: &rng) &* 1_000_003
      if action < removeShare {
        let had = model.removeValue(forKey: id) != nil
        #expect(table.remove(id) == had)
        if had {
          let p = position.removeValue(forKey: id)!
          let last = known.removeLast()
          if p < known.count { known[p] = last; position[last] = p }
        }
      } else if action < removeShare + 30 {
        let got = table.lookup([id], training: false)
        let expected = model[id] ?? [-9, -9, -9]
        if got != expected { Issue.record("lookup of \(id) at step \(step): \(got) vs \(expected)"); return }
      } else {
        let got = table.lookup([id], training: true, step: Int64(step))
        if let known = model[id] {
          if got != known { Issue.record("training lookup of \(id) at step \(step): \(got) vs \(known)"); return }
        } else {
          // A new row starts from (seed, id) only; bf16 storage rounds it.
          let initial = (0..<3).map { table.initialValue(id: id, element: $0) }
          let stored = storage == .f32 ? initial : initial.map { Float(bitPattern: UInt32(EmbeddingTable.bf16($0)) << 16) }
          #expect(got == stored)
          model[id] = got
          position[id] = known.count
          known.append(id)
        }
      }
      if table.count != model.count { Issue.record("size \(table.count) vs \(model.count) at step \(step)"); return }
      peakCapacity = max(peakCapacity, table.rowCapacity)
      if table.rowCapacity < lastCapacity { shrinks += 1 }
      lastCapacity = table.rowCapacity
    }
    #expect(Set(table.ids) == Set(model.keys))
    #expect(peakCapacity >= 65_536, "the table grew")
    #expect(shrinks > 0 && table.rowCapacity < peakCapacity / 2, "and gave memory back: \(table.rowCapacity) of \(peakCapacity)")
    let s = table.statistics
    #expect(s.size == model.count && s.inserts > 100_000 && s.removals > 100_000, "\(s)")
  }

  @Test func freedRowsAreReusedAndBytesStayBounded() throws {
    let table = try EmbeddingTable(dim: 16, initialCapacity: 1024)
    for round in 0..<20 {
      let ids = (0..<1000).map { Int64(round * 1000 + $0) }
      _ = table.lookup(ids, training: true)
      for id in ids { table.remove(id) }
    }
    #expect(table.count == 0)
    #expect(table.rowCapacity <= 1024, "20 rounds of 1000 ids in and out reuse the same rows")
    #expect(table.statistics.inserts == 20_000)
  }

  @Test func evaluationNeverInsertsAndMissesReadTheDefault() throws {
    let table = try EmbeddingTable(dim: 2, defaultValue: 0.5)
    #expect(table.lookup([1, 2], training: false) == [0.5, 0.5, 0.5, 0.5])
    #expect(table.count == 0)
    _ = table.lookup([1], training: true)
    #expect(table.count == 1)
    #expect(table.lookup([2], training: false) == [0.5, 0.5])
    _ = table.lookup([1], training: false)
    #expect(table.statistics.hits == 1 && table.statistics.lookups == 5)
  }

  @Test func initialRowsDependOnSeedAndIdOnly() throws {
    let a = try EmbeddingTable(dim: 4, initializer: .normal(stddev: 0.1), seed: 3)
    let b = try EmbeddingTable(dim: 4, initializer: .normal(stddev: 0.1), seed: 3)
    let first = a.lookup([5, 6, 7], training: true)
    let second = b.lookup([7, 6, 5], training: true)
    #expect(Array(first[0..<4]) == Array(second[8..<12]))
    let other = try EmbeddingTable(dim: 4, initializer: .normal(stddev: 0.1), seed: 4)
    #expect(other.lookup([5], training: true) != Array(first[0..<4]))
  }

  @Test func timeToLiveEvictsRowsNotSeenRecently() throws {
    let table = try EmbeddingTable(dim: 2)
    _ = table.lookup([1, 2, 3], training: true, step: 1)
    _ = table.lookup([2], training: true, step: 50)
    _ = table.lookup([3], training: true, step: 95)
    #expect(table.evictExpired(step: 100, ttl: 20) == 2)
    #expect(table.ids == [3])
    #expect(table.statistics.evictions == 2)
  }

  @Test func leastFrequentRowsGoFirstUnderACapacityLimit() throws {
    let table = try EmbeddingTable(dim: 2)
    for (id, times) in [(10, 5), (11, 1), (12, 3), (13, 1), (14, 4)] as [(Int64, Int)] {
      for t in 0..<times { _ = table.lookup([id], training: true, step: Int64(t)) }
    }
    #expect(table.evictLeastFrequent(keeping: 3) == 2)
    #expect(Set(table.ids) == [10, 12, 14])
  }

  @Test func admissionByExactCountAndBySketch() throws {
    let exact = try EmbeddingTable(dim: 2, admission: .minimumCount(3))
    _ = exact.lookup([1, 1, 2], training: true)
    #expect(exact.count == 0)
    let third = exact.lookup([1], training: true)
    #expect(exact.count == 1 && third != [0, 0])
    #expect(exact.statistics.notAdmitted == 3)
    let sketched = try EmbeddingTable(dim: 2, admission: .sketch(count: 3, width: 1024, depth: 4))
    var rng = Rng(state: 5)
    // Rare ids (seen once or twice) must not get rows; ids seen three times must.
    for id in 1000..<1500 { _ = sketched.lookup([Int64(id)], training: true) }
    for id in 1500..<1510 { for _ in 0..<3 { _ = sketched.lookup([Int64(id)], training: true) } }
    let admittedRare = sketched.ids.filter { $0 < 1500 }.count
    #expect(Set(sketched.ids).isSuperset(of: (1500..<1510).map { Int64($0) }), "never admits late")
    #expect(admittedRare < 25, "few early admissions from collisions: \(admittedRare)")
    _ = rng.next()
  }

  @Test(arguments: [RowStorage.f32, .bf16])
  func exportAndImportAreBitExact(_ storage: RowStorage) throws {
    let table = try EmbeddingTable(dim: 5, optimizer: .defaultSparseAdam, storage: storage, seed: 9)
    var rng = Rng(state: 2)
    for step in 1...30 {
      let ids = (0..<40).map { _ in Int64.random(in: 0..<200, using: &rng) }
      var rows = [Int32](repeating: 0, count: ids.count)
      var out = [Float](repeating: 0, count: ids.count * 5)
      ids.withUnsafeBufferPointer { i in _ = table.lookup(i, into: &out, training: true, step: Int64(step), rowsOut: &rows) }
      let grad = (0..<out.count).map { _ in Float.random(in: -1...1, using: &rng) }
      let sparse = rows.withUnsafeBufferPointer { r in grad.withUnsafeBufferPointer { table.sparseGradient(rows: r, grad: $0.baseAddress!) } }
      try table.apply(.defaultSparseAdam, sparse, step: Int64(step), lr: 0.01)
    }
    let bytes = table.serialized()
    let restored = try EmbeddingTable.deserialize(bytes)
    #expect(restored.serialized() == bytes, "a round trip reproduces every byte")
    let ids = table.ids
    #expect(restored.lookup(ids, training: false) == table.lookup(ids, training: false))
    for id in ids.prefix(20) { #expect(restored.metadata(of: id)! == table.metadata(of: id)!) }
    // Serving: rows only, optionally only recent ones.
    let serving = try EmbeddingTable.deserialize(table.serialized(withSlots: false, seenSince: 25))
    #expect(serving.slotCount == 0 && serving.count < table.count && serving.count > 0)
    #expect(serving.lookup(serving.ids, training: false) == table.lookup(serving.ids, training: false))
    // Damage is named.
    var damaged = bytes
    damaged[damaged.count / 2] ^= 1
    #expect(throws: EmbeddingError.self) { try EmbeddingTable.deserialize(damaged) }
    #expect(throws: EmbeddingError.self) { try EmbeddingTable.deserialize(Array(bytes.prefix(bytes.count - 9))) }
    #expect(throws: EmbeddingError.self) { try EmbeddingTable.deserialize([1, 2, 3]) }
  }
}
