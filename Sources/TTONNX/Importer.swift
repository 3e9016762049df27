// Importer — ONNX model -> TTIR module. One function `@main` whose arguments are the graph's
// inputs and whose results are its outputs; float initializers become `param` globals (their values
// returned separately, for an .npz), integer and bool initializers and Constant nodes become
// constants. Symbolic input dims stay symbolic. Each node is translated by OpMapping.swift into TTIR
// ops whose result types come from TTIR's own shape rules, so a translation that does not fit is
// caught here, per node, as an unsupported item and never reaches the verifier as a wrong module.
// Shape arithmetic on constants (Shape -> Gather -> Concat -> Reshape, as exporters write it) is
// folded at import by running the translated node on the reference interpreter.
import TTIR
import TTInterp

/// What the importer needs besides the model.
public struct ONNXImportOptions: Sendable {
  /// The TTIR module's name (default: the graph's name, sanitized).
  public var moduleName: String?
  /// Values of graph inputs that the importer may bake in where an op needs a constant (a
  /// Reshape's shape given as an input): such inputs become constants and leave the signature.
  public var inputValues: [String: Tensor] = [:]
  public init(moduleName: String? = nil, inputValues: [String: Tensor] = [:]) {
    self.moduleName = moduleName; self.inputValues = inputValues
  }
}

/// The result of an import: the module, the initial values of its parameters, and how the
/// function's arguments and results correspond to the graph's inputs and outputs.
public struct ONNXImportResult: Sendable {
  public var module: Module
  /// Parameter values by TTIR name (without `@`), in declaration order.
  public var parameters: [(name: String, tensor: Tensor)]
  /// The ONNX names of `@main`'s arguments, in order.
  public var argumentInputs: [String]
  /// Graph inputs turned into constants from `ONNXImportOptions.inputValues`.
  public var frozenInputs: [String]
  /// The ONNX names of `@main`'s results, in order.
  public var outputs: [String]
  /// Every op type of the graph's nodes, in first-use order (for reports).
  public var opTypes: [String]
}

public enum ONNXImporter {
  /// Oldest default-domain opset the importer reads. The mapping follows each op's current
  /// definition; older definitions differ by attributes the mapping does not accept (a named
  /// error), except where `OpMapping.minimumOpset` names an op whose meaning changed.
  public static let minimumOpset: Int64 = 1

  /// Reads a serialized ONNX ModelProto and translates it.
  public static func importModel(bytes: [UInt8], options: ONNXImportOptions = ONNXImportOptions()) throws(ONNXError) -> ONNXImportResult {
    let model = try ONNXModel(bytes: bytes)
    return try importModel(model, options: options)
  }

  public static func importModel(_ model: ONNXModel, options: ONNXImportOptions = ONNXImportOptions()) throws(ONNXError) -> ONNXImportResult {
    var problems: [UnsupportedItem] = []
    func modelProblem(_ reason: String) { problems.append(UnsupportedItem(node: "(model)", opType: "-", reason: reason)) }
    let opset = model.opsets[""] ?? model.opsets["ai.onnx"] ?? 0
    if opset < minimumOpset { modelProblem("default-domain opset \(opset); the importer needs opset \(minimumOpset) or newer (convert the model with onnx.version_converter)") }
    for (domain, _) in model.opsets.sorted(by: { $0.key < $1.key }) where !["", "ai.onnx"].contains(domain) {
      // Each node of the domain by name and op type (a model-local function's calls among them).
      for (index, node) in model.graph.nodes.enumerated() where node.domain == domain {
        let name = node.name.isEmpty ? "#\(index) \(node.outputs.first ?? "")" : node.name
        problems.append(UnsupportedItem(node: name, opType: node.opType,
                                        reason: "operator domain '\(domain)' (a custom op or a model-local function, which the importer does not inline)"))
      }
    }
    if model.graph.hasSparseInitializers { modelProblem("sparse initializers") }
    if !problems.isEmpty { throw .unsupported(problems) }
    var translator = Translator(graph: model.graph, options: options, opset: opset)
    return try translator.run()
  }
}

/// A node the mapping cannot translate, with the reason.
struct Unsupported: Error { let reason: String; init(_ reason: String) { self.reason = reason } }

/// Legal TTIR names: `[A-Za-z_][A-Za-z0-9_.$]*`; anything else becomes `_`, a leading digit gets `v`.
func sanitizeName(_ name: String) -> String {
  var out = ""
  for scalar in name.unicodeScalars {
    let c = scalar.value
    let ok = (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x5F || (c >= 0x30 && c <= 0x39) || c == 0x2E || c == 0x24
    out.unicodeScalars.append(ok ? scalar : "_")
  }
  if out.isEmpty { return "v" }
  if let first = out.unicodeScalars.first, !((first.value >= 0x41 && first.value <= 0x5A) || (first.value >= 0x61 && first.value <= 0x7A) || first == "_") {
    out = "v" + out
  }
  return out
}

/// Walks the graph once, node by node, emitting TTIR into `function`.
struct Translator {
  let graph: ONNXGraph
  let options: ONNXImportOptions
  let opset: Int64
  var function = Function(name: "main")
  var params: [Param] = []
  var paramValues: [(name: String, tensor: Tensor)] = []
  /// ONNX value name -> TTIR value.
  var values: [String: ValueID] = [:]
  /// ONNX value name -> its constant value (integer initializers, Constant nodes, folded shapes).
  var constants: [String: Tensor] = [:]
  var usedNames: Set<String> = []
  var usedParamNames: Set<String> = []
  /// Integer vectors known only up to symbols (shapes of tensors with symbolic dims).
  var symbolicShapes: [String: (dims: [Dim], isScalar: Bool)] = [:]
  /// ONNX values that could not be translated (their producer is unsupported).
  var poisoned: Set<String> = []
  var problems: [UnsupportedItem] = []
  /// ONNX images (NCHW) that exist in NHWC: conv2d and pool results, and elementwise ops of them
  /// (`translateChannelsLast`). The NCHW value is their transpose, made by `value` on first use,
  /// so Conv -> Relu -> Conv -> Add runs with no transpose between the convolutions.
  var channelsLast: [String: ValueID] = [:]
  /// Conv filter initializers stored as HWIO parameters (`oihwToHWIO`) instead of ONNX's OIHW.
  var hwioFilters: Set<String> = []
  /// Whether this translator only folds constants (no parameters, no arguments).
  var isFolding = false
  var symbolCounter = 0

  init(graph: ONNXGraph, options: ONNXImportOptions, opset: Int64) {
    self.graph = graph; self.options = options; self.opset = opset
  }

  mutating func uniqueName(_ onnxName: String) -> String {
    let base = sanitizeName(onnxName)
    var name = base, k = 1
    while usedNames.contains(name) { name = "\(base)_\(k)"; k += 1 }
    usedNames.insert(name)
    return name
  }

  mutating func run() throws(ONNXError) -> ONNXImportResult {
    let initializerNames = Set(graph.initializers.map(\.name))
    // ONNX graphs are in static single assignment form (onnx.checker and onnxruntime refuse
    // others): a name defined twice would make one of its uses read the wrong value.
    var definedBy: [String: String] = [:]
    for name in graph.inputs.map(\.name) + graph.initializers.map(\.name) where definedBy[name] == nil {
      definedBy[name] = initializerNames.contains(name) ? "an initializer" : "a graph input"
    }
    for (index, node) in graph.nodes.enumerated() {
      let label = "node '\(node.name.isEmpty ? "#\(index)" : node.name)' (\(node.opType))"
      for name in node.outputs where !name.isEmpty {
        if let first = definedBy[name] {
          throw .malformed("'\(name)' is defined twice, by \(first) and by \(label) (an ONNX graph assigns each name once)")
        }
        definedBy[name] = label
      }
    }
    // Which graph inputs some node needs as a constant (a Reshape's shape...).
    var constantUses: Set<String> = []
    for node in graph.nodes {
      for k in OpMapping.constantInputPositions(node.opType) where k < node.inputs.count { constantUses.insert(node.inputs[k]) }
    }
    // 2-D Conv filters that are initializers used by nothing else are stored in TTIR's HWIO
    // layout (values transposed at import), so no transpose of a parameter runs on every call.
    var convFilterUses: [String: Int] = [:], otherUses: Set<String> = Set(graph.outputs.map(\.name))
    for node in graph.nodes {
      for (k, name) in node.inputs.enumerated() {
        if node.opType == "Conv" && k == 1 && (node.domain.isEmpty || node.domain == "ai.onnx") { convFilterUses[name, default: 0] += 1 } else { otherUses.insert(name) }
      }
    }
    // Float initializers used only where a model's code writes a constant — Pow's exponent,
    // Clip's bounds — are constants, not trained parameters (a gradient step on an exponent
    // is x^p·log x, NaN for negative x: an outside review's model could not train).
    let constantPositions: [String: Set<Int>] = ["Pow": [1], "Clip": [1, 2]]
    var trainableUses: Set<String> = Set(graph.outputs.map(\.name))
    for node in graph.nodes {
      for (k, name) in node.inputs.enumerated() where !(constantPositions[node.opType]?.contains(k) ?? false) { trainableUses.insert(name) }
    }
    // Initializers: floats are trained parameters, the rest constants.
    for initializer in graph.initializers {
      guard !initializer.isExternal else {
        problems.append(UnsupportedItem(node: "(initializer)", opType: "-", reason: "'\(initializer.name)' keeps its data in an external file"))
        poisoned.insert(initializer.name); continue
      }
      guard let tensor = initializer.tensor else {
        problems.append(UnsupportedItem(node: "(initializer)", opType: "-", reason: "'\(initializer.name)' has element type \(ONNXDataType.name(initializer.dataType))"))
        poisoned.insert(initializer.name); continue
      }
      if tensor.dtype.isFloat && !constantUses.contains(initializer.name) && trainableUses.contains(initializer.name) {
        let base = sanitizeName(initializer.name)
        var name = base, k = 1
        while usedParamNames.contains(name) { name = "\(base)_\(k)"; k += 1 }
        usedParamNames.insert(name)
        var tensor = tensor
        if tensor.rank == 4, convFilterUses[initializer.name] != nil, !otherUses.contains(initializer.name) {
          tensor = oihwToHWIO(tensor)
          hwioFilters.insert(initializer.name)
        }
        params.append(Param(name: name, type: tensor.type, initializer: nil))
        paramValues.append((name, tensor))
        values[initializer.name] = function.globalValue(name: name, type: tensor.type)
      } else {
        constants[initializer.name] = tensor
      }
    }
    // Graph inputs (an input that is also an initializer is the initializer, as ONNX IR < 4 wrote them).
    var argumentInputs: [String] = [], frozen: [String] = []
    for input in graph.inputs where !initializerNames.contains(input.name) {
      if constantUses.contains(input.name), let value = options.inputValues[input.name] {
        constants[input.name] = value; frozen.append(input.name); continue
      }
      do {
        let type = try tensorType(input)
        values[input.name] = function.addArgument(name: uniqueName(input.name), type: type)
        argumentInputs.append(input.name)
      } catch {
        problems.append(UnsupportedItem(node: "(input)", opType: "-", reason: "input '\(input.name)': \(error.reason)"))
        poisoned.insert(input.name)
      }
    }
    var opTypes: [String] = []
    for (index, node) in graph.nodes.enumerated() {
      if !opTypes.contains(node.opType) { opTypes.append(node.opType) }
      translate(node, index: index)
    }
    // Results.
    var resultValues: [ValueID] = []
    for output in graph.outputs {
      if poisoned.contains(output.name) { continue }
      do throws(Unsupported) {
        let v = try value(output.name)
        // A declared element type or rank the translation does not produce is a model that
        // contradicts itself or a mapping bug: named, never returned silently. (Declared sizes
        // are not compared: onnxruntime runs models whose declared sizes are stale, warning.)
        let computed = function.type(of: v)
        if let type = output.type, type.nonTensorKind == nil, let declared = ONNXDataType.dtype(type.elementType), declared != computed.dtype {
          throw Unsupported("declared \(declared), computed \(computed.dtype)")
        }
        if let shape = output.type?.shape, shape.count != computed.rank {
          throw Unsupported("declared rank \(shape.count), computed \(computed)")
        }
        resultValues.append(v)
      } catch {
        problems.append(UnsupportedItem(node: "(output)", opType: "-", reason: "output '\(output.name)': \(error.reason)"))
      }
    }
    if !problems.isEmpty { throw .unsupported(problems) }
    function.returnValues = resultValues
    function.resultTypes = resultValues.map { function.type(of: $0) }
    var module = Module(name: sanitizeName(options.moduleName ?? (graph.name.isEmpty ? "onnx" : graph.name)))
    module.params = params
    module.functions = [function]
    let diagnostics = Verifier.verify(module)
    if let first = diagnostics.first {
      // A translation bug, not a property of the model: reported, never returned as a module.
      throw .unsupported([UnsupportedItem(node: "(module)", opType: "-", reason: "the translated module does not verify: \(first.description)")])
    }
    return ONNXImportResult(module: module, parameters: paramValues, argumentInputs: argumentInputs, frozenInputs: frozen,
                            outputs: graph.outputs.map(\.name), opTypes: opTypes)
  }

  mutating func tensorType(_ info: ONNXValueInfo) throws(Unsupported) -> TensorType {
    guard let type = info.type else { throw Unsupported("no type") }
    if let kind = type.nonTensorKind { throw Unsupported("\(kind) type (only tensors are supported)") }
    guard let dtype = ONNXDataType.dtype(type.elementType) else { throw Unsupported("element type \(ONNXDataType.name(type.elementType))") }
    guard let shape = type.shape else { throw Unsupported("no shape (unknown rank)") }
    var dims: [Dim] = []
    for (k, d) in shape.enumerated() {
      switch d {
      case .value(let n):
        guard n >= 0 && n <= Int64(maxTensorElements) else { throw Unsupported("dimension \(k) is \(n)") }
        dims.append(.known(Int(n)))
      case .param(let s): dims.append(.symbol(sanitizeName(s)))
      case .unknown:
        dims.append(.symbol("\(sanitizeName(info.name))_d\(k)"))
      }
    }
    guard elementCount(dims.map { $0.staticSize ?? 1 }) != nil else { throw Unsupported("shape \(shape) has more than 2^40 elements") }
    return TensorType(dtype, dims)
  }

  /// The TTIR value of an ONNX name, materializing a known constant on first use.
  mutating func value(_ name: String) throws(Unsupported) -> ValueID {
    if let v = values[name] { return v }
    if let nhwc = channelsLast[name] {
      let v = try emit(.transpose, [nhwc], ["perm": .ints(OpMapping.toNCHW)])
      function.values[v.index].name = uniqueName(name)
      values[name] = v
      return v
    }
    if let s = symbolicShapes[name] {
      throw Unsupported("'\(name)' holds the shape \(s.dims) with symbolic dimensions, which TTIR cannot compute as data (only Reshape, Expand and ConstantOfShape may use it)")
    }
    if let t = constants[name] {
      let v = function.appendValue(.constant, [], type: t.type, attributes: Attributes(["value": .tensor(t)]))
      function.values[v.index].name = uniqueName(name)
      values[name] = v
      return v
    }
    throw Unsupported("value '\(name)' is not defined before its use")
  }

  mutating func translate(_ node: ONNXNode, index: Int) {
    let label = node.name.isEmpty ? "#\(index) \(node.outputs.first ?? "")" : node.name
    func record(_ reason: String) {
      problems.append(UnsupportedItem(node: label, opType: node.opType, reason: reason))
      poisoned.formUnion(node.outputs)
    }
    if !node.domain.isEmpty && node.domain != "ai.onnx" { record("operator domain '\(node.domain)'"); return }
    guard OpMapping.isKnown(node.opType) else { record("op type not supported"); return }
    if let minimum = OpMapping.minimumOpset[node.opType], opset < minimum {
      record("opset \(opset) defines \(node.opType) differently; the importer follows opset \(minimum) and newer"); return
    }
    if node.inputs.contains(where: { poisoned.contains($0) }) { poisoned.formUnion(node.outputs); return }
    // Shape arithmetic on symbolic shapes stays symbolic.
    if node.inputs.contains(where: { symbolicShapes[$0] != nil }), let outputs = symbolicShapeArithmetic(node) {
      for (name, shape) in zip(node.outputs, outputs) where !name.isEmpty {
        let known = shape.dims.compactMap(\.staticSize)
        if known.count == shape.dims.count {
          // No symbol left (a static dim picked out): an ordinary constant.
          let values = known.map { Int64($0) }
          constants[name] = Tensor(.i64, shape: shape.isScalar ? [] : [values.count], ints: values)
        } else {
          symbolicShapes[name] = shape
        }
      }
      return
    }
    // Constant subgraphs (shape arithmetic) fold to constants.
    let present = node.inputs.filter { !$0.isEmpty }
    if !isFolding, node.opType != "Constant", !present.isEmpty, present.allSatisfy({ constants[$0] != nil }),
       let folded = fold(node) {
      for (name, t) in zip(node.outputs, folded) where !name.isEmpty { constants[name] = t }
      return
    }
    if translateChannelsLast(node) { return }
    do throws(Unsupported) {
      var mapping = OpMapping(node: node)
      let outputs = try mapping.translate(&self)
      for (k, name) in node.outputs.enumerated() where !name.isEmpty {
        guard k < outputs.count, let out = outputs[k] else { throw Unsupported("output \(k) ('\(name)') is not supported") }
        switch out {
        case .value(let v):
          // Name the value after the ONNX output unless it already has a name of its own.
          if case .result = function.values[v.index].definition, Int(function.values[v.index].name) != nil {
            function.values[v.index].name = uniqueName(name)
          }
          values[name] = v
        case .constant(let t): constants[name] = t
        case .symbolicShape(let dims, let isScalar): symbolicShapes[name] = (dims, isScalar)
        case .channelsLast(let v):
          if case .result = function.values[v.index].definition, Int(function.values[v.index].name) != nil {
            function.values[v.index].name = uniqueName(name + ".nhwc")
          }
          channelsLast[name] = v
        }
      }
    } catch {
      record(error.reason)
    }
  }

  /// Elementwise ops that commute exactly with a permutation, computed in NHWC when every input
  /// is there (`channelsLast`) with one type (no broadcasting).
  static let channelsLastOps: Set<String> = ["Relu", "Sigmoid", "Tanh", "Abs", "Neg", "Exp", "Add", "Sub", "Mul", "Div"]

  /// Translates `node` in NHWC when it is one of `channelsLastOps` without attributes whose inputs
  /// all exist in NHWC; false when not (then it is translated as usual, in NCHW).
  mutating func translateChannelsLast(_ node: ONNXNode) -> Bool {
    guard Self.channelsLastOps.contains(node.opType), node.attributes.isEmpty, node.outputs.count == 1, !node.outputs[0].isEmpty,
          let code = OpMapping.unary[node.opType] ?? OpMapping.binary[node.opType],
          node.inputs.count == (OpMapping.unary[node.opType] != nil ? 1 : 2) else { return false }
    let operands = node.inputs.compactMap { channelsLast[$0] }
    guard operands.count == node.inputs.count, operands.allSatisfy({ type($0) == type(operands[0]) }),
          let v = try? emit(code, operands) else { return false }
    function.values[v.index].name = uniqueName(node.outputs[0] + ".nhwc")
    channelsLast[node.outputs[0]] = v
    return true
  }

  /// Runs a node whose inputs are all constants on the interpreter; nil when it cannot (then the
  /// node is translated as usual) or its results are large.
  func fold(_ node: ONNXNode) -> [Tensor]? {
    guard node.inputs.filter({ !$0.isEmpty }).allSatisfy({ (constants[$0]?.count ?? Int.max) <= 65536 }) else { return nil }
    var scratch = Translator(graph: ONNXGraph(), options: ONNXImportOptions(), opset: opset)
    scratch.isFolding = true
    scratch.constants = constants.filter { node.inputs.contains($0.key) }
    do {
      var mapping = OpMapping(node: node)
      let outputs = try mapping.translate(&scratch)
      var results: [Tensor?] = Array(repeating: nil, count: outputs.count)
      var returned: [ValueID] = [], positions: [Int] = []
      for (k, out) in outputs.enumerated() {
        switch out {
        case .constant(let t)?: results[k] = t
        case .value(let v)?: returned.append(v); positions.append(k)
        case .symbolicShape?, .channelsLast?: return nil
        case nil: results[k] = nil
        }
      }
      if !returned.isEmpty {
        var f = scratch.function
        f.returnValues = returned
        f.resultTypes = returned.map { f.type(of: $0) }
        guard f.resultTypes.allSatisfy({ $0.isStatic && ($0.staticShape.flatMap { elementCount($0) } ?? Int.max) <= 65536 }) else { return nil }
        var module = Module(name: "fold")
        module.functions = [f]
        let interpreter = try Interpreter(module: module)
        let computed = try interpreter.run("main", [])
        for (k, t) in zip(positions, computed) { results[k] = t }
      }
      guard results.count >= node.outputs.filter({ !$0.isEmpty }).count else { return nil }
      return results.map { $0 ?? Tensor(.f32, shape: [0], floats: []) }
    } catch {
      return nil
    }
  }

  /// Gather, Slice, Concat, Unsqueeze, Squeeze, Cast and Identity on symbolic shapes (and
  /// constant integer vectors beside them); nil when the node is anything else (then it is
  /// translated as usual, and using a symbolic shape as data is a named error).
  func symbolicShapeArithmetic(_ node: ONNXNode) -> [(dims: [Dim], isScalar: Bool)]? {
    func operand(_ k: Int) -> (dims: [Dim], isScalar: Bool)? {
      guard k < node.inputs.count else { return nil }
      if let s = symbolicShapes[node.inputs[k]] { return s }
      if let c = constants[node.inputs[k]], c.dtype.isInteger, c.rank <= 1 { return (c.int64s.map { .known(Int($0)) }, c.rank == 0) }
      return nil
    }
    func ints(_ k: Int) -> [Int]? {
      guard k < node.inputs.count, !node.inputs[k].isEmpty, let c = constants[node.inputs[k]], c.dtype.isInteger else { return nil }
      return c.int64s.map { Int($0) }
    }
    func attrInts(_ name: String) -> [Int]? {
      if case .ints(let v)? = node.attribute(name)?.value { return v.map { Int($0) } }
      return nil
    }
    func attrInt(_ name: String) -> Int? {
      if case .int(let v)? = node.attribute(name)?.value { return Int(v) }
      return nil
    }
    switch node.opType {
    case "Identity":
      return operand(0).map { [$0] }
    case "Cast":
      guard let to = attrInt("to"), let d = ONNXDataType.dtype(to), d == .i64 || d == .i32, let x = operand(0) else { return nil }
      return [x]
    case "Gather":
      guard let x = operand(0), !x.isScalar, (attrInt("axis") ?? 0) == 0, let c = constants[node.inputs[1]], c.dtype.isInteger else { return nil }
      var picked: [Dim] = []
      for i in c.int64s {
        let k = i < 0 ? Int(i) + x.dims.count : Int(i)
        guard k >= 0 && k < x.dims.count else { return nil }
        picked.append(x.dims[k])
      }
      return [(picked, c.rank == 0)]
    case "Unsqueeze":
      guard let x = operand(0), x.isScalar, (attrInts("axes") ?? ints(1)) == [0] else { return nil }
      return [(x.dims, false)]
    case "Squeeze":
      guard let x = operand(0), !x.isScalar, x.dims.count == 1, (attrInts("axes") ?? ints(1) ?? [0]) == [0] else { return nil }
      return [(x.dims, true)]
    case "Concat":
      var dims: [Dim] = []
      for k in 0..<node.inputs.count {
        guard let x = operand(k), !x.isScalar else { return nil }
        dims += x.dims
      }
      return [(dims, false)]
    case "Slice":
      guard let x = operand(0), !x.isScalar, let starts = ints(1), let ends = ints(2), starts.count == 1, ends.count == 1,
            (ints(3) ?? [0]) == [0] || ints(3) == [-1], (ints(4) ?? [1]) == [1] else { return nil }
      let n = x.dims.count
      var start = starts[0], end = ends[0]
      if start < 0 { start += n }; if end < 0 { end += n }
      start = min(max(start, 0), n); end = min(max(end, start), n)
      return [(Array(x.dims[start..<end]), false)]
    default:
      return nil
    }
  }

  // MARK: emission helpers used by OpMapping

  func type(_ v: ValueID) -> TensorType { function.type(of: v) }

  /// Appends `code` with result types from TTIR's shape rule (`declared` for the ops whose result
  /// type the writer chooses); a rule that refuses is an unsupported item naming it.
  mutating func emit(_ code: OpCode, _ operands: [ValueID], _ attributes: [String: Attribute] = [:],
                     declared: TensorType? = nil) throws(Unsupported) -> ValueID {
    let types = try emitMulti(code, operands, attributes, declared: declared.map { [$0] } ?? [])
    return types[0]
  }

  mutating func emitMulti(_ code: OpCode, _ operands: [ValueID], _ attributes: [String: Attribute] = [:],
                          declared: [TensorType] = []) throws(Unsupported) -> [ValueID] {
    let info = code.info
    let operandTypes = operands.map { function.type(of: $0) }
    if let first = operandTypes.first, !info.dtypes.admits(first.dtype) {
      throw Unsupported("element type \(first.dtype): TTIR '\(code)' needs \(info.dtypes.phrase)")
    }
    let attrs = Attributes(attributes)
    let resultTypes: [TensorType]
    do {
      resultTypes = try info.shapeRule(ShapeRuleInput(operands: operandTypes, attributes: attrs, declared: declared))
    } catch {
      throw Unsupported("TTIR '\(code)' refuses it: \(error)")
    }
    let op = function.append(code, operands, resultTypes: resultTypes, attributes: attrs)
    return function[op].results
  }

  /// A constant of `tensor`'s value.
  mutating func constant(_ tensor: Tensor) -> ValueID {
    function.appendValue(.constant, [], type: tensor.type, attributes: Attributes(["value": .tensor(tensor)]))
  }

  /// A rank-0 constant of `dtype`.
  mutating func scalar(_ x: Double, _ dtype: DType) -> ValueID {
    constant(dtype.isFloat ? Tensor(dtype, shape: [], floats: [roundToFloat(x, dtype)])
                           : Tensor(dtype, shape: [], ints: [Int64(x)]))
  }
}

extension DTypeConstraint {
  var phrase: String {
    switch self {
    case .any: return "any element type"
    case .float: return "a float element type"
    case .numeric: return "a numeric (non-i1) element type"
    case .integer: return "an integer or i1 element type"
    }
  }
}

/// A 4-D tensor in ONNX's filter layout [M, C, kH, kW] (OIHW) moved to TTIR's [kH, kW, C, M]
/// (HWIO): element [m, c, i, j] goes to [i, j, c, m].
func oihwToHWIO(_ w: Tensor) -> Tensor {
  let (m, c, h, k) = (w.shape[0], w.shape[1], w.shape[2], w.shape[3])
  var out = [Double](repeating: 0, count: w.count)
  let values = w.doubles
  for o in 0..<m {
    for ci in 0..<c {
      for i in 0..<h {
        for j in 0..<k { out[((i * k + j) * c + ci) * m + o] = values[((o * c + ci) * h + i) * k + j] }
      }
    }
  }
  return Tensor(w.dtype, shape: [h, k, c, m], floats: out)
}
