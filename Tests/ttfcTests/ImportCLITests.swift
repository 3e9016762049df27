// `ttfc import` as a user meets it: an ONNX file (built here byte by byte) becomes TTIR on stdout
// or -o, its initializers an .npz that `ttfc run --params` reads, with the hand-computed result;
// unsupported nodes and malformed files exit 1 with every problem named.
import Foundation
import Testing
import TTIR
import TTRuntime

/// Just enough protobuf to write an ONNX model.
private struct Message {
  var bytes: [UInt8] = []
  mutating func varint(_ value: UInt64) {
    var v = value
    while v >= 0x80 { bytes.append(UInt8(v & 0x7F) | 0x80); v >>= 7 }
    bytes.append(UInt8(v))
  }
  mutating func int(_ field: Int, _ v: Int64) { varint(UInt64(field << 3)); varint(UInt64(bitPattern: v)) }
  mutating func data(_ field: Int, _ payload: [UInt8]) { varint(UInt64(field << 3 | 2)); varint(UInt64(payload.count)); bytes += payload }
  mutating func string(_ field: Int, _ s: String) { data(field, Array(s.utf8)) }
  mutating func message(_ field: Int, _ m: Message) { data(field, m.bytes) }
}

private func valueInfo(_ name: String, _ dims: [Any]) -> Message {
  var shape = Message()
  for d in dims {
    var dim = Message()
    if let n = d as? Int { dim.int(1, Int64(n)) } else { dim.string(2, "\(d)") }
    shape.message(1, dim)
  }
  var tensorType = Message(); tensorType.int(1, 1); tensorType.message(2, shape)
  var type = Message(); type.message(1, tensorType)
  var info = Message(); info.string(1, name); info.message(2, type)
  return info
}

private func node(_ op: String, _ inputs: [String], _ output: String, name: String) -> Message {
  var n = Message()
  for i in inputs { n.string(1, i) }
  n.string(2, output); n.string(3, name); n.string(4, op)
  return n
}

/// y = relu(x · w) with w an initializer [[1, -1], [2, 0]], or with an unsupported op in front.
private func model(unsupported: Bool) -> [UInt8] {
  var weight = Message()
  weight.int(1, 2); weight.int(1, 2); weight.int(2, 1); weight.string(8, "dense/kernel:0")
  var raw: [UInt8] = []
  for v in [Float(1), -1, 2, 0] { withUnsafeBytes(of: v.bitPattern.littleEndian) { raw += $0 } }
  weight.data(9, raw)
  var graph = Message()
  if unsupported {
    graph.message(1, node("Acos", ["x"], "a", name: "arc"))
    graph.message(1, node("Atan", ["x"], "b", name: "tangent"))
  }
  graph.message(1, node("MatMul", ["x", "dense/kernel:0"], "h", name: "dense"))
  graph.message(1, node("Relu", ["h"], "y", name: "act"))
  graph.string(2, "dense_model")
  graph.message(5, weight)
  graph.message(11, valueInfo("x", ["N", 2]))
  graph.message(12, valueInfo("y", ["N", 2]))
  var opset = Message(); opset.string(1, ""); opset.int(2, 17)
  var m = Message(); m.int(1, 8); m.message(7, graph); m.message(8, opset)
  return m.bytes
}

struct ImportCLITests {
  @Test func importWritesTTIRAndParametersThatRunReads() throws {
    let dir = try CLI.temporaryDirectory()
    let onnx = dir.appendingPathComponent("m.onnx"), ttir = dir.appendingPathComponent("m.ttir")
    let params = dir.appendingPathComponent("m.npz"), input = dir.appendingPathComponent("x.npy")
    try Data(model(unsupported: false)).write(to: onnx)
    let imported = try CLI.run(["import", onnx.path, "-o", ttir.path, "--params", params.path])
    #expect(imported.status == 0, "\(imported.stderr)")
    let text = try String(contentsOf: ttir, encoding: .utf8)
    #expect(text.contains("param @dense_kernel_0 : f32[2, 2]"), "\(text)")
    #expect(text.contains("func @main(%x: f32[N, 2]) -> f32[N, 2]"), "\(text)")
    let stored = try NpzArchive.read(path: params.path)
    #expect(stored.map(\.name) == ["dense_kernel_0"] && stored[0].tensor.doubles == [1, -1, 2, 0])
    try NumpyFormat.write(Tensor(.f32, shape: [1, 2], floats: [1, 1]), path: input.path)
    let ran = try CLI.run(["run", ttir.path, "--params", params.path, "--input", "x=\(input.path)", "--full"])
    #expect(ran.status == 0, "\(ran.stderr)")
    #expect(ran.stdout.contains("[[3.0, 0.0]]"), "\(ran.stdout)")
    // Without -o the module goes to stdout; without --params a note says where the values would go.
    let toStdout = try CLI.run(["import", onnx.path])
    #expect(toStdout.stdout == text && toStdout.stderr.contains("--params"))
  }

  @Test func unsupportedNodesAndMalformedFilesExitOne() throws {
    let dir = try CLI.temporaryDirectory()
    let onnx = dir.appendingPathComponent("u.onnx"), garbage = dir.appendingPathComponent("g.onnx")
    try Data(model(unsupported: true)).write(to: onnx)
    let result = try CLI.run(["import", onnx.path])
    #expect(result.status == 1)
    #expect(result.stderr.contains("node 'arc' (Acos): op type not supported"), "\(result.stderr)")
    #expect(result.stderr.contains("node 'tangent' (Atan): op type not supported"), "\(result.stderr)")
    try Data([0x0A, 0xFF, 0x01, 0x02]).write(to: garbage)
    let bad = try CLI.run(["import", garbage.path])
    #expect(bad.status == 1 && bad.stderr.contains("malformed ONNX model"), "\(bad.stderr)")
  }
}
