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
}
