// SyntheticRatings — MovieLens-shaped synthetic ratings with long-tailed user activity and item
// popularity, deterministic in a seed and produced one user at a time (streamed to a file by
// `MovieLens.writeSynthetic`, or collected). The model (IR-specs/embeddings.md, "Synthetic
// data"):
//   activity    user u (u = 0 the most active) has weight exp(s_a z_u), z_u the standard normal
//               quantile at 1 - (u + 1/2)/users; it rates `minimumPerUser` items plus its share
//               of the rest in proportion, at most 60% of the items, exactly `ratings` in all
//   popularity  item i likewise exp(s_p z_i), capped so that no item expects more ratings
//               than `popularityCap` of the users (the flat head of real catalogues)
//   taste       users and items have standard normal vectors of `rank`; affinity a = <x, y> /
//               sqrt(rank); a user picks its items one by one without replacement with weights
//               popularity x exp(tasteStrength (min(max(a, -3), 3) - 3))
//   rating      stars round(3 + a + noise/2) in 1...5 and a timestamp uniform over 1,000 days
// Light users draw by popularity and accept by taste (rejection); heavy ones (more than an
// eighth of the items) take the smallest keys -log(U)/weight over every item, which is the
// same draw without replacement (Efraimidis and Spirakis).

import Foundation
import TTInterp

/// The size and shape of a synthetic ratings set.
public struct SyntheticShape: Equatable, Sendable {
  public var name: String
  public var users: Int
  public var items: Int
  public var ratings: Int
  public var minimumPerUser: Int
  /// s_a and s_p: the log-normal spread of user activity and item popularity by rank.
  public var activitySpread: Double
  public var popularitySpread: Double
  /// The most ratings any item expects, as a fraction of the users.
  public var popularityCap: Double
  /// How strongly affinity steers a user's choices (0: popularity alone).
  public var tasteStrength: Double
  public var rank: Int

  public init(name: String, users: Int, items: Int, ratings: Int, minimumPerUser: Int, activitySpread: Double,
              popularitySpread: Double, popularityCap: Double, tasteStrength: Double, rank: Int = 8) {
    self.name = name; self.users = users; self.items = items; self.ratings = ratings; self.minimumPerUser = minimumPerUser
    self.activitySpread = activitySpread; self.popularitySpread = popularitySpread; self.popularityCap = popularityCap
    self.tasteStrength = tasteStrength; self.rank = rank
  }

  /// ml-1m's size (6,040 users, 3,706 items, 1,000,209 ratings, at least 20 per user).
  public static let ml1m = SyntheticShape(name: "ml1m", users: 6040, items: 3706, ratings: 1_000_209, minimumPerUser: 20,
                                          activitySpread: 0.9, popularitySpread: 1.5, popularityCap: 0.8, tasteStrength: 1.5)
  /// Sparser, with a larger catalogue: 12,000 users, 30,000 items, 480,000 ratings (at least 5
  /// per user); most items are rated a few times.
  public static let sparse = SyntheticShape(name: "sparse", users: 12_000, items: 30_000, ratings: 480_000, minimumPerUser: 5,
                                            activitySpread: 1.1, popularitySpread: 2.2, popularityCap: 0.3, tasteStrength: 1.5)
  public static let named: [SyntheticShape] = [.ml1m, .sparse]

  /// A named shape, optionally scaled: `ml1m`, `sparse`, or `NAME:F` (0 < F <= 1; e.g.
  /// `ml1m:0.05` for a quick run) with users and ratings times F, so that users keep their
  /// activity, and items times sqrt(F); nil if no such name.
  public static func parse(_ text: String) -> SyntheticShape? {
    let parts = text.split(separator: ":", omittingEmptySubsequences: false)
    guard parts.count <= 2, var shape = named.first(where: { $0.name == parts[0] }) else { return nil }
    guard parts.count == 2 else { return shape }
    guard let factor = Double(parts[1]), factor > 0, factor <= 1 else { return nil }
    shape.name = text
    shape.users = max(1, Int((Double(shape.users) * factor).rounded()))
    shape.items = max(2, Int((Double(shape.items) * factor.squareRoot()).rounded()))
    shape.ratings = min(max(shape.users * shape.minimumPerUser, Int((Double(shape.ratings) * factor).rounded())), shape.users * shape.maximumPerUser)
    return shape
  }

  /// The most ratings a user may have.
  public var maximumPerUser: Int { max(minimumPerUser, items * 3 / 5) }

  /// Why the shape cannot be generated, or nil.
  public var problem: String? {
    guard users >= 1, items >= 2, rank >= 1, rank <= 256 else { return "a shape needs at least 1 user, 2 items and a rank of 1 to 256" }
    guard minimumPerUser >= 2 else { return "each user needs at least 2 ratings (a training and a test item)" }
    guard minimumPerUser <= maximumPerUser else { return "at least \(minimumPerUser) ratings per user, more than 60% of \(items) items" }
    let (least, o1) = users.multipliedReportingOverflow(by: minimumPerUser), (most, o2) = users.multipliedReportingOverflow(by: maximumPerUser)
    guard !o1, !o2, ratings >= least, ratings <= most else {
      return "\(ratings) ratings do not fit \(users) users rating \(minimumPerUser) to \(maximumPerUser) items each"
    }
    guard [activitySpread, popularitySpread, popularityCap, tasteStrength].allSatisfy({ $0.isFinite && $0 >= 0 }), popularityCap > 0 else {
      return "the spreads, the cap and the taste strength must be finite and not negative (the cap positive)"
    }
    return nil
  }
}

public enum SyntheticRatings {
  /// Ratings per user (user 0 the most active), summing to `shape.ratings`.
  public static func activity(_ shape: SyntheticShape) -> [Int] {
    let weights = rankWeights(shape.users, spread: shape.activitySpread)
    var counts = [Int](repeating: shape.minimumPerUser, count: shape.users)
    var open = Array(0..<shape.users)  // users below the maximum
    var remaining = shape.ratings - shape.users * shape.minimumPerUser
    // Shares in proportion to the weights; users who would pass the maximum take it and the
    // rest is shared again among the others (at most `users` rounds).
    while remaining > 0 && !open.isEmpty {
      let total = open.reduce(0.0) { $0 + weights[$1] }
      let room = shape.maximumPerUser
      var capped = false
      for u in open where Double(counts[u]) + Double(remaining) * weights[u] / total > Double(room) {
        remaining -= room - counts[u]
        counts[u] = room
        capped = true
      }
      open.removeAll { counts[$0] >= room }
      if capped { continue }
      // Largest remainders get the units that flooring leaves over.
      let shares = open.map { Double(remaining) * weights[$0] / total }
      var given = 0
      for (k, u) in open.enumerated() { let whole = Int(shares[k]); counts[u] += whole; given += whole }
      let leftover = remaining - given
      let order = open.indices.sorted { (shares[$0] - shares[$0].rounded(.down), -$0) > (shares[$1] - shares[$1].rounded(.down), -$1) }
      for k in order.prefix(leftover) { counts[open[k]] += 1 }
      remaining = 0
    }
    return counts
  }

  /// Item weights (item 0 the most popular), capped as `popularityCap` says.
  public static func popularity(_ shape: SyntheticShape) -> [Double] {
    let weights = rankWeights(shape.items, spread: shape.popularitySpread)
    // Expected ratings of an item of weight w: ratings w / sum(min(weights, cap)). The cap is
    // the weight whose expectation is popularityCap x users (bisection; none if never reached).
    let target = shape.popularityCap * Double(shape.users)
    func expected(_ cap: Double) -> Double { Double(shape.ratings) * cap / weights.reduce(0) { $0 + min($1, cap) } }
    guard expected(weights[0]) > target else { return weights }
    var low = weights[weights.count - 1], high = weights[0]
    for _ in 0..<100 {
      let mid = (low + high) / 2
      if expected(mid) > target { high = mid } else { low = mid }
    }
    return weights.map { min($0, low) }
  }

  /// exp(spread z_k) for k = 0..<count, z_k the standard normal quantile at 1 - (k + 1/2)/count.
  static func rankWeights(_ count: Int, spread: Double) -> [Double] {
    (0..<count).map { k in exp(spread * normalQuantile(1 - (Double(k) + 0.5) / Double(count))) }
  }

  /// The z with P(Z <= z) = p for a standard normal Z (bisection on erfc; p in (0, 1)).
  static func normalQuantile(_ p: Double) -> Double {
    var low = -40.0, high = 40.0
    for _ in 0..<100 {
      let mid = (low + high) / 2
      if 0.5 * erfc(-mid / 2.0.squareRoot()) < p { low = mid } else { high = mid }
    }
    return (low + high) / 2
  }

  /// A SplitMix64 stream: the generator's draws for one user.
  struct Stream {
    var state: UInt64
    mutating func next() -> UInt64 {
      state &+= 0x9E37_79B9_7F4A_7C15
      return SeededRandom.mix(state &- 0x9E37_79B9_7F4A_7C15)
    }
    /// Uniform in [0, 1).
    mutating func uniform() -> Double { Double(next() >> 11) * 0x1.0p-53 }
  }

  /// Generates the shape's ratings user by user (users 1...users, items 1...items; item k + 1
  /// is the k-th most popular), handing each to `emit` in user order.
  public static func generate(_ shape: SyntheticShape, seed: UInt64, _ emit: (Rating) throws -> Void) rethrows {
    let rank = shape.rank, scale = 1 / Double(rank).squareRoot()
    let counts = activity(shape), weights = popularity(shape)
    var cumulative = [Double](repeating: 0, count: shape.items)
    var total = 0.0
    for i in 0..<shape.items { total += weights[i]; cumulative[i] = total }
    var itemVectors = [Double](repeating: 0, count: shape.items * rank)
    for i in 0..<shape.items { for d in 0..<rank { itemVectors[i * rank + d] = SeededRandom.normal(seed &+ 2, UInt64(i), UInt64(d)) } }
    var chosen = [Bool](repeating: false, count: shape.items)
    var taste = [Double](repeating: 0, count: rank)
    var picks: [Int] = []
    let beta = shape.tasteStrength
    for u in 0..<shape.users {
      for d in 0..<rank { taste[d] = SeededRandom.normal(seed &+ 1, UInt64(u), UInt64(d)) }
      var stream = Stream(state: SeededRandom.mix(seed ^ 0x5EED_0F_5A7E) ^ SeededRandom.mix(UInt64(u)))
      @inline(__always) func affinity(_ i: Int) -> Double {
        var a = 0.0
        for d in 0..<rank { a += taste[d] * itemVectors[i * rank + d] }
        return a * scale
      }
      /// exp(beta (clamped affinity - 3)) in (0, 1]: the acceptance of a popularity draw.
      @inline(__always) func tasteFactor(_ a: Double) -> Double { exp(beta * (min(max(a, -3), 3) - 3)) }
      let n = counts[u]
      picks.removeAll(keepingCapacity: true)
      var drawn = false
      if n * 8 <= shape.items {
        // Popularity draws accepted by taste; a user whose draws keep missing (its rated items
        // hold nearly all the weight) falls back to the keyed draw below.
        var draws = 0
        let limit = 2000 * n + 100_000
        while picks.count < n && draws < limit {
          draws += 1
          let x = stream.uniform() * total
          var low = 0, high = shape.items - 1
          while low < high { let mid = (low + high) / 2; if cumulative[mid] <= x { low = mid + 1 } else { high = mid } }
          if chosen[low] || stream.uniform() >= tasteFactor(affinity(low)) { continue }
          chosen[low] = true
          picks.append(low)
        }
        drawn = picks.count == n
        if !drawn { for i in picks { chosen[i] = false }; picks.removeAll(keepingCapacity: true) }
      }
      if !drawn {
        var keys: [(Double, Int)] = []
        keys.reserveCapacity(shape.items)
        for i in 0..<shape.items {
          let w = weights[i] * tasteFactor(affinity(i))
          keys.append((-log(1 - stream.uniform()) / w, i))
        }
        keys.sort { $0 < $1 }
        picks = keys.prefix(n).map(\.1)
        for i in picks { chosen[i] = true }
      }
      for i in picks {
        let a = affinity(i)
        let noise = 2 * stream.uniform() - 1
        let stars = max(1, min(5, (3 + a + noise / 2).rounded()))
        let timestamp = 956_703_932 + Int64(stream.uniform() * 86_400_000)
        try emit(Rating(user: Int64(u + 1), item: Int64(i + 1), rating: stars, timestamp: timestamp))
        chosen[i] = false
      }
    }
  }

  /// Every rating of the shape, in user order.
  public static func ratings(_ shape: SyntheticShape, seed: UInt64) -> [Rating] {
    var list: [Rating] = []
    list.reserveCapacity(shape.ratings)
    generate(shape, seed: seed) { list.append($0) }
    return list
  }
}

extension MovieLens {
  /// Streams a synthetic shape's ratings to `path` (ratings.csv, or ratings.dat for `.dat`);
  /// returns how many were written.
  @discardableResult
  public static func writeSynthetic(_ shape: SyntheticShape, seed: UInt64, to path: String) throws(DataError) -> Int {
    let writer = try RatingsWriter(path: path)
    do { try SyntheticRatings.generate(shape, seed: seed) { try writer.append($0) } } catch let error as DataError { throw error } catch {
      throw .cannotWrite("cannot write ratings to '\(path)': \(error)")
    }
    try writer.finish()
    return writer.count
  }
}
