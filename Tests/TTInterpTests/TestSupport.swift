// Helpers for the interpreter tests: where the fixtures and examples live, and a tolerance-aware
// comparison of tensors (NaN matches NaN, infinities must match exactly, integers exactly).
import Foundation
import TTIR

enum Paths {
  static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent()
  static let fixtures = repository.appendingPathComponent("Tests/TTInterpTests/Fixtures")
  static let examples = repository.appendingPathComponent("examples")
  static let specs = repository.appendingPathComponent("IR-specs")
}

/// Relative and absolute tolerance for comparing an interpreter result of `dtype` to NumPy's.
/// NumPy computes f32 ops in f32 (pairwise sums); the interpreter in f64 rounded once, so they
/// agree to a few f32 ulps; f16 and bf16 to one ulp of their 11- and 8-bit significands.
func tolerance(_ dtype: DType) -> (relative: Double, absolute: Double) {
  switch dtype {
  case .f64: return (1e-12, 1e-12)
  case .f32: return (2e-5, 1e-5)
  case .f16: return (2e-3, 1e-4)
  case .bf16: return (1.6e-2, 1e-3)
  default: return (0, 0)
  }
}

/// nil when `got` matches `expected`, otherwise a description of the first difference.
func mismatch(_ got: Tensor, _ expected: Tensor) -> String? {
  if got.dtype != expected.dtype { return "dtype \(got.dtype) vs expected \(expected.dtype)" }
  if got.shape != expected.shape { return "shape \(got.shape) vs expected \(expected.shape)" }
  if got.dtype.isInteger {
    let a = got.int64s, b = expected.int64s
    if let i = a.indices.first(where: { a[$0] != b[$0] }) { return "element \(i): \(a[i]) vs expected \(b[i])" }
    return nil
  }
  let (rtol, atol) = tolerance(got.dtype)
  let a = got.doubles, b = expected.doubles
  for i in a.indices {
    let x = a[i], y = b[i]
    if x.isNaN || y.isNaN {
      if x.isNaN != y.isNaN { return "element \(i): \(x) vs expected \(y)" }
      continue
    }
    if x.isInfinite || y.isInfinite {
      if x != y { return "element \(i): \(x) vs expected \(y)" }
      continue
    }
    if abs(x - y) > atol + rtol * abs(y) { return "element \(i): \(x) vs expected \(y)" }
  }
  return nil
}

import Testing

struct ComparisonTests {
  /// The fixture comparison must be able to fail, or the fixture tests prove nothing.
  @Test func mismatchDetectsDifferences() {
    let a = Tensor(.f32, shape: [3], floats: [1, .nan, .infinity])
    #expect(mismatch(a, a) == nil)
    #expect(mismatch(a, Tensor(.f32, shape: [3], floats: [1.001, .nan, .infinity])) != nil)
    #expect(mismatch(a, Tensor(.f32, shape: [3], floats: [1, 0, .infinity])) != nil)
    #expect(mismatch(a, Tensor(.f32, shape: [3], floats: [1, .nan, -.infinity])) != nil)
    #expect(mismatch(a, Tensor(.f32, shape: [1, 3], floats: [1, .nan, .infinity])) != nil)
    #expect(mismatch(Tensor(.i32, shape: [1], ints: [2]), Tensor(.i32, shape: [1], ints: [3])) != nil)
  }
}
