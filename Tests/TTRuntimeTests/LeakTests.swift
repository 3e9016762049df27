// No leaks: compiling and freeing many executables leaves memory flat. Kernels are cached per
// process (the same region compiles once), so after the first executable every later one reuses
// them; parameters, constants and arenas must be freed with their executable.
import Foundation
import Testing
import TTCompiler
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
    // Resident memory is process-wide and other suites run concurrently: a window may catch their
    // growth (seen: over 100 MiB while new threads set up their OpenBLAS buffers). A leak grows
    // every window by its own amount, so the check is the smallest growth of three windows of 120
    // executables: 120 leaked executables would add over 120 MiB to each. The exact check is on
    // what executables hold (below).
    var growths: [Int] = []
    for _ in 0..<3 {
      let before = residentBytes()
      for _ in 0..<120 { try cycle() }        // each one holds ~1 MB of parameters and an arena
      growths.append(residentBytes() - before)
      if growths.last! < 48 << 20 { break }
    }
    print("leak check: resident growth per 120 executables: \(growths.map { "\($0 >> 10) KiB" })")
    #expect(growths.min()! < 48 << 20, "memory grew by at least \(growths.min()! >> 20) MiB in every window of 120 executables")
  }

  @Test func executablesReturnEveryByteTheyHold() throws {
    let module = try Parser.parseAndVerify(String(contentsOf: Repository.root.appendingPathComponent("examples/mlp.ttir"), encoding: .utf8))
    let function = module.function(named: "loss")!
    var owner = 0
    do {
      let executable = try Executable(module: module, function: "loss")
      owner = executable.memoryOwner
      _ = try executable.run(ExecutableTests.randomInputs(function, batch: 32, seed: 3))
      _ = try executable.run(ExecutableTests.randomInputs(function, batch: 7, seed: 4))
      // Parameters (784 x 256 + ...) and two arenas.
      #expect(HostMemory.liveBytes(owner: owner) > 800_000, "\(HostMemory.liveBytes(owner: owner)) bytes")
    }
    #expect(HostMemory.liveBytes(owner: owner) == 0, "an executable gives back everything it held")
    // Layouts dropped while a prepared run still uses them are freed when the run goes.
    let executable = try Executable(module: module, function: "loss")
    let types = ExecutableTests.randomInputs(function, batch: 5, seed: 5).map(\.type)
    var run: Executable.PreparedRun? = try executable.prepare(inputTypes: types, capacity: [64])
    let withLayout = HostMemory.liveBytes(owner: executable.memoryOwner)
    executable.dropLayout(capacity: [64])
    #expect(HostMemory.liveBytes(owner: executable.memoryOwner) == withLayout, "still in use by the prepared run")
    run = nil
    #expect(HostMemory.liveBytes(owner: executable.memoryOwner) < withLayout, "freed with the last run using it")
    _ = run
  }
}
