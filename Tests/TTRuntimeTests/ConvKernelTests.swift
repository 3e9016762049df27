// Compiled convolutions (TTRuntime/ConvKernels.swift) against the interpreter: conv2d,
// conv2d_backprop_input and conv2d_backprop_filter on random shapes, strides, dilations, paddings
// and groups (pointwise GEMM, im2col + GEMM, grouped, depthwise with and without a channel
// multiplier), f32 and f64, a symbolic batch run at several sizes.
//
// Tolerance: the interpreter sums in f64 and rounds once; the compiled sum runs in the element
// type in another order. The standard bound for a sum of K products in precision u is
// K·u·Σ|a·b| (Higham's γ_K), and Σ|a·b| is the same convolution of |x| and |w| (every op here is
// bilinear with coefficients 0 or 1), which the interpreter computes; so each element must be
// within 2·K·u·conv(|a|, |b|) + u·|expected| of the interpreter, K the longest sum of the three
// ops (taps × channels per group, or the N·OH·OW rows of a filter gradient).
import Foundation
import Testing
import TTCompiler
import TTIR
import TTInterp
import TTRuntime

struct ConvKernelTests {
  struct Case: CustomStringConvertible {
    var n, h, w, cin, cout, kh, kw, sh, sw, dh, dw, groups: Int
    var padding: String   // attribute text
    var oh = 0, ow = 0
    var description: String {
      "x [\(n), \(h), \(w), \(cin)] w [\(kh), \(kw), \(cin / groups), \(cout)] strides [\(sh), \(sw)] dilations [\(dh), \(dw)] \(padding) groups \(groups) -> [\(oh), \(ow)]"
    }
  }

  /// A random valid case (`seed` picks everything); depthwise and pointwise cases forced by kind.
  static func randomCase(_ seed: Int) -> Case {
    var rng = SplitMix(seed: UInt64(seed) &* 0x9E37_79B9 &+ 7)
    func pick(_ r: ClosedRange<Int>) -> Int { r.lowerBound + Int(rng.next() % UInt64(r.count)) }
    while true {
      let kind = seed % 5
      var c = Case(n: pick(1...3), h: pick(1...9), w: pick(1...9), cin: pick(1...6), cout: pick(1...7), kh: pick(1...3), kw: pick(1...3),
                   sh: pick(1...3), sw: pick(1...3), dh: pick(1...2), dw: pick(1...2), groups: 1, padding: "")
      switch kind {
      case 0:   // pointwise
        c.kh = 1; c.kw = 1; c.sh = 1; c.sw = 1; c.cin = pick(1...20); c.cout = pick(1...24); c.h = pick(1...8); c.w = pick(1...8)
      case 1:   // depthwise, channel multiplier 1 or 2
        c.groups = c.cin; c.cout = c.cin * pick(1...2)
      case 2:   // grouped
        let g = pick(2...3); c.groups = g; c.cin = g * pick(1...3); c.cout = g * pick(1...3)
      default:  // general, wider channels so the GEMM path runs with real tiles
        c.cin = pick(1...12); c.cout = pick(1...20)
      }
      let ph = (c.kh - 1) * c.dh + 1, pw = (c.kw - 1) * c.dw + 1
      switch pick(0...2) {
      case 0:
        c.padding = "padding = \"VALID\""
        c.oh = c.h >= ph ? (c.h - ph) / c.sh + 1 : 0; c.ow = c.w >= pw ? (c.w - pw) / c.sw + 1 : 0
      case 1:
        c.padding = "padding = \"SAME\""
        c.oh = (c.h + c.sh - 1) / c.sh; c.ow = (c.w + c.sw - 1) / c.sw
      default:
        let pads = [pick(0...2), pick(0...2), pick(0...2), pick(0...2)]
        c.padding = "pads = [\(pads.map(String.init).joined(separator: ", "))]"
        let hh = c.h + pads[0] + pads[1], ww = c.w + pads[2] + pads[3]
        c.oh = hh >= ph ? (hh - ph) / c.sh + 1 : 0; c.ow = ww >= pw ? (ww - pw) / c.sw + 1 : 0
      }
      if c.oh >= 1 && c.ow >= 1 { return c }
    }
  }

  struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
      state &+= 0x9E37_79B9_7F4A_7C15
      var z = state
      z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
      z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
      return z ^ (z >> 31)
    }
  }

  static func module(_ c: Case, _ dtype: String) -> String {
    let attrs = "{\(c.padding), strides = [\(c.sh), \(c.sw)], dilations = [\(c.dh), \(c.dw)], groups = \(c.groups)}"
    let x = "\(dtype)[B, \(c.h), \(c.w), \(c.cin)]", f = "\(dtype)[\(c.kh), \(c.kw), \(c.cin / c.groups), \(c.cout)]"
    let y = "\(dtype)[B, \(c.oh), \(c.ow), \(c.cout)]"
    return """
      module @conv {
        func @f(%x: \(x), %w: \(f), %dy: \(y)) -> (\(y), \(x), \(f)) {
          %y = conv2d %x, %w \(attrs) : \(y)
          %dx = conv2d_backprop_input %dy, %w \(attrs) : \(x)
          %dw = conv2d_backprop_filter %x, %dy \(attrs) : \(f)
          return %y, %dx, %dw
        }
      }
      """
  }

  static func inputs(_ function: Function, batch: Int, seed: Int, dtype: DType) -> [Tensor] {
    function.argumentTypes.enumerated().map { i, type in
      let shape = type.dims.map { $0.staticSize ?? batch }
      return Tensor(dtype, shape: shape, floats: (0..<elementCount(shape)!).map { k in
        2 * SeededRandom.uniform(UInt64(seed), UInt64(k), UInt64(i) + 11) - 1
      })
    }
  }

  /// Checks compiled against interpreted results of one case, for both element types and two
  /// batch sizes from one compile; nil, or what differed.
  static func check(_ c: Case, seed: Int) throws -> [String] {
    var problems: [String] = []
    for (name, dtype, u) in [("f32", DType.f32, 0x1p-24), ("f64", DType.f64, 0x1p-53)] {
      let module = try Parser.parseAndVerify(Self.module(c, name))
      let function = module.function(named: "f")!
      let executable = try Executable(module: module, function: "f")
      let stats = executable.statistics
      if stats.convolutions != 3 || stats.interpretedOpCount != 0 {
        problems.append("\(c) \(name): \(stats.convolutions) compiled convolutions, interpreted \(stats.interpretedOps)")
      }
      let interpreter = try Interpreter(module: module)
      for batch in [c.n, c.n + 2] {
        let given = inputs(function, batch: batch, seed: seed, dtype: dtype)
        let got = try executable.run(given)
        let expected = try interpreter.run("f", given)
        let magnitudes = try interpreter.run("f", given.map { t in Tensor(dtype, shape: t.shape, floats: t.doubles.map(abs)) })
        let longest = max(c.kh * c.kw * max(c.cin / c.groups, c.cout / c.groups), batch * c.oh * c.ow)
        for (k, what) in ["conv2d", "conv2d_backprop_input", "conv2d_backprop_filter"].enumerated() {
          let a = got[k].doubles, b = expected[k].doubles, m = magnitudes[k].doubles
          guard got[k].shape == expected[k].shape else { problems.append("\(c) \(name) \(what): shape \(got[k].shape)"); continue }
          for e in a.indices {
            let bound = 2 * Double(longest) * u * m[e] + u * abs(b[e])
            if !(abs(a[e] - b[e]) <= bound) {
              problems.append("\(c) \(name) batch \(batch) \(what): element \(e) \(a[e]) vs \(b[e]) (bound \(bound))")
              break
            }
          }
        }
      }
    }
    return problems
  }

  @Test(arguments: 0..<40)
  func compiledConvolutionsMatchTheInterpreter(_ seed: Int) throws {
    let c = Self.randomCase(seed)
    for problem in try Self.check(c, seed: seed) { Issue.record("seed \(seed): \(problem)") }
  }

  /// Shapes large enough for several chunks, GEMM tiles and threads: a ResNet-like 3x3 layer, a
  /// strided one, a 1x1 and a depthwise one.
  @Test(arguments: [
    Case(n: 3, h: 12, w: 12, cin: 16, cout: 24, kh: 3, kw: 3, sh: 1, sw: 1, dh: 1, dw: 1, groups: 1, padding: "padding = \"SAME\"", oh: 12, ow: 12),
    Case(n: 2, h: 15, w: 13, cin: 8, cout: 32, kh: 3, kw: 3, sh: 2, sw: 2, dh: 1, dw: 1, groups: 1, padding: "padding = \"SAME\"", oh: 8, ow: 7),
    Case(n: 4, h: 10, w: 10, cin: 32, cout: 48, kh: 1, kw: 1, sh: 1, sw: 1, dh: 1, dw: 1, groups: 1, padding: "padding = \"VALID\"", oh: 10, ow: 10),
    // 1,600 output rows of 144 taps x channels: four chunks in f32, eight in f64.
    Case(n: 4, h: 20, w: 20, cin: 16, cout: 16, kh: 3, kw: 3, sh: 1, sw: 1, dh: 1, dw: 1, groups: 1, padding: "padding = \"SAME\"", oh: 20, ow: 20),
    Case(n: 3, h: 11, w: 9, cin: 24, cout: 24, kh: 3, kw: 3, sh: 1, sw: 1, dh: 2, dw: 1, groups: 24, padding: "padding = \"SAME\"", oh: 11, ow: 9),
    // f32's filter packed once per call and shared by the chunks (JitGemm.packWhole): 289 rows
    // of 576 taps x channels are chunks of 144, 144 and 1 (867 rows at batch 3: the last of 3),
    // 37 output channels a partial 16-column panel.
    Case(n: 1, h: 17, w: 17, cin: 64, cout: 37, kh: 3, kw: 3, sh: 1, sw: 1, dh: 1, dw: 1, groups: 1, padding: "padding = \"SAME\"", oh: 17, ow: 17),
    // ResNet's stem (7x7, stride 2, pads 3, three channels): im2col copies each window row inside
    // the image as one run of 7 x 3 elements, and tap by tap at the edges.
    Case(n: 2, h: 23, w: 21, cin: 3, cout: 16, kh: 7, kw: 7, sh: 2, sw: 2, dh: 1, dw: 1, groups: 1, padding: "pads = [3, 3, 3, 3]", oh: 12, ow: 11),
  ])
  func largerConvolutionsMatchTheInterpreter(_ c: Case) throws {
    for problem in try Self.check(c, seed: 99) { Issue.record("\(problem)") }
  }

  /// An Inf or NaN filter tap that only ever falls on padding contributes nothing (the spec's
  /// padding taps contribute zero; the GEMM paths' 0·NaN is NaN, redone by the direct sum), so
  /// the compiled forward convolution has the interpreter's finite values there; on im2col,
  /// dilated and strided, on Winograd (a 3x3 layer with enough tiles), in f32 and f64, for a
  /// filter given as an argument and one kept packed as a parameter.
  @Test(arguments: [
    Case(n: 2, h: 8, w: 8, cin: 16, cout: 16, kh: 3, kw: 3, sh: 1, sw: 1, dh: 1, dw: 1, groups: 1, padding: "pads = [1, 1, 1, 1]", oh: 8, ow: 8),
    Case(n: 1, h: 16, w: 16, cin: 16, cout: 16, kh: 3, kw: 3, sh: 1, sw: 1, dh: 1, dw: 1, groups: 1, padding: "pads = [1, 1, 1, 1]", oh: 16, ow: 16),
    Case(n: 2, h: 9, w: 7, cin: 5, cout: 12, kh: 3, kw: 3, sh: 2, sw: 1, dh: 2, dw: 1, groups: 1, padding: "padding = \"SAME\"", oh: 5, ow: 7),
    Case(n: 1, h: 6, w: 6, cin: 4, cout: 6, kh: 3, kw: 3, sh: 1, sw: 1, dh: 1, dw: 1, groups: 2, padding: "pads = [1, 1, 1, 1]", oh: 6, ow: 6),
  ])
  func nonFiniteTapsOnPaddingContributeNothing(_ c: Case) throws {
    for (name, dtype) in [("f32", DType.f32), ("f64", DType.f64)] {
      let x = "\(name)[B, \(c.h), \(c.w), \(c.cin)]", f = "\(name)[\(c.kh), \(c.kw), \(c.cin / c.groups), \(c.cout)]"
      let y = "\(name)[B, \(c.oh), \(c.ow), \(c.cout)]"
      let attrs = "{\(c.padding), strides = [\(c.sh), \(c.sw)], dilations = [\(c.dh), \(c.dw)], groups = \(c.groups)}"
      let module = try Parser.parseAndVerify("""
        module @conv {
          param @p : \(f) = zeros
          func @given(%x: \(x), %w: \(f)) -> \(y) {
            %y = conv2d %x, %w \(attrs) : \(y)
            return %y
          }
          func @kept(%x: \(x)) -> \(y) {
            %y = conv2d %x, @p \(attrs) : \(y)
            return %y
          }
        }
        """)
      let function = module.function(named: "given")!
      let given = Self.inputs(function, batch: c.n, seed: 3, dtype: dtype)
      for (tap, value) in [((0, 0), Double.nan), ((c.kh - 1, 1), .infinity), ((1, c.kw - 1), -.infinity)] {
        var w = given[1].doubles
        for ci in 0..<(c.cin / c.groups) { w[((tap.0 * c.kw + tap.1) * (c.cin / c.groups) + ci) * c.cout + 3] = value }
        let filter = Tensor(dtype, shape: given[1].shape, floats: w)
        let expected = try Interpreter(module: module).run("given", [given[0], filter])[0].doubles
        #expect(expected.contains { $0.isFinite } && expected.contains { !$0.isFinite })
        let kept = try Executable(module: module, function: "kept")
        try kept.updateParameters(["p": filter])
        for (which, got) in [("given", try Executable(module: module, function: "given").run([given[0], filter])[0]),
                             ("kept", try kept.run([given[0]])[0])] {
          var bad = 0
          for (a, b) in zip(got.doubles, expected) {
            let ok = b.isNaN ? a.isNaN : b.isInfinite ? a == b : a.isFinite && abs(a - b) <= 1e-4 * (1 + abs(b))
            if !ok { bad += 1 }
          }
          #expect(bad == 0, "\(c) \(name) \(which), tap \(tap) = \(value): \(bad) outputs differ from the interpreter")
        }
      }
    }
  }

  /// bf16 and f16 convolutions and pools compile too (HalfWidened: operands widened to f32, the
  /// f32 routine, each result rounded once to the half type): they agree with the interpreter
  /// (f64, rounded once) within the f32 sum's error plus the half type's rounding, twice (the
  /// f32 value rounds to a half neighbour of the exact one's).
  @Test(arguments: [DType.bf16, .f16])
  func halfConvolutionsAndPoolsCompileWidened(_ dtype: DType) throws {
    guard HalfWidened.supports(dtype) else { return }   // f16 needs F16C
    let half = dtype == .bf16 ? 0x1p-8 : 0x1p-11
    for c in [Case(n: 2, h: 9, w: 8, cin: 8, cout: 12, kh: 3, kw: 3, sh: 1, sw: 2, dh: 1, dw: 1, groups: 1, padding: "padding = \"SAME\"", oh: 9, ow: 4),
              Case(n: 3, h: 7, w: 7, cin: 6, cout: 6, kh: 3, kw: 3, sh: 1, sw: 1, dh: 2, dw: 2, groups: 6, padding: "padding = \"SAME\"", oh: 7, ow: 7)] {
      let module = try Parser.parseAndVerify(Self.module(c, "\(dtype)"))
      let function = module.function(named: "f")!
      let executable = try Executable(module: module, function: "f")
      #expect(executable.statistics.convolutions == 3 && executable.statistics.interpretedOpCount == 0)
      let given = Self.inputs(function, batch: c.n, seed: 5, dtype: dtype)
      let interpreter = try Interpreter(module: module)
      let got = try executable.run(given), expected = try interpreter.run("f", given)
      let magnitudes = try interpreter.run("f", given.map { t in Tensor(dtype, shape: t.shape, floats: t.doubles.map(abs)) })
      let longest = max(c.kh * c.kw * max(c.cin / c.groups, c.cout / c.groups), c.n * c.oh * c.ow)
      for k in 0..<3 {
        #expect(got[k].dtype == dtype && got[k].shape == expected[k].shape)
        let ok = zip(zip(got[k].doubles, expected[k].doubles), magnitudes[k].doubles).allSatisfy { pair, m in
          abs(pair.0 - pair.1) <= 2 * Double(longest) * 0x1p-24 * m * (1 + half) + 2 * half * abs(pair.1)
        }
        #expect(ok, "\(c) \(dtype) result \(k)")
      }
    }
    let t = "\(dtype)"
    let pools = try Parser.parseAndVerify("""
      module @p {
        func @f(%x: \(t)[B, 6, 6, 5]) -> (\(t)[B, 3, 3, 5], \(t)[B, 3, 3, 5]) {
          %m = max_pool %x {padding = "SAME", strides = [2, 2], window = [3, 3]} : \(t)[B, 3, 3, 5]
          %a = avg_pool %x {padding = "SAME", strides = [2, 2], window = [3, 3]} : \(t)[B, 3, 3, 5]
          return %m, %a
        }
      }
      """)
    let executable = try Executable(module: pools, function: "f")
    #expect(executable.statistics.poolings == 2 && executable.statistics.interpretedOpCount == 0)
    let x = Self.inputs(pools.function(named: "f")!, batch: 2, seed: 8, dtype: dtype)
    let got = try executable.run(x), expected = try Interpreter(module: pools).run("f", x)
    #expect(got[0].isIdentical(to: expected[0]))   // a maximum is one of the inputs: exact
    #expect(zip(got[1].doubles, expected[1].doubles).allSatisfy { abs($0 - $1) <= 2 * half * abs($1) + 1e-30 })
  }
}
