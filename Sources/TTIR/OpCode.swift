// OpCode — every TTIR op, with its IR spelling as the raw value, and OpInfo, its facts: class,
// operand count, dtypes, attribute schema, cost, side effects, commutativity, shape rule,
// differentiability and compiled-code support, given by one exhaustive switch
// (`OpInfo.definition(of:)`) that the parser, verifier, interpreter, passes, autodiff, fusion and
// the kernel emitter read. Adding an op starts here (the compiler refuses a case without its
// facts); its shape rule lives in ShapeRules.swift, its semantics in TTInterp, its gradient in
// TTTrain/GradientRules.swift and (optionally) its LLVM lowering in TTCodegen/KernelEmitter.swift.

/// Every TTIR op; the raw value is its spelling in the IR (`reduce_sum`). ``info`` gives its facts.
public enum OpCode: String, CaseIterable, Hashable, Sendable, CustomStringConvertible {
  // Sources
  case constant, iota
  // Elementwise unary
  case neg, abs, exp, log, log1p, sqrt, rsqrt, tanh, sigmoid, relu, gelu, erf, sin, cos, floor, ceil, sign, not
  case silu, softplus
  // Elementwise binary (numpy broadcasting)
  case add, sub, mul, div, pow, max, min
  case eq, ne, lt, le, gt, ge
  case and, or
  // Selection and conversion
  case select, `where`, cast
  // Reductions
  case reduceSum = "reduce_sum", reduceMean = "reduce_mean", reduceMax = "reduce_max"
  case reduceMin = "reduce_min", reduceProd = "reduce_prod", argmax, argmin
  // Linear algebra
  case matmul
  // Data movement
  case transpose, reshape, broadcastTo = "broadcast_to", slice, concat, pad, gather, oneHot = "one_hot"
  case scatterAdd = "scatter_add"
  // Normalizations and losses
  case softmax, logSoftmax = "log_softmax"
  case softmaxCrossEntropy = "softmax_cross_entropy", sigmoidCrossEntropy = "sigmoid_cross_entropy"
  // Convolution, pooling and batch normalization over NHWC images (IR-specs/ops/vision.md)
  case conv2d, conv2dBackpropInput = "conv2d_backprop_input", conv2dBackpropFilter = "conv2d_backprop_filter"
  case maxPool = "max_pool", maxPoolGrad = "max_pool_grad", avgPool = "avg_pool", avgPoolGrad = "avg_pool_grad"
  case batchNormTraining = "batch_norm_training", batchNormInference = "batch_norm_inference"
  // Layer normalization over the last axis (IR-specs/ops/nn.md)
  case layerNorm = "layer_norm", layerNormGrad = "layer_norm_grad"
  // Counter-based random numbers keyed by (seed, step, stream, element) (IR-specs/ops/random.md)
  case randomBits = "random_bits", dropout
  // Attention masks from per-row lengths, and fused scaled dot-product attention (IR-specs/ops/nn.md)
  case sequenceMask = "sequence_mask"
  case attention, attentionGrad = "attention_grad"
  // Embedding tables (the first operand is a table; IR-specs/embeddings.md)
  case embeddingLookup = "embedding_lookup", embeddingLookupPooled = "embedding_lookup_pooled"
  // Functions and fusion regions
  case call, fusion

  public var description: String { rawValue }
  /// The op's facts from the op table.
  public var info: OpInfo { OpInfo.table[self] ?? OpInfo.definition(of: self) }

  /// The op spelled `name` in the IR.
  public static func named(_ name: String) -> OpCode? { OpCode(rawValue: name) }
}

/// How an op touches its operands: fusion and the interpreter dispatch on it.
public enum OpClass: String, Sendable {
  case source, elementwiseUnary, elementwiseBinary, compare, select, cast
  case reduction, argReduction, matmul, layout, gather, softmax, loss, table, call, fusion
  /// Sliding windows over the spatial axes of NHWC images: convolutions and pooling.
  case window
  /// Counter-based random numbers: the value at an element depends on its position (its flat
  /// index in the result), so these ops are not elementwise and never move through layout ops.
  case random
  /// Per-channel normalization over every axis but the last (batch norm), or per row over the
  /// last axis (layer norm).
  case normalization
}

/// Which element types an op accepts for its (first) data operand.
public enum DTypeConstraint: Sendable, Equatable {
  case any, float, numeric, integer

  public func admits(_ d: DType) -> Bool {
    switch self {
    case .any: return true
    case .float: return d.isFloat
    case .numeric: return d != .i1
    case .integer: return d.isInteger
    }
  }
  var phrase: String {
    switch self {
    case .any: return "any element type"
    case .float: return "a float element type"
    case .numeric: return "a numeric (non-i1) element type"
    case .integer: return "an integer or i1 element type"
    }
  }
}

/// Whether autodiff (TTTrain) can differentiate an op.
public enum Differentiability: Sendable, Equatable {
  /// TTTrain/GradientRules gives the adjoints of its float operands.
  case differentiable
  /// Piecewise constant, integer- or boolean-valued: it passes no gradient (a zero adjoint).
  case noGradient
  /// Autodiff refuses a program that needs its gradient, with this reason.
  case notDifferentiable(String)
}

/// What compiled code does with an op: an allow-list that TTCodegen's kernel emitter and fusion
/// read. Anything not allowed here (an op, an element type, or an attribute combination the
/// emitter names) runs on the reference interpreter as its own thunk, reported by `--stats`.
public enum CodegenSupport: Sendable, Equatable {
  /// Lowered element by element inside fused kernels, for these element types (and only those
  /// the emitter compiles at all: `compiledElementTypes`).
  case elemental(DTypeConstraint)
  /// Expanded by `lower-composites` into elemental ops before code generation (fusible).
  case composite
  /// Run by a routine of the runtime: matmul (GEMM), conv2d and its two gradient ops (ConvKernels,
  /// f32/f64; f16/bf16 on the interpreter), the RowKernels ops (layer_norm, dropout, random_bits,
  /// gather, scatter_add, ...; element types they do not take run on the interpreter),
  /// embedding lookups (the tables), and the
  /// structure ops call and fusion (inlined, or compiled as regions).
  case routine
  /// No lowering: the interpreter runs it.
  case interpreted

  /// Element types compiled code handles at all (f16 and bf16 compute in f32 registers and round
  /// each op's result to their type, as the interpreter does).
  public static let compiledElementTypes: Set<DType> = [.f64, .f32, .f16, .bf16, .i64, .i32, .i8, .i1]

  /// Whether an op with this support is compiled element by element for `dtype`.
  public func compilesElementwise(_ dtype: DType) -> Bool {
    guard case .elemental(let allowed) = self else { return false }
    return allowed.admits(dtype) && Self.compiledElementTypes.contains(dtype)
  }
}

/// Cost class used by fusion: expensive producers are not duplicated into several consumers.
public enum CostClass: Sendable { case free, cheap, expensive, gemm, opaque }

/// The type of an attribute value an op accepts.
public enum AttributeKind: Sendable {
  case int, bool, float, ints, floats, string

  func accepts(_ a: Attribute) -> Bool {
    switch (self, a) {
    case (.int, .int), (.bool, .bool), (.float, .float), (.float, .int), (.ints, .ints), (.floats, .floats),
         (.floats, .ints), (.string, .string):
      return true
    default:
      return false
    }
  }
  var name: String {
    switch self {
    case .int: return "integer"; case .bool: return "bool"; case .float: return "float"
    case .ints: return "integer list"; case .floats: return "float list"; case .string: return "string"
    }
  }
}

/// One attribute an op accepts: its name, value type and whether it is required.
public struct AttributeSpec: Sendable {
  public let name: String
  public let kind: AttributeKind
  public let required: Bool
}

/// The facts of one op, from the one op table that the parser, verifier, interpreter, passes,
/// autodiff and code generator all read.
public struct OpInfo: Sendable {
  public let code: OpCode
  public let opClass: OpClass
  /// Operand count: exact when lower == upper; `Int.max` upper bound means variadic.
  public let operands: ClosedRange<Int>
  /// How many results the op has (`call` and `fusion`: as many as the callee or body returns).
  public let results: Int
  public let dtypes: DTypeConstraint
  public let attributes: [AttributeSpec]
  public let cost: CostClass
  /// Ops that must never be merged, reordered past each other or dropped (none yet in this set;
  /// random number generation and table updates will be).
  public let hasSideEffects: Bool
  /// op(a, b) == op(b, a) bit for bit (CSE compares such operands as a set; simplification moves
  /// constants to the right so each rule is written once).
  public let isCommutative: Bool
  public let shapeRule: ShapeRule
  public let differentiability: Differentiability
  public let codegen: CodegenSupport

  /// Elementwise ops (unary, binary, compare, select, cast): element i of the result depends only
  /// on element i of the broadcast operands.
  public var isElementwise: Bool {
    switch opClass {
    case .elementwiseUnary, .elementwiseBinary, .compare, .select, .cast: return true
    default: return false
    }
  }
  public func attributeSpec(_ name: String) -> AttributeSpec? { attributes.first { $0.name == name } }
}

extension OpInfo {
  /// Every op's facts, computed once from `definition(of:)`.
  static let table: [OpCode: OpInfo] = Dictionary(uniqueKeysWithValues: OpCode.allCases.map { ($0, definition(of: $0)) })

  /// The one definition of each op: an exhaustive switch, so a new `OpCode` case does not compile
  /// until its class, operands, dtypes, attributes, cost, shape rule, differentiability and
  /// compiled-code support are given here.
  static func definition(of code: OpCode) -> OpInfo {
    func op(_ cls: OpClass, _ operands: ClosedRange<Int>, _ dtypes: DTypeConstraint, _ attrs: [AttributeSpec] = [],
            cost: CostClass = .cheap, commutative: Bool = false, results: Int = 1, rule: @escaping ShapeRule,
            gradient: Differentiability = .differentiable, codegen: CodegenSupport? = nil) -> OpInfo {
      OpInfo(code: code, opClass: cls, operands: operands, results: results, dtypes: dtypes, attributes: attrs, cost: cost,
             hasSideEffects: false, isCommutative: commutative, shapeRule: rule,
             differentiability: gradient, codegen: codegen ?? .elemental(dtypes))
    }
    func attr(_ name: String, _ kind: AttributeKind, required: Bool = false) -> AttributeSpec {
      AttributeSpec(name: name, kind: kind, required: required)
    }
    let variadic = Int.max
    let reduceAttrs = [attr("axes", .ints), attr("keepdims", .bool)]
    let sparseGradient = Differentiability.notDifferentiable(
      "a table's gradient is sparse; lower lookups to row inputs first (EmbeddingLowering)")
    let structure = Differentiability.notDifferentiable("differentiate before fusion; calls are inlined first")
    let windowAttrs = [attr("strides", .ints), attr("padding", .string), attr("pads", .ints)]
    let convAttrs = windowAttrs + [attr("dilations", .ints), attr("groups", .int)]
    let poolAttrs = [attr("window", .ints, required: true)] + windowAttrs
    let attentionAttrs = [attr("scale", .float, required: true), attr("rate", .float), attr("seed", .int), attr("stream", .int)]
    let secondOrder = Differentiability.notDifferentiable("it is a gradient op; second derivatives are not implemented")
    switch code {
    case .constant: return op(.source, 0...0, .any, cost: .free, rule: ShapeRules.constant, gradient: .noGradient)
    case .iota:
      return op(.source, 0...0, .numeric, [attr("dim", .int, required: true)], cost: .free, rule: ShapeRules.iota, gradient: .noGradient)
    case .exp, .log, .log1p, .sqrt, .rsqrt, .tanh, .sigmoid, .erf, .sin, .cos:
      return op(.elementwiseUnary, 1...1, .float, cost: .expensive, rule: ShapeRules.unary)
    case .gelu: return op(.elementwiseUnary, 1...1, .float, [attr("approximate", .bool)], cost: .expensive, rule: ShapeRules.unary)
    case .softplus: return op(.elementwiseUnary, 1...1, .float, cost: .expensive, rule: ShapeRules.unary)
    case .silu: return op(.elementwiseUnary, 1...1, .float, cost: .expensive, rule: ShapeRules.unary, codegen: .interpreted)
    case .floor, .ceil: return op(.elementwiseUnary, 1...1, .float, rule: ShapeRules.unary, gradient: .noGradient)
    case .neg, .abs, .relu: return op(.elementwiseUnary, 1...1, .numeric, rule: ShapeRules.unary)
    case .sign: return op(.elementwiseUnary, 1...1, .numeric, rule: ShapeRules.unary, gradient: .noGradient)
    case .not: return op(.elementwiseUnary, 1...1, .integer, rule: ShapeRules.unary, gradient: .noGradient)
    case .add, .mul, .max, .min: return op(.elementwiseBinary, 2...2, .numeric, commutative: true, rule: ShapeRules.binary)
    case .sub: return op(.elementwiseBinary, 2...2, .numeric, rule: ShapeRules.binary)
    case .div: return op(.elementwiseBinary, 2...2, .numeric, cost: .expensive, rule: ShapeRules.binary)
    case .pow: return op(.elementwiseBinary, 2...2, .float, cost: .expensive, rule: ShapeRules.binary)
    case .eq, .ne: return op(.compare, 2...2, .any, commutative: true, rule: ShapeRules.compare, gradient: .noGradient)
    case .lt, .le, .gt, .ge: return op(.compare, 2...2, .any, rule: ShapeRules.compare, gradient: .noGradient)
    case .and, .or:
      return op(.elementwiseBinary, 2...2, .integer, commutative: true, rule: ShapeRules.binary, gradient: .noGradient)
    case .select: return op(.select, 3...3, .any, rule: ShapeRules.select)
    case .where: return op(.select, 3...3, .any, rule: ShapeRules.whereRule)
    case .cast: return op(.cast, 1...1, .any, rule: ShapeRules.cast)
    case .reduceSum, .reduceMean, .reduceMax, .reduceMin:
      return op(.reduction, 1...1, .numeric, reduceAttrs, rule: ShapeRules.reduce)
    case .reduceProd:
      return op(.reduction, 1...1, .numeric, reduceAttrs, rule: ShapeRules.reduce,
                gradient: .notDifferentiable("its gradient is not implemented yet"))
    case .argmax, .argmin:
      return op(.argReduction, 1...1, .numeric, [attr("axis", .int, required: true), attr("keepdims", .bool)], rule: ShapeRules.argReduce,
                gradient: .noGradient, codegen: .interpreted)
    case .matmul:
      return op(.matmul, 2...2, .numeric, [attr("transpose_a", .bool), attr("transpose_b", .bool)], cost: .gemm, rule: ShapeRules.matmul,
                codegen: .routine)
    case .transpose: return op(.layout, 1...1, .any, [attr("perm", .ints, required: true)], rule: ShapeRules.transpose)
    case .reshape: return op(.layout, 1...1, .any, cost: .free, rule: ShapeRules.reshape)
    case .broadcastTo: return op(.layout, 1...1, .any, rule: ShapeRules.broadcastTo)
    case .slice:
      return op(.layout, 1...1, .any, [attr("axes", .ints, required: true), attr("starts", .ints, required: true),
                                       attr("limits", .ints, required: true), attr("strides", .ints)], rule: ShapeRules.slice)
    case .concat: return op(.layout, 1...variadic, .any, [attr("axis", .int, required: true)], rule: ShapeRules.concat)
    case .pad:
      return op(.layout, 1...1, .any, [attr("low", .ints, required: true), attr("high", .ints, required: true), attr("value", .float)],
                rule: ShapeRules.pad)
    case .gather:
      return op(.gather, 2...2, .any, [attr("axis", .int)], rule: ShapeRules.gather, codegen: .routine)
    case .scatterAdd:
      return op(.gather, 3...3, .numeric, [attr("axis", .int)], rule: ShapeRules.scatterAdd, codegen: .routine)
    case .oneHot:
      return op(.gather, 1...1, .integer, [attr("depth", .int, required: true), attr("on_value", .float), attr("off_value", .float)],
                rule: ShapeRules.oneHot, gradient: .noGradient)
    case .softmax, .logSoftmax:
      return op(.softmax, 1...1, .float, [attr("axis", .int)], cost: .expensive, rule: ShapeRules.softmax, codegen: .composite)
    case .softmaxCrossEntropy:
      return op(.loss, 2...2, .float, cost: .expensive, rule: ShapeRules.softmaxCrossEntropy, codegen: .composite)
    case .sigmoidCrossEntropy:
      return op(.loss, 2...2, .float, cost: .expensive, rule: ShapeRules.sigmoidCrossEntropy, codegen: .composite)
    case .conv2d:
      return op(.window, 2...2, .float, convAttrs, cost: .opaque, rule: ShapeRules.conv2d, codegen: .routine)
    case .conv2dBackpropInput:
      return op(.window, 2...2, .float, convAttrs, cost: .opaque, rule: ShapeRules.conv2dBackpropInput,
                gradient: secondOrder, codegen: .routine)
    case .conv2dBackpropFilter:
      return op(.window, 2...2, .float, convAttrs, cost: .opaque, rule: ShapeRules.conv2dBackpropFilter,
                gradient: secondOrder, codegen: .routine)
    case .maxPool:
      return op(.window, 1...1, .float, poolAttrs, cost: .opaque, rule: ShapeRules.maxPool, codegen: .routine)
    case .maxPoolGrad:
      return op(.window, 2...2, .float, poolAttrs, cost: .opaque, rule: ShapeRules.maxPoolGrad, gradient: secondOrder,
                codegen: .routine)
    case .avgPool:
      return op(.window, 1...1, .float, poolAttrs + [attr("count_include_pad", .bool)], cost: .opaque, rule: ShapeRules.avgPool,
                codegen: .routine)
    case .avgPoolGrad:
      return op(.window, 1...1, .float, poolAttrs + [attr("count_include_pad", .bool)], cost: .opaque,
                rule: ShapeRules.avgPoolGrad, gradient: secondOrder, codegen: .routine)
    case .batchNormTraining:
      return op(.normalization, 3...3, .float, [attr("epsilon", .float)], cost: .opaque, results: 3, rule: ShapeRules.batchNormTraining,
                codegen: .composite)
    case .batchNormInference:
      return op(.normalization, 5...5, .float, [attr("epsilon", .float)], cost: .opaque, rule: ShapeRules.batchNormInference,
                codegen: .composite)
    case .layerNorm:
      return op(.normalization, 3...3, .float, [attr("epsilon", .float)], cost: .opaque, rule: ShapeRules.layerNorm, codegen: .routine)
    case .layerNormGrad:
      return op(.normalization, 3...3, .float, [attr("epsilon", .float)], cost: .opaque, results: 3, rule: ShapeRules.layerNormGrad,
                gradient: secondOrder, codegen: .routine)
    case .randomBits:
      return op(.random, 1...1, .integer, [attr("seed", .int), attr("stream", .int)], rule: ShapeRules.randomBits,
                gradient: .noGradient, codegen: .routine)
    case .dropout:
      return op(.random, 2...2, .float, [attr("rate", .float, required: true), attr("seed", .int), attr("stream", .int)],
                rule: ShapeRules.dropout, codegen: .routine)
    case .sequenceMask:
      return op(.source, 1...1, .integer, [attr("masked_value", .float)], rule: ShapeRules.sequenceMask, gradient: .noGradient,
                codegen: .composite)
    case .attention:
      return op(.normalization, 5...5, .float, attentionAttrs, cost: .opaque, results: 2, rule: ShapeRules.attention, codegen: .routine)
    case .attentionGrad:
      return op(.normalization, 8...8, .float, attentionAttrs, cost: .opaque, results: 3, rule: ShapeRules.attentionGrad,
                gradient: secondOrder, codegen: .routine)
    case .embeddingLookup:
      return op(.table, 2...2, .float, cost: .opaque, rule: ShapeRules.embeddingLookup, gradient: sparseGradient, codegen: .routine)
    case .embeddingLookupPooled:
      return op(.table, 2...3, .float, [attr("combiner", .string), attr("padding_id", .int)], cost: .opaque,
                rule: ShapeRules.embeddingLookupPooled, gradient: sparseGradient, codegen: .routine)
    case .call: return op(.call, 0...variadic, .any, cost: .opaque, rule: ShapeRules.call, gradient: structure, codegen: .routine)
    case .fusion:
      return op(.fusion, 0...variadic, .any, [attr("kind", .string)], cost: .opaque, rule: ShapeRules.fusion, gradient: structure,
                codegen: .routine)
    }
  }
}

/// Which precision automatic mixed precision (the `amp` pass) gives an op, after TensorFlow's
/// lists: numerically safe and fast ops run in half precision, ops whose results half precision
/// would spoil stay in f32, and the rest follow their inputs.
public enum MixedPrecisionList: String, Sendable {
  /// Runs in half precision whenever its operands are f32 (GEMM-shaped work).
  case allow
  /// Follows its inputs: half when an input is half and none comes from the deny list.
  case infer
  /// Runs in f32 (exponentials, logarithms, powers, sums and means, softmax, losses, norms).
  case deny
  /// Keeps the types it has (sources, casts, tables, calls and regions).
  case keep
}

extension OpCode {
  /// This op's list for the `amp` pass (IR-specs/passes.md, "amp").
  public var mixedPrecisionList: MixedPrecisionList {
    switch self {
    case .matmul, .conv2d, .conv2dBackpropInput, .conv2dBackpropFilter:
      return .allow
    case .exp, .log, .log1p, .pow, .sqrt, .rsqrt, .softplus, .reduceSum, .reduceMean, .reduceProd,
         .softmax, .logSoftmax, .softmaxCrossEntropy, .sigmoidCrossEntropy, .batchNormTraining, .batchNormInference,
         .layerNorm, .layerNormGrad, .attention, .attentionGrad:
      return .deny
    case .neg, .abs, .tanh, .sigmoid, .relu, .gelu, .erf, .sin, .cos, .floor, .ceil, .sign, .silu,
         .add, .sub, .mul, .div, .max, .min, .eq, .ne, .lt, .le, .gt, .ge, .select, .where,
         .reduceMax, .reduceMin, .argmax, .argmin,
         .transpose, .reshape, .broadcastTo, .slice, .concat, .pad, .gather, .scatterAdd,
         .maxPool, .maxPoolGrad, .avgPool, .avgPoolGrad, .dropout:
      return .infer
    case .constant, .iota, .randomBits, .sequenceMask, .not, .and, .or, .cast, .oneHot, .embeddingLookup, .embeddingLookupPooled, .call, .fusion:
      return .keep
    }
  }
}
