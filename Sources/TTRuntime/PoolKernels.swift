// PoolKernels — compiled max_pool, avg_pool and their gradient ops (IR-specs/ops/vision.md) for
// f32 and f64 over NHWC images, split over the thread pool. Channels are innermost in NHWC, so
// every loop runs over a contiguous channel row per window tap and vectorizes. Semantics are the
// spec's: padding taps are skipped (never a maximum, not counted by an average unless
// `count_include_pad`), max_pool takes the first maximum in row-major window order or the first
// NaN, and its gradient adds dy at that element. Forward jobs are chunks of output rows; gradient
// jobs own whole images (zeroing their dx first), so no two threads add to one element.

import TTIR

/// Which pooling op a thunk computes.
public enum PoolKind: String, Sendable {
  case maxPool = "max_pool", maxPoolGrad = "max_pool_grad", avgPool = "avg_pool", avgPoolGrad = "avg_pool_grad"
}

/// Everything about a pooling op but its batch size (which may be symbolic).
public struct PoolGeometry: Sendable, Equatable, CustomStringConvertible {
  public var h, w, c, oh, ow, kh, kw, sh, sw, top, left: Int
  /// avg_pool's divisor is the whole window, padding included.
  public var countIncludePad: Bool

  public init(window g: Window2D, channels: Int, countIncludePad: Bool) {
    h = g.input[0]; w = g.input[1]; oh = g.output[0]; ow = g.output[1]
    kh = g.window[0]; kw = g.window[1]; sh = g.strides[0]; sw = g.strides[1]
    top = g.pads[0]; left = g.pads[2]; c = channels
    self.countIncludePad = countIncludePad
  }

  /// The window taps of output position `o` that fall on the input along one axis, computed (a
  /// window of 2^40 taps over padding costs nothing).
  static func taps(output o: Int, stride: Int, pad: Int, window: Int, extent: Int) -> Range<Int> {
    let base = o * stride - pad
    let first = max(0, -base), last = min(window - 1, extent - 1 - base)
    return first <= last ? first..<(last + 1) : 0..<0
  }
  func rowTaps(_ o: Int) -> Range<Int> { Self.taps(output: o, stride: sh, pad: top, window: kh, extent: h) }
  func columnTaps(_ o: Int) -> Range<Int> { Self.taps(output: o, stride: sw, pad: left, window: kw, extent: w) }

  /// avg_pool's divisor at an output position with these taps.
  func divisor(_ rows: Range<Int>, _ columns: Range<Int>) -> Double {
    countIncludePad ? Double(kh) * Double(kw) : Double(rows.count * columns.count)
  }

  public var description: String {
    "\(h)x\(w)x\(c) -> \(oh)x\(ow)x\(c), window \(kh)x\(kw), strides [\(sh), \(sw)], pads top \(top) left \(left)"
      + (countIncludePad ? ", count_include_pad" : "")
  }
}

public enum PoolKernels {
  /// Runs one pooling op on `n` images. Operands: x (max_pool, avg_pool), x and dy
  /// (max_pool_grad), dy (avg_pool_grad).
  public static func run<T: BinaryFloatingPoint & Sendable>(_ kind: PoolKind, _ g: PoolGeometry, n: Int, operands: [UnsafePointer<T>],
                                                            out: UnsafeMutablePointer<T>, pool: ThreadPool) {
    guard n > 0 else { return }
    let inImage = g.h * g.w * g.c, outImage = g.oh * g.ow * g.c
    let a = UInt(bitPattern: operands[0]), b = UInt(bitPattern: operands.count > 1 ? operands[1] : operands[0])
    let o = UInt(bitPattern: out)
    switch kind {
    case .maxPool, .avgPool:
      let rows = n * g.oh
      let jobs = rows * outImage / max(g.oh, 1) >= 1 << 14 ? min(pool.threadCount * 4, rows) : 1
      pool.parallelFor(jobs) { job in
        let x = UnsafePointer<T>(bitPattern: a)!, y = UnsafeMutablePointer<T>(bitPattern: o)!
        for row in (rows * job / jobs)..<(rows * (job + 1) / jobs) {
          let image = row / g.oh, oh = row % g.oh
          if kind == .maxPool {
            maxRow(g, x: x + image * inImage, y: y + image * outImage, oh: oh)
          } else {
            averageRow(g, x: x + image * inImage, y: y + image * outImage, oh: oh)
          }
        }
      }
    case .maxPoolGrad, .avgPoolGrad:
      let jobs = n * inImage >= 1 << 14 ? min(pool.threadCount * 4, n) : 1
      pool.parallelFor(jobs) { job in
        let dx = UnsafeMutablePointer<T>(bitPattern: o)!
        for image in (n * job / jobs)..<(n * (job + 1) / jobs) {
          let target = dx + image * inImage
          target.update(repeating: 0, count: inImage)
          if kind == .maxPoolGrad {
            maxGradient(g, x: UnsafePointer<T>(bitPattern: a)! + image * inImage, dy: UnsafePointer<T>(bitPattern: b)! + image * outImage, dx: target)
          } else {
            averageGradient(g, dy: UnsafePointer<T>(bitPattern: a)! + image * outImage, dx: target)
          }
        }
      }
    }
  }

  /// One output row of max_pool: per channel, the first maximum over the taps in row-major order
  /// (a NaN replaces a number; nothing replaces a NaN). A window with no input tap is -inf.
  static func maxRow<T: BinaryFloatingPoint>(_ g: PoolGeometry, x: UnsafePointer<T>, y: UnsafeMutablePointer<T>, oh: Int) {
    let rows = g.rowTaps(oh)
    for ow in 0..<g.ow {
      let best = y + (oh * g.ow + ow) * g.c
      best.update(repeating: -T.infinity, count: g.c)
      let columns = g.columnTaps(ow)
      var first = true
      for kh in rows {
        let ih = oh * g.sh - g.top + kh
        for kw in columns {
          let v = x + (ih * g.w + ow * g.sw - g.left + kw) * g.c
          if first {
            best.update(from: v, count: g.c)
            first = false
          } else {
            // A select, not a branch, so the channel loop vectorizes (same rule: a larger value
            // or a NaN over a number replaces).
            for ch in 0..<g.c {
              let a = v[ch], b = best[ch]
              best[ch] = (a > b) || (a != a && b == b) ? a : b
            }
          }
        }
      }
    }
  }

  /// One output row of avg_pool: the sum over the taps of each element divided by the divisor.
  /// Dividing before adding keeps every partial sum within the inputs' range, so an average of
  /// finite values is finite in f32 (and in the half types, widened to f32) as on the
  /// interpreter, which sums in f64.
  static func averageRow<T: BinaryFloatingPoint>(_ g: PoolGeometry, x: UnsafePointer<T>, y: UnsafeMutablePointer<T>, oh: Int) {
    let rows = g.rowTaps(oh)
    for ow in 0..<g.ow {
      let sum = y + (oh * g.ow + ow) * g.c
      let columns = g.columnTaps(ow)
      let divisor = T(g.divisor(rows, columns))
      // A window with no input element and padding not counted is 0/0, as the interpreter
      // divides: NaN.
      sum.update(repeating: rows.isEmpty || columns.isEmpty ? 0 / divisor : 0, count: g.c)
      for kh in rows {
        let ih = oh * g.sh - g.top + kh
        for kw in columns {
          let v = x + (ih * g.w + ow * g.sw - g.left + kw) * g.c
          for ch in 0..<g.c { sum[ch] += v[ch] / divisor }
        }
      }
    }
  }

  /// One image of max_pool_grad: each dy element added at the element its window chose.
  static func maxGradient<T: BinaryFloatingPoint>(_ g: PoolGeometry, x: UnsafePointer<T>, dy: UnsafePointer<T>, dx: UnsafeMutablePointer<T>) {
    let chosen = UnsafeMutablePointer<Int>.allocate(capacity: max(g.c, 1))
    defer { chosen.deallocate() }
    for oh in 0..<g.oh {
      let rows = g.rowTaps(oh)
      for ow in 0..<g.ow {
        let columns = g.columnTaps(ow)
        var first = true
        for kh in rows {
          let ih = oh * g.sh - g.top + kh
          for kw in columns {
            let at = (ih * g.w + ow * g.sw - g.left + kw) * g.c
            if first {
              for ch in 0..<g.c { chosen[ch] = at + ch }
              first = false
            } else {
              for ch in 0..<g.c {
                let v = x[at + ch], best = x[chosen[ch]]
                if v > best || (v.isNaN && !best.isNaN) { chosen[ch] = at + ch }
              }
            }
          }
        }
        if first { continue }   // no input tap: nothing to add
        let d = dy + (oh * g.ow + ow) * g.c
        for ch in 0..<g.c { dx[chosen[ch]] += d[ch] }
      }
    }
  }

  /// One image of avg_pool_grad: each dy element divided by its divisor, added over its window.
  static func averageGradient<T: BinaryFloatingPoint>(_ g: PoolGeometry, dy: UnsafePointer<T>, dx: UnsafeMutablePointer<T>) {
    for oh in 0..<g.oh {
      let rows = g.rowTaps(oh)
      for ow in 0..<g.ow {
        let columns = g.columnTaps(ow)
        let scale = 1 / T(g.divisor(rows, columns))
        let d = dy + (oh * g.ow + ow) * g.c
        for kh in rows {
          let ih = oh * g.sh - g.top + kh
          for kw in columns {
            let target = dx + (ih * g.w + ow * g.sw - g.left + kw) * g.c
            for ch in 0..<g.c { target[ch] += d[ch] * scale }
          }
        }
      }
    }
  }
}
