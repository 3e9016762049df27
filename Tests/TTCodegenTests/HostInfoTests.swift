// The LLVM and OpenBLAS bindings are linked and alive: host information is reported and a function
// JIT-compiled through ORC LLJIT computes the right answer.
import Testing
import TTCodegen

struct HostInfoTests {
  @Test func reportsLLVM19AndTheHostCPU() {
    let host = HostInfo.current()
    #expect(host.llvmVersion.hasPrefix("19."))
    #expect(!host.cpuName.isEmpty && host.cpuName != "generic")
    #expect(host.enabledFeatures.contains("sse2"))
    #expect(host.targetTriple.hasPrefix("x86_64"))
  }

  @Test func reportsOpenBLASConfiguration() {
    let host = HostInfo.current()
    #expect(host.openBLASConfig.contains("OpenBLAS"))
    #expect(host.openBLASThreads >= 1)
  }

  @Test func jitCompilesAndRunsAFunction() throws {
    #expect(try JITSmokeCheck.multiplyAddOne(6, 7) == 43)
    #expect(try JITSmokeCheck.multiplyAddOne(-3, 1 << 40) == -3 * (1 << 40) + 1)
  }
}
