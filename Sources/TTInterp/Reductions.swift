// Reductions — reduce_*, argmax/argmin, matmul, softmax and the cross-entropy losses: every op that
// combines many input elements into one output element. Accumulation is sequential over the
// reduced elements in row-major order, in Double (Int64 wrapping for integers), then rounded once.
// A float accumulator starts from the first element, not from the identity, so reducing a single
// element returns it unchanged (sum of [-0.0] is -0.0), which makes a reduction over size-1 axes
// exactly a reshape.
// Empty reductions give the identity (0 for sum and mean's numerator, 1 for prod, -inf/+inf or the
// integer extremes for max/min); mean of nothing is 0/0 = NaN for floats and 0 for integers.

import Foundation
import TTIR

enum Reductions {
  /// For each input element, the flat index of the output element it reduces into.
  static func outputIndices(_ shape: [Int], axes: [Int]) -> (outShape: [Int], indices: [Int]) {
    let kept = (0..<shape.count).filter { !axes.contains($0) }
    let outShape = kept.map { shape[$0] }
    let outStrides = rowMajorStrides(outShape)
    let count = elementCount(shape) ?? 0
    var indices = [Int](repeating: 0, count: count)
    Layout.forEachIndex(shape) { flat, position in
      var target = 0
      for (k, axis) in kept.enumerated() { target += position[axis] * outStrides[k] }
      indices[flat] = target
    }
    return (outShape, indices)
  }

  static func reduce(_ code: OpCode, _ x: Tensor, axes: [Int], keepdims: Bool) throws(InterpreterError) -> Tensor {
    let (outShape, indices) = outputIndices(x.shape, axes: axes)
    let outCount = elementCount(outShape) ?? 0
    let reducedCount = axes.reduce(1) { $0 * x.shape[$1] }
    let finalShape = keepdims ? x.shape.enumerated().map { axes.contains($0.offset) ? 1 : $0.element } : outShape
    switch x.storage {
    case .floats(let v):
      let initial: Double
      let combine: (Double, Double) -> Double
      switch code {
      case .reduceSum, .reduceMean: initial = 0; combine = (+)
      case .reduceProd: initial = 1; combine = (*)
      case .reduceMax: initial = -.infinity; combine = Elementwise.maximum
      case .reduceMin: initial = .infinity; combine = Elementwise.minimum
      default: throw Elementwise.notDefined(code, on: x.dtype)
      }
      var accumulators = [Double](repeating: initial, count: outCount)
      var started = [Bool](repeating: false, count: outCount)
      for (i, value) in v.enumerated() {
        let o = indices[i]
        accumulators[o] = started[o] ? combine(accumulators[o], value) : value
        started[o] = true
      }
      if code == .reduceMean { accumulators = accumulators.map { $0 / Double(reducedCount) } }
      return Tensor(x.dtype, shape: finalShape, floats: accumulators)
    case .ints(let v):
      let bits = x.dtype.integerBits
      let maxValue: Int64 = bits == 64 ? .max : (Int64(1) << (bits - 1)) - 1
      let minValue: Int64 = bits == 64 ? .min : -(Int64(1) << (bits - 1))
      let initial: Int64
      let combine: (Int64, Int64) -> Int64
      switch code {
      case .reduceSum, .reduceMean: initial = 0; combine = (&+)
      case .reduceProd: initial = 1; combine = (&*)
      case .reduceMax: initial = minValue; combine = { Swift.max($0, $1) }
      case .reduceMin: initial = maxValue; combine = { Swift.min($0, $1) }
      default: throw Elementwise.notDefined(code, on: x.dtype)
      }
      var accumulators = [Int64](repeating: initial, count: outCount)
      for (i, value) in v.enumerated() {
        accumulators[indices[i]] = wrapToInteger(combine(accumulators[indices[i]], value), x.dtype)
      }
      if code == .reduceMean {
        accumulators = accumulators.map { reducedCount == 0 ? 0 : $0 / Int64(reducedCount) }
      }
      return Tensor(x.dtype, shape: finalShape, ints: accumulators)
    }
  }

  /// Index of the first maximum (minimum) along `axis`; NaN counts as larger (smaller) than
  /// everything, so the first NaN wins, as in numpy.
  static func argReduce(_ code: OpCode, _ x: Tensor, axis: Int, keepdims: Bool, dtype: DType) throws(InterpreterError) -> Tensor {
    let n = x.shape[axis]
    var outShape = x.shape
    outShape.remove(at: axis)
    let outCount = elementCount(outShape) ?? 0
    if n == 0 && outCount > 0 { throw .emptyReduction(op: code.rawValue) }
    let inner = x.shape[(axis + 1)...].reduce(1, *)
    let isMax = code == .argmax
    var result = [Int64](repeating: 0, count: outCount)
    // Integers compare as integers: i64 values past 2^53 are not all distinct as doubles.
    func scan<T: Comparable>(_ values: [T], isNaN: (T) -> Bool) {
      for o in 0..<outCount {
        let outer = o / inner, innerIndex = o % inner
        var best = 0
        var bestValue = values[outer * n * inner + innerIndex]
        if !isNaN(bestValue) {
          for k in 1..<Swift.max(n, 1) {
            let v = values[(outer * n + k) * inner + innerIndex]
            if isNaN(v) { best = k; break }
            if isMax ? v > bestValue : v < bestValue { best = k; bestValue = v }
          }
        }
        result[o] = Int64(best)
      }
    }
    if x.dtype.isFloat { scan(x.doubles, isNaN: \.isNaN) } else { scan(x.int64s, isNaN: { _ in false }) }
    if keepdims { outShape.insert(1, at: axis) }
    return Tensor(dtype, shape: outShape, ints: result)
  }

  /// Batched matrix product with numpy batch broadcasting; transposes swap the last two axes.
  static func matmul(_ a: Tensor, _ b: Tensor, transposeA: Bool, transposeB: Bool, shape: [Int]) throws(InterpreterError) -> Tensor {
    let m = shape[shape.count - 2], n = shape[shape.count - 1]
    let k = transposeA ? a.shape[a.rank - 2] : a.shape[a.rank - 1]
    let batchShape = Array(shape.dropLast(2))
    let batchCount = elementCount(batchShape) ?? 0
    let aBatch = Kernels.broadcastIndices(from: Array(a.shape.dropLast(2)), to: batchShape)
    let bBatch = Kernels.broadcastIndices(from: Array(b.shape.dropLast(2)), to: batchShape)
    let aRows = a.shape[a.rank - 2], aCols = a.shape[a.rank - 1]
    let bRows = b.shape[b.rank - 2], bCols = b.shape[b.rank - 1]
    func aIndex(_ batch: Int, _ i: Int, _ p: Int) -> Int {
      aBatch[batch] * aRows * aCols + (transposeA ? p * aCols + i : i * aCols + p)
    }
    func bIndex(_ batch: Int, _ p: Int, _ j: Int) -> Int {
      bBatch[batch] * bRows * bCols + (transposeB ? j * bCols + p : p * bCols + j)
    }
    switch (a.storage, b.storage) {
    case (.floats(let u), .floats(let v)):
      var out = [Double](repeating: 0, count: batchCount * m * n)
      for batch in 0..<batchCount {
        for i in 0..<m {
          for j in 0..<n {
            var sum = 0.0
            for p in 0..<k { sum += u[aIndex(batch, i, p)] * v[bIndex(batch, p, j)] }
            out[(batch * m + i) * n + j] = sum
          }
        }
      }
      return Tensor(a.dtype, shape: shape, floats: out)
    case (.ints(let u), .ints(let v)):
      var out = [Int64](repeating: 0, count: batchCount * m * n)
      for batch in 0..<batchCount {
        for i in 0..<m {
          for j in 0..<n {
            var sum: Int64 = 0
            for p in 0..<k { sum = sum &+ u[aIndex(batch, i, p)] &* v[bIndex(batch, p, j)] }
            out[(batch * m + i) * n + j] = sum
          }
        }
      }
      return Tensor(a.dtype, shape: shape, ints: out)
    default:
      throw .invalidModule("matmul has operands of two element types, \(a.dtype) and \(b.dtype)")
    }
  }

  /// softmax(x) = exp(x - max) / sum(exp(x - max)); log_softmax(x) = x - max - log(sum(exp(x - max))).
  /// A slice whose max is ±inf or NaN yields NaN (softmax of [inf, 1] is undefined).
  static func softmax(_ x: Tensor, axis: Int, log: Bool) -> Tensor {
    let n = x.shape[axis]
    let inner = x.shape[(axis + 1)...].reduce(1, *)
    let outer = x.shape[..<axis].reduce(1, *)
    let v = x.doubles
    var out = [Double](repeating: 0, count: v.count)
    for o in 0..<outer {
      for i in 0..<inner {
        func at(_ k: Int) -> Int { (o * n + k) * inner + i }
        var m = -Double.infinity
        for k in 0..<n { m = Elementwise.maximum(m, v[at(k)]) }
        var sum = 0.0
        for k in 0..<n { sum += Foundation.exp(v[at(k)] - m) }
        for k in 0..<n {
          out[at(k)] = log ? v[at(k)] - m - Foundation.log(sum) : Foundation.exp(v[at(k)] - m) / sum
        }
      }
    }
    return Tensor(x.dtype, shape: x.shape, floats: out)
  }

  /// Cross entropy of softmax(logits) along the last axis. Sparse labels (integers): the loss is
  /// logsumexp(l) - l[label], and a label outside [0, C) is an error. Dense labels (probabilities):
  /// -sum(labels * log_softmax(l)).
  static func softmaxCrossEntropy(_ logits: Tensor, _ labels: Tensor) throws(InterpreterError) -> Tensor {
    let c = logits.shape.last!
    let rows = logits.count / Swift.max(c, 1)
    let outShape = Array(logits.shape.dropLast())
    let logProbs = softmax(Tensor(.f64, shape: logits.shape, floats: logits.doubles), axis: logits.rank - 1, log: true).doubles
    var out = [Double](repeating: 0, count: c == 0 ? (elementCount(outShape) ?? 0) : rows)
    if labels.dtype.isFloat {
      let z = labels.doubles
      for r in 0..<out.count {
        var sum = 0.0
        for k in 0..<c { sum += z[r * c + k] * logProbs[r * c + k] }
        out[r] = -sum
      }
    } else {
      let y = labels.int64s
      for r in 0..<out.count {
        guard y[r] >= 0 && y[r] < c else { throw .indexOutOfRange(op: "softmax_cross_entropy", index: y[r], bound: c) }
        // logsumexp(l) - l[label]: +0.0 when the label's logit dominates (0 - x, not -x, which
        // would give -0.0 from a log-probability of +0.0).
        out[r] = 0 - logProbs[r * c + Int(y[r])]
      }
    }
    return Tensor(logits.dtype, shape: outShape, floats: out)
  }
}
