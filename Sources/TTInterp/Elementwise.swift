// Elementwise — unary, binary and comparison ops, elementwise after numpy broadcasting.
// Conventions (documented in IR-specs/ops/elementwise.md): max/min propagate NaN and order
// -0.0 < +0.0; relu(NaN) = NaN; sign keeps the sign of zero; integer division truncates toward
// zero with x / 0 = -1 and MIN / -1 = MIN (XLA's choice: it never traps); integer ops wrap.

import Foundation
import TTIR

enum Elementwise {
  static func unary(_ code: OpCode, _ x: Tensor, approximateGelu: Bool) throws(InterpreterError) -> Tensor {
    switch x.storage {
    case .floats(let v):
      let f: (Double) -> Double
      switch code {
      case .neg: f = { -$0 }
      case .abs: f = { Swift.abs($0) }
      case .exp: f = { Foundation.exp($0) }
      case .log: f = { Foundation.log($0) }
      case .log1p: f = { Foundation.log1p($0) }
      case .sqrt: f = { $0.squareRoot() }
      case .rsqrt: f = { 1 / $0.squareRoot() }
      case .tanh: f = { Foundation.tanh($0) }
      case .sigmoid: f = { 1 / (1 + Foundation.exp(-$0)) }
      case .softplus: f = { $0.isNaN ? $0 : Swift.max($0, 0) + Foundation.log1p(Foundation.exp(-Swift.abs($0))) }
      case .silu: f = { $0 / (1 + Foundation.exp(-$0)) }   // x·sigmoid(x); silu(-inf) = NaN as in JAX
      case .relu: f = { $0.isNaN ? $0 : ($0 > 0 ? $0 : 0) }
      case .gelu:
        if approximateGelu {
          f = { x in 0.5 * x * (1 + Foundation.tanh(0.7978845608028654 * (x + 0.044715 * x * x * x))) }
        } else {
          f = { x in 0.5 * x * (1 + Foundation.erf(x / 2.0.squareRoot())) }
        }
      case .erf: f = { Foundation.erf($0) }
      case .sin: f = { Foundation.sin($0) }
      case .cos: f = { Foundation.cos($0) }
      case .floor: f = { $0.rounded(.down) }
      case .ceil: f = { $0.rounded(.up) }
      case .sign: f = { $0.isNaN || $0 == 0 ? $0 : ($0 > 0 ? 1 : -1) }
      default: throw notDefined(code, on: x.dtype)
      }
      return Tensor(x.dtype, shape: x.shape, floats: v.map(f))
    case .ints(let v):
      let f: (Int64) -> Int64
      switch code {
      case .neg: f = { 0 &- $0 }
      case .abs: f = { $0 < 0 ? 0 &- $0 : $0 }
      case .relu: f = { Swift.max($0, 0) }
      case .sign: f = { $0 > 0 ? 1 : ($0 < 0 ? -1 : 0) }
      case .not: f = { ~$0 }
      default: throw notDefined(code, on: x.dtype)
      }
      return Tensor(x.dtype, shape: x.shape, ints: v.map(f))
    }
  }

  /// The error for an op this file has no element function for (a verified module never asks).
  static func notDefined(_ code: OpCode, on dtype: DType) -> InterpreterError {
    .invalidModule("the interpreter has no element function for '\(code)' on \(dtype)")
  }

  /// IEEE 754-2019 maximum: NaN if either is NaN, and +0 above -0.
  static func maximum(_ a: Double, _ b: Double) -> Double {
    if a.isNaN || b.isNaN { return .nan }
    if a == b { return a.sign == .minus ? b : a }
    return a > b ? a : b
  }
  static func minimum(_ a: Double, _ b: Double) -> Double {
    if a.isNaN || b.isNaN { return .nan }
    if a == b { return a.sign == .minus ? a : b }
    return a < b ? a : b
  }

  /// Integer division that never traps: truncation toward zero, x / 0 = -1, MIN / -1 wraps to MIN.
  static func integerDivide(_ a: Int64, _ b: Int64, _ dtype: DType) -> Int64 {
    if b == 0 { return -1 }
    if b == -1 { return 0 &- a }
    return a / b
  }

  static func binary(_ code: OpCode, _ x: Tensor, _ y: Tensor, shape: [Int]) throws(InterpreterError) -> Tensor {
    let a = Kernels.broadcastTo(x, shape), b = Kernels.broadcastTo(y, shape)
    switch (a.storage, b.storage) {
    case (.floats(let u), .floats(let v)):
      let f: (Double, Double) -> Double
      switch code {
      case .add: f = (+)
      case .sub: f = (-)
      case .mul: f = (*)
      case .div: f = (/)
      case .pow: f = { Foundation.pow($0, $1) }
      case .max: f = maximum
      case .min: f = minimum
      default: throw notDefined(code, on: x.dtype)
      }
      return Tensor(x.dtype, shape: shape, floats: zip(u, v).map(f))
    case (.ints(let u), .ints(let v)):
      let dtype = x.dtype
      let f: (Int64, Int64) -> Int64
      switch code {
      case .add: f = (&+)
      case .sub: f = (&-)
      case .mul: f = (&*)
      case .div: f = { integerDivide($0, $1, dtype) }
      case .max: f = { Swift.max($0, $1) }
      case .min: f = { Swift.min($0, $1) }
      case .and: f = (&)
      case .or: f = (|)
      default: throw notDefined(code, on: x.dtype)
      }
      return Tensor(dtype, shape: shape, ints: zip(u, v).map(f))
    default:
      throw .invalidModule("'\(code)' has operands of two element types, \(x.dtype) and \(y.dtype)")
    }
  }

  /// Comparisons: IEEE for floats (every comparison with NaN is false except `ne`).
  static func compare(_ code: OpCode, _ x: Tensor, _ y: Tensor, shape: [Int]) throws(InterpreterError) -> Tensor {
    let a = Kernels.broadcastTo(x, shape), b = Kernels.broadcastTo(y, shape)
    func table<T: Comparable>(_ u: [T], _ v: [T]) throws(InterpreterError) -> [Int64] {
      let f: (T, T) -> Bool
      switch code {
      case .eq: f = (==)
      case .ne: f = (!=)
      case .lt: f = (<)
      case .le: f = (<=)
      case .gt: f = (>)
      case .ge: f = (>=)
      default: throw notDefined(code, on: x.dtype)
      }
      return zip(u, v).map { f($0, $1) ? 1 : 0 }
    }
    switch (a.storage, b.storage) {
    case (.floats(let u), .floats(let v)): return Tensor(.i1, shape: shape, ints: try table(u, v))
    case (.ints(let u), .ints(let v)): return Tensor(.i1, shape: shape, ints: try table(u, v))
    default: throw .invalidModule("'\(code)' has operands of two element types, \(x.dtype) and \(y.dtype)")
    }
  }
}
