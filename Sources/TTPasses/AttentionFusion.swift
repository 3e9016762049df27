// attention-fusion — finds scaled dot-product attention written out in primitives and replaces it
// with one `attention` op, which runs tile by tile with the online-softmax rescaling and never
// materializes the [..., Tq, Tk] scores or probabilities (TTRuntime/AttentionKernels.swift):
//
//   s0 = matmul q, k {transpose_b}        (or matmul q, transpose(k) swapping the last two axes)
//   s1 = mul s0, c  |  mul c, s0  |  div s0, c  |  s0           (c a scalar constant)
//   s  = add s1, mask  |  add mask, s1  |  s1                   (mask broadcast to the scores)
//   p  = softmax s {axis = last}
//   p' = dropout p, step {rate, seed, stream}  |  p
//   o  = matmul p', v
//
// Why it pays: unfused, a training step writes and reads the scores, the probabilities and their
// dropped-out copy in the forward pass and as many gradients in the backward pass, each
// B·A·Tq·Tk elements; fused, the forward keeps one tile of scores in cache and stores only a
// log-sum-exp per row, and the backward recomputes each tile's probabilities from it (one extra
// q·kᵀ product of the five). Dropout's mask is a pure function of the element's index (the
// counter-based generator), so the kernels regenerate it per tile, bit for bit the dropout op's.
//
// When it fires (each a must-not-fire case in Passes/attention-fusion/): every intermediate
// value is read only by the next op of the chain (a model that also returns the probabilities
// keeps them); q, k and v have the same batch axes (no broadcasting) and are f32 or f64; the
// mask is of the scores' type, broadcasts to them axis by axis, and depends on no module global
// (`attention` does not differentiate its mask: a learned bias stays unfused); the softmax is over
// the last axis; and the scores are not tiny (static Tq·Tk below 64: the materialized graph costs
// less than the kernel's tile setup).
//
// Order: it runs on a flat function (after `inline`) and before autodiff (Autodiff.gradient), so
// the gradient graph gets one `attention_grad` op instead of the unfused adjoints, and first in
// the codegen pipeline for forward-only functions. PassOptions.fuseAttention turns it off
// (TTFC_ATTENTION_FUSION=off for `ttfc train` and `ttfc run`), to check fused against unfused.

import TTIR

public enum AttentionFusion {
  public static let pass = Pass.perFunction(
    name: "attention-fusion",
    summary: "replace softmax(q kᵀ · c + mask) v (with optional dropout) by one attention op"
  ) { function, context in
    guard context.options.fuseAttention else { return false }
    var uses: [ValueID: Int] = [:]
    for id in function.body { for v in function[id].operands { uses[v, default: 0] += 1 } }
    for v in function.returnValues { uses[v, default: 0] += 1 }
    let matches = function.body.compactMap { match($0, in: function, uses: uses) }
    guard !matches.isEmpty else { return false }
    let dropped = Set(matches.flatMap(\.chain))
    let finals = Dictionary(matches.map { ($0.output, $0) }, uniquingKeysWith: { a, _ in a })

    var rewriter = Rewriter(function)
    for id in function.body {
      if dropped.contains(id) { continue }
      let op = rewriter.prepare(id)
      guard let m = finals[id] else { rewriter.keep(id); continue }
      let scores = function.type(of: m.scores)
      var mask: ValueID
      if let given = m.mask {
        mask = given
        let maskType = function.type(of: given)
        if maskType.rank < scores.rank {
          let padded = TensorType(scores.dtype, [Dim](repeating: .known(1), count: scores.rank - maskType.rank) + maskType.dims)
          mask = rewriter.emit(.reshape, [given], type: padded)
        }
      } else {
        let unit = TensorType(scores.dtype, [Dim](repeating: .known(1), count: scores.rank))
        mask = rewriter.emitConstant(Tensor(scores.dtype, shape: [Int](repeating: 1, count: scores.rank), floats: [0]), type: unit)
      }
      let step = m.step ?? rewriter.emitConstant(Tensor(.i64, shape: [], ints: [0]), type: .scalar(.i64))
      var attributes = m.dropout ?? Attributes()
      attributes["scale"] = .float(m.scale)
      let outputType = function.type(of: op.results[0])
      let rowType = TensorType(scores.dtype, Array(scores.dims.dropLast()))
      let name = function[op.results[0]].name
      let results = rewriter.emitOp(.attention, [m.q, m.k, m.v, mask, step], types: [outputType, rowType],
                                    names: [name, name + ".lse"], attributes: attributes, location: op.location)
      rewriter.replace(op.results[0], with: results[0])
    }
    function = rewriter.finish()
    context.count("attention-fusion", "fused", by: matches.count)
    return true
  }

  /// One attention chain: its operands, scale and dropout, the final matmul and the ops it replaces.
  struct Match {
    var q: ValueID, k: ValueID, v: ValueID
    var mask: ValueID?
    var step: ValueID?
    var dropout: Attributes?
    var scale: Double
    var scores: ValueID
    var output: OpID
    var chain: [OpID]
  }

  static func match(_ id: OpID, in f: Function, uses: [ValueID: Int]) -> Match? {
    let final = f[id]
    guard final.code == .matmul, final.operands.count == 2, !(final.attributes.bool("transpose_a") ?? false),
          !(final.attributes.bool("transpose_b") ?? false) else { return nil }
    func producer(_ v: ValueID) -> (OpID, OpNode)? {
      if case .result(let op, 0) = f[v].definition, f[op].results.count == 1 { return (op, f[op]) }
      return nil
    }
    /// The op defining `v`, when `v` is read only by the chain's next op.
    func single(_ v: ValueID) -> (OpID, OpNode)? { uses[v] == 1 ? producer(v) : nil }
    var chain: [OpID] = []
    let v = final.operands[1]
    guard var (pid, p) = single(final.operands[0]) else { return nil }
    var dropout: Attributes? = nil, step: ValueID? = nil
    if p.code == .dropout {
      dropout = p.attributes
      step = p.operands[1]
      chain.append(pid)
      guard let next = single(p.operands[0]) else { return nil }
      (pid, p) = next
    }
    let scoresType = f.type(of: p.results[0])
    guard p.code == .softmax, scoresType.rank >= 2,
          (try? ShapeRules.axis(p.attributes.int("axis") ?? -1, rank: scoresType.rank)) == scoresType.rank - 1 else { return nil }
    chain.append(pid)
    let scores = p.operands[0]
    guard var (sid, s) = single(scores) else { return nil }
    var mask: ValueID? = nil
    if s.code == .add {
      // Which operand is the scaled product: the one of the scores' own type that a chain op makes.
      let candidates = [(s.operands[0], s.operands[1]), (s.operands[1], s.operands[0])]
      guard let (product, m) = candidates.first(where: { c, _ in
        f.type(of: c) == scoresType && single(c).map { [.mul, .div, .matmul].contains($0.1.code) } == true
      }) else { return nil }
      mask = m
      chain.append(sid)
      (sid, s) = single(product)!
    }
    var scale = 1.0
    if s.code == .mul || s.code == .div {
      let pairs = s.code == .div ? [(s.operands[0], s.operands[1])] : [(s.operands[0], s.operands[1]), (s.operands[1], s.operands[0])]
      guard let (product, c, value) = pairs.lazy.compactMap({ x, c -> (ValueID, ValueID, Double)? in
        guard let value = scalarConstant(c, in: f), f.type(of: x) == scoresType else { return nil }
        return (x, c, value)
      }).first, value.isFinite, value != 0 || s.code == .mul else { return nil }
      _ = c
      scale = s.code == .div ? 1 / value : value
      chain.append(sid)
      guard let next = single(product) else { return nil }
      (sid, s) = next
    }
    guard s.code == .matmul, !(s.attributes.bool("transpose_a") ?? false) else { return nil }
    chain.append(sid)
    let q = s.operands[0]
    var k = s.operands[1]
    if !(s.attributes.bool("transpose_b") ?? false) {
      // matmul q, transpose(k) with the last two axes swapped.
      guard let (tid, t) = single(k), t.code == .transpose, let perm = t.attributes.ints("perm") else { return nil }
      let rank = perm.count
      guard rank >= 2, perm == Array(0..<(rank - 2)) + [rank - 1, rank - 2] else { return nil }
      chain.append(tid)
      k = t.operands[0]
    }
    // Types: same batch axes, f32/f64, the mask broadcasting axis by axis and free of globals.
    let (tq, tk, tv) = (f.type(of: q), f.type(of: k), f.type(of: v))
    guard tq.dtype == .f32 || tq.dtype == .f64, tk.dtype == tq.dtype, tv.dtype == tq.dtype,
          tq.rank == tk.rank, tq.rank == tv.rank, tq.rank == scoresType.rank,
          tq.dims.dropLast(2) == tk.dims.dropLast(2), tq.dims.dropLast(2) == tv.dims.dropLast(2),
          f.type(of: final.results[0]).dims == Array(tq.dims.dropLast()) + [tv.dims[tv.rank - 1]] else { return nil }
    if let mask {
      let tm = f.type(of: mask)
      guard tm.dtype == scoresType.dtype, tm.rank <= scoresType.rank,
            zip(tm.dims, scoresType.dims.suffix(tm.rank)).allSatisfy({ $0 == .known(1) || $0 == $1 }),
            !readsGlobal(mask, in: f) else { return nil }
    }
    if let a = scoresType.dims[scoresType.rank - 2].staticSize, let b = scoresType.dims[scoresType.rank - 1].staticSize,
       a * b < 64 { return nil }
    return Match(q: q, k: k, v: v, mask: mask, step: step, dropout: dropout, scale: scale, scores: scores, output: id, chain: chain)
  }

  /// The value of a one-element float or integer constant.
  static func scalarConstant(_ v: ValueID, in f: Function) -> Double? {
    guard case .result(let op, _) = f[v].definition, f[op].code == .constant,
          case .tensor(let t)? = f[op].attributes["value"], t.shape.reduce(1, *) == 1 else { return nil }
    return t.doubles.first
  }

  /// Whether `v` is computed from a module global (param or state).
  static func readsGlobal(_ v: ValueID, in f: Function) -> Bool {
    var stack = [v], seen = Set<ValueID>()
    while let value = stack.popLast() {
      guard seen.insert(value).inserted else { continue }
      switch f[value].definition {
      case .global: return true
      case .result(let op, _): stack += f[op].operands
      case .argument: break
      }
    }
    return false
  }
}
