// FastExp — e^x for the f32 routines that exponentiate whole rows (attention's tiles, integer-label
// cross entropy), in loops LLVM vectorizes: x = n·ln 2 + r with ln 2 split in two constants
// (Cody–Waite) and n rounded to nearest by the 1.5·2²³ trick (no float-to-int conversion, which
// Swift checks and so would not vectorize), e^r on |r| ≤ ln 2 / 2 by its Taylor polynomial to
// degree 7 (truncation below 3e-9 relative), and 2^n built in the exponent bits in two halves so
// n = 128 near the overflow threshold still forms. Within 2 ulp of the correctly rounded value;
// below −87.33 (where e^x is subnormal, under 1.2e-38) it gives 0; above 88.73 +inf; NaN stays
// NaN. f64 rows keep libm's exp (RowExponential), whose accuracy the f64 checks rely on.

import Foundation

public protocol RowExponential {
  /// e^x as the row routines compute it: FastExp for Float, libm for Double.
  static func rowExp(_ x: Self) -> Self
  /// row[c] = e^(row[c] − shift) for c < count; returns the sum of the new values in Double.
  static func exponentiateRow(_ row: UnsafeMutablePointer<Self>, _ count: Int, subtracting shift: Self) -> Double
  /// Σ e^(row[c] − shift) in Double, the row unchanged.
  static func sumOfExponentials(_ row: UnsafePointer<Self>, _ count: Int, subtracting shift: Self) -> Double
}

extension Float: RowExponential {
  @inline(__always) public static func rowExp(_ x: Float) -> Float { fastExp(x) }

  public static func exponentiateRow(_ row: UnsafeMutablePointer<Float>, _ count: Int, subtracting shift: Float) -> Double {
    for c in 0..<count { row[c] = fastExp(row[c] - shift) }   // vectorized by LLVM: no branches
    return total(UnsafePointer(row), count)
  }

  public static func sumOfExponentials(_ row: UnsafePointer<Float>, _ count: Int, subtracting shift: Float) -> Double {
    withUnsafeTemporaryAllocation(of: Float.self, capacity: 256) { scratch in
      let buffer = scratch.baseAddress!
      var sum = 0.0, start = 0
      while start < count {
        let n = Swift.min(256, count - start)
        for c in 0..<n { buffer[c] = fastExp(row[start + c] - shift) }
        sum += total(UnsafePointer(buffer), n)
        start += n
      }
      return sum
    }
  }

  /// Σ row in Double, four partial sums at a time.
  @inline(__always) static func total(_ row: UnsafePointer<Float>, _ count: Int) -> Double {
    var (s0, s1, s2, s3) = (0.0, 0.0, 0.0, 0.0)
    var c = 0
    while c + 4 <= count {
      s0 += Double(row[c]); s1 += Double(row[c + 1]); s2 += Double(row[c + 2]); s3 += Double(row[c + 3])
      c += 4
    }
    while c < count { s0 += Double(row[c]); c += 1 }
    return (s0 + s1) + (s2 + s3)
  }
}

extension Double: RowExponential {
  @inline(__always) public static func rowExp(_ x: Double) -> Double { Foundation.exp(x) }

  public static func exponentiateRow(_ row: UnsafeMutablePointer<Double>, _ count: Int, subtracting shift: Double) -> Double {
    var sum = 0.0
    for c in 0..<count { row[c] = Foundation.exp(row[c] - shift); sum += row[c] }
    return sum
  }

  public static func sumOfExponentials(_ row: UnsafePointer<Double>, _ count: Int, subtracting shift: Double) -> Double {
    var sum = 0.0
    for c in 0..<count { sum += Foundation.exp(row[c] - shift) }
    return sum
  }
}

/// e^x (see the file header): straight-line code with selects, so a loop over a buffer that calls
/// it vectorizes.
@inline(__always) public func fastExp(_ x: Float) -> Float {
  let clamped: Float = x.isNaN ? 0 : (x < -87.5 ? -87.5 : (x > 88.75 ? 88.75 : x))
  let shifted = clamped * 1.442_695_04 + 12_582_912   // + 1.5 · 2^23 rounds to an integer
  let n = shifted - 12_582_912
  let k = Int32(bitPattern: shifted.bitPattern) &- 0x4B40_0000
  let r = (clamped - n * 0.693_145_751_953_125) - n * 1.428_606_765_330_187e-6
  var p: Float = 1.0 / 5040
  p = p * r + 1.0 / 720
  p = p * r + 1.0 / 120
  p = p * r + 1.0 / 24
  p = p * r + 1.0 / 6
  p = p * r + 0.5
  p = p * r + 1
  p = p * r + 1
  let half = k &>> 1
  let first = Float(bitPattern: UInt32(bitPattern: (half &+ 127) &<< 23))
  let second = Float(bitPattern: UInt32(bitPattern: (k &- half &+ 127) &<< 23))
  let value = p * first * second
  let low: Float = x < -87.33 ? 0 : value
  let high: Float = x > 88.73 ? .infinity : low
  return x.isNaN ? x : high
}
