// FastExp against libm's exp in Double: within 2 ulp of the correctly rounded f32 result over the
// whole finite range it returns normal numbers for, and the stated edges (0 below −87.33, +inf
// above 88.73, NaN kept, e^0 = 1 exactly).
import Foundation
import Testing
import TTRuntime

struct FastExpTests {
  @Test func withinTwoUlpOverTheNormalRange() {
    var worst: Float = 0
    var x: Float = -87.33
    while x <= 88.72 {
      let exact = Float(Foundation.exp(Double(x)))
      let got = fastExp(x)
      let ulps = abs(got - exact) / exact.ulp
      worst = max(worst, ulps)
      x = x.nextUp * 1.0 + 0.000_73
    }
    #expect(worst <= 2, "worst error \(worst) ulp")
  }

  @Test func edges() {
    #expect(fastExp(0) == 1)
    #expect(fastExp(-0.0) == 1)
    #expect(fastExp(-88) == 0 && fastExp(-1e4) == 0 && fastExp(-.infinity) == 0)
    #expect(fastExp(89) == .infinity && fastExp(.infinity) == .infinity)
    #expect(fastExp(.nan).isNaN)
    let top = fastExp(88.72)
    #expect(top.isFinite && abs(top - Float(Foundation.exp(Double(Float(88.72))))) <= 2 * top.ulp)
    #expect(abs(fastExp(1) - Float(M_E)) <= Float(M_E).ulp)
  }

  @Test(arguments: [0, 1, 7, 8, 9, 16, 255, 256, 257, 1000])
  func rowsOfAnyLength(_ count: Int) {
    let values = (0..<count).map { Float(sin(Double($0)) * 30) }
    var row = values
    let sum = row.withUnsafeMutableBufferPointer { Float.exponentiateRow($0.baseAddress!, count, subtracting: 3) }
    let unchanged = values.withUnsafeBufferPointer { Float.sumOfExponentials($0.baseAddress!, count, subtracting: 3) }
    let exact = values.map { Foundation.exp(Double($0 - 3)) }   // the argument rounded to f32, as the routine forms it
    for k in 0..<count { #expect(abs(Double(row[k]) - exact[k]) <= 3e-7 * exact[k]) }
    let total = exact.reduce(0, +)
    #expect(abs(sum - total) <= 1e-6 * max(total, 1e-30) && sum == unchanged)
  }

  @Test func aNaNInARowMakesItsSumNaN() {
    var row: [Float] = [1, 2, .nan, 4, 5, 6, 7, 8, 9, 10]
    let sum = row.withUnsafeMutableBufferPointer { Float.exponentiateRow($0.baseAddress!, 10, subtracting: 0) }
    #expect(sum.isNaN && row[2].isNaN && row[1] == fastExp(2))
  }
}
