// ReductionSweepRunner — runs a kernel that reduces over leading axes row by row
// (ReductionSweep.leadingRows: a bias gradient, batch norm's per-channel statistics over N, H and
// W). The reduced rows are cut into `chunks` contiguous ranges, the pool's jobs; chunk 0
// accumulates into the output itself and every other chunk into a partial output row of its own
// (each already finished: a mean divided by the whole count). The partials are then added (or
// max/min-ed, NaN-propagating, -0.0 below +0.0) into the output in chunk order, so the result
// depends on the chunk count (the thread count), never on timing.

import Glibc
import TTCodegen
import TTIR

enum ReductionSweepRunner {
  static func run(entry: KernelEntry, buffers: [UnsafeMutableRawPointer?], outputIndex: Int, outputCount: Int, dtype: DType,
                  symbols: [Int64], rows: Int, chunks: Int, combine: SweepCombine, pool: ThreadPool) {
    symbols.withUnsafeBufferPointer { syms in
      let s = syms.baseAddress ?? UnsafePointer(bitPattern: 8)!
      if chunks <= 1 || outputCount == 0 {
        var own = buffers
        own.withUnsafeMutableBufferPointer { entry($0.baseAddress!, s, 0, Int64(rows)) }
        return
      }
      let rowBytes = outputCount * dtype.byteSize
      // One allocation: the partial rows of chunks 1..<chunks (64-byte aligned), then each
      // chunk's copy of the buffer table with its own output pointer.
      let stride = (rowBytes + 63) & ~63
      guard let partials = aligned(stride * (chunks - 1)) else {
        // No memory for partials: one chunk, still correct.
        var own = buffers
        own.withUnsafeMutableBufferPointer { entry($0.baseAddress!, s, 0, Int64(rows)) }
        return
      }
      defer { free(partials) }
      let tables = UnsafeMutablePointer<UnsafeMutableRawPointer?>.allocate(capacity: buffers.count * chunks)
      defer { tables.deallocate() }
      for c in 0..<chunks {
        for (k, b) in buffers.enumerated() { (tables + c * buffers.count + k).initialize(to: b) }
        if c > 0 { tables[c * buffers.count + outputIndex] = partials + (c - 1) * stride }
      }
      let tableAddress = UInt(bitPattern: tables), symbolAddress = UInt(bitPattern: s), width = buffers.count
      pool.parallelFor(chunks) { c in
        let lo = rows * c / chunks, hi = rows * (c + 1) / chunks
        entry(UnsafeMutablePointer(bitPattern: tableAddress)! + c * width, UnsafePointer(bitPattern: symbolAddress)!, Int64(lo), Int64(hi))
      }
      let output = buffers[outputIndex]!
      for c in 1..<chunks {
        let partial = UnsafeRawPointer(partials + (c - 1) * stride)
        if dtype == .f64 {
          merge(output.assumingMemoryBound(to: Double.self), partial.assumingMemoryBound(to: Double.self), outputCount, combine)
        } else {
          merge(output.assumingMemoryBound(to: Float.self), partial.assumingMemoryBound(to: Float.self), outputCount, combine)
        }
      }
    }
  }

  static func aligned(_ bytes: Int) -> UnsafeMutableRawPointer? {
    var p: UnsafeMutableRawPointer? = nil
    return posix_memalign(&p, 64, max(bytes, 64)) == 0 ? p : nil
  }

  @inline(__always)
  static func merge<T: BinaryFloatingPoint>(_ into: UnsafeMutablePointer<T>, _ partial: UnsafePointer<T>, _ count: Int, _ combine: SweepCombine) {
    switch combine {
    case .sum:
      for i in 0..<count { into[i] += partial[i] }
    case .maximum:
      for i in 0..<count { into[i] = ieee(into[i], partial[i], maximum: true) }
    case .minimum:
      for i in 0..<count { into[i] = ieee(into[i], partial[i], maximum: false) }
    }
  }

  /// IEEE 754-2019 maximum/minimum, as the kernels' `llvm.maximum`/`llvm.minimum`: NaN if either
  /// is NaN, and -0.0 orders below +0.0.
  @inline(__always)
  static func ieee<T: BinaryFloatingPoint>(_ a: T, _ b: T, maximum: Bool) -> T {
    if a.isNaN { return a }
    if b.isNaN { return b }
    if a == b { return (a.sign == .minus) == maximum ? b : a }
    return (a > b) == maximum ? a : b
  }
}
