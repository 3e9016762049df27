// The interpreter's model of an embedding table against hand-computed answers: absent ids read
// the default, every combiner with padding ids and lengths (short, long, negative, none valid),
// bf16 storage rounding (ties to even, subnormals, overflow, against TTIR's bit-level rounding on
// random values), and the ops through the interpreter: i32 and i64 ids, tables given and changed.
import Testing
import TTIR
import TTInterp

struct ReferenceTableTests {
  static let rows: [Int64: [Float]] = [1: [1, 2], 2: [3, 4], -7: [-0.5, 0.25]]

  @Test func absentIdsReadTheDefaultAndRowsAreReadAsStored() {
    let table = ReferenceTable(dim: 2, defaultValue: 10, rows: Self.rows)
    #expect(table.lookup([1, 99, -7, 2, Int64.min]) == [1, 2, 10, 10, -0.5, 0.25, 3, 4, 10, 10])
    #expect(table.lookup([]) == [])
    #expect(table[99] == nil && table[2] == [3, 4])
  }

  @Test func everyCombinerOverPaddingAndLengths() {
    let table = ReferenceTable(dim: 2, defaultValue: 10, rows: Self.rows)
    // Three examples of width 3: [1, 2, pad], [pad, pad, pad], [2, 2, 5 (absent: reads 10)].
    let ids: [Int64] = [1, 2, -1, -1, -1, -1, 2, 2, 5]
    func pooled(_ combiner: ReferenceTable.Combiner, lengths: [Int64]? = nil, padding: Int64? = -1) -> [Float] {
      table.lookupPooled(ids, batch: 3, width: 3, lengths: lengths, paddingID: padding, combiner: combiner)
    }
    #expect(pooled(.sum) == [4, 6, 0, 0, 16, 18])
    #expect(pooled(.mean) == [2, 3, 0, 0, Float(16.0 / 3), 6])
    #expect(pooled(.sqrtn) == [Float(4 / 2.0.squareRoot()), Float(6 / 2.0.squareRoot()), 0, 0,
                               Float(16 / 3.0.squareRoot()), Float(18 / 3.0.squareRoot())])
    // Lengths cut examples short (1 position, none, 2 positions); a length past the width counts
    // every position, a negative one none.
    #expect(pooled(.sum, lengths: [1, 3, 2]) == [1, 2, 0, 0, 6, 8])
    #expect(pooled(.mean, lengths: [5, -1, 2]) == [2, 3, 0, 0, 3, 4])
    // Without padding, -1 is an id like any other (absent: the default).
    #expect(pooled(.sum, padding: nil) == [14, 16, 30, 30, 16, 18])
    // A padding id that has a row is skipped all the same.
    #expect(pooled(.sum, padding: 2) == [11, 12, 30, 30, 10, 10])
    // Width 0: every example has no valid position.
    #expect(table.lookupPooled([], batch: 2, width: 0, lengths: [3, 0], paddingID: nil, combiner: .mean) == [0, 0, 0, 0])
  }

  @Test func bf16StorageRoundsToNearestEven() {
    let r = ReferenceTable.roundedToBFloat16
    #expect(r(1) == 1 && r(-3.5) == -3.5)
    #expect(r(1 + 0x1p-8) == 1, "halfway between 1 and 1 + 2^-7: to the even one, 1")
    #expect(r(1 + 3 * 0x1p-8) == 1 + 0x1p-6, "halfway between 1 + 2^-7 and 1 + 2^-6: to the even one")
    #expect(r(1 + 0x1p-8 + 0x1p-20) == 1 + 0x1p-7, "just past halfway: up")
    #expect(r(-(1 + 0x1p-8 + 0x1p-20)) == -(1 + 0x1p-7))
    #expect(r(Float.greatestFiniteMagnitude) == .infinity, "past bf16's largest value: infinity")
    #expect(r(-Float.greatestFiniteMagnitude) == -.infinity)
    #expect(r(0x1p-133) == 0x1p-133, "bf16's smallest subnormal stays")
    #expect(r(0x1p-134) == 0, "half of it: a tie, to even (zero)")
    #expect(r(-0x1p-149).sign == .minus && r(-0x1p-149) == 0, "f32's smallest subnormal: -0")
    #expect(r(-0.0).sign == .minus && r(.infinity) == .infinity && r(.nan).isNaN)
    // Against TTIR's bit-level rounding (a different method) on random bit patterns.
    var state: UInt64 = 5
    var differences = 0
    for _ in 0..<200_000 {
      state = state &* 6364136223846793005 &+ 1442695040888963407
      let x = Float(bitPattern: UInt32(truncatingIfNeeded: state >> 32))
      if x.isNaN { continue }
      if r(x).bitPattern != bfloat16Round(x).bitPattern { differences += 1 }
    }
    #expect(differences == 0)
    // A bf16 table stores rounded rows; the default is no stored row and is read as declared.
    var table = ReferenceTable(dim: 2, storage: .bf16, defaultValue: 0.1, rows: [3: [1 + 0x1p-8 + 0x1p-20, 0.1]])
    #expect(table[3] == [1 + 0x1p-7, r(0.1)])
    table[4] = [0.3, -0.3]
    #expect(table.lookup([4, 5]) == [r(0.3), r(-0.3), 0.1, 0.1])
  }

  static let model = """
    module @m {
      table @t : f32[2] = zeros {default = 0.5, storage = "bf16"}
      func @f(%ids: i32[N], %multi: i64[B, 3], %n: i64[B]) -> (f32[N, 2], f32[B, 2]) {
        %rows = embedding_lookup @t, %ids : f32[N, 2]
        %mean = embedding_lookup_pooled @t, %multi, %n {combiner = "mean", padding_id = 0} : f32[B, 2]
        return %rows, %mean
      }
    }
    """

  @Test func theOpsReadTheTablesGivenToTheInterpreter() throws {
    let module = try Parser.parseAndVerify(Self.model)
    let inputs = [Tensor(.i32, shape: [3], ints: [1, 2, 9]), Tensor(.i64, shape: [2, 3], ints: [1, 0, 2, 9, 9, 1]),
                  Tensor(.i64, shape: [2], ints: [3, 2])]
    // No table given: the declaration's, empty (every id reads the default).
    let fresh = try Interpreter(module: module)
    #expect(fresh.tables["t"] == ReferenceTable(dim: 2, storage: .bf16, defaultValue: 0.5))
    let empty = try fresh.run("f", inputs)
    #expect(empty[0].doubles == [0.5, 0.5, 0.5, 0.5, 0.5, 0.5] && empty[1].doubles == [0.5, 0.5, 0.5, 0.5])
    // Given rows; then one changed in the interpreter's copy.
    var interpreter = try Interpreter(module: module, tables: ["t": ReferenceTable(dim: 2, storage: .bf16, defaultValue: 0.5,
                                                                                   rows: [1: [1, 2], 2: [3, 4]])])
    var results = try interpreter.run("f", inputs)
    #expect(results[0].doubles == [1, 2, 3, 4, 0.5, 0.5])
    #expect(results[1].doubles == [2, 3, 0.5, 0.5], "example 0: rows 1 and 2 (0 is padding); example 1: 9 and 9 (absent; 1 is past its length)")
    interpreter.tables["t"]?[2] = [5, 6]
    results = try interpreter.run("f", inputs)
    #expect(results[0].doubles == [1, 2, 5, 6, 0.5, 0.5] && results[1].doubles == [3, 4, 0.5, 0.5])
    // A table whose rows do not fit the declaration is refused by name.
    #expect(throws: InterpreterError.self) { try Interpreter(module: module, tables: ["t": ReferenceTable(dim: 3)]) }
  }
}
