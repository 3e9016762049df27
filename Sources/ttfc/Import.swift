// `ttfc import MODEL.onnx` — translate an ONNX model to TTIR (TTONNX), writing the module as text
// and the initializers' values as an .npz of parameters. `--conformance LIST` runs ONNX's node
// test cases (written by tools/onnx_conformance.py) through import, the reference interpreter and
// compiled code in one process, one JSON line per case.
import ArgumentParser
import Foundation
import TTCompiler
import TTIR
import TTInterp
import TTONNX
import TTRuntime

struct Import: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "import",
    abstract: "Translate an ONNX model (.onnx; the mapping follows opset 13 and later) to TTIR.",
    discussion: helpText("""
      The graph becomes one function @main (its inputs the arguments, its outputs the results);
      float initializers become parameters whose values go to --params (an .npz that `ttfc run
      --params`, `ttfc compile --params` and `ttfc train --init-params` read); symbolic input
      dimensions stay symbolic. An op, attribute or element type TTIR cannot express is an error
      listing every such node; ops whose meaning changed before opset 13 are refused for older
      opsets. Every float initializer is trained by `ttfc train`. IR-specs/onnx.md lists the mapping.
      Example: ttfc import model.onnx -o model.ttir --params model.npz
      """))

  @Argument(help: "The .onnx model (or, with --conformance, a list of test cases).")
  var file: String

  @Option(name: .shortAndLong, help: "Write the TTIR module here (default: standard output).")
  var output: String?

  @Option(help: "Write the initializers' values here as an .npz of parameters.")
  var params: String?

  @Option(help: "The module's name (default: the graph's name).")
  var name: String?

  @Flag(help: "FILE lists ONNX node test cases (one per line: NAME DIR RTOL ATOL); run each through import, the interpreter and compiled code and print one JSON line per case.")
  var conformance = false

  func run() throws {
    if conformance { return try runConformance() }
    guard let data = FileManager.default.contents(atPath: file) else { throw fail("cannot read '\(file)': \(unreadableReason(file))") }
    // The module, the parameters and the model are three different files.
    func samePath(_ a: String, _ b: String) -> Bool {
      URL(fileURLWithPath: a).standardizedFileURL.resolvingSymlinksInPath().path == URL(fileURLWithPath: b).standardizedFileURL.resolvingSymlinksInPath().path
    }
    if let output, samePath(output, file) { throw fail("-o '\(output)' is the model being imported; it would be overwritten") }
    if let params, samePath(params, file) { throw fail("--params '\(params)' is the model being imported; it would be overwritten") }
    if let output, let params, samePath(output, params) { throw fail("-o and --params name the same file '\(params)'") }
    let result: ONNXImportResult
    do { result = try ONNXImporter.importModel(bytes: [UInt8](data), options: ONNXImportOptions(moduleName: name)) }
    catch { throw fail("\(file): \(error)") }
    let text = Printer.print(result.module)
    if let output { try writeOutput(text, to: output, what: "the module") } else { print(text, terminator: "") }
    if let params {
      do { try NpzArchive.write(result.parameters, path: params) } catch { throw fail("--params: \(error)") }
    } else if !result.parameters.isEmpty {
      print("note: the model has \(result.parameters.count) initializer(s); pass --params PATH.npz to keep their values", to: &standardError)
    }
  }

  // MARK: conformance

  struct CaseOutcome { var status: String; var detail: String }

  func runConformance() throws {
    guard let text = try? String(contentsOfFile: file, encoding: .utf8) else { throw fail("cannot read '\(file)': \(unreadableReason(file))") }
    for line in text.split(separator: "\n") where !line.trimmingCharacters(in: .whitespaces).isEmpty {
      let fields = line.split(separator: " ").map(String.init)
      guard fields.count == 4, let rtol = Double(fields[2]), let atol = Double(fields[3]) else {
        throw fail("\(file): expected NAME DIR RTOL ATOL, got '\(line)'")
      }
      var ops: [String] = []
      let outcome = runCase(directory: fields[1], rtol: rtol, atol: atol, ops: &ops)
      let record: [String: Any] = ["name": fields[0], "status": outcome.status, "detail": outcome.detail, "ops": ops]
      let json = try JSONSerialization.data(withJSONObject: record, options: [.sortedKeys])
      // Unbuffered, so a crash loses no earlier case's line.
      FileHandle.standardOutput.write(json + Data("\n".utf8))
    }
  }

  func runCase(directory: String, rtol: Double, atol: Double, ops: inout [String]) -> CaseOutcome {
    func path(_ name: String) -> String { (directory as NSString).appendingPathComponent(name) }
    guard let data = FileManager.default.contents(atPath: path("model.onnx")) else { return CaseOutcome(status: "error", detail: "no model.onnx") }
    let bytes = [UInt8](data)
    let model: ONNXModel
    do { model = try ONNXModel(bytes: bytes) } catch { return CaseOutcome(status: "error", detail: "\(error)") }
    ops = model.graph.nodes.map(\.opType).reduce(into: [String]()) { if !$0.contains($1) { $0.append($1) } }
    let initializers = Set(model.graph.initializers.map(\.name))
    let inputNames = model.graph.inputs.map(\.name).filter { !initializers.contains($0) }
    var inputs: [String: Tensor] = [:]
    for (k, name) in inputNames.enumerated() {
      do { inputs[name] = try NumpyFormat.read(path: path("input_\(k).npy")) }
      catch { return CaseOutcome(status: "unsupported", detail: "input \(k): \(error)") }
    }
    var expected: [Tensor] = []
    for k in 0..<model.graph.outputs.count {
      do { expected.append(try NumpyFormat.read(path: path("output_\(k).npy"))) }
      catch { return CaseOutcome(status: "unsupported", detail: "output \(k): \(error)") }
    }
    let imported: ONNXImportResult
    do { imported = try ONNXImporter.importModel(model, options: ONNXImportOptions(moduleName: "test", inputValues: inputs)) }
    catch {
      if case .unsupported = error { return CaseOutcome(status: "unsupported", detail: "\(error)") }
      return CaseOutcome(status: "fail", detail: "\(error)")
    }
    // The printed module must read back as itself.
    let text = Printer.print(imported.module)
    let module: Module
    do { module = try Parser.parseAndVerify(text) } catch { return CaseOutcome(status: "fail", detail: "printed module does not parse: \(error)") }
    let arguments = imported.argumentInputs.map { inputs[$0]! }
    let params = Dictionary(imported.parameters.map { ($0.name, $0.tensor) }, uniquingKeysWith: { a, _ in a })
    let interpreted: [Tensor]
    do { interpreted = try Interpreter(module: module, params: params).run("main", arguments) }
    catch { return CaseOutcome(status: "fail", detail: "interpreter: \(error)") }
    if let problem = compare(interpreted, expected, rtol: rtol, atol: atol) { return CaseOutcome(status: "fail", detail: "interpreter: \(problem)") }
    let compiled: [Tensor]
    do { compiled = try Executable(module: module, function: "main", params: params).run(arguments) }
    catch { return CaseOutcome(status: "fail", detail: "compiled: \(error)") }
    if let problem = compare(compiled, expected, rtol: rtol, atol: atol) { return CaseOutcome(status: "fail", detail: "compiled: \(problem)") }
    return CaseOutcome(status: "pass", detail: "")
  }

  /// numpy.testing.assert_allclose's rule: |got − want| ≤ atol + rtol·|want|, NaN matching NaN,
  /// integers and booleans exactly; shapes and element types equal. Half-precision results get
  /// rtol of at least two units in the last place (2^-9 for f16, 2^-6 for bf16): TTIR rounds a
  /// softmax or a reduction once from f64, the reference rounds after every NumPy step.
  func compare(_ got: [Tensor], _ want: [Tensor], rtol: Double, atol: Double) -> String? {
    guard got.count == want.count else { return "\(got.count) results, expected \(want.count)" }
    for (k, (g, w)) in zip(got, want).enumerated() {
      guard g.shape == w.shape else { return "result \(k) has shape \(g.shape), expected \(w.shape)" }
      guard g.dtype == w.dtype else { return "result \(k) has element type \(g.dtype), expected \(w.dtype)" }
      if g.dtype.isFloat {
        let rtol = g.dtype == .f16 ? max(rtol, 0x1p-9) : g.dtype == .bf16 ? max(rtol, 0x1p-6) : rtol
        for (i, (a, b)) in zip(g.doubles, w.doubles).enumerated() {
          if a.isNaN && b.isNaN { continue }
          if a == b { continue }
          if !(abs(a - b) <= atol + rtol * abs(b)) { return "result \(k) element \(i) is \(a), expected \(b)" }
        }
      } else if g.int64s != w.int64s {
        let i = g.int64s.indices.first { g.int64s[$0] != w.int64s[$0] } ?? 0
        return "result \(k) element \(i) is \(g.int64s[i]), expected \(w.int64s[i])"
      }
    }
    return nil
  }
}
