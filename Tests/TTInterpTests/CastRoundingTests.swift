// Integer to float casts round once: a 64-bit integer goes to f32 (and through f32 to a half
// type) with one round-to-nearest-even, not through f64 first (which can round twice). Values
// from a hostile review where the double rounding showed.
import Foundation
import Testing
import TTIR
import TTInterp

struct CastRoundingTests {
  @Test func int64ToNarrowFloatsRoundsOnce() throws {
    let module = try Parser.parseAndVerify("""
      module @m {
        func @f(%x: i64[2]) -> (f32[2], bf16[2], f16[2], f64[2]) {
          %c = cast %x : f32[2]
          %b = cast %x : bf16[2]
          %h = cast %x : f16[2]
          %d = cast %x : f64[2]
          return %c, %b, %h, %d
        }
      }
      """)
    let values: [Int64] = [(1 << 62) + (1 << 38) + 1, (1 << 62) + (1 << 54) + (1 << 38) + 1]
    let results = try Interpreter(module: module).run("f", [Tensor(.i64, shape: [2], ints: values)])
    // Float(Int64) rounds the exact integer once; f64 first would round 2^62 + 2^38 + 1 to
    // 2^62 + 2^38, a tie that then rounds down to 2^62 in f32.
    #expect(results[0].doubles == values.map { Double(Float($0)) })
    #expect(results[0].doubles[0] == Double(Float(bitPattern: 0x5E80_0001)))
    #expect(results[1].doubles == values.map { Double(bfloat16Round(Float($0))) })
    #expect(results[1].doubles[1] == Double(bfloat16Round(Float(values[1]))) && results[1].doubles[1] > 4.62e18)
    #expect(results[2].doubles == values.map { _ in Double.infinity })
    #expect(results[3].doubles == values.map { Double($0) })
  }
}
