// The production embedding table (TTEmbedding's EmbeddingTable) against the interpreter's model of
// one (TTInterp's ReferenceTable, written from the spec alone) on random data. A shadow model
// follows every change the test makes to the production table — training lookups that insert
// rows and grow it, row writes (bf16 ties, tiny and huge values), removals that compact it, TTL
// and LFU eviction — built from what the test did, never read back from the table, so a bug on
// either side shows. After each change: the table's contents as the interpreter sees them equal
// the shadow; plain lookups (present, absent and removed ids, extreme ids, the parallel path)
// agree bit for bit; pooled lookups (every combiner, padding ids that do and do not have rows,
// lengths short, long and negative) agree within the rounding of the two summation orders; and
// the ops agree too: an Executable over the production table against the Interpreter over the
// shadow, on a module whose declaration made both.

import Testing
import TTEmbedding
import TTCompiler
import TTIR
import TTInterp
import TTRuntime

/// SplitMix64: a small deterministic generator, so a failure reproduces.
struct OracleRandom: RandomNumberGenerator {
  var state: UInt64
  mutating func next() -> UInt64 {
    state &+= 0x9e37_79b9_7f4a_7c15
    var z = state
    z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
    z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
    return z ^ (z >> 31)
  }
}

/// Where two lookups first differ in any bit (the sign of zero included), or nil.
func firstDifference(_ got: [Float], _ want: [Float]) -> String? {
  guard got.count == want.count else { return "\(got.count) values, expected \(want.count)" }
  guard let i = want.indices.first(where: { got[$0].bitPattern != want[$0].bitPattern }) else { return nil }
  return "value \(i): \(got[i]) vs \(want[i])"
}

/// Where two tables' contents first differ (rows, storage, default), or nil.
func contentsDifference(_ got: ReferenceTable, _ want: ReferenceTable) -> String? {
  if got.dim != want.dim || got.storage != want.storage || got.defaultValue.bitPattern != want.defaultValue.bitPattern {
    return "dim \(got.dim), \(got.storage), default \(got.defaultValue) vs dim \(want.dim), \(want.storage), default \(want.defaultValue)"
  }
  for id in Set(got.rows.keys).union(want.rows.keys).sorted() {
    guard let a = got[id], let b = want[id] else { return "id \(id): \(got[id] == nil ? "no row" : "a row") vs \(want[id] == nil ? "no row" : "a row")" }
    if let difference = firstDifference(a, b) { return "row of id \(id): \(difference)" }
  }
  return nil
}

/// A pooled lookup's arguments.
struct PooledQuery {
  var ids: [Int64]
  var batch: Int
  var width: Int
  var lengths: [Int64]?
  var paddingID: Int64?
  var combiner: ReferenceTable.Combiner
}

/// The first element where `got` (a pooled lookup computed elsewhere) is further from `model`'s
/// answer than the two summation orders explain, or nil. The production table adds w·r_i in f32
/// in position order; the model adds the r_i in Double and divides once: they may differ by
/// (n + 4) f32 roundings (n <= width) of the sum of w·|r_i|, which is the pooled lookup of a copy
/// of the model holding absolute values.
func pooledMismatch(_ got: [Float], model: ReferenceTable, _ q: PooledQuery) -> String? {
  let want = model.lookupPooled(q.ids, batch: q.batch, width: q.width, lengths: q.lengths, paddingID: q.paddingID, combiner: q.combiner)
  let absolute = ReferenceTable(dim: model.dim, defaultValue: abs(model.defaultValue), rows: model.rows.mapValues { $0.map(abs) })
  let magnitude = absolute.lookupPooled(q.ids, batch: q.batch, width: q.width, lengths: q.lengths, paddingID: q.paddingID, combiner: q.combiner)
  guard got.count == want.count else { return "\(got.count) values, expected \(want.count)" }
  for i in want.indices {
    let bound = Float(q.width + 4) * 0x1p-23 * magnitude[i]
    let agree = want[i].isFinite && bound.isFinite ? abs(got[i] - want[i]) <= bound
      : got[i].bitPattern == want[i].bitPattern || (got[i].isNaN && want[i].isNaN)
    if !agree { return "element \(i) (example \(i / model.dim)): \(got[i]) vs \(want[i]) (bound \(bound)); \(q)" }
  }
  return nil
}

/// A production table, the shadow model that follows it, and the random choices that drive both.
struct TableAndShadow {
  let table: EmbeddingTable
  var shadow: ReferenceTable
  var rng: OracleRandom
  var step: Int64 = 0
  /// The step each id with a row was last looked up in training (the TTL rule's clock).
  var lastSeen: [Int64: Int64] = [:]
  /// Every id the test has used, so later lookups mix ids with rows, removed ids and new ones.
  var used: [Int64] = []
  var usedSet: Set<Int64> = []

  mutating func someID() -> Int64 {
    if !used.isEmpty && Int.random(in: 0..<3, using: &rng) > 0 { return used[Int.random(in: 0..<used.count, using: &rng)] }
    switch Int.random(in: 0..<10, using: &rng) {
    case 0: return [Int64.min, .max, 0, -1, 1][Int.random(in: 0..<5, using: &rng)]
    case 1: return Int64.random(in: .min ... .max, using: &rng)
    default: return Int64.random(in: -3000...3000, using: &rng)
    }
  }

  /// A value as the test writes it into a row: mostly ordinary, some tiny (subnormal) or huge,
  /// some exactly halfway between two bf16 values, some signed zeros.
  mutating func someValue() -> Float {
    switch Int.random(in: 0..<10, using: &rng) {
    case 0:
      return Float(sign: Bool.random(using: &rng) ? .minus : .plus, exponent: Int.random(in: -140...90, using: &rng),
                   significand: Float.random(in: 1..<2, using: &rng))
    case 1:
      let tie = UInt32.random(in: 0x0080_0000...0x7100_0000, using: &rng) & 0xFFFF_0000 | 0x8000
      return Float(bitPattern: tie | (Bool.random(using: &rng) ? 0x8000_0000 : 0))
    case 2: return Bool.random(using: &rng) ? 0 : -0.0
    default: return Float.random(in: -1...1, using: &rng)
    }
  }

  mutating func remember(_ id: Int64) {
    if usedSet.insert(id).inserted { used.append(id) }
  }

  /// Training lookups of `batch` ids: ids without a row get one (their initializer's values,
  /// rounded as the storage keeps them), which grows the table.
  mutating func train(batch: Int) {
    step += 1
    let ids = (0..<batch).map { _ in someID() }
    _ = table.lookup(ids, training: true, step: step)
    for id in ids {
      if shadow[id] == nil { shadow[id] = (0..<shadow.dim).map { table.initialValue(id: id, element: $0) } }
      lastSeen[id] = step
      remember(id)
    }
  }

  /// New values for `count` rows picked at random.
  mutating func overwrite(count: Int) {
    let ids = Array(shadow.rows.keys).sorted()
    guard !ids.isEmpty else { return }
    for _ in 0..<count {
      let id = ids[Int.random(in: 0..<ids.count, using: &rng)]
      let values = (0..<shadow.dim).map { _ in someValue() }
      table.write(row: table.row(of: id), from: values)
      shadow[id] = values
    }
  }

  /// Removes `count` ids that have rows, and between them a few that may not (already removed,
  /// or never seen); the table compacts when it gets sparse.
  mutating func remove(count: Int) {
    var ids = Array(shadow.rows.keys).sorted()
    ids.shuffle(using: &rng)
    for id in ids.prefix(count) {
      let other = someID()
      for id in Int.random(in: 0..<4, using: &rng) == 0 ? [id, other] : [id] {
        #expect(table.remove(id) == (shadow[id] != nil), "remove \(id)")
        shadow[id] = nil
        lastSeen[id] = nil
      }
    }
  }

  /// TTL eviction: exactly the rows not looked up in training for more than `ttl` steps go.
  mutating func evictExpired(ttl: Int64) {
    let expired = shadow.rows.keys.filter { step - lastSeen[$0]! > ttl }
    #expect(table.evictExpired(step: step, ttl: ttl) == expired.count)
    for id in expired { shadow[id] = nil; lastSeen[id] = nil }
  }

  /// LFU eviction down to `capacity` rows; which rows stay is the table's policy (tested in
  /// TTEmbeddingTests): here the survivors must be rows the shadow has, and keep their values.
  mutating func evictLeastFrequent(keeping capacity: Int) {
    let before = shadow.rows.count
    table.evictLeastFrequent(keeping: capacity)
    let survivors = Set(table.ids)
    #expect(survivors.count == min(before, capacity))
    #expect(survivors.isSubset(of: Set(shadow.rows.keys)))
    for id in Array(shadow.rows.keys) where !survivors.contains(id) { shadow[id] = nil; lastSeen[id] = nil }
  }

  mutating func randomPooledQuery(combiner: ReferenceTable.Combiner) -> PooledQuery {
    let batch = Int.random(in: 1...10, using: &rng)
    let width = Int.random(in: 0..<6, using: &rng) == 0 ? 0 : Int.random(in: 1...8, using: &rng)
    // Without lengths a width-0 call has no way to say its batch; give those lengths.
    let withLengths = width == 0 || Bool.random(using: &rng)
    let lengths = withLengths ? (0..<batch).map { _ in Int64.random(in: -1...Int64(width + 1), using: &rng) } : nil
    var paddingID: Int64? = nil
    switch Int.random(in: 0..<3, using: &rng) {
    case 0: paddingID = -1
    case 1: paddingID = shadow.rows.keys.first ?? 7    // an id that has a row
    default: break
    }
    let ids = (0..<(batch * width)).map { _ in
      paddingID != nil && Int.random(in: 0..<4, using: &rng) == 0 ? paddingID! : someID()
    }
    return PooledQuery(ids: ids, batch: batch, width: width, lengths: lengths, paddingID: paddingID, combiner: combiner)
  }

  /// Every comparison of the production table with the shadow.
  mutating func check(_ stage: String) {
    #expect(contentsDifference(ReferenceTable(contentsOf: table), shadow) == nil, "\(stage): the table's contents as the interpreter sees them")
    #expect(table.count == shadow.rows.count, "\(stage)")
    for size in [0, 1, 7, 40, 9000] {
      let ids = (0..<size).map { _ in someID() }
      let got = table.lookup(ids, training: false)
      #expect(firstDifference(got, shadow.lookup(ids)) == nil, "\(stage): plain lookup of \(size) ids")
    }
    for combiner in ReferenceTable.Combiner.allCases {
      for _ in 0..<6 {
        let q = randomPooledQuery(combiner: combiner)
        var got = [Float](repeating: .nan, count: q.batch * table.dim)
        let production = Combiner(rawValue: combiner.rawValue)!
        q.ids.withUnsafeBufferPointer { ids in
          got.withUnsafeMutableBufferPointer { out in
            if let lengths = q.lengths {
              lengths.withUnsafeBufferPointer { table.lookupPooled(ids, width: q.width, lengths: $0, paddingID: q.paddingID, combiner: production, into: out.baseAddress!) }
            } else {
              table.lookupPooled(ids, width: q.width, lengths: nil, paddingID: q.paddingID, combiner: production, into: out.baseAddress!)
            }
          }
        }
        if let mismatch = pooledMismatch(got, model: shadow, q) { Issue.record("\(stage): pooled lookup: \(mismatch)") }
      }
    }
  }
}

struct EmbeddingOracleTests {
  /// The same table declared with each storage; every lookup form, ids i32 and i64, lengths i32.
  static func module(storage: RowStorage) throws -> Module {
    try Parser.parseAndVerify("""
      module @oracle {
        table @t : f32[5] = uniform(low: -0.5, high: 0.5, seed: 11) {default = -0.25, storage = "\(storage.rawValue)"}
        func @f(%ids: i32[N], %multi: i64[B, L], %n: i32[B]) -> (f32[N, 5], f32[B, 5], f32[B, 5], f32[B, 5]) {
          %rows = embedding_lookup @t, %ids : f32[N, 5]
          %s = embedding_lookup_pooled @t, %multi {padding_id = -1} : f32[B, 5]
          %m = embedding_lookup_pooled @t, %multi, %n {combiner = "mean"} : f32[B, 5]
          %q = embedding_lookup_pooled @t, %multi, %n {combiner = "sqrtn", padding_id = -1} : f32[B, 5]
          return %rows, %s, %m, %q
        }
      }
      """)
  }

  @Test(arguments: [RowStorage.f32, .bf16])
  func productionLookupsAgreeWithTheInterpretersModel(_ storage: RowStorage) throws {
    let module = try Self.module(storage: storage)
    let table = try EmbeddingTable(declaration: module.tables[0])
    let declared = try ReferenceTable(declaration: module.tables[0])
    #expect(contentsDifference(ReferenceTable(contentsOf: table), declared) == nil, "one declaration, the same empty table")
    #expect(declared.storage.rawValue == storage.rawValue && declared.defaultValue == -0.25 && declared.dim == 5)
    var run = TableAndShadow(table: table, shadow: declared, rng: OracleRandom(state: storage == .f32 ? 1 : 2))
    let executable = try Executable(module: module, function: "f", tables: ["t": table])

    /// The ops: the executable reads the production table, the interpreter the shadow.
    func checkOps(_ stage: String) throws {
      let n = Int.random(in: 1...30, using: &run.rng), batch = Int.random(in: 1...8, using: &run.rng), width = Int.random(in: 1...6, using: &run.rng)
      let plainIDs = (0..<n).map { _ in Int64(truncatingIfNeeded: Int32(truncatingIfNeeded: run.someID())) }
      let multi = (0..<(batch * width)).map { _ in Int.random(in: 0..<4, using: &run.rng) == 0 ? -1 : run.someID() }
      let lengths = (0..<batch).map { _ in Int64.random(in: -1...Int64(width + 1), using: &run.rng) }
      let inputs = [Tensor(.i32, shape: [n], ints: plainIDs), Tensor(.i64, shape: [batch, width], ints: multi),
                    Tensor(.i32, shape: [batch], ints: lengths)]
      let compiled = try executable.run(inputs).map { $0.doubles.map { Float($0) } }
      let interpreted = try Interpreter(module: module, tables: ["t": run.shadow]).run("f", inputs).map { $0.doubles.map { Float($0) } }
      #expect(firstDifference(compiled[0], run.shadow.lookup(plainIDs)) == nil, "\(stage): compiled embedding_lookup")
      #expect(firstDifference(interpreted[0], run.shadow.lookup(plainIDs)) == nil, "\(stage): interpreted embedding_lookup")
      let queries = [PooledQuery(ids: multi, batch: batch, width: width, lengths: nil, paddingID: -1, combiner: .sum),
                     PooledQuery(ids: multi, batch: batch, width: width, lengths: lengths, paddingID: nil, combiner: .mean),
                     PooledQuery(ids: multi, batch: batch, width: width, lengths: lengths, paddingID: -1, combiner: .sqrtn)]
      for (k, q) in queries.enumerated() {
        if let mismatch = pooledMismatch(compiled[k + 1], model: run.shadow, q) { Issue.record("\(stage): compiled \(q.combiner): \(mismatch)") }
        #expect(firstDifference(interpreted[k + 1], run.shadow.lookupPooled(multi, batch: batch, width: width, lengths: q.lengths,
                                                                            paddingID: q.paddingID, combiner: q.combiner)) == nil,
                "\(stage): the interpreter's \(q.combiner) is its model's")
      }
    }

    run.check("empty")
    try checkOps("empty")
    for round in 0..<6 {
      run.train(batch: 400)                       // new rows: the table grows past its first capacity
      run.check("round \(round): after inserts")
      run.overwrite(count: 300)
      run.check("round \(round): after writes")
      try checkOps("round \(round)")
    }
    #expect(table.rowCapacity >= 1024, "the table grew")
    let grown = table.rowCapacity
    run.remove(count: run.shadow.rows.count * 9 / 10)    // most rows go: the table compacts
    run.check("after removals")
    #expect(table.rowCapacity < grown, "the table shrank and moved its rows")
    try checkOps("after removals")
    run.train(batch: 200)
    run.step += 5
    run.train(batch: 50)
    run.evictExpired(ttl: 3)
    run.check("after TTL eviction")
    run.evictLeastFrequent(keeping: max(1, run.shadow.rows.count / 3))
    run.check("after LFU eviction")
    try checkOps("after eviction")
  }
}
