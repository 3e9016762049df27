// Program — a compiled function, as TTCompiler hands it to the runtime: the optimized function,
// its value slots (what memory each value lives in, by kind) and the thunks that compute them
// (JIT kernels, GEMMs, interpreter fallbacks, table lookups), with the donation and aliasing the
// memory plan assumed. A Program holds no run-time state: no parameter values, no tables, no
// arenas. An Executable instantiates one with those (several executables may share a program)
// and runs it.

import TTCodegen
import TTIR
import TTInterp

/// A compiled function as the compiler hands it to the runtime: the optimized function, the
/// memory slot of every value and the thunks that compute them. It holds no parameter values,
/// tables or buffers; an ``Executable`` instantiates it.
public struct Program: @unchecked Sendable {
  /// One step of the program. Operands and results are slot indices.
  public enum Thunk {
    /// `inPlace`: operands the kernel may overwrite (it reads each element only to compute the
    /// output elements at the same index), so an output can take the operand's memory. Several
    /// results (an elementwise multi-output kernel) share one shape.
    case kernel(CompiledKernel, operands: [Int], results: [Int], inPlace: [Int])
    case gemm(a: Int, b: Int, c: Int, transposeA: Bool, transposeB: Bool)
    /// C[K, N] = sum over the batch of A_b^T B_b, for A [batch..., T, K] and B [batch..., T, N]:
    /// one GEMM over the batch-flattened rows (a weight gradient of a layer applied per token).
    case gemmSummedOverBatch(a: Int, b: Int, c: Int)
    /// A convolution op (ConvKernels): operands in IR order, f32 or f64.
    case conv(ConvKind, ConvGeometry, operands: [Int], result: Int)
    /// A pooling op (PoolKernels): operands in IR order, f32 or f64.
    case pool(PoolKind, PoolGeometry, operands: [Int], result: Int)
    /// A routine over the rows of the last axis (RowKernels): operands and results in IR order,
    /// f32 or f64 data.
    case rows(RowRoutine, operands: [Int], results: [Int])
    /// A reshape/transpose chain run as a strided copy (LayoutCopy).
    case copy(LayoutCopy, operand: Int, result: Int)
    case interpretOp(OpNode, operands: [Int], result: Int)
    case interpretRegion(Interpreter, operands: [Int], results: [Int])
    /// An embedding op: evaluation lookups of the module's table `table` (operands: ids, and
    /// lengths when pooled).
    case table(String, OpNode, operands: [Int], result: Int)
  }

  /// A value's memory, by kind.
  public struct Slot {
    public enum Storage {
      /// In the arena of a layout (offsets planned per capacity binding of the symbols).
      case arena
      /// Function argument i, written into the arena by each run.
      case argument(Int)
      /// A donated argument of static shape, kept in one buffer of the executable's, shared by
      /// every layout (training state).
      case pinned(Int)
      /// A module parameter: one buffer for the executable's lifetime, filled from the given
      /// value or the declaration's initializer.
      case parameter(String)
      /// A constant of static shape, already broadcast to it.
      case constant(Tensor)
    }
    public var type: TensorType
    public var storage: Storage
    public init(type: TensorType, storage: Storage) { self.type = type; self.storage = storage }
  }

  /// The module compiled (its parameter and table declarations are the program's).
  public let module: Module
  /// The function as written, and after the compiler's pipeline.
  public let function: Function
  public let lowered: Function
  /// The whole module after the pipeline (what `ttfc train --emit-ir` prints).
  public let optimizedModule: Module
  /// The symbolic dimensions of the lowered function, sorted: the order of symbol values.
  public let symbols: [String]
  public let slots: [Slot]
  public let thunks: [Thunk]
  /// The slot of each function result.
  public let outputs: [Int]
  /// Arguments whose buffers the program may overwrite once read (JAX's donate_argnums).
  public let donated: Set<Int>
  /// Result index -> donated argument whose buffer that result should take if it can.
  public let aliasing: [Int: Int]
  /// Kernels, GEMMs, interpreted ops, and the compile times (passes, whole compile).
  public let statistics: ExecutableStatistics
  /// Products of symbolic dims that must not be zero (an expanded op that refuses empty input,
  /// e.g. batch_norm_training): checked for each new binding of the symbols.
  public let nonEmptyRequirements: [NonEmptyRequirement]
  /// For each thunk, the index in `lowered.body` of the op it computes (a gemm region gives two
  /// thunks: its GEMM and its epilogue kernel); empty when the builder did not record them.
  public var thunkOps: [Int] = []

  public init(module: Module, function: Function, lowered: Function, optimizedModule: Module, symbols: [String], slots: [Slot],
              thunks: [Thunk], outputs: [Int], donated: Set<Int>, aliasing: [Int: Int], statistics: ExecutableStatistics,
              nonEmptyRequirements: [NonEmptyRequirement] = []) {
    self.module = module; self.function = function; self.lowered = lowered; self.optimizedModule = optimizedModule
    self.symbols = symbols; self.slots = slots; self.thunks = thunks; self.outputs = outputs
    self.donated = donated; self.aliasing = aliasing; self.statistics = statistics
    self.nonEmptyRequirements = nonEmptyRequirements
  }

  /// The names of the parameters the program reads.
  public var parametersRead: [String] {
    slots.compactMap { if case .parameter(let name) = $0.storage { return name }; return nil }
  }
}
