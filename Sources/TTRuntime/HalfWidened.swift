// HalfWidened — f16 and bf16 convolutions and pools on the f32 routines (ConvKernels,
// PoolKernels): each operand widened exactly into an f32 scratch buffer, the f32 routine run,
// and each result element rounded once from its f32 value to the half type (nearest, ties to
// even; the JIT narrowing routines of HalfGemm). Products and sums run in f32, as the half GEMM's
// do: results agree with the interpreter (f64, rounded once) within the half type's rounding.

import TTIR

public enum HalfWidened {
  /// Whether half `dtype` routines run here (HalfGemm's narrowing routines compiled; f16 needs F16C).
  public static func supports(_ dtype: DType) -> Bool { HalfGemm.supports(dtype) }

  /// Runs `body` on f32 copies of `inputs` (pointer and element count each) with an f32 output
  /// of `outputCount` elements, then narrows that output into `output` (of type `dtype`).
  static func run(_ dtype: DType, inputs: [(UnsafeRawPointer, Int)], output: UnsafeMutableRawPointer, outputCount: Int,
                  _ body: ([UnsafePointer<Float>], UnsafeMutablePointer<Float>) -> Void) {
    guard let routines = HalfGemm.routines, let narrow = dtype == .bf16 ? routines.narrowBF16 : routines.narrowF16 else {
      fatalError("HalfWidened.run called for \(dtype), which this host cannot run (check HalfWidened.supports)")
    }
    let wide = inputs.map { source, count -> HalfGemm.Scratch in
      let scratch = HalfGemm.Scratch.take(count)
      HalfGemm.widen(source.assumingMemoryBound(to: UInt16.self), count: count, dtype, into: scratch.pointer)
      return scratch
    }
    let result = HalfGemm.Scratch.take(outputCount)
    defer { wide.forEach(HalfGemm.Scratch.give); HalfGemm.Scratch.give(result) }
    body(wide.map { UnsafePointer($0.pointer) }, result.pointer)
    narrow(outputCount, result.pointer, output.assumingMemoryBound(to: UInt16.self))
  }
}
