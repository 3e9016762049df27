// OpMappingComposites — ONNX ops TTIR has no op for, written exactly as compositions of TTIR ops:
// more activations and trigonometry, Round (half to even, exactly), Hardmax, DepthToSpace and
// SpaceToDepth (reshape + transpose), LpNormalization, RMSNormalization, GroupNormalization, Trilu
// and EyeLike (constant masks), ConvTranspose (TTIR's conv2d_backprop_input: the adjoint of a
// convolution is a transposed convolution).
import TTIR

extension OpMapping {
  static let composites: Set<String> = [
    "Swish", "Celu", "IsInf", "Sinh", "Cosh", "Tan", "Round", "Hardmax", "DepthToSpace", "SpaceToDepth",
    "LpNormalization", "RMSNormalization", "GroupNormalization", "Trilu", "EyeLike", "ConvTranspose",
    "Shrink", "MeanVarianceNormalization", "Mod", "CumSum", "GatherElements", "Resize", "Upsample",
    "BitwiseAnd", "BitwiseOr", "BitwiseXor", "BitwiseNot", "NegativeLogLikelihoodLoss", "LpPool", "CenterCropPad", "GatherND",
  ]

  mutating func composite(_ t: inout Translator) throws(Unsupported) -> ValueID {
    let op = node.opType
    let allowed: [String: Set<String>] = [
      "Swish": ["alpha"], "Celu": ["alpha"], "IsInf": ["detect_negative", "detect_positive"], "Hardmax": ["axis"],
      "DepthToSpace": ["blocksize", "mode"], "SpaceToDepth": ["blocksize"], "LpNormalization": ["axis", "p"],
      "RMSNormalization": ["axis", "epsilon", "stash_type"], "GroupNormalization": ["epsilon", "num_groups", "stash_type"],
      "Trilu": ["upper"], "EyeLike": ["dtype", "k"],
      "ConvTranspose": ["auto_pad", "dilations", "group", "kernel_shape", "output_padding", "pads", "strides"],
      "Shrink": ["bias", "lambd"], "MeanVarianceNormalization": ["axes"], "Mod": ["fmod"], "CumSum": ["exclusive", "reverse"],
      "GatherElements": ["axis"],
      "Resize": ["antialias", "axes", "coordinate_transformation_mode", "cubic_coeff_a", "exclude_outside",
                 "extrapolation_value", "keep_aspect_ratio_policy", "mode", "nearest_mode"],
      "Upsample": ["mode"],
      "NegativeLogLikelihoodLoss": ["ignore_index", "reduction"],
      "LpPool": ["auto_pad", "ceil_mode", "dilations", "kernel_shape", "p", "pads", "strides"], "CenterCropPad": ["axes"],
      "GatherND": ["batch_dims"],
    ]
    try checkAttributes(allowed[op] ?? [])
    if op == "ConvTranspose" { return try convTranspose(&t) }
    if op == "Resize" || op == "Upsample" { return try resizeNearest(&t) }
    if op == "LpPool" { return try lpPool(&t) }
    if op == "NegativeLogLikelihoodLoss" {
      try inputCount(2...3)
      return try negativeLogLikelihood(try input(0, &t), &t)
    }
    let x = try input(0, &t)
    let type = t.type(x)
    let dtype = type.dtype
    func c(_ v: Double, _ t: inout Translator) -> ValueID { t.scalar(v, dtype) }
    func needFloat() throws(Unsupported) { guard dtype.isFloat else { throw Unsupported("element type \(dtype)") } }
    switch op {
    case "Swish":
      try inputCount(1...1); try needFloat()
      let scaled = try t.emit(.mul, [x, c(try float("alpha", 1), &t)])
      return try t.emit(.mul, [x, try t.emit(.sigmoid, [scaled])])
    case "Celu":
      try inputCount(1...1); try needFloat()
      let alpha = try float("alpha", 1)
      let em1 = try t.emit(.sub, [try t.emit(.exp, [try t.emit(.div, [x, c(alpha, &t)])]), c(1, &t)])
      let negative = try t.emit(.min, [try t.emit(.mul, [em1, c(alpha, &t)]), c(0, &t)])
      return try t.emit(.add, [try t.emit(.max, [x, c(0, &t)]), negative])
    case "IsInf":
      try inputCount(1...1); try needFloat()
      let pos = try int("detect_positive", 1) != 0, neg = try int("detect_negative", 1) != 0
      let isPos = try t.emit(.eq, [x, c(.infinity, &t)]), isNeg = try t.emit(.eq, [x, c(-.infinity, &t)])
      switch (pos, neg) {
      case (true, true): return try t.emit(.or, [isPos, isNeg])
      case (true, false): return isPos
      case (false, true): return isNeg
      case (false, false): return try t.emit(.ne, [isPos, isPos])
      }
    case "Sinh", "Cosh":
      try inputCount(1...1); try needFloat()
      let e = try t.emit(.exp, [x]), em = try t.emit(.exp, [try t.emit(.neg, [x])])
      return try t.emit(.mul, [try t.emit(op == "Sinh" ? .sub : .add, [e, em]), c(0.5, &t)])
    case "Tan":
      try inputCount(1...1); try needFloat()
      return try t.emit(.div, [try t.emit(.sin, [x]), try t.emit(.cos, [x])])
    case "Round":
      // Half to even, exactly: r = floor(x), d = x − r (exact); r + 1 above a half, r below,
      // and at a half the even one of r and r + 1. Infinities and NaN pass through floor.
      try inputCount(1...1); try needFloat()
      let r = try t.emit(.floor, [x])
      let d = try t.emit(.sub, [x, r])
      let up = try t.emit(.add, [r, c(1, &t)])
      let half = try t.emit(.mul, [r, c(0.5, &t)])
      let rIsOdd = try t.emit(.ne, [try t.emit(.floor, [half]), half])
      let atHalf = try t.emit(.where, [rIsOdd, up, r])
      let belowOrHalf = try t.emit(.where, [try t.emit(.lt, [d, c(0.5, &t)]), r, atHalf])
      let rounded = try t.emit(.where, [try t.emit(.gt, [d, c(0.5, &t)]), up, belowOrHalf])
      return try t.emit(.where, [try t.emit(.eq, [d, d]), rounded, x])
    case "Hardmax":
      try inputCount(1...1)
      let axis = try normalizedAxis(try int("axis", -1), rank: type.rank)
      guard let depth = type.dims[axis].staticSize else { throw Unsupported("symbolic axis \(axis)") }
      var kept = type.dims; kept.remove(at: axis)
      let index = try t.emit(.argmax, [x], ["axis": .int(Int64(axis))], declared: TensorType(.i64, kept))
      let oneAttr: Attribute = dtype.isFloat ? .float(1) : .int(1), zeroAttr: Attribute = dtype.isFloat ? .float(0) : .int(0)
      let y = try t.emit(.oneHot, [index], ["depth": .int(Int64(depth)), "on_value": oneAttr, "off_value": zeroAttr],
                         declared: TensorType(dtype, kept + [.known(depth)]))
      if axis == type.rank - 1 { return y }
      var perm = Array(0..<(type.rank - 1)).map { Int64($0) }
      perm.insert(Int64(type.rank - 1), at: axis)
      return try t.emit(.transpose, [y], ["perm": .ints(perm)])
    case "DepthToSpace", "SpaceToDepth":
      try inputCount(1...1)
      let b = try int("blocksize", 0)
      guard b >= 1 else { throw Unsupported("blocksize \(b)") }
      guard type.rank == 4, let ch = type.dims[1].staticSize, let h = type.dims[2].staticSize, let w = type.dims[3].staticSize else {
        throw Unsupported("needs a 4-D input with static C, H and W")
      }
      let n = type.dims[0], bd = Dim.known(b)
      let shape: [Dim], perm: [Int64], result: [Dim]
      if op == "DepthToSpace" {
        guard ch % (b * b) == 0 else { throw Unsupported("\(ch) channels for blocksize \(b)") }
        let cOut = Dim.known(ch / (b * b))
        let mode = try string("mode", "DCR")
        switch mode {
        case "DCR": shape = [n, bd, bd, cOut, .known(h), .known(w)]; perm = [0, 3, 4, 1, 5, 2]
        case "CRD": shape = [n, cOut, bd, bd, .known(h), .known(w)]; perm = [0, 1, 4, 2, 5, 3]
        default: throw Unsupported("mode = '\(mode)'")
        }
        result = [n, cOut, .known(h * b), .known(w * b)]
      } else {
        guard h % b == 0 && w % b == 0 else { throw Unsupported("H \(h) and W \(w) for blocksize \(b)") }
        shape = [n, .known(ch), .known(h / b), bd, .known(w / b), bd]; perm = [0, 3, 5, 1, 2, 4]
        result = [n, .known(ch * b * b), .known(h / b), .known(w / b)]
      }
      let r = try t.emit(.reshape, [x], declared: TensorType(dtype, shape))
      let p = try t.emit(.transpose, [r], ["perm": .ints(perm)])
      return try t.emit(.reshape, [p], declared: TensorType(dtype, result))
    case "LpNormalization":
      try inputCount(1...1); try needFloat()
      let axis = try normalizedAxis(try int("axis", -1), rank: type.rank)
      let p = try int("p", 2)
      let reduce: [String: Attribute] = ["axes": .ints([Int64(axis)]), "keepdims": .bool(true)]
      let norm: ValueID
      switch p {
      case 1: norm = try t.emit(.reduceSum, [try t.emit(.abs, [x])], reduce)
      case 2: norm = try t.emit(.sqrt, [try t.emit(.reduceSum, [try t.emit(.mul, [x, x])], reduce)])
      default: throw Unsupported("p = \(p)")
      }
      // A zero norm gives zeros (ONNX's reference), not 0/0.
      let isZero = try t.emit(.eq, [norm, c(0, &t)])
      return try t.emit(.where, [isZero, c(0, &t), try t.emit(.div, [x, norm])])
    case "RMSNormalization":
      try inputCount(2...2); try needFloat()
      let axis = try normalizedAxis(try int("axis", -1), rank: type.rank)
      let stash = try int("stash_type", 1)
      guard stash == 1 || dtype == .f64 else { throw Unsupported("stash_type = \(stash)") }
      let reduce: [String: Attribute] = ["axes": .ints((axis..<type.rank).map { Int64($0) }), "keepdims": .bool(true)]
      let meanSquare = try t.emit(.reduceMean, [try t.emit(.mul, [x, x])], reduce)
      let rms = try t.emit(.sqrt, [try t.emit(.add, [meanSquare, c(try float("epsilon", 1e-5), &t)])])
      let scale = try input(1, &t)
      try sameType(x, scale, t)
      let y = try t.emit(.mul, [try t.emit(.div, [x, rms]), scale])
      guard t.type(y).dims == type.dims else { throw Unsupported("scale does not broadcast to the input") }
      return y
    case "GroupNormalization":
      try inputCount(3...3); try needFloat()
      let groups = try int("num_groups", 0)
      let stash = try int("stash_type", 1)
      guard stash == 1 || dtype == .f64 else { throw Unsupported("stash_type = \(stash)") }
      let spatialDims = type.dims.dropFirst(2).compactMap(\.staticSize)
      guard type.rank >= 3, let ch = type.dims[1].staticSize, spatialDims.count == type.rank - 2 else {
        throw Unsupported("needs static channel and spatial dimensions")
      }
      let spatial = spatialDims.reduce(1, *)
      guard groups >= 1 && ch % groups == 0 else { throw Unsupported("num_groups \(groups) for \(ch) channels") }
      let grouped = try t.emit(.reshape, [x], declared: TensorType(dtype, [type.dims[0], .known(groups), .known(ch / groups * spatial)]))
      let y = try normalize(grouped, axes: [2], epsilon: try float("epsilon", 1e-5), &t).y
      let back = try t.emit(.reshape, [y], declared: type)
      let scale = try channelVector(try input(1, &t), rank: type.rank, &t), bias = try channelVector(try input(2, &t), rank: type.rank, &t)
      try sameType(x, scale, t); try sameType(x, bias, t)
      return try t.emit(.add, [try t.emit(.mul, [back, scale]), bias])
    case "Trilu":
      try inputCount(1...2)
      guard type.rank >= 2, let rows = type.dims[type.rank - 2].staticSize, let cols = type.dims[type.rank - 1].staticSize else {
        throw Unsupported("needs static last two dimensions")
      }
      guard rows * cols <= 1 << 24 else { throw Unsupported("a \(rows)x\(cols) mask") }
      let k = try constantInts(1, t, what: "k")?.first ?? 0
      let upper = try int("upper", 1) != 0
      var mask: [Int64] = []
      for i in 0..<rows { for j in 0..<cols { mask.append((upper ? j - i >= k : j - i <= k) ? 1 : 0) } }
      let m = t.constant(Tensor(.i1, shape: [rows, cols], ints: mask))
      let zero = dtype.isFloat ? c(0, &t) : t.constant(Tensor(dtype, shape: [], ints: [0]))
      return try t.emit(.where, [m, x, zero])
    case "EyeLike":
      try inputCount(1...1)
      guard type.rank == 2, let shape = type.staticShape, shape[0] * shape[1] <= 1 << 24 else {
        throw Unsupported("needs a static 2-D input of at most 2^24 elements")
      }
      var out = dtype
      if node.attribute("dtype") != nil {
        let code = try int("dtype", 1)
        guard let d = ONNXDataType.dtype(code) else { throw Unsupported("dtype \(ONNXDataType.name(code))") }
        out = d
      }
      let k = try int("k", 0)
      var values: [Int64] = []
      for i in 0..<shape[0] { for j in 0..<shape[1] { values.append(j - i == k ? 1 : 0) } }
      let tensor = out.isFloat ? Tensor(out, shape: shape, floats: values.map(Double.init)) : Tensor(out, shape: shape, ints: values)
      return t.constant(tensor)
    case "BitwiseAnd", "BitwiseOr", "BitwiseXor", "BitwiseNot":
      // TTIR's and, or and not are bitwise on integers; xor is (a | b) & ~(a & b).
      guard dtype.isInteger && dtype != .i1 else { throw Unsupported("element type \(dtype)") }
      if op == "BitwiseNot" { try inputCount(1...1); return try t.emit(.not, [x]) }
      try inputCount(2...2)
      let y = try input(1, &t)
      try sameType(x, y, t)
      switch op {
      case "BitwiseAnd": return try t.emit(.and, [x, y])
      case "BitwiseOr": return try t.emit(.or, [x, y])
      default:
        let both = try t.emit(.not, [try t.emit(.and, [x, y])])
        return try t.emit(.and, [try t.emit(.or, [x, y]), both])
      }
    case "GatherND":
      // batch_dims 0 and static leading data dims: the k indexed dims flattened into one, the
      // flat index Σ idx[..., j]·stride_j (negative entries counted from the end), one gather.
      try inputCount(2...2)
      guard try int("batch_dims", 0) == 0 else { throw Unsupported("batch_dims other than 0") }
      let indices = try input(1, &t)
      let itype = t.type(indices)
      guard itype.dtype == .i64 || itype.dtype == .i32 else { throw Unsupported("indices of element type \(itype.dtype)") }
      guard itype.rank >= 1, let k = itype.dims.last?.staticSize, k >= 1, k <= type.rank else {
        throw Unsupported("indices whose last dimension is not a static size from 1 to the data's rank")
      }
      let leading = type.dims.prefix(k).compactMap(\.staticSize)
      guard leading.count == k, let flatCount = elementCount(leading) else { throw Unsupported("symbolic indexed dimensions") }
      var index = indices
      if itype.dtype != .i64 { index = try t.emit(.cast, [index], declared: itype.with(dtype: .i64)) }
      let sizes = t.constant(Tensor(.i64, shape: [k], ints: leading.map { Int64($0) }))
      let negative = try t.emit(.lt, [index, t.scalar(0, .i64)])
      index = try t.emit(.where, [negative, try t.emit(.add, [index, sizes]), index])
      let strides = t.constant(Tensor(.i64, shape: [k], ints: rowMajorStrides(leading).map { Int64($0) }))
      var flatIndex = try t.emit(.reduceSum, [try t.emit(.mul, [index, strides])], ["axes": .ints([-1])])
      // An entry outside its dimension would land on another row of the flattened data: its
      // flat index becomes the data's size, which the gather refuses by name (as onnxruntime
      // refuses the entry; a negative sentinel would count from the end).
      let outside = try t.emit(.or, [try t.emit(.lt, [index, t.scalar(0, .i64)]), try t.emit(.ge, [index, sizes])])
      let anyOutside = try t.emit(.reduceMax, [try t.emit(.cast, [outside], declared: t.type(index))], ["axes": .ints([-1])])
      flatIndex = try t.emit(.where, [try t.emit(.gt, [anyOutside, t.scalar(0, .i64)]), t.scalar(Double(flatCount), .i64), flatIndex])
      let flatData = try t.emit(.reshape, [x], declared: type.with(dims: [.known(flatCount)] + type.dims.dropFirst(k)))
      return try t.emit(.gather, [flatData, flatIndex], ["axis": .int(0)])
    case "CenterCropPad":
      // Centered: a crop starts at ⌊(n − m)/2⌋; a pad puts ⌊(m − n)/2⌋ before.
      try inputCount(2...2)
      guard let target = try constantInts(1, t, what: "shape") else { throw Unsupported("no shape") }
      var axes = Array(0..<type.rank)
      if let given = try ints("axes") { axes = []; for a in given { axes.append(try normalizedAxis(a, rank: type.rank)) } }
      guard target.count == axes.count else { throw Unsupported("shape \(target) for \(axes.count) axes") }
      var y = x
      var sAxes: [Int64] = [], starts: [Int64] = [], limits: [Int64] = []
      var low = Array(repeating: Int64(0), count: type.rank), high = low
      for (k, a) in axes.enumerated() {
        guard let n = type.dims[a].staticSize else { throw Unsupported("symbolic axis \(a)") }
        let m = target[k]
        guard m >= 0 && m <= maxTensorElements else { throw Unsupported("size \(m)") }
        if m < n {
          let start = (n - m) / 2
          sAxes.append(Int64(a)); starts.append(Int64(start)); limits.append(Int64(start + m))
        } else if m > n {
          low[a] = Int64((m - n) / 2); high[a] = Int64(m - n) - low[a]
        }
      }
      if !sAxes.isEmpty { y = try t.emit(.slice, [y], ["axes": .ints(sAxes), "starts": .ints(starts), "limits": .ints(limits)]) }
      if low.contains(where: { $0 != 0 }) || high.contains(where: { $0 != 0 }) {
        y = try t.emit(.pad, [y], ["low": .ints(low), "high": .ints(high), "value": dtype.isFloat ? .float(0) : .int(0)])
      }
      return y
    case "Shrink":
      try inputCount(1...1); try needFloat()
      let lambd = try float("lambd", 0.5), bias = try float("bias", 0)
      let below = try t.emit(.lt, [x, c(-lambd, &t)]), above = try t.emit(.gt, [x, c(lambd, &t)])
      let inner = try t.emit(.where, [above, try t.emit(.sub, [x, c(bias, &t)]), c(0, &t)])
      return try t.emit(.where, [below, try t.emit(.add, [x, c(bias, &t)]), inner])
    case "MeanVarianceNormalization":
      // ONNX's function: (x − E[x]) / (sqrt(E[x²] − E[x]²) + 1e-9).
      try inputCount(1...1); try needFloat()
      var axes: [Int] = []
      for a in try ints("axes") ?? [0, 2, 3] { axes.append(try normalizedAxis(a, rank: type.rank)) }
      let reduce: [String: Attribute] = ["axes": .ints(axes.map { Int64($0) }), "keepdims": .bool(true)]
      let mean = try t.emit(.reduceMean, [x], reduce)
      let meanOfSquares = try t.emit(.reduceMean, [try t.emit(.mul, [x, x])], reduce)
      let variance = try t.emit(.sub, [meanOfSquares, try t.emit(.mul, [mean, mean])])
      let denominator = try t.emit(.add, [try t.emit(.sqrt, [variance]), c(1e-9, &t)])
      return try t.emit(.div, [try t.emit(.sub, [x, mean]), denominator])
    case "Mod":
      // Integers only: fmod = 1 is C's remainder (the dividend's sign: x − trunc(x / y)·y, which
      // TTIR's truncating integer div gives exactly); fmod = 0 moves a remainder whose sign differs
      // from the divisor's by one y (Python's %). Float Mod is not exact as a composition.
      try inputCount(2...2)
      let fmod = try int("fmod", 0) != 0
      guard dtype.isInteger, dtype != .i1 else { throw Unsupported("Mod of element type \(dtype) (integers only)") }
      let y = try input(1, &t)
      try sameType(x, y, t)
      let truncated = try t.emit(.sub, [x, try t.emit(.mul, [try t.emit(.div, [x, y]), y])])
      if fmod { return truncated }
      let zero = t.constant(Tensor(dtype, shape: [], ints: [0]))
      let signsDiffer = try t.emit(.ne, [try t.emit(.lt, [truncated, zero]), try t.emit(.lt, [y, zero])])
      let adjust = try t.emit(.and, [try t.emit(.ne, [truncated, zero]), signsDiffer])
      return try t.emit(.where, [adjust, try t.emit(.add, [truncated, y]), truncated])
    case "CumSum":
      // A matmul with a constant triangular matrix along the (static) axis, moved last.
      try inputCount(2...2)
      guard dtype != .i1 else { throw Unsupported("element type i1") }
      guard let axisValue = try constantInts(1, t, what: "axis")?.first else { throw Unsupported("no axis") }
      let axis = try normalizedAxis(axisValue, rank: type.rank)
      guard let n = type.dims[axis].staticSize else { throw Unsupported("symbolic axis \(axis)") }
      guard n <= 4096 else { throw Unsupported("an axis of \(n) elements (the triangular matrix would have n²)") }
      let exclusive = try int("exclusive", 0) != 0, reverse = try int("reverse", 0) != 0
      var m: [Int64] = []
      for i in 0..<n { for j in 0..<n {
        // y[j] = Σ_i x[i]·m[i][j]: i ≤ j forward, i ≥ j reversed; strict when exclusive.
        let take = reverse ? (exclusive ? i > j : i >= j) : (exclusive ? i < j : i <= j)
        m.append(take ? 1 : 0)
      } }
      let matrix = dtype.isFloat ? Tensor(dtype, shape: [n, n], floats: m.map(Double.init)) : Tensor(dtype, shape: [n, n], ints: m)
      var perm = Array(0..<type.rank).map { Int64($0) }
      perm.remove(at: axis); perm.append(Int64(axis))
      let moved = axis == type.rank - 1 ? x : try t.emit(.transpose, [x], ["perm": .ints(perm)])
      let movedType = t.type(moved)
      // matmul needs rank ≥ 2: a leading 1 for vectors.
      let lifted = movedType.rank == 1 ? try t.emit(.reshape, [moved], declared: movedType.with(dims: [.known(1)] + movedType.dims)) : moved
      var summed = try t.emit(.matmul, [lifted, t.constant(matrix)])
      if movedType.rank == 1 { summed = try t.emit(.reshape, [summed], declared: movedType) }
      if axis == type.rank - 1 { return summed }
      var inverse = Array(repeating: Int64(0), count: type.rank)
      for (k, p) in perm.enumerated() { inverse[Int(p)] = Int64(k) }
      return try t.emit(.transpose, [summed], ["perm": .ints(inverse)])
    case "GatherElements":
      // Static shapes: flat indices into the flattened data, one gather.
      try inputCount(2...2)
      let indices = try input(1, &t)
      let itype = t.type(indices)
      guard let dataShape = type.staticShape, let indexShape = itype.staticShape, dataShape.count == indexShape.count else {
        throw Unsupported("needs static shapes of equal rank")
      }
      guard itype.dtype == .i32 || itype.dtype == .i64 else { throw Unsupported("indices of element type \(itype.dtype)") }
      let axis = try normalizedAxis(try int("axis", 0), rank: type.rank)
      let strides = rowMajorStrides(dataShape)
      let count = indexShape.reduce(1, *)
      guard count <= 1 << 24 else { throw Unsupported("\(count) indices") }
      // The flat offset of every position, the indexed axis left out.
      var base: [Int64] = []
      base.reserveCapacity(count)
      let indexStrides = rowMajorStrides(indexShape)
      for flat in 0..<count {
        var offset = 0
        for k in 0..<indexShape.count where k != axis { offset += (flat / indexStrides[k]) % indexShape[k] * strides[k] }
        base.append(Int64(offset))
      }
      var index = indices
      if itype.dtype != .i64 { index = try t.emit(.cast, [index], declared: itype.with(dtype: .i64)) }
      let size = Int64(dataShape[axis])
      let negative = try t.emit(.lt, [index, t.scalar(0, .i64)])
      index = try t.emit(.where, [negative, try t.emit(.add, [index, t.scalar(Double(size), .i64)]), index])
      let scaled = try t.emit(.mul, [index, t.scalar(Double(strides[axis]), .i64)])
      var flatIndex = try t.emit(.add, [scaled, t.constant(Tensor(.i64, shape: indexShape, ints: base))])
      // An index outside the axis would land on a neighbouring row: the data's size instead,
      // refused by the gather by name.
      let outside = try t.emit(.or, [try t.emit(.lt, [index, t.scalar(0, .i64)]), try t.emit(.ge, [index, t.scalar(Double(size), .i64)])])
      flatIndex = try t.emit(.where, [outside, t.scalar(Double(dataShape.reduce(1, *)), .i64), flatIndex])
      let flatData = try t.emit(.reshape, [x], declared: TensorType(dtype, [.known(dataShape.reduce(1, *))]))
      return try t.emit(.gather, [flatData, flatIndex], ["axis": .int(0)])
    default: throw Unsupported("op type not supported")
    }
  }

  /// LpPool: (Σ |x|^p)^(1/p) over each window, padding contributing 0: an avg_pool that counts
  /// padding (its divisor is always kh·kw) times kh·kw, of |x|^p (x·x for p = 2).
  mutating func lpPool(_ t: inout Translator) throws(Unsupported) -> ValueID {
    try inputCount(1...1)
    let x = try liftOneD(try input(0, &t), &t)
    let tx = t.type(x)
    guard tx.dtype.isFloat else { throw Unsupported("element type \(tx.dtype)") }
    guard tx.rank == 4 else { throw Unsupported("a \(tx.rank - 2)-D pool (1-D and 2-D are translated)") }
    guard let kernel = try windowInts("kernel_shape"), kernel.count == 2, kernel.allSatisfy({ $0 >= 1 && $0 <= 1 << 20 }) else {
      throw Unsupported("kernel_shape must list one size per spatial axis")
    }
    let dilations = try windowInts("dilations") ?? [1, 1]
    guard dilations == [1, 1] else { throw Unsupported("dilations \(dilations) (TTIR pools have none)") }
    var attrs = try windowAttributes(sizes: [tx.dims[2], tx.dims[3]], kernel: kernel, dilations: dilations, ceilMode: try int("ceil_mode", 0) != 0)
    attrs["window"] = .ints(kernel.map { Int64($0) })
    attrs["count_include_pad"] = .bool(true)
    if case .ints(let pads)? = attrs["pads"] {
      for (k, pad) in pads.enumerated() where pad >= Int64(kernel[k / 2]) {
        throw Unsupported("padding \(pad) is not smaller than the window \(kernel[k / 2])")
      }
    }
    let p = try int("p", 2)
    guard p >= 1 && p <= 64 else { throw Unsupported("p = \(p)") }
    let dtype = tx.dtype
    let magnitude = try t.emit(.abs, [x])
    let powered = p == 1 ? magnitude : p == 2 ? try t.emit(.mul, [x, x]) : try t.emit(.pow, [magnitude, t.scalar(Double(p), dtype)])
    let xh = try t.emit(.transpose, [powered], ["perm": .ints(Self.toNHWC)])
    let mean = try t.emit(.avgPool, [xh], attrs)
    let sum = try t.emit(.mul, [mean, t.scalar(Double(kernel[0] * kernel[1]), dtype)])
    let root = p == 1 ? sum : p == 2 ? try t.emit(.sqrt, [sum]) : try t.emit(.pow, [sum, t.scalar(1 / Double(p), dtype)])
    return try lowerOneD(try t.emit(.transpose, [root], ["perm": .ints(Self.toNCHW)]), &t)
  }

  /// NegativeLogLikelihoodLoss of log-probabilities `x` [N, C, d...] against integer targets
  /// [N, d...] (also the second half of SoftmaxCrossEntropyLoss): the class axis moved last, the
  /// target's entry picked with a boolean `one_hot` and `where` (so a −inf elsewhere stays out),
  /// weights gathered the same way; ignore_index zeroes its entries; reduction none, sum or mean
  /// (the weighted mean Σ w·l / Σ w when weights or an ignore_index are given, except that
  /// NegativeLogLikelihoodLoss's reference takes the plain mean for ignore_index −1 without
  /// weights, which is followed).
  mutating func negativeLogLikelihood(_ x: ValueID, _ t: inout Translator) throws(Unsupported) -> ValueID {
    let type = t.type(x)
    let dtype = type.dtype
    guard dtype.isFloat, type.rank >= 2, let classes = type.dims[1].staticSize else {
      throw Unsupported("needs float scores of rank 2 or more with a static class axis")
    }
    var target = try input(1, &t)
    let ttype = t.type(target)
    guard ttype.dtype == .i32 || ttype.dtype == .i64 else { throw Unsupported("targets of element type \(ttype.dtype)") }
    let reduction = try string("reduction", "mean")
    guard ["none", "sum", "mean"].contains(reduction) else { throw Unsupported("reduction = '\(reduction)'") }
    var perm = Array(0..<type.rank).map { Int64($0) }
    perm.remove(at: 1); perm.append(1)
    let moved = try t.emit(.transpose, [x], ["perm": .ints(perm)])
    if ttype.dtype != .i64 { target = try t.emit(.cast, [target], declared: ttype.with(dtype: .i64)) }
    let ignoreIndex: Int? = node.attribute("ignore_index") == nil ? nil : try int("ignore_index", 0)
    // A target outside [0, C) that is not ignore_index is an error (onnxruntime's too), not a
    // row of zero loss: the class ids are looked up by a gather, which refuses it by name (the
    // out-of-range ones sent to C, since a gather counts negative indices from the end).
    var lookup = target
    if let ignoreIndex {
      lookup = try t.emit(.where, [try t.emit(.ne, [target, t.scalar(Double(ignoreIndex), .i64)]), target, t.scalar(0, .i64)])
    }
    let outside = try t.emit(.or, [try t.emit(.lt, [lookup, t.scalar(0, .i64)]), try t.emit(.ge, [lookup, t.scalar(Double(classes), .i64)])])
    lookup = try t.emit(.where, [outside, t.scalar(Double(classes), .i64), lookup])
    let classIds = t.constant(Tensor(.i64, shape: [classes], ints: (0..<Int64(classes)).map { $0 }))
    let checked = try t.emit(.gather, [classIds, lookup], ["axis": .int(0)])
    let hit = try t.emit(.oneHot, [checked], ["depth": .int(Int64(classes)), "on_value": .int(1), "off_value": .int(0)],
                         declared: TensorType(.i1, t.type(target).dims + [.known(classes)]))
    let zero = t.scalar(0, dtype)
    let sumClasses: [String: Attribute] = ["axes": .ints([-1])]
    let picked = try t.emit(.reduceSum, [try t.emit(.where, [hit, moved, zero])], sumClasses)
    var loss = try t.emit(.neg, [picked])
    guard t.type(loss).dims == t.type(target).dims else { throw Unsupported("targets of shape \(ttype.dims) for scores \(type.dims)") }
    var weight: ValueID?
    if let w = try optionalInput(2, &t) {
      try sameType(x, w, t)
      weight = try t.emit(.reduceSum, [try t.emit(.where, [hit, w, zero])], sumClasses)
    }
    if let ignoreIndex {
      let kept = try t.emit(.ne, [target, t.scalar(Double(ignoreIndex), .i64)])
      if let w = weight {
        weight = try t.emit(.where, [kept, w, zero])
      } else if !(node.opType == "NegativeLogLikelihoodLoss" && ignoreIndex == -1) {
        weight = try t.emit(.cast, [kept], declared: t.type(kept).with(dtype: dtype))
      }
      loss = try t.emit(.where, [kept, loss, zero])
    }
    if let w = weight { loss = try t.emit(.mul, [loss, w]) }
    switch reduction {
    case "none": return loss
    case "sum": return try t.emit(.reduceSum, [loss])
    default:
      if let w = weight { return try t.emit(.div, [try t.emit(.reduceSum, [loss]), try t.emit(.reduceSum, [w])]) }
      return try t.emit(.reduceMean, [loss])
    }
  }

  /// Resize (and the older Upsample) with mode nearest by whole scale factors: every element
  /// repeated s times along each axis (reshape, broadcast_to, reshape), which is exactly what the
  /// nearest modes give for integer scales with half_pixel (round_prefer_floor or _ceil) or
  /// asymmetric (floor) coordinates. Other modes, fractional scales and the other coordinate
  /// rules are named errors.
  mutating func resizeNearest(_ t: inout Translator) throws(Unsupported) -> ValueID {
    let x = try input(0, &t)
    let type = t.type(x)
    let mode = try string("mode", "nearest")
    guard mode == "nearest" else { throw Unsupported("mode = '\(mode)' (only nearest with whole scale factors is translated)") }
    var factors: [Int] = []
    let scaleInput = node.opType == "Upsample" ? 1 : 2
    if node.opType == "Resize" {
      try inputCount(1...4)
      let transform = try string("coordinate_transformation_mode", "half_pixel")
      let nearest = try string("nearest_mode", "round_prefer_floor")
      let exact = (transform == "half_pixel" && (nearest == "round_prefer_floor" || nearest == "round_prefer_ceil"))
        || (transform == "asymmetric" && nearest == "floor")
      guard exact else { throw Unsupported("coordinate_transformation_mode '\(transform)' with nearest_mode '\(nearest)'") }
      guard try int("antialias", 0) == 0 else { throw Unsupported("antialias = 1") }
      if node.attribute("keep_aspect_ratio_policy") != nil, try string("keep_aspect_ratio_policy", "stretch") != "stretch" {
        throw Unsupported("keep_aspect_ratio_policy other than stretch")
      }
    } else {
      try inputCount(2...2)
    }
    var axes = Array(0..<type.rank)
    if let given = try ints("axes") { axes = []; for a in given { axes.append(try normalizedAxis(a, rank: type.rank)) } }
    if let scales = try constantInput(scaleInput, t, what: "scales"), scales.count > 0 {
      guard scales.count == axes.count else { throw Unsupported("\(scales.count) scales for \(axes.count) axes") }
      for v in scales.doubles {
        guard v >= 1, v <= 4096, v == v.rounded() else { throw Unsupported("scale \(v) (only whole factors are translated)") }
        factors.append(Int(v))
      }
    } else if node.opType == "Resize", let sizes = try constantInts(3, t, what: "sizes") {
      guard sizes.count == axes.count else { throw Unsupported("\(sizes.count) sizes for \(axes.count) axes") }
      for (k, a) in axes.enumerated() {
        guard let n = type.dims[a].staticSize, n > 0, sizes[k] % n == 0, sizes[k] >= n, sizes[k] / n <= 4096 else {
          throw Unsupported("size \(sizes[k]) of axis \(a) is not a whole multiple of \(type.dims[a])")
        }
        factors.append(sizes[k] / n)
      }
    } else {
      throw Unsupported("neither scales nor sizes")
    }
    var expanded: [Dim] = [], broadcast: [Dim] = [], result: [Dim] = []
    for (a, d) in type.dims.enumerated() {
      let s = axes.firstIndex(of: a).map { factors[$0] } ?? 1
      expanded += [d, .known(1)]; broadcast += [d, .known(s)]
      if s == 1 { result.append(d) } else {
        guard let n = d.staticSize, n * s <= maxTensorElements else { throw Unsupported("resizing symbolic dimension \(d)") }
        result.append(.known(n * s))
      }
    }
    if result == type.dims { return x }
    let a = try t.emit(.reshape, [x], declared: TensorType(type.dtype, expanded))
    let b = try t.emit(.broadcastTo, [a], declared: TensorType(type.dtype, broadcast))
    return try t.emit(.reshape, [b], declared: TensorType(type.dtype, result))
  }

  /// ConvTranspose on NCHW = conv2d_backprop_input on NHWC with the same filter layout change as
  /// Conv ([Cin, Cout/G, kH, kW] -> [kH, kW, Cout/G, Cin]) and explicit pads.
  mutating func convTranspose(_ t: inout Translator) throws(Unsupported) -> ValueID {
    try inputCount(2...3)
    let x = try input(0, &t), w = try input(1, &t)
    try sameType(x, w, t)
    let tx = t.type(x), tw = t.type(w)
    guard tx.rank == 4 && tw.rank == 4 else { throw Unsupported("a \(tx.rank - 2)-D transposed convolution (only 2-D is translated)") }
    guard let h = tx.dims[2].staticSize, let wi = tx.dims[3].staticSize, let kh = tw.dims[2].staticSize, let kw = tw.dims[3].staticSize,
          let perGroup = tw.dims[1].staticSize else { throw Unsupported("symbolic spatial or filter dimensions") }
    if let kernel = try ints("kernel_shape"), kernel != [kh, kw] { throw Unsupported("kernel_shape \(kernel) differs from the weights'") }
    let autoPad = try string("auto_pad", "NOTSET")
    guard autoPad == "NOTSET" || autoPad == "VALID" else { throw Unsupported("auto_pad = '\(autoPad)'") }
    let strides = try ints("strides") ?? [1, 1], dilations = try ints("dilations") ?? [1, 1]
    let outputPadding = try ints("output_padding") ?? [0, 0]
    let pads = autoPad == "VALID" ? [0, 0, 0, 0] : try ints("pads") ?? [0, 0, 0, 0]
    guard strides.count == 2, dilations.count == 2, outputPadding.count == 2, pads.count == 4,
          strides.allSatisfy({ $0 >= 1 && $0 <= 1 << 20 }), dilations.allSatisfy({ $0 >= 1 && $0 <= 1 << 20 }),
          pads.allSatisfy({ $0 >= 0 && $0 <= 1 << 40 }), h <= 1 << 20, wi <= 1 << 20 else {
      throw Unsupported("strides \(strides), dilations \(dilations), pads \(pads), output_padding \(outputPadding)")
    }
    guard outputPadding[0] >= 0 && outputPadding[0] < strides[0] && outputPadding[1] >= 0 && outputPadding[1] < strides[1] else {
      throw Unsupported("output_padding \(outputPadding) not below the strides \(strides)")
    }
    let group = try int("group", 1)
    let sizes = [h, wi], kernel = [kh, kw]
    var out: [Int] = []
    for k in 0..<2 {
      out.append(strides[k] * (sizes[k] - 1) + outputPadding[k] + (kernel[k] - 1) * dilations[k] + 1 - pads[k] - pads[k + 2])
    }
    guard out.allSatisfy({ $0 >= 1 }) else { throw Unsupported("an empty output \(out)") }
    let channels = perGroup * group
    let xh = try t.emit(.transpose, [x], ["perm": .ints(Self.toNHWC)])
    let wh = try t.emit(.transpose, [w], ["perm": .ints([2, 3, 1, 0])])
    var attrs: [String: Attribute] = ["strides": .ints(strides.map { Int64($0) }), "dilations": .ints(dilations.map { Int64($0) }),
                                      "pads": .ints([pads[0], pads[2], pads[1], pads[3]].map { Int64($0) })]
    if group != 1 { attrs["groups"] = .int(Int64(group)) }
    var y = try t.emit(.conv2dBackpropInput, [xh, wh], attrs,
                       declared: TensorType(tx.dtype, [tx.dims[0], .known(out[0]), .known(out[1]), .known(channels)]))
    if let bias = try optionalInput(2, &t) {
      try sameType(x, bias, t)
      y = try t.emit(.add, [y, bias])
    }
    return try t.emit(.transpose, [y], ["perm": .ints(Self.toNCHW)])
  }
}
