// Filters kept packed across runs (PackedFilters): the same bits as packing per call; a kept form
// is reused, and made again after updateParameters; few-tile Winograd (deep layers at batch 1)
// and the column split of the im2col path against the direct sum and across thread counts;
// Inf and NaN filters; executables keep only parameters' and constants' filters.
import Testing
import TTCompiler
import TTIR
@testable import TTRuntime

struct PackedFilterTests {
  typealias Case = WinogradConvTests.Case

  static func run(_ g: ConvGeometry, n: Int, x: [Float], w: [Float], threads: Int, cache: FilterCacheKey?) -> [Float] {
    var y = [Float](repeating: .nan, count: n * g.oh * g.ow * g.cout)
    let pool = ThreadPool(threads: threads)
    x.withUnsafeBufferPointer { xp in
      w.withUnsafeBufferPointer { wp in
        y.withUnsafeMutableBufferPointer { yp in
          ConvKernels.run(.forward, g, n: n, a: xp.baseAddress!, b: wp.baseAddress!, out: yp.baseAddress!, pool: pool, filterCache: cache)
        }
      }
    }
    return y
  }

  static func geometry(h: Int, w: Int, cin: Int, cout: Int, window: Int, stride: Int, dilation: Int = 1, pad: Int) -> ConvGeometry {
    let extent = (window - 1) * dilation + 1
    let oh = (h + 2 * pad - extent) / stride + 1, ow = (w + 2 * pad - extent) / stride + 1
    return ConvGeometry(window: Window2D(input: [h, w], output: [oh, ow], window: [window, window], strides: [stride, stride],
                                         dilations: [dilation, dilation], pads: [pad, pad, pad, pad]), cin: cin, cout: cout, groups: 1)
  }

  /// Where the kept filter does not change the algorithm (im2col, or Winograd with enough
  /// tiles either way) its results are bit for bit those of packing per call, at one and two
  /// threads (the column split at two threads for few rows, row chunks otherwise).
  @Test(arguments: [
    (geometry(h: 14, w: 14, cin: 64, cout: 96, window: 3, stride: 2, pad: 1), 1),    // 49 rows: split by columns
    (geometry(h: 14, w: 14, cin: 64, cout: 96, window: 3, stride: 2, pad: 1), 8),    // 392 rows: row chunks
    (geometry(h: 9, w: 9, cin: 40, cout: 24, window: 5, stride: 1, dilation: 2, pad: 3), 1),
    (geometry(h: 8, w: 8, cin: 32, cout: 80, window: 1, stride: 2, pad: 0), 3),
    (geometry(h: 14, w: 14, cin: 16, cout: 32, window: 3, stride: 1, pad: 1), 2),    // F(2x2) either way: 98 tiles
    (geometry(h: 20, w: 20, cin: 64, cout: 32, window: 3, stride: 1, pad: 1), 8),    // F(4x4) either way: 200 tiles
  ])
  func keptFiltersGiveTheBitsOfPackingPerCall(_ g: ConvGeometry, n: Int) {
    let x = WinogradConvTests.values(n * g.h * g.w * g.cin, seed: 11), w = WinogradConvTests.values(g.depth * g.cout, seed: 12)
    for threads in [1, 2] {
      let cache = ConvFilterCache(owner: HostMemory.newOwner())
      let fresh = Self.run(g, n: n, x: x, w: w, threads: threads, cache: nil)
      let kept = Self.run(g, n: n, x: x, w: w, threads: threads, cache: FilterCacheKey(cache: cache, generation: 0))
      #expect(kept == fresh, "\(g), n \(n), \(threads) threads: \(zip(kept, fresh).count { $0 != $1 }) outputs differ")
      #expect(fresh.allSatisfy { !$0.isNaN })
      #expect(cache.made == 1)
    }
  }

  /// Deep layers at batch 1 (ResNet-18's 7x7 and 14x14 stages: 16 and 49 tiles) take Winograd
  /// once the filter is kept: within Winograd's error bound of the float64 direct sum, and the
  /// same bits at one thread (chunks) and two (all tiles at once, GEMMs split by columns).
  @Test(arguments: [
    Case(n: 1, h: 7, w: 7, cin: 64, cout: 48, top: 1, bottom: 1, left: 1, right: 1),
    Case(n: 1, h: 14, w: 14, cin: 32, cout: 40, top: 1, bottom: 1, left: 1, right: 1),
    Case(n: 2, h: 7, w: 8, cin: 300, cout: 17, top: 0, bottom: 1, left: 1, right: 0),
  ])
  func fewTilesTakeWinogradOnceKept(_ c: Case) {
    let g = c.geometry
    #expect(WinogradConv.tiles(g, n: c.n) < WinogradConv.minimumTiles)
    #expect(WinogradConv.suits(g, n: c.n, filterKept: true) && !WinogradConv.suits(g, n: c.n))
    let x = WinogradConvTests.values(c.n * c.h * c.w * c.cin, seed: 21), w = WinogradConvTests.values(9 * c.cin * c.cout, seed: 22)
    let (want, magnitude) = WinogradConvTests.direct(c, x: x, w: w)
    var results: [[Float]] = []
    for threads in [1, 2] {
      let cache = ConvFilterCache(owner: HostMemory.newOwner())
      let y = Self.run(g, n: c.n, x: x, w: w, threads: threads, cache: FilterCacheKey(cache: cache, generation: 0))
      let u = 0x1p-24, k = Double(9 * c.cin)
      var bad = 0
      for e in want.indices where !(abs(Double(y[e]) - want[e]) <= 8 * k * u * magnitude[e] + u * abs(want[e])) { bad += 1 }
      #expect(bad == 0, "\(c), \(threads) threads: \(bad) outputs off the direct sum")
      results.append(y)
    }
    #expect(results[0] == results[1])
  }

  /// A kept form is reused at the same generation and made again at a new one, from the new
  /// filter; the stale form does not leak.
  @Test func keptFormsFollowTheGeneration() {
    let owner = HostMemory.newOwner()
    for g in [Self.geometry(h: 7, w: 7, cin: 32, cout: 32, window: 3, stride: 1, pad: 1),
              Self.geometry(h: 7, w: 7, cin: 32, cout: 32, window: 3, stride: 2, pad: 1)] {
      let cache = ConvFilterCache(owner: owner)
      let x = WinogradConvTests.values(g.h * g.w * g.cin, seed: 31)
      let w1 = WinogradConvTests.values(g.depth * g.cout, seed: 32), w2 = WinogradConvTests.values(g.depth * g.cout, seed: 33)
      let first = Self.run(g, n: 1, x: x, w: w1, threads: 2, cache: FilterCacheKey(cache: cache, generation: 0))
      let bytes = HostMemory.liveBytes(owner: owner)
      #expect(Self.run(g, n: 1, x: x, w: w1, threads: 2, cache: FilterCacheKey(cache: cache, generation: 0)) == first)
      #expect(cache.made == 1)
      // The same generation: the kept form, even though w changed behind the cache's back
      // (which no executable does: updateParameters bumps the generation).
      #expect(Self.run(g, n: 1, x: x, w: w2, threads: 2, cache: FilterCacheKey(cache: cache, generation: 0)) == first)
      let second = Self.run(g, n: 1, x: x, w: w2, threads: 2, cache: FilterCacheKey(cache: cache, generation: 1))
      let reference = Self.run(g, n: 1, x: x, w: w2, threads: 2, cache: FilterCacheKey(cache: ConvFilterCache(owner: HostMemory.newOwner()), generation: 0))
      #expect(cache.made == 2)
      #expect(second == reference && second != first)
      #expect(HostMemory.liveBytes(owner: owner) == bytes)
    }
  }

  /// Inf and NaN in a kept filter: the Winograd form is marked unusable and the convolution runs
  /// on im2col, giving the direct sum's Inf and NaN; output pixels that overflow are redone.
  @Test func nonFiniteKeptFiltersGiveTheDirectSum() {
    let c = Case(n: 1, h: 7, w: 7, cin: 16, cout: 16, top: 1, bottom: 1, left: 1, right: 1)
    let ones = [Float](repeating: 1, count: c.h * c.w * c.cin), filterOnes = [Float](repeating: 1, count: 9 * c.cin * c.cout)
    var infW = filterOnes; infW[4 * c.cin * c.cout + 3] = .infinity
    var nanW = filterOnes; nanW[7 * c.cin * c.cout + 5 * c.cout + 2] = .nan   // a bottom tap: on padding for the last row
    var nanX = ones; nanX[(3 * c.w + 3) * c.cin + 1] = .nan
    let bigX = [Float](repeating: 1e38, count: ones.count), smallW = [Float](repeating: 1e-3, count: filterOnes.count)
    for (name, x, w) in [("inf in w", ones, infW), ("nan in w", ones, nanW), ("nan in x", nanX, filterOnes), ("1e38 x 1e-3", bigX, smallW)] {
      for threads in [1, 2] {
        let cache = ConvFilterCache(owner: HostMemory.newOwner())
        let y = Self.run(c.geometry, n: 1, x: x, w: w, threads: threads, cache: FilterCacheKey(cache: cache, generation: 0))
        let bad = WinogradConvTests.mismatches(c, y: y, x: x, w: w)
        #expect(bad == 0, "\(name), \(threads) threads: \(bad) of \(y.count) outputs differ from the direct sum")
      }
    }
  }

  /// An executable keeps its parameters' filters packed: made on the first run, reused by the
  /// next, made again after updateParameters (and the results follow the new values); a filter
  /// passed as an argument (a training step's) is packed per call and never kept.
  @Test func executablesKeepParameterFiltersOnly() throws {
    let module = try Parser.parseAndVerify("""
      module @m {
        param @w : f32[3, 3, 16, 32] = glorot_uniform(seed: 5)
        func @infer(%x: f32[B, 16, 16, 16]) -> f32[B, 16, 16, 32] {
          %y = conv2d %x, @w {pads = [1, 1, 1, 1]} : f32[B, 16, 16, 32]
          return %y
        }
        func @given(%x: f32[B, 16, 16, 16], %w: f32[3, 3, 16, 32]) -> f32[B, 16, 16, 32] {
          %y = conv2d %x, %w {pads = [1, 1, 1, 1]} : f32[B, 16, 16, 32]
          return %y
        }
      }
      """)
    let infer = try Executable(module: module, function: "infer"), given = try Executable(module: module, function: "given")
    let x = Tensor(.f32, shape: [2, 16, 16, 16], floats: WinogradConvTests.values(2 * 16 * 16 * 16, seed: 41).map(Double.init))
    let w1 = Tensor(.f32, shape: [3, 3, 16, 32], floats: WinogradConvTests.values(9 * 16 * 32, seed: 42).map(Double.init))
    let w2 = Tensor(.f32, shape: [3, 3, 16, 32], floats: WinogradConvTests.values(9 * 16 * 32, seed: 43).map(Double.init))
    try infer.updateParameters(["w": w1])
    let first = try infer.run([x])[0]
    #expect(infer.packedFiltersMade == 1)
    let again = try infer.run([x])[0], givenFirst = try given.run([x, w1])[0]
    #expect(again.doubles == first.doubles && givenFirst.doubles == first.doubles)
    #expect(infer.packedFiltersMade == 1)
    try infer.updateParameters(["w": w2])
    let second = try infer.run([x])[0], givenSecond = try given.run([x, w2])[0]
    #expect(infer.packedFiltersMade == 2)
    #expect(second.doubles == givenSecond.doubles && second.doubles != first.doubles)
    #expect(given.packedFiltersMade == 0)
  }
}
