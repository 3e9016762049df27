// Winograd F(2x2, 3x3) and F(4x4, 3x3) convolutions (WinogradConv) against a float64 direct convolution: odd
// output sizes (edge tiles), every padding, channel counts off the vector width and the GEMM's
// panels, chunks with a ragged last one; bits independent of the batch size and thread count;
// which convolutions take it.
import Foundation
import Testing
import TTIR
@testable import TTRuntime

struct WinogradConvTests {
  struct Case: CustomStringConvertible {
    var n, h, w, cin, cout, top, bottom, left, right: Int
    var oh: Int { h + top + bottom - 2 }
    var ow: Int { w + left + right - 2 }
    var geometry: ConvGeometry {
      ConvGeometry(window: Window2D(input: [h, w], output: [oh, ow], window: [3, 3], strides: [1, 1], dilations: [1, 1],
                                    pads: [top, bottom, left, right]), cin: cin, cout: cout, groups: 1)
    }
    var description: String { "x [\(n), \(h), \(w), \(cin)] -> [\(oh), \(ow), \(cout)] pads [\(top), \(bottom), \(left), \(right)]" }
  }

  static func values(_ count: Int, seed: UInt64) -> [Float] {
    var state = seed
    return (0..<count).map { _ in
      state = state &* 6364136223846793005 &+ 1442695040888963407
      return Float(Int(state >> 40) % 2001 - 1000) / 1000
    }
  }

  /// Normal values times e^U(−r, r): operands spanning many orders of magnitude, where
  /// Winograd's error (bounded by the transformed operands) is largest against Σ|x·w|.
  static func wideRange(_ count: Int, seed: UInt64, r: Double) -> [Float] {
    var state = seed
    func uniform() -> Double {
      state = state &* 6364136223846793005 &+ 1442695040888963407
      return (Double(state >> 11) + 0.5) * 0x1p-53
    }
    return (0..<count).map { _ in
      let normal = (-2 * Foundation.log(uniform())).squareRoot() * Foundation.cos(2 * Double.pi * uniform())
      return Float(normal * Foundation.exp(r * (2 * uniform() - 1)))
    }
  }

  /// y[n, i, j, co] = Σ taps, ci of x · w in float64, and the same of |x| · |w| (for the bound).
  static func direct(_ c: Case, x: [Float], w: [Float]) -> (value: [Double], magnitude: [Double]) {
    var value = [Double](repeating: 0, count: c.n * c.oh * c.ow * c.cout), magnitude = value
    for b in 0..<c.n {
      for i in 0..<c.oh {
        for j in 0..<c.ow {
          for kh in 0..<3 {
            let ih = i + kh - c.top
            guard ih >= 0 && ih < c.h else { continue }
            for kw in 0..<3 {
              let iw = j + kw - c.left
              guard iw >= 0 && iw < c.w else { continue }
              for ci in 0..<c.cin {
                let xv = Double(x[((b * c.h + ih) * c.w + iw) * c.cin + ci])
                for co in 0..<c.cout {
                  let wv = Double(w[((kh * 3 + kw) * c.cin + ci) * c.cout + co])
                  let o = ((b * c.oh + i) * c.ow + j) * c.cout + co
                  value[o] += xv * wv; magnitude[o] += abs(xv * wv)
                }
              }
            }
          }
        }
      }
    }
    return (value, magnitude)
  }

  static func run(_ c: Case, x: [Float], w: [Float], threads: Int) -> [Float] {
    var y = [Float](repeating: .nan, count: c.n * c.oh * c.ow * c.cout)
    let pool = ThreadPool(threads: threads)
    x.withUnsafeBufferPointer { xp in
      w.withUnsafeBufferPointer { wp in
        y.withUnsafeMutableBufferPointer { yp in
          ConvKernels.run(.forward, c.geometry, n: c.n, a: xp.baseAddress!, b: wp.baseAddress!, out: yp.baseAddress!, pool: pool)
        }
      }
    }
    return y
  }

  /// One Winograd variant run directly, whatever the batch would pick, on one or two threads.
  static func run(_ c: Case, x: [Float], w: [Float], threads: Int, variant: WinogradVariant) -> [Float] {
    var y = [Float](repeating: .nan, count: c.n * c.oh * c.ow * c.cout)
    let pool = ThreadPool(threads: threads)
    x.withUnsafeBufferPointer { xp in
      w.withUnsafeBufferPointer { wp in
        y.withUnsafeMutableBufferPointer { yp in
          let done = WinogradConv.forward(c.geometry, n: c.n, x: xp.baseAddress!, w: wp.baseAddress!, y: yp.baseAddress!, pool: pool,
                                          variant: variant)
          #expect(done)
        }
      }
    }
    return y
  }

  /// The largest error of `y` against the float64 direct sum, in units of K·u·Σ|x·w| (the direct
  /// f32 sum's bound is 2 of them).
  static func worstError(_ c: Case, y: [Float], x: [Float], w: [Float]) -> Double {
    let (want, magnitude) = direct(c, x: x, w: w)
    let u = 0x1p-24, k = Double(9 * c.cin)
    var worst = 0.0
    for e in want.indices { worst = max(worst, abs(Double(y[e]) - want[e]) / (k * u * magnitude[e] + u * abs(want[e]) + 1e-30)) }
    return worst
  }

  /// Edge cases for both variants: ResNet's 3x3 layer with padding 1; odd sizes (edge tiles with
  /// fewer valid rows and columns); VALID, asymmetric pads, channels off the vector width and a
  /// partial 16-column panel; more than 256 input channels (two blocks of the GEMM's k); a single
  /// F(4x4) tile row.
  static let edgeCases = [
    Case(n: 2, h: 14, w: 14, cin: 64, cout: 64, top: 1, bottom: 1, left: 1, right: 1),
    Case(n: 3, h: 9, w: 11, cin: 12, cout: 20, top: 1, bottom: 1, left: 1, right: 1),
    Case(n: 4, h: 13, w: 10, cin: 9, cout: 17, top: 0, bottom: 0, left: 0, right: 0),
    Case(n: 2, h: 12, w: 15, cin: 24, cout: 40, top: 0, bottom: 2, left: 2, right: 1),
    Case(n: 1, h: 16, w: 16, cin: 300, cout: 32, top: 1, bottom: 1, left: 1, right: 1),
    Case(n: 1, h: 6, w: 7, cin: 16, cout: 16, top: 1, bottom: 1, left: 1, right: 1),
  ]

  /// Each variant against the float64 direct sum, bits the same at one and two threads.
  /// Winograd's rounding error grows with its transforms' coefficients (F(2x2): 1/2 and 1;
  /// F(4x4): up to 8 and 1/24); measured at most 0.02 (F(2x2)) and 0.32 (F(4x4)) K·u·Σ|x·w| on
  /// these, within the direct f32 sum's bound of 2 and far below a wrong tap's size.
  @Test(arguments: [WinogradVariant.f2, .f4], edgeCases)
  func matchesTheDirectSum(_ variant: WinogradVariant, _ c: Case) throws {
    let x = Self.values(c.n * c.h * c.w * c.cin, seed: 5), w = Self.values(9 * c.cin * c.cout, seed: 6)
    let y = Self.run(c, x: x, w: w, threads: 2, variant: variant)
    #expect(Self.run(c, x: x, w: w, threads: 1, variant: variant) == y)
    let worst = Self.worstError(c, y: y, x: x, w: w)
    #expect(worst < 2, "\(variant) \(c): worst error \(worst) K·u·Σ|x·w|")
  }

  /// At the fewest input channels each variant takes (16 for F(2x2), 64 for F(4x4)), operands
  /// spanning e^±5 keep the error within the direct sum's bound; with 8 channels F(4x4) measured
  /// 15.6 and F(2x2) 3.1 K·u·Σ|x·w| on such data (an outside review), hence the gates.
  @Test(arguments: [(WinogradVariant.f2, 16), (.f4, 64)])
  func wideRangeOperandsAtTheChannelGates(_ variant: WinogradVariant, _ cin: Int) throws {
    let c = Case(n: 1, h: 24, w: 24, cin: cin, cout: 16, top: 1, bottom: 1, left: 1, right: 1)
    #expect(WinogradConv.variant(c.geometry, n: 8) == variant)
    var fewer = c; fewer.cin = cin / 2
    #expect(WinogradConv.variant(fewer.geometry, n: 8) != variant)
    let x = Self.wideRange(c.n * c.h * c.w * c.cin, seed: 7, r: 5), w = Self.wideRange(9 * c.cin * c.cout, seed: 8, r: 5)
    let worst = Self.worstError(c, y: Self.run(c, x: x, w: w, threads: 2, variant: variant), x: x, w: w)
    #expect(worst < 2, "\(variant), Cin \(cin): worst error \(worst) K·u·Σ|x·w|")
  }

  /// Outputs of `y` that differ from the direct sum: NaN where it is NaN, the same infinity where
  /// it is infinite, elsewhere within twice the direct f32 sum's bound.
  static func mismatches(_ c: Case, y: [Float], x: [Float], w: [Float]) -> Int {
    let (want, magnitude) = direct(c, x: x, w: w)
    var bad = 0
    for e in want.indices {
      let got = Double(y[e])
      let ok = want[e].isNaN ? got.isNaN : want[e].isInfinite ? got == want[e]
        : abs(got - want[e]) <= 2 * Double(9 * c.cin) * 0x1p-24 * magnitude[e] + 0x1p-24 * abs(want[e])
      if !ok { bad += 1 }
    }
    return bad
  }

  /// Inf, NaN and values near f32's maximum give the direct sum's results (an outside review
  /// found inf − inf = NaN inside the transforms, and overflow where the direct sum is finite):
  /// a non-finite transformed filter sends the call to im2col, an output pixel holding a
  /// non-finite value is recomputed there.
  @Test func nonFiniteAndHugeValuesGiveTheDirectSum() throws {
    let c = Case(n: 1, h: 16, w: 16, cin: 16, cout: 16, top: 1, bottom: 1, left: 1, right: 1)
    #expect(WinogradConv.suits(c.geometry, n: 1))
    let count = c.n * c.h * c.w * c.cin, ones = [Float](repeating: 1, count: count), filterOnes = [Float](repeating: 1, count: 9 * c.cin * c.cout)
    var infX = ones; infX[(5 * c.w + 5) * c.cin] = .infinity
    var nanX = ones; nanX[(9 * c.w + 2) * c.cin + 3] = .nan
    var infW = filterOnes; infW[4 * c.cin * c.cout + 2 * c.cout + 7] = -.infinity
    let bigX = [Float](repeating: 1e38, count: count), smallW = [Float](repeating: 1e-3, count: 9 * c.cin * c.cout)
    for (name, x, w) in [("inf in x", infX, filterOnes), ("nan in x", nanX, filterOnes), ("inf in w", ones, infW), ("1e38 x 1e-3", bigX, smallW)] {
      let y = Self.run(c, x: x, w: w, threads: 2)
      let bad = Self.mismatches(c, y: y, x: x, w: w)
      #expect(bad == 0, "\(name): \(bad) of \(y.count) outputs differ from the direct sum")
    }
  }

  @Test func bitsDoNotDependOnBatchOrThreads() throws {
    // 9 x 8 = 72 tiles per image: every batch size takes Winograd.
    let one = Case(n: 1, h: 17, w: 15, cin: 32, cout: 48, top: 1, bottom: 1, left: 1, right: 1)
    #expect(WinogradConv.suits(one.geometry, n: 1))
    var five = one; five.n = 5
    let x = Self.values(five.n * five.h * five.w * five.cin, seed: 3), w = Self.values(9 * one.cin * one.cout, seed: 4)
    let all = Self.run(five, x: x, w: w, threads: 2)
    #expect(Self.run(five, x: x, w: w, threads: 1) == all)
    let image = one.oh * one.ow * one.cout
    for b in 0..<five.n {
      let alone = Self.run(one, x: Array(x[(b * one.h * one.w * one.cin)..<((b + 1) * one.h * one.w * one.cin)]), w: w, threads: 2)
      #expect(alone == Array(all[(b * image)..<((b + 1) * image)]), "image \(b)")
    }
  }

  /// A NaN in x: the outputs it reaches are NaN, the others finite, and every output's bits are
  /// the same at one and two threads (the pixels redone on im2col are those holding a
  /// non-finite value, whatever the chunks; an outside review found 9,029 of 21,344 finite
  /// outputs differing when whole chunks were redone).
  @Test(arguments: [WinogradVariant.f2, .f4])
  func nonFiniteInputsKeepTheBitsAcrossThreads(_ variant: WinogradVariant) throws {
    let c = Case(n: 1, h: 26, w: 26, cin: 32, cout: 32, top: 1, bottom: 1, left: 1, right: 1)
    var x = Self.values(c.h * c.w * c.cin, seed: 9)
    x[(13 * c.w + 13) * c.cin + 3] = .nan
    let w = Self.values(9 * c.cin * c.cout, seed: 10)
    let one = Self.run(c, x: x, w: w, threads: 1, variant: variant), two = Self.run(c, x: x, w: w, threads: 2, variant: variant)
    let differing = zip(one, two).filter { $0.bitPattern != $1.bitPattern }.count
    #expect(differing == 0, "\(variant): \(differing) of \(one.count) outputs differ between one and two threads")
    #expect(Self.mismatches(c, y: two, x: x, w: w) == 0)
    #expect(two.filter(\.isNaN).count == 9 * c.cout)
  }

  @Test func whichConvolutionsTakeIt() {
    let resnet = Case(n: 32, h: 56, w: 56, cin: 64, cout: 64, top: 1, bottom: 1, left: 1, right: 1)
    #expect(WinogradConv.suits(resnet.geometry, n: 32))
    // ResNet-18 at batch 1: 14x14 (49 tiles) and 7x7 stay on im2col unless the filter is kept
    // packed across calls (PackedFilters); 56x56 and 28x28 do not.
    var deep = resnet; deep.h = 14; deep.w = 14; deep.cin = 256; deep.cout = 256
    #expect(!WinogradConv.suits(deep.geometry, n: 1))
    #expect(WinogradConv.suits(deep.geometry, n: 1, filterKept: true))
    var last = deep; last.h = 7; last.w = 7; last.cin = 512; last.cout = 512
    #expect(WinogradConv.suits(last.geometry, n: 1, filterKept: true))
    var tiny = last; tiny.h = 5; tiny.w = 5
    #expect(!WinogradConv.suits(tiny.geometry, n: 1, filterKept: true))
    var shallow = resnet; shallow.h = 28; shallow.w = 28
    #expect(WinogradConv.suits(shallow.geometry, n: 1))
    // Strides, dilations, groups and other windows are not F(2x2, 3x3).
    let strided = ConvGeometry(window: Window2D(input: [56, 56], output: [28, 28], window: [3, 3], strides: [2, 2], dilations: [1, 1],
                                                pads: [1, 1, 1, 1]), cin: 64, cout: 64, groups: 1)
    #expect(!WinogradConv.suits(strided, n: 32))
    let grouped = ConvGeometry(window: Window2D(input: [56, 56], output: [56, 56], window: [3, 3], strides: [1, 1], dilations: [1, 1],
                                                pads: [1, 1, 1, 1]), cin: 64, cout: 64, groups: 2)
    #expect(!WinogradConv.suits(grouped, n: 32))
  }
}

