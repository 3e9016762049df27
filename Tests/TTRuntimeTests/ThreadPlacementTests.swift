// Thread placement (ThreadPool.share): each MPI rank on a node takes its own consecutive CPUs of
// the affinity mask; too few CPUs, a rank outside the node's size, or hostile environment values
// (not numbers, negative, near Int.max) leave the threads unbound and never trap.
import Testing
@testable import TTRuntime

struct ThreadPlacementTests {
  let four: [Int32] = [0, 1, 2, 3]

  @Test func ranksTakeConsecutiveShares() {
    #expect(ThreadPool.share(of: four, threads: 2, localSize: nil, localRank: nil) == [0, 1])
    #expect(ThreadPool.share(of: four, threads: 4, localSize: "1", localRank: "0") == [0, 1, 2, 3])
    #expect(ThreadPool.share(of: four, threads: 2, localSize: "2", localRank: "0") == [0, 1])
    #expect(ThreadPool.share(of: four, threads: 2, localSize: "2", localRank: "1") == [2, 3])
    #expect(ThreadPool.share(of: [5, 9, 11], threads: 3, localSize: nil, localRank: nil) == [5, 9, 11])
  }

  @Test func tooFewCPUsOrAStrayRankBindNothing() {
    #expect(ThreadPool.share(of: [0], threads: 2, localSize: nil, localRank: nil) == nil)
    #expect(ThreadPool.share(of: four, threads: 2, localSize: "3", localRank: "0") == nil)
    #expect(ThreadPool.share(of: four, threads: 2, localSize: "2", localRank: "2") == nil)
    #expect(ThreadPool.share(of: four, threads: 2, localSize: "1", localRank: "7") == nil)
    #expect(ThreadPool.share(of: four, threads: 2, localSize: "2", localRank: "-1") == nil)
    #expect(ThreadPool.share(of: [], threads: 2, localSize: nil, localRank: nil) == nil)
  }

  /// An outside review: OMPI_COMM_WORLD_LOCAL_SIZE=9000000000000000000 trapped on threads × size.
  @Test func hostileEnvironmentValuesNeverTrap() {
    #expect(ThreadPool.share(of: four, threads: 2, localSize: "9000000000000000000", localRank: nil) == nil)
    #expect(ThreadPool.share(of: four, threads: 2, localSize: String(Int.max), localRank: String(Int.max)) == nil)
    #expect(ThreadPool.share(of: four, threads: 2, localSize: "1", localRank: String(Int.min)) == nil)
    // Not numbers: one rank, rank 0.
    #expect(ThreadPool.share(of: four, threads: 2, localSize: "abc", localRank: "") == [0, 1])
    #expect(ThreadPool.share(of: four, threads: 2, localSize: "99999999999999999999", localRank: nil) == [0, 1])
    #expect(ThreadPool.share(of: four, threads: 2, localSize: "-4", localRank: nil) == [0, 1])
  }
}
