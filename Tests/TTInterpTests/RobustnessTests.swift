// The interpreter never crashes on a verified module: numbers in the valid corpus (sizes, axes,
// attribute values, literals) are perturbed at random; every mutant the verifier accepts is run on
// small seeded inputs and must return results or a named InterpreterError. Also: every op of the
// op table is covered by at least one NumPy fixture.
import Foundation
import Testing
import TTIR
import TTFuzz
import TTInterp

struct InterpreterRobustnessTests {
  typealias Generator = GraphRandom

  static let corpus: [String] = {
    var texts: [String] = []
    let fm = FileManager.default
    for folder in [Paths.fixtures, Paths.examples] {
      for name in ((try? fm.contentsOfDirectory(atPath: folder.path)) ?? []).sorted() where name.hasSuffix(".ttir") {
        if let t = try? String(contentsOf: folder.appendingPathComponent(name), encoding: .utf8), t.utf8.count < 3000 { texts.append(t) }
      }
    }
    return texts
  }()

  /// Replaces one integer in the text with a nearby, extreme or negative value.
  static func perturbNumber(_ text: String, _ rng: inout Generator) -> String {
    let bytes = Array(text.utf8)
    var starts: [Int] = []
    for i in bytes.indices where bytes[i] >= 0x30 && bytes[i] <= 0x39 && (i == 0 || !(bytes[i - 1] >= 0x30 && bytes[i - 1] <= 0x39)) {
      starts.append(i)
    }
    guard let start = starts.randomElement(using: &rng) else { return text }
    var end = start
    while end < bytes.count && bytes[end] >= 0x30 && bytes[end] <= 0x39 { end += 1 }
    let old = Int(String(decoding: bytes[start..<end], as: UTF8.self)) ?? 0
    let replacement = [old + 1, max(old - 1, 0), 0, 1, old * 2, old + 7, 1 << 20].randomElement(using: &rng)!
    return String(decoding: bytes[..<start], as: UTF8.self) + String(replacement) + String(decoding: bytes[end...], as: UTF8.self)
  }

  static func input(for type: TensorType, _ seed: UInt64) -> Tensor? {
    let shape = type.dims.map { $0.staticSize ?? 3 }
    guard let count = elementCount(shape), count <= 100_000 else { return nil }
    if type.dtype.isFloat {
      return Tensor(type.dtype, shape: shape, floats: (0..<count).map { SeededRandom.normal(seed, UInt64($0), 0) })
    }
    let range = type.dtype == .i1 ? 2.0 : 4.0
    return Tensor(type.dtype, shape: shape, ints: (0..<count).map { Int64(SeededRandom.uniform(seed, UInt64($0), 0) * range) })
  }

  @Test func verifiedMutantsRunOrFailWithANamedError() {
    var rng = Generator(state: 42)
    var accepted = 0, ran = 0, namedErrors = 0
    for _ in 0..<3000 {
      var text = Self.corpus.randomElement(using: &rng)!
      for _ in 0..<Int.random(in: 1...3, using: &rng) { text = Self.perturbNumber(text, &rng) }
      guard let module = try? Parser.parseAndVerify(text) else { continue }
      accepted += 1
      // Keep the run small: skip modules with big static tensors anywhere.
      let big = module.params.contains { (elementCount($0.type.staticShape ?? []) ?? .max) > 1_000_000 }
        || module.functions.contains { f in f.values.contains { (elementCount($0.type.dims.map { $0.staticSize ?? 3 }) ?? .max) > 1_000_000 } }
      if big { continue }
      guard let interpreter = try? Interpreter(module: module) else { namedErrors += 1; continue }
      for function in module.functions {
        let inputs = function.argumentTypes.enumerated().compactMap { Self.input(for: $0.element, UInt64($0.offset)) }
        guard inputs.count == function.arguments.count else { continue }
        do {
          let results = try interpreter.run(function.name, inputs)
          ran += 1
          for (result, declared) in zip(results, function.resultTypes) { #expect(result.dtype == declared.dtype) }
        } catch {
          namedErrors += 1
        }
      }
    }
    print("interpreter robustness: 3000 mutants, \(accepted) verified, \(ran) runs completed, \(namedErrors) named errors")
    // About 10% of mutants verify (the count moves with the fixture corpus): enough that the
    // runs below exercise the interpreter, which is what these bounds check.
    #expect(accepted > 200)
    #expect(ran > 200)
  }

  @Test func everyOpHasANumPyFixture() throws {
    var used = Set<String>()
    for name in try FileManager.default.contentsOfDirectory(atPath: Paths.fixtures.path) where name.hasSuffix(".ttir") {
      let module = try Parser.parseAndVerify(String(contentsOf: Paths.fixtures.appendingPathComponent(name), encoding: .utf8))
      for f in module.functions { for id in f.body { used.insert(f[id].code.rawValue) } }
    }
    let missing = OpCode.allCases.map(\.rawValue).filter { !used.contains($0) }
    #expect(missing.isEmpty, "ops without a NumPy fixture: \(missing)")
  }
}
