// Vision — the meaning of the convolution, pooling and batch-norm ops (IR-specs/ops/vision.md) on
// concrete NHWC tensors. Every loop is spelled out over (n, oh, ow, channel, tap), sums run in
// Double in that order, and a tap that falls on padding is skipped (it reads zero for a
// convolution, nothing for pooling). The gradient ops scatter over exactly the taps the forward
// op gathered, so forward and backward agree by construction.

import Foundation
import TTIR

enum Vision {
  static func geometry(_ input: [Int], window: [Int], _ a: Attributes, dilated: Bool, pool: Bool) throws(InterpreterError) -> Window2D {
    do {
      return try ShapeRules.window2D(input: TensorType(.f64, shape: input), window: window, attributes: a, dilated: dilated, poolPadding: pool)
    } catch { throw .invalidModule("\(error)") }
  }

  /// The taps of output position `o` along `axis` that read an input element: those with
  /// 0 <= o*s - pad + k*d < n. Computed, not searched, so a window of 2^40 taps over padding
  /// costs nothing (the verifier admits such windows when the padding covers them).
  static func taps(_ g: Window2D, _ axis: Int, output o: Int) -> Range<Int> {
    let base = g.source(axis, output: o, tap: 0), d = g.dilations[axis], n = g.input[axis]
    let first = base >= 0 ? 0 : (-base + d - 1) / d
    let last = base > n - 1 ? -1 : Swift.min(g.window[axis] - 1, (n - 1 - base) / d)
    return first <= last ? first..<(last + 1) : 0..<0
  }

  /// Calls `body(oh, ow, kh, kw, ih, iw)` for every output position and every tap that reads an
  /// input element (taps on padding are skipped), taps in row-major (kh, kw) order.
  @inline(__always)
  static func forEachTap(_ g: Window2D, _ body: (_ oh: Int, _ ow: Int, _ kh: Int, _ kw: Int, _ ih: Int, _ iw: Int) -> Void) {
    let columns = (0..<g.output[1]).map { taps(g, 1, output: $0) }
    for oh in 0..<g.output[0] {
      let rows = taps(g, 0, output: oh)
      for ow in 0..<g.output[1] {
        for kh in rows {
          let ih = g.source(0, output: oh, tap: kh)
          for kw in columns[ow] {
            body(oh, ow, kh, kw, ih, g.source(1, output: ow, tap: kw))
          }
        }
      }
    }
  }

  struct ConvShape {
    let n, h, w, cin, oh, ow, kh, kw, cg, cout, groups: Int
    var perGroupOut: Int { cout / groups }
    func x(_ b: Int, _ i: Int, _ j: Int, _ c: Int) -> Int { ((b * h + i) * w + j) * cin + c }
    func y(_ b: Int, _ i: Int, _ j: Int, _ c: Int) -> Int { ((b * oh + i) * ow + j) * cout + c }
    func f(_ i: Int, _ j: Int, _ ci: Int, _ co: Int) -> Int { ((i * kw + j) * cg + ci) * cout + co }
  }

  static func convShape(x: [Int], filter: [Int], _ a: Attributes) throws(InterpreterError) -> (Window2D, ConvShape) {
    let g = try geometry(x, window: [filter[0], filter[1]], a, dilated: true, pool: false)
    let s = ConvShape(n: x[0], h: x[1], w: x[2], cin: x[3], oh: g.output[0], ow: g.output[1], kh: filter[0], kw: filter[1],
                      cg: filter[2], cout: filter[3], groups: a.int("groups") ?? 1)
    return (g, s)
  }

  /// y[n, oh, ow, co] = sum over taps (kh, kw) and ci < Cin/groups of
  /// x[n, ih, iw, group(co) * Cin/groups + ci] * w[kh, kw, ci, co].
  static func conv2d(_ x: Tensor, _ w: Tensor, _ a: Attributes, dtype: DType) throws(InterpreterError) -> Tensor {
    let (g, s) = try convShape(x: x.shape, filter: w.shape, a)
    let xv = x.doubles, wv = w.doubles
    var y = [Double](repeating: 0, count: s.n * s.oh * s.ow * s.cout)
    for b in 0..<s.n {
      forEachTap(g) { oh, ow, kh, kw, ih, iw in
        for co in 0..<s.cout {
          let base = (co / s.perGroupOut) * s.cg
          var sum = 0.0
          for ci in 0..<s.cg { sum += xv[s.x(b, ih, iw, base + ci)] * wv[s.f(kh, kw, ci, co)] }
          y[s.y(b, oh, ow, co)] += sum
        }
      }
    }
    return Kernels.make(dtype, [s.n, s.oh, s.ow, s.cout], y)
  }

  /// dx[n, ih, iw, c] = sum of dy[n, oh, ow, co] * w[kh, kw, ci, co] over the taps that read it.
  static func conv2dBackpropInput(_ dy: Tensor, _ w: Tensor, _ a: Attributes, shape: [Int], dtype: DType) throws(InterpreterError) -> Tensor {
    let (g, s) = try convShape(x: shape, filter: w.shape, a)
    let dyv = dy.doubles, wv = w.doubles
    var dx = [Double](repeating: 0, count: s.n * s.h * s.w * s.cin)
    for b in 0..<s.n {
      forEachTap(g) { oh, ow, kh, kw, ih, iw in
        for co in 0..<s.cout {
          let base = (co / s.perGroupOut) * s.cg
          let d = dyv[s.y(b, oh, ow, co)]
          for ci in 0..<s.cg { dx[s.x(b, ih, iw, base + ci)] += d * wv[s.f(kh, kw, ci, co)] }
        }
      }
    }
    return Kernels.make(dtype, shape, dx)
  }

  /// dw[kh, kw, ci, co] = sum of x[n, ih, iw, group(co) * Cin/groups + ci] * dy[n, oh, ow, co].
  static func conv2dBackpropFilter(_ x: Tensor, _ dy: Tensor, _ a: Attributes, shape: [Int], dtype: DType) throws(InterpreterError) -> Tensor {
    let (g, s) = try convShape(x: x.shape, filter: shape, a)
    let xv = x.doubles, dyv = dy.doubles
    var dw = [Double](repeating: 0, count: s.kh * s.kw * s.cg * s.cout)
    for b in 0..<s.n {
      forEachTap(g) { oh, ow, kh, kw, ih, iw in
        for co in 0..<s.cout {
          let base = (co / s.perGroupOut) * s.cg
          let d = dyv[s.y(b, oh, ow, co)]
          for ci in 0..<s.cg { dw[s.f(kh, kw, ci, co)] += xv[s.x(b, ih, iw, base + ci)] * d }
        }
      }
    }
    return Kernels.make(dtype, shape, dw)
  }

  /// For every output element of max_pool over `x`, the flat index of the input element it takes:
  /// the first maximum in row-major (kh, kw) window order, or the first NaN if the window has one.
  static func maxPoolSelection(_ x: Tensor, _ a: Attributes) throws(InterpreterError) -> (Window2D, [Int]) {
    let shape = x.shape
    let g = try geometry(shape, window: a.ints("window") ?? [], a, dilated: false, pool: true)
    let (n, h, w, c) = (shape[0], shape[1], shape[2], shape[3])
    let xv = x.doubles
    var selected = [Int](repeating: -1, count: n * g.output[0] * g.output[1] * c)
    for b in 0..<n {
      forEachTap(g) { oh, ow, _, _, ih, iw in
        for ch in 0..<c {
          let o = ((b * g.output[0] + oh) * g.output[1] + ow) * c + ch
          let i = ((b * h + ih) * w + iw) * c + ch
          let best = selected[o]
          if best < 0 || xv[i] > xv[best] || (xv[i].isNaN && !xv[best].isNaN) { selected[o] = i }
        }
      }
    }
    return (g, selected)
  }

  static func maxPool(_ x: Tensor, _ a: Attributes, dtype: DType) throws(InterpreterError) -> Tensor {
    let (g, selected) = try maxPoolSelection(x, a)
    let xv = x.doubles
    return Kernels.make(dtype, [x.shape[0], g.output[0], g.output[1], x.shape[3]], selected.map { xv[$0] })
  }

  /// dx: each dy element added at the input position its max_pool output took.
  static func maxPoolGrad(_ x: Tensor, _ dy: Tensor, _ a: Attributes, dtype: DType) throws(InterpreterError) -> Tensor {
    let (_, selected) = try maxPoolSelection(x, a)
    let dyv = dy.doubles
    var dx = [Double](repeating: 0, count: x.count)
    for (o, i) in selected.enumerated() { dx[i] += dyv[o] }
    return Kernels.make(dtype, x.shape, dx)
  }

  /// How many input elements each output position of an average pool divides by: the window's
  /// size with `count_include_pad`, else the taps that fall on the input (TensorFlow).
  static func divisors(_ g: Window2D, _ a: Attributes) -> [Double] {
    var counts = [Double](repeating: 0, count: g.output[0] * g.output[1])
    if a.bool("count_include_pad") ?? false {
      return counts.map { _ in Double(g.window[0]) * Double(g.window[1]) }   // each up to 2^40: no Int product
    }
    forEachTap(g) { oh, ow, _, _, _, _ in counts[oh * g.output[1] + ow] += 1 }
    return counts
  }

  static func avgPool(_ x: Tensor, _ a: Attributes, dtype: DType) throws(InterpreterError) -> Tensor {
    let shape = x.shape
    let g = try geometry(shape, window: a.ints("window") ?? [], a, dilated: false, pool: true)
    let (n, h, w, c) = (shape[0], shape[1], shape[2], shape[3])
    let xv = x.doubles
    var y = [Double](repeating: 0, count: n * g.output[0] * g.output[1] * c)
    for b in 0..<n {
      forEachTap(g) { oh, ow, _, _, ih, iw in
        for ch in 0..<c { y[((b * g.output[0] + oh) * g.output[1] + ow) * c + ch] += xv[((b * h + ih) * w + iw) * c + ch] }
      }
    }
    let d = divisors(g, a)
    for (k, v) in y.enumerated() { y[k] = v / d[(k / c) % (g.output[0] * g.output[1])] }
    return Kernels.make(dtype, [n, g.output[0], g.output[1], c], y)
  }

  static func avgPoolGrad(_ dy: Tensor, _ a: Attributes, shape: [Int], dtype: DType) throws(InterpreterError) -> Tensor {
    let g = try geometry(shape, window: a.ints("window") ?? [], a, dilated: false, pool: true)
    let (n, h, w, c) = (shape[0], shape[1], shape[2], shape[3])
    let dyv = dy.doubles
    let d = divisors(g, a)
    var dx = [Double](repeating: 0, count: n * h * w * c)
    for b in 0..<n {
      forEachTap(g) { oh, ow, _, _, ih, iw in
        let p = oh * g.output[1] + ow
        for ch in 0..<c { dx[((b * h + ih) * w + iw) * c + ch] += dyv[((b * g.output[0] + oh) * g.output[1] + ow) * c + ch] / d[p] }
      }
    }
    return Kernels.make(dtype, shape, dx)
  }

  /// y = (x - mean) / sqrt(variance + epsilon) * scale + offset, per channel (the last axis).
  static func normalize(_ x: [Double], channels c: Int, scale: [Double], offset: [Double], mean: [Double], variance: [Double],
                        epsilon: Double) -> [Double] {
    var y = [Double](repeating: 0, count: x.count)
    for (k, v) in x.enumerated() {
      let ch = k % c
      y[k] = (v - mean[ch]) / (variance[ch] + epsilon).squareRoot() * scale[ch] + offset[ch]
    }
    return y
  }

  static func batchNormInference(_ t: [Tensor], _ a: Attributes, dtype: DType) -> Tensor {
    let c = t[0].shape.last!
    let y = normalize(t[0].doubles, channels: c, scale: t[1].doubles, offset: t[2].doubles, mean: t[3].doubles,
                      variance: t[4].doubles, epsilon: a.double("epsilon") ?? 0.001)
    return Kernels.make(dtype, t[0].shape, y)
  }

  /// (y, mean, variance): the batch statistics over every axis but the last (variance biased:
  /// divided by the count M, as used to normalize), and x normalized with them.
  static func batchNormTraining(_ t: [Tensor], _ a: Attributes, dtype: DType) throws(InterpreterError) -> [Tensor] {
    let x = t[0].doubles
    let c = t[0].shape.last!
    // M, the elements per channel, is the product of the leading dims (it may be non-zero with
    // no channel at all: then every result is empty).
    let m = t[0].shape.dropLast().reduce(1, *)
    guard m > 0 else { throw .emptyReduction(op: "batch_norm_training") }
    var mean = [Double](repeating: 0, count: c), variance = mean
    for (k, v) in x.enumerated() { mean[k % c] += v }
    for ch in 0..<c { mean[ch] /= Double(m) }
    for (k, v) in x.enumerated() { let d = v - mean[k % c]; variance[k % c] += d * d }
    for ch in 0..<c { variance[ch] /= Double(m) }
    let y = normalize(x, channels: c, scale: t[1].doubles, offset: t[2].doubles, mean: mean, variance: variance,
                      epsilon: a.double("epsilon") ?? 0.001)
    return [Kernels.make(dtype, t[0].shape, y), Kernels.make(dtype, [c], mean), Kernels.make(dtype, [c], variance)]
  }
}
