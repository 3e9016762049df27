// The interpreter against NumPy: every op case written by tools/gen_fixtures.py, and every example
// model with NumPy-computed parameters, inputs and outputs.
import Foundation
import Testing
import TTIR
import TTInterp
import TTRuntime

let fixtureCases: [String] = {
  let names = (try? FileManager.default.contentsOfDirectory(atPath: Paths.fixtures.path)) ?? []
  return names.filter { $0.hasSuffix(".ttir") }.map { String($0.dropLast(5)) }.sorted()
}()

struct FixtureTests {
  @Test func fixturesExist() {
    #expect(fixtureCases.count >= 100, "run python3 tools/gen_fixtures.py")
  }

  @Test(arguments: fixtureCases)
  func opMatchesNumPy(_ name: String) throws {
    let source = try String(contentsOf: Paths.fixtures.appendingPathComponent(name + ".ttir"), encoding: .utf8)
    let module = try Parser.parseAndVerify(source)
    let arrays = Dictionary(uniqueKeysWithValues: try NpzArchive.read(path: Paths.fixtures.appendingPathComponent(name + ".npz").path)
      .map { ($0.name, $0.tensor) })
    let function = try #require(module.function(named: "main"))
    let inputs = (0..<function.arguments.count).map { arrays["in\($0)"]! }
    let results = try Interpreter(module: module).run("main", inputs)
    for (i, result) in results.enumerated() {
      let expected = try #require(arrays["out\(i)"])
      #expect(mismatch(result, expected) == nil, "\(name) result \(i): \(mismatch(result, expected) ?? "")")
    }
  }

  static let exampleCases: [[String]] = {
    let text = (try? String(contentsOf: Paths.fixtures.appendingPathComponent("examples.txt"), encoding: .utf8)) ?? ""
    return text.split(separator: "\n").filter { !$0.hasPrefix("#") }.map { $0.split(separator: " ").map(String.init) }
  }()

  @Test(arguments: exampleCases)
  func exampleMatchesNumPy(_ entry: [String]) throws {
    let (fixture, file, functionName) = (entry[0], entry[1], entry[2])
    let source = try String(contentsOf: Paths.examples.appendingPathComponent(file), encoding: .utf8)
    let module = try Parser.parseAndVerify(source)
    var params: [String: Tensor] = [:]
    var arrays: [String: Tensor] = [:]
    for (name, tensor) in try NpzArchive.read(path: Paths.fixtures.appendingPathComponent(fixture + ".npz").path) {
      if name.hasPrefix("param.") { params[String(name.dropFirst(6))] = tensor } else { arrays[name] = tensor }
    }
    let function = try #require(module.function(named: functionName))
    let inputs = (0..<function.arguments.count).map { arrays["in\($0)"]! }
    let results = try Interpreter(module: module, params: params).run(functionName, inputs)
    for (i, result) in results.enumerated() {
      let expected = try #require(arrays["out\(i)"])
      #expect(mismatch(result, expected) == nil, "\(fixture) result \(i): \(mismatch(result, expected) ?? "")")
    }
  }
}
