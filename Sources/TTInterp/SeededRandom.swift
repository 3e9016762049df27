// SeededRandom — a counter-based random source: the value for (seed, index, stream) is a pure
// function of those three numbers (SplitMix64 mixing), so initializers and generated test inputs are
// identical on every machine and independent of evaluation order or thread count.

import Foundation

public enum SeededRandom {
  /// SplitMix64's finalizer: a good 64-bit mix of one word.
  public static func mix(_ z0: UInt64) -> UInt64 {
    var z = z0 &+ 0x9E37_79B9_7F4A_7C15
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }

  /// A uniform double in [0, 1) for (seed, index, stream).
  public static func uniform(_ seed: UInt64, _ index: UInt64, _ stream: UInt64) -> Double {
    let bits = mix(mix(seed ^ 0x5851_F42D_4C95_7F2D) ^ mix(index &* 4 &+ stream))
    return Double(bits >> 11) * 0x1.0p-53
  }

  /// A standard normal for (seed, index, draw) by Box-Muller.
  public static func normal(_ seed: UInt64, _ index: UInt64, _ draw: UInt64) -> Double {
    let u1 = 1 - uniform(seed, index, draw * 2 + 0)   // (0, 1]: log is finite
    let u2 = uniform(seed, index, draw * 2 + 1)
    return (-2 * Foundation.log(u1)).squareRoot() * Foundation.cos(2 * Double.pi * u2)
  }

  /// A standard normal conditioned on |z| <= 2 (redrawn until it lands there).
  public static func truncatedNormal(_ seed: UInt64, _ index: UInt64) -> Double {
    var draw: UInt64 = 0
    while true {
      let z = normal(seed, index, draw &* 7919)
      if Swift.abs(z) <= 2 { return z }
      draw += 1
    }
  }
}
