// ConvKernels — compiled conv2d, conv2d_backprop_input and conv2d_backprop_filter
// (IR-specs/ops/vision.md) for f32 and f64, as GEMM-shaped work on ttfc's own GEMM (JitGemm; f64
// and matrix-vector shapes on OpenBLAS), split over the thread pool. NHWC activations, HWIO
// filters: a filter is the matrix W[KH·KW·Cin/G, Cout] as stored, and an output row (n, oh, ow) of
// the forward op is the product of its im2col row — the KH·KW taps' Cin/G input channels, padding
// taps zero — with W. Four cases (IR-specs/codegen.md, "Convolutions"):
//
//   - pointwise (1x1, stride 1, no padding, one group): plain GEMMs over the N·H·W rows
//     (forward x·W, input gradient dy·Wᵀ, filter gradient xᵀ·dy), split by ParallelGemm;
//   - general (any window, stride, dilation, padding, groups with Cin/G > 1): im2col of a chunk
//     of output rows into a per-chunk scratch buffer of about `chunkBytes` (kept in L2), then a
//     single-threaded GEMM per group into the output rows (f32, one group: against the filter
//     packed once per call, or kept packed across runs when it is a parameter: PackedFilters;
//     few rows split by filter columns instead); chunks are the pool's jobs. The input
//     gradient computes the chunk's column gradient dy·Wᵀ and adds it back (col2im) into dx,
//     a job owning whole images so no two threads add to one element; the filter gradient sums
//     colsᵀ·dy per chunk into one partial per thread-sized group of chunks, the partials added in
//     order at the end (so the result depends on the thread count, not on timing);
//   - depthwise (Cin/G = 1, any channel multiplier): no GEMM (its K is KH·KW and its N the
//     multiplier), direct loops vectorized over the channels;
//   - f32 forward 3x3 stride-1 convolutions with enough output tiles: Winograd's F(2x2, 3x3)
//     or F(4x4, 3x3) (WinogradConv), 16 or 36 GEMMs with 2.25x or 4x fewer multiply-adds than
//     im2col's.
//
// Forward outputs next to padding with a non-finite value are redone by the direct sum, so an
// Inf or NaN tap over padding contributes nothing (as the spec says) instead of 0·Inf = NaN.
//
// Every loop is on unsafe pointers; the element type is a generic parameter specialized for
// Float and Double (no existentials in the loops). Order of summation differs from the
// interpreter's (f64, tap-then-channel order); compiled results agree within f32/f64 sum error.

import COpenBLAS
import Glibc
import TTCodegen
import TTIR
import TTSupport

/// Which of the three convolution ops a thunk computes.
public enum ConvKind: String, Sendable {
  case forward = "conv2d", backpropInput = "conv2d_backprop_input", backpropFilter = "conv2d_backprop_filter"
}

/// Everything about a convolution but its batch size (which may be symbolic).
public struct ConvGeometry: Sendable, Equatable, CustomStringConvertible {
  public var h, w, cin, oh, ow, kh, kw, cout, groups: Int
  public var sh, sw, dh, dw, top, left: Int

  public init(window g: Window2D, cin: Int, cout: Int, groups: Int) {
    h = g.input[0]; w = g.input[1]; oh = g.output[0]; ow = g.output[1]
    kh = g.window[0]; kw = g.window[1]
    sh = g.strides[0]; sw = g.strides[1]; dh = g.dilations[0]; dw = g.dilations[1]
    top = g.pads[0]; left = g.pads[2]
    self.cin = cin; self.cout = cout; self.groups = groups
  }

  /// Input channels per group, and output channels per group.
  public var cg: Int { cin / groups }
  public var cpg: Int { cout / groups }
  /// The GEMM depth of one group: the length of an im2col row.
  public var depth: Int { kh * kw * cg }
  /// A 1x1 convolution with stride 1 and no padding over one group: a plain GEMM.
  public var isPointwise: Bool { kh == 1 && kw == 1 && sh == 1 && sw == 1 && oh == h && ow == w && top == 0 && left == 0 && groups == 1 }
  /// One input channel per group: the depthwise kernel.
  public var isDepthwise: Bool { cg == 1 && groups > 1 }

  public var description: String {
    "\(h)x\(w)x\(cin) -> \(oh)x\(ow)x\(cout), window \(kh)x\(kw), strides [\(sh), \(sw)], dilations [\(dh), \(dw)], pads top \(top) left \(left), groups \(groups)"
  }
}

/// The element types the compiled convolutions take.
public protocol ConvElement: BLASFloat, BinaryFloatingPoint, SIMDScalar, Codable {}
extension Float: ConvElement {}
extension Double: ConvElement {}

public enum ConvKernels {
  /// Bytes of im2col rows per chunk: about half of a 512 KiB L2, so a chunk's columns are still
  /// cached when its GEMM packs them.
  nonisolated(unsafe) public static var chunkBytes = 256 << 10
  /// The fewest output rows of a forward chunk (see `forward`): JitGemm's row block.
  static let forwardMinimumRows = 144

  /// Runs one convolution op over a batch of `n` images: `a`, `b` are the op's operands in IR
  /// order (forward: x, w; input gradient: dy, w; filter gradient: x, dy), `out` its result.
  /// `filterCache`: where an f32 forward convolution keeps its filter packed across calls (the
  /// filter is a parameter or constant of an executable: PackedFilters).
  public static func run<T: ConvElement>(_ kind: ConvKind, _ g: ConvGeometry, n: Int, a: UnsafePointer<T>, b: UnsafePointer<T>,
                                         out: UnsafeMutablePointer<T>, pool: ThreadPool) {
    run(kind, g, n: n, a: a, b: b, out: out, pool: pool, filterCache: nil)
  }

  static func run<T: ConvElement>(_ kind: ConvKind, _ g: ConvGeometry, n: Int, a: UnsafePointer<T>, b: UnsafePointer<T>,
                                  out: UnsafeMutablePointer<T>, pool: ThreadPool, filterCache: FilterCacheKey?) {
    _ = ParallelGemm.configured
    switch kind {
    case .forward:
      if n == 0 { return }
      if g.isPointwise {
        ParallelGemm.gemm(transposeA: false, transposeB: false, m: n * g.h * g.w, n: g.cout, k: g.cin, a: a, lda: g.cin, b: b, ldb: g.cout,
                          c: out, pool: pool)
      } else if g.isDepthwise {
        depthwiseForward(g, n: n, x: a, w: b, y: out, pool: pool)
      } else {
        forward(g, n: n, x: a, w: b, y: out, pool: pool, filterCache: T.self == Float.self && ConvFilterCache.enabled ? filterCache : nil)
        redoNonFiniteOnPadding(g, n: n, x: a, w: b, y: out)
      }
    case .backpropInput:
      if n == 0 { return }
      if g.isPointwise {
        ParallelGemm.gemm(transposeA: false, transposeB: true, m: n * g.h * g.w, n: g.cin, k: g.cout, a: a, lda: g.cout, b: b, ldb: g.cout,
                          c: out, pool: pool)
      } else if g.isDepthwise {
        depthwiseInput(g, n: n, dy: a, w: b, dx: out, pool: pool)
      } else {
        backpropInput(g, n: n, dy: a, w: b, dx: out, pool: pool)
      }
    case .backpropFilter:
      if n == 0 { out.update(repeating: 0, count: g.depth * g.cout); return }
      if g.isPointwise {
        ParallelGemm.gemm(transposeA: true, transposeB: false, m: g.cin, n: g.cout, k: n * g.h * g.w, a: a, lda: g.cin, b: b, ldb: g.cout,
                          c: out, pool: pool)
      } else if g.isDepthwise {
        depthwiseFilter(g, n: n, x: a, dy: b, dw: out, pool: pool)
      } else {
        backpropFilter(g, n: n, x: a, dy: b, dw: out, pool: pool)
      }
    }
  }

  // MARK: GEMM on the calling thread

  /// Row-major C[m, n] (row stride ldc) = op(A) op(B) on the calling thread: ttfc's GEMM for f32
  /// with at least 8 columns, OpenBLAS (single-threaded) otherwise. A chunk's row count does not
  /// choose the library (a ragged last chunk of 1-3 rows too goes to ttfc's GEMM), so an output
  /// element's order of summation, and its bits, do not depend on the batch size or thread count
  /// (except where the batch size moves a 3x3 convolution to or from Winograd: WinogradConv).
  @inline(__always)
  static func gemm<T: ConvElement>(transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int, a: UnsafePointer<T>, lda: Int,
                                   b: UnsafePointer<T>, ldb: Int, c: UnsafeMutablePointer<T>, ldc: Int) {
    if T.self == Float.self, JitGemm.enabled, JitGemm.suits(m: max(m, 4), n: n) {
      JitGemm.sgemm(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k,
                    a: UnsafeRawPointer(a).assumingMemoryBound(to: Float.self), lda: lda,
                    b: UnsafeRawPointer(b).assumingMemoryBound(to: Float.self), ldb: ldb,
                    c: UnsafeMutableRawPointer(c).assumingMemoryBound(to: Float.self), ldc: ldc)
      return
    }
    T.blasGemm(transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans, Int32(m), Int32(n), Int32(k),
               a, Int32(max(lda, 1)), b, Int32(max(ldb, 1)), c, Int32(max(ldc, 1)))
  }

  // MARK: im2col

  /// Output rows per chunk: `chunkBytes` of im2col rows, at least 24.
  static func chunkRows<T>(_ g: ConvGeometry, _: T.Type) -> Int {
    max(24, chunkBytes / max(g.depth * MemoryLayout<T>.stride, 1))
  }

  /// Writes the im2col rows of output rows r0 ..< r1 (flat over n, oh, ow) for group `group`:
  /// row r, tap (kh, kw), channel ci at cols[(r − r0)·depth + (kh·KW + kw)·cg + ci]; taps on
  /// padding are zeros.
  @inline(__always)
  static func im2col<T: ConvElement>(_ g: ConvGeometry, x: UnsafePointer<T>, rows r0: Int, _ r1: Int, group: Int,
                                     into cols: UnsafeMutablePointer<T>) {
    let plane = g.oh &* g.ow, cg = g.cg, depth = g.depth, channel0 = group &* cg
    for r in r0..<r1 {
      let image = r / plane, p = r &- image &* plane, i = p / g.ow, j = p &- i &* g.ow
      var dst = cols + (r &- r0) &* depth
      let imageBase = x + (image &* g.h &* g.w &* g.cin &+ channel0)
      // With no dilation and one group, a window row's taps inside the image are one contiguous
      // run of the input row (kw·cin elements): one copy instead of one per tap.
      let firstColumn = j &* g.sw &- g.left
      let wholeRows = g.dw == 1 && cg == g.cin && firstColumn >= 0 && firstColumn &+ g.kw <= g.w
      for kh in 0..<g.kh {
        let ih = i &* g.sh &- g.top &+ kh &* g.dh
        let rowInside = ih >= 0 && ih < g.h
        if wholeRows {
          if rowInside {
            dst.update(from: imageBase + (ih &* g.w &+ firstColumn) &* g.cin, count: g.kw &* cg)
          } else {
            dst.update(repeating: 0, count: g.kw &* cg)
          }
          dst += g.kw &* cg
          continue
        }
        for kw in 0..<g.kw {
          let iw = j &* g.sw &- g.left &+ kw &* g.dw
          if rowInside && iw >= 0 && iw < g.w {
            dst.update(from: imageBase + (ih &* g.w &+ iw) &* g.cin, count: cg)
          } else {
            dst.update(repeating: 0, count: cg)
          }
          dst += cg
        }
      }
    }
  }

  /// Adds column gradients back into dx: the inverse scatter of `im2col` (padding taps dropped).
  @inline(__always)
  static func col2imAdd<T: ConvElement>(_ g: ConvGeometry, cols: UnsafePointer<T>, rows r0: Int, _ r1: Int, group: Int,
                                        into dx: UnsafeMutablePointer<T>) {
    let plane = g.oh &* g.ow, cg = g.cg, depth = g.depth, channel0 = group &* cg
    for r in r0..<r1 {
      let image = r / plane, p = r &- image &* plane, i = p / g.ow, j = p &- i &* g.ow
      var src = cols + (r &- r0) &* depth
      let imageBase = dx + (image &* g.h &* g.w &* g.cin &+ channel0)
      for kh in 0..<g.kh {
        let ih = i &* g.sh &- g.top &+ kh &* g.dh
        let rowInside = ih >= 0 && ih < g.h
        for kw in 0..<g.kw {
          let iw = j &* g.sw &- g.left &+ kw &* g.dw
          if rowInside && iw >= 0 && iw < g.w {
            let target = imageBase + (ih &* g.w &+ iw) &* g.cin
            for c in 0..<cg { target[c] += src[c] }
          }
          src += cg
        }
      }
    }
  }

  // MARK: general convolutions (im2col + GEMM)

  static func forward<T: ConvElement>(_ g: ConvGeometry, n: Int, x: UnsafePointer<T>, w: UnsafePointer<T>, y: UnsafeMutablePointer<T>,
                                      pool: ThreadPool, filterCache: FilterCacheKey? = nil) {
    // f32 3x3 stride-1 convolutions with enough tiles: Winograd's F(2x2, 3x3) (WinogradConv).
    if T.self == Float.self, let variant = WinogradConv.variant(g, n: n, filterKept: filterCache != nil),
       WinogradConv.forward(g, n: n, x: UnsafeRawPointer(x).assumingMemoryBound(to: Float.self),
                            w: UnsafeRawPointer(w).assumingMemoryBound(to: Float.self),
                            y: UnsafeMutableRawPointer(y).assumingMemoryBound(to: Float.self), pool: pool, variant: variant,
                            filterCache: filterCache) {
      return
    }
    let rows = n * g.oh * g.ow
    // Each chunk's GEMM packs all of W (depth x cout) again: at 24 rows (a deep layer's
    // `chunkRows`) packing costs about as much as the multiply. So a chunk has at least
    // `forwardMinimumRows` rows, or a thread's share of the rows when they are fewer (ResNet's
    // last stage at batch 1: 49 rows, two chunks of 25 on two threads rather than 24, 24, 1).
    let share = (rows + pool.threadCount - 1) / max(pool.threadCount, 1)
    let per = max(chunkRows(g, T.self), min(forwardMinimumRows, share))
    let chunks = (rows + per - 1) / per
    let xa = UInt(bitPattern: x), wa = UInt(bitPattern: w), ya = UInt(bitPattern: y)
    // f32, one group: the filter packed once — kept across calls when it is an executable's
    // parameter (PackedFilters), else once for this call — every chunk's GEMM reading it (on
    // ResNet-18's last stage at batch 32 each of 11 chunks packed all 9 MiB of a 3x3x512x512
    // filter again: a fifth of the convolution's time).
    if T.self == Float.self, g.groups == 1, JitGemm.enabled, let routines = JitGemm.routines, g.cout >= 8,
       g.cout <= JitGemm.sharedBlockColumns(k: g.depth) {
      let wf = UnsafeRawPointer(w).assumingMemoryBound(to: Float.self)
      if let filterCache {
        let kept = filterCache.cache.packed(.im2col, generation: filterCache.generation, floats: JitGemm.panelFloats(k: g.depth, n: g.cout)) {
          _ = JitGemm.packPanels(packers: routines.packers, transposed: false, b: UnsafeRawPointer(wf), ldb: g.cout, k: g.depth, jc: 0,
                                 nc: g.cout, into: $0, pool: pool, parts: min(pool.threadCount, (g.cout + JitGemm.nr - 1) / JitGemm.nr))
          return true
        }
        if let kept {
          let panels = JitGemm.SharedPanels(pointer: kept.pointer, k: g.depth, jc: 0, nc: g.cout)
          withExtendedLifetime(kept) {
            forwardPacked(g, n: n, x: UnsafeRawPointer(x).assumingMemoryBound(to: Float.self), panels: panels, routines: routines,
                          y: UnsafeMutableRawPointer(y).assumingMemoryBound(to: Float.self), per: per, pool: pool)
          }
          return
        }
      }
      if chunks > 1, JitGemm.suits(m: min(per, rows), n: g.cout),
         let filter = JitGemm.packWhole(transposeB: false, k: g.depth, n: g.cout, b: wf, ldb: g.cout, pool: pool) {
        defer { JitGemm.release(filter) }
        forwardPacked(g, n: n, x: UnsafeRawPointer(x).assumingMemoryBound(to: Float.self), panels: filter.panels, routines: routines,
                      y: UnsafeMutableRawPointer(y).assumingMemoryBound(to: Float.self), per: per, pool: pool)
        return
      }
    }
    pool.parallelFor(chunks) { chunk in
      let x = UnsafePointer<T>(bitPattern: xa)!, w = UnsafePointer<T>(bitPattern: wa)!, y = UnsafeMutablePointer<T>(bitPattern: ya)!
      let r0 = chunk * per, r1 = min(rows, r0 + per)
      let scratch = Scratch.take(bytes: per * g.depth * MemoryLayout<T>.stride)
      defer { Scratch.give(scratch) }
      let cols = scratch.pointer.assumingMemoryBound(to: T.self)
      for group in 0..<g.groups {
        im2col(g, x: x, rows: r0, r1, group: group, into: cols)
        gemm(transposeA: false, transposeB: false, m: r1 - r0, n: g.cpg, k: g.depth, a: cols, lda: g.depth,
             b: w + group * g.cpg, ldb: g.cout, c: y + r0 * g.cout + group * g.cpg, ldc: g.cout)
      }
    }
  }

  /// The GEMM paths multiply padding's zeros by the taps over it: exactly nothing for a finite
  /// tap, but NaN for an Inf or NaN one, where the spec's padding contributes nothing. So the
  /// outputs whose window reaches into padding (the border rows and columns) are checked, and
  /// one with a non-finite value is recomputed by the direct sum over the taps inside the image
  /// (tap, then channel order). A scan of the border only; a redo only for non-finite outputs.
  static func redoNonFiniteOnPadding<T: ConvElement>(_ g: ConvGeometry, n: Int, x: UnsafePointer<T>, w: UnsafePointer<T>,
                                                     y: UnsafeMutablePointer<T>) {
    // The taps of output position o (along one axis) that read the input, as a range.
    func taps(_ o: Int, stride: Int, pad: Int, dilation: Int, window: Int, size: Int) -> Range<Int> {
      let base = o * stride - pad
      let first = base >= 0 ? 0 : (-base + dilation - 1) / dilation
      let last = base > size - 1 ? -1 : min(window - 1, (size - 1 - base) / dilation)
      return first <= last ? first..<(last + 1) : 0..<0
    }
    let rowTaps = (0..<g.oh).map { taps($0, stride: g.sh, pad: g.top, dilation: g.dh, window: g.kh, size: g.h) }
    let columnTaps = (0..<g.ow).map { taps($0, stride: g.sw, pad: g.left, dilation: g.dw, window: g.kw, size: g.w) }
    let borderRow = rowTaps.map { $0.count < g.kh }, borderColumn = columnTaps.map { $0.count < g.kw }
    guard borderRow.contains(true) || borderColumn.contains(true) else { return }
    for image in 0..<n {
      for i in 0..<g.oh {
        for j in 0..<g.ow where borderRow[i] || borderColumn[j] {
          let out = y + ((image * g.oh + i) * g.ow + j) * g.cout
          // 0·v is NaN exactly for an Inf or NaN v; eight lanes at a time.
          var lanes = SIMD8<T>(repeating: 0), probe: T = 0, co = 0
          while co + 8 <= g.cout { lanes += UnsafeRawPointer(out + co).loadUnaligned(as: SIMD8<T>.self) * 0; co += 8 }
          while co < g.cout { probe += out[co] * 0; co += 1 }
          guard !(lanes.sum() + probe).isFinite else { continue }
          for co in 0..<g.cout {
            let channel0 = co / g.cpg * g.cg
            var sum: T = 0
            for kh in rowTaps[i] {
              let ih = i * g.sh - g.top + kh * g.dh
              for kw in columnTaps[j] {
                let iw = j * g.sw - g.left + kw * g.dw
                let input = x + ((image * g.h + ih) * g.w + iw) * g.cin + channel0, tap = w + (kh * g.kw + kw) * g.cg * g.cout + co
                for ci in 0..<g.cg { sum += input[ci] * tap[ci * g.cout] }
              }
            }
            out[co] = sum
          }
        }
      }
    }
  }

  /// Most im2col bytes `forwardPacked` lays out at once for a split by columns (2x the L2).
  static let columnSplitBytes = 2 << 20

  /// The f32 one-group forward convolution against a packed filter. Many rows: chunks of `per`
  /// output rows, each im2col'd into L2-sized scratch and multiplied by all of the filter.
  /// Fewer rows than the threads' minimum chunks (a deep layer at batch 1: 49 rows against a
  /// 9 MiB filter): all rows im2col'd once, then each thread multiplies them by its share of the
  /// filter's column panels, so the filter is read once in all rather than once per thread.
  /// Both give every output element the same sum in the same order.
  static func forwardPacked(_ g: ConvGeometry, n: Int, x: UnsafePointer<Float>, panels: JitGemm.SharedPanels,
                            routines: GemmKernels.Entries, y: UnsafeMutablePointer<Float>, per: Int, pool: ThreadPool) {
    let rows = n * g.oh * g.ow, threads = max(pool.threadCount, 1)
    let xa = UInt(bitPattern: x), ya = UInt(bitPattern: y)
    if threads > 1, rows < threads * forwardMinimumRows, panels.columnPanels >= threads,
       rows * g.depth * MemoryLayout<Float>.stride <= columnSplitBytes {
      let scratch = Scratch.take(bytes: rows * g.depth * MemoryLayout<Float>.stride)
      defer { Scratch.give(scratch) }
      let ca = UInt(bitPattern: scratch.pointer)
      pool.parallelFor(threads) { part in
        let r0 = rows * part / threads, r1 = rows * (part + 1) / threads
        guard r1 > r0 else { return }
        im2col(g, x: UnsafePointer<Float>(bitPattern: xa)!, rows: r0, r1, group: 0,
               into: UnsafeMutablePointer<Float>(bitPattern: ca)! + r0 * g.depth)
      }
      let columnPanels = panels.columnPanels, tiles = (rows + JitGemm.mr - 1) / JitGemm.mr * columnPanels
      pool.parallelFor(threads) { part in
        let first = columnPanels * part / threads, last = columnPanels * (part + 1) / threads
        guard last > first else { return }
        let workspace = JitGemm.Workspace.take()
        defer { JitGemm.Workspace.give(workspace) }
        JitGemm.multiply(tiles: 0..<tiles, m: rows, panels: panels, routines: routines, packers: routines.packers, transposeA: false,
                         a: UnsafeRawPointer(bitPattern: ca)!, lda: g.depth, c: UnsafeMutablePointer<Float>(bitPattern: ya)!, ldc: g.cout,
                         workspace: workspace, panelRange: first..<last)
      }
      return
    }
    let chunks = (rows + per - 1) / per
    pool.parallelFor(chunks) { chunk in
      let x = UnsafePointer<Float>(bitPattern: xa)!, y = UnsafeMutablePointer<Float>(bitPattern: ya)!
      let r0 = chunk * per, r1 = min(rows, r0 + per)
      let scratch = Scratch.take(bytes: per * g.depth * MemoryLayout<Float>.stride)
      defer { Scratch.give(scratch) }
      let cols = scratch.pointer.assumingMemoryBound(to: Float.self)
      im2col(g, x: x, rows: r0, r1, group: 0, into: cols)
      let workspace = JitGemm.Workspace.take()
      defer { JitGemm.Workspace.give(workspace) }
      JitGemm.multiply(tiles: 0..<((r1 - r0 + JitGemm.mr - 1) / JitGemm.mr * panels.columnPanels), m: r1 - r0, panels: panels,
                       routines: routines, packers: routines.packers, transposeA: false, a: UnsafeRawPointer(cols), lda: g.depth,
                       c: y + r0 * g.cout, ldc: g.cout, workspace: workspace)
    }
  }

  static func backpropInput<T: ConvElement>(_ g: ConvGeometry, n: Int, dy: UnsafePointer<T>, w: UnsafePointer<T>,
                                            dx: UnsafeMutablePointer<T>, pool: ThreadPool) {
    // A job per image (its dx elements are its own), in chunks of output rows within it.
    let plane = g.oh * g.ow, per = min(chunkRows(g, T.self), max(plane, 1))
    let da = UInt(bitPattern: dy), wa = UInt(bitPattern: w), xa = UInt(bitPattern: dx)
    pool.parallelFor(n) { image in
      let dy = UnsafePointer<T>(bitPattern: da)!, w = UnsafePointer<T>(bitPattern: wa)!, dx = UnsafeMutablePointer<T>(bitPattern: xa)!
      (dx + image * g.h * g.w * g.cin).update(repeating: 0, count: g.h * g.w * g.cin)
      let scratch = Scratch.take(bytes: per * g.depth * MemoryLayout<T>.stride)
      defer { Scratch.give(scratch) }
      let cols = scratch.pointer.assumingMemoryBound(to: T.self)
      for r0 in stride(from: image * plane, to: (image + 1) * plane, by: per) {
        let r1 = min((image + 1) * plane, r0 + per)
        for group in 0..<g.groups {
          // dcols[rows, depth] = dy[rows, group's channels] · W_groupᵀ (W_group stored [depth, cpg], row stride cout).
          gemm(transposeA: false, transposeB: true, m: r1 - r0, n: g.depth, k: g.cpg, a: dy + r0 * g.cout + group * g.cpg, lda: g.cout,
               b: w + group * g.cpg, ldb: g.cout, c: cols, ldc: g.depth)
          col2imAdd(g, cols: cols, rows: r0, r1, group: group, into: dx)
        }
      }
    }
  }

  static func backpropFilter<T: ConvElement>(_ g: ConvGeometry, n: Int, x: UnsafePointer<T>, dy: UnsafePointer<T>,
                                             dw: UnsafeMutablePointer<T>, pool: ThreadPool) {
    let rows = n * g.oh * g.ow, per = chunkRows(g, T.self)
    let chunks = (rows + per - 1) / per
    let parts = min(pool.threadCount, chunks)
    let size = g.depth * g.cout
    // One partial sum per part (contiguous chunks, in order), added in part order at the end.
    let partials = Scratch.take(bytes: parts * size * MemoryLayout<T>.stride)
    defer { Scratch.give(partials) }
    let pa = UInt(bitPattern: partials.pointer), xa = UInt(bitPattern: x), da = UInt(bitPattern: dy)
    pool.parallelFor(parts) { part in
      let x = UnsafePointer<T>(bitPattern: xa)!, dy = UnsafePointer<T>(bitPattern: da)!
      let sum = UnsafeMutablePointer<T>(bitPattern: pa)! + part * size
      sum.update(repeating: 0, count: size)
      let scratch = Scratch.take(bytes: (per * g.depth + size) * MemoryLayout<T>.stride)
      defer { Scratch.give(scratch) }
      let cols = scratch.pointer.assumingMemoryBound(to: T.self), product = cols + per * g.depth
      for chunk in (chunks * part / parts)..<(chunks * (part + 1) / parts) {
        let r0 = chunk * per, r1 = min(rows, r0 + per)
        for group in 0..<g.groups {
          im2col(g, x: x, rows: r0, r1, group: group, into: cols)
          // product[depth, cpg] (row stride cout, at the group's columns) = colsᵀ · dy[rows, group's channels].
          gemm(transposeA: true, transposeB: false, m: g.depth, n: g.cpg, k: r1 - r0, a: cols, lda: g.depth,
               b: dy + r0 * g.cout + group * g.cpg, ldb: g.cout, c: product + group * g.cpg, ldc: g.cout)
        }
        for e in 0..<size { sum[e] += product[e] }
      }
    }
    let sums = UnsafePointer(partials.pointer.assumingMemoryBound(to: T.self))
    dw.update(from: sums, count: size)
    for part in 1..<max(parts, 1) {
      let p = sums + part * size
      for e in 0..<size { dw[e] += p[e] }
    }
  }

  // MARK: depthwise (one input channel per group)

  /// y[.., co] = Σ taps x[.., ih, iw, co / M] · w[kh, kw, 0, co], M = Cout/Cin; jobs are chunks of
  /// output rows (n, oh).
  static func depthwiseForward<T: ConvElement>(_ g: ConvGeometry, n: Int, x: UnsafePointer<T>, w: UnsafePointer<T>,
                                               y: UnsafeMutablePointer<T>, pool: ThreadPool) {
    let lines = n * g.oh, chunks = min(lines, pool.threadCount * 8)
    let xa = UInt(bitPattern: x), wa = UInt(bitPattern: w), ya = UInt(bitPattern: y)
    let multiplier = g.cout / g.cin
    pool.parallelFor(chunks) { chunk in
      let x = UnsafePointer<T>(bitPattern: xa)!, w = UnsafePointer<T>(bitPattern: wa)!, y = UnsafeMutablePointer<T>(bitPattern: ya)!
      for line in (lines * chunk / chunks)..<(lines * (chunk + 1) / chunks) {
        let image = line / g.oh, i = line - image * g.oh
        let imageBase = x + image * g.h * g.w * g.cin
        for j in 0..<g.ow {
          let out = y + (line * g.ow + j) * g.cout
          out.update(repeating: 0, count: g.cout)
          for kh in 0..<g.kh {
            let ih = i &* g.sh &- g.top &+ kh &* g.dh
            guard ih >= 0 && ih < g.h else { continue }
            for kw in 0..<g.kw {
              let iw = j &* g.sw &- g.left &+ kw &* g.dw
              guard iw >= 0 && iw < g.w else { continue }
              let input = imageBase + (ih &* g.w &+ iw) &* g.cin, tap = w + (kh &* g.kw &+ kw) &* g.cout
              if multiplier == 1 {
                for c in 0..<g.cout { out[c] += input[c] * tap[c] }
              } else {
                for c in 0..<g.cout { out[c] += input[c / multiplier] * tap[c] }
              }
            }
          }
        }
      }
    }
  }

  /// dx[.., ih, iw, c] = Σ over taps reading it and m < M of dy[.., c·M + m] · w[kh, kw, 0, c·M + m];
  /// a job per image.
  static func depthwiseInput<T: ConvElement>(_ g: ConvGeometry, n: Int, dy: UnsafePointer<T>, w: UnsafePointer<T>,
                                             dx: UnsafeMutablePointer<T>, pool: ThreadPool) {
    let da = UInt(bitPattern: dy), wa = UInt(bitPattern: w), xa = UInt(bitPattern: dx)
    let multiplier = g.cout / g.cin
    pool.parallelFor(n) { image in
      let dy = UnsafePointer<T>(bitPattern: da)!, w = UnsafePointer<T>(bitPattern: wa)!, dx = UnsafeMutablePointer<T>(bitPattern: xa)!
      let imageBase = dx + image * g.h * g.w * g.cin
      imageBase.update(repeating: 0, count: g.h * g.w * g.cin)
      for i in 0..<g.oh {
        for j in 0..<g.ow {
          let grad = dy + ((image * g.oh + i) * g.ow + j) * g.cout
          for kh in 0..<g.kh {
            let ih = i &* g.sh &- g.top &+ kh &* g.dh
            guard ih >= 0 && ih < g.h else { continue }
            for kw in 0..<g.kw {
              let iw = j &* g.sw &- g.left &+ kw &* g.dw
              guard iw >= 0 && iw < g.w else { continue }
              let target = imageBase + (ih &* g.w &+ iw) &* g.cin, tap = w + (kh &* g.kw &+ kw) &* g.cout
              if multiplier == 1 {
                for c in 0..<g.cin { target[c] += grad[c] * tap[c] }
              } else {
                for c in 0..<g.cin {
                  var s: T = 0
                  for m in 0..<multiplier { s += grad[c * multiplier + m] * tap[c * multiplier + m] }
                  target[c] += s
                }
              }
            }
          }
        }
      }
    }
  }

  /// dw[kh, kw, 0, co] = Σ x[.., ih, iw, co / M] · dy[.., co]: one partial per part (contiguous
  /// images), added in part order.
  static func depthwiseFilter<T: ConvElement>(_ g: ConvGeometry, n: Int, x: UnsafePointer<T>, dy: UnsafePointer<T>,
                                              dw: UnsafeMutablePointer<T>, pool: ThreadPool) {
    let parts = min(pool.threadCount, n), size = g.kh * g.kw * g.cout
    let multiplier = g.cout / g.cin
    let partials = Scratch.take(bytes: parts * size * MemoryLayout<T>.stride)
    defer { Scratch.give(partials) }
    let pa = UInt(bitPattern: partials.pointer), xa = UInt(bitPattern: x), da = UInt(bitPattern: dy)
    pool.parallelFor(parts) { part in
      let x = UnsafePointer<T>(bitPattern: xa)!, dy = UnsafePointer<T>(bitPattern: da)!
      let sum = UnsafeMutablePointer<T>(bitPattern: pa)! + part * size
      sum.update(repeating: 0, count: size)
      for image in (n * part / parts)..<(n * (part + 1) / parts) {
        let imageBase = x + image * g.h * g.w * g.cin
        for i in 0..<g.oh {
          for j in 0..<g.ow {
            let grad = dy + ((image * g.oh + i) * g.ow + j) * g.cout
            for kh in 0..<g.kh {
              let ih = i &* g.sh &- g.top &+ kh &* g.dh
              guard ih >= 0 && ih < g.h else { continue }
              for kw in 0..<g.kw {
                let iw = j &* g.sw &- g.left &+ kw &* g.dw
                guard iw >= 0 && iw < g.w else { continue }
                let input = imageBase + (ih &* g.w &+ iw) &* g.cin, tap = sum + (kh &* g.kw &+ kw) &* g.cout
                if multiplier == 1 {
                  for c in 0..<g.cout { tap[c] += input[c] * grad[c] }
                } else {
                  for c in 0..<g.cout { tap[c] += input[c / multiplier] * grad[c] }
                }
              }
            }
          }
        }
      }
    }
    let sums = UnsafePointer(partials.pointer.assumingMemoryBound(to: T.self))
    dw.update(from: sums, count: size)
    for part in 1..<max(parts, 1) {
      let p = sums + part * size
      for e in 0..<size { dw[e] += p[e] }
    }
  }

  // MARK: scratch

  /// A 64-byte aligned buffer from a free list (grown on demand), so steady state allocates nothing.
  final class Scratch: @unchecked Sendable {
    var pointer: UnsafeMutableRawPointer
    var capacity: Int
    init(bytes: Int) {
      var raw: UnsafeMutableRawPointer?
      guard posix_memalign(&raw, 64, max(bytes, 64)) == 0, let raw else { fatalError("ConvKernels: cannot allocate \(bytes) bytes") }
      pointer = raw; capacity = max(bytes, 64)
    }
    deinit { free(pointer) }

    private static let lock = NSLockish()
    nonisolated(unsafe) private static var spare: [Scratch] = []

    static func take(bytes: Int) -> Scratch {
      let s = lock.withLock { spare.popLast() } ?? Scratch(bytes: bytes)
      if s.capacity < bytes {
        free(s.pointer)
        var raw: UnsafeMutableRawPointer?
        guard posix_memalign(&raw, 64, bytes) == 0, let raw else { fatalError("ConvKernels: cannot allocate \(bytes) bytes") }
        s.pointer = raw; s.capacity = bytes
      }
      return s
    }
    static func give(_ s: Scratch) { lock.withLock { spare.append(s) } }
  }
}
