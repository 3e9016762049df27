// FastExp — e^x for the f32 routines that exponentiate whole rows (attention's tiles, integer-label
// cross entropy), written without branches so loops over buffers vectorize: x = n·ln 2 + r with
// ln 2 split in two constants (Cody–Waite), e^r on |r| ≤ ln 2 / 2 by its Taylor polynomial to
// degree 7 (truncation below 3e-9 relative), and 2^n built in the exponent bits in two halves so
// n = 128 near the overflow threshold still forms. Within 2 ulp of the correctly rounded value;
// below −87.33 (where e^x is subnormal, under 1.2e-38) it gives 0; above 88.73 +inf; NaN stays
// NaN. f64 rows keep libm's exp (RowElement.rowExp), whose accuracy the f64 checks rely on.

import Foundation

public protocol RowExponential {
  /// e^x as the row routines compute it: FastExp for Float, libm for Double.
  static func rowExp(_ x: Self) -> Self
}

extension Float: RowExponential {
  @inline(__always) public static func rowExp(_ x: Float) -> Float { fastExp(x) }
}

extension Double: RowExponential {
  @inline(__always) public static func rowExp(_ x: Double) -> Double { Foundation.exp(x) }
}

@inline(__always) public func fastExp(_ x: Float) -> Float {
  let clamped = x.isNaN ? 0 : Swift.min(Swift.max(x, -87.5), 88.75)
  let n = (clamped * 1.442_695_04).rounded(.toNearestOrEven)
  let r = (clamped - n * 0.693_145_751_953_125) - n * 1.428_606_765_330_187e-6
  var p: Float = 1.0 / 5040
  p = p * r + 1.0 / 720
  p = p * r + 1.0 / 120
  p = p * r + 1.0 / 24
  p = p * r + 1.0 / 6
  p = p * r + 0.5
  p = p * r + 1
  p = p * r + 1
  let k = Int32(n)
  let half = k >> 1
  let first = Float(bitPattern: UInt32(bitPattern: (half + 127) << 23))
  let second = Float(bitPattern: UInt32(bitPattern: (k - half + 127) << 23))
  let value = p * first * second
  let underflow: Float = x < -87.33 ? 0 : value
  let overflow: Float = x > 88.73 ? .infinity : underflow
  return x.isNaN ? x : overflow
}
