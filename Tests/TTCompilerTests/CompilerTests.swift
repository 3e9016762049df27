// The compiler on its own: what a Program holds (slots by kind, thunks), that one program serves
// several executables with their own parameter values, that the verifier runs between passes
// when asked (and names the pass that broke the module), and that the runtime does not depend on
// the passes (TTRuntime imports no TTPasses).
import Foundation
import Testing
import TTCompiler
import TTIR
import TTInterp
import TTPasses
import TTRuntime

struct CompilerTests {
  static let mlp = """
    module @m {
      param @w : f32[4, 3] = he_normal(seed: 1)
      param @b : f32[3] = zeros
      param @unused : f32[2]
      func @f(%x: f32[B, 4]) -> f32[B, 3] {
        %h = matmul %x, @w : f32[B, 3]
        %z = add %h, @b : f32[B, 3]
        %y = relu %z : f32[B, 3]
        return %y
      }
    }
    """

  @Test func aProgramNamesItsSlotsAndThunks() throws {
    let module = try Parser.parseAndVerify(Self.mlp)
    let program = try Compiler.compile(module, function: "f")
    #expect(Set(program.parametersRead) == ["w", "b"])
    #expect(program.symbols == ["B"])
    #expect(program.thunks.count == 2, "a GEMM and its bias + relu epilogue")
    #expect(program.statistics.gemms == 1 && program.statistics.kernels == 1)
    // The optimized module is the compiler's: the function it lowered is in it, fused.
    let lowered = try #require(program.optimizedModule.function(named: "f"))
    #expect(lowered.body.contains { lowered[$0].code == .fusion })
    #expect(program.lowered.body.count == lowered.body.count)
  }

  @Test func oneProgramServesExecutablesWithTheirOwnParameters() throws {
    let module = try Parser.parseAndVerify(Self.mlp)
    let program = try Compiler.compile(module, function: "f")
    let x = Tensor(.f32, shape: [2, 4], floats: [1, 2, 3, 4, -1, -2, 0.5, 0.25])
    var outputs: [[Double]] = []
    for scale in [1.0, -2.0] {
      let w = Tensor(.f32, shape: [4, 3], floats: (0..<12).map { Double($0) * 0.1 * scale })
      let b = Tensor(.f32, shape: [3], floats: [0.5, -0.5, 0])
      let executable = try Executable(program: program, params: ["w": w, "b": b])
      let expected = try Interpreter(module: module, params: ["w": w, "b": b, "unused": Tensor.filled(.f32, shape: [2], value: 0)]).run("f", [x])
      let got = try executable.run([x])
      #expect(got[0].doubles.indices.allSatisfy { abs(got[0].doubles[$0] - expected[0].doubles[$0]) < 1e-5 })
      outputs.append(got[0].doubles)
    }
    #expect(outputs[0] != outputs[1])
    // A parameter the program reads, with no value and no initializer, is named.
    let bare = try Parser.parseAndVerify(Self.mlp.replacingOccurrences(of: "param @b : f32[3] = zeros", with: "param @b : f32[3]"))
    #expect(throws: ExecutableError.self) { try Executable(program: try Compiler.compile(bare, function: "f")) }
  }

  /// A pass that breaks the module (an op whose result type contradicts its shape rule): with
  /// verification between passes the compiler names the pass; without, the broken module is
  /// caught no earlier than it fails elsewhere.
  @Test func verifyEachNamesThePassThatBrokeTheModule() throws {
    let breaker = Pass.perFunction(name: "break-types", summary: "test only: retypes the first add") { function, _ in
      guard let id = function.body.first(where: { function[$0].code == .add }) else { return false }
      let result = function[id].results[0]
      function[result].type = TensorType(.f32, shape: [7, 7])
      return true
    }
    let module = try Parser.parseAndVerify(Self.mlp)
    var options = CompileOptions(pipeline: Pipeline([.pass(breaker), .pass(Fusion.pass)]), verifyEach: true)
    do {
      _ = try Compiler.compile(module, function: "f", options: options)
      Issue.record("a broken module compiled")
    } catch {
      #expect("\(error)".contains("break-types"), "\(error)")
    }
    options.verifyEach = false
    #expect(CompileOptions.verifyEachByDefault, "tests run debug builds, which verify between passes")
  }

  @Test func theRuntimeDoesNotImportThePasses() throws {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    let runtime = root.appendingPathComponent("Sources/TTRuntime")
    for file in try FileManager.default.contentsOfDirectory(atPath: runtime.path) where file.hasSuffix(".swift") {
      let text = try String(contentsOf: runtime.appendingPathComponent(file), encoding: .utf8)
      #expect(!text.contains("import TTPasses"), "\(file) imports TTPasses")
    }
    let package = try String(contentsOf: root.appendingPathComponent("Package.swift"), encoding: .utf8)
    let runtimeLine = try #require(package.split(separator: "\n").first { $0.contains(".target(name: \"TTRuntime\"") })
    #expect(!runtimeLine.contains("TTPasses"))
  }
}
