// VectorMath — exp, log, log1p, tanh, sigmoid, erf and gelu for f32 as straight-line LLVM IR
// (range reduction, polynomial, exponent arithmetic, selects for special values): no calls and no
// branches, so the loop vectorizer turns them into AVX code. Coefficients are Cephes' (exp, log,
// tanh), and for erf two polynomials fitted to it by Chebyshev interpolation (x·P(x²) below 1,
// a polynomial in a scaled |x| on [1, 3.92], ±1 beyond: no exp, no division). Error bounds,
// checked against the interpreter's correctly rounded binary64 libm over ~30,000 samples of each
// function's whole range by VectorMathTests (measured maximum in parentheses):
//   exp <= 2 ulp (1), log <= 2 (1), tanh <= 3 (1), sigmoid <= 3 (2), log1p <= 3 (2),
//   erf <= 4 ulp or 1e-7 absolute (2), gelu <= 4 ulp or 2e-7 absolute (1).
// Special values: NaN in -> NaN out; exp(+inf) = inf, exp(-inf) = 0; log(0) = -inf, log(x<0) =
// NaN, log(inf) = inf; tanh(±inf) = ±1; erf(±inf) = ±1. f64 kernels call the C library instead.

import CLLVM

extension IRBuilder {
  func isNaN(_ x: V) -> V { fcmp(LLVMRealUNO, x, x) }
  func fabs(_ x: V) -> V { intrinsic("llvm.fabs", [LLVMTypeOf(x)], [x]) }
  func copysign(_ mag: V, _ sign: V) -> V { intrinsic("llvm.copysign", [LLVMTypeOf(mag)], [mag, sign]) }
  func floorf(_ x: V) -> V { intrinsic("llvm.floor", [LLVMTypeOf(x)], [x]) }

  /// a*b + c, fused into one FMA instruction where the CPU has one (llvm.fmuladd). Used only inside
  /// these functions, whose error bounds are measured with it; user arithmetic is never contracted.
  func fused(_ a: V, _ b: V, _ c: V) -> V { intrinsic("llvm.fmuladd", [LLVMTypeOf(a)], [a, b, c]) }

  /// Horner evaluation c[0] + x*(c[1] + x*(...)) with f32 coefficients given highest first.
  func horner(_ x: V, _ coefficientsHighFirst: [Double]) -> V {
    var p = real(coefficientsHighFirst[0], f32)
    for c in coefficientsHighFirst.dropFirst() { p = fused(p, x, real(c, f32)) }
    return p
  }

  /// 2^n for an i32 n in [-126, 127], as f32.
  func pow2(_ n: V) -> V { bitcast(shl(add(n, int(127, i32)), int(23, i32)), f32) }

  /// `nonPositive`: the caller knows x <= 0 or NaN (softmax's exp(x - max x)): `expfNonPositive`.
  func expf(_ x: V, nonPositive: Bool = false) -> V {
    if nonPositive { return expfNonPositive(x) }
    let hi = real(88.72283935546875, f32), lo = real(-103.97208404541016, f32)
    let belowHi = select(fcmp(LLVMRealOGT, x, hi), hi, x)
    let clamped = select(fcmp(LLVMRealOLT, belowHi, lo), lo, belowHi)
    let n = floorf(fused(clamped, real(1.44269504088896341, f32), real(0.5, f32)))
    var r = fused(n, real(-0.693359375, f32), clamped)
    r = fused(n, real(2.12194440e-4, f32), r)
    let p = horner(r, [1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1])
    let y = fadd(fused(p, fmul(r, r), r), real(1, f32))
    // Scale by 2^n in two steps so results down to the subnormal range stay exact.
    let ni = fptosi(n, i32)
    let half = ashr(ni, int(1, i32))
    let scaled = fmul(fmul(y, pow2(half)), pow2(sub(ni, half)))
    let underflow = fcmp(LLVMRealOLT, x, lo)
    var result = select(underflow, real(0, f32), scaled)
    result = select(fcmp(LLVMRealOGT, x, hi), real(.infinity, f32), result)
    return select(isNaN(x), x, result)
  }

  /// exp(x) for x <= 0 or NaN, in about 20 vector instructions instead of 30 (softmax's inner
  /// loop is this function). Same reduction and polynomial as `expf`, so the same error bound.
  /// Rounding x*log2(e) to an integer by adding 1.5*2^23 leaves n in the low mantissa bits of t,
  /// so 2^n comes from integer arithmetic on t's bits: no floor and no float-to-int conversion
  /// (whose NaN result LLVM treats as poison, which is why `expf` needs a NaN select). Since
  /// n >= -150, y * 2^(n+64) is a normal number and the final * 2^-64 rounds once, exactly as a
  /// subnormal result should. NaN in: t, r and y are NaN, and NaN times anything is NaN.
  func expfNonPositive(_ x: V) -> V {
    let lo = real(-103.97208404541016, f32)
    let underflow = fcmp(LLVMRealOLT, x, lo)
    let clamped = select(underflow, lo, x)
    let shifter = real(12582912, f32)   // 1.5 * 2^23
    let t = fused(clamped, real(1.44269504088896341, f32), shifter)
    let n = fsub(t, shifter)
    var r = fused(n, real(-0.693359375, f32), clamped)
    r = fused(n, real(2.12194440e-4, f32), r)
    let p = horner(r, [1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1])
    let y = fadd(fused(p, fmul(r, r), r), real(1, f32))
    // bits(t) = 0x4B400000 + n; the exponent field of 2^(n+64) is n + 64 + 127.
    let exponent = add(sub(bitcast(t, i32), int(0x4B40_0000, i32)), int(64 + 127, i32))
    let scale = bitcast(shl(exponent, int(23, i32)), f32)
    let scaled = fmul(fmul(y, scale), real(0x1p-64, f32))
    return select(underflow, real(0, f32), scaled)
  }

  func logf(_ x: V) -> V {
    // Subnormals: scale into the normal range first.
    let tiny = fcmp(LLVMRealOLT, x, real(1.17549435e-38, f32))
    let xs = select(tiny, fmul(x, real(8388608, f32)), x)
    let bits = bitcast(xs, i32)
    var e = sub(and(lshr(bits, int(23, i32)), int(0xff, i32)), int(126, i32))
    e = select(tiny, sub(e, int(23, i32)), e)
    var m = bitcast(or(and(bits, int(0x807f_ffff, i32)), int(0x3f00_0000, i32)), f32)   // [0.5, 1)
    let small = fcmp(LLVMRealOLT, m, real(0.707106781186547524, f32))
    e = select(small, sub(e, int(1, i32)), e)
    m = select(small, fsub(fadd(m, m), real(1, f32)), fsub(m, real(1, f32)))
    let z = fmul(m, m)
    var y = horner(m, [7.0376836292e-2, -1.1514610310e-1, 1.1676998740e-1, -1.2420140846e-1, 1.4249322787e-1,
                       -1.6668057665e-1, 2.0000714765e-1, -2.4999993993e-1, 3.3333331174e-1])
    y = fmul(fmul(y, m), z)
    let ef = sitofp(e, f32)
    y = fadd(y, fmul(ef, real(-2.12194440e-4, f32)))
    y = fadd(y, fmul(real(-0.5, f32), z))
    var r = fadd(fadd(m, y), fmul(ef, real(0.693359375, f32)))
    r = select(fcmp(LLVMRealOEQ, x, real(.infinity, f32)), x, r)
    r = select(fcmp(LLVMRealOEQ, x, real(0, f32)), real(-.infinity, f32), r)
    return select(fcmp(LLVMRealULT, x, real(0, f32)), real(.nan, f32), r)   // x < 0 or NaN
  }

  func log1pf(_ x: V) -> V {
    // log(u) * x / (u - 1) with u = 1 + x recovers the bits lost in rounding 1 + x (Goldberg).
    let u = fadd(real(1, f32), x)
    let corrected = fmul(logf(u), fdiv(x, fsub(u, real(1, f32))))
    let r = select(fcmp(LLVMRealOEQ, u, real(1, f32)), x, corrected)
    return select(fcmp(LLVMRealOEQ, x, real(.infinity, f32)), x, r)
  }

  func tanhf(_ x: V) -> V {
    let a = fabs(x)
    let z = fmul(x, x)
    let p = horner(z, [-5.70498872745e-3, 2.06390887954e-2, -5.37397155531e-2, 1.33314422036e-1, -3.33332819422e-1])
    // tanh is odd and the series keeps x's sign; copysign also keeps tanh(-0) = -0 (the fma rounds -0 + +0 to +0).
    let small = copysign(fma(fmul(x, z), p, x), x)
    let e = expf(fadd(a, a))
    let large = copysign(fsub(real(1, f32), fdiv(real(2, f32), fadd(e, real(1, f32)))), x)
    return select(fcmp(LLVMRealOLT, a, real(0.625, f32)), small, large)
  }

  /// 1/(1 + e^-x) for x >= 0 and e^x/(1 + e^x) for x < 0: exp never overflows, so results keep
  /// their precision down into the subnormals (sigmoid(-100) is 3.7e-44, not 0).
  func sigmoidf(_ x: V) -> V {
    let e = expf(fneg(fabs(x)))
    let denominator = fadd(real(1, f32), e)
    return select(fcmp(LLVMRealOGE, x, real(0, f32)), fdiv(real(1, f32), denominator), fdiv(e, denominator))
  }

  func erff(_ x: V) -> V {
    let a = fabs(x)
    let z = fmul(x, x)
    // |x| < 1: x · P(x²), P of degree 6 fitted to erf(x)/x on [0, 1] (Chebyshev, 1.4e-9 relative).
    let near = fmul(x, horner(z, [7.882498711687663e-05, -0.0008018856984731375, 0.005189312375609187, -0.02685432916617927,
                                  0.11283597477501814, -0.3761262690573454, 1.128379165882416]))
    // 1 <= |x| < 3.92: Q(t) of degree 12 in t = (|x| - 2.46) / 1.46 ∈ [-1, 1], fitted to erf on
    // [1, 3.92] (Chebyshev, 3e-8 absolute); from 3.92 on, erf rounds to ±1 in f32.
    let t = fmul(fsub(a, real(2.46, f32)), real(0.684931506849315, f32))
    let far = horner(t, [-0.0008599058436492636, 0.0016296122228513575, 0.0022838034534430713, -0.009083877522544784,
                         0.008065748314501695, 0.00652690308135147, -0.02869899107258283, 0.04509779153385714,
                         -0.04500537066121608, 0.0306010974680406, -0.013931602125165681, 0.003878064918619105,
                         0.9994966731097029])
    let saturated = select(fcmp(LLVMRealOLT, a, real(3.92, f32)), far, real(1, f32))
    let tail = copysign(saturated, x)
    let r = select(fcmp(LLVMRealOLT, a, real(1, f32)), near, tail)
    return select(isNaN(x), x, r)
  }

  func geluf(_ x: V, approximate: Bool) -> V {
    let half = fmul(real(0.5, f32), x)
    if approximate {
      let inner = fmul(real(0.7978845608028654, f32), fadd(x, fmul(real(0.044715, f32), fmul(x, fmul(x, x)))))
      return fmul(half, fadd(real(1, f32), tanhf(inner)))
    }
    return fmul(half, fadd(real(1, f32), erff(fmul(x, real(0.7071067811865476, f32)))))
  }
}
