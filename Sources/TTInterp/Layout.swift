// Layout — ops that move elements without arithmetic: transpose, slice, concat, pad, gather.
// Each computes, for every output element, which input element (if any) it copies.

import TTIR

enum Layout {
  /// Copies `source[map[i]]` into output position i, or `fill` where map[i] is -1.
  static func gatherElements(_ t: Tensor, _ map: [Int], shape: [Int], fill: Double = 0) -> Tensor {
    switch t.storage {
    case .floats(let v):
      return Tensor(unchecked: t.dtype, shape: shape,
                    storage: .floats(map.map { $0 >= 0 ? v[$0] : roundToFloat(fill, t.dtype) }))
    case .ints(let v):
      let f = wrapToInteger(integerFromDouble(fill), t.dtype)
      return Tensor(unchecked: t.dtype, shape: shape, storage: .ints(map.map { $0 >= 0 ? v[$0] : f }))
    }
  }

  /// Calls `body` with each multi-index of `shape` in row-major order, and its flat position.
  static func forEachIndex(_ shape: [Int], _ body: (_ flat: Int, _ index: [Int]) -> Void) {
    guard let count = elementCount(shape), count > 0 else { return }
    var index = [Int](repeating: 0, count: shape.count)
    for flat in 0..<count {
      body(flat, index)
      var axis = shape.count - 1
      while axis >= 0 {
        index[axis] += 1
        if index[axis] < shape[axis] { break }
        index[axis] = 0
        axis -= 1
      }
    }
  }

  static func transpose(_ x: Tensor, perm: [Int]) -> Tensor {
    let shape = perm.map { x.shape[$0] }
    let strides = rowMajorStrides(x.shape)
    var map = [Int](repeating: 0, count: x.count)
    forEachIndex(shape) { flat, index in
      var source = 0
      for (k, axis) in perm.enumerated() { source += index[k] * strides[axis] }
      map[flat] = source
    }
    return gatherElements(x, map, shape: shape)
  }

  /// Reads x[start + k * stride] along each sliced axis. A slice of a symbolic axis whose
  /// bounds do not fit the size bound at run time is an error naming the last index it reads.
  static func slice(_ x: Tensor, axes: [Int], starts: [Int], limits: [Int], strides: [Int]?, shape: [Int]) throws(InterpreterError) -> Tensor {
    var start = [Int](repeating: 0, count: x.rank)
    var step = [Int](repeating: 1, count: x.rank)
    for (i, a) in axes.enumerated() {
      let axis = a < 0 ? a + x.rank : a
      start[axis] = starts[i]
      step[axis] = strides?[i] ?? 1
      if shape[axis] > 0 {
        let last = starts[i] + (shape[axis] - 1) * step[axis]
        guard last < x.shape[axis] else { throw .indexOutOfRange(op: "slice", index: Int64(last), bound: x.shape[axis]) }
      }
    }
    let inStrides = rowMajorStrides(x.shape)
    var map = [Int](repeating: 0, count: elementCount(shape) ?? 0)
    forEachIndex(shape) { flat, index in
      var source = 0
      for axis in 0..<shape.count { source += (start[axis] + index[axis] * step[axis]) * inStrides[axis] }
      map[flat] = source
    }
    return gatherElements(x, map, shape: shape)
  }

  static func concat(_ parts: [Tensor], axis: Int, shape: [Int]) -> Tensor {
    let outer = shape[..<axis].reduce(1, *)
    let inner = shape[(axis + 1)...].reduce(1, *)
    // For each slab along the outer axes, the parts' chunks one after another.
    func joined<T>(_ arrays: [[T]]) -> [T] {
      var out: [T] = []
      out.reserveCapacity(elementCount(shape) ?? 0)
      for o in 0..<outer {
        for (k, values) in arrays.enumerated() {
          let chunk = parts[k].shape[axis] * inner
          out.append(contentsOf: values[(o * chunk)..<((o + 1) * chunk)])
        }
      }
      return out
    }
    switch parts[0].storage {
    case .floats: return Tensor(unchecked: parts[0].dtype, shape: shape, storage: .floats(joined(parts.map(\.doubles))))
    case .ints: return Tensor(unchecked: parts[0].dtype, shape: shape, storage: .ints(joined(parts.map(\.int64s))))
    }
  }

  static func pad(_ x: Tensor, low: [Int], value: Double, shape: [Int]) -> Tensor {
    let inStrides = rowMajorStrides(x.shape)
    var map = [Int](repeating: -1, count: elementCount(shape) ?? 0)
    forEachIndex(shape) { flat, index in
      var source = 0
      for axis in 0..<shape.count {
        let i = index[axis] - low[axis]
        if i < 0 || i >= x.shape[axis] { return }
        source += i * inStrides[axis]
      }
      map[flat] = source
    }
    return gatherElements(x, map, shape: shape, fill: value)
  }

  /// numpy `take`: out[a..., i..., b...] = params[a..., indices[i...], b...]; indices must lie in
  /// [0, params.shape[axis]).
  static func gather(_ params: Tensor, _ indices: Tensor, axis: Int, shape: [Int]) throws(InterpreterError) -> Tensor {
    let idx = indices.int64s
    let bound = params.shape[axis]
    for i in idx where i < 0 || i >= bound { throw .indexOutOfRange(op: "gather", index: i, bound: bound) }
    let outer = params.shape[..<axis].reduce(1, *)
    let inner = params.shape[(axis + 1)...].reduce(1, *)
    var map: [Int] = []
    map.reserveCapacity(elementCount(shape) ?? 0)
    for o in 0..<outer {
      for i in idx {
        let base = (o * bound + Int(i)) * inner
        for k in 0..<inner { map.append(base + k) }
      }
    }
    return gatherElements(params, map, shape: shape)
  }

  /// The adjoint of `gather`: a copy of `operand` to which each slice of `updates` is added at the
  /// row its index names: out[a..., indices[i...], b...] += updates[a..., i..., b...], in row-major
  /// order of the updates (repeated indices sum). Indices must lie in [0, operand.shape[axis]).
  static func scatterAdd(_ operand: Tensor, _ indices: Tensor, _ updates: Tensor, axis: Int) throws(InterpreterError) -> Tensor {
    let idx = indices.int64s
    let bound = operand.shape[axis]
    for i in idx where i < 0 || i >= bound { throw .indexOutOfRange(op: "scatter_add", index: i, bound: bound) }
    let outer = operand.shape[..<axis].reduce(1, *)
    let inner = operand.shape[(axis + 1)...].reduce(1, *)
    switch (operand.storage, updates.storage) {
    case (.floats(var out), .floats(let u)):
      var source = 0
      for o in 0..<outer {
        for i in idx {
          let base = (o * bound + Int(i)) * inner
          for k in 0..<inner { out[base + k] += u[source]; source += 1 }
        }
      }
      return Tensor(operand.dtype, shape: operand.shape, floats: out)
    case (.ints(var out), .ints(let u)):
      var source = 0
      for o in 0..<outer {
        for i in idx {
          let base = (o * bound + Int(i)) * inner
          for k in 0..<inner { out[base + k] = out[base + k] &+ u[source]; source += 1 }
        }
      }
      return Tensor(operand.dtype, shape: operand.shape, ints: out)
    default:
      throw .invalidModule("scatter_add: operand and updates have different element types")
    }
  }
}
