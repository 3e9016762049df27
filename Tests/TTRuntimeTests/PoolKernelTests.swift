// PoolKernels against the interpreter: max_pool, avg_pool and their gradient ops on random
// windows, strides, the three paddings and count_include_pad, f32 and f64, with ties and NaN in
// the inputs (the first maximum wins, NaN propagates), at a batch small enough for one job and
// one large enough to split over the pool, from one compile (the batch is symbolic).
import Testing
import TTIR
import TTInterp
@testable import TTRuntime

struct PoolKernelTests {
  struct Case: CustomStringConvertible {
    var h, w, c, kh, kw, sh, sw: Int
    var padding: String
    /// The same padding as attribute values (for the shape rule).
    var paddingAttribute: (String, Attribute)? = nil
    var countIncludePad: Bool
    var description: String { "\(h)x\(w)x\(c) window \(kh)x\(kw) strides [\(sh), \(sw)] \(padding) count_include_pad \(countIncludePad)" }
    var attributes: String {
      "{\(padding.isEmpty ? "" : padding + ", ")strides = [\(sh), \(sw)], window = [\(kh), \(kw)]}"
    }
  }

  static func cases() -> [Case] {
    var state: UInt64 = 0x51A7
    func pick(_ r: ClosedRange<Int>) -> Int {
      state = state &* 6364136223846793005 &+ 1442695040888963407
      return r.lowerBound + Int((state >> 33) % UInt64(r.count))
    }
    var result: [Case] = []
    for k in 0..<16 {
      var c = Case(h: pick(3...11), w: pick(3...11), c: pick(1...20), kh: pick(1...4), kw: pick(1...4), sh: pick(1...3), sw: pick(1...3),
                   padding: "", countIncludePad: k % 3 == 0)
      c.kh = min(c.kh, c.h); c.kw = min(c.kw, c.w)
      switch k % 3 {
      case 0: c.padding = "padding = \"SAME\""; c.paddingAttribute = ("padding", .string("SAME"))
      case 1: c.padding = "padding = \"VALID\""; c.paddingAttribute = ("padding", .string("VALID"))
      default:
        let pads = [pick(0...c.kh - 1), pick(0...c.kh - 1), pick(0...c.kw - 1), pick(0...c.kw - 1)]
        c.padding = "pads = [\(pads.map(String.init).joined(separator: ", "))]"
        c.paddingAttribute = ("pads", .ints(pads.map { Int64($0) }))
      }
      result.append(c)
    }
    // Overlapping windows on a larger image, so the forward rows and gradient images split.
    result.append(Case(h: 32, w: 32, c: 64, kh: 3, kw: 3, sh: 2, sw: 2, padding: "padding = \"SAME\"",
                       paddingAttribute: ("padding", .string("SAME")), countIncludePad: false))
    return result
  }

  /// Values with many ties (a few levels) and, when asked, NaN.
  static func values(_ count: Int, seed: UInt64, nan: Bool) -> [Double] {
    var s = seed | 1
    return (0..<count).map { _ in
      s ^= s << 13; s ^= s >> 7; s ^= s << 17
      if nan && s % 97 == 0 { return .nan }
      return Double(Int(s % 7)) - 3 + (s % 5 == 0 ? 0.25 : 0)
    }
  }

  @Test(arguments: cases())
  func poolsMatchTheInterpreter(_ c: Case) throws {
    for dtype in [DType.f32, .f64] {
      var pairs: [String: Attribute] = ["strides": .ints([Int64(c.sh), Int64(c.sw)]), "window": .ints([Int64(c.kh), Int64(c.kw)])]
      if let (key, value) = c.paddingAttribute { pairs[key] = value }
      let attributes = Attributes(pairs)
      let g = try ShapeRules.window2D(input: TensorType(dtype, [.symbol("B"), .known(c.h), .known(c.w), .known(c.c)]),
                                      window: [c.kh, c.kw], attributes: attributes, dilated: false, poolPadding: true)
      let (oh, ow) = (g.output[0], g.output[1])
      let t = "\(dtype)"
      let avg = c.attributes.dropLast() + ", count_include_pad = \(c.countIncludePad)}"
      let module = try Parser.parseAndVerify("""
        module @m {
          func @f(%x: \(t)[B, \(c.h), \(c.w), \(c.c)], %dy: \(t)[B, \(oh), \(ow), \(c.c)]) -> (\(t)[B, \(oh), \(ow), \(c.c)], \(t)[B, \(c.h), \(c.w), \(c.c)], \(t)[B, \(oh), \(ow), \(c.c)], \(t)[B, \(c.h), \(c.w), \(c.c)]) {
            %mx = max_pool %x \(c.attributes) : \(t)[B, \(oh), \(ow), \(c.c)]
            %gx = max_pool_grad %x, %dy \(c.attributes) : \(t)[B, \(c.h), \(c.w), \(c.c)]
            %av = avg_pool %x \(avg) : \(t)[B, \(oh), \(ow), \(c.c)]
            %ga = avg_pool_grad %dy \(avg) : \(t)[B, \(c.h), \(c.w), \(c.c)]
            return %mx, %gx, %av, %ga
          }
        }
        """)
      let executable = try Executable(module: module, function: "f")
      #expect(executable.statistics.poolings == 4 && executable.statistics.interpretedOpCount == 0)
      for (batch, nan) in [(1, false), (9, true)] {
        let x = Tensor(dtype, shape: [batch, c.h, c.w, c.c], floats: Self.values(batch * c.h * c.w * c.c, seed: UInt64(batch * 31 + c.c), nan: nan))
        let dy = Tensor(dtype, shape: [batch, oh, ow, c.c], floats: Self.values(batch * oh * ow * c.c, seed: 77, nan: false))
        let got = try executable.run([x, dy])
        let want = try Interpreter(module: module).run("f", [x, dy])
        let tolerance = dtype == .f32 ? 1e-5 : 1e-12
        for (k, (g, w)) in zip(got, want).enumerated() {
          // Maxima are exact (chosen, not computed); averages and gradient sums within rounding.
          let ok = zip(g.doubles, w.doubles).allSatisfy { a, b in
            (a.isNaN && b.isNaN) || (k == 0 ? a == b : abs(a - b) <= tolerance * max(1, abs(b)))
          }
          #expect(ok, "\(c) \(dtype) batch \(batch) result \(k)")
        }
      }
    }
  }
}
