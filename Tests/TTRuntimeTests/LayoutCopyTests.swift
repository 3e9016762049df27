// Layout copies (LayoutCopy): reshape/transpose chains compiled as strided copies give the
// interpreter's elements bit for bit, for every element type, static and symbolic shapes, tiles
// with ragged edges; a reshape that is no view of the transposed strides stays a kernel.
import Testing
import TTCompiler
import TTIR
import TTInterp
@testable import TTRuntime

struct LayoutCopyTests {
  static func values(_ dtype: DType, _ shape: [Int]) -> Tensor {
    let n = shape.reduce(1, *)
    if dtype.isInteger {
      let bound: Int64 = dtype == .i1 ? 2 : 100
      return Tensor(dtype, shape: shape, ints: (0..<n).map { Int64(($0 * 7919) % Int(bound)) - (dtype == .i1 ? 0 : 50) })
    }
    return Tensor(dtype, shape: shape, floats: (0..<n).map { Double(($0 * 7919) % 1009) / 64 - 7.5 })
  }

  /// Compiles `body` (one function @f of one argument), runs it on `shape`, and checks it against
  /// the interpreter bit for bit; returns the thunk listing.
  static func check(_ body: String, dtype: DType = .f32, shape: [Int]) throws -> [String] {
    let module = try Parser.parseAndVerify("module @m {\n\(body)\n}")
    let executable = try Executable(module: module, function: "f")
    let x = values(dtype, shape)
    let got = try executable.run([x])[0]
    let want = try Interpreter(module: module).run("f", [x])[0]
    #expect(got.shape == want.shape)
    if dtype.isInteger { #expect(got.int64s == want.int64s) } else {
      #expect(got.doubles.map(\.bitPattern) == want.doubles.map(\.bitPattern))
    }
    return executable.thunkListing
  }

  @Test func attentionHeadSplitAndMergeAreCopies() throws {
    // BERT's exported head split ([B,T,H*D] -> [B,H,T,D]), the key's [B,H,D,T], and the merge back.
    for (perm, result) in [([0, 2, 1, 3], "2, 3, 37, 16"), ([0, 2, 3, 1], "2, 3, 16, 37")] {
      let listing = try Self.check("""
        func @f(%x: f32[2, 37, 48]) -> f32[\(result)] {
          %r = reshape %x : f32[2, 37, 3, 16]
          %t = transpose %r {perm = \(perm)} : f32[\(result)]
          return %t
        }
        """, shape: [2, 37, 48])
      #expect(listing.contains { $0.hasPrefix("layout copy") }, "perm \(perm)")
    }
    let merge = try Self.check("""
      func @f(%x: f32[2, 3, 37, 16]) -> f32[2, 37, 48] {
        %t = transpose %x {perm = [0, 2, 1, 3]} : f32[2, 37, 3, 16]
        %r = reshape %t : f32[2, 37, 48]
        return %r
      }
      """, shape: [2, 3, 37, 16])
    #expect(merge.contains { $0.hasPrefix("layout copy") })
    // `--stats` counts them.
    let module = try Parser.parseAndVerify("""
      module @m {
        func @f(%x: f32[2, 3, 37, 16]) -> f32[2, 37, 48] {
          %t = transpose %x {perm = [0, 2, 1, 3]} : f32[2, 37, 3, 16]
          %r = reshape %t : f32[2, 37, 48]
          return %r
        }
      }
      """)
    let report = try Executable(module: module, function: "f").compileReport()
    #expect(report.first?.contains(" 1 layout copies, ") == true, "\(report.first ?? "")")
  }

  @Test func everyElementTypeAndRaggedTiles() throws {
    for dtype in [DType.f32, .f64, .f16, .bf16, .i64, .i32, .i8, .i1] {
      let listing = try Self.check("""
        func @f(%x: \(dtype)[3, 41, 35]) -> \(dtype)[35, 3, 41] {
          %t = transpose %x {perm = [2, 0, 1]} : \(dtype)[35, 3, 41]
          return %t
        }
        """, dtype: dtype, shape: [3, 41, 35])
      #expect(listing.contains { $0.hasPrefix("layout copy") })
    }
  }

  @Test func symbolicLoneTransposeAndUnitAxes() throws {
    // ResNet's NCHW input to NHWC, batch symbolic; unit axes anywhere.
    for batch in [1, 3] {
      let listing = try Self.check("""
        func @f(%x: f32[B, 3, 19, 21]) -> f32[B, 19, 21, 3] {
          %t = transpose %x {perm = [0, 2, 3, 1]} : f32[B, 19, 21, 3]
          return %t
        }
        """, shape: [batch, 3, 19, 21])
      #expect(listing.contains { $0.hasPrefix("layout copy") })
    }
    _ = try Self.check("""
      func @f(%x: f32[1, 5, 1, 7]) -> f32[7, 1, 5] {
        %t = transpose %x {perm = [3, 2, 1, 0]} : f32[7, 1, 5, 1]
        %r = reshape %t : f32[7, 1, 5]
        return %r
      }
      """, shape: [1, 5, 1, 7])
  }

  @Test func longChainsRegroupAxes() throws {
    // Split, transpose, merge axes the transpose separated, transpose again.
    let listing = try Self.check("""
      func @f(%x: f32[4, 6, 10]) -> f32[3, 4, 20] {
        %a = reshape %x : f32[4, 2, 3, 10]
        %b = transpose %a {perm = [0, 3, 1, 2]} : f32[4, 10, 2, 3]
        %c = reshape %b : f32[4, 20, 3]
        %d = transpose %c {perm = [2, 0, 1]} : f32[3, 4, 20]
        return %d
      }
      """, shape: [4, 6, 10])
    #expect(listing.contains { $0.hasPrefix("layout copy") })
  }

  @Test func reshapeThatIsNoViewStaysAKernel() throws {
    // transpose [4,6] -> [6,4] then reshape to [4,6]: the groups of 4 and 6 interleave, so no
    // strides describe the result; the elemental kernel computes it.
    let listing = try Self.check("""
      func @f(%x: f32[4, 6]) -> f32[4, 6] {
        %t = transpose %x {perm = [1, 0]} : f32[6, 4]
        %r = reshape %t : f32[4, 6]
        return %r
      }
      """, shape: [4, 6])
    #expect(!listing.contains { $0.hasPrefix("layout copy") })
    #expect(LayoutCopy.regroup([(6, 1), (4, 6)], into: [4, 6]) == nil)
    // Splitting an axis where a new one ends inside it, and merging non-contiguous axes.
    let split = try #require(LayoutCopy.regroup([(6, 1), (4, 6)], into: [2, 3, 4]))
    #expect(split.map { $0.map(\.size) } == [[2], [3], [4]] && split.map { $0.map(\.stride) } == [[3], [1], [6]])
    let merged = try #require(LayoutCopy.regroup([(6, 1), (4, 6)], into: [24]))
    #expect(merged.map { $0.map(\.size) } == [[6, 4]])
  }
}

/// A batch of matmuls too small to split (attention's [B, H] score products) runs its batch
/// elements on the pool's threads, each GEMM on the one-thread path: the same bits on one and two
/// threads, the interpreter's values within rounding, broadcast batches included.
struct BatchedSmallGemmTests {
  @Test(arguments: ["f32", "f64"])
  func batchElementsSplitOverThreads(_ type: String) throws {
    let module = try Parser.parseAndVerify("""
      module @m {
        func @f(%q: \(type)[3, 4, 37, 16], %k: \(type)[3, 4, 37, 16], %w: \(type)[1, 4, 16, 9]) -> (\(type)[3, 4, 37, 37], \(type)[3, 4, 37, 9]) {
          %s = matmul %q, %k {transpose_b = true} : \(type)[3, 4, 37, 37]
          %v = matmul %q, %w : \(type)[3, 4, 37, 9]
          return %s, %v
        }
      }
      """)
    let dtype: DType = type == "f32" ? .f32 : .f64
    let shapes: [[Int]] = [[3, 4, 37, 16], [3, 4, 37, 16], [1, 4, 16, 9]]
    var inputs: [Tensor] = []
    for (i, shape) in shapes.enumerated() {
      let count = shape.reduce(1, *)
      let values: [Double] = (0..<count).map { e in Double(((e + 17 * i) * 7919) % 1013) / 256 - 2 }
      inputs.append(Tensor(dtype, shape: shape, floats: values))
    }
    let two = try Executable(module: module, function: "f", pool: ThreadPool(threads: 2)).run(inputs)
    let one = try Executable(module: module, function: "f", pool: ThreadPool(threads: 1)).run(inputs)
    let want = try Interpreter(module: module).run("f", inputs)
    for r in 0..<2 {
      let a: [UInt64] = two[r].doubles.map { $0.bitPattern }, b: [UInt64] = one[r].doubles.map { $0.bitPattern }
      #expect(a == b)
      #expect(compiledMismatch(two[r], want[r]) == nil)
    }
  }
}
