// ReferenceTable — what the interpreter knows of an embedding table, and the reference meaning of
// the embedding ops (IR-specs/embeddings.md). A table here is a plain value: its row length, a
// dictionary from id to row, how its rows are stored (f32, or bf16: every value rounded to
// bfloat16 when it enters the table) and the declaration's `default`, which an id without a row
// reads (the interpreter never inserts: it evaluates, and outside training nothing is inserted).
// It is written from the spec alone, not from TTEmbedding's EmbeddingTable (no hashing, slabs or
// bit tricks), so the production table can be tested against a second, obvious implementation.
// Arithmetic follows the interpreter's rule: in Double, rounded to f32 once at the end.

import TTIR

public struct ReferenceTable: Equatable, Sendable {
  /// How rows are kept: as f32 values, or rounded to bfloat16 (and widened back on reading).
  public enum Storage: String, Sendable, CaseIterable {
    case f32, bf16
  }

  /// How `embedding_lookup_pooled` combines the n valid rows of an example: their sum, the sum
  /// divided by n, or by the square root of n (an example without valid rows gets zeros).
  public enum Combiner: String, Sendable, CaseIterable {
    case sum, mean, sqrtn
  }

  /// Values per row.
  public let dim: Int
  public let storage: Storage
  /// What each value of an id without a row reads (kept as declared: it is no stored row).
  public let defaultValue: Float
  /// The rows, by id; each holds `dim` values, already as the storage keeps them.
  public private(set) var rows: [Int64: [Float]]

  /// A table holding `rows` (each `dim` values long), stored as `storage` says.
  public init(dim: Int, storage: Storage = .f32, defaultValue: Float = 0, rows: [Int64: [Float]] = [:]) {
    precondition(dim >= 1, "a table row holds at least one value")
    self.dim = dim
    self.storage = storage
    self.defaultValue = defaultValue
    self.rows = [:]
    for (id, row) in rows { self[id] = row }
  }

  /// The empty table a declaration describes: every id reads `default`.
  public init(declaration: TableDecl) throws(InterpreterError) {
    guard let shape = declaration.rowType.staticShape, shape.count == 1, shape[0] >= 1 else {
      throw .invalidModule("table '@\(declaration.name)' needs rows of a static length")
    }
    guard let storage = Storage(rawValue: declaration.storage) else {
      throw .invalidModule("table '@\(declaration.name)': unknown storage '\(declaration.storage)'")
    }
    self.init(dim: shape[0], storage: storage, defaultValue: Float(declaration.defaultValue))
  }

  /// The row of `id`, or nil when it has none. Setting a row stores it as the storage keeps it.
  public subscript(id: Int64) -> [Float]? {
    get { rows[id] }
    set {
      guard let newValue else { rows[id] = nil; return }
      precondition(newValue.count == dim, "a row of \(newValue.count) values for a table of \(dim) per row")
      rows[id] = storage == .bf16 ? newValue.map(Self.roundedToBFloat16) : newValue
    }
  }

  /// What a lookup of `id` reads: its row, or `dim` copies of the default.
  public func read(_ id: Int64) -> [Float] {
    rows[id] ?? [Float](repeating: defaultValue, count: dim)
  }

  /// `embedding_lookup`: the rows of `ids`, one after another (ids.count x dim values).
  public func lookup(_ ids: [Int64]) -> [Float] {
    ids.flatMap(read)
  }

  /// `embedding_lookup_pooled` over `batch` examples of `width` ids each (`ids` row-major): a
  /// position is valid unless it is at or past the example's length (when `lengths` is given)
  /// or holds `paddingID` (when given); the valid rows are combined. batch x dim values.
  public func lookupPooled(_ ids: [Int64], batch: Int, width: Int, lengths: [Int64]?, paddingID: Int64?,
                           combiner: Combiner) -> [Float] {
    precondition(ids.count == batch * width && (lengths?.count ?? batch) == batch, "ids and lengths do not fit batch x width")
    var result: [Float] = []
    result.reserveCapacity(batch * dim)
    for example in 0..<batch {
      var validRows: [[Float]] = []
      for position in 0..<width {
        let id = ids[example * width + position]
        if let lengths, Int64(position) >= lengths[example] { continue }
        if let paddingID, id == paddingID { continue }
        validRows.append(read(id))
      }
      let n = Double(validRows.count)
      let divisor: Double
      switch combiner {
      case .sum: divisor = 1
      case .mean: divisor = n
      case .sqrtn: divisor = n.squareRoot()
      }
      for j in 0..<dim {
        let total = validRows.reduce(0.0) { $0 + Double($1[j]) }
        result.append(validRows.isEmpty ? 0 : Float(total / divisor))
      }
    }
    return result
  }

  /// The result of embedding op `op` (embedding_lookup or embedding_lookup_pooled) reading this
  /// table, given its operands (the table's placeholder, the ids, the lengths if any) and the
  /// result's concrete shape.
  func evaluate(_ op: OpNode, operands: [Tensor], shape: [Int]) throws(InterpreterError) -> Tensor {
    guard shape.last == dim else {
      throw .invalidModule("'\(op.code)' reads rows of \(shape.last ?? 0) values from a table holding \(dim) per row")
    }
    let ids = operands[1].int64s
    let values: [Float]
    if op.code == .embeddingLookup {
      values = lookup(ids)
    } else {
      let name = op.attributes.string("combiner") ?? "sum"
      guard let combiner = Combiner(rawValue: name) else { throw .invalidModule("'\(op.code)': unknown combiner '\(name)'") }
      let batch = shape[0]
      let width = operands[1].shape.count == 2 ? operands[1].shape[1] : 0
      values = lookupPooled(ids, batch: batch, width: width, lengths: operands.count > 2 ? operands[2].int64s : nil,
                            paddingID: op.attributes.int("padding_id").map(Int64.init), combiner: combiner)
    }
    return Tensor(.f32, shape: shape, floats: values.map(Double.init))
  }

  /// `x` rounded to the nearest bfloat16 value (ties to the even one), as an f32. bfloat16 keeps
  /// f32's exponent range and 8 significant bits, so its values near x are spaced 2^(e-7) apart,
  /// e being x's binary exponent (never below -126: under it the spacing stays that of the
  /// smallest normal numbers). Rounding x to a multiple of that spacing is exact arithmetic in
  /// Double; a result beyond f32's range becomes infinity. Zeros, infinities and NaN stay.
  public static func roundedToBFloat16(_ x: Float) -> Float {
    guard x.isFinite, x != 0 else { return x }
    let spacing = Double(sign: .plus, exponent: max(Int(x.exponent), -126) - 7, significand: 1)
    return Float((Double(x) / spacing).rounded(.toNearestOrEven) * spacing)
  }
}
