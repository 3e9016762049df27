// WinogradConv — f32 3x3 stride-1 convolutions by Winograd's minimal filtering F(m x m, 3x3),
// m = 2 or 4 (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2015;
// IR-specs/codegen.md, "Convolutions"). Each m x m block of outputs (a tile) is computed from the
// (m+2) x (m+2) input patch under it as Y = Aᵀ [ Σ_ci (G g Gᵀ) ⊙ (Bᵀ d B) ] A: the (m+2)²
// elementwise products summed over input channels are (m+2)² GEMMs [tiles, Cin] x [Cin, Cout].
// Per output and channel pair that is 16/4 = 4 multiply-adds for F(2x2, 3x3) and 36/16 = 2.25 for
// F(4x4, 3x3), where im2col's GEMM does 9, at the price of the transforms.
//
//   - filter transform, once per call or kept across runs (PackedFilters): U_ξν = (G g Gᵀ)_ξν
//     for every (ci, co), packed as JitGemm's 16-column panels (one SharedPanels per ξν);
//   - per chunk of tiles (a pool job): the input transform V_ξν[tile, ci] (vectors over the
//     NHWC channels, zeros for padding), the GEMMs M_ξν = V_ξν U_ξν on JitGemm's microkernel, and
//     the output transform into y (edge tiles write only their outputs inside the image);
//     with few tiles (deep layers at batch 1), all tiles' input transforms at once, the
//     GEMMs' column panels shared out over the threads, then the output transform.
//
// Numerics: F(2x2)'s coefficients are 0, ±1 and ±½ (exact); F(4x4)'s reach 8 and 1/24 (the
// filter transform rounds). Each output is the sum of the GEMM results whose sums run over ci in
// order, so an element's bits do not depend on the chunking or thread count, nor on the batch
// size while the batch keeps the layer on one variant (crossing a threshold changes the
// algorithm, hence the rounding, within the error below; TTFC_WINOGRAD=off keeps every batch
// size on im2col, TTFC_WINOGRAD=2x2 on F(2x2) or im2col). The error is a few times the direct
// sum's for F(2x2) and some ten times for F(4x4), and hardly shrinks with Cin, hence the
// input-channel gates (IR-specs/codegen.md); f64 stays on im2col.

import Glibc
import TTCodegen
import TTSupport

/// F(m x m, 3x3): m = 2 (4x4 patches, 16 GEMMs) or m = 4 (6x6 patches, 36 GEMMs).
struct WinogradVariant: Equatable, Sendable, CustomStringConvertible {
  let m: Int
  /// The patch side, m + 2, and the number of GEMMs, (m + 2)².
  var alpha: Int { m + 2 }
  var positions: Int { alpha * alpha }
  static let f2 = WinogradVariant(m: 2), f4 = WinogradVariant(m: 4)
  var description: String { "F(\(m)x\(m), 3x3)" }
}

enum WinogradConv {
  enum Mode { case off, only2x2, all }
  /// TTFC_WINOGRAD=off keeps every convolution on im2col, =2x2 every one on F(2x2, 3x3) or
  /// im2col (for comparison and debugging).
  static let mode: Mode = {
    guard let text = getenv("TTFC_WINOGRAD") else { return .all }
    switch String(cString: text) { case "off": return .off; case "2x2": return .only2x2; default: return .all }
  }()
  static var enabled: Bool { mode != .off }

  /// Fewest F(2x2) tiles for which the transforms pay: the filter transform is 16·Cin·Cout values
  /// per call, worth it only when many tiles share it (ResNet-18 at batch 1: its 14x14 and 7x7
  /// stages have 49 and 16 tiles and stay on im2col).
  static let minimumTiles = 64
  /// Fewest F(2x2) tiles when the transformed filter is kept across calls (PackedFilters): then
  /// only the input and output transforms are paid per call.
  static let minimumTilesKept = 16
  /// Fewest F(4x4) tiles (of 16 outputs), per call and kept. Its U is 36/16 of F(2x2)'s, and a
  /// GEMM of few rows reads U at memory speed: with 16 tiles (14x14 at batch 1) F(4x4) reads
  /// 9.4 MB of U where F(2x2) reads 4.2 MB for its 49 tiles.
  static let minimumTiles4 = 128
  static let minimumTiles4Kept = 48

  /// Fewest input channels per variant. Winograd's error is bounded by the transformed operands,
  /// nearly independent of Cin, where the direct sum's bound grows with K = 9·Cin: on operands
  /// spanning many orders of magnitude (normal times e^U(−5, 5)) F(4x4) measured 15.6, 7.0, 1.5
  /// and 0.88 K·u·Σ|x·w| at Cin 8, 16, 32 and 64, F(2x2) 3.1 and 0.52 at Cin 8 and 16; from
  /// these counts both stay within the direct sum's bound of 2 (IR-specs/codegen.md).
  static let minimumInputChannels2 = 16
  static let minimumInputChannels4 = 64

  static func tiles(_ g: ConvGeometry, n: Int, _ v: WinogradVariant = .f2) -> Int {
    n * ((g.oh + v.m - 1) / v.m) * ((g.ow + v.m - 1) / v.m)
  }

  /// The variant `forward` computes this f32 convolution with, if any.
  static func variant(_ g: ConvGeometry, n: Int, filterKept: Bool = false) -> WinogradVariant? {
    guard enabled && JitGemm.enabled && g.kh == 3 && g.kw == 3 && g.sh == 1 && g.sw == 1 && g.dh == 1 && g.dw == 1 && g.groups == 1
      && g.cin >= minimumInputChannels2 && g.cout >= 16 && g.cout <= JitGemm.sharedBlockColumns(k: g.cin) else { return nil }
    if mode == .all && g.cin >= minimumInputChannels4 && tiles(g, n: n, .f4) >= (filterKept ? minimumTiles4Kept : minimumTiles4) {
      return .f4
    }
    if tiles(g, n: n, .f2) >= (filterKept ? minimumTilesKept : minimumTiles) { return .f2 }
    return nil
  }

  /// Whether `forward` computes this f32 convolution.
  static func suits(_ g: ConvGeometry, n: Int, filterKept: Bool = false) -> Bool { variant(g, n: n, filterKept: filterKept) != nil }

  /// The fewest tiles of a chunk, so its GEMMs read the packed filter for enough rows.
  static func minimumChunk(_ v: WinogradVariant) -> Int { v.m == 2 ? 48 : 24 }

  /// Tiles per chunk: the chunk's V and M ((m+2)²·T·(Cin + Cout) floats) about 384 KiB, within
  /// L2, but at least `minimumChunk`; a multiple of the microkernel's 6 rows.
  static func chunkTiles(_ g: ConvGeometry, _ v: WinogradVariant = .f2) -> Int {
    let fit = (384 << 10) / (v.positions * (g.cin + g.cout) * 4)
    return min(96, max(minimumChunk(v), fit / 6 * 6))
  }

  /// Computes y, or returns false (computing nothing) when the transformed filter is not
  /// finite (an Inf or NaN in w, or values near f32's maximum): im2col then gives the direct
  /// sum's Inf, NaN or finite result where the transforms would make inf − inf = NaN. Output
  /// pixels that come out non-finite are recomputed on im2col (`redoNonFinitePixels`) for the
  /// same reason (Inf or NaN in x, or an overflow inside the transforms).
  static func forward(_ g: ConvGeometry, n: Int, x: UnsafePointer<Float>, w: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>,
                      pool: ThreadPool, variant v: WinogradVariant = .f2, filterCache: FilterCacheKey? = nil) -> Bool {
    guard let routines = JitGemm.routines else { return false }
    let panelFloats = JitGemm.panelFloats(k: g.cin, n: g.cout)
    if let filterCache {
      let form: ConvFilterCache.Form = v.m == 2 ? .winograd2 : .winograd4
      guard let kept = filterCache.cache.packed(form, generation: filterCache.generation, floats: v.positions * panelFloats, make: { packed in
        let scratch = ConvKernels.Scratch.take(bytes: v.positions * g.cin * g.cout * 4)
        defer { ConvKernels.Scratch.give(scratch) }
        return transformAndPack(w, cin: g.cin, cout: g.cout, v, scratch: scratch.pointer.assumingMemoryBound(to: Float.self), into: packed,
                                routines: routines, pool: pool)
      }) else { return forward(g, n: n, x: x, w: w, y: y, pool: pool, variant: v) }
      guard kept.usable else { return false }
      return withExtendedLifetime(kept) { multiplyTiles(g, n: n, v, x: x, w: w, packed: kept.pointer, y: y, routines: routines, pool: pool) }
    }
    let filter = ConvKernels.Scratch.take(bytes: v.positions * (panelFloats + g.cin * g.cout) * 4)
    defer { ConvKernels.Scratch.give(filter) }
    let packed = filter.pointer.assumingMemoryBound(to: Float.self)
    guard transformAndPack(w, cin: g.cin, cout: g.cout, v, scratch: packed + v.positions * panelFloats, into: packed, routines: routines,
                           pool: pool)
    else { return false }
    return multiplyTiles(g, n: n, v, x: x, w: w, packed: packed, y: y, routines: routines, pool: pool)
  }

  /// U (`transformFilter`, into `scratch`: (m+2)²·Cin·Cout floats) packed as (m+2)² SharedPanels
  /// of JitGemm's panels, one per position ξν, `panelFloats(k: cin, n: cout)` floats apart.
  /// Returns whether U is finite.
  static func transformAndPack(_ w: UnsafePointer<Float>, cin: Int, cout: Int, _ v: WinogradVariant,
                               scratch transformed: UnsafeMutablePointer<Float>, into packed: UnsafeMutablePointer<Float>,
                               routines: GemmKernels.Entries, pool: ThreadPool) -> Bool {
    let finite = v.m == 2 ? transformFilter(w, cin: cin, cout: cout, into: transformed, pool: pool)
      : transformFilter4(w, cin: cin, cout: cout, into: transformed, pool: pool)
    guard finite else { return false }
    let columnPanels = (cout + JitGemm.nr - 1) / JitGemm.nr, panelFloats = JitGemm.panelFloats(k: cin, n: cout)
    let pa = UInt(bitPattern: packed), ta = UInt(bitPattern: transformed)
    pool.parallelFor(v.positions) { position in
      let packed = UnsafeMutablePointer<Float>(bitPattern: pa)!, transformed = UnsafeMutablePointer<Float>(bitPattern: ta)!
      let target = packed + position * panelFloats
      for pc in stride(from: 0, to: cin, by: JitGemm.kcBlock) {
        let kc = min(JitGemm.kcBlock, cin - pc)
        JitGemm.packB(routines.packers, transposed: false, b: UnsafeRawPointer(transformed + position * cin * cout), ldb: cout,
                      k0: pc, kc: kc, j0: 0, nc: cout, into: target + pc * columnPanels * JitGemm.nr)
      }
    }
    return true
  }

  /// The tiles' transforms and GEMMs against the packed U, and the im2col redo of any output pixel
  /// holding a non-finite value.
  static func multiplyTiles(_ g: ConvGeometry, n: Int, _ v: WinogradVariant, x: UnsafePointer<Float>, w: UnsafePointer<Float>,
                            packed: UnsafeMutablePointer<Float>, y: UnsafeMutablePointer<Float>, routines: GemmKernels.Entries,
                            pool: ThreadPool) -> Bool {
    let cin = g.cin, cout = g.cout, positions = v.positions
    let columnPanels = (cout + JitGemm.nr - 1) / JitGemm.nr
    let panelFloats = JitGemm.panelFloats(k: cin, n: cout)
    let pa = UInt(bitPattern: packed)
    let tileRows = (g.oh + v.m - 1) / v.m, tileColumns = (g.ow + v.m - 1) / v.m
    // Chunks of about `chunkTiles`, as many as a multiple of the threads where whole panels of
    // 6 tiles allow, so each thread gets an equal share (196 tiles: six chunks of 36, not five
    // of 48 split three against two).
    let total = n * tileRows * tileColumns, threads = max(pool.threadCount, 1)
    let wanted = ((total + chunkTiles(g, v) - 1) / chunkTiles(g, v) + threads - 1) / threads * threads
    let per = ((total + wanted - 1) / wanted + JitGemm.mr - 1) / JitGemm.mr * JitGemm.mr
    let chunks = (total + per - 1) / per
    let xa = UInt(bitPattern: x), ya = UInt(bitPattern: y)
    // Fewer tiles than two minimum chunks per thread: chunks would leave a thread idle for a
    // large share of the time (49 F(4x4) tiles: three chunks on two threads).
    let fewTiles = threads > 1 && total < 2 * threads * minimumChunk(v) && positions * total * (cin + cout) * 4 <= fewTilesBytes
    // The tile ranges whose outputs are checked (and redone if not finite) together.
    let parts = fewTiles ? threads : chunks
    func tileRange(_ part: Int) -> Range<Int> {
      fewTiles ? (total * part / threads)..<(total * (part + 1) / threads) : (part * per)..<min(total, part * per + per)
    }
    let flags = ConvKernels.Scratch.take(bytes: parts)
    defer { ConvKernels.Scratch.give(flags) }
    flags.pointer.initializeMemory(as: UInt8.self, repeating: 0, count: parts)
    let fa = UInt(bitPattern: flags.pointer)
    if fewTiles {
      // Few tiles (a deep layer at batch 1: 49 or 16): every tile's V at once, then the
      // GEMMs' column panels shared out over the threads, so U is read once in all rather
      // than once per chunk; then the output transform. Three pool jobs.
      let scratch = ConvKernels.Scratch.take(bytes: positions * total * (cin + cout) * 4)
      defer { ConvKernels.Scratch.give(scratch) }
      let va = UInt(bitPattern: scratch.pointer), ma = va + UInt(positions * total * cin * 4)
      pool.parallelFor(threads) { part in
        let tiles = tileRange(part)
        guard !tiles.isEmpty else { return }
        transformInput(g, v, x: UnsafePointer<Float>(bitPattern: xa)!, firstTile: tiles.lowerBound, count: tiles.count, tileRows: tileRows,
                       tileColumns: tileColumns, stride: total, into: UnsafeMutablePointer<Float>(bitPattern: va)! + tiles.lowerBound * cin)
      }
      let work = positions * columnPanels, rowTiles = (total + JitGemm.mr - 1) / JitGemm.mr * columnPanels
      pool.parallelFor(threads) { part in
        let workspace = JitGemm.Workspace.take()
        defer { JitGemm.Workspace.give(workspace) }
        var item = work * part / threads
        let last = work * (part + 1) / threads
        while item < last {
          let position = item / columnPanels, first = item - position * columnPanels
          let end = min(columnPanels, first + last - item)
          let panels = JitGemm.SharedPanels(pointer: UnsafeMutablePointer<Float>(bitPattern: pa)! + position * panelFloats, k: cin, jc: 0, nc: cout)
          JitGemm.multiply(tiles: 0..<rowTiles, m: total, panels: panels, routines: routines, packers: routines.packers, transposeA: false,
                           a: UnsafeRawPointer(bitPattern: va + UInt(position * total * cin * 4))!, lda: cin,
                           c: UnsafeMutablePointer<Float>(bitPattern: ma)! + position * total * cout, ldc: cout, workspace: workspace,
                           panelRange: first..<end)
          item += end - first
        }
      }
      pool.parallelFor(threads) { part in
        let tiles = tileRange(part)
        guard !tiles.isEmpty else { return }
        let finite = transformOutput(g, v, m: UnsafePointer<Float>(bitPattern: ma)! + tiles.lowerBound * cout, firstTile: tiles.lowerBound,
                                     count: tiles.count, tileRows: tileRows, tileColumns: tileColumns, stride: total,
                                     into: UnsafeMutablePointer<Float>(bitPattern: ya)!)
        UnsafeMutablePointer<UInt8>(bitPattern: fa)![part] = finite ? 0 : 1
      }
    } else {
      pool.parallelFor(chunks) { chunk in
        let x = UnsafePointer<Float>(bitPattern: xa)!, y = UnsafeMutablePointer<Float>(bitPattern: ya)!
        let packed = UnsafeMutablePointer<Float>(bitPattern: pa)!
        let t0 = chunk * per, count = min(per, total - t0)
        let scratch = ConvKernels.Scratch.take(bytes: positions * per * (cin + cout) * 4)
        defer { ConvKernels.Scratch.give(scratch) }
        let vs = scratch.pointer.assumingMemoryBound(to: Float.self), m = vs + positions * per * cin
        transformInput(g, v, x: x, firstTile: t0, count: count, tileRows: tileRows, tileColumns: tileColumns, stride: per, into: vs)
        let workspace = JitGemm.Workspace.take()
        for position in 0..<positions {
          let panels = JitGemm.SharedPanels(pointer: packed + position * panelFloats, k: cin, jc: 0, nc: cout)
          JitGemm.multiply(tiles: 0..<((count + JitGemm.mr - 1) / JitGemm.mr * columnPanels), m: count, panels: panels,
                           routines: routines, packers: routines.packers, transposeA: false,
                           a: UnsafeRawPointer(vs + position * per * cin), lda: cin,
                           c: m + position * per * cout, ldc: cout, workspace: workspace)
        }
        JitGemm.Workspace.give(workspace)
        let finite = transformOutput(g, v, m: m, firstTile: t0, count: count, tileRows: tileRows, tileColumns: tileColumns, stride: per, into: y)
        UnsafeMutablePointer<UInt8>(bitPattern: fa)![chunk] = finite ? 0 : 1
      }
    }
    let flagged = flags.pointer.assumingMemoryBound(to: UInt8.self)
    if (0..<parts).contains(where: { flagged[$0] != 0 }) { redoNonFinitePixels(g, n: n, x: x, w: w, y: y, pool: pool) }
    return true
  }

  /// Recomputes on im2col every output pixel (all its channels) holding a non-finite value, in
  /// runs of consecutive such pixels. Which pixels are redone depends only on the Winograd
  /// results, never on the chunks or the thread count, so neither changes any output's bits.
  /// An output whose window meets a non-finite input is non-finite under Winograd too (the input
  /// reaches it through a nonzero transform coefficient), so every output the direct sum makes
  /// non-finite is among those redone; the others are finite Winograd outputs, or outputs that
  /// share a tile with a non-finite input or overflowed in the transforms.
  static func redoNonFinitePixels(_ g: ConvGeometry, n: Int, x: UnsafePointer<Float>, w: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>,
                                  pool: ThreadPool) {
    let pixels = n * g.oh * g.ow
    var pixel = 0
    while pixel < pixels {
      guard !allFinite(y + pixel * g.cout, count: g.cout) else { pixel += 1; continue }
      var end = pixel + 1
      while end < pixels && !allFinite(y + end * g.cout, count: g.cout) { end += 1 }
      redoDirect(g, x: x, w: w, y: y, rows: pixel, end, pool: pool)
      pixel = end
    }
  }

  /// Most bytes of V and M for the few-tiles schedule of `multiplyTiles` (all tiles at once).
  static let fewTilesBytes = 8 << 20

  /// y's output rows r0 ..< r1 (flat over n, oh, ow) by im2col and ttfc's GEMM, as ConvKernels'
  /// general path computes them, in chunks over the pool.
  static func redoDirect(_ g: ConvGeometry, x: UnsafePointer<Float>, w: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>,
                         rows r0: Int, _ r1: Int, pool: ThreadPool) {
    let per = ConvKernels.chunkRows(g, Float.self)
    let chunks = (r1 - r0 + per - 1) / per
    let xa = UInt(bitPattern: x), wa = UInt(bitPattern: w), ya = UInt(bitPattern: y)
    pool.parallelFor(chunks) { chunk in
      let a = r0 + chunk * per, b = min(r1, a + per)
      let scratch = ConvKernels.Scratch.take(bytes: per * g.depth * 4)
      defer { ConvKernels.Scratch.give(scratch) }
      let cols = scratch.pointer.assumingMemoryBound(to: Float.self)
      ConvKernels.im2col(g, x: UnsafePointer<Float>(bitPattern: xa)!, rows: a, b, group: 0, into: cols)
      ConvKernels.gemm(transposeA: false, transposeB: false, m: b - a, n: g.cout, k: g.depth, a: cols, lda: g.depth,
                       b: UnsafePointer<Float>(bitPattern: wa)!, ldb: g.cout, c: UnsafeMutablePointer<Float>(bitPattern: ya)! + a * g.cout,
                       ldc: g.cout)
    }
  }

  /// U[ξ·4 + ν][ci, co] = (G g Gᵀ)[ξ, ν] for the HWIO filter g[kh, kw, ci, co], G the rows
  /// (1, 0, 0), (½, ½, ½), (½, −½, ½), (0, 0, 1); vectors over co, jobs over ci.
  /// Returns whether every transformed value is finite.
  static func transformFilter(_ w: UnsafePointer<Float>, cin: Int, cout: Int, into u: UnsafeMutablePointer<Float>, pool: ThreadPool) -> Bool {
    let wa = UInt(bitPattern: w), ua = UInt(bitPattern: u)
    let jobs = min(cin, pool.threadCount * 4)
    pool.parallelFor(jobs) { job in
      let w = UnsafePointer<Float>(bitPattern: wa)!, u = UnsafeMutablePointer<Float>(bitPattern: ua)!
      for ci in (cin * job / jobs)..<(cin * (job + 1) / jobs) {
        var co = 0
        @inline(__always) func columns<V: WinogradVector>(_: V.Type) {
          @inline(__always) func tap(_ k: Int) -> V { V.load(w + (k * cin + ci) * cout + co) }
          let half = V(0.5)
          // Rows of G g (4 x 3): a0 = g row 0, a1 = (g0 + g1 + g2)/2, a2 = (g0 - g1 + g2)/2, a3 = g row 2.
          let g00 = tap(0), g01 = tap(1), g02 = tap(2), g10 = tap(3), g11 = tap(4), g12 = tap(5), g20 = tap(6), g21 = tap(7), g22 = tap(8)
          let a10 = (g00 + g10 + g20) * half, a11 = (g01 + g11 + g21) * half, a12 = (g02 + g12 + g22) * half
          let a20 = (g00 - g10 + g20) * half, a21 = (g01 - g11 + g21) * half, a22 = (g02 - g12 + g22) * half
          // Each row times Gᵀ: (r0, (r0 + r1 + r2)/2, (r0 - r1 + r2)/2, r2).
          @inline(__always) func row(_ r: Int, _ c0: V, _ c1: V, _ c2: V) {
            c0.store(u + ((r * 4) * cin + ci) * cout + co)
            ((c0 + c1 + c2) * half).store(u + ((r * 4 + 1) * cin + ci) * cout + co)
            ((c0 - c1 + c2) * half).store(u + ((r * 4 + 2) * cin + ci) * cout + co)
            c2.store(u + ((r * 4 + 3) * cin + ci) * cout + co)
          }
          row(0, g00, g01, g02); row(1, a10, a11, a12); row(2, a20, a21, a22); row(3, g20, g21, g22)
        }
        while co + 8 <= cout { columns(SIMD8<Float>.self); co += 8 }
        while co < cout { columns(Float.self); co += 1 }
      }
    }
    return allFinite(u, count: 16 * cin * cout)
  }

  /// Whether `count` floats from `p` are all finite (0 · v is NaN exactly for an Inf or NaN v).
  static func allFinite(_ p: UnsafePointer<Float>, count: Int) -> Bool {
    var probe = SIMD8<Float>(repeating: 0)
    var i = 0
    while i + 8 <= count { probe += SIMD8<Float>.load(p + i) * SIMD8<Float>(repeating: 0); i += 8 }
    var rest: Float = 0
    while i < count { rest += p[i] * 0; i += 1 }
    return (probe.sum() + rest).isFinite
  }

  /// Tile `tile`'s image and the output row and column of its top-left corner: tiles cover m x m
  /// outputs and are numbered image by image, row by row.
  @inline(__always)
  static func tileOrigin(_ tile: Int, m: Int, tileRows: Int, tileColumns: Int) -> (image: Int, row: Int, column: Int) {
    let perImage = tileRows * tileColumns
    let image = tile / perImage, rest = tile - image * perImage
    let tileRow = rest / tileColumns
    return (image, m * tileRow, m * (rest - tileRow * tileColumns))
  }

  /// V[ξ·4 + ν][t, ci] = (Bᵀ d B)[ξ, ν] for tile t's 4x4 input patch d (zero off the image), Bᵀ
  /// the rows (1, 0, −1, 0), (0, 1, 1, 0), (0, −1, 1, 0), (0, 1, 0, −1); t local to the chunk,
  /// `stride` tiles per position.
  static func transformInput2(_ g: ConvGeometry, x: UnsafePointer<Float>, firstTile: Int, count: Int, tileRows: Int, tileColumns: Int,
                             stride: Int, into v: UnsafeMutablePointer<Float>) {
    let cin = g.cin
    let positionStride = stride * cin
    for t in 0..<count {
      let tile = firstTile + t
      let (image, oy, ox) = tileOrigin(tile, m: 2, tileRows: tileRows, tileColumns: tileColumns)
      let y0 = oy - g.top, x0 = ox - g.left
      let base = x + image * g.h * g.w * cin
      // Offsets of the patch's 16 pixels (-1: padding).
      var offsets = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
      withUnsafeMutableBytes(of: &offsets) { raw in
        let o = raw.bindMemory(to: Int.self)
        for r in 0..<4 {
          for c in 0..<4 {
            let yy = y0 + r, xx = x0 + c
            o[r * 4 + c] = yy >= 0 && yy < g.h && xx >= 0 && xx < g.w ? (yy * g.w + xx) * cin : -1
          }
        }
      }
      let out = v + t * cin
      withUnsafeBytes(of: &offsets) { raw in
        let o = raw.bindMemory(to: Int.self)
        var ci = 0
        @inline(__always) func channels<V: WinogradVector>(_: V.Type) {
          @inline(__always) func d(_ k: Int) -> V { o[k] >= 0 ? V.load(base + o[k] + ci) : V(0) }
          // Bᵀ d along the rows: e0 = d0 - d2, e1 = d1 + d2, e2 = d2 - d1, e3 = d1 - d3 (rows of 4).
          // Then each row e_r times B: (e0 - e2, e1 + e2, e2 - e1, e1 - e3).
          @inline(__always) func row(_ r: Int, _ e0: V, _ e1: V, _ e2: V, _ e3: V) {
            (e0 - e2).store(out + (r * 4) * positionStride + ci)
            (e1 + e2).store(out + (r * 4 + 1) * positionStride + ci)
            (e2 - e1).store(out + (r * 4 + 2) * positionStride + ci)
            (e1 - e3).store(out + (r * 4 + 3) * positionStride + ci)
          }
          let d00 = d(0), d01 = d(1), d02 = d(2), d03 = d(3), d10 = d(4), d11 = d(5), d12 = d(6), d13 = d(7)
          let d20 = d(8), d21 = d(9), d22 = d(10), d23 = d(11), d30 = d(12), d31 = d(13), d32 = d(14), d33 = d(15)
          row(0, d00 - d20, d01 - d21, d02 - d22, d03 - d23)
          row(1, d10 + d20, d11 + d21, d12 + d22, d13 + d23)
          row(2, d20 - d10, d21 - d11, d22 - d12, d23 - d13)
          row(3, d10 - d30, d11 - d31, d12 - d32, d13 - d33)
        }
        while ci + 8 <= cin { channels(SIMD8<Float>.self); ci += 8 }
        while ci < cin { channels(Float.self); ci += 1 }
      }
    }
  }

  /// y's 2x2 block of tile t = Aᵀ M_t A, Aᵀ the rows (1, 1, 1, 0), (0, 1, −1, −1); outputs past
  /// the image's last row or column are not written.
  /// Returns whether every output written is finite.
  static func transformOutput2(_ g: ConvGeometry, m: UnsafePointer<Float>, firstTile: Int, count: Int, tileRows: Int, tileColumns: Int,
                              stride: Int, into y: UnsafeMutablePointer<Float>) -> Bool {
    let cout = g.cout
    var probe = SIMD8<Float>(repeating: 0)
    var probeScalar: Float = 0
    let positionStride = stride * cout
    for t in 0..<count {
      let tile = firstTile + t
      let (image, oy, ox) = tileOrigin(tile, m: 2, tileRows: tileRows, tileColumns: tileColumns)
      let rows = min(2, g.oh - oy), cols = min(2, g.ow - ox)
      let source = m + t * cout
      let target = y + ((image * g.oh + oy) * g.ow + ox) * cout
      var co = 0
      @inline(__always) func channels<V: WinogradVector>(_: V.Type) {
        @inline(__always) func mv(_ k: Int) -> V { V.load(source + k * positionStride + co) }
        // Aᵀ M along the rows: s0 = m0 + m1 + m2, s1 = m1 - m2 - m3 (rows of 4); then each
        // times A: (s0 + s1 + s2, s1 - s2 - s3).
        @inline(__always) func write(_ i: Int, _ s0: V, _ s1: V, _ s2: V, _ s3: V) {
          let left = s0 + s1 + s2, right = s1 - s2 - s3
          left.store(target + (i * g.ow) * cout + co)
          if cols == 2 { right.store(target + (i * g.ow + 1) * cout + co) }
          V.probe(left * V(0) + right * V(0), into: &probe, &probeScalar)
        }
        let m00 = mv(0), m01 = mv(1), m02 = mv(2), m03 = mv(3), m10 = mv(4), m11 = mv(5), m12 = mv(6), m13 = mv(7)
        let m20 = mv(8), m21 = mv(9), m22 = mv(10), m23 = mv(11), m30 = mv(12), m31 = mv(13), m32 = mv(14), m33 = mv(15)
        write(0, m00 + m10 + m20, m01 + m11 + m21, m02 + m12 + m22, m03 + m13 + m23)
        if rows == 2 { write(1, m10 - m20 - m30, m11 - m21 - m31, m12 - m22 - m32, m13 - m23 - m33) }
      }
      while co + 8 <= cout { channels(SIMD8<Float>.self); co += 8 }
      while co < cout { channels(Float.self); co += 1 }
    }
    return (probe.sum() + probeScalar).isFinite
  }
}

extension WinogradConv {
  // MARK: dispatch by variant

  static func transformInput(_ g: ConvGeometry, _ v: WinogradVariant, x: UnsafePointer<Float>, firstTile: Int, count: Int, tileRows: Int,
                             tileColumns: Int, stride: Int, into out: UnsafeMutablePointer<Float>) {
    if v.m == 2 {
      transformInput2(g, x: x, firstTile: firstTile, count: count, tileRows: tileRows, tileColumns: tileColumns, stride: stride, into: out)
    } else {
      transformInput4(g, x: x, firstTile: firstTile, count: count, tileRows: tileRows, tileColumns: tileColumns, stride: stride, into: out)
    }
  }

  static func transformOutput(_ g: ConvGeometry, _ v: WinogradVariant, m: UnsafePointer<Float>, firstTile: Int, count: Int, tileRows: Int,
                              tileColumns: Int, stride: Int, into y: UnsafeMutablePointer<Float>) -> Bool {
    v.m == 2
      ? transformOutput2(g, m: m, firstTile: firstTile, count: count, tileRows: tileRows, tileColumns: tileColumns, stride: stride, into: y)
      : transformOutput4(g, m: m, firstTile: firstTile, count: count, tileRows: tileRows, tileColumns: tileColumns, stride: stride, into: y)
  }

  // MARK: F(4x4, 3x3)
  //
  // Lavin & Gray's matrices for the points 0, ±1, ±2 and ∞, applied along one axis (a row or a
  // column of the patch) by the three functions below and then along the other:
  //   Bᵀ (6x6): (4, 0, −5, 0, 1, 0), (0, −4, −4, 1, 1, 0), (0, 4, −4, −1, 1, 0),
  //             (0, −2, −1, 2, 1, 0), (0, 2, −1, −2, 1, 0), (0, 4, 0, −5, 0, 1);
  //   G (6x3):  (¼, 0, 0), (−⅙, −⅙, −⅙), (−⅙, ⅙, −⅙), (1/24, 1/12, ⅙), (1/24, −1/12, ⅙), (0, 0, 1);
  //   Aᵀ (4x6): (1, 1, 1, 1, 1, 0), (0, 1, −1, 2, −2, 0), (0, 1, 1, 4, 4, 0), (0, 1, −1, 8, −8, 1).

  /// The six columns of a 6x6 patch (`element(row, column)`), each through the 1-D transform
  /// `axis`: the first half of F(4x4)'s two-sided input and output transforms.
  @inline(__always)
  static func eachColumn6<V, R>(_ element: (Int, Int) -> V, _ axis: ((V, V, V, V, V, V)) -> R) -> (R, R, R, R, R, R) {
    @inline(__always) func column(_ c: Int) -> R {
      axis((element(0, c), element(1, c), element(2, c), element(3, c), element(4, c), element(5, c)))
    }
    return (column(0), column(1), column(2), column(3), column(4), column(5))
  }

  /// Bᵀ x for six values along one axis of an input patch.
  @inline(__always)
  static func inputAxis4<V: WinogradVector>(_ x: (V, V, V, V, V, V)) -> (V, V, V, V, V, V) {
    let two = V(2), four = V(4), five = V(5)
    return (four * x.0 - five * x.2 + x.4,
            x.4 + x.3 - four * (x.1 + x.2),
            x.4 - x.3 + four * (x.1 - x.2),
            x.4 - x.2 + two * (x.3 - x.1),
            x.4 - x.2 - two * (x.3 - x.1),
            four * x.1 - five * x.3 + x.5)
  }

  /// Aᵀ m for six values along one axis of a product patch: the four outputs.
  @inline(__always)
  static func outputAxis4<V: WinogradVector>(_ m: (V, V, V, V, V, V)) -> (V, V, V, V) {
    let sum12 = m.1 + m.2, difference12 = m.1 - m.2, sum34 = m.3 + m.4, difference34 = m.3 - m.4
    return (m.0 + sum12 + sum34, difference12 + V(2) * difference34, sum12 + V(4) * sum34, difference12 + V(8) * difference34 + m.5)
  }

  /// G g for three taps along one axis of the filter: six values (divisions, not reciprocals, so
  /// each is the correctly rounded quotient of its sum).
  @inline(__always)
  static func filterAxis4<V: WinogradVector>(_ g: (V, V, V)) -> (V, V, V, V, V, V) {
    let outer = g.0 + g.2, twice = V(2) * g.1, quadruple = V(4) * g.2
    return (g.0 / V(4), (outer + g.1) / V(-6), (outer - g.1) / V(-6), (g.0 + twice + quadruple) / V(24), (g.0 - twice + quadruple) / V(24), g.2)
  }

  /// U[ξ·6 + ν][ci, co] = (G g Gᵀ)[ξ, ν] for the HWIO filter; vectors over co, jobs over ci.
  /// Returns whether every transformed value is finite.
  static func transformFilter4(_ w: UnsafePointer<Float>, cin: Int, cout: Int, into u: UnsafeMutablePointer<Float>, pool: ThreadPool) -> Bool {
    let wa = UInt(bitPattern: w), ua = UInt(bitPattern: u)
    let jobs = min(cin, pool.threadCount * 4)
    pool.parallelFor(jobs) { job in
      let w = UnsafePointer<Float>(bitPattern: wa)!, u = UnsafeMutablePointer<Float>(bitPattern: ua)!
      for ci in (cin * job / jobs)..<(cin * (job + 1) / jobs) {
        var co = 0
        @inline(__always) func columns<V: WinogradVector>(_: V.Type) {
          @inline(__always) func tap(_ kh: Int, _ kw: Int) -> V { V.load(w + ((kh * 3 + kw) * cin + ci) * cout + co) }
          // G g: each of the three filter columns along the rows.
          let c0 = filterAxis4((tap(0, 0), tap(1, 0), tap(2, 0)))
          let c1 = filterAxis4((tap(0, 1), tap(1, 1), tap(2, 1)))
          let c2 = filterAxis4((tap(0, 2), tap(1, 2), tap(2, 2)))
          // Then each of the six rows times Gᵀ.
          @inline(__always) func row(_ r: Int, _ a: V, _ b: V, _ c: V) {
            let t = filterAxis4((a, b, c))
            @inline(__always) func put(_ k: Int, _ value: V) { value.store(u + ((r * 6 + k) * cin + ci) * cout + co) }
            put(0, t.0); put(1, t.1); put(2, t.2); put(3, t.3); put(4, t.4); put(5, t.5)
          }
          row(0, c0.0, c1.0, c2.0); row(1, c0.1, c1.1, c2.1); row(2, c0.2, c1.2, c2.2)
          row(3, c0.3, c1.3, c2.3); row(4, c0.4, c1.4, c2.4); row(5, c0.5, c1.5, c2.5)
        }
        while co + 8 <= cout { columns(SIMD8<Float>.self); co += 8 }
        while co < cout { columns(Float.self); co += 1 }
      }
    }
    return allFinite(u, count: 36 * cin * cout)
  }

  /// V[ξ·6 + ν][t, ci] = (Bᵀ d B)[ξ, ν] for tile t's 6x6 input patch d (zero off the image); t
  /// local to the chunk, `stride` tiles per position.
  static func transformInput4(_ g: ConvGeometry, x: UnsafePointer<Float>, firstTile: Int, count: Int, tileRows: Int, tileColumns: Int,
                              stride: Int, into v: UnsafeMutablePointer<Float>) {
    let cin = g.cin, positionStride = stride * cin
    withUnsafeTemporaryAllocation(of: Int.self, capacity: 36) { offsets in
      for t in 0..<count {
        let tile = firstTile + t
        let (image, oy, ox) = tileOrigin(tile, m: 4, tileRows: tileRows, tileColumns: tileColumns)
        let y0 = oy - g.top, x0 = ox - g.left
        let base = x + image * g.h * g.w * cin
        // Offsets of the patch's 36 pixels (-1: padding).
        for r in 0..<6 {
          for c in 0..<6 {
            let yy = y0 + r, xx = x0 + c
            offsets[r * 6 + c] = yy >= 0 && yy < g.h && xx >= 0 && xx < g.w ? (yy * g.w + xx) * cin : -1
          }
        }
        let out = v + t * cin
        var ci = 0
        @inline(__always) func channels<V: WinogradVector>(_: V.Type) {
          @inline(__always) func d(_ r: Int, _ c: Int) -> V { let o = offsets[r * 6 + c]; return o >= 0 ? V.load(base + o + ci) : V(0) }
          // Bᵀ d: each of the six patch columns along the rows.
          let (c0, c1, c2, c3, c4, c5) = eachColumn6(d, inputAxis4)
          // Then each of the six rows times B.
          @inline(__always) func row(_ r: Int, _ e: (V, V, V, V, V, V)) {
            let t = inputAxis4(e)
            @inline(__always) func put(_ k: Int, _ value: V) { value.store(out + (r * 6 + k) * positionStride + ci) }
            put(0, t.0); put(1, t.1); put(2, t.2); put(3, t.3); put(4, t.4); put(5, t.5)
          }
          row(0, (c0.0, c1.0, c2.0, c3.0, c4.0, c5.0)); row(1, (c0.1, c1.1, c2.1, c3.1, c4.1, c5.1))
          row(2, (c0.2, c1.2, c2.2, c3.2, c4.2, c5.2)); row(3, (c0.3, c1.3, c2.3, c3.3, c4.3, c5.3))
          row(4, (c0.4, c1.4, c2.4, c3.4, c4.4, c5.4)); row(5, (c0.5, c1.5, c2.5, c3.5, c4.5, c5.5))
        }
        while ci + 8 <= cin { channels(SIMD8<Float>.self); ci += 8 }
        while ci < cin { channels(Float.self); ci += 1 }
      }
    }
  }

  /// y's 4x4 block of tile t = Aᵀ M_t A; outputs past the image's last row or column are not
  /// written. Returns whether every output written is finite.
  static func transformOutput4(_ g: ConvGeometry, m: UnsafePointer<Float>, firstTile: Int, count: Int, tileRows: Int, tileColumns: Int,
                               stride: Int, into y: UnsafeMutablePointer<Float>) -> Bool {
    let cout = g.cout, positionStride = stride * cout
    var probe = SIMD8<Float>(repeating: 0)
    var probeScalar: Float = 0
    for t in 0..<count {
      let tile = firstTile + t
      let (image, oy, ox) = tileOrigin(tile, m: 4, tileRows: tileRows, tileColumns: tileColumns)
      let rows = min(4, g.oh - oy), cols = min(4, g.ow - ox)
      let source = m + t * cout
      let target = y + ((image * g.oh + oy) * g.ow + ox) * cout
      var co = 0
      @inline(__always) func channels<V: WinogradVector>(_: V.Type) {
        @inline(__always) func mv(_ r: Int, _ c: Int) -> V { V.load(source + (r * 6 + c) * positionStride + co) }
        // Aᵀ M: each of the six columns along the rows (four values each).
        let (c0, c1, c2, c3, c4, c5) = eachColumn6(mv, outputAxis4)
        // Then each output row times A.
        @inline(__always) func write(_ i: Int, _ s: (V, V, V, V, V, V)) {
          let o = outputAxis4(s)
          let row = target + (i * g.ow) * cout + co
          o.0.store(row)
          if cols > 1 { o.1.store(row + cout) }
          if cols > 2 { o.2.store(row + 2 * cout) }
          if cols > 3 { o.3.store(row + 3 * cout) }
          V.probe(o.0 * V(0) + o.1 * V(0) + o.2 * V(0) + o.3 * V(0), into: &probe, &probeScalar)
        }
        write(0, (c0.0, c1.0, c2.0, c3.0, c4.0, c5.0))
        if rows > 1 { write(1, (c0.1, c1.1, c2.1, c3.1, c4.1, c5.1)) }
        if rows > 2 { write(2, (c0.2, c1.2, c2.2, c3.2, c4.2, c5.2)) }
        if rows > 3 { write(3, (c0.3, c1.3, c2.3, c3.3, c4.3, c5.3)) }
      }
      while co + 8 <= cout { channels(SIMD8<Float>.self); co += 8 }
      while co < cout { channels(Float.self); co += 1 }
    }
    return (probe.sum() + probeScalar).isFinite
  }
}

/// Eight channels at once, or one (the remainder): the transforms' arithmetic, written once.
protocol WinogradVector {
  init(_ value: Float)
  static func load(_ p: UnsafePointer<Float>) -> Self
  func store(_ p: UnsafeMutablePointer<Float>)
  static func + (a: Self, b: Self) -> Self
  static func - (a: Self, b: Self) -> Self
  static func * (a: Self, b: Self) -> Self
  static func / (a: Self, b: Self) -> Self
  /// Adds `value` (0 or NaN per lane) into the vector or scalar probe.
  static func probe(_ value: Self, into vector: inout SIMD8<Float>, _ scalar: inout Float)
}

extension SIMD8: WinogradVector where Scalar == Float {
  init(_ value: Float) { self.init(repeating: value) }
  @inline(__always) static func load(_ p: UnsafePointer<Float>) -> Self { UnsafeRawPointer(p).loadUnaligned(as: Self.self) }
  @inline(__always) func store(_ p: UnsafeMutablePointer<Float>) { UnsafeMutableRawPointer(p).storeBytes(of: self, as: Self.self) }
  @inline(__always) static func probe(_ value: Self, into vector: inout SIMD8<Float>, _ scalar: inout Float) { vector += value }
}

extension Float: WinogradVector {
  @inline(__always) static func load(_ p: UnsafePointer<Float>) -> Float { p.pointee }
  @inline(__always) func store(_ p: UnsafeMutablePointer<Float>) { p.pointee = self }
  @inline(__always) static func probe(_ value: Self, into vector: inout SIMD8<Float>, _ scalar: inout Float) { scalar += value }
}
