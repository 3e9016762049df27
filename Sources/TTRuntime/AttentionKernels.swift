// AttentionKernels — the `attention` and `attention_grad` routines (IR-specs/ops/nn.md): scaled
// dot-product attention tile by tile, never holding more than one [64, 64] tile of scores.
//
// Forward, per (batch·head, block of 64 query rows): for each block of 64 keys, S = Q Kᵀ (a
// single-threaded BLAS call), scale and mask it, and fold it into the running row maximum m, sum
// l and output accumulator with the online-softmax rescaling (acc ← acc·e^(m_old − m_new) +
// P V); at the end o = acc / l and lse = m + log l. Backward, per batch·head: D = rowsum(dO ∘ O),
// then for each key block and each query block the probabilities are recomputed from lse
// (P = exp(S − lse)), and dV += Pdᵀ dO, dS = P ∘ (dPd∘keep − D)·scale, dQ += dS K, dK += dSᵀ Q.
// Dropout's mask is regenerated per element from the counter-based generator, indexed like the
// dropout op on the [..., Tq, Tk] probabilities, so the fused and unfused graphs drop the same
// elements. f32 and f64; row sums in Double.

import COpenBLAS
import Foundation

/// The sizes of one attention op as bound at run time, and where the mask reads.
public struct AttentionGeometry: Sendable {
  public let batch: Int, tq: Int, tk: Int, d: Int, dv: Int
  let maskBase: [Int], maskRowStride: Int, maskColumnStride: Int

  /// From the shapes of q [..., Tq, D], k [..., Tk, D], v [..., Tk, Dv] and the mask (q's rank,
  /// each axis 1 or the scores').
  public init(q: [Int], k: [Int], v: [Int], mask: [Int]) {
    let rank = q.count
    batch = q.dropLast(2).reduce(1, *)
    (tq, d, tk, dv) = (q[rank - 2], q[rank - 1], k[rank - 2], v[rank - 1])
    var strides = [Int](repeating: 0, count: rank)
    var running = 1
    for a in stride(from: rank - 1, through: 0, by: -1) {
      strides[a] = mask[a] == 1 ? 0 : running
      running *= mask[a]
    }
    (maskRowStride, maskColumnStride) = (strides[rank - 2], strides[rank - 1])
    let batchDims = Array(q.dropLast(2))
    maskBase = (0..<batch).map { n in
      var rest = n, offset = 0
      for a in stride(from: batchDims.count - 1, through: 0, by: -1) {
        offset += (rest % batchDims[a]) * strides[a]
        rest /= batchDims[a]
      }
      return offset
    }
  }
}

/// The dropout of an attention op: rate, the step's key, and the kept-element threshold.
public struct AttentionDropout: Sendable {
  let rate: Double, key: UInt64, threshold: UInt64, factor: Double
  public init(rate: Double, key: UInt64) {
    (self.rate, self.key) = (rate, key)
    threshold = UInt64((rate * 0x1.0p53).rounded(.up))
    factor = 1 / (1 - rate)
  }
  /// 1/(1 − rate) if score element `index` is kept, else 0 (1 without dropout).
  @inline(__always) func keep(_ index: Int) -> Double {
    guard rate > 0 else { return 1 }
    return CounterBits.bits(key: key, index: index) >> 11 >= threshold ? factor : 0
  }
}

public enum AttentionKernels {
  /// Rows and keys per tile.
  static let block = 64

  /// row[c] = row[c]·scale + mask[c·stride] (stride 0: one mask value for the row).
  @inline(__always)
  static func scaleAndMask<T: RowElement>(_ row: UnsafeMutablePointer<T>, _ count: Int, _ scale: T, _ mask: UnsafePointer<T>, _ stride: Int) {
    if stride == 1 {
      for c in 0..<count { row[c] = row[c] * scale + mask[c] }
    } else {
      let m = mask[0]
      for c in 0..<count { row[c] = row[c] * scale + m }
    }
  }


  /// o [batch, Tq, Dv] and lse [batch, Tq] for q, k, v, mask (all of element type T).
  public static func forward<T: RowElement & BLASFloat>(_ g: AttentionGeometry, scale: Double, dropout: AttentionDropout,
                                                       q: UnsafePointer<T>, k: UnsafePointer<T>, v: UnsafePointer<T>,
                                                       mask: UnsafePointer<T>, o: UnsafeMutablePointer<T>, lse: UnsafeMutablePointer<T>,
                                                       pool: ThreadPool) {
    _ = ParallelGemm.configured
    let blocksPerHead = (g.tq + block - 1) / block
    let items = g.batch * blocksPerHead
    guard items > 0 else { return }
    let addresses = (UInt(bitPattern: q), UInt(bitPattern: k), UInt(bitPattern: v), UInt(bitPattern: mask),
                     UInt(bitPattern: o), UInt(bitPattern: lse))
    let parts = min(items, pool.threadCount > 1 && g.batch * g.tq * max(g.tk, 1) * g.d >= 1 << 14 ? pool.threadCount * 4 : 1)
    pool.parallelFor(parts) { part in
      let q = UnsafePointer<T>(bitPattern: addresses.0)!, k = UnsafePointer<T>(bitPattern: addresses.1)!
      let v = UnsafePointer<T>(bitPattern: addresses.2)!, mask = UnsafePointer<T>(bitPattern: addresses.3)!
      let o = UnsafeMutablePointer<T>(bitPattern: addresses.4)!, lse = UnsafeMutablePointer<T>(bitPattern: addresses.5)!
      let scores = UnsafeMutablePointer<T>.allocate(capacity: block * block)
      let product = UnsafeMutablePointer<T>.allocate(capacity: block * max(g.dv, 1))
      let accumulator = UnsafeMutablePointer<Double>.allocate(capacity: block * max(g.dv, 1))
      var rowMax = [Double](repeating: 0, count: block), rowSum = [Double](repeating: 0, count: block)
      defer { scores.deallocate(); product.deallocate(); accumulator.deallocate() }
      for item in (items * part / parts)..<(items * (part + 1) / parts) {
        let (n, i0) = (item / blocksPerHead, (item % blocksPerHead) * block)
        let rows = min(block, g.tq - i0)
        let qBlock = q + (n * g.tq + i0) * g.d
        accumulator.update(repeating: 0, count: rows * g.dv)
        for r in 0..<rows { rowMax[r] = -.infinity; rowSum[r] = 0 }
        var j0 = 0
        while j0 < g.tk {
          let keys = min(block, g.tk - j0)
          T.blasGemm(CblasNoTrans, CblasTrans, Int32(rows), Int32(keys), Int32(g.d), qBlock, Int32(max(g.d, 1)),
                     k + (n * g.tk + j0) * g.d, Int32(max(g.d, 1)), scores, Int32(max(keys, 1)))
          for r in 0..<rows {
            let i = i0 + r
            let row = scores + r * keys
            let maskRow = mask + g.maskBase[n] + i * g.maskRowStride + j0 * g.maskColumnStride
            scaleAndMask(row, keys, T(scale), maskRow, g.maskColumnStride)
            var blockMax = -T.infinity
            for c in 0..<keys { blockMax = Swift.max(blockMax, row[c]) }
            let newMax = Swift.max(rowMax[r], Double(blockMax))
            guard newMax > -.infinity else {
              // Every key so far is masked with −inf: nothing to add (and exp(−inf − (−inf))
              // would be NaN); the row's probabilities start at the first finite score.
              row.update(repeating: 0, count: keys)
              continue
            }
            let rescale = rowMax[r] == -.infinity ? 0 : Foundation.exp(rowMax[r] - newMax)
            let sum = T.exponentiateRow(row, keys, subtracting: T(newMax))
            if dropout.rate > 0 {
              let base = (n * g.tq + i) * g.tk + j0
              for c in 0..<keys { row[c] = T(Double(row[c]) * dropout.keep(base + c)) }
            }
            rowSum[r] = rowSum[r] * rescale + sum
            rowMax[r] = newMax
            if rescale != 1 {
              let acc = accumulator + r * g.dv
              for c in 0..<g.dv { acc[c] *= rescale }
            }
          }
          T.blasGemm(CblasNoTrans, CblasNoTrans, Int32(rows), Int32(g.dv), Int32(keys), scores, Int32(max(keys, 1)),
                     v + (n * g.tk + j0) * g.dv, Int32(max(g.dv, 1)), product, Int32(max(g.dv, 1)))
          for e in 0..<(rows * g.dv) { accumulator[e] += Double(product[e]) }
          j0 += keys
        }
        for r in 0..<rows {
          let out = o + (n * g.tq + i0 + r) * g.dv, acc = accumulator + r * g.dv
          if g.tk == 0 {
            for c in 0..<g.dv { out[c] = 0 }
            lse[n * g.tq + i0 + r] = -.infinity
          } else if !(rowSum[r] > 0) {
            // Every score −inf (or NaN): softmax is NaN there, as the unfused graph gives.
            for c in 0..<g.dv { out[c] = .nan }
            lse[n * g.tq + i0 + r] = .nan
          } else {
            let inverse = 1 / rowSum[r]
            for c in 0..<g.dv { out[c] = T(acc[c] * inverse) }
            lse[n * g.tq + i0 + r] = T(rowMax[r] + Foundation.log(rowSum[r]))
          }
        }
      }
    }
  }

  /// dq, dk, dv for the upstream gradient dO, given the forward's o and lse.
  public static func backward<T: RowElement & BLASFloat>(_ g: AttentionGeometry, scale: Double, dropout: AttentionDropout,
                                                        q: UnsafePointer<T>, k: UnsafePointer<T>, v: UnsafePointer<T>,
                                                        mask: UnsafePointer<T>, o: UnsafePointer<T>, lse: UnsafePointer<T>,
                                                        dout: UnsafePointer<T>, dq: UnsafeMutablePointer<T>, dk: UnsafeMutablePointer<T>,
                                                        dv: UnsafeMutablePointer<T>, pool: ThreadPool) {
    _ = ParallelGemm.configured
    guard g.batch > 0 else { return }
    let addresses = [q, k, v, mask, o, lse, dout].map { UInt(bitPattern: $0) } + [dq, dk, dv].map { UInt(bitPattern: $0) }
    let parts = min(g.batch, pool.threadCount > 1 && g.batch * g.tq * max(g.tk, 1) * g.d >= 1 << 14 ? pool.threadCount * 4 : 1)
    pool.parallelFor(parts) { part in
      func input(_ i: Int) -> UnsafePointer<T> { UnsafePointer<T>(bitPattern: addresses[i])! }
      func output(_ i: Int) -> UnsafeMutablePointer<T> { UnsafeMutablePointer<T>(bitPattern: addresses[7 + i])! }
      let (q, k, v, mask, o, lse, dout) = (input(0), input(1), input(2), input(3), input(4), input(5), input(6))
      let (dq, dk, dv) = (output(0), output(1), output(2))
      let width = max(g.d, g.dv, 1)
      let probabilities = UnsafeMutablePointer<T>.allocate(capacity: block * block)   // P, then dS
      let dropped = UnsafeMutablePointer<T>.allocate(capacity: block * block)         // Pd, then dPd
      let product = UnsafeMutablePointer<T>.allocate(capacity: block * width)
      let kGrad = UnsafeMutablePointer<Double>.allocate(capacity: block * max(g.d, 1))
      let vGrad = UnsafeMutablePointer<Double>.allocate(capacity: block * max(g.dv, 1))
      var rowDot = [Double](repeating: 0, count: g.tq)
      var qGrad = [Double](repeating: 0, count: g.tq * g.d)
      defer { probabilities.deallocate(); dropped.deallocate(); product.deallocate(); kGrad.deallocate(); vGrad.deallocate() }
      for n in (g.batch * part / parts)..<(g.batch * (part + 1) / parts) {
        for i in 0..<g.tq {
          var s = 0.0
          for c in 0..<g.dv { s += Double(dout[(n * g.tq + i) * g.dv + c]) * Double(o[(n * g.tq + i) * g.dv + c]) }
          rowDot[i] = s
        }
        for e in qGrad.indices { qGrad[e] = 0 }
        var j0 = 0
        while j0 < g.tk {
          let keys = min(block, g.tk - j0)
          let kBlock = k + (n * g.tk + j0) * g.d, vBlock = v + (n * g.tk + j0) * g.dv
          kGrad.update(repeating: 0, count: keys * g.d)
          vGrad.update(repeating: 0, count: keys * g.dv)
          var i0 = 0
          while i0 < g.tq {
            let rows = min(block, g.tq - i0)
            let qBlock = q + (n * g.tq + i0) * g.d, doBlock = dout + (n * g.tq + i0) * g.dv
            T.blasGemm(CblasNoTrans, CblasTrans, Int32(rows), Int32(keys), Int32(g.d), qBlock, Int32(max(g.d, 1)), kBlock, Int32(max(g.d, 1)),
                       probabilities, Int32(max(keys, 1)))
            for r in 0..<rows {
              let i = i0 + r
              let maskRow = mask + g.maskBase[n] + i * g.maskRowStride + j0 * g.maskColumnStride
              let row = probabilities + r * keys, droppedRow = dropped + r * keys
              scaleAndMask(row, keys, T(scale), maskRow, g.maskColumnStride)
              _ = T.exponentiateRow(row, keys, subtracting: lse[n * g.tq + i])
              if dropout.rate > 0 {
                let base = (n * g.tq + i) * g.tk + j0
                for c in 0..<keys { droppedRow[c] = T(Double(row[c]) * dropout.keep(base + c)) }
              } else {
                droppedRow.update(from: row, count: keys)
              }
            }
            // dV_j += Pdᵀ dO_i
            T.blasGemm(CblasTrans, CblasNoTrans, Int32(keys), Int32(g.dv), Int32(rows), dropped, Int32(max(keys, 1)), doBlock, Int32(max(g.dv, 1)),
                       product, Int32(max(g.dv, 1)))
            for e in 0..<(keys * g.dv) { vGrad[e] += Double(product[e]) }
            // dPd = dO_i V_jᵀ; dS = P (dPd keep − D) scale, in place of P.
            T.blasGemm(CblasNoTrans, CblasTrans, Int32(rows), Int32(keys), Int32(g.dv), doBlock, Int32(max(g.dv, 1)), vBlock, Int32(max(g.dv, 1)),
                       dropped, Int32(max(keys, 1)))
            for r in 0..<rows {
              let i = i0 + r
              let row = probabilities + r * keys, dpRow = dropped + r * keys
              if dropout.rate > 0 {
                let base = (n * g.tq + i) * g.tk + j0
                for c in 0..<keys { dpRow[c] = T(Double(dpRow[c]) * dropout.keep(base + c)) }
              }
              let (d, s) = (T(rowDot[i]), T(scale))
              for c in 0..<keys { row[c] = row[c] * (dpRow[c] - d) * s }
            }
            // dQ_i += dS K_j; dK_j += dSᵀ Q_i
            T.blasGemm(CblasNoTrans, CblasNoTrans, Int32(rows), Int32(g.d), Int32(keys), probabilities, Int32(max(keys, 1)), kBlock, Int32(max(g.d, 1)),
                       product, Int32(max(g.d, 1)))
            for r in 0..<rows { for e in 0..<g.d { qGrad[(i0 + r) * g.d + e] += Double(product[r * g.d + e]) } }
            T.blasGemm(CblasTrans, CblasNoTrans, Int32(keys), Int32(g.d), Int32(rows), probabilities, Int32(max(keys, 1)), qBlock, Int32(max(g.d, 1)),
                       product, Int32(max(g.d, 1)))
            for e in 0..<(keys * g.d) { kGrad[e] += Double(product[e]) }
            i0 += rows
          }
          for e in 0..<(keys * g.d) { dk[(n * g.tk + j0) * g.d + e] = T(kGrad[e]) }
          for e in 0..<(keys * g.dv) { dv[(n * g.tk + j0) * g.dv + e] = T(vGrad[e]) }
          j0 += keys
        }
        for e in 0..<(g.tq * g.d) { dq[n * g.tq * g.d + e] = T(qGrad[e]) }
      }
    }
  }
}
