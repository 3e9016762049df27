// EmbeddingLowering — how training sees embedding lookups. A table's gradient is sparse (the rows
// a batch read), so lookups are not differentiated in the graph: each lookup of the (inlined)
// loss function becomes a *row input* the runtime fills before the step (training lookups that
// insert new ids), and its gradient a step output the runtime sums per unique row and hands to
// the table's sparse optimizer. A pooled lookup becomes a row input of shape [B, L, dim] plus
// the combination in the graph — validity of each position from the ids and lengths, the
// combiner's weights, a weighted sum over L — so the same autodiff and fusion serve it.
// Ids (and lengths) must be inputs of the loss function: the runtime needs them before the step.

import TTIR
import TTPasses

/// One lookup of the lowered loss function and where the runtime finds its pieces.
public struct LookupSite: Sendable, Equatable {
  public var table: String
  public var pooled: Bool
  /// Input positions (in the lowered loss function) of the ids, lengths and rows.
  public var idsInput: Int
  public var lengthsInput: Int?
  public var paddingID: Int64?
  public var rowsInput: Int
  public var rowsType: TensorType
}

public enum EmbeddingLowering {
  /// `module` with `function` inlined and its lookups replaced by row inputs (appended after its
  /// inputs, one per lookup, named `<table>.rows.<k>`), and the sites in order.
  public static func lower(_ module: Module, function name: String) throws(AutodiffError) -> (Module, [LookupSite]) {
    guard module.function(named: name) != nil else { throw .unknownFunction(name) }
    var flat = module
    _ = Inlining.pass.run(&flat, PassContext())
    let source = flat.function(named: name)!
    guard source.body.contains(where: { source[$0].code.info.opClass == .table }) else { return (module, []) }

    var f = Function(name: name, location: source.location)
    var map: [ValueID: ValueID] = [:]
    for a in source.arguments { map[a] = f.addArgument(name: source[a].name, type: source.type(of: a)) }
    let tables = Set(flat.tables.map(\.name))
    for (k, v) in source.values.enumerated() {
      // Parameters stay globals; tables leave the function (their lookups become row inputs).
      if case .global(let g) = v.definition, !tables.contains(g) { map[ValueID(k)] = f.globalValue(name: g, type: v.type) }
    }
    var sites: [LookupSite] = []
    func inputIndex(_ v: ValueID, _ what: String, _ op: OpNode) throws(AutodiffError) -> Int {
      guard case .argument(let i) = source[v].definition else {
        throw .invalid("'\(op.code)' reads \(what) %\(source[v].name), which is computed; training needs \(what) to be an input of '@\(name)'")
      }
      return i
    }
    for id in source.body {
      let op = source[id]
      guard op.code.info.opClass == .table else {
        let new = f.append(op.code, op.operands.map { map[$0]! }, resultTypes: op.results.map { source.type(of: $0) },
                           resultNames: op.results.map { source[$0].name }, attributes: op.attributes,
                           callee: op.callee, location: op.location, regions: op.regions)
        for (o, n) in zip(op.results, f[new].results) { map[o] = n }
        continue
      }
      guard case .global(let table) = source[op.operands[0]].definition else { throw .invalid("'\(op.code)' reads no table") }
      let idsType = source.type(of: op.operands[1])
      let rowType = source.type(of: op.operands[0])
      let rowsType = rowType.with(dims: idsType.dims + rowType.dims)
      let rows = f.addArgument(name: "\(table).rows.\(sites.count)", type: rowsType)
      var site = LookupSite(table: table, pooled: op.code == .embeddingLookupPooled, idsInput: try inputIndex(op.operands[1], "ids", op),
                            lengthsInput: nil, paddingID: op.attributes.int("padding_id").map(Int64.init),
                            rowsInput: f.arguments.count - 1, rowsType: rowsType)
      if op.code == .embeddingLookup {
        map[op.results[0]] = rows
      } else {
        if op.operands.count > 2 { site.lengthsInput = try inputIndex(op.operands[2], "lengths", op) }
        map[op.results[0]] = pooled(&f, rows: rows, ids: map[op.operands[1]]!, lengths: op.operands.count > 2 ? map[op.operands[2]]! : nil,
                                    op: op, resultType: source.type(of: op.results[0]))
      }
      sites.append(site)
    }
    f.returnValues = source.returnValues.map { map[$0]! }
    f.resultTypes = source.resultTypes
    var result = flat
    result.functions.removeAll { $0.name == name }
    result.functions.append(f)
    if let first = Verifier.verify(result).first { throw .invalid("lowering embedding lookups gave an invalid function (a bug): \(first)") }
    return (result, sites)
  }

  /// sum over L of rows[b, l, :] * weight[b, l], with weight 0 at invalid positions and the
  /// combiner's 1, 1/count or 1/sqrt(count) elsewhere (count clamped to 1 so empty examples give 0).
  static func pooled(_ f: inout Function, rows: ValueID, ids: ValueID, lengths: ValueID?, op: OpNode, resultType: TensorType) -> ValueID {
    let idsType = f.type(of: ids)
    let (batch, width) = (idsType.dims[0], idsType.dims[1])
    let mask = TensorType(.i1, [batch, width])
    func constant(_ x: Double, _ dtype: DType) -> ValueID {
      let tensor = dtype.isFloat ? Tensor(dtype, shape: [], floats: [x]) : Tensor(dtype, shape: [], ints: [Int64(x)])
      return f.appendValue(.constant, [], type: .scalar(dtype), attributes: Attributes(["value": .tensor(tensor)]))
    }
    var valid: ValueID? = nil
    if let padding = op.attributes.int("padding_id") {
      valid = f.appendValue(.ne, [ids, constant(Double(padding), idsType.dtype)], type: mask)
    }
    if let lengths {
      let positions = f.appendValue(.iota, [], type: TensorType(.i64, [batch, width]), attributes: Attributes(["dim": .int(1)]))
      var length = lengths
      if f.type(of: lengths).dtype != .i64 { length = f.appendValue(.cast, [lengths], type: TensorType(.i64, [batch])) }
      let column = f.appendValue(.reshape, [length], type: TensorType(.i64, [batch, .known(1)]))
      let inRange = f.appendValue(.lt, [positions, column], type: mask)
      valid = valid.map { f.appendValue(.and, [$0, inRange], type: mask) } ?? inRange
    }
    let weightType = TensorType(.f32, [batch, width])
    var weights = valid.map { f.appendValue(.cast, [$0], type: weightType) }
      ?? f.appendValue(.broadcastTo, [constant(1, .f32)], type: weightType)
    let combiner = op.attributes.string("combiner") ?? "sum"
    if combiner != "sum" {
      let counts = f.appendValue(.reduceSum, [weights], type: TensorType(.f32, [batch, .known(1)]),
                                 attributes: Attributes(["axes": .ints([1]), "keepdims": .bool(true)]))
      var denominator = f.appendValue(.max, [counts, constant(1, .f32)], type: TensorType(.f32, [batch, .known(1)]))
      if combiner == "sqrtn" { denominator = f.appendValue(.sqrt, [denominator], type: TensorType(.f32, [batch, .known(1)])) }
      weights = f.appendValue(.div, [weights, denominator], type: weightType)
    }
    let column = f.appendValue(.reshape, [weights], type: TensorType(.f32, [batch, width, .known(1)]))
    let weighted = f.appendValue(.mul, [rows, column], type: f.type(of: rows))
    return f.appendValue(.reduceSum, [weighted], type: resultType, attributes: Attributes(["axes": .ints([1])]))
  }
}
