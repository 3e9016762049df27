// ShardedTables — embedding tables split among the ranks of a data-parallel run: each id belongs
// to one rank (a hash of the id), which alone holds its row and optimizer slots. A lookup sends
// the ids of this rank's examples to their owners and receives the rows back (alltoallv); the
// row gradients go back to the owners the same way, which sum them per row and apply the sparse
// optimizer to their shard. Owners see the ids of every rank in global position order (rank 0's
// examples first, each rank's in order), so a shard inserts, counts, admits and updates its rows
// exactly as one process's table does those ids: the union of the shards is that table.

import CMPI
import Foundation
import TTEmbedding
import TTIR

/// Which rank owns an id.
public enum TableSharding {
  /// The owner of `id` among `ranks`: splitmix64's finalizer of the id, modulo the ranks (ids
  /// that are dense, strided or clustered still spread evenly).
  public static func owner(of id: Int64, ranks: Int) -> Int {
    var z = UInt64(bitPattern: id) &+ 0x9e37_79b9_7f4a_7c15
    z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
    z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
    z ^= z >> 31
    return Int(z % UInt64(ranks))
  }

  /// The positions of `owners` grouped by owner (stable: each owner's in position order), and
  /// how many go to each of `ranks`.
  public static func groupByOwner(_ owners: [Int], ranks: Int) -> (order: [Int], counts: [Int]) {
    var counts = [Int](repeating: 0, count: ranks)
    for o in owners { counts[o] += 1 }
    var next = [Int](repeating: 0, count: ranks)
    for r in 1..<max(ranks, 1) { next[r] = next[r - 1] + counts[r - 1] }
    var order = [Int](repeating: 0, count: owners.count)
    for (p, o) in owners.enumerated() { order[next[o]] = p; next[o] += 1 }
    return (order, counts)
  }
}

/// One lookup site's exchange in a step: what this rank asked of each owner and what it serves.
struct ShardExchange {
  /// Send slot -> local position (the positions grouped by owner).
  var order: [Int]
  var sendCounts: [Int32]
  var sendOffsets: [Int32]
  var receiveCounts: [Int32]
  var receiveOffsets: [Int32]
  /// Rows of this rank's shard for the ids it served, in received order.
  var servedRows: [Int32]
  var served: Int { Int(receiveCounts.reduce(0, +)) }
}

extension Trainer {
  /// The rows of this rank's positions `share` of site `site` (ids per example `width`), looked
  /// up in their owners' shards; returns them (positions x dim) and the exchange, which the
  /// backward pass reuses to send the row gradients to the same owners.
  func shardedLookup(_ site: LookupSite, batch: [Tensor], share: Range<Int>, global: Int, step t: Int64,
                     lr: Double) throws(DistributedError) -> ([Float], ShardExchange) {
    let comm = distributed!.communicator
    let table = tables[site.table]!
    let dim = table.dim
    let ids = batch[site.idsInput].int64s
    let width = ids.count / max(global, 1)
    let local = Array(ids[(share.lowerBound * width)..<(share.upperBound * width)])
    let (order, counts) = TableSharding.groupByOwner(local.map { TableSharding.owner(of: $0, ranks: comm.size) }, ranks: comm.size)
    let matrix = try comm.allgather(counts.map(Int64.init), what: "the exchange of id counts of table '@\(site.table)'")
    let sendCounts = counts.map { Int32($0) }
    let receiveCounts = (0..<comm.size).map { Int32(matrix[$0][comm.rank]) }
    func offsets(_ c: [Int32]) -> [Int32] { var o: [Int32] = [0]; for x in c.dropLast() { o.append(o.last! + x) }; return o }
    let sendOffsets = offsets(sendCounts), receiveOffsets = offsets(receiveCounts)
    let served = Int(receiveCounts.reduce(0, +))
    let sendIds = UnsafeMutableBufferPointer<Int64>.allocate(capacity: max(1, local.count))
    let servedIds = UnsafeMutableBufferPointer<Int64>.allocate(capacity: max(1, served))
    let servedValues = UnsafeMutableBufferPointer<Float>.allocate(capacity: max(1, served * dim))
    let received = UnsafeMutableBufferPointer<Float>.allocate(capacity: max(1, local.count * dim))
    defer { sendIds.deallocate(); servedIds.deallocate(); servedValues.deallocate(); received.deallocate() }
    for (slot, p) in order.enumerated() { sendIds[slot] = local[p] }
    var request = try comm.startAlltoallv(UnsafeRawPointer(sendIds.baseAddress!), sendCounts: sendCounts, sendOffsets: sendOffsets,
                                          into: UnsafeMutableRawPointer(servedIds.baseAddress!), receiveCounts: receiveCounts,
                                          receiveOffsets: receiveOffsets, type: Int32(TTFC_MPI_I64), what: "the exchange of the ids of table '@\(site.table)'")
    try comm.wait(&request)
    let mine = Int(sendCounts[comm.rank])
    comm.traffic.idBytes += (local.count - mine) * 8
    // The owner's work: catch-up (sparseadam-catchup), then training lookups in received order.
    let servedBuffer = UnsafeBufferPointer(start: servedIds.baseAddress!, count: served)
    if case .sparseAdam(_, _, _, .catchUp) = sparseOptimizer {
      table.catchUp(sparseOptimizer, ids: servedBuffer, throughStep: t - 1, lr: Float(lr))
    }
    var servedRows = [Int32](repeating: -1, count: served)
    servedRows.withUnsafeMutableBufferPointer { r in
      _ = table.lookup(servedBuffer, into: servedValues.baseAddress!, training: true, step: t, rowsOut: r.baseAddress!)
    }
    let scale = Int32(dim)
    request = try comm.startAlltoallv(UnsafeRawPointer(servedValues.baseAddress!), sendCounts: receiveCounts.map { $0 * scale },
                                      sendOffsets: receiveOffsets.map { $0 * scale }, into: UnsafeMutableRawPointer(received.baseAddress!),
                                      receiveCounts: sendCounts.map { $0 * scale }, receiveOffsets: sendOffsets.map { $0 * scale },
                                      type: Int32(TTFC_MPI_F32), what: "the exchange of the rows of table '@\(site.table)'")
    try comm.wait(&request)
    comm.traffic.rowBytes += (local.count - mine) * dim * 4
    var rows = [Float](repeating: 0, count: local.count * dim)
    rows.withUnsafeMutableBufferPointer { out in
      for (slot, p) in order.enumerated() {
        (out.baseAddress! + p * dim).update(from: received.baseAddress! + slot * dim, count: dim)
      }
    }
    return (rows, ShardExchange(order: order, sendCounts: sendCounts, sendOffsets: sendOffsets, receiveCounts: receiveCounts,
                                receiveOffsets: receiveOffsets, servedRows: servedRows))
  }
}
