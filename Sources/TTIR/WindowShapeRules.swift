// WindowShapeRules — shape rules of the vision ops (IR-specs/ops/vision.md): convolutions and
// pooling over NHWC images, their gradient ops, and batch norm. The window geometry (effective
// window, SAME/VALID/EXPLICIT padding, output size) is computed once here, overflow-checked, and
// shared with the interpreter, so every attribute is validated before any index is formed:
// hostile values (stride 0, negative padding, a window of 2^62) are ShapeErrors, never traps.

/// The geometry of a 2-D sliding window over the H and W axes of an NHWC tensor: window size,
/// stride, dilation, the padding actually applied on each side and the output size.
public struct Window2D: Sendable, Equatable {
  public var window: [Int]      // [kh, kw]
  public var strides: [Int]     // [sh, sw]
  public var dilations: [Int]   // [dh, dw]
  /// Padding applied before and after each spatial axis: [top, bottom, left, right].
  public var pads: [Int]
  /// Input spatial size [h, w] and output spatial size [oh, ow].
  public var input: [Int]
  public var output: [Int]

  public init(input: [Int], output: [Int], window: [Int], strides: [Int], dilations: [Int], pads: [Int]) {
    self.input = input; self.output = output; self.window = window
    self.strides = strides; self.dilations = dilations; self.pads = pads
  }

  /// The input row (axis 0: H, axis 1: W) read by output position `o` at window tap `k`
  /// (may be outside 0..<input[axis]: a padding position).
  @inline(__always) public func source(_ axis: Int, output o: Int, tap k: Int) -> Int {
    o * strides[axis] - pads[2 * axis] + k * dilations[axis]
  }
}

extension ShapeRules {
  /// A list attribute of exactly two positive entries (strides, dilations, window), or `fallback`.
  static func pair(_ attributes: Attributes, _ name: String, default fallback: [Int]?) throws -> [Int] {
    guard let values = attributes.ints(name) else {
      guard let fallback else { throw ShapeError("\(name) is required") }
      return fallback
    }
    guard values.count == 2 else { throw ShapeError("\(name) must have two entries (height, width), got \(values.count)") }
    for v in values where v < 1 || v > maxTensorElements {
      throw ShapeError("\(name) must be between 1 and 2^40, got \(values)")
    }
    return values
  }

  /// The window geometry of a conv or pool over `input` (NHWC, static H and W) with window
  /// `window` (the filter's spatial size for conv2d) and the op's attributes. `poolPadding`:
  /// every window must hold at least one input element (pads smaller than the window).
  public static func window2D(input: TensorType, window: [Int], attributes: Attributes, dilated: Bool,
                              poolPadding: Bool) throws -> Window2D {
    guard input.rank == 4 else { throw ShapeError("the input must have rank 4 (NHWC), got \(input)") }
    guard let h = input.dims[1].staticSize, let w = input.dims[2].staticSize else {
      throw ShapeError("the spatial dimensions of \(input) must be static")
    }
    guard h >= 1, w >= 1 else { throw ShapeError("the spatial dimensions of \(input) must be at least 1") }
    let strides = try pair(attributes, "strides", default: [1, 1])
    let dilations = dilated ? try pair(attributes, "dilations", default: [1, 1]) : [1, 1]
    var effective: [Int] = []
    for axis in 0..<2 {
      let (span, o1) = (window[axis] - 1).multipliedReportingOverflow(by: dilations[axis])
      guard window[axis] >= 1, !o1, span < maxTensorElements else {
        throw ShapeError("the \(axis == 0 ? "height" : "width") of the dilated window is too large")
      }
      effective.append(span + 1)
    }
    let padding = attributes.string("padding") ?? (attributes.ints("pads") != nil ? "EXPLICIT" : "VALID")
    var pads: [Int]
    switch padding {
    case "VALID":
      guard attributes.ints("pads") == nil else { throw ShapeError("pads is given but padding is \"VALID\" (use \"EXPLICIT\")") }
      pads = [0, 0, 0, 0]
    case "SAME":
      guard attributes.ints("pads") == nil else { throw ShapeError("pads is given but padding is \"SAME\" (use \"EXPLICIT\")") }
      // TensorFlow's rule: output ceil(in / stride); the total padding that needs, the odd one
      // at the bottom/right.
      pads = []
      for (axis, n) in [h, w].enumerated() {
        let out = (n - 1) / strides[axis] + 1
        let total = Swift.max((out - 1) * strides[axis] + effective[axis] - n, 0)
        pads += [total / 2, total - total / 2]
      }
    case "EXPLICIT":
      guard let given = attributes.ints("pads") else { throw ShapeError("padding \"EXPLICIT\" needs pads = [top, bottom, left, right]") }
      guard given.count == 4 else { throw ShapeError("pads must have four entries [top, bottom, left, right], got \(given.count)") }
      for p in given where p < 0 || p > maxTensorElements {
        throw ShapeError("pads must be between 0 and 2^40, got \(given)")
      }
      pads = given
    default:
      throw ShapeError("padding must be \"VALID\", \"SAME\" or \"EXPLICIT\", got \"\(padding)\"")
    }
    if poolPadding {
      for axis in 0..<2 where pads[2 * axis] >= effective[axis] || pads[2 * axis + 1] >= effective[axis] {
        throw ShapeError("pads \(pads) must be smaller than the window \(window) (a window of padding only has no value)")
      }
    }
    var output: [Int] = []
    for (axis, n) in [h, w].enumerated() {
      let padded = n + pads[2 * axis] + pads[2 * axis + 1]   // each term <= 2^40: no overflow
      guard padded >= effective[axis] else {
        throw ShapeError("the \(axis == 0 ? "height" : "width") of the window (\(effective[axis]) with dilation) is larger than the padded input (\(padded))")
      }
      output.append((padded - effective[axis]) / strides[axis] + 1)
    }
    return Window2D(input: [h, w], output: output, window: window, strides: strides, dilations: dilations, pads: pads)
  }

  /// conv2d's result type for input `x` [N, H, W, Cin] and filter `w` [KH, KW, Cin/groups, Cout].
  static func conv2dResult(_ x: TensorType, _ w: TensorType, _ attributes: Attributes) throws -> TensorType {
    try sameDType([x, w])
    guard w.rank == 4, let kh = w.dims[0].staticSize, let kw = w.dims[1].staticSize,
          let cg = w.dims[2].staticSize, let cout = w.dims[3].staticSize else {
      throw ShapeError("the filter must have a static shape [KH, KW, Cin/groups, Cout], got \(w)")
    }
    guard x.rank == 4, let cin = x.dims[3].staticSize else { throw ShapeError("the input must be NHWC with static channels, got \(x)") }
    let groups = attributes.int("groups") ?? 1
    guard groups >= 1 else { throw ShapeError("groups must be positive, got \(groups)") }
    guard cin % groups == 0 else { throw ShapeError("groups (\(groups)) must divide the input channels (\(cin))") }
    guard cout % groups == 0 else { throw ShapeError("groups (\(groups)) must divide the output channels (\(cout))") }
    guard cg == cin / groups else {
      throw ShapeError("the filter has \(cg) input channels per group but the input has \(cin) channels in \(groups) group\(groups == 1 ? "" : "s") (\(cin / groups) each)")
    }
    guard kh >= 1, kw >= 1 else { throw ShapeError("the filter window must be at least 1x1, got \(w)") }
    let g = try window2D(input: x, window: [kh, kw], attributes: attributes, dilated: true, poolPadding: false)
    return TensorType(x.dtype, [x.dims[0], .known(g.output[0]), .known(g.output[1]), .known(cout)])
  }

  static func poolResult(_ x: TensorType, _ attributes: Attributes) throws -> TensorType {
    let window = try pair(attributes, "window", default: nil)
    guard x.rank == 4 else { throw ShapeError("the input must have rank 4 (NHWC), got \(x)") }
    let g = try window2D(input: x, window: window, attributes: attributes, dilated: false, poolPadding: true)
    return x.with(dims: [x.dims[0], .known(g.output[0]), .known(g.output[1]), x.dims[3]])
  }

  /// The declared type of a gradient op whose result has the shape of the forward op's operand.
  static func declaredGradient(_ input: ShapeRuleInput, like other: TensorType) throws -> TensorType {
    let type = try declared(input)
    guard type.dtype == other.dtype else { throw ShapeError("the result type \(type) must have element type \(other.dtype)") }
    return type
  }

  static let conv2d: ShapeRule = { input in [try conv2dResult(input.operands[0], input.operands[1], input.attributes)] }

  /// `conv2d_backprop_input %dy, %w : X`: X is the forward input's type; conv2d(X, w) must give dy.
  static let conv2dBackpropInput: ShapeRule = { input in
    let (dy, w) = (input.operands[0], input.operands[1])
    let x = try declaredGradient(input, like: dy)
    let forward = try conv2dResult(x, w, input.attributes)
    guard forward == dy else { throw ShapeError("conv2d of \(x) with filter \(w) gives \(forward), but dy is \(dy)") }
    return [x]
  }

  /// `conv2d_backprop_filter %x, %dy : W`: W is the filter's type; conv2d(x, W) must give dy.
  static let conv2dBackpropFilter: ShapeRule = { input in
    let (x, dy) = (input.operands[0], input.operands[1])
    let w = try declaredGradient(input, like: x)
    let forward = try conv2dResult(x, w, input.attributes)
    guard forward == dy else { throw ShapeError("conv2d of \(x) with filter \(w) gives \(forward), but dy is \(dy)") }
    return [w]
  }

  static let maxPool: ShapeRule = { input in [try poolResult(input.operands[0], input.attributes)] }
  static let avgPool: ShapeRule = maxPool

  /// `max_pool_grad %x, %dy`: the adjoint of max_pool's input.
  static let maxPoolGrad: ShapeRule = { input in
    let (x, dy) = (input.operands[0], input.operands[1])
    let forward = try poolResult(x, input.attributes)
    guard forward == dy else { throw ShapeError("max_pool of \(x) gives \(forward), but dy is \(dy)") }
    return [x]
  }

  /// `avg_pool_grad %dy : X`: X is the forward input's type.
  static let avgPoolGrad: ShapeRule = { input in
    let dy = input.operands[0]
    let x = try declaredGradient(input, like: dy)
    let forward = try poolResult(x, input.attributes)
    guard forward == dy else { throw ShapeError("avg_pool of \(x) gives \(forward), but dy is \(dy)") }
    return [x]
  }

  static func epsilon(_ attributes: Attributes) throws -> Double {
    let e = attributes.double("epsilon") ?? 0.001
    guard e.isFinite, e >= 0 else { throw ShapeError("epsilon must be finite and non-negative, got \(e)") }
    return e
  }

  /// Checks that every per-channel operand is [C] for x's last axis C, in x's element type.
  static func channelOperands(_ x: TensorType, _ others: ArraySlice<TensorType>, names: [String]) throws {
    guard x.rank >= 1 else { throw ShapeError("the input must have rank 1 or more (channels last), got \(x)") }
    for (t, name) in zip(others, names) {
      guard t.dtype == x.dtype else { throw ShapeError("\(name) has element type \(t.dtype), the input \(x.dtype)") }
      guard t.dims == [x.dims[x.rank - 1]] else {
        throw ShapeError("\(name) must have shape [\(x.dims[x.rank - 1])] (one value per channel), got \(t)")
      }
    }
  }

  /// `%y, %mean, %variance = batch_norm_training %x, %scale, %offset`.
  static let batchNormTraining: ShapeRule = { input in
    let x = input.operands[0]
    _ = try epsilon(input.attributes)
    guard x.rank >= 2 else { throw ShapeError("the input must have rank 2 or more (statistics over all axes but the last), got \(x)") }
    try channelOperands(x, input.operands[1...], names: ["scale", "offset"])
    let channel = TensorType(x.dtype, [x.dims[x.rank - 1]])
    return [x, channel, channel]
  }

  /// `%y = batch_norm_inference %x, %scale, %offset, %mean, %variance`.
  static let batchNormInference: ShapeRule = { input in
    let x = input.operands[0]
    _ = try epsilon(input.attributes)
    try channelOperands(x, input.operands[1...], names: ["scale", "offset", "mean", "variance"])
    return [x]
  }
}
