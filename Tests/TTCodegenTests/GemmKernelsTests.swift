// The GEMM routines JIT-compiled by GemmKernels, called directly: each packer lays out a panel as
// documented (k-major, 6 values of A's rows or 16 of B's columns per k), for a panel length with
// and without a remainder after the 8-step transposes; the microkernel stores, or adds to C,
// exactly the fused multiply-add chain in k order (bit for bit), across the unrolled steps and
// the remainder. And the emitted IR has the 12 vector accumulators the design states.
import Testing
import TTCodegen

struct GemmKernelsTests {
  static func values(_ count: Int, offset: Float) -> [Float] {
    (0..<count).map { Float(($0 * 37 + 11) % 101) / 50 - 1 + offset }
  }

  @Test(arguments: [16, 13])
  func packersLayPanelsOutKMajor(_ kc: Int) throws {
    let routines = try GemmKernels.compiled()
    let (rows, columns) = (GemmKernels.rows, GemmKernels.columns)
    let stride = 40
    let source = Self.values(stride * 40, offset: 0)
    var panel = [Float](repeating: .nan, count: kc * columns + 8)
    source.withUnsafeBufferPointer { s in panel.withUnsafeMutableBufferPointer { p in
      // A stored [m, k]: rows 0..<6, k contiguous.
      routines.packPlainA(kc, s.baseAddress!, stride, p.baseAddress!)
    } }
    #expect((0..<kc).allSatisfy { k in (0..<rows).allSatisfy { r in panel[k * rows + r] == source[r * stride + k] } })
    var panels = [Float](repeating: .nan, count: 3 * kc * rows)
    source.withUnsafeBufferPointer { s in panels.withUnsafeMutableBufferPointer { p in
      // A stored [k, m]: for each k, each panel's six rows contiguous; three panels.
      routines.packTransposedA(kc, 3, s.baseAddress!, stride, p.baseAddress!)
    } }
    #expect((0..<3).allSatisfy { q in (0..<kc).allSatisfy { k in (0..<rows).allSatisfy { r in
      panels[q * kc * rows + k * rows + r] == source[k * stride + q * rows + r] } } })
    var second = [Float](repeating: .nan, count: 2 * kc * columns)
    source.withUnsafeBufferPointer { s in second.withUnsafeMutableBufferPointer { p in
      // B stored [k, n]: two panels of 16 columns, the second at offset kc * 16.
      routines.packPlainB(kc, 2, s.baseAddress!, stride, p.baseAddress!)
    } }
    #expect((0..<kc).allSatisfy { k in (0..<columns).allSatisfy { j in second[k * columns + j] == source[k * stride + j] } })
    #expect((0..<kc).allSatisfy { k in (0..<columns).allSatisfy { j in second[kc * columns + k * columns + j] == source[k * stride + 16 + j] } })
    source.withUnsafeBufferPointer { s in panel.withUnsafeMutableBufferPointer { p in
      // B stored [n, k]: columns 0..<16 are rows of B, k contiguous.
      routines.packTransposedB(kc, s.baseAddress!, stride, p.baseAddress!)
    } }
    #expect((0..<kc).allSatisfy { k in (0..<columns).allSatisfy { j in panel[k * columns + j] == source[j * stride + k] } })
  }

  @Test(arguments: [1, 4, 11])
  func microkernelIsTheFusedChainInKOrder(_ kc: Int) throws {
    let routines = try GemmKernels.compiled()
    let (rows, columns) = (GemmKernels.rows, GemmKernels.columns)
    let a = Self.values(kc * rows, offset: 0.25), b = Self.values(kc * columns, offset: -0.125)
    let ldc = columns + 3
    let start = Self.values(rows * ldc, offset: 0.5)
    func expected(accumulate: Bool) -> [Float] {
      var c = start
      for r in 0..<rows {
        for j in 0..<columns {
          var sum: Float = 0
          for k in 0..<kc { sum = sum.addingProduct(a[k * rows + r], b[k * columns + j]) }
          c[r * ldc + j] = accumulate ? start[r * ldc + j] + sum : sum
        }
      }
      return c
    }
    for accumulate in [false, true] {
      var c = start
      a.withUnsafeBufferPointer { pa in b.withUnsafeBufferPointer { pb in c.withUnsafeMutableBufferPointer { pc in
        routines.microkernel(kc, pa.baseAddress!, pb.baseAddress!, pc.baseAddress!, ldc, accumulate ? 1 : 0)
      } } }
      // Bit for bit, and the three columns past the tile in each row of C untouched.
      #expect(c.map(\.bitPattern) == expected(accumulate: accumulate).map(\.bitPattern), "kc \(kc) accumulate \(accumulate)")
    }
  }

  @Test func theMicrokernelKeepsTwelveVectorAccumulators() throws {
    let text = try GemmKernels.llvmText()
    for symbol in ["ttfc_sgemm_6x16", "ttfc_sgemm_pack_a", "ttfc_sgemm_pack_at", "ttfc_sgemm_pack_b", "ttfc_sgemm_pack_bt"] {
      #expect(text.contains("define void @\(symbol)("), "\(symbol)")
    }
    let microkernel = text.components(separatedBy: "define void @ttfc_sgemm_6x16(")[1].components(separatedBy: "\n}\n")[0]
    // 12 accumulators x (4 unrolled steps + 1 remainder step).
    #expect(microkernel.components(separatedBy: "call <8 x float> @llvm.fma.v8f32").count - 1 == 60)
  }
}
