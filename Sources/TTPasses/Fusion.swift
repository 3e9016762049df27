// fusion — groups ops into fusion regions, each of which the code generator turns into one kernel
// (or, for a GEMM region, one library call plus one epilogue kernel). The policy follows XLA's CPU
// compiler and Grappler's remapper (FusionPolicy below states each rule and why):
//
//  1. GEMM epilogues: a matmul whose only use is an elementwise op of the same shape (bias add,
//     activation, scale) takes that chain of single-use ops, at most three, into a "gemm" region,
//     like Grappler's _FusedMatMul. The matmul itself stays a BLAS call.
//  2. Loop and reduction regions, built consumer-first in reverse program order: a region grows
//     by absorbing the producers of its operands when every use of the producer is inside the
//     region, or when the producer is cheap enough to compute twice (then it is duplicated).
//     Expensive producers (exp, log, tanh, divide, ...) with other users are not duplicated, a
//     region holds at most `maxReductionsPerFusion` reductions, and a producer is never absorbed if
//     a path from it to the region runs through an op outside the region (that would be a cycle).
//
//  3. Multi-output fusion (XLA's producer-consumer multi-output fusion): a loop region whose result
//     is read by a later loop region of the same shape, and also by others (a function result:
//     an optimizer's new slot m, read by the parameter update), merges into that consumer, which
//     then computes and stores both. The merged kernel reads the shared inputs once and never
//     reads the producer's result back: Adam's m, v and parameter updates were three kernels
//     and ten passes over memory per parameter, and are one kernel and seven passes. Only
//     elementwise bodies whose results share one type merge (one loop stores every result at the
//     same index), and only when every other reader of the producer comes after the consumer.
//     A column reduction region (a sum over the leading axes: a bias gradient) whose reduced
//     value is, op for op on the same inputs, the result of a loop region (the masked gradient
//     it sums, which the next GEMM reads too) also returns that value: the loop region goes, and
//     one kernel sweeps the rows once, storing each element and accumulating it.
//
// Regions become `fusion` ops whose bodies hold copies of the member ops; a region of one op is
// left as the plain op. With `explain` on, every producer-consumer edge that crosses a region
// boundary is reported with the rule that kept the two apart (`ttfc opt --explain-fusion`).

import TTIR

enum FusionPolicy {
  /// Ops a loop or reduction region may contain: those compiled code computes element by element
  /// (the op's codegen fact), directly or once lower-composites has expanded them. An op without
  /// a lowering stays out of regions, so it runs alone on the interpreter and its neighbours
  /// still compile.
  static func isFusible(_ code: OpCode) -> Bool {
    switch code.info.codegen {
    case .elemental, .composite: return true
    case .routine, .interpreted: return false
    }
  }

  /// Why `op` can never be in a loop region (nil: it can): its op, or an element type compiled
  /// code does not handle.
  static func unfusibleReason(_ op: OpNode, in function: Function) -> String? {
    guard isFusible(op.code) else { return notFusibleReason(op.code) }
    let types = op.results.map { function.type(of: $0) } + op.operands.map { function.type(of: $0) }
    if let t = types.first(where: { !CodegenSupport.compiledElementTypes.contains($0.dtype) }) {
      return "'\(op.code)' on \(t.dtype): compiled code does not handle \(t.dtype) yet"
    }
    // An integer-label softmax_cross_entropy is not expanded (an out-of-range label must be an
    // error): it runs as a routine of its own (RowKernels), outside regions.
    if op.code == .softmaxCrossEntropy, op.operands.count == 2, function.type(of: op.operands[1]).dtype.isInteger {
      return "softmax_cross_entropy with integer labels checks its labels and runs as a routine of its own"
    }
    // lower-composites expands f32 and f64 composites only; a half one stays whole (interpreted).
    if op.code.info.codegen == .composite, let t = types.first(where: { $0.dtype == .f16 || $0.dtype == .bf16 }) {
      return "'\(op.code)' on \(t.dtype) is not expanded by lower-composites and runs on the interpreter"
    }
    return nil
  }

  /// Why an op can never be in a loop region.
  static func notFusibleReason(_ code: OpCode) -> String {
    switch code {
    case .matmul: return "matmul is a BLAS call (only its epilogue fuses, in a gemm region)"
    case .call: return "call is opaque"
    case .scatterAdd: return "scatter_add writes memory at run-time indices and runs as a routine of its own"
    case .gather: return "gather reads memory at run-time indices and runs as a routine of its own"
    case .layerNorm, .layerNormGrad, .dropout, .randomBits: return "'\(code)' runs as a routine of its own (RowKernels)"
    case .attention, .attentionGrad: return "'\(code)' runs as a routine of its own (AttentionKernels)"
    case .embeddingLookup, .embeddingLookupPooled: return "embedding lookups read a table and run as their own thunk"
    case .fusion: return "already a fusion"
    default: return "'\(code)' has no compiled lowering and runs on the interpreter as its own thunk"
    }
  }

  /// Why a reduction over leading axes that keeps a later one (batch norm's per-channel mean over
  /// N, H, W of an NHWC tensor) is not absorbed into a consumer: its value depends on a suffix of
  /// the consumer's index, which the kernel emitter cannot hoist before the loops (it hoists
  /// reductions that depend on a prefix), so it would be recomputed for every element of the
  /// region's output — W9's batch-norm gradient kernels took 16 s each at batch 4. It stays a
  /// region of its own (a column reduction, one sweep) whose result the consumer reads.
  static func leadingAxesReductionReason(_ op: OpNode, in function: Function) -> String? {
    guard op.code.info.opClass == .reduction, let operand = op.operands.first else { return nil }
    let rank = function.type(of: operand).rank
    guard rank >= 2, let axes = try? ShapeRules.reductionAxes(op.attributes, rank: rank),
          axes.contains(0), axes.count < rank else { return nil }
    return "'\(op.code)' over leading axes \(axes) would be recomputed for every element of the region"
  }

  /// Reductions an op performs (softmax and cross entropy need a max and a sum pass).
  static func reductionWeight(_ code: OpCode) -> Int {
    switch code.info.opClass {
    case .reduction, .argReduction: return 1
    case .softmax: return 2
    case .loss: return code == .softmaxCrossEntropy ? 2 : 0
    default: return 0
    }
  }

  /// Ops cheap enough to compute twice rather than keep a producer out of a region: data movement,
  /// constants and single-instruction arithmetic. Transcendentals and divides are not.
  static func isCheapToDuplicate(_ code: OpCode) -> Bool {
    if reductionWeight(code) > 0 { return false }
    switch code.info.cost {
    case .free, .cheap: return true
    default: return false
    }
  }

  /// Elementwise ops that can follow a matmul in a gemm epilogue.
  static func isEpilogue(_ code: OpCode) -> Bool {
    guard case .elemental = code.info.codegen else { return false }
    switch code.info.opClass {
    case .elementwiseUnary, .elementwiseBinary, .cast: return true
    default: return false
    }
  }
}

public enum Fusion {
  public static let pass = Pass.perFunction(
    name: "fusion", summary: "group elementwise, layout and reduction ops (and GEMM epilogues) into fusion regions"
  ) { function, context in
    var planner = FusionPlanner(function: function, maxReductions: context.options.maxReductionsPerFusion,
                                maxOps: context.options.maxOpsPerFusion)
    planner.planGemmEpilogues()
    planner.planLoopRegions()
    if context.options.explainFusion {
      context.fusionExplanations += planner.explanations().map { "@\(function.name): \($0)" }
    }
    context.work += planner.work
    let regions = planner.regions.filter { $0.members.count > 1 }
    guard !regions.isEmpty else { return false }
    function = planner.materialize(regions)
    let merged = MultiOutputFusion.merge(&function, maxOps: context.options.maxOpsPerFusion, work: &context.work)
    if merged > 0 { context.count("fusion", "multi-output-merges", by: merged) }
    context.count("fusion", "regions", by: regions.count)
    context.count("fusion", "ops-fused", by: regions.reduce(0) { $0 + $1.members.count })
    let duplicated = regions.reduce(0) { $0 + $1.duplicated.count }
    if duplicated > 0 { context.count("fusion", "duplicated", by: duplicated) }
    return true
  }
}

struct FusionPlanner {
  struct Region {
    var kind: String
    /// Body positions of the ops in the region (duplicated producers included).
    var members: Set<Int>
    /// Members that are copies: the original op also stays outside for its other users.
    var duplicated: Set<Int> = []
    var reductions: Int
    var root: Int
    /// Values the members read from outside the region, with how many member operands read each.
    var externalInputs: [ValueID: Int] = [:]

    /// Updates `externalInputs` after member `m` joined: its results are now inside, and its
    /// operands that are not are read from outside.
    mutating func noteJoined(_ m: Int, planner: FusionPlanner) {
      let joined = planner.op(m)
      for r in joined.results { externalInputs[r] = nil }
      for v in joined.operands {
        if let q = planner.producerPosition(v), members.contains(q) { continue }
        externalInputs[v, default: 0] += 1
      }
    }
  }

  let function: Function
  let maxReductions: Int
  let maxOps: Int
  /// Position in the body of each op.
  var position: [OpID: Int] = [:]
  /// For each value, the body positions of the ops that use it.
  var users: [ValueID: [Int]] = [:]
  let returned: Set<ValueID>
  var regionOf: [Int: Int] = [:]
  var regions: [Region] = []
  /// Values read from outside by the copies of duplicated ops in regions already formed.
  var readsByCopies: [ValueID: Int] = [:]
  /// Why a producer (position) was not absorbed by the region of a consumer (position).
  var rejections: [Int: [Int: String]] = [:]
  /// Steps taken by the planner (candidates tried, ops visited by cycle checks): the tests bound
  /// it by a small multiple of the function's size.
  var work = 0

  init(function: Function, maxReductions: Int, maxOps: Int = 128) {
    self.function = function
    self.maxReductions = maxReductions
    self.maxOps = maxOps
    returned = Set(function.returnValues)
    for (i, id) in function.body.enumerated() {
      position[id] = i
      for v in function[id].operands { users[v, default: []].append(i) }
    }
  }

  func op(_ p: Int) -> OpNode { function[function.body[p]] }

  /// Body position of the op defining `v`, if an op does.
  func producerPosition(_ v: ValueID) -> Int? {
    if case .result(let id, _) = function[v].definition { return position[id] }
    return nil
  }

  /// Whether every use of the results of op `p` is inside `region`. Returned values count as uses
  /// outside, and so do uses by duplicated members: their originals stay outside and still read p.
  func allUsesInside(_ p: Int, _ region: Region) -> Bool {
    op(p).results.allSatisfy { v in
      !returned.contains(v) && readsByCopies[v] == nil
        && (users[v] ?? []).allSatisfy { region.members.contains($0) && !region.duplicated.contains($0) }
    }
  }

  // MARK: GEMM epilogues

  mutating func planGemmEpilogues() {
    for p in 0..<function.body.count where op(p).code == .matmul {
      var region = Region(kind: "gemm", members: [p], reductions: 0, root: p)
      var tail = p
      let shape = function.type(of: op(p).results[0])
      while region.members.count < 4 {
        let v = op(tail).results[0]
        guard !returned.contains(v), let uses = users[v], uses.count == 1 else { break }
        let u = uses[0]
        let user = op(u)
        guard FusionPolicy.isEpilogue(user.code), FusionPolicy.unfusibleReason(user, in: function) == nil,
              regionOf[u] == nil, user.results.count == 1,
              function.type(of: user.results[0]).dims == shape.dims else {
          rejections[p, default: [:]][u] = "gemm epilogue ends: '\(user.code)' is not an elementwise op of the matmul's shape"
          break
        }
        region.members.insert(u)
        region.root = u
        tail = u
      }
      if region.members.count > 1 { add(region) }
    }
  }

  /// A region's body must learn every symbolic size from its operands (bodies are isolated, and
  /// the interpreter and kernels bind symbols from the body's arguments).
  func bindsItsSymbols(_ region: Region) -> Bool {
    var available = Set<String>()
    var needed = Set<String>()
    for m in region.members {
      let o = op(m)
      for v in o.operands {
        if let p = producerPosition(v), region.members.contains(p) { continue }
        available.formUnion(function.type(of: v).symbols)
      }
      for r in o.results { needed.formUnion(function.type(of: r).symbols) }
    }
    return needed.isSubset(of: available)
  }

  mutating func add(_ region: Region) {
    guard bindsItsSymbols(region) else { return }
    let index = regions.count
    regions.append(region)
    for m in region.members where !region.duplicated.contains(m) { regionOf[m] = index }
    // A duplicated member's copy reads its operands from outside the region. Those values must
    // stay visible outside, even if their producer (or the duplicated op's original) later joins
    // another region, so they count as used outside from now on.
    for d in region.duplicated {
      for v in op(d).operands where producerPosition(v).map({ !region.members.contains($0) }) ?? true {
        readsByCopies[v, default: 0] += 1
      }
    }
  }

  // MARK: loop and reduction regions

  /// Grows one region per unclaimed fusible root, in reverse program order. Candidates are the
  /// producers of the members' operands, tried nearest-first from a heap; a rejected producer is
  /// tried again only when another of its users joins (that is what can change the verdict: its
  /// uses become inside, or a path around the region closes), so the work is bounded by the
  /// number of operand edges, not by the region's size times its growth steps.
  mutating func planLoopRegions() {
    for c in stride(from: function.body.count - 1, through: 0, by: -1) where regionOf[c] == nil {
      let consumer = op(c)
      guard FusionPolicy.unfusibleReason(consumer, in: function) == nil, consumer.results.count == 1 else { continue }
      var region = Region(kind: "loop", members: [c], reductions: FusionPolicy.reductionWeight(consumer.code), root: c)
      region.noteJoined(c, planner: self)
      var candidates = MaxHeap<Int>()
      func offerProducers(of m: Int) {
        for v in op(m).operands {
          if let p = producerPosition(v), !region.members.contains(p) { candidates.push(p) }
        }
      }
      offerProducers(of: c)
      while let p = candidates.pop() {
        while candidates.peek() == p { _ = candidates.pop() }
        guard !region.members.contains(p) else { continue }
        work += 1
        if let reason = absorbReason(p, into: region) {
          rejections[p, default: [:]][c] = reason
          continue
        }
        region.members.insert(p)
        if !allUsesInside(p, region) { region.duplicated.insert(p) }
        region.reductions += FusionPolicy.reductionWeight(op(p).code)
        region.noteJoined(p, planner: self)
        rejections[p]?[c] = nil
        offerProducers(of: p)
      }
      if region.reductions > 0 { region.kind = "reduction" }
      if region.members.count > 1 { add(region) }
    }
  }

  /// nil if producer `p` may join `region`, else the rule that forbids it.
  mutating func absorbReason(_ p: Int, into region: Region) -> String? {
    let producer = op(p)
    // A constant is copied into every region that reads it, even one formed after another region
    // took it: a constant passed in as an argument would make otherwise identical regions compile
    // to different kernels (the W4 step's two ReLU gradients did).
    if producer.code == .constant && producer.operands.isEmpty { return nil }
    if regionOf[p] != nil { return "'\(producer.code)' already belongs to another fusion region" }
    if region.members.count >= maxOps { return "size cap: the region already holds \(maxOps) ops" }
    if let reason = FusionPolicy.unfusibleReason(producer, in: function) { return reason }
    guard producer.results.count == 1 else { return "'\(producer.code)' has several results" }
    let weight = FusionPolicy.reductionWeight(producer.code)
    if weight > 0 && region.reductions + weight > maxReductions {
      // Name what is counted: softmax and softmax_cross_entropy are two passes (a max and a sum).
      let held = region.members.sorted().compactMap { m -> String? in
        let w = FusionPolicy.reductionWeight(op(m).code)
        return w == 0 ? nil : "'\(op(m).code)'" + (w > 1 ? " counts \(w)" : "")
      }
      let mine = weight > 1 ? " ('\(producer.code)' counts \(weight): a max and a sum pass)" : ""
      return "reduction cap: the region already has \(region.reductions) of at most \(maxReductions) reductions"
        + " (\(held.joined(separator: ", "))); '\(producer.code)' would add \(weight)\(mine)"
    }
    if let reason = FusionPolicy.leadingAxesReductionReason(producer, in: function) { return reason }
    if !allUsesInside(p, region) {
      if !FusionPolicy.isCheapToDuplicate(producer.code) {
        return "'\(producer.code)' is expensive and has users outside the region; it is not computed twice"
      }
      // A function result is written to memory anyway: consumers read it rather than recompute
      // it, which also lets its inputs die early (an optimizer's new slot can then overwrite the
      // old slot in place).
      if producer.results.contains(where: { returned.contains($0) }) {
        return "'\(producer.code)' is a function result, written once and read from memory"
      }
    }
    if createsCycle(absorbing: p, into: region) { return "absorbing '\(producer.code)' would create a cycle through an op outside the region" }
    return nil
  }

  /// Outside ops a cycle check may visit before it gives up and reports a possible cycle (the
  /// producer then stays out: a missed fusion, never a wrong one). It keeps fusion linear in the
  /// function's size when a long path of unfusible ops runs beside a growing region.
  static let cycleSearchBudget = 512

  /// True if some operand of the region (other than p's results) depends on p through ops outside
  /// the region: absorbing p would then make the region both feed and consume that path.
  mutating func createsCycle(absorbing p: Int, into region: Region) -> Bool {
    var stack: [Int] = []
    for (v, _) in region.externalInputs {
      if let q = producerPosition(v), q != p, q > p { stack.append(q) }
    }
    var seen = Set<Int>()
    while let q = stack.popLast() {
      guard seen.insert(q).inserted else { continue }
      work += 1
      if seen.count > Self.cycleSearchBudget { return true }
      for v in op(q).operands {
        guard let r = producerPosition(v) else { continue }
        if r == p { return true }
        if r > p, !region.members.contains(r) { stack.append(r) }
      }
    }
    return false
  }

  // MARK: explanations

  func explanations() -> [String] {
    var lines: [String] = []
    for (c, id) in function.body.enumerated() {
      let consumer = function[id]
      for v in consumer.operands {
        guard let p = producerPosition(v) else { continue }
        let rp = regionOf[p], rc = regionOf[c]
        if rp != nil && rp == rc { continue }
        if let rc, regions[rc].duplicated.contains(p) { continue }
        let reason: String
        if let recorded = rejections[p]?[c] { reason = recorded }
        else if consumer.code != .matmul, let unfusible = FusionPolicy.unfusibleReason(consumer, in: function) { reason = unfusible }
        else if op(p).code != .matmul, let unfusible = FusionPolicy.unfusibleReason(op(p), in: function) { reason = unfusible }
        else if op(p).code == .matmul { reason = "matmul is a BLAS call; '\(consumer.code)' is not its single-use elementwise epilogue" }
        else if consumer.code == .matmul { reason = "matmul is a BLAS call and reads its operands from memory" }
        else if let rc, let recorded = rejections[p]?[regions[rc].root] { reason = recorded }
        else if let rp, let rc {
          reason = "the two ops were placed in different regions (rooted at %\(rootName(rp)) and %\(rootName(rc)); each region grows from one root)"
        } else if let rp {
          reason = "'\(op(p).code)' belongs to the region rooted at %\(rootName(rp)), which was formed first (regions grow from the end of the program); '\(consumer.code)' fused with nothing else"
        } else if rc != nil {
          reason = "'\(op(p).code)' stays outside the region of '\(consumer.code)'"
        } else {
          reason = "neither op joined a fusion region ('\(consumer.code)' had nothing else to fuse with; a region of one op stays a plain op)"
        }
        let line = "%\(function[v].name) ('\(op(p).code)') -> '\(consumer.code)' defining %\(consumer.results.map { function[$0].name }.joined(separator: ", %")): \(reason)"
        if lines.last != line { lines.append(line) }
      }
    }
    return lines
  }

  /// The name of the value a region computes (its root's result), for explanations.
  func rootName(_ region: Int) -> String { function[op(regions[region].root).results[0]].name }

  // MARK: building fusion ops

  /// Rewrites the function with one fusion op per region, in a topological order of regions and
  /// remaining ops (each placed as early as its inputs allow, keeping the original order otherwise).
  func materialize(_ chosen: [Region]) -> Function {
    var result = function
    // Nodes: each chosen region, and each op not (fully) inside one.
    var owner: [Int: Int] = [:]                 // body position -> chosen region index
    for (i, region) in chosen.enumerated() {
      for m in region.members where !region.duplicated.contains(m) { owner[m] = i }
    }
    var fusionOps: [Int: OpID] = [:]
    var replacement: [ValueID: ValueID] = [:]
    for (i, region) in chosen.enumerated() {
      let (id, rootResult) = buildFusion(region, into: &result)
      fusionOps[i] = id
      replacement[op(region.root).results[0]] = rootResult
    }
    // Order: Kahn's algorithm over nodes keyed by their earliest member position.
    enum Node: Hashable { case op(Int), region(Int) }
    var nodes: [Node] = []
    for p in 0..<function.body.count where owner[p] == nil { nodes.append(.op(p)) }
    for i in chosen.indices { nodes.append(.region(i)) }
    func key(_ n: Node) -> Int {
      switch n { case .op(let p): return p; case .region(let i): return chosen[i].root }
    }
    func inputs(_ n: Node) -> [ValueID] {
      switch n {
      case .op(let p): return op(p).operands
      case .region(let i): return result[fusionOps[i]!].operands
      }
    }
    var producerNode: [ValueID: Node] = [:]
    for n in nodes {
      switch n {
      case .op(let p): for v in op(p).results { producerNode[v] = n }
      case .region(let i): producerNode[result[fusionOps[i]!].results[0]] = n
      }
    }
    var indegree: [Node: Int] = [:]
    var dependents: [Node: [Node]] = [:]
    for n in nodes {
      let deps = Set(inputs(n).compactMap { v -> Node? in producerNode[replacement[v] ?? v] })
      indegree[n] = deps.count
      for d in deps { dependents[d, default: []].append(n) }
    }
    // Ready nodes by earliest key first (a heap of (key, node index); keys are unique).
    var nodeIndex: [Node: Int] = [:]
    for (k, n) in nodes.enumerated() { nodeIndex[n] = k }
    var ready = MaxHeap<ReadyNode>()
    for (k, n) in nodes.enumerated() where indegree[n] == 0 { ready.push(ReadyNode(key: key(n), index: k)) }
    var body: [OpID] = []
    while let next = ready.pop() {
      let n = nodes[next.index]
      switch n {
      case .op(let p):
        var o = result[function.body[p]]
        o.operands = o.operands.map { replacement[$0] ?? $0 }
        result[function.body[p]] = o
        body.append(function.body[p])
      case .region(let i):
        var o = result[fusionOps[i]!]
        o.operands = o.operands.map { replacement[$0] ?? $0 }
        result[fusionOps[i]!] = o
        body.append(fusionOps[i]!)
      }
      for d in dependents[n] ?? [] {
        indegree[d]! -= 1
        if indegree[d] == 0 { ready.push(ReadyNode(key: key(d), index: nodeIndex[d]!)) }
      }
    }
    precondition(body.count == nodes.count, "fusion regions formed a cycle")
    result.body = body
    result.returnValues = result.returnValues.map { replacement[$0] ?? $0 }
    return result
  }

  /// A node ready to be placed; the heap pops the smallest key first.
  struct ReadyNode: Comparable {
    let key: Int
    let index: Int
    static func < (a: ReadyNode, b: ReadyNode) -> Bool { a.key > b.key }
  }

  /// Creates the fusion op for `region` (not yet placed in the body); returns it and its result.
  func buildFusion(_ region: Region, into result: inout Function) -> (OpID, ValueID) {
    var body = Function(name: "", location: op(region.root).location)
    var inner: [ValueID: ValueID] = [:]   // outer value -> body value
    var operands: [ValueID] = []
    for m in region.members.sorted() {
      let o = op(m)
      var innerOperands: [ValueID] = []
      for v in o.operands {
        if let mapped = inner[v] { innerOperands.append(mapped); continue }
        let argument = body.addArgument(name: function[v].name, type: function.type(of: v))
        inner[v] = argument
        operands.append(v)
        innerOperands.append(argument)
      }
      let id = body.append(o.code, innerOperands, resultTypes: o.results.map { function.type(of: $0) },
                           resultNames: o.results.map { function[$0].name }, attributes: o.attributes,
                           callee: o.callee, location: o.location)
      for (outer, new) in zip(o.results, body[id].results) { inner[outer] = new }
    }
    let rootValue = op(region.root).results[0]
    body.returnValues = [inner[rootValue]!]
    body.resultTypes = [function.type(of: rootValue)]
    var attributes = Attributes()
    attributes["kind"] = .string(region.kind)
    let id = result.makeOp(.fusion, operands, resultTypes: [function.type(of: rootValue)],
                           resultNames: [function[rootValue].name + ".fused"], attributes: attributes,
                           location: op(region.root).location, regions: [body])
    return (id, result[id].results[0])
  }
}

/// Phase 3: merges elementwise loop fusions into the same-shaped loop fusions that read them.
enum MultiOutputFusion {
  /// A loop fusion whose body is elementwise with every result of one type; nil otherwise.
  static func elementwiseResultType(_ op: OpNode) -> TensorType? {
    guard op.code == .fusion, case .string("loop")? = op.attributes["kind"], let body = op.body,
          let type = body.resultTypes.first, body.resultTypes.allSatisfy({ $0 == type }),
          body.isElementwise else { return nil }
    return type
  }

  /// Merges producer into consumer until no pair qualifies; returns the number of merges. Each
  /// sweep is linear in the function (plus the merged bodies); a merge can make an earlier
  /// consumer's producer eligible (a reader moved later), so sweeps repeat until none merges.
  static func merge(_ function: inout Function, maxOps: Int = 128, work: inout Int) -> Int {
    dropUnusedFusions(&function)
    var merges = 0
    while true {
      work += function.body.count
      let merged = mergeProducersIntoConsumers(&function, maxOps: maxOps, work: &work)
      merges += merged
      if merged == 0 { break }
    }
    work += function.body.count
    merges += returnReducedValues(&function, work: &work)
    return merges
  }

  /// One sweep over the consumers in program order, merging each with every producer that
  /// qualifies (its other readers all after it). Returns the number of merges. Readers are
  /// recorded once and resolved through `mergedInto` (an op merged into a consumer reads as that
  /// consumer), never rewritten per merge: an optimizer's shared scalars (the learning rate, the
  /// bias corrections) are read by every update, and rewriting their reader lists at each merge
  /// made a deep model's step quadratic in its parameter count.
  static func mergeProducersIntoConsumers(_ function: inout Function, maxOps: Int, work: inout Int) -> Int {
    var position: [OpID: Int] = [:]
    for (i, id) in function.body.enumerated() { position[id] = i }
    var users: [ValueID: [OpID]] = [:]
    for id in function.body { for v in function[id].operands { users[v, default: []].append(id) } }
    var mergedInto: [OpID: OpID] = [:]
    func resolve(_ id: OpID) -> OpID {
      var root = id
      while let next = mergedInto[root] { root = next }
      var current = id
      while let next = mergedInto[current], next != root { mergedInto[current] = root; current = next }
      return root
    }
    var removed = Set<OpID>()
    var merges = 0
    for consumerID in function.body where !removed.contains(consumerID) {
      guard let type = elementwiseResultType(function[consumerID]) else { continue }
      let c = position[consumerID]!
      var found = true
      while found {
        found = false
        for v in function[consumerID].operands {
          work += 1
          guard case .result(let pid, _) = function[v].definition, pid != consumerID, let p = position[pid], p < c,
                elementwiseResultType(function[pid]) == type,
                // The size cap holds for merged regions too (a chain of capped regions must
                // not merge back into one).
                function[pid].body!.body.count + function[consumerID].body!.body.count <= maxOps else { continue }
          // The merged op takes the consumer's place: every other reader must come after it
          // (reads by ops merged into the producer itself are inside it).
          var readersAfter = true
          for r in function[pid].results {
            for reader in users[r] ?? [] {
              work += 1
              let op = resolve(reader)
              if op != consumerID && op != pid && position[op]! <= c { readersAfter = false; break }
            }
            if !readersAfter { break }
          }
          guard readersAfter else { continue }
          mergeOnce(&function, producer: pid, consumer: consumerID)
          removed.insert(pid)
          mergedInto[pid] = consumerID
          merges += 1
          found = true
          break
        }
      }
    }
    if !removed.isEmpty { function.body.removeAll { removed.contains($0) } }
    return merges
  }

  /// Gives each column reduction region whose reduced value some earlier loop region computes
  /// (op for op, on the same outer values) that value as a second result, and drops the loop
  /// region, when every other reader of the loop's result comes after the reduction. One sweep:
  /// values are numbered structurally, so comparing two bodies costs their size.
  static func returnReducedValues(_ function: inout Function, work: inout Int) -> Int {
    var numbering = StructuralNumbering()
    var loops: [Int: OpID] = [:]   // number of a loop region's result -> that region
    var position: [OpID: Int] = [:]
    for (i, id) in function.body.enumerated() { position[id] = i }
    var users: [ValueID: [Int]] = [:]
    for (i, id) in function.body.enumerated() { for v in function[id].operands { users[v, default: []].append(i) } }
    var removed = Set<OpID>()
    for (i, id) in function.body.enumerated() {
      let op = function[id]
      if op.code == .fusion, case .string("loop")? = op.attributes["kind"], let body = op.body, body.returnValues.count == 1 {
        loops[numbering.numbers(of: body, operands: op.operands)[body.returnValues[0].index]] = id
        work += body.body.count
        continue
      }
      guard let reduced = columnReducedValue(op), let body = op.body else { continue }
      work += body.body.count
      let number = numbering.numbers(of: body, operands: op.operands)[reduced.index]
      guard let loopID = loops[number] else { continue }
      let loopResult = function[loopID].results[0]
      guard (users[loopResult] ?? []).allSatisfy({ $0 > i }) else { continue }
      returnReducedValue(&function, loop: loopID, reduction: id)
      loops[number] = nil
      removed.insert(loopID)
    }
    if !removed.isEmpty { function.body.removeAll { removed.contains($0) } }
    return removed.count
  }

  /// The reduced value of a column reduction region (one result: reduce_sum/mean/max/min over
  /// leading axes, not keepdims), if `op` is one.
  static func columnReducedValue(_ op: OpNode) -> ValueID? {
    guard op.code == .fusion, case .string("reduction")? = op.attributes["kind"], let body = op.body,
          body.returnValues.count == 1, case .result(let rootID, _) = body[body.returnValues[0]].definition else { return nil }
    let root = body[rootID]
    guard [.reduceSum, .reduceMean, .reduceMax, .reduceMin].contains(root.code) else { return nil }
    let x = body.type(of: root.operands[0])
    guard let axes = try? ShapeRules.reductionAxes(root.attributes, rank: x.rank), !axes.isEmpty,
          axes == Array(0..<axes.count), axes.count < x.rank, !(root.attributes.bool("keepdims") ?? false) else { return nil }
    // The kernel emitter's column sweep accumulates in the output buffer, which it does not do
    // for half types (each step would round): their reductions are row loops, which cannot
    // also store the value they reduce.
    guard x.dtype != .f16 && x.dtype != .bf16 && body.resultTypes[0].dtype != .f16 && body.resultTypes[0].dtype != .bf16 else { return nil }
    return root.operands[0]
  }

  /// The reduction region also returns its reduced value, which replaces the loop region's result.
  static func returnReducedValue(_ function: inout Function, loop loopID: OpID, reduction reductionID: OpID) {
    var reduction = function[reductionID]
    var body = reduction.body!
    let reduced = columnReducedValue(reduction)!
    body.returnValues.append(reduced)
    body.resultTypes.append(body.type(of: reduced))
    reduction.regions = [body]
    let loopResult = function[loopID].results[0]
    function[loopResult].definition = .result(reductionID, reduction.results.count)
    reduction.results.append(loopResult)
    function[reductionID] = reduction
  }

  /// A fusion every reader of which duplicated it (each copied the cheap op in) is dead; merged
  /// into a consumer it would stay alive as an unused result, so it goes first.
  static func dropUnusedFusions(_ function: inout Function) {
    var used = Set(function.returnValues)
    var kept: [OpID] = []
    for id in function.body.reversed() {
      let op = function[id]
      if op.code == .fusion && !op.results.contains(where: used.contains) { continue }
      used.formUnion(op.operands)
      kept.append(id)
    }
    function.body = kept.reversed()
  }

  /// Rewrites the consumer to compute the producer's results too (appended after its own,
  /// keeping their value ids); the caller drops the producer from the body.
  static func mergeOnce(_ function: inout Function, producer producerID: OpID, consumer consumerID: OpID) {
    let producer = function[producerID], consumer = function[consumerID]
    let producerBody = producer.body!, consumerBody = consumer.body!
    var body = Function(name: "", location: consumerBody.location)
    var operands: [ValueID] = []
    var argumentFor: [ValueID: ValueID] = [:]     // outer value -> merged body argument
    func argument(_ outer: ValueID, _ name: String) -> ValueID {
      if let a = argumentFor[outer] { return a }
      let a = body.addArgument(name: name, type: function.type(of: outer))
      argumentFor[outer] = a
      operands.append(outer)
      return a
    }
    // Copies `source`'s ops into `body`; `inner` maps source values to merged body values. Both
    // bodies carry their own copies of shared constants (phase 2 copies constants into every
    // region): the merged body keeps one of each.
    struct ConstantKey: Hashable { let attributes: Attributes; let type: TensorType }
    var constants: [ConstantKey: ValueID] = [:]
    func copy(_ source: Function, _ inner: inout [ValueID: ValueID]) {
      for id in source.body {
        let o = source[id]
        if o.code == .constant, o.operands.isEmpty {
          let key = ConstantKey(attributes: o.attributes, type: source.type(of: o.results[0]))
          if let existing = constants[key] { inner[o.results[0]] = existing; continue }
          let new = body.append(o.code, [], resultTypes: [key.type], resultNames: [source[o.results[0]].name],
                                attributes: o.attributes, location: o.location)
          constants[key] = body[new].results[0]
          inner[o.results[0]] = body[new].results[0]
          continue
        }
        let new = body.append(o.code, o.operands.map { inner[$0]! }, resultTypes: o.results.map { source.type(of: $0) },
                              resultNames: o.results.map { source[$0].name }, attributes: o.attributes,
                              callee: o.callee, location: o.location)
        for (old, value) in zip(o.results, body[new].results) { inner[old] = value }
      }
    }
    var fromProducer: [ValueID: ValueID] = [:]
    for (k, a) in producerBody.arguments.enumerated() { fromProducer[a] = argument(producer.operands[k], producerBody[a].name) }
    copy(producerBody, &fromProducer)
    let producerResults = producerBody.returnValues.map { fromProducer[$0]! }
    var fromConsumer: [ValueID: ValueID] = [:]
    for (k, a) in consumerBody.arguments.enumerated() {
      let outer = consumer.operands[k]
      if let r = producer.results.firstIndex(of: outer) { fromConsumer[a] = producerResults[r] }
      else { fromConsumer[a] = argument(outer, consumerBody[a].name) }
    }
    copy(consumerBody, &fromConsumer)
    body.returnValues = consumerBody.returnValues.map { fromConsumer[$0]! } + producerResults
    body.resultTypes = consumerBody.resultTypes + producerBody.resultTypes
    var merged = consumer
    merged.operands = operands
    merged.regions = [body]
    for (k, r) in producer.results.enumerated() {
      function[r].definition = .result(consumerID, consumer.results.count + k)
    }
    merged.results = consumer.results + producer.results
    function[consumerID] = merged
  }
}

/// Structural value numbering across fusion bodies: two values get the same number when they are
/// computed by the same ops, attributes and types from the same outer values (hash-consing, so a
/// value read twice is numbered once: the cost is the body's size, never the size of the tree it
/// would spell out).
struct StructuralNumbering {
  enum Key: Hashable {
    case outer(ValueID)
    case global(String)
    case op(code: OpCode, result: Int, operands: [Int], attributes: Attributes, type: TensorType)
  }
  private var numbers: [Key: Int] = [:]

  mutating func number(_ key: Key) -> Int {
    if let n = numbers[key] { return n }
    let n = numbers.count
    numbers[key] = n
    return n
  }

  /// The number of every value of `body` (indexed by value id; -1 for values no live op defines),
  /// its arguments bound to the outer values `operands`.
  mutating func numbers(of body: Function, operands: [ValueID]) -> [Int] {
    var result = [Int](repeating: -1, count: body.values.count)
    for (k, argument) in body.arguments.enumerated() { result[argument.index] = number(.outer(operands[k])) }
    for (k, value) in body.values.enumerated() {
      if case .global(let name) = value.definition { result[k] = number(.global(name)) }
    }
    for id in body.body {
      let op = body[id]
      let inputs = op.operands.map { result[$0.index] }
      for (index, r) in op.results.enumerated() {
        result[r.index] = number(.op(code: op.code, result: index, operands: inputs, attributes: op.attributes, type: body.type(of: r)))
      }
    }
    return result
  }
}
