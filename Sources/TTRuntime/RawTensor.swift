// RawTensor — converting between the interpreter's Tensor (elements as Double/Int64) and the dense
// native layout kernels use (f32 as 4-byte floats, i1 as one byte, ...). Used at the edges of an
// executable (inputs, parameters, outputs) and by the interpreter-fallback thunk.

import Glibc
import TTIR

/// Converts between `Tensor` (TTIR) and the dense native layout that kernels and buffers use.
public enum RawTensor {
  /// Writes `count` elements equal to `value` (as `write` would store a filled tensor).
  public static func fill(_ dtype: DType, count: Int, value: Double, at destination: UnsafeMutableRawPointer) {
    if value == 0 && value.sign == .plus { memset(destination, 0, count * dtype.byteSize); return }
    write(Tensor.filled(dtype, shape: [count], value: value), to: destination)
  }

  /// Writes `t`'s elements in native layout at `destination` (t.count * dtype.byteSize bytes).
  public static func write(_ t: Tensor, to destination: UnsafeMutableRawPointer) {
    switch t.dtype {
    case .f64: let p = destination.assumingMemoryBound(to: Double.self); for (i, v) in t.doubles.enumerated() { p[i] = v }
    case .f32: let p = destination.assumingMemoryBound(to: Float.self); for (i, v) in t.doubles.enumerated() { p[i] = Float(v) }
    case .f16: let p = destination.assumingMemoryBound(to: UInt16.self); for (i, v) in t.doubles.enumerated() { p[i] = Float16(Float(v)).bitPattern }
    case .bf16: let p = destination.assumingMemoryBound(to: UInt16.self); for (i, v) in t.doubles.enumerated() { p[i] = bfloat16Bits(Float(v)) }
    case .i64: let p = destination.assumingMemoryBound(to: Int64.self); for (i, v) in t.int64s.enumerated() { p[i] = v }
    case .i32: let p = destination.assumingMemoryBound(to: Int32.self); for (i, v) in t.int64s.enumerated() { p[i] = Int32(truncatingIfNeeded: v) }
    case .i8: let p = destination.assumingMemoryBound(to: Int8.self); for (i, v) in t.int64s.enumerated() { p[i] = Int8(truncatingIfNeeded: v) }
    case .i1: let p = destination.assumingMemoryBound(to: UInt8.self); for (i, v) in t.int64s.enumerated() { p[i] = v != 0 ? 1 : 0 }
    }
  }

  /// Reads a tensor of `dtype` and `shape` from native layout.
  public static func read(_ dtype: DType, shape: [Int], from source: UnsafeRawPointer) -> Tensor {
    let n = elementCount(shape) ?? 0
    switch dtype {
    case .f64: let p = source.assumingMemoryBound(to: Double.self); return Tensor(dtype, shape: shape, floats: (0..<n).map { p[$0] })
    case .f32: let p = source.assumingMemoryBound(to: Float.self); return Tensor(unchecked: dtype, shape: shape, storage: .floats((0..<n).map { Double(p[$0]) }))
    case .f16: let p = source.assumingMemoryBound(to: UInt16.self); return Tensor(dtype, shape: shape, floats: (0..<n).map { Double(Float(Float16(bitPattern: p[$0]))) })
    case .bf16: let p = source.assumingMemoryBound(to: UInt16.self); return Tensor(dtype, shape: shape, floats: (0..<n).map { Double(bfloat16FromBits(p[$0])) })
    case .i64: let p = source.assumingMemoryBound(to: Int64.self); return Tensor(dtype, shape: shape, ints: (0..<n).map { p[$0] })
    case .i32: let p = source.assumingMemoryBound(to: Int32.self); return Tensor(dtype, shape: shape, ints: (0..<n).map { Int64(p[$0]) })
    case .i8: let p = source.assumingMemoryBound(to: Int8.self); return Tensor(dtype, shape: shape, ints: (0..<n).map { Int64(p[$0]) })
    case .i1: let p = source.assumingMemoryBound(to: UInt8.self); return Tensor(dtype, shape: shape, ints: (0..<n).map { p[$0] != 0 ? 1 : 0 })
    }
  }
}
