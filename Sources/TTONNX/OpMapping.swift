// OpMapping — the translation of each ONNX op (default domain, opset 13+) into TTIR ops. Every
// attribute an op accepts is listed with it; an attribute not listed, or a value the mapping does
// not translate exactly (a pooling dilation, a non-constant pad mode, select_last_index...), is an
// Unsupported error naming it, so no node is ever translated approximately. ONNX images are NCHW
// and filters OIHW; TTIR's convolutions and pools are NHWC/HWIO, so those ops are wrapped in
// transposes (the optimizer cancels adjacent pairs). IR-specs/onnx.md lists the mapping.
import TTIR

/// What a node output becomes: a TTIR value, or a constant known at import time.
enum NodeOutput {
  case value(ValueID), constant(Tensor)
  /// An integer vector (or, `isScalar`, one element) known at import only up to symbols: the
  /// shape of a tensor with symbolic dimensions and what Gather, Slice, Concat, Unsqueeze,
  /// Squeeze and Cast make of it. It may feed Reshape, Expand and ConstantOfShape, never data.
  case symbolicShape([Dim], isScalar: Bool)
  /// An image in NHWC (a conv2d or pool result): the NCHW value ONNX means is its transpose,
  /// made on first use (Translator.channelsLast).
  case channelsLast(ValueID)
}

struct OpMapping {
  let node: ONNXNode
  /// A 1-D convolution or pool, run as 2-D with H = 1: window attributes gain a leading entry.
  var oneD = false

  /// A window attribute (strides, dilations, kernel_shape, pads), lifted to 2-D for 1-D ops.
  func windowInts(_ name: String) throws(Unsupported) -> [Int]? {
    guard let v = try ints(name) else { return nil }
    guard oneD else { return v }
    if name == "pads" {
      guard v.count == 2 else { throw Unsupported("pads \(v) for a 1-D window") }
      return [0, v[0], 0, v[1]]
    }
    guard v.count == 1 else { throw Unsupported("\(name) \(v) for a 1-D window") }
    return [1] + v
  }

  /// [N, C, L] -> [N, C, 1, L] for 1-D ops (sets `oneD`).
  mutating func liftOneD(_ v: ValueID, _ t: inout Translator) throws(Unsupported) -> ValueID {
    let type = t.type(v)
    guard type.rank == 3 else { return v }
    oneD = true
    return try t.emit(.reshape, [v], declared: type.with(dims: [type.dims[0], type.dims[1], .known(1), type.dims[2]]))
  }
  func lowerOneD(_ v: ValueID, _ t: inout Translator) throws(Unsupported) -> ValueID {
    guard oneD else { return v }
    let type = t.type(v)
    return try t.emit(.reshape, [v], declared: type.with(dims: [type.dims[0], type.dims[1], type.dims[3]]))
  }

  static let unary: [String: OpCode] = [
    "Abs": .abs, "Neg": .neg, "Exp": .exp, "Log": .log, "Sqrt": .sqrt, "Tanh": .tanh, "Sigmoid": .sigmoid,
    "Relu": .relu, "Erf": .erf, "Sin": .sin, "Cos": .cos, "Floor": .floor, "Ceil": .ceil, "Sign": .sign,
    "Not": .not, "Softplus": .softplus,
  ]
  static let binary: [String: OpCode] = [
    "Add": .add, "Sub": .sub, "Mul": .mul, "Div": .div, "Equal": .eq, "Less": .lt, "LessOrEqual": .le,
    "Greater": .gt, "GreaterOrEqual": .ge, "And": .and, "Or": .or, "Xor": .ne,
  ]
  static let reductions: [String] = ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1",
                                     "ReduceL2", "ReduceSumSquare", "ReduceLogSum", "ReduceLogSumExp"]
  static let others: Set<String> = [
    "Pow", "Max", "Min", "Sum", "Mean", "Where", "Clip", "Cast", "CastLike", "Identity", "Dropout", "Reciprocal",
    "Gemm", "MatMul", "Conv", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "BatchNormalization",
    "InstanceNormalization", "LayerNormalization", "Softmax", "LogSoftmax", "Gelu", "LeakyRelu", "PRelu", "Elu",
    "Selu", "HardSigmoid", "HardSwish", "Softsign", "Mish", "ThresholdedRelu", "IsNaN", "ArgMax", "ArgMin",
    "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Concat", "Slice", "Pad", "Expand", "Gather",
    "Shape", "Size", "ConstantOfShape", "Range", "Tile", "Split", "Constant", "OneHot", "SoftmaxCrossEntropyLoss",
  ]

  /// Ops whose meaning (not only their attributes) changed: before opset 13, Softmax, LogSoftmax
  /// and Hardmax flattened the input from `axis` on; Concat's axis had a default before 4, Tile
  /// took (tiles, axis) before 6; GroupNormalization's scale and bias were per group before 21;
  /// Resize took (X, scales) before 11.
  static let minimumOpset: [String: Int64] = ["Softmax": 13, "LogSoftmax": 13, "Hardmax": 13, "Concat": 4, "Tile": 6,
                                              "GroupNormalization": 21, "Resize": 11]

  /// Every op type the mapping translates (for some attribute values and element types).
  static var supportedOpTypes: [String] {
    (Array(unary.keys) + Array(binary.keys) + reductions + Array(others) + Array(composites)).sorted()
  }
  static func isKnown(_ opType: String) -> Bool {
    unary[opType] != nil || binary[opType] != nil || reductions.contains(opType) || others.contains(opType)
      || composites.contains(opType)
  }

  /// Inputs that must be constants (shapes, axes, pads...): graph inputs there can be frozen.
  static func constantInputPositions(_ opType: String) -> [Int] {
    switch opType {
    case "Reshape", "Expand", "Squeeze", "Unsqueeze", "Tile", "Split", "Trilu", "CumSum", "CenterCropPad": return [1]
    case "Slice": return [1, 2, 3, 4]
    case "Resize": return [1, 2, 3]
    case "Upsample": return [1]
    case "Pad": return [1, 2, 3]
    case "ConstantOfShape": return [0]
    case "Range": return [0, 1, 2]
    case "OneHot": return [1, 2]
    case "Dropout": return [1, 2]
    default: return reductions.contains(opType) ? [1] : []
    }
  }

  // MARK: attribute access

  func checkAttributes(_ allowed: Set<String>) throws(Unsupported) {
    for a in node.attributes where !allowed.contains(a.name) { throw Unsupported("attribute '\(a.name)'") }
    for a in node.attributes where !a.refAttrName.isEmpty { throw Unsupported("attribute '\(a.name)' refers to a function attribute") }
  }
  func int(_ name: String, _ fallback: Int) throws(Unsupported) -> Int {
    guard let a = node.attribute(name) else { return fallback }
    guard case .int(let v) = a.value else { throw Unsupported("attribute '\(name)' is not an integer") }
    guard abs(v) <= Int64(maxTensorElements) else { throw Unsupported("attribute '\(name)' = \(v) is out of range") }
    return Int(v)
  }
  func float(_ name: String, _ fallback: Double) throws(Unsupported) -> Double {
    guard let a = node.attribute(name) else { return fallback }
    switch a.value {
    case .float(let v): return Double(v)
    case .int(let v): return Double(v)
    default: throw Unsupported("attribute '\(name)' is not a float")
    }
  }
  func ints(_ name: String) throws(Unsupported) -> [Int]? {
    guard let a = node.attribute(name) else { return nil }
    guard case .ints(let v) = a.value else { throw Unsupported("attribute '\(name)' is not an integer list") }
    guard v.allSatisfy({ abs($0) <= Int64(maxTensorElements) }) else { throw Unsupported("attribute '\(name)' = \(v) is out of range") }
    return v.map { Int($0) }
  }
  func string(_ name: String, _ fallback: String) throws(Unsupported) -> String {
    guard let a = node.attribute(name) else { return fallback }
    guard case .string(let v) = a.value else { throw Unsupported("attribute '\(name)' is not a string") }
    return v
  }

  // MARK: inputs

  func hasInput(_ k: Int) -> Bool { k < node.inputs.count && !node.inputs[k].isEmpty }
  func input(_ k: Int, _ t: inout Translator) throws(Unsupported) -> ValueID {
    guard hasInput(k) else { throw Unsupported("input \(k) is missing") }
    return try t.value(node.inputs[k])
  }
  func optionalInput(_ k: Int, _ t: inout Translator) throws(Unsupported) -> ValueID? {
    hasInput(k) ? try t.value(node.inputs[k]) : nil
  }
  /// An input whose value must be known at import time.
  func constantInput(_ k: Int, _ t: Translator, what: String) throws(Unsupported) -> Tensor? {
    guard hasInput(k) else { return nil }
    guard let c = t.constants[node.inputs[k]] else {
      throw Unsupported("input \(k) ('\(what)') must be a constant (an initializer, a Constant node or computed from them)")
    }
    return c
  }
  func constantInts(_ k: Int, _ t: Translator, what: String) throws(Unsupported) -> [Int]? {
    guard let c = try constantInput(k, t, what: what) else { return nil }
    guard c.dtype.isInteger else { throw Unsupported("input \(k) ('\(what)') is not an integer tensor") }
    return c.int64s.map { Int(clamping: $0) }
  }

  /// A shape operand: a constant integer vector, or a symbolic shape (entries may be symbols).
  func shapeInput(_ k: Int, _ t: Translator, what: String) throws(Unsupported) -> [Dim]? {
    guard hasInput(k) else { return nil }
    if let symbolic = t.symbolicShapes[node.inputs[k]] { return symbolic.dims }
    return try constantInts(k, t, what: what)?.map { .known($0) }
  }

  func inputCount(_ range: ClosedRange<Int>) throws(Unsupported) {
    let n = node.inputs.count
    guard range.contains(n) else { throw Unsupported("\(n) inputs (expected \(range.lowerBound)...\(range.upperBound))") }
  }
  /// Extra outputs the mapping does not produce must be absent (empty names).
  func onlyOutputs(_ count: Int, _ what: String) throws(Unsupported) {
    for k in count..<max(count, node.outputs.count) where !node.outputs[k].isEmpty {
      throw Unsupported("output \(k) (\(what)) is not supported")
    }
  }

  // MARK: translation

  mutating func translate(_ t: inout Translator) throws(Unsupported) -> [NodeOutput?] {
    let op = node.opType
    if let code = Self.unary[op] {
      try checkAttributes([]); try inputCount(1...1)
      return [.value(try t.emit(code, [try input(0, &t)]))]
    }
    if let code = Self.binary[op] {
      try checkAttributes([]); try inputCount(2...2)
      let a = try input(0, &t), b = try input(1, &t)
      if op == "Xor" && t.type(a).dtype != .i1 { throw Unsupported("element type \(t.type(a).dtype) (Xor is translated for bool only)") }
      try sameType(a, b, t)
      return [.value(try t.emit(code, [a, b]))]
    }
    if Self.reductions.contains(op) { return [.value(try reduction(&t))] }
    switch op {
    case "Constant": return [try constantNode()]
    case "Identity":
      try checkAttributes([]); try inputCount(1...1)
      return [.value(try input(0, &t))]
    case "Dropout":
      try checkAttributes(["seed"]); try inputCount(1...3); try onlyOutputs(1, "the dropout mask")
      if let training = try constantInput(2, t, what: "training_mode"), training.int64s.first ?? 0 != 0 {
        throw Unsupported("training_mode = true (only inference dropout, an identity, is translated)")
      }
      return [.value(try input(0, &t))]
    case "Reciprocal":
      try checkAttributes([]); try inputCount(1...1)
      let x = try input(0, &t)
      return [.value(try t.emit(.div, [t.scalar(1, t.type(x).dtype), x]))]
    case "Pow":
      try checkAttributes([]); try inputCount(2...2)
      let x = try input(0, &t)
      var y = try input(1, &t)
      let dtype = t.type(x).dtype
      guard dtype.isFloat else { throw Unsupported("element type \(dtype) for the base (TTIR 'pow' is float only)") }
      if t.type(y).dtype != dtype { y = try t.emit(.cast, [y], declared: t.type(y).with(dtype: dtype)) }
      return [.value(try t.emit(.pow, [x, y]))]
    case "Max", "Min", "Sum", "Mean":
      try checkAttributes([]); try inputCount(1...Int.max)
      let code: OpCode = op == "Max" ? .max : op == "Min" ? .min : .add
      var acc = try input(0, &t)
      for k in 1..<node.inputs.count {
        let b = try input(k, &t)
        try sameType(acc, b, t)
        acc = try t.emit(code, [acc, b])
      }
      if op == "Mean" && node.inputs.count > 1 {
        let dtype = t.type(acc).dtype
        guard dtype.isFloat else { throw Unsupported("Mean of element type \(dtype)") }
        acc = try t.emit(.div, [acc, t.scalar(Double(node.inputs.count), dtype)])
      }
      return [.value(acc)]
    case "Where":
      try checkAttributes([]); try inputCount(3...3)
      let c = try input(0, &t), a = try input(1, &t), b = try input(2, &t)
      return [.value(try t.emit(.where, [c, a, b]))]
    case "Clip":
      try checkAttributes([]); try inputCount(1...3)
      var x = try input(0, &t)
      if let lo = try optionalInput(1, &t) { try sameType(x, lo, t); x = try t.emit(.max, [x, lo]) }
      if let hi = try optionalInput(2, &t) { try sameType(x, hi, t); x = try t.emit(.min, [x, hi]) }
      return [.value(x)]
    case "Cast", "CastLike":
      try checkAttributes(op == "Cast" ? ["to", "saturate", "round_mode"] : ["saturate", "round_mode"])
      try inputCount(op == "Cast" ? 1...1 : 2...2)
      let x = try input(0, &t)
      let target: DType
      if op == "Cast" {
        let code = try int("to", 0)
        guard let d = ONNXDataType.dtype(code) else { throw Unsupported("cast to \(ONNXDataType.name(code))") }
        target = d
      } else {
        let like = try input(1, &t)
        target = t.type(like).dtype
      }
      if t.type(x).dtype == target { return [.value(x)] }
      return [.value(try t.emit(.cast, [x], declared: t.type(x).with(dtype: target)))]
    case "Gemm": return [.value(try gemm(&t))]
    case "MatMul": return [.value(try matmul(&t))]
    case "Conv": return [try conv(&t)]
    case "MaxPool", "AveragePool": return [try pool(&t)]
    case "GlobalAveragePool", "GlobalMaxPool":
      try checkAttributes([]); try inputCount(1...1)
      let x = try input(0, &t)
      guard t.type(x).rank >= 3 else { throw Unsupported("input of rank \(t.type(x).rank)") }
      let axes = Array(2..<t.type(x).rank).map { Int64($0) }
      return [.value(try t.emit(op == "GlobalAveragePool" ? .reduceMean : .reduceMax, [x],
                                ["axes": .ints(axes), "keepdims": .bool(true)]))]
    case "BatchNormalization": return [.value(try batchNorm(&t))]
    case "InstanceNormalization": return [.value(try instanceNorm(&t))]
    case "LayerNormalization": return try layerNorm(&t)
    case "SoftmaxCrossEntropyLoss":
      try checkAttributes(["ignore_index", "reduction"]); try inputCount(2...3)
      let x = try input(0, &t)
      guard t.type(x).rank >= 2 else { throw Unsupported("scores of rank \(t.type(x).rank)") }
      let logProb = try t.emit(.logSoftmax, [x], ["axis": .int(1)])
      return [.value(try negativeLogLikelihood(logProb, &t)), .value(logProb)]
    case "Softmax", "LogSoftmax":
      try checkAttributes(["axis"]); try inputCount(1...1)
      let x = try input(0, &t)
      return [.value(try t.emit(op == "Softmax" ? .softmax : .logSoftmax, [x], ["axis": .int(Int64(try int("axis", -1)))]))]
    case "Gelu":
      try checkAttributes(["approximate"]); try inputCount(1...1)
      let approximate = try string("approximate", "none")
      guard approximate == "none" || approximate == "tanh" else { throw Unsupported("approximate = '\(approximate)'") }
      return [.value(try t.emit(.gelu, [try input(0, &t)], approximate == "tanh" ? ["approximate": .bool(true)] : [:]))]
    case "LeakyRelu", "PRelu", "Elu", "Selu", "HardSigmoid", "HardSwish", "Softsign", "Mish", "ThresholdedRelu", "IsNaN":
      return [.value(try activation(&t))]
    case "ArgMax", "ArgMin":
      try checkAttributes(["axis", "keepdims", "select_last_index"]); try inputCount(1...1)
      guard try int("select_last_index", 0) == 0 else { throw Unsupported("select_last_index = 1") }
      let x = try input(0, &t)
      var resultDims = t.type(x).dims
      let axis = try normalizedAxis(try int("axis", 0), rank: resultDims.count)
      let keep = try int("keepdims", 1) != 0
      if keep { resultDims[axis] = .known(1) } else { resultDims.remove(at: axis) }
      return [.value(try t.emit(op == "ArgMax" ? .argmax : .argmin, [x], ["axis": .int(Int64(axis)), "keepdims": .bool(keep)],
                                declared: TensorType(.i64, resultDims)))]
    case "Reshape":
      try checkAttributes(["allowzero"]); try inputCount(2...2)
      let x = try input(0, &t)
      guard let shape = try shapeInput(1, t, what: "shape") else { throw Unsupported("no shape") }
      let allowZero = try int("allowzero", 0) != 0
      return [.value(try reshape(x, to: shape, allowZero: allowZero, &t))]
    case "Flatten":
      try checkAttributes(["axis"]); try inputCount(1...1)
      let x = try input(0, &t)
      let rank = t.type(x).rank
      var axis = try int("axis", 1)
      if axis < 0 { axis += rank }
      guard axis >= 0 && axis <= rank else { throw Unsupported("axis \(axis) for rank \(rank)") }
      let dims = t.type(x).dims
      let outer = try product(Array(dims[..<axis])), inner = try product(Array(dims[axis...]))
      return [.value(try t.emit(.reshape, [x], declared: TensorType(t.type(x).dtype, [outer, inner])))]
    case "Squeeze":
      try checkAttributes(["axes"]); try inputCount(1...2)
      let x = try input(0, &t)
      let dims = t.type(x).dims
      var axesList = try ints("axes")
      if axesList == nil { axesList = try constantInts(1, t, what: "axes") }
      var drop: Set<Int> = []
      if let axesList {
        for a in axesList {
          let axis = try normalizedAxis(a, rank: dims.count)
          guard dims[axis] == .known(1) else { throw Unsupported("squeezing axis \(a) of size \(dims[axis])") }
          drop.insert(axis)
        }
      } else {
        guard dims.allSatisfy({ !$0.isSymbolic }) else { throw Unsupported("Squeeze without axes of a tensor with symbolic dimensions") }
        for (k, d) in dims.enumerated() where d == .known(1) { drop.insert(k) }
      }
      let out = dims.enumerated().filter { !drop.contains($0.offset) }.map(\.element)
      return [.value(try t.emit(.reshape, [x], declared: TensorType(t.type(x).dtype, out)))]
    case "Unsqueeze":
      try checkAttributes(["axes"]); try inputCount(1...2)
      let x = try input(0, &t)
      let dims = t.type(x).dims
      var axesOrNil = try ints("axes")
      if axesOrNil == nil { axesOrNil = try constantInts(1, t, what: "axes") }
      guard let axesList = axesOrNil else { throw Unsupported("no axes") }
      let rank = dims.count + axesList.count
      var inserted: Set<Int> = []
      for a in axesList {
        let axis = try normalizedAxis(a, rank: rank)
        guard inserted.insert(axis).inserted else { throw Unsupported("axis \(a) listed twice") }
      }
      var out: [Dim] = [], source = dims.makeIterator()
      for k in 0..<rank { out.append(inserted.contains(k) ? .known(1) : source.next()!) }
      return [.value(try t.emit(.reshape, [x], declared: TensorType(t.type(x).dtype, out)))]
    case "Transpose":
      try checkAttributes(["perm"]); try inputCount(1...1)
      let x = try input(0, &t)
      let perm = try ints("perm") ?? Array((0..<t.type(x).rank).reversed())
      return [.value(try t.emit(.transpose, [x], ["perm": .ints(perm.map { Int64($0) })]))]
    case "Concat":
      try checkAttributes(["axis"]); try inputCount(1...Int.max)
      var operands: [ValueID] = []
      for k in 0..<node.inputs.count { operands.append(try input(k, &t)) }
      for v in operands.dropFirst() { try sameType(operands[0], v, t) }
      return [.value(try t.emit(.concat, operands, ["axis": .int(Int64(try int("axis", 0)))]))]
    case "Slice": return [.value(try slice(&t))]
    case "Pad": return [.value(try pad(&t))]
    case "Expand":
      try checkAttributes([]); try inputCount(2...2)
      let x = try input(0, &t)
      guard let shape = try shapeInput(1, t, what: "shape") else { throw Unsupported("no shape") }
      guard shape.allSatisfy({ ($0.staticSize ?? 0) >= 0 }) else { throw Unsupported("negative size in shape \(shape)") }
      let dims: [Dim]
      do { dims = try ShapeRules.broadcast(t.type(x).dims, shape) } catch { throw Unsupported("\(error)") }
      if dims == t.type(x).dims { return [.value(x)] }
      return [.value(try t.emit(.broadcastTo, [x], declared: TensorType(t.type(x).dtype, dims)))]
    case "Gather": return [.value(try gather(&t))]
    case "Shape":
      try checkAttributes(["start", "end"]); try inputCount(1...1)
      let x = try input(0, &t)
      let dims = t.type(x).dims
      var start = try int("start", 0), end = try int("end", dims.count)
      if start < 0 { start += dims.count }; if end < 0 { end += dims.count }
      start = min(max(start, 0), dims.count); end = min(max(end, start), dims.count)
      let part = Array(dims[start..<end])
      if part.contains(where: \.isSymbolic) { return [.symbolicShape(part, isScalar: false)] }
      return [.constant(Tensor(.i64, shape: [part.count], ints: part.map { Int64($0.staticSize!) }))]
    case "Size":
      try checkAttributes([]); try inputCount(1...1)
      let x = try input(0, &t)
      guard let shape = t.type(x).staticShape else { throw Unsupported("the size of a tensor with symbolic dimensions") }
      return [.constant(Tensor(.i64, shape: [], ints: [Int64(shape.reduce(1, *))]))]
    case "ConstantOfShape":
      try checkAttributes(["value"]); try inputCount(1...1)
      guard let spec = try shapeInput(0, t, what: "shape") else { throw Unsupported("no shape") }
      var fill = Tensor(.f32, shape: [], floats: [0])
      if let a = node.attribute("value") {
        guard case .tensor(let v) = a.value, let vt = v.tensor, vt.count == 1 else { throw Unsupported("attribute 'value' of an unsupported type") }
        fill = vt
      }
      if spec.contains(where: \.isSymbolic) {
        // A symbolic shape: the fill value broadcast to it.
        let scalar = t.constant(fill.reshaped([]))
        return [.value(try t.emit(.broadcastTo, [scalar], declared: TensorType(fill.dtype, spec)))]
      }
      let shape = spec.map { $0.staticSize! }
      guard shape.allSatisfy({ $0 >= 0 }), let count = elementCount(shape), count <= 1 << 28 else { throw Unsupported("shape \(shape)") }
      return [.constant(fill.dtype.isFloat ? Tensor(fill.dtype, shape: shape, floats: Array(repeating: fill.doubles[0], count: count))
                                          : Tensor(fill.dtype, shape: shape, ints: Array(repeating: fill.int64s[0], count: count)))]
    case "Range": return [.constant(try range(t))]
    case "Tile": return [.value(try tile(&t))]
    case "Split": return try split(&t)
    case "OneHot": return [.value(try oneHot(&t))]
    case _ where Self.composites.contains(op): return [.value(try composite(&t))]
    default:
      throw Unsupported("op type not supported")
    }
  }

  func sameType(_ a: ValueID, _ b: ValueID, _ t: Translator) throws(Unsupported) {
    guard t.type(a).dtype == t.type(b).dtype else { throw Unsupported("operands of element types \(t.type(a).dtype) and \(t.type(b).dtype)") }
  }

  func normalizedAxis(_ axis: Int, rank: Int) throws(Unsupported) -> Int {
    guard axis >= -rank && axis < rank else { throw Unsupported("axis \(axis) is out of range for rank \(rank)") }
    return axis < 0 ? axis + rank : axis
  }

  /// The product of dims as one dim: static, or a single symbol times 1.
  func product(_ dims: [Dim]) throws(Unsupported) -> Dim {
    var n = 1
    var symbols: [String] = []
    for d in dims {
      switch d { case .known(let k): n *= k; case .symbol(let s): symbols.append(s) }
    }
    if symbols.isEmpty { return .known(n) }
    if symbols.count == 1 && n == 1 { return .symbol(symbols[0]) }
    throw Unsupported("the product of dimensions \(dims) is not a single size or symbol")
  }

  // MARK: constants

  func constantNode() throws(Unsupported) -> NodeOutput {
    guard node.attributes.count == 1, let a = node.attributes.first else { throw Unsupported("a Constant needs exactly one value attribute") }
    switch (a.name, a.value) {
    case ("value", .tensor(let v)):
      guard let tensor = v.tensor else {
        throw Unsupported(v.isExternal ? "external tensor data" : "element type \(ONNXDataType.name(v.dataType))")
      }
      return .constant(tensor)
    case ("value_float", .float(let f)): return .constant(Tensor(.f32, shape: [], floats: [Double(f)]))
    case ("value_floats", .floats(let f)): return .constant(Tensor(.f32, shape: [f.count], floats: f.map { Double($0) }))
    case ("value_int", .int(let i)): return .constant(Tensor(.i64, shape: [], ints: [i]))
    case ("value_ints", .ints(let i)): return .constant(Tensor(.i64, shape: [i.count], ints: i))
    default: throw Unsupported("attribute '\(a.name)'")
    }
  }

  func range(_ t: Translator) throws(Unsupported) -> Tensor {
    try checkAttributes([]); try inputCount(3...3)
    guard let start = try constantInput(0, t, what: "start"), let limit = try constantInput(1, t, what: "limit"),
          let delta = try constantInput(2, t, what: "delta") else { throw Unsupported("missing inputs") }
    if !start.dtype.isFloat {
      // Integers count exactly in 128 bits (int64 extremes overflow a difference in 64); the
      // elements, all between start and limit, are a running sum.
      let si = start.int64s[0], li = limit.int64s[0], di = delta.int64s[0]
      guard di != 0 else { throw Unsupported("delta 0") }
      let span = Int128(li) - Int128(si), step = Int128(di)
      var exact = span / step
      if span % step != 0 && (span > 0) == (step > 0) { exact += 1 }
      guard exact <= 1 << 24 else { throw Unsupported("a range of \(exact) elements") }
      let count = Int(max(exact, 0))
      var value = si
      return Tensor(start.dtype, shape: [count], ints: (0..<count).map { i in
        if i > 0 { value = value &+ di }
        return value
      })
    }
    let s = start.doubles[0], l = limit.doubles[0], d = delta.doubles[0]
    guard d != 0, d.isFinite, s.isFinite, l.isFinite else { throw Unsupported("delta \(d)") }
    let exact = ((l - s) / d).rounded(.up)
    guard exact <= Double(1 << 24) else { throw Unsupported("a range of \(exact) elements") }
    let count = max(Int(exact), 0)
    return Tensor(start.dtype, shape: [count], floats: (0..<count).map { roundToFloat(s + Double($0) * d, start.dtype) })
  }

  // MARK: linear algebra

  mutating func gemm(_ t: inout Translator) throws(Unsupported) -> ValueID {
    try checkAttributes(["alpha", "beta", "transA", "transB"]); try inputCount(2...3)
    let a = try input(0, &t), b = try input(1, &t)
    try sameType(a, b, t)
    guard t.type(a).rank == 2 && t.type(b).rank == 2 else { throw Unsupported("Gemm of operands of rank \(t.type(a).rank) and \(t.type(b).rank)") }
    let alpha = try float("alpha", 1), beta = try float("beta", 1)
    var attrs: [String: Attribute] = [:]
    if try int("transA", 0) != 0 { attrs["transpose_a"] = .bool(true) }
    if try int("transB", 0) != 0 { attrs["transpose_b"] = .bool(true) }
    var y = try t.emit(.matmul, [a, b], attrs)
    let dtype = t.type(y).dtype
    if alpha != 1 { y = try t.emit(.mul, [y, t.scalar(alpha, dtype)]) }
    if var c = try optionalInput(2, &t) {
      try sameType(y, c, t)
      if beta != 1 { c = try t.emit(.mul, [c, t.scalar(beta, dtype)]) }
      let sum = try t.emit(.add, [y, c])
      guard t.type(sum).dims == t.type(y).dims else { throw Unsupported("C of shape \(t.type(c).dims) does not broadcast to the product's") }
      y = sum
    }
    return y
  }

  mutating func matmul(_ t: inout Translator) throws(Unsupported) -> ValueID {
    try checkAttributes([]); try inputCount(2...2)
    var a = try input(0, &t), b = try input(1, &t)
    try sameType(a, b, t)
    let ta = t.type(a), tb = t.type(b)
    guard ta.rank >= 1 && tb.rank >= 1 else { throw Unsupported("MatMul of a scalar") }
    if ta.rank == 1 { a = try t.emit(.reshape, [a], declared: ta.with(dims: [.known(1)] + ta.dims)) }
    if tb.rank == 1 { b = try t.emit(.reshape, [b], declared: tb.with(dims: tb.dims + [.known(1)])) }
    var y = try t.emit(.matmul, [a, b])
    if ta.rank == 1 || tb.rank == 1 {
      var dims = t.type(y).dims
      if tb.rank == 1 { dims.removeLast() }
      if ta.rank == 1 { dims.remove(at: dims.count - (tb.rank == 1 ? 1 : 2)) }
      y = try t.emit(.reshape, [y], declared: t.type(y).with(dims: dims))
    }
    return y
  }

  // MARK: convolution and pooling

  /// NCHW -> NHWC and back.
  static let toNHWC: [Int64] = [0, 2, 3, 1], toNCHW: [Int64] = [0, 3, 1, 2]

  /// TTIR window attributes from ONNX's auto_pad/pads/strides for the spatial sizes `sizes`,
  /// effective windows `windows`: explicit `pads = [top, bottom, left, right]` always.
  func windowAttributes(sizes: [Dim], kernel: [Int], dilations: [Int], ceilMode: Bool) throws(Unsupported) -> [String: Attribute] {
    let strides = try windowInts("strides") ?? [1, 1]
    guard strides.count == 2, strides.allSatisfy({ $0 >= 1 && $0 <= 1 << 20 }) else { throw Unsupported("strides \(strides)") }
    guard dilations.count == 2, dilations.allSatisfy({ $0 >= 1 && $0 <= 1 << 20 }) else { throw Unsupported("dilations \(dilations)") }
    guard let h = sizes[0].staticSize, let w = sizes[1].staticSize else { throw Unsupported("symbolic spatial dimensions \(sizes)") }
    let n = [h, w]
    let autoPad = try string("auto_pad", "NOTSET")
    var begin = [0, 0], end = [0, 0]
    switch autoPad {
    case "NOTSET":
      if let pads = try windowInts("pads") {
        guard pads.count == 4, pads.allSatisfy({ $0 >= 0 }) else { throw Unsupported("pads \(pads)") }
        begin = [pads[0], pads[1]]; end = [pads[2], pads[3]]
      }
    case "VALID": break
    case "SAME_UPPER", "SAME_LOWER":
      for k in 0..<2 {
        let e = (kernel[k] - 1) * dilations[k] + 1
        let out = (n[k] + strides[k] - 1) / strides[k]
        let total = max((out - 1) * strides[k] + e - n[k], 0)
        let small = total / 2, large = total - small
        if autoPad == "SAME_UPPER" { begin[k] = small; end[k] = large } else { begin[k] = large; end[k] = small }
      }
    default: throw Unsupported("auto_pad = '\(autoPad)'")
    }
    if ceilMode {
      for k in 0..<2 {
        let e = (kernel[k] - 1) * dilations[k] + 1
        let span = n[k] + begin[k] + end[k] - e
        guard span >= 0 else { break }
        var out = (span + strides[k] - 1) / strides[k] + 1
        // The last window must start inside the input or the leading padding (PyTorch and ONNX).
        if (out - 1) * strides[k] >= n[k] + begin[k] { out -= 1 }
        end[k] += max((out - 1) * strides[k] + e - (n[k] + begin[k] + end[k]), 0)
      }
    }
    return ["strides": .ints(strides.map { Int64($0) }),
            "pads": .ints([begin[0], end[0], begin[1], end[1]].map { Int64($0) })]
  }

  /// Input 0 of a 2-D Conv or pool when its producer left it in NHWC (Translator.channelsLast):
  /// that value and the NCHW type it stands for.
  func channelsLastInput(_ t: Translator) -> (value: ValueID, nchw: TensorType)? {
    guard hasInput(0), let v = t.channelsLast[node.inputs[0]] else { return nil }
    let d = t.type(v).dims
    return (v, t.type(v).with(dims: [d[0], d[3], d[1], d[2]]))
  }

  /// The NHWC result `y` as the node's output: kept in NHWC (transposed to NCHW where something
  /// needs that), or for 1-D ops transposed and reshaped back to [N, C, L].
  func imageOutput(_ y: ValueID, _ t: inout Translator) throws(Unsupported) -> NodeOutput {
    guard oneD else { return .channelsLast(y) }
    return .value(try lowerOneD(try t.emit(.transpose, [y], ["perm": .ints(Self.toNCHW)]), &t))
  }

  mutating func conv(_ t: inout Translator) throws(Unsupported) -> NodeOutput {
    try checkAttributes(["auto_pad", "dilations", "group", "kernel_shape", "pads", "strides"]); try inputCount(2...3)
    let nhwcInput = channelsLastInput(t)
    var x: ValueID
    if let nhwcInput { x = nhwcInput.value } else { x = try input(0, &t) }
    var w = try input(1, &t)
    try sameType(x, w, t)
    // An initializer filter is already HWIO (Translator.hwioFilters); any other is OIHW.
    let storedHWIO = t.hwioFilters.contains(node.inputs[1])
    if nhwcInput == nil && t.type(x).rank == 3 && t.type(w).rank == 3 { x = try liftOneD(x, &t); w = try liftOneD(w, &t) }
    let tx = nhwcInput?.nchw ?? t.type(x), tw = t.type(w)
    guard tx.rank == 4 && tw.rank == 4 else { throw Unsupported("a \(tx.rank - 2)-D convolution (1-D and 2-D are translated)") }
    guard let kh = tw.dims[storedHWIO ? 0 : 2].staticSize, let kw = tw.dims[storedHWIO ? 1 : 3].staticSize else { throw Unsupported("symbolic kernel size") }
    if let kernel = try windowInts("kernel_shape"), kernel != [kh, kw] { throw Unsupported("kernel_shape \(kernel) differs from the weights' [\(kh), \(kw)]") }
    let dilations = try windowInts("dilations") ?? [1, 1]
    var attrs = try windowAttributes(sizes: [tx.dims[2], tx.dims[3]], kernel: [kh, kw], dilations: dilations, ceilMode: false)
    attrs["dilations"] = .ints(dilations.map { Int64($0) })
    let group = try int("group", 1)
    if group != 1 { attrs["groups"] = .int(Int64(group)) }
    var xh = x
    if nhwcInput == nil { xh = try t.emit(.transpose, [x], ["perm": .ints(Self.toNHWC)]) }
    let wh = storedHWIO ? w : try t.emit(.transpose, [w], ["perm": .ints([2, 3, 1, 0])])
    var y = try t.emit(.conv2d, [xh, wh], attrs)
    if let bias = try optionalInput(2, &t) {
      try sameType(x, bias, t)
      y = try t.emit(.add, [y, bias])
    }
    return try imageOutput(y, &t)
  }

  mutating func pool(_ t: inout Translator) throws(Unsupported) -> NodeOutput {
    let isMax = node.opType == "MaxPool"
    try checkAttributes(isMax ? ["auto_pad", "ceil_mode", "dilations", "kernel_shape", "pads", "storage_order", "strides"]
                              : ["auto_pad", "ceil_mode", "count_include_pad", "dilations", "kernel_shape", "pads", "strides"])
    try inputCount(1...1); try onlyOutputs(1, "the indices of the maxima")
    let nhwcInput = channelsLastInput(t)
    var x: ValueID
    if let nhwcInput { x = nhwcInput.value } else { x = try liftOneD(try input(0, &t), &t) }
    let tx = nhwcInput?.nchw ?? t.type(x)
    guard tx.rank == 4 else { throw Unsupported("a \(tx.rank - 2)-D pool (1-D and 2-D are translated)") }
    guard let kernel = try windowInts("kernel_shape"), kernel.count == 2, kernel.allSatisfy({ $0 >= 1 }) else { throw Unsupported("kernel_shape must list one size per spatial axis") }
    let dilations = try windowInts("dilations") ?? [1, 1]
    guard dilations == [1, 1] else { throw Unsupported("dilations \(dilations) (TTIR pools have none)") }
    let ceilMode = try int("ceil_mode", 0) != 0
    var attrs = try windowAttributes(sizes: [tx.dims[2], tx.dims[3]], kernel: kernel, dilations: dilations, ceilMode: ceilMode)
    attrs["window"] = .ints(kernel.map { Int64($0) })
    if !isMax {
      let includePad = try int("count_include_pad", 0) != 0
      if includePad {
        if ceilMode, let plain = try? windowAttributes(sizes: [tx.dims[2], tx.dims[3]], kernel: kernel, dilations: dilations, ceilMode: false),
           case .ints(let a)? = attrs["pads"], case .ints(let b)? = plain["pads"], a != b {
          throw Unsupported("ceil_mode = 1 with count_include_pad = 1 where the ceiling adds padding (its divisor differs)")
        }
        attrs["count_include_pad"] = .bool(true)
      }
    }
    if case .ints(let pads)? = attrs["pads"] {
      for (k, p) in pads.enumerated() where p >= Int64(kernel[k / 2]) {
        throw Unsupported("padding \(p) is not smaller than the window \(kernel[k / 2])")
      }
    }
    if nhwcInput == nil { x = try t.emit(.transpose, [x], ["perm": .ints(Self.toNHWC)]) }
    let xh = x
    return try imageOutput(try t.emit(isMax ? .maxPool : .avgPool, [xh], attrs), &t)
  }

  // MARK: normalization

  /// `v` of shape [C] reshaped to broadcast over axis 1 of a rank-`rank` tensor: [C, 1, ...].
  func channelVector(_ v: ValueID, rank: Int, _ t: inout Translator) throws(Unsupported) -> ValueID {
    let tv = t.type(v)
    guard tv.rank == 1 else { throw Unsupported("per-channel input of rank \(tv.rank)") }
    if rank <= 2 { return v }
    return try t.emit(.reshape, [v], declared: tv.with(dims: tv.dims + Array(repeating: .known(1), count: rank - 2)))
  }

  mutating func batchNorm(_ t: inout Translator) throws(Unsupported) -> ValueID {
    try checkAttributes(["epsilon", "momentum", "training_mode"]); try inputCount(5...5)
    guard try int("training_mode", 0) == 0 else { throw Unsupported("training_mode = 1") }
    try onlyOutputs(1, "running statistics of training mode")
    let x = try input(0, &t)
    let rank = t.type(x).rank
    guard rank >= 2 else { throw Unsupported("input of rank \(rank)") }
    var params: [ValueID] = []
    for k in 1...4 {
      let v = try input(k, &t)
      try sameType(x, v, t)
      params.append(try channelVector(v, rank: rank, &t))
    }
    let dtype = t.type(x).dtype
    let eps = t.scalar(try float("epsilon", 1e-5), dtype)
    let centered = try t.emit(.sub, [x, params[2]])
    let std = try t.emit(.sqrt, [try t.emit(.add, [params[3], eps])])
    let normalized = try t.emit(.div, [centered, std])
    return try t.emit(.add, [try t.emit(.mul, [normalized, params[0]]), params[1]])
  }

  mutating func instanceNorm(_ t: inout Translator) throws(Unsupported) -> ValueID {
    try checkAttributes(["epsilon"]); try inputCount(3...3)
    let x = try input(0, &t)
    let rank = t.type(x).rank
    guard rank >= 3 else { throw Unsupported("input of rank \(rank)") }
    let scale = try channelVector(try input(1, &t), rank: rank, &t), bias = try channelVector(try input(2, &t), rank: rank, &t)
    let y = try normalize(x, axes: Array(2..<rank), epsilon: try float("epsilon", 1e-5), &t).y
    return try t.emit(.add, [try t.emit(.mul, [y, scale]), bias])
  }

  /// (x − mean) / sqrt(var + eps) over `axes` (biased variance), with the mean and 1/std kept.
  func normalize(_ x: ValueID, axes: [Int], epsilon: Double, _ t: inout Translator) throws(Unsupported) -> (y: ValueID, mean: ValueID, invStd: ValueID) {
    let dtype = t.type(x).dtype
    guard dtype.isFloat else { throw Unsupported("element type \(dtype)") }
    let reduce: [String: Attribute] = ["axes": .ints(axes.map { Int64($0) }), "keepdims": .bool(true)]
    let mean = try t.emit(.reduceMean, [x], reduce)
    let centered = try t.emit(.sub, [x, mean])
    let variance = try t.emit(.reduceMean, [try t.emit(.mul, [centered, centered])], reduce)
    let std = try t.emit(.sqrt, [try t.emit(.add, [variance, t.scalar(epsilon, dtype)])])
    let invStd = try t.emit(.div, [t.scalar(1, dtype), std])
    return (try t.emit(.div, [centered, std]), mean, invStd)
  }

  mutating func layerNorm(_ t: inout Translator) throws(Unsupported) -> [NodeOutput?] {
    try checkAttributes(["axis", "epsilon", "stash_type"]); try inputCount(2...3)
    let x = try input(0, &t)
    let rank = t.type(x).rank
    let axis = try normalizedAxis(try int("axis", -1), rank: rank)
    let stash = try int("stash_type", 1)
    guard stash == 1 || t.type(x).dtype == .f64 else { throw Unsupported("stash_type = \(stash)") }
    var (y, mean, invStd) = try normalize(x, axes: Array(axis..<rank), epsilon: try float("epsilon", 1e-5), &t)
    let scale = try input(1, &t)
    try sameType(x, scale, t)
    y = try t.emit(.mul, [y, scale])
    if let bias = try optionalInput(2, &t) { try sameType(x, bias, t); y = try t.emit(.add, [y, bias]) }
    guard t.type(y).dims == t.type(x).dims else { throw Unsupported("scale or bias does not broadcast to the input") }
    return [.value(y), .value(mean), .value(invStd)]
  }

  // MARK: activations

  mutating func activation(_ t: inout Translator) throws(Unsupported) -> ValueID {
    let op = node.opType
    let allowed: [String: Set<String>] = ["LeakyRelu": ["alpha"], "Elu": ["alpha"], "Selu": ["alpha", "gamma"],
                                          "HardSigmoid": ["alpha", "beta"], "ThresholdedRelu": ["alpha"]]
    try checkAttributes(allowed[op] ?? []); try inputCount(op == "PRelu" ? 2...2 : 1...1)
    let x = try input(0, &t)
    let dtype = t.type(x).dtype
    guard dtype.isFloat else { throw Unsupported("element type \(dtype)") }
    func c(_ v: Double) -> ValueID { t.scalar(v, dtype) }
    func hardSigmoid(_ alpha: Double, _ beta: Double, _ t: inout Translator) throws(Unsupported) -> ValueID {
      let lin = try t.emit(.add, [try t.emit(.mul, [x, t.scalar(alpha, dtype)]), t.scalar(beta, dtype)])
      return try t.emit(.max, [try t.emit(.min, [lin, t.scalar(1, dtype)]), t.scalar(0, dtype)])
    }
    switch op {
    case "LeakyRelu", "PRelu":
      let slope = op == "PRelu" ? try input(1, &t) : c(try float("alpha", 0.01))
      try sameType(x, slope, t)
      let negative = try t.emit(.lt, [x, c(0)])
      let y = try t.emit(.where, [negative, try t.emit(.mul, [x, slope]), x])
      guard t.type(y).dims == t.type(x).dims else { throw Unsupported("slope does not broadcast to the input") }
      return y
    case "Elu":
      let alpha = try float("alpha", 1)
      let negative = try t.emit(.lt, [x, c(0)])
      let em1 = try t.emit(.sub, [try t.emit(.exp, [x]), c(1)])
      return try t.emit(.where, [negative, try t.emit(.mul, [em1, c(alpha)]), x])
    case "Selu":
      let alpha = try float("alpha", 1.67326319217681884765625), gamma = try float("gamma", 1.05070102214813232421875)
      let nonPositive = try t.emit(.le, [x, c(0)])
      let neg = try t.emit(.sub, [try t.emit(.mul, [try t.emit(.exp, [x]), c(alpha)]), c(alpha)])
      return try t.emit(.mul, [try t.emit(.where, [nonPositive, neg, x]), c(gamma)])
    case "HardSigmoid": return try hardSigmoid(try float("alpha", 0.2), try float("beta", 0.5), &t)
    case "HardSwish": return try t.emit(.mul, [x, try hardSigmoid(1.0 / 6, 0.5, &t)])
    case "Softsign": return try t.emit(.div, [x, try t.emit(.add, [try t.emit(.abs, [x]), c(1)])])
    case "Mish": return try t.emit(.mul, [x, try t.emit(.tanh, [try t.emit(.softplus, [x])])])
    case "ThresholdedRelu":
      let above = try t.emit(.gt, [x, c(try float("alpha", 1))])
      return try t.emit(.where, [above, x, c(0)])
    case "IsNaN": return try t.emit(.ne, [x, x])
    default: throw Unsupported("op type not supported")
    }
  }

  // MARK: reductions

  mutating func reduction(_ t: inout Translator) throws(Unsupported) -> ValueID {
    try checkAttributes(["axes", "keepdims", "noop_with_empty_axes"]); try inputCount(1...2)
    let x = try input(0, &t)
    let rank = t.type(x).rank
    let keep = try int("keepdims", 1) != 0
    var axes = try ints("axes") ?? []
    if node.attribute("axes") == nil { axes = try constantInts(1, t, what: "axes") ?? [] }
    let dtype = t.type(x).dtype
    func needFloat() throws(Unsupported) { guard dtype.isFloat else { throw Unsupported("element type \(dtype)") } }
    if axes.isEmpty {
      if try int("noop_with_empty_axes", 0) != 0 {
        // No axis is reduced, but the elementwise part still applies (ONNX's reference and
        // onnxruntime): ReduceSumSquare is x², ReduceL1 and ReduceL2 |x|, ReduceLogSum log x.
        switch node.opType {
        case "ReduceL1": return try t.emit(.abs, [x])
        case "ReduceSumSquare": return try t.emit(.mul, [x, x])
        case "ReduceL2":
          try needFloat()
          return try t.emit(.sqrt, [try t.emit(.mul, [x, x])])
        case "ReduceLogSum":
          try needFloat()
          return try t.emit(.log, [x])
        default: return x
        }
      }
      axes = Array(0..<rank)
    }
    var seen: Set<Int> = []
    for a in axes { guard seen.insert(try normalizedAxis(a, rank: rank)).inserted else { throw Unsupported("axis \(a) listed twice") } }
    let attrs: [String: Attribute] = ["axes": .ints(seen.sorted().map { Int64($0) }), "keepdims": .bool(keep)]
    switch node.opType {
    case "ReduceSum": return try t.emit(.reduceSum, [x], attrs)
    case "ReduceMean":
      try needFloat()
      return try t.emit(.reduceMean, [x], attrs)
    case "ReduceMax": return try t.emit(.reduceMax, [x], attrs)
    case "ReduceMin": return try t.emit(.reduceMin, [x], attrs)
    case "ReduceProd": return try t.emit(.reduceProd, [x], attrs)
    case "ReduceL1": return try t.emit(.reduceSum, [try t.emit(.abs, [x])], attrs)
    case "ReduceSumSquare": return try t.emit(.reduceSum, [try t.emit(.mul, [x, x])], attrs)
    case "ReduceL2":
      try needFloat()
      return try t.emit(.sqrt, [try t.emit(.reduceSum, [try t.emit(.mul, [x, x])], attrs)])
    case "ReduceLogSum":
      try needFloat()
      return try t.emit(.log, [try t.emit(.reduceSum, [x], attrs)])
    case "ReduceLogSumExp":
      try needFloat()
      // log Σ exp(x − m) + m with m the slice's maximum (finite; an infinite maximum falls back to 0).
      var keepAttrs = attrs; keepAttrs["keepdims"] = .bool(true)
      let m0 = try t.emit(.reduceMax, [x], keepAttrs)
      let finite = try t.emit(.lt, [try t.emit(.abs, [m0]), t.scalar(.infinity, dtype)])
      let m = try t.emit(.where, [finite, m0, t.scalar(0, dtype)])
      let s = try t.emit(.reduceSum, [try t.emit(.exp, [try t.emit(.sub, [x, m])])], attrs)
      let mOut = keep ? m : try t.emit(.reshape, [m], declared: t.type(s))
      return try t.emit(.add, [try t.emit(.log, [s]), mOut])
    default: throw Unsupported("op type not supported")
    }
  }

  // MARK: data movement

  func reshape(_ x: ValueID, to spec: [Dim], allowZero: Bool, _ t: inout Translator) throws(Unsupported) -> ValueID {
    let dims = t.type(x).dims
    var out: [Dim?] = []
    var inferred: Int?
    let shape = spec
    for (k, entry) in spec.enumerated() {
      guard case .known(let s) = entry else { out.append(entry); continue }
      if s == 0 && !allowZero {
        guard k < dims.count else { throw Unsupported("shape \(shape) copies dimension \(k) of a rank-\(dims.count) input") }
        out.append(dims[k])
      } else if s == -1 {
        guard inferred == nil else { throw Unsupported("shape \(shape) has two -1 entries") }
        inferred = k; out.append(nil)
      } else if s >= 0 {
        guard s <= maxTensorElements else { throw Unsupported("shape \(shape) has a size above 2^40") }
        out.append(.known(s))
      } else { throw Unsupported("shape \(shape) has a negative size") }
    }
    if let inferred {
      // Divide the input's sizes by the known outputs': what remains is a number or one symbol.
      var inStatic = 1, inSymbols: [String] = []
      for d in dims { switch d { case .known(let n): inStatic *= n; case .symbol(let s): inSymbols.append(s) } }
      var outStatic = 1
      for case let d? in out {
        switch d {
        case .known(let n):
          let (product, overflow) = outStatic.multipliedReportingOverflow(by: n)
          guard !overflow && product <= maxTensorElements else { throw Unsupported("shape \(shape) describes more than 2^40 elements") }
          outStatic = product
        case .symbol(let s):
          guard let i = inSymbols.firstIndex(of: s) else { throw Unsupported("shape \(shape) does not fit \(dims)") }
          inSymbols.remove(at: i)
        }
      }
      if inSymbols.isEmpty {
        guard outStatic != 0 ? inStatic % outStatic == 0 : inStatic == 0 else { throw Unsupported("shape \(shape) does not fit \(dims)") }
        out[inferred] = .known(outStatic == 0 ? 0 : inStatic / outStatic)
      } else if inSymbols.count == 1 && inStatic == outStatic {
        out[inferred] = .symbol(inSymbols[0])
      } else {
        throw Unsupported("shape \(shape) of an input \(dims) needs a symbolic product")
      }
    }
    return try t.emit(.reshape, [x], declared: t.type(x).with(dims: out.map { $0! }))
  }

  mutating func slice(_ t: inout Translator) throws(Unsupported) -> ValueID {
    try checkAttributes([]); try inputCount(3...5)
    var x = try input(0, &t)
    guard let starts = try constantInts(1, t, what: "starts"), let ends = try constantInts(2, t, what: "ends") else { throw Unsupported("no starts/ends") }
    let rank = t.type(x).rank
    let axes = try constantInts(3, t, what: "axes") ?? Array(0..<starts.count)
    let steps = try constantInts(4, t, what: "steps") ?? Array(repeating: 1, count: starts.count)
    guard axes.count == starts.count, ends.count == starts.count, steps.count == starts.count else { throw Unsupported("starts, ends, axes and steps of different lengths") }
    var sAxes: [Int64] = [], sStarts: [Int64] = [], sLimits: [Int64] = [], sStrides: [Int64] = []
    var reversed: [(axis: Int, indices: [Int64])] = []
    var seen: Set<Int> = []
    for k in 0..<axes.count {
      let axis = try normalizedAxis(axes[k], rank: rank)
      guard seen.insert(axis).inserted else { throw Unsupported("axis \(axes[k]) listed twice") }
      let step = steps[k]
      guard step != 0 else { throw Unsupported("step 0") }
      guard let n = t.type(x).dims[axis].staticSize else {
        if starts[k] == 0 && step == 1 && ends[k] >= Int(Int32.max) { continue }
        throw Unsupported("slicing symbolic axis \(axis) other than whole")
      }
      var start = starts[k], end = ends[k]
      if start < 0 { start += n }
      if end < 0 { end += n }
      if step > 0 {
        start = min(max(start, 0), n); end = min(max(end, 0), n)
        if end < start { end = start }
        if start == 0 && end == n && step == 1 { continue }
        sAxes.append(Int64(axis)); sStarts.append(Int64(start)); sLimits.append(Int64(end)); sStrides.append(Int64(step))
      } else {
        start = min(max(start, 0), n - 1); end = min(max(end, -1), n - 1)
        var indices: [Int64] = []
        var i = start
        while i > end && n > 0 { indices.append(Int64(i)); i += step }
        reversed.append((axis, indices))
      }
    }
    if !sAxes.isEmpty {
      x = try t.emit(.slice, [x], ["axes": .ints(sAxes), "starts": .ints(sStarts), "limits": .ints(sLimits), "strides": .ints(sStrides)])
    }
    for (axis, indices) in reversed {
      let idx = t.constant(Tensor(.i64, shape: [indices.count], ints: indices))
      x = try t.emit(.gather, [x, idx], ["axis": .int(Int64(axis))])
    }
    return x
  }

  mutating func pad(_ t: inout Translator) throws(Unsupported) -> ValueID {
    try checkAttributes(["mode"]); try inputCount(2...4)
    let mode = try string("mode", "constant")
    guard mode == "constant" else { throw Unsupported("mode = '\(mode)' (only 'constant' is translated)") }
    var x = try input(0, &t)
    let rank = t.type(x).rank
    guard let pads = try constantInts(1, t, what: "pads") else { throw Unsupported("no pads") }
    var axes: [Int] = []
    for a in try constantInts(3, t, what: "axes") ?? Array(0..<rank) { axes.append(try normalizedAxis(a, rank: rank)) }
    guard pads.count == 2 * axes.count else { throw Unsupported("pads \(pads) for \(axes.count) axes") }
    var value = 0.0
    if let v = try constantInput(2, t, what: "constant_value") {
      guard v.count == 1 else { throw Unsupported("constant_value of \(v.count) elements") }
      value = v.doubles[0]
    }
    var low = Array(repeating: 0, count: rank), high = Array(repeating: 0, count: rank)
    for (k, a) in axes.enumerated() { low[a] = pads[k]; high[a] = pads[k + axes.count] }
    // Negative pads crop: a slice first.
    if low.contains(where: { $0 < 0 }) || high.contains(where: { $0 < 0 }) {
      var sAxes: [Int64] = [], sStarts: [Int64] = [], sLimits: [Int64] = []
      for a in 0..<rank where low[a] < 0 || high[a] < 0 {
        guard let n = t.type(x).dims[a].staticSize else { throw Unsupported("cropping symbolic axis \(a)") }
        let start = max(-low[a], 0), limit = n - max(-high[a], 0)
        guard start <= limit else { throw Unsupported("pads \(pads) crop more than axis \(a) holds") }
        sAxes.append(Int64(a)); sStarts.append(Int64(start)); sLimits.append(Int64(limit))
      }
      x = try t.emit(.slice, [x], ["axes": .ints(sAxes), "starts": .ints(sStarts), "limits": .ints(sLimits)])
      low = low.map { max($0, 0) }; high = high.map { max($0, 0) }
    }
    if low.allSatisfy({ $0 == 0 }) && high.allSatisfy({ $0 == 0 }) { return x }
    let dtype = t.type(x).dtype
    let attr: Attribute = dtype.isFloat ? .float(value) : .int(Int64(value))
    return try t.emit(.pad, [x], ["low": .ints(low.map { Int64($0) }), "high": .ints(high.map { Int64($0) }), "value": attr])
  }

  mutating func gather(_ t: inout Translator) throws(Unsupported) -> ValueID {
    try checkAttributes(["axis"]); try inputCount(2...2)
    let x = try input(0, &t)
    let rank = t.type(x).rank
    guard rank >= 1 else { throw Unsupported("gathering from a scalar") }
    let axis = try normalizedAxis(try int("axis", 0), rank: rank)
    var indices: ValueID
    let size = t.type(x).dims[axis].staticSize
    if let c = t.constants[node.inputs[1]], c.dtype.isInteger, size != nil || c.int64s.allSatisfy({ $0 >= 0 }) {
      // Negative indices count from the end: resolved here for constant indices.
      let n = Int64(size ?? 0)
      indices = t.constant(Tensor(c.dtype, shape: c.shape, ints: c.int64s.map { $0 < 0 && $0 >= -n ? $0 + n : $0 }))
    } else {
      indices = try input(1, &t)
      let dtype = t.type(indices).dtype
      guard dtype == .i32 || dtype == .i64 else { throw Unsupported("indices of element type \(dtype)") }
      guard let n = size else { throw Unsupported("gathering along symbolic axis \(axis) with indices that may be negative") }
      // Only indices in [-n, 0) count from the end: one below stays as given, so the gather's
      // error names the index the model holds.
      let fromEnd = try t.emit(.and, [try t.emit(.lt, [indices, t.scalar(0, dtype)]), try t.emit(.ge, [indices, t.scalar(Double(-n), dtype)])])
      indices = try t.emit(.where, [fromEnd, try t.emit(.add, [indices, t.scalar(Double(n), dtype)]), indices])
    }
    return try t.emit(.gather, [x, indices], ["axis": .int(Int64(axis))])
  }

  mutating func tile(_ t: inout Translator) throws(Unsupported) -> ValueID {
    try checkAttributes([]); try inputCount(2...2)
    let x = try input(0, &t)
    let dims = t.type(x).dims
    guard let repeats = try constantInts(1, t, what: "repeats"), repeats.count == dims.count, repeats.allSatisfy({ $0 >= 0 }) else {
      throw Unsupported("repeats must list one non-negative count per axis")
    }
    if repeats.allSatisfy({ $0 == 1 }) { return x }
    var expanded: [Dim] = [], broadcast: [Dim] = [], result: [Dim] = []
    for (d, r) in zip(dims, repeats) {
      expanded += [.known(1), d]; broadcast += [.known(r), d]
      if r == 1 { result.append(d) } else {
        guard let n = d.staticSize else { throw Unsupported("tiling symbolic dimension \(d)") }
        let (size, overflow) = n.multipliedReportingOverflow(by: r)
        guard !overflow && size <= maxTensorElements else { throw Unsupported("repeats \(repeats) give more than 2^40 elements") }
        result.append(.known(size))
      }
    }
    let dtype = t.type(x).dtype
    let a = try t.emit(.reshape, [x], declared: TensorType(dtype, expanded))
    let b = try t.emit(.broadcastTo, [a], declared: TensorType(dtype, broadcast))
    return try t.emit(.reshape, [b], declared: TensorType(dtype, result))
  }

  mutating func split(_ t: inout Translator) throws(Unsupported) -> [NodeOutput?] {
    try checkAttributes(["axis", "split", "num_outputs"]); try inputCount(1...2)
    let x = try input(0, &t)
    let rank = t.type(x).rank
    let axis = try normalizedAxis(try int("axis", 0), rank: rank)
    guard let n = t.type(x).dims[axis].staticSize else { throw Unsupported("splitting symbolic axis \(axis)") }
    let count = node.outputs.count
    var sizes: [Int]
    var given = try ints("split")
    if given == nil { given = try constantInts(1, t, what: "split") }
    if let s = given {
      sizes = s
    } else {
      let parts = try int("num_outputs", count)
      guard parts >= 1 else { throw Unsupported("num_outputs \(parts)") }
      let chunk = (n + parts - 1) / parts
      sizes = (0..<parts).map { min(chunk, max(n - $0 * chunk, 0)) }
    }
    guard sizes.count == count, sizes.allSatisfy({ $0 >= 0 }), sizes.reduce(0, +) == n else { throw Unsupported("split sizes \(sizes) for \(count) outputs of an axis of \(n)") }
    var outputs: [NodeOutput?] = []
    var start = 0
    for s in sizes {
      outputs.append(.value(try t.emit(.slice, [x], ["axes": .ints([Int64(axis)]), "starts": .ints([Int64(start)]), "limits": .ints([Int64(start + s)])])))
      start += s
    }
    return outputs
  }

  mutating func oneHot(_ t: inout Translator) throws(Unsupported) -> ValueID {
    try checkAttributes(["axis"]); try inputCount(3...3)
    var indices = try input(0, &t)
    guard let depthT = try constantInput(1, t, what: "depth"), depthT.count == 1 else { throw Unsupported("depth must be a one-element constant") }
    guard let values = try constantInput(2, t, what: "values"), values.count == 2 else { throw Unsupported("values must be a two-element constant") }
    let depthValue = depthT.doubles[0]
    guard depthValue >= 0 && depthValue <= Double(1 << 24) else { throw Unsupported("depth \(depthValue)") }
    let depth = Int(depthValue)
    let rank = t.type(indices).rank
    var axis = try int("axis", -1)
    if axis < 0 { axis += rank + 1 }
    guard axis >= 0 && axis <= rank else { throw Unsupported("axis \(axis)") }
    var itype = t.type(indices).dtype
    if itype.isFloat || itype == .i1 || itype == .i8 {
      indices = try t.emit(.cast, [indices], declared: t.type(indices).with(dtype: .i64)); itype = .i64
    }
    let negative = try t.emit(.lt, [indices, t.scalar(0, itype)])
    indices = try t.emit(.where, [negative, try t.emit(.add, [indices, t.scalar(Double(depth), itype)]), indices])
    let off = values.doubles[0], on = values.doubles[1]
    let vt = values.dtype
    let attr = { (v: Double) -> Attribute in vt.isFloat ? .float(v) : .int(Int64(v)) }
    let y = try t.emit(.oneHot, [indices], ["depth": .int(Int64(depth)), "on_value": attr(on), "off_value": attr(off)],
                       declared: TensorType(vt, t.type(indices).dims + [.known(depth)]))
    if axis == rank { return y }
    var perm = Array(0..<rank).map { Int64($0) }
    perm.insert(Int64(rank), at: axis)
    return try t.emit(.transpose, [y], ["perm": .ints(perm)])
  }
}
