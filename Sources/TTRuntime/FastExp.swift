// FastExp — e^x for the f32 routines that exponentiate whole rows (attention's tiles, integer-label
// cross entropy), eight lanes at a time: x = n·ln 2 + r with ln 2 split in two constants
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
  @inline(__always) public static func rowExp(_ x: Float) -> Float { fastExp(SIMD8(repeating: x))[0] }

  public static func exponentiateRow(_ row: UnsafeMutablePointer<Float>, _ count: Int, subtracting shift: Float) -> Double {
    let raw = UnsafeMutableRawPointer(row)
    var total = SIMD8<Float>(repeating: 0), sum = 0.0
    var c = 0
    while c + 8 <= count {
      let e = fastExp(raw.loadUnaligned(fromByteOffset: c * 4, as: SIMD8<Float>.self) - shift)
      raw.storeBytes(of: e, toByteOffset: c * 4, as: SIMD8<Float>.self)
      total += e
      c += 8
      // Flushed to Double every 256 elements, so a long row's f32 partial sums stay short.
      if c % 256 == 0 { sum += Double(total.sum()); total = SIMD8(repeating: 0) }
    }
    sum += Double(total.sum())
    if c < count {
      var tail = SIMD8<Float>(repeating: -.infinity)
      for k in c..<count { tail[k - c] = row[k] - shift }
      let e = fastExp(tail)
      for k in c..<count { row[k] = e[k - c] }
      sum += Double(e.sum())
    }
    return sum
  }

  public static func sumOfExponentials(_ row: UnsafePointer<Float>, _ count: Int, subtracting shift: Float) -> Double {
    let raw = UnsafeRawPointer(row)
    var total = SIMD8<Float>(repeating: 0), sum = 0.0
    var c = 0
    while c + 8 <= count {
      total += fastExp(raw.loadUnaligned(fromByteOffset: c * 4, as: SIMD8<Float>.self) - shift)
      c += 8
      if c % 256 == 0 { sum += Double(total.sum()); total = SIMD8(repeating: 0) }
    }
    sum += Double(total.sum())
    if c < count {
      var tail = SIMD8<Float>(repeating: -.infinity)
      for k in c..<count { tail[k - c] = row[k] - shift }
      sum += Double(fastExp(tail).sum())
    }
    return sum
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

/// e^x lane by lane (see the file header).
@inline(__always) public func fastExp(_ x: SIMD8<Float>) -> SIMD8<Float> {
  let nan = x .!= x
  let clamped = x.replacing(with: 0, where: nan).clamped(lowerBound: SIMD8(repeating: -87.5), upperBound: SIMD8(repeating: 88.75))
  let magic = SIMD8<Float>(repeating: 12_582_912)   // 1.5 · 2^23: adding it rounds to an integer
  let shifted = clamped * 1.442_695_04 + magic
  let n = shifted - magic
  let k = unsafeBitCast(shifted, to: SIMD8<Int32>.self) &- 0x4B40_0000
  let r = (clamped - n * 0.693_145_751_953_125) - n * 1.428_606_765_330_187e-6
  var p = SIMD8<Float>(repeating: 1.0 / 5040)
  p = p * r + 1.0 / 720
  p = p * r + 1.0 / 120
  p = p * r + 1.0 / 24
  p = p * r + 1.0 / 6
  p = p * r + 0.5
  p = p * r + 1
  p = p * r + 1
  let half = k &>> 1
  let first = unsafeBitCast((half &+ 127) &<< 23, to: SIMD8<Float>.self)
  let second = unsafeBitCast((k &- half &+ 127) &<< 23, to: SIMD8<Float>.self)
  var value = p * first * second
  value.replace(with: 0, where: x .< -87.33)
  value.replace(with: .infinity, where: x .> 88.73)
  value.replace(with: x, where: nan)
  return value
}

/// e^x for one value (lane 0 of the vector form).
@inline(__always) public func fastExp(_ x: Float) -> Float { fastExp(SIMD8(repeating: x))[0] }
