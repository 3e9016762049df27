// Parameters declared without an initializer (issue 25): training, running, compiling and
// resuming work whenever every parameter the function reads gets a value from the caller
// (--init-params, --params, a checkpoint) or an initializer; a read parameter with neither is a
// named error listing each one; parameters nothing reads are never required.
import Foundation
import Testing
import TTCompiler
import TTIR
import TTRuntime

struct ParamsWithoutInitializerTests {
  static let model = """
    module @m {
      param @w : f32[3, 1]
      param @unused : f32[2]
      func @loss(%x: f32[B, 3], %y: f32[B]) -> f32[] {
        %z = matmul %x, @w : f32[B, 1]
        %r = reshape %z : f32[B]
        %d = sub %r, %y : f32[B]
        %s = mul %d, %d : f32[B]
        %m = reduce_mean %s : f32[]
        return %m
      }
    }
    """

  /// The model, init.npz (w = ones) and data.npz (x = 0, 0.1, ..., 1.1 as 4x3; y = ones) in a new directory.
  static func files() throws -> (dir: URL, model: String, initial: String, data: String) {
    let dir = try CLI.temporaryDirectory()
    let model = dir.appendingPathComponent("m.ttir").path, initial = dir.appendingPathComponent("init.npz").path
    let data = dir.appendingPathComponent("data.npz").path
    try Self.model.write(toFile: model, atomically: true, encoding: .utf8)
    try NpzArchive.write([("w", Tensor(.f32, shape: [3, 1], floats: [1, 1, 1]))], path: initial)
    try NpzArchive.write([("x", Tensor(.f32, shape: [4, 3], floats: (0..<12).map { Double($0) / 10 })),
                          ("y", Tensor(.f32, shape: [4], floats: [1, 1, 1, 1]))], path: data)
    return (dir, model, initial, data)
  }

  @Test func trainsFromInitParamsAndResumesWithoutThem() throws {
    let f = try Self.files()
    let checkpoint = f.dir.appendingPathComponent("ckpt").path
    let first = try CLI.run(["train", f.model, "--data", f.data, "--init-params", f.initial, "--batch", "4", "--steps", "1",
                             "--optimizer", "sgd", "--lr", "0.1", "--checkpoint", checkpoint])
    #expect(first.status == 0, "\(first.stderr)")
    // Loss at w = 1: rows sum to 0.3, 1.2, 2.1, 3.0; minus 1, squared, mean = (0.49+0.04+1.21+4)/4.
    #expect(first.stdout.contains("final training loss 1.435"), "\(first.stdout)")
    let resumed = try CLI.run(["train", f.model, "--data", f.data, "--batch", "4", "--steps", "2",
                               "--optimizer", "sgd", "--lr", "0.1", "--checkpoint", checkpoint, "--resume"])
    #expect(resumed.status == 0, "\(resumed.stderr)")
    #expect(resumed.stdout.contains("resumed from step 1"))
  }

  @Test func aReadParameterWithoutAValueIsNamed() throws {
    let f = try Self.files()
    let train = try CLI.run(["train", f.model, "--data", f.data, "--batch", "4", "--steps", "1"])
    #expect(train.status == 1)
    #expect(train.stderr.contains("'@w' has no value and no initializer") && !train.stderr.contains("@unused"), "\(train.stderr)")
    let run = try CLI.run(["run", f.model, "--random-inputs", "--dim", "B=4"])
    #expect(run.status == 1 && run.stderr.contains("'@w' has no value and no initializer"), "\(run.stderr)")
  }

  @Test func runsAndCompilesWithValuesFromParams() throws {
    let f = try Self.files()
    for interpret in [false, true] {
      let run = try CLI.run(["run", f.model, "--random-inputs", "--dim", "B=4", "--params", f.initial] + (interpret ? ["--interpret"] : []))
      #expect(run.status == 0, "\(run.stderr)")
    }
    for emit in ["thunks", "llvm", "asm"] {
      let compile = try CLI.run(["compile", f.model, "--emit=\(emit)"])
      #expect(compile.status == 0, "--emit=\(emit): \(compile.stderr)")
    }
    let withParams = try CLI.run(["compile", f.model, "--emit=thunks", "--params", f.initial])
    #expect(withParams.status == 0 && withParams.stdout.contains("gemm"), "\(withParams.stderr)")
  }

  @Test func theLibraryPathsAgree() throws {
    let module = try Parser.parseAndVerify(Self.model)
    let x = Tensor(.f32, shape: [4, 3], floats: (0..<12).map { Double($0) / 10 }), y = Tensor(.f32, shape: [4], floats: [1, 1, 1, 1])
    let w = Tensor(.f32, shape: [3, 1], floats: [1, 1, 1])
    let compiled = try Executable(module: module, function: "loss", params: ["w": w]).run([x, y])[0]
    #expect(abs(compiled.doubles[0] - 1.435) < 1e-5)
    #expect(throws: (any Error).self) { try Executable(module: module, function: "loss") }
  }
}
