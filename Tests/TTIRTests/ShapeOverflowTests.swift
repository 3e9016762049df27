// Shape arithmetic under hostile sizes (issue 15): attribute values and dimensions near Int.max,
// Int.min and the tensor-size limit must give a module or a diagnostic, never an overflow trap.
// A seeded family writes shape ops with random extreme numbers and verifies them.
import Foundation
import Testing
import TTIR

struct ShapeOverflowTests {
  @Test func sliceWithAHugeStrideIsOneElement() {
    let source = """
      module @m {
        func @f(%x: f32[8]) -> f32[1] {
          %y = slice %x {axes = [0], starts = [2], limits = [8], strides = [9223372036854775807]} : f32[1]
          return %y
        }
      }
      """
    #expect(diagnostics(of: source).isEmpty)
  }

  @Test func concatBeyondTheSizeLimitIsADiagnostic() {
    let source = """
      module @m {
        func @f(%x: f32[9223372036854775807]) -> f32[1] {
          %y = concat %x, %x {axis = 0} : f32[1]
          return %y
        }
      }
      """
    #expect(!diagnostics(of: source).isEmpty)
  }

  /// Shape ops with numbers drawn from overflow boundaries, in attributes and in dimensions.
  @Test func extremeSizesInShapeOpsAreDiagnosedNotTrapped() {
    var generator = SeededGenerator(state: 1507)
    let extremes = ["9223372036854775807", "-9223372036854775808", "9223372036854775806", "4611686018427387904",
                    "1099511627776", "1099511627777", "4294967296", "2147483648", "-1", "0", "1", "3"]
    func pick() -> String { extremes[Int.random(in: 0..<extremes.count, using: &generator)] }
    var diagnosed = 0
    for _ in 0..<400 {
      let n = pick(), m = pick()
      let templates = [
        "%y = slice %x {axes = [0], starts = [\(pick())], limits = [\(pick())], strides = [\(pick())]} : f32[\(m)]",
        "%y = pad %x {low = [\(pick())], high = [\(pick())], value = 0} : f32[\(m)]",
        "%y = concat %x, %x {axis = \(pick())} : f32[\(m)]",
        "%y = broadcast_to %x : f32[\(m), \(pick())]",
        "%y = reshape %x : f32[\(m), \(pick())]",
        "%y = iota {dim = 0} : f32[\(m), \(pick())]",
        "%y = one_hot %i {depth = \(pick())} : f32[\(n), \(m)]",
        "%y = reduce_sum %x {axes = [\(pick())]} : f32[]",
        "%y = transpose %x {perm = [\(pick())]} : f32[\(m)]",
        "%y = gather %x, %i {axis = \(pick())} : f32[\(m)]",
      ]
      let body = templates[Int.random(in: 0..<templates.count, using: &generator)]
      let source = "module @m {\n  func @f(%x: f32[\(n)], %i: i32[\(n)]) -> f32[\(m)] {\n    \(body)\n    return %y\n  }\n}\n"
      if !diagnostics(of: source).isEmpty { diagnosed += 1 }
    }
    #expect(diagnosed > 0)
  }
}
