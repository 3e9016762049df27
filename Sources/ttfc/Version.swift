// `ttfc version` — ttfc's version and what the backend sees: LLVM, host CPU, OpenBLAS.
import ArgumentParser
import TTCodegen

struct Version: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Print ttfc's version, the LLVM version, the host CPU and features, and OpenBLAS's configuration.")

  func run() throws {
    let host = HostInfo.current()
    print("ttfc \(Ttfc.version)")
    print("LLVM \(host.llvmVersion) (\(host.targetTriple))")
    print("host CPU: \(host.cpuName)")
    let features = host.enabledFeatures.sorted()
    print("host features (\(features.count)): \(features.joined(separator: " "))")
    print("OpenBLAS: \(host.openBLASConfig) (its threads: \(host.openBLASThreads); ttfc runs it single-threaded on each of its own pool's threads)")
    print("bf16 GEMM: " + (HalfGemmKernels.hostHasDotProducts ? "AVX512-BF16 dot products (vdpbf16ps)" : "portable (no AVX512-BF16: widened to f32)")
          + "; f16 GEMM: widened to f32")
    do {
      let answer = try JITSmokeCheck.multiplyAddOne(6, 7)
      print("JIT check: \(answer == 43 ? "ok" : "WRONG ANSWER \(answer)")")
      if answer != 43 { throw ExitCode.failure }
    } catch let error as JITSmokeCheck.Failure {
      throw fail(error.description)
    }
  }
}
