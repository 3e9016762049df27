// Tables — a module's `table` declarations made into EmbeddingTables (TTEmbedding), and the
// reference meaning of the embedding ops: `embedding_lookup` reads one row per id (an id without
// a row reads the table's default value; the interpreter never inserts), and
// `embedding_lookup_pooled` combines the valid rows of each example (IR-specs/embeddings.md).

import TTEmbedding
import TTIR

public enum Tables {
  /// A fresh table for a declaration, with `slotInitialValues` optimizer slots per row.
  public static func make(_ decl: TableDecl, slotInitialValues: [Float] = []) throws(InterpreterError) -> EmbeddingTable {
    var initializer = RowInitializer.zeros
    var seed: UInt64 = 0
    if let declared = decl.initializer, case .success(let values) = InitializerSpec.resolve(declared) {
      seed = UInt64(values["seed"] ?? 0)
      switch declared.kind {
      case "ones": initializer = .constant(1)
      case "constant": initializer = .constant(Float(values["value"] ?? 0))
      case "uniform": initializer = .uniform(scale: Float(values["high"] ?? 0))
      case "normal": initializer = .normal(stddev: Float(values["std"] ?? 0))
      default: initializer = .zeros
      }
    }
    do {
      return try EmbeddingTable(dim: decl.rowType.staticShape![0], storage: decl.storage == "bf16" ? .bf16 : .f32,
                                initializer: initializer, seed: seed, defaultValue: Float(decl.defaultValue),
                                slotInitialValues: slotInitialValues)
    } catch {
      throw .invalidModule("table '@\(decl.name)': \(error)")
    }
  }

  /// The result of an embedding op on evaluation lookups of `table`.
  public static func evaluate(_ op: OpNode, table: EmbeddingTable, operands: [Tensor], shape: [Int]) -> Tensor {
    let ids = operands[1].int64s
    var out = [Float](repeating: 0, count: elementCount(shape) ?? 0)
    if op.code == .embeddingLookup {
      ids.withUnsafeBufferPointer { i in out.withUnsafeMutableBufferPointer { o in _ = table.lookup(i, into: o.baseAddress!, training: false) } }
    } else {
      let width = operands[1].shape.count == 2 ? operands[1].shape[1] : 0
      let lengths = operands.count > 2 ? operands[2].int64s : nil
      let combiner = Combiner(rawValue: op.attributes.string("combiner") ?? "sum") ?? .sum
      let padding = op.attributes.int("padding_id").map(Int64.init)
      ids.withUnsafeBufferPointer { i in
        out.withUnsafeMutableBufferPointer { o in
          if let lengths {
            lengths.withUnsafeBufferPointer { table.lookupPooled(i, width: width, lengths: $0, paddingID: padding, combiner: combiner, into: o.baseAddress!) }
          } else {
            table.lookupPooled(i, width: width, lengths: nil, paddingID: padding, combiner: combiner, into: o.baseAddress!)
          }
        }
      }
    }
    return Tensor(.f32, shape: shape, floats: out.map(Double.init))
  }
}
