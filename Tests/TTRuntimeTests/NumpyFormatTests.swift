// .npy and .npz reading and writing: round trips for every dtype, the three header versions NumPy
// writes, archives stored and deflated, and named errors for everything we do not read.
import Foundation
import Testing
import TTIR
@testable import TTRuntime

struct NumpyFormatTests {
  static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("TTInterpTests/Fixtures")

  static let samples: [Tensor] = [
    Tensor(.f64, shape: [2, 2], floats: [1.5, -0.0, .infinity, .nan]),
    Tensor(.f32, shape: [3], floats: [0.1, -2, 3e38]),
    Tensor(.f16, shape: [2], floats: [0.5, 65504]),
    Tensor(.bf16, shape: [3], floats: [1, -3.140625, 1e30]),
    Tensor(.i64, shape: [2], ints: [Int64.min, Int64.max]),
    Tensor(.i32, shape: [1, 2], ints: [-7, 2_147_483_647]),
    Tensor(.i8, shape: [3], ints: [-128, 0, 127]),
    Tensor(.i1, shape: [2], ints: [1, 0]),
    Tensor(.f32, shape: [], floats: [42]),
    Tensor(.f32, shape: [0, 3], floats: []),
  ]

  @Test(arguments: samples)
  func npyRoundTripsEveryDType(_ tensor: Tensor) throws {
    let decoded = try NumpyFormat.decode(NumpyFormat.encode(tensor))
    #expect(decoded.isIdentical(to: tensor))
  }

  @Test func headerIsPaddedTo64Bytes() {
    let bytes = NumpyFormat.encode(Tensor(.f32, shape: [5], floats: [1, 2, 3, 4, 5]))
    let headerLength = Int(bytes[8]) | Int(bytes[9]) << 8
    #expect((10 + headerLength) % 64 == 0)
    #expect(bytes[10 + headerLength - 1] == 0x0A)
  }

  @Test(arguments: ["header_v1", "header_v2", "header_v3"])
  func readsEveryHeaderVersionNumPyWrites(_ name: String) throws {
    let tensor = try NumpyFormat.read(path: Self.fixtures.appendingPathComponent(name + ".npy").path)
    #expect(tensor.dtype == .f32)
    #expect(tensor.shape == [2, 3])
    #expect(tensor.doubles == [0, 1, 2, 3, 4, 5])
  }

  @Test func npzRoundTrips() throws {
    let arrays = Self.samples.enumerated().map { (name: "a\($0.offset)", tensor: $0.element) }
    let decoded = try NpzArchive.decode(NpzArchive.encode(arrays))
    #expect(decoded.map(\.name) == arrays.map(\.name))
    for (a, b) in zip(decoded, arrays) { #expect(a.tensor.isIdentical(to: b.tensor)) }
  }

  @Test func readsCompressedAndStoredArchivesFromNumPy() throws {
    // gen_fixtures.py writes every third case with savez_compressed (deflate), the rest stored.
    let compressed = try NpzArchive.read(path: Self.fixtures.appendingPathComponent("unary_neg_f32.npz").path)
    let stored = try NpzArchive.read(path: Self.fixtures.appendingPathComponent("unary_neg_edges.npz").path)
    #expect(compressed.map(\.name).sorted() == ["in0", "out0"])
    #expect(stored.map(\.name).sorted() == ["in0", "out0"])
    let bytes = try [UInt8](Data(contentsOf: Self.fixtures.appendingPathComponent("unary_neg_f32.npz")))
    #expect(bytes[8] == 8, "the first member should be deflated")
  }

  @Test func errorsAreNamed() throws {
    #expect(throws: NumpyError.cannotRead(path: "/nonexistent.npy", reason: "no such file")) {
      try NumpyFormat.read(path: "/nonexistent.npy")
    }
    #expect(throws: NumpyError.notNpy("missing the \\x93NUMPY magic")) { try NumpyFormat.decode(Array("hello world".utf8)) }
    var bigEndian = NumpyFormat.encode(Tensor(.f32, shape: [1], floats: [1]))
    if let i = bigEndian.firstIndex(of: UInt8(ascii: "<")) { bigEndian[i] = UInt8(ascii: ">") }
    #expect(throws: NumpyError.unsupportedDType(">f4")) { try NumpyFormat.decode(bigEndian) }
    var fortran = NumpyFormat.encode(Tensor(.f32, shape: [1], floats: [1]))
    let falseBytes = Array("False".utf8)
    let at = try #require((0..<(fortran.count - 5)).first { Array(fortran[$0..<($0 + 5)]) == falseBytes })
    fortran.replaceSubrange(at..<(at + 5), with: Array("True ".utf8))
    #expect(throws: NumpyError.fortranOrder) { try NumpyFormat.decode(fortran) }
    let full = NumpyFormat.encode(Tensor(.f64, shape: [4], floats: [1, 2, 3, 4]))
    #expect(throws: NumpyError.truncated(expected: 32, got: 8)) { try NumpyFormat.decode(Array(full.dropLast(24))) }
  }

  @Test func corruptArchiveIsDetected() throws {
    var bytes = NpzArchive.encode([(name: "x", tensor: Tensor(.f32, shape: [4], floats: [1, 2, 3, 4]))])
    bytes[120] ^= 0xFF   // inside the member's data
    #expect(throws: NumpyError.self) { try NpzArchive.decode(bytes) }
    #expect(throws: NumpyError.self) { try NpzArchive.decode(Array(bytes.prefix(40))) }
    #expect(throws: NumpyError.self) { try NpzArchive.decode([UInt8](repeating: 0, count: 100)) }
  }
}
