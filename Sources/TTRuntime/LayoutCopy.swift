// LayoutCopy — a chain of reshape and transpose ops run as one strided copy (IR-specs/codegen.md,
// "Layout copies"). Such a chain moves elements without computing any: the result is a view of
// the operand with other strides. The elemental kernel emitter computes each output element's
// source index with divisions and gathers it alone (BERT's head split and merge, [8,128,4,64] <->
// [8,4,128,64], ran at 2-3 GB/s); here the view is worked out once per run and the copy runs as
// contiguous runs (memcpy) when the innermost axis keeps its stride 1, or as a blocked 2-D
// transpose between the output's innermost axis and the axis the input is contiguous along.
//
// The view: each tensor axis is a group of (size, input stride) axes, at first the operand's
// row-major strides; a transpose permutes the groups; a reshape regroups the axes in order,
// splitting one where a new axis ends inside it. A reshape whose axes interleave the current
// ones (a boundary no split can make) makes the chain no layout copy: the compiler then emits
// the kernel as before. Bits are copied, so any dtype.

import TTIR
import TTSupport

/// A reshape/transpose chain over one operand, run as a strided copy.
public struct LayoutCopy: Sendable, CustomStringConvertible {
  public enum Step: Sendable, Equatable {
    case transpose([Int])
    case reshape([Dim])
  }
  public let steps: [Step]
  public let elementBytes: Int

  public init(steps: [Step], elementBytes: Int) { self.steps = steps; self.elementBytes = elementBytes }

  public var description: String {
    "layout copy [" + steps.map { step in
      switch step {
      case .transpose(let perm): return "transpose \(perm)"
      case .reshape(let dims): return "reshape [\(dims.map(\.description).joined(separator: ", "))]"
      }
    }.joined(separator: ", ") + "]"
  }

  /// The chain `body` computes, if it is one: one argument, every op a reshape or a transpose of
  /// the value before it, the last one returned; nil otherwise (or when there is nothing to move:
  /// a lone reshape keeps the layout).
  public static func chain(of body: Function) -> LayoutCopy? {
    guard body.arguments.count == 1, body.returnValues.count == 1, !body.body.isEmpty else { return nil }
    var current = body.arguments[0]
    var steps: [Step] = []
    for id in body.body {
      let op = body[id]
      guard op.operands == [current], op.results.count == 1 else { return nil }
      switch op.code {
      case .transpose:
        guard let perm = op.attributes.ints("perm") else { return nil }
        steps.append(.transpose(perm))
      case .reshape:
        steps.append(.reshape(body.type(of: op.results[0]).dims))
      default:
        return nil
      }
      current = op.results[0]
    }
    guard current == body.returnValues[0], steps.contains(where: { if case .transpose = $0 { return true }; return false }) else { return nil }
    return LayoutCopy(steps: steps, elementBytes: body.type(of: current).dtype.byteSize)
  }

  /// The output's axes, outermost first, as (size, input stride in elements), for an operand of
  /// `shape`, the reshape targets' symbols resolved by `symbol`; nil if some reshape is no view.
  /// Each tensor axis is kept as a row-major group of such axes: a reshape merging axes the
  /// transposes made non-contiguous (BERT's head merge, [B,T,H,D] -> [B,T,H·D]) keeps them apart.
  public func view(inputShape shape: [Int], symbol: (String) -> Int) -> [(size: Int, stride: Int)]? {
    if shape.contains(0) { return [(0, 0)] }
    var groups: [[(size: Int, stride: Int)]] = []
    var running = 1
    for size in shape.reversed() { groups.insert([(size, running)], at: 0); running *= size }
    for step in steps {
      switch step {
      case .transpose(let perm):
        guard perm.count == groups.count, Set(perm) == Set(0..<groups.count) else { return nil }
        groups = perm.map { groups[$0] }
      case .reshape(let dims):
        let sizes = dims.map { dim -> Int in
          switch dim { case .known(let k): return k; case .symbol(let s): return symbol(s) }
        }
        guard let regrouped = Self.regroup(groups.flatMap { $0 }, into: sizes) else { return nil }
        groups = regrouped
      }
    }
    return groups.flatMap { $0 }
  }

  /// `axes` (row-major, outermost first) grouped into tensor axes of `sizes`, splitting an axis
  /// where a new axis ends inside it; nil when a boundary falls where no split can put it (the
  /// new axes interleave the old ones, e.g. [6, 4] strided to [4, 6]).
  static func regroup(_ axes: [(size: Int, stride: Int)], into sizes: [Int]) -> [[(size: Int, stride: Int)]]? {
    var rest = axes.filter { $0.size != 1 }
    var index = 0
    var groups: [[(size: Int, stride: Int)]] = []
    for size in sizes {
      var group: [(size: Int, stride: Int)] = []
      var needed = size
      while needed > 1 {
        guard index < rest.count else { return nil }
        let (extent, step) = rest[index]
        if extent <= needed {
          guard needed % extent == 0 else { return nil }
          group.append((extent, step)); needed /= extent; index += 1
        } else {
          guard extent % needed == 0 else { return nil }
          group.append((needed, step * (extent / needed)))
          rest[index] = (extent / needed, step)
          needed = 1
        }
      }
      groups.append(group)
    }
    guard index == rest.count else { return nil }
    return groups
  }

  /// Copies `input` (of `inputShape`) into `output` by the view, split over `pool`.
  /// Returns false (copying nothing) when the view does not exist for these sizes.
  public func run(input: UnsafeRawPointer, inputShape: [Int], output: UnsafeMutableRawPointer, symbol: (String) -> Int,
                  pool: ThreadPool) -> Bool {
    guard let axes = view(inputShape: inputShape, symbol: symbol) else { return false }
    if axes.contains(where: { $0.size == 0 }) { return true }
    let plan = CopyPlan(axes: axes)
    switch elementBytes {
    case 1: plan.copy(input, output, UInt8.self, pool: pool)
    case 2: plan.copy(input, output, UInt16.self, pool: pool)
    case 4: plan.copy(input, output, UInt32.self, pool: pool)
    default: plan.copy(input, output, UInt64.self, pool: pool)
    }
    return true
  }
}

/// The copy's loops: output axes merged where the input is contiguous across them, size-1 axes
/// dropped; then runs of the innermost axis (input stride 1) or 2-D tiles (another axis has
/// input stride 1), the remaining outer axes walked as an odometer and split over threads.
struct CopyPlan {
  var sizes: [Int] = []
  var strides: [Int] = []

  init(axes: [(size: Int, stride: Int)]) {
    for (size, stride) in axes where size != 1 {
      if let lastSize = sizes.last, let lastStride = strides.last, lastStride == size * stride {
        sizes[sizes.count - 1] = lastSize * size
        strides[strides.count - 1] = stride
      } else {
        sizes.append(size); strides.append(stride)
      }
    }
    if sizes.isEmpty { sizes = [1]; strides = [1] }
  }

  static let tile = 16
  /// Elements below which the copy runs on the calling thread alone.
  static let parallelThreshold = 1 << 15

  func copy<E: FixedWidthInteger>(_ input: UnsafeRawPointer, _ output: UnsafeMutableRawPointer, _: E.Type, pool: ThreadPool) {
    let src = input.assumingMemoryBound(to: E.self), dst = output.assumingMemoryBound(to: E.self)
    let rank = sizes.count, inner = sizes[rank - 1], innerStride = strides[rank - 1]
    let total = sizes.reduce(1, *)
    // The axis the input is contiguous along, if it is not the innermost: tiles over it and the innermost.
    let across = innerStride == 1 ? nil : strides.indices.dropLast().last(where: { strides[$0] == 1 })
    // Outer axes: all but the innermost (and `across`), each job a range of their flat index.
    var outerAxes = Array(0..<(rank - 1))
    if let across { outerAxes.removeAll { $0 == across } }
    let outerCount = outerAxes.reduce(1) { $0 * sizes[$1] }
    var outputStrides = Array(repeating: 1, count: rank)
    for k in stride(from: rank - 2, through: 0, by: -1) { outputStrides[k] = outputStrides[k + 1] * sizes[k + 1] }
    let sa = UInt(bitPattern: src), da = UInt(bitPattern: dst)
    let plan = self
    func job(_ range: Range<Int>) {
      let src = UnsafePointer<E>(bitPattern: sa)!, dst = UnsafeMutablePointer<E>(bitPattern: da)!
      guard !range.isEmpty else { return }
      // Odometer over the outer axes, started at range.lowerBound.
      var index = Array(repeating: 0, count: outerAxes.count)
      var rest = range.lowerBound
      for k in stride(from: outerAxes.count - 1, through: 0, by: -1) {
        index[k] = rest % plan.sizes[outerAxes[k]]; rest /= plan.sizes[outerAxes[k]]
      }
      for _ in range {
        var from = 0, to = 0
        for (k, axis) in outerAxes.enumerated() { from += index[k] * plan.strides[axis]; to += index[k] * outputStrides[axis] }
        if innerStride == 1 {
          (dst + to).update(from: src + from, count: inner)
        } else if let across {
          let rows = plan.sizes[across], rowStride = outputStrides[across]
          for i0 in stride(from: 0, to: rows, by: Self.tile) {
            let i1 = min(rows, i0 + Self.tile)
            for j0 in stride(from: 0, to: inner, by: Self.tile) {
              let j1 = min(inner, j0 + Self.tile)
              for i in i0..<i1 {
                let out = dst + (to + i * rowStride), source = src + (from + i)
                for j in j0..<j1 { out[j] = source[j * innerStride] }
              }
            }
          }
        } else {
          let out = dst + to, source = src + from
          for j in 0..<inner { out[j] = source[j * innerStride] }
        }
        for k in stride(from: outerAxes.count - 1, through: 0, by: -1) {
          index[k] += 1
          if index[k] < plan.sizes[outerAxes[k]] { break }
          index[k] = 0
        }
      }
    }
    let chunks = total >= Self.parallelThreshold && outerCount >= 2 ? min(outerCount, pool.threadCount * 4) : 1
    if chunks == 1 {
      job(0..<outerCount)
    } else {
      pool.parallelFor(chunks) { c in job((outerCount * c / chunks)..<(outerCount * (c + 1) / chunks)) }
    }
  }
}
