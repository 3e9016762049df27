// Reductions over a block of axes that keeps the last one (KernelEmitter.emitReductionSweep):
// leading axes split by rows with per-chunk partials combined by the runtime, leading axes of
// integers split by columns, and middle blocks (global pooling) split by the kept first axis.
// Each is checked against the interpreter at sizes that run on several threads, with symbolic
// batch sizes, signed zeros and NaN.
import Testing
import TTCodegen
import TTIR
import TTInterp
@testable import TTRuntime

struct ReductionSweepTests {
  static func pseudoRandom(_ count: Int, seed: UInt64) -> [Double] {
    var state = seed &* 0x9E37_79B9_7F4A_7C15 | 1
    return (0..<count).map { _ in
      state ^= state << 13; state ^= state >> 7; state ^= state << 17
      return Double(state % 20_001) / 10_000 - 1
    }
  }

  /// Relative agreement of two float tensors, NaN where the other is NaN.
  static func agree(_ got: Tensor, _ want: Tensor, tolerance: Double) -> Bool {
    guard got.shape == want.shape else { return false }
    return zip(got.doubles, want.doubles).allSatisfy { g, w in
      (g.isNaN && w.isNaN) || abs(g - w) <= tolerance * max(1, abs(w))
    }
  }

  static func sweep(of module: Module, _ function: String) throws -> [ReductionSweep?] {
    let executable = try Executable(module: module, function: function)
    return executable.kernels.map(\.sweep)
  }

  @Test(arguments: ["reduce_sum", "reduce_mean", "reduce_max", "reduce_min"], [DType.f32, .f64])
  func leadingAxesSplitByRowsEqualTheInterpreter(op: String, dtype: DType) throws {
    // Batch norm's statistics: [B, 16, 16, 24] over N, H and W, with a fused producer.
    let module = try Parser.parseAndVerify("""
      module @m {
        func @f(%x: \(dtype)[B, 16, 16, 24], %m: \(dtype)[24]) -> \(dtype)[24] {
          %d = sub %x, %m : \(dtype)[B, 16, 16, 24]
          %q = mul %d, %d : \(dtype)[B, 16, 16, 24]
          %r = \(op) %q {axes = [0, 1, 2]} : \(dtype)[24]
          return %r
        }
      }
      """)
    let executable = try Executable(module: module, function: "f")
    #expect(executable.kernels.contains { if case .leadingRows = $0.sweep { return true }; return false })
    for batch in [1, 3, 16] {
      let x = Tensor(dtype, shape: [batch, 16, 16, 24], floats: Self.pseudoRandom(batch * 16 * 16 * 24, seed: UInt64(batch)))
      let m = Tensor(dtype, shape: [24], floats: Self.pseudoRandom(24, seed: 99))
      let got = try executable.run([x, m])[0]
      let want = try Interpreter(module: module).run("f", [x, m])[0]
      #expect(Self.agree(got, want, tolerance: dtype == .f32 ? 1e-5 : 1e-12), "batch \(batch)")
    }
  }

  /// Partials combine with IEEE maximum and sums: NaN in one chunk's rows reaches the result, and
  /// a column of negative zeros sums to -0.0 however the rows are split.
  @Test func partialsKeepNaNAndSignedZeros() throws {
    let module = try Parser.parseAndVerify("""
      module @m {
        func @f(%x: f32[B, 64]) -> (f32[64], f32[64], f32[64]) {
          %s = reduce_sum %x {axes = [0]} : f32[64]
          %mx = reduce_max %x {axes = [0]} : f32[64]
          %mn = reduce_min %x {axes = [0]} : f32[64]
          return %s, %mx, %mn
        }
      }
      """)
    let executable = try Executable(module: module, function: "f")
    let rows = 2048
    var values = [Double](repeating: 0, count: rows * 64)
    for r in 0..<rows {
      values[r * 64 + 0] = -0.0                       // all -0.0: sum -0.0, max -0.0, min -0.0
      values[r * 64 + 1] = r == rows - 1 ? .nan : 1   // NaN in the last chunk only
      values[r * 64 + 2] = r % 2 == 0 ? -0.0 : 0.0    // max +0.0, min -0.0
      for c in 3..<64 { values[r * 64 + c] = Double((r * 7 + c) % 11) - 5 }
    }
    let x = Tensor(.f32, shape: [rows, 64], floats: values)
    let got = try executable.run([x])
    let want = try Interpreter(module: module).run("f", [x])
    for (g, w) in zip(got, want) { #expect(Self.agree(g, w, tolerance: 1e-6)) }
    #expect(got[0].doubles[0] == 0 && got[0].doubles[0].sign == .minus)
    #expect(got[1].doubles[1].isNaN && got[2].doubles[1].isNaN && got[0].doubles[1].isNaN)
    #expect(got[1].doubles[2].sign == .plus && got[2].doubles[2].sign == .minus)
    #expect(got[1].doubles[0].sign == .minus)
  }

  /// Global average pooling ([B, H, W, C] over H and W): a middle block, split over B.
  @Test func middleBlockEqualsTheInterpreter() throws {
    let module = try Parser.parseAndVerify("""
      module @m {
        func @f(%x: f32[B, 12, 10, 40]) -> (f32[B, 40], f32[B, 40]) {
          %r = relu %x : f32[B, 12, 10, 40]
          %p = reduce_mean %r {axes = [1, 2]} : f32[B, 40]
          %q = reduce_max %x {axes = [1, 2]} : f32[B, 40]
          return %p, %q
        }
      }
      """)
    let executable = try Executable(module: module, function: "f")
    #expect(executable.kernels.contains { $0.sweep == .middle })
    for batch in [1, 9, 64] {
      let x = Tensor(.f32, shape: [batch, 12, 10, 40], floats: Self.pseudoRandom(batch * 4800, seed: 7))
      let got = try executable.run([x])
      let want = try Interpreter(module: module).run("f", [x])
      for (g, w) in zip(got, want) { #expect(Self.agree(g, w, tolerance: 1e-5), "batch \(batch)") }
    }
  }

  /// bf16 and f16 bias gradients ([B, C] and [B, T, C] over the leading axes) sweep by columns
  /// in f64 blocks: bit for bit the interpreter (f64 sums rounded once through f32), over more
  /// columns than a block, several threads, an empty batch, NaN, signed zeros and values whose
  /// f32 sum would overflow (bf16 has f32's range). The generic nest walked each column, some
  /// 30x slower (W4h's bias gradients).
  @Test(arguments: ["reduce_sum", "reduce_mean", "reduce_max", "reduce_min"], [DType.bf16, .f16])
  func halfColumnReductionsEqualTheInterpreterBitForBit(op: String, dtype: DType) throws {
    guard HalfWidened.supports(dtype) else { return }
    let module = try Parser.parseAndVerify("""
      module @m {
        func @f(%x: \(dtype)[B, 600], %g: \(dtype)[B, 600]) -> \(dtype)[600] {
          %z = constant 0.0 : \(dtype)[]
          %p = gt %x, %z : i1[B, 600]
          %w = where %p, %g, %z : \(dtype)[B, 600]
          %r = \(op) %w {axes = [0]} : \(dtype)[600]
          return %r
        }
        func @g(%x: \(dtype)[B, 7, 300]) -> \(dtype)[300] {
          %r = \(op) %x {axes = [0, 1]} : \(dtype)[300]
          return %r
        }
      }
      """)
    let f = try Executable(module: module, function: "f"), g = try Executable(module: module, function: "g")
    #expect(f.kernels.contains { $0.sweep == .leadingColumns } && g.kernels.contains { $0.sweep == .leadingColumns })
    let big = dtype == .bf16 ? 3e38 : 60000.0
    for batch in [0, 1, 5, 300] {
      var x = Self.pseudoRandom(batch * 600, seed: UInt64(batch + 1)), w = Self.pseudoRandom(batch * 600, seed: UInt64(batch + 50))
      for r in 0..<batch {
        x[r * 600] = 1; w[r * 600] = -0.0                  // a column of negative zeros
        x[r * 600 + 1] = 1; w[r * 600 + 1] = r == batch - 1 ? .nan : 1
        x[r * 600 + 2] = 1; w[r * 600 + 2] = r % 2 == 0 ? big : -big / 2
        x[r * 600 + 3] = 1; w[r * 600 + 3] = big
      }
      let inputs = [Tensor(dtype, shape: [batch, 600], floats: x), Tensor(dtype, shape: [batch, 600], floats: w)]
      let got = try f.run(inputs)[0], want = try Interpreter(module: module).run("f", inputs)[0]
      #expect(got.isIdentical(to: want), "\(op) \(dtype) f, batch \(batch)")
      let y = Tensor(dtype, shape: [batch, 7, 300], floats: Self.pseudoRandom(batch * 2100, seed: UInt64(batch + 9)).map { $0 * 1000 })
      #expect(try g.run([y])[0].isIdentical(to: try Interpreter(module: module).run("g", [y])[0]), "\(op) \(dtype) g, batch \(batch)")
    }
  }

  /// Integer sums and truncating means keep the column split (a partial mean would truncate twice).
  @Test func integerMeansSplitByColumns() throws {
    let module = try Parser.parseAndVerify("""
      module @m {
        func @f(%x: i32[B, 300]) -> i32[300] {
          %r = reduce_mean %x {axes = [0]} : i32[300]
          return %r
        }
      }
      """)
    let executable = try Executable(module: module, function: "f")
    #expect(executable.kernels.contains { $0.sweep == .leadingColumns })
    let rows = 501
    let x = Tensor(.i32, shape: [rows, 300], ints: (0..<(rows * 300)).map { Int64(($0 * 37) % 19) - 9 })
    let got = try executable.run([x])[0]
    let want = try Interpreter(module: module).run("f", [x])[0]
    #expect(got.isIdentical(to: want))
  }

  /// An empty batch: sums are +0.0, means NaN, as the interpreter's reduce ops.
  @Test func emptyRowsGiveTheEmptyReductionValues() throws {
    let module = try Parser.parseAndVerify("""
      module @m {
        func @f(%x: f32[B, 8, 8]) -> (f32[8], f32[8]) {
          %s = reduce_sum %x {axes = [0, 1]} : f32[8]
          %m = reduce_max %x {axes = [0, 1]} : f32[8]
          return %s, %m
        }
      }
      """)
    let executable = try Executable(module: module, function: "f")
    let got = try executable.run([Tensor(.f32, shape: [0, 8, 8], floats: [])])
    #expect(got[0].doubles.allSatisfy { $0 == 0 && $0.sign == .plus })
    #expect(got[1].doubles.allSatisfy { $0 == -.infinity })
  }
}

/// batch_norm_training and batch_norm_inference compile (lower-composites expands them into the
/// swept statistics and one normalizing loop fused with what follows), agree with the
/// interpreter, and refuse an empty batch as the interpreter does.
struct CompiledBatchNormTests {
  static let module = """
    module @m {
      func @train(%x: DT[B, 6, 5, 16], %s: DT[16], %o: DT[16]) -> (DT[B, 6, 5, 16], DT[16], DT[16]) {
        %y, %mean, %var = batch_norm_training %x, %s, %o {epsilon = 0.001} : DT[B, 6, 5, 16], DT[16], DT[16]
        %r = relu %y : DT[B, 6, 5, 16]
        return %r, %mean, %var
      }
      func @serve(%x: DT[B, 16], %s: DT[16], %o: DT[16], %m: DT[16], %v: DT[16]) -> DT[B, 16] {
        %y = batch_norm_inference %x, %s, %o, %m, %v {epsilon = 0.01} : DT[B, 16]
        return %y
      }
    }
    """

  @Test(arguments: [DType.f32, .f64])
  func batchNormCompilesAndEqualsTheInterpreter(dtype: DType) throws {
    let module = try Parser.parseAndVerify(Self.module.replacingOccurrences(of: "DT", with: "\(dtype)"))
    let tolerance = dtype == .f32 ? 2e-5 : 1e-12
    let train = try Executable(module: module, function: "train")
    #expect(train.statistics.interpreted == 0)
    let scale = Tensor(dtype, shape: [16], floats: ReductionSweepTests.pseudoRandom(16, seed: 3).map { $0 + 1.5 })
    let offset = Tensor(dtype, shape: [16], floats: ReductionSweepTests.pseudoRandom(16, seed: 4))
    for batch in [2, 40] {
      let x = Tensor(dtype, shape: [batch, 6, 5, 16], floats: ReductionSweepTests.pseudoRandom(batch * 480, seed: 5).map { $0 * 3 + 0.5 })
      let got = try train.run([x, scale, offset])
      let want = try Interpreter(module: module).run("train", [x, scale, offset])
      for (g, w) in zip(got, want) { #expect(ReductionSweepTests.agree(g, w, tolerance: tolerance), "batch \(batch)") }
    }
    let serve = try Executable(module: module, function: "serve")
    #expect(serve.statistics.interpreted == 0)
    let x = Tensor(dtype, shape: [7, 16], floats: ReductionSweepTests.pseudoRandom(112, seed: 6))
    let mean = Tensor(dtype, shape: [16], floats: ReductionSweepTests.pseudoRandom(16, seed: 7))
    let variance = Tensor(dtype, shape: [16], floats: ReductionSweepTests.pseudoRandom(16, seed: 8).map { $0 + 1.1 })
    let got = try serve.run([x, scale, offset, mean, variance])[0]
    let want = try Interpreter(module: module).run("serve", [x, scale, offset, mean, variance])[0]
    #expect(ReductionSweepTests.agree(got, want, tolerance: tolerance))
  }

  @Test func anEmptyBatchIsANamedErrorCompiledAsInterpreted() throws {
    let module = try Parser.parseAndVerify(Self.module.replacingOccurrences(of: "DT", with: "f32"))
    let train = try Executable(module: module, function: "train")
    let empty = Tensor(.f32, shape: [0, 6, 5, 16], floats: [])
    let scale = Tensor(.f32, shape: [16], floats: Array(repeating: 1, count: 16))
    #expect(throws: (any Error).self) { _ = try Interpreter(module: module).run("train", [empty, scale, scale]) }
    do {
      _ = try train.run([empty, scale, scale])
      Issue.record("an empty batch ran")
    } catch {
      #expect("\(error)".contains("batch_norm_training over an empty batch"))
    }
    // The executable still runs a non-empty batch afterwards.
    let x = Tensor(.f32, shape: [1, 6, 5, 16], floats: ReductionSweepTests.pseudoRandom(480, seed: 1))
    #expect(try train.run([x, scale, scale]).count == 3)
  }
}

/// Defects an outside review found (session 9), each kept as a test.
struct VisionReviewRegressionTests {
  /// An integer mean over an empty symbolic axis is 0, compiled as interpreted (the division by
  /// the zero count trapped with SIGFPE: both arms of the select were computed).
  @Test(arguments: [DType.i64, .i32])
  func anEmptyIntegerMeanIsZero(_ dtype: DType) throws {
    let module = try Parser.parseAndVerify("""
      module @m {
        func @f(%x: \(dtype)[B, 5], %y: \(dtype)[B, 3, 5]) -> (\(dtype)[5], \(dtype)[5], \(dtype)[]) {
          %a = reduce_mean %x {axes = [0]} : \(dtype)[5]
          %b = reduce_mean %y {axes = [0, 1]} : \(dtype)[5]
          %c = reduce_mean %x : \(dtype)[]
          return %a, %b, %c
        }
      }
      """)
    let got = try Executable(module: module, function: "f").run([Tensor(dtype, shape: [0, 5], ints: []), Tensor(dtype, shape: [0, 3, 5], ints: [])])
    #expect(got.allSatisfy { $0.doubles.allSatisfy { $0 == 0 } })
  }

  /// avg_pool of finite values near f32's maximum is finite, as on the interpreter (which sums
  /// in f64): the compiled sum divides before adding.
  @Test(arguments: [DType.f32, .bf16])
  func anAverageOfLargeValuesDoesNotOverflow(_ dtype: DType) throws {
    guard dtype == .f32 || HalfWidened.supports(dtype) else { return }
    let module = try Parser.parseAndVerify("""
      module @m {
        func @f(%x: \(dtype)[1, 1, 2, 1]) -> \(dtype)[1, 1, 1, 1] {
          %a = avg_pool %x {window = [1, 2]} : \(dtype)[1, 1, 1, 1]
          return %a
        }
      }
      """)
    let x = Tensor(dtype, shape: [1, 1, 2, 1], floats: [3e38, 3e38])
    let got = try Executable(module: module, function: "f").run([x])[0]
    let want = try Interpreter(module: module).run("f", [x])[0]
    #expect(got.doubles[0].isFinite && abs(got.doubles[0] - want.doubles[0]) <= 0.01 * want.doubles[0])
  }

  /// A batch norm over no channel but a non-empty batch (M = 3) is not an empty batch: every
  /// result is empty, interpreted and compiled.
  @Test func noChannelsIsNotAnEmptyBatch() throws {
    let module = try Parser.parseAndVerify("""
      module @m {
        func @f(%x: f32[B, 0], %s: f32[0]) -> (f32[B, 0], f32[0], f32[0]) {
          %y, %m, %v = batch_norm_training %x, %s, %s {epsilon = 0.001} : f32[B, 0], f32[0], f32[0]
          return %y, %m, %v
        }
      }
      """)
    let inputs = [Tensor(.f32, shape: [3, 0], floats: []), Tensor(.f32, shape: [0], floats: [])]
    for got in [try Interpreter(module: module).run("f", inputs), try Executable(module: module, function: "f").run(inputs)] {
      #expect(got.map(\.shape) == [[3, 0], [0], [0]])
    }
  }
}
