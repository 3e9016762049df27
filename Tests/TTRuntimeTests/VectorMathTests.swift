// The kernels' exp, log, log1p, tanh, sigmoid, erf and gelu against the interpreter (binary64 libm
// rounded once to f32, i.e. correctly rounded) over their whole input range, special values and
// subnormals included. The stated bounds are the ones documented in VectorMath.swift.
import Foundation
import Testing
import TTCompiler
import TTIR
import TTInterp
import TTRuntime

enum MathSamples {
  /// Deterministic samples: uniform over [lo, hi], log-spaced magnitudes, and the special values.
  static func values(uniform lo: Double, _ hi: Double, count: Int = 20_000, logSpaced: Bool = true) -> [Double] {
    var v = (0..<count).map { lo + (hi - lo) * Double($0) / Double(count - 1) }
    if logSpaced {
      for e in stride(from: -45.0, through: 38.0, by: 0.01) {
        let m = pow(10, e)
        if m <= max(abs(lo), abs(hi)) { v.append(m); if lo < 0 { v.append(-m) } }
      }
    }
    v += [0, -0.0, .infinity, -.infinity, .nan, 1e-40, -1e-40, 1.17549435e-38, 3.4028235e38, -3.4028235e38]
    return v.map { Double(Float($0)) }
  }

  /// Distance in units in the last place between two f32 values (0 when both NaN or equal).
  static func ulps(_ a: Float, _ b: Float) -> Int {
    if a.isNaN && b.isNaN { return 0 }
    if a.isNaN || b.isNaN { return Int.max }
    if a == b { return 0 }
    func ordered(_ x: Float) -> Int64 { let bits = Int64(Int32(bitPattern: x.bitPattern)); return bits < 0 ? Int64(Int32.min) - bits : bits }
    return Int(abs(ordered(a) - ordered(b)))
  }
}

struct VectorMathTests {
  struct Case: Sendable, CustomTestStringConvertible {
    var op: String
    var lo: Double
    var hi: Double
    var maxULP: Int
    var absolute: Double = 0
    var testDescription: String { op }
  }

  static let cases: [Case] = [
    Case(op: "exp", lo: -110, hi: 90, maxULP: 2),
    Case(op: "log", lo: 0, hi: 3.4e38, maxULP: 2),
    Case(op: "log1p", lo: -1, hi: 1e10, maxULP: 3),
    Case(op: "tanh", lo: -20, hi: 20, maxULP: 3),
    Case(op: "sigmoid", lo: -110, hi: 110, maxULP: 3),
    Case(op: "erf", lo: -6, hi: 6, maxULP: 4, absolute: 1e-7),
    Case(op: "gelu", lo: -12, hi: 12, maxULP: 4, absolute: 2e-7),
  ]

  @Test(arguments: cases)
  func withinTheStatedBound(_ c: Case) throws {
    let samples = MathSamples.values(uniform: c.lo, c.hi)
    let n = samples.count
    let module = try Parser.parseAndVerify("module @m {\n  func @f(%x: f32[\(n)]) -> f32[\(n)] {\n    %y = \(c.op) %x : f32[\(n)]\n    return %y\n  }\n}\n")
    let input = Tensor(.f32, shape: [n], floats: samples)
    let got = try Executable(module: module, function: "f").run([input])[0].doubles
    let want = try Interpreter(module: module).run("f", [input])[0].doubles
    var worst = 0, worstAt = 0.0
    for i in 0..<n {
      let a = Float(got[i]), b = Float(want[i])
      if c.absolute > 0 && abs(Double(a) - Double(b)) <= c.absolute { continue }
      let d = MathSamples.ulps(a, b)
      if d > worst { worst = d; worstAt = samples[i] }
    }
    print("vector-math: \(c.op) max error \(worst) ulp at x = \(worstAt) over \(n) samples")
    #expect(worst <= c.maxULP, "\(c.op): \(worst) ulp at x = \(worstAt)")
  }

  /// exp(x - max x), the softmax form, compiles to `expfNonPositive` (no overflow path, exponent
  /// from integer arithmetic, one rounding into the subnormals): the same 2 ulp bound over
  /// [-110, 0] with -inf, subnormal and underflowing results, and NaN rows stay NaN.
  @Test func shiftedExpWithinTheStatedBound() throws {
    var samples = MathSamples.values(uniform: -110, 0).filter { !$0.isNaN && $0 <= 0 }
    samples.append(0)   // the row's maximum: x - max = x exactly
    let n = samples.count
    let text = """
      module @m {
        func @f(%x: f32[\(n)]) -> f32[\(n)] {
          %m = reduce_max %x {axes = [0], keepdims = true} : f32[1]
          %d = sub %x, %m : f32[\(n)]
          %e = exp %d : f32[\(n)]
          return %e
        }
      }
      """
    let module = try Parser.parseAndVerify(text)
    let executable = try Executable(module: module, function: "f")
    let input = Tensor(.f32, shape: [n], floats: samples)
    let got = try executable.run([input])[0].doubles
    let want = try Interpreter(module: module).run("f", [input])[0].doubles
    var worst = 0, worstAt = 0.0
    for i in 0..<n {
      let d = MathSamples.ulps(Float(got[i]), Float(want[i]))
      if d > worst { worst = d; worstAt = samples[i] }
    }
    print("vector-math: shifted exp max error \(worst) ulp at x = \(worstAt) over \(n) samples")
    #expect(worst <= 2, "shifted exp: \(worst) ulp at x = \(worstAt)")
    #expect(executable.statistics.kernels == 1 && executable.statistics.interpreted == 0)
    var withNaN = samples
    withNaN[n / 2] = .nan
    let nanRow = try executable.run([Tensor(.f32, shape: [n], floats: withNaN)])[0].doubles
    let allNaN = nanRow.allSatisfy { $0.isNaN }
    #expect(allNaN)
  }
}
