// The codegen allow-list (OpInfo.codegen) against the kernel emitter and the interpreter: every
// elementwise op the facts say compiles for an element type does compile (one kernel, nothing
// interpreted) and agrees with the interpreter; every op or element type without a lowering still
// runs compiled, as an interpreted thunk named by the statistics, while its neighbours compile.
import Foundation
import Testing
import TTCompiler
import TTIR
import TTInterp
import TTRuntime

struct CodegenAllowListTests {
  /// Deterministic inputs: small integers (never out of an i8's range, a few zeros and negatives),
  /// floats in (0.25, 2.25) for ops whose domain is positive, else in (-3, 3).
  static func input(_ type: TensorType, seed: Int, positive: Bool) -> Tensor {
    let shape = type.dims.map { $0.staticSize ?? 4 }
    let n = elementCount(shape)!
    if type.dtype == .i1 { return Tensor(.i1, shape: shape, ints: (0..<n).map { Int64(($0 * 7 + seed) % 3 == 0 ? 1 : 0) }) }
    if type.dtype.isInteger { return Tensor(type.dtype, shape: shape, ints: (0..<n).map { Int64(($0 * 5 + seed * 3) % 11 - 5) }) }
    return Tensor(type.dtype, shape: shape, floats: (0..<n).map { i in
      let u = Double((i * 37 + seed * 17) % 97) / 97
      return positive ? 0.25 + 2 * u : 6 * u - 3
    })
  }

  /// One op over operands of `dtype`, as a module, or nil when the op is not elementwise.
  static func oneOpModule(_ code: OpCode, _ dtype: DType) -> (text: String, types: [TensorType])? {
    let t = "\(dtype)[3, 4]"
    switch code.info.opClass {
    case .elementwiseUnary:
      let attributes = code == .gelu ? " {approximate = true}" : ""
      return ("func @f(%x: \(t)) -> \(t) {\n  %y = \(code) %x\(attributes) : \(t)\n  return %y\n}", [TensorType(dtype, shape: [3, 4])])
    case .elementwiseBinary:
      return ("func @f(%x: \(t), %w: \(dtype)[4]) -> \(t) {\n  %y = \(code) %x, %w : \(t)\n  return %y\n}",
              [TensorType(dtype, shape: [3, 4]), TensorType(dtype, shape: [4])])
    case .compare:
      return ("func @f(%x: \(t), %w: \(dtype)[4]) -> i1[3, 4] {\n  %y = \(code) %x, %w : i1[3, 4]\n  return %y\n}",
              [TensorType(dtype, shape: [3, 4]), TensorType(dtype, shape: [4])])
    case .select:
      return ("func @f(%c: i1[3, 4], %x: \(t), %w: \(t)) -> \(t) {\n  %y = \(code) %c, %x, %w : \(t)\n  return %y\n}",
              [TensorType(.i1, shape: [3, 4]), TensorType(dtype, shape: [3, 4]), TensorType(dtype, shape: [3, 4])])
    case .cast:
      let target: DType = dtype == .f32 ? .i32 : .f32
      return ("func @f(%x: \(t)) -> \(target)[3, 4] {\n  %y = cast %x : \(target)[3, 4]\n  return %y\n}", [TensorType(dtype, shape: [3, 4])])
    default:
      return nil
    }
  }

  static let positiveDomain: Set<OpCode> = [.log, .log1p, .sqrt, .rsqrt, .pow]

  /// (op, element type) for every elementwise op and every element type it accepts.
  static let elementwiseCases: [(OpCode, DType)] = OpCode.allCases.flatMap { code in
    DType.allCases.filter { code.info.dtypes.admits($0) && oneOpModule(code, $0) != nil }.map { (code, $0) }
  }

  @Test func everyElementwiseOpRunsCompiledAsItsFactsSay() throws {
    var checked = 0, compiled = 0
    for (code, dtype) in Self.elementwiseCases {
      let (text, types) = Self.oneOpModule(code, dtype)!
      let module = try Parser.parseAndVerify("module @m {\n\(text)\n}")
      let inputs = types.enumerated().map { Self.input($0.element, seed: $0.offset, positive: Self.positiveDomain.contains(code)) }
      let expected = try Interpreter(module: module).run("f", inputs)
      let executable = try Executable(module: module, function: "f")
      let got = try executable.run(inputs)
      // Half types: bit for bit (both sides round each op's f32 result to the half type).
      let tolerance = dtype == .f64 ? 1e-12 : (dtype == .f16 || dtype == .bf16 ? 0 : 2e-6)
      if let mismatch = compiledMismatch(got[0], expected[0], rtol: tolerance, atol: tolerance) {
        Issue.record("\(code) on \(dtype): \(mismatch)")
      }
      let stats = executable.statistics
      if code.info.codegen.compilesElementwise(dtype) {
        #expect(stats.kernels == 1 && stats.interpretedOpCount == 0, "\(code) on \(dtype) should compile: \(stats.fallbackReasons)")
        compiled += 1
      } else {
        #expect(stats.kernels == 0 && stats.interpretedOps[code.rawValue] == 1,
                "\(code) on \(dtype) has no lowering and should run on the interpreter: \(stats.interpretedOps)")
        #expect(stats.interpretedSummary == "interpreted: 1 ops: \(code) x1")
      }
      checked += 1
    }
    #expect(checked > 100 && compiled > 80)
  }

  /// An op without a lowering between compiled ops: it runs alone on the interpreter (fusion
  /// leaves it out of regions), the ops around it still compile, and the numbers agree.
  @Test func anOpWithoutALoweringRunsBetweenCompiledKernels() throws {
    let unlowered = OpCode.allCases.filter { $0.info.codegen == .interpreted && $0.info.opClass == .elementwiseUnary }
    var programs = unlowered.map { code in
      ("""
        func @f(%x: f32[B, 6], %b: f32[6]) -> f32[B, 6] {
          %a = add %x, %b : f32[B, 6]
          %e = tanh %a : f32[B, 6]
          %y = \(code) %e : f32[B, 6]
          %z = mul %y, %a : f32[B, 6]
          return %z
        }
        """, code.rawValue)
    }
    // argmax: a reduction without a lowering, fed and read by compiled code.
    programs.append(("""
      func @f(%x: f32[B, 6], %b: f32[6]) -> f32[B, 6] {
        %a = add %x, %b : f32[B, 6]
        %i = argmax %a {axis = 1, keepdims = true} : i32[B, 1]
        %c = cast %i : f32[B, 1]
        %z = mul %a, %c : f32[B, 6]
        return %z
      }
      """, "argmax"))
    #expect(!programs.isEmpty)
    for (text, name) in programs {
      let module = try Parser.parseAndVerify("module @m {\n\(text)\n}")
      let executable = try Executable(module: module, function: "f")
      for rows in [1, 5, 33] {
        let inputs = [Self.input(TensorType(.f32, [.known(rows), .known(6)]), seed: rows, positive: false),
                      Self.input(TensorType(.f32, shape: [6]), seed: 2, positive: false)]
        let expected = try Interpreter(module: module).run("f", inputs)
        let got = try executable.run(inputs)
        #expect(compiledMismatch(got[0], expected[0]) == nil, "\(name), \(rows) rows: \(compiledMismatch(got[0], expected[0]) ?? "")")
      }
      let stats = executable.statistics
      #expect(stats.interpretedOps == [name: 1], "\(name): \(stats.interpretedOps)")
      #expect(stats.kernels >= 2, "the ops around '\(name)' compile: \(stats.kernels) kernels")
    }
  }

  /// Special half values: signed zeros, subnormals, the largest finite values, infinities, NaN.
  static func halfSpecials(_ dtype: DType) -> [Double] {
    let tiny = dtype == .f16 ? 5.960464477539063e-8 : 9.183549615799121e-41
    let largest = dtype == .f16 ? 65504.0 : 3.3895313892515355e38
    return [0, -0.0, tiny, -tiny, 3 * tiny, largest, -largest, .infinity, -.infinity, .nan, 1, -1, 0.5, 2.75, -3.140625, 100, 1e-3]
  }

  /// f16 and bf16 compile (no interpreter) and agree with the interpreter bit for bit on every
  /// elementwise op and every pair of special values: each op computes in f32 registers and
  /// rounds its result once to the half type, as IR-specs/types.md says.
  @Test(arguments: [DType.f16, .bf16])
  func halfPrecisionCompilesBitForBitOnSpecialValues(_ dtype: DType) throws {
    let specials = Self.halfSpecials(dtype)
    let n = specials.count
    // Every pair (a, b) of specials: x[i, j] = specials[i], w[i, j] = specials[j].
    let x = Tensor(dtype, shape: [n, n], floats: (0..<n * n).map { roundToFloat(specials[$0 / n], dtype) })
    let w = Tensor(dtype, shape: [n, n], floats: (0..<n * n).map { roundToFloat(specials[$0 % n], dtype) })
    var checked = 0
    for code in OpCode.allCases where code.info.codegen.compilesElementwise(dtype) {
      let operands: String, text: String
      switch code.info.opClass {
      case .elementwiseUnary: operands = "%x"
      case .elementwiseBinary: operands = "%x, %w"
      default: continue
      }
      let attributes = code == .gelu ? " {approximate = true}" : ""
      text = """
        module @m {
          func @f(%x: \(dtype)[\(n), \(n)], %w: \(dtype)[\(n), \(n)]) -> \(dtype)[\(n), \(n)] {
            %y = \(code) \(operands)\(attributes) : \(dtype)[\(n), \(n)]
            return %y
          }
        }
        """
      let module = try Parser.parseAndVerify(text)
      let executable = try Executable(module: module, function: "f")
      #expect(executable.statistics.interpretedOpCount == 0, "\(code) on \(dtype): \(executable.statistics.fallbackReasons)")
      let got = try executable.run([x, w])[0].doubles
      let expected = try Interpreter(module: module).run("f", [x, w])[0].doubles
      for i in got.indices where !(got[i].bitPattern == expected[i].bitPattern || (got[i].isNaN && expected[i].isNaN)) {
        Issue.record("\(code) on \(dtype) (\(specials[i / n]), \(specials[i % n])): compiled \(got[i]), interpreter \(expected[i])")
        break
      }
      checked += 1
    }
    #expect(checked >= 25)
  }

  /// A fused half-precision region with a reduction: every op rounds to the half type, the sum
  /// accumulates in f32 and rounds once. Equal to the interpreter within one half ulp (the
  /// compiled sum is reassociated).
  @Test(arguments: [DType.f16, .bf16])
  func halfPrecisionFusedRegionsCompile(_ dtype: DType) throws {
    let module = try Parser.parseAndVerify("""
      module @m {
        func @f(%x: \(dtype)[B, 64], %b: \(dtype)[64]) -> (\(dtype)[B, 64], \(dtype)[B]) {
          %a = add %x, %b : \(dtype)[B, 64]
          %t = tanh %a : \(dtype)[B, 64]
          %e = exp %t : \(dtype)[B, 64]
          %s = reduce_sum %e {axes = [1]} : \(dtype)[B]
          %c = cast %s : f32[B]
          %h = cast %c : \(dtype)[B]
          return %e, %h
        }
      }
      """)
    let executable = try Executable(module: module, function: "f")
    #expect(executable.statistics.interpretedOpCount == 0, "\(executable.statistics.fallbackReasons)")
    for rows in [1, 7, 64] {
      let inputs = [Self.input(TensorType(dtype, [.known(rows), .known(64)]), seed: rows, positive: false),
                    Self.input(TensorType(dtype, shape: [64]), seed: 3, positive: false)]
      let rounded = inputs.map { t in Tensor(dtype, shape: t.shape, floats: t.doubles.map { roundToFloat($0, dtype) }) }
      let got = try executable.run(rounded)
      let expected = try Interpreter(module: module).run("f", rounded)
      #expect(got[0].doubles.indices.allSatisfy { got[0].doubles[$0] == expected[0].doubles[$0] }, "elementwise part, \(rows) rows")
      let ulp = dtype == .f16 ? 1.0 / 1024 : 1.0 / 128
      for (a, b) in zip(got[1].doubles, expected[1].doubles) { #expect(abs(a - b) <= ulp * abs(b), "sum \(a) vs \(b)") }
    }
  }

  /// Half reductions accumulate in f64, as the interpreter does: no f32 overflow for bf16 (which
  /// has f32's range), no absorbed terms under cancellation. Cases found by a hostile review.
  @Test func halfReductionsNeitherOverflowNorAbsorb() throws {
    let module = try Parser.parseAndVerify("""
      module @m {
        func @f16sum(%x: f16[N]) -> f16[] {
          %s = reduce_sum %x : f16[]
          return %s
        }
        func @bf16sum(%x: bf16[N]) -> bf16[] {
          %s = reduce_sum %x : bf16[]
          return %s
        }
        func @bf16mean(%x: bf16[N]) -> bf16[] {
          %s = reduce_mean %x : bf16[]
          return %s
        }
        func @bf16prod(%x: bf16[N]) -> bf16[] {
          %s = reduce_prod %x : bf16[]
          return %s
        }
      }
      """)
    let cancelling = Array(repeating: 65504.0, count: 5000) + Array(repeating: 0.5, count: 2000) + Array(repeating: -65504.0, count: 5000)
    let cases: [(String, DType, [Double], Double)] = [
      ("f16sum", .f16, cancelling, 1000),
      ("bf16sum", .bf16, [3e38, 3e38, -3e38, -3e38, 1].map { roundToFloat($0, .bf16) }, 1),
      ("bf16mean", .bf16, Array(repeating: roundToFloat(3e38, .bf16), count: 4), roundToFloat(3e38, .bf16)),
      ("bf16prod", .bf16, [1e30, 1e30, 1e-30, 1e-30].map { roundToFloat($0, .bf16) }, 0),
    ]
    for (name, dtype, values, exact) in cases {
      let x = Tensor(dtype, shape: [values.count], floats: values)
      let got = try Executable(module: module, function: name).run([x])[0].doubles[0]
      let expected = try Interpreter(module: module).run(name, [x])[0].doubles[0]
      #expect(got == expected, "\(name): compiled \(got), interpreter \(expected)")
      if exact != 0 { #expect(got == exact, "\(name): \(got), exactly \(exact)") } else { #expect(got.isFinite && abs(got - 1) < 0.02) }
    }
  }

  /// Splats too large to expand at compile time are filled by a kernel in the arena, where the
  /// memory budget names a run that cannot fit (no crash).
  @Test func hugeSplatsAreKernelsAndAnImpossibleOneIsANamedError() throws {
    let module = try Parser.parseAndVerify("""
      module @m {
        func @big() -> f32[2048, 1024] {
          %z = constant 2.5 : f32[2048, 1024]
          return %z
        }
        func @impossible() -> f16[1048576, 1048576] {
          %z = constant 1.0 : f16[1048576, 1048576]
          return %z
        }
      }
      """)
    let big = try Executable(module: module, function: "big")
    #expect(big.statistics.kernels == 1)
    let values = try big.run([])[0].doubles
    #expect(values.count == 2048 * 1024 && values.allSatisfy { $0 == 2.5 })
    let impossible = try Executable(module: module, function: "impossible")
    #expect(throws: ExecutableError.self) { try impossible.run([]) }
  }
}
