// No leaks: compiling and freeing many executables leaves memory flat. Kernels are cached per
// process (the same region compiles once), so after the first executable every later one reuses
// them; parameters, constants and arenas must be freed with their executable.
import Foundation
import Testing
import TTIR
@testable import TTRuntime

func residentBytes() -> Int {
  guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
  let fields = text.split(separator: " ")
  return (Int(fields[1]) ?? 0) * Int(sysconf(Int32(_SC_PAGESIZE)))
}

struct LeakTests {
  @Test func manyExecutablesKeepMemoryFlat() throws {
    let module = try Parser.parseAndVerify(String(contentsOf: Repository.root.appendingPathComponent("examples/mlp.ttir"), encoding: .utf8))
    let function = module.function(named: "loss")!
    let inputs = ExecutableTests.randomInputs(function, batch: 32, seed: 3)
    func cycle() throws {
      let executable = try Executable(module: module, function: "loss")
      _ = try executable.run(inputs)
    }
    for _ in 0..<10 { try cycle() }           // warm up: kernels compiled, allocator settled
    let before = residentBytes()
    for _ in 0..<60 { try cycle() }           // each one holds ~1 MB of parameters and an arena
    let after = residentBytes()
    print("leak check: resident \(before / 1024) KiB before, \(after / 1024) KiB after 60 executables")
    #expect(after - before < 24 << 20, "memory grew by \((after - before) >> 20) MiB over 60 executables")
  }
}
