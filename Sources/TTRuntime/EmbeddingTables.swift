// EmbeddingTables — where TTIR's table declarations meet TTEmbedding's production tables: a
// fresh EmbeddingTable made from a `table` declaration (for executables and the trainer), and the
// interpreter's view of a production table's contents (a ReferenceTable, TTInterp), so the
// interpreter can evaluate a model over trained tables and tests can check the production table's
// lookups against the interpreter's independent ones.

import TTEmbedding
import TTIR
import TTInterp

extension EmbeddingTable {
  /// A fresh table for `declaration` (row length, storage, initializer and seed, default), with
  /// `slotInitialValues` optimizer slots per row.
  public convenience init(declaration: TableDecl, slotInitialValues: [Float] = []) throws(EmbeddingError) {
    var initializer = RowInitializer.zeros
    var seed: UInt64 = 0
    if let declared = declaration.initializer, case .success(let values) = InitializerSpec.resolve(declared) {
      seed = UInt64(values["seed"] ?? 0)
      switch declared.kind {
      case "ones": initializer = .constant(1)
      case "constant": initializer = .constant(Float(values["value"] ?? 0))
      case "uniform": initializer = .uniform(scale: Float(values["high"] ?? 0))
      case "normal": initializer = .normal(stddev: Float(values["std"] ?? 0))
      default: initializer = .zeros
      }
    }
    guard let shape = declaration.rowType.staticShape, shape.count == 1 else {
      throw .invalid("table '@\(declaration.name)': rows need a static length")
    }
    do {
      try self.init(dim: shape[0], storage: declaration.storage == "bf16" ? .bf16 : .f32,
                    initializer: initializer, seed: seed, defaultValue: Float(declaration.defaultValue),
                    slotInitialValues: slotInitialValues)
    } catch {
      throw .invalid("table '@\(declaration.name)': \(error)")
    }
  }
}

extension ReferenceTable {
  /// What `table` holds now, as the interpreter sees it: every row by id (values as stored,
  /// widened to f32), the storage and the default. Slots and metadata are not part of it.
  public init(contentsOf table: EmbeddingTable) {
    var rows: [Int64: [Float]] = [:]
    for id in table.ids {
      var row = [Float](repeating: 0, count: table.dim)
      table.read(row: table.row(of: id), into: &row)
      rows[id] = row
    }
    self.init(dim: table.dim, storage: table.storage == .bf16 ? .bf16 : .f32, defaultValue: table.defaultValue, rows: rows)
  }
}
