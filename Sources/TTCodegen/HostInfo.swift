// HostInfo — what the code generator knows about this machine: LLVM's version, the host CPU name
// and features as LLVM's target machinery reports them, and OpenBLAS's build configuration.
// `ttfc version` prints it; the JIT uses the same CPU name and features when it builds its target
// machine, so what `version` shows is what kernels are compiled for.
import CLLVM
import COpenBLAS
import Glibc

public struct HostInfo: Sendable {
  public let llvmVersion: String
  public let targetTriple: String
  public let cpuName: String
  /// Comma-separated `+feature`/`-feature` list, as LLVM reports it.
  public let cpuFeatures: String
  public let openBLASConfig: String
  public let openBLASThreads: Int

  /// The features LLVM reports as enabled (`+avx512f` -> `avx512f`).
  public var enabledFeatures: [String] {
    cpuFeatures.split(separator: ",").filter { $0.hasPrefix("+") }.map { String($0.dropFirst()) }
  }

  /// The size of the largest CPU cache sysfs lists for cpu0 (the last level), if it says.
  public static func lastLevelCacheBytes() -> Int? {
    var largest: Int? = nil
    for index in 0..<8 {
      guard let file = fopen("/sys/devices/system/cpu/cpu0/cache/index\(index)/size", "r") else { continue }
      defer { fclose(file) }
      var line = [CChar](repeating: 0, count: 64)
      guard fgets(&line, 64, file) != nil else { continue }
      let text = String(decoding: line.prefix { $0 > 32 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
      let scale = text.hasSuffix("K") ? 1 << 10 : text.hasSuffix("M") ? 1 << 20 : 1
      if let n = Int(text.filter(\.isNumber)) { largest = max(largest ?? 0, n * scale) }
    }
    return largest
  }

  public static func current() -> HostInfo {
    LLVMSession.initializeNativeTarget()
    var major: UInt32 = 0, minor: UInt32 = 0, patch: UInt32 = 0
    LLVMGetVersion(&major, &minor, &patch)
    let triple = LLVMSession.takeMessage(LLVMGetDefaultTargetTriple())
    let cpu = LLVMSession.takeMessage(LLVMGetHostCPUName())
    let features = LLVMSession.takeMessage(LLVMGetHostCPUFeatures())
    let config = openblas_get_config().map { String(cString: $0) } ?? "unknown"
    return HostInfo(llvmVersion: "\(major).\(minor).\(patch)", targetTriple: triple, cpuName: cpu,
                    cpuFeatures: features, openBLASConfig: config,
                    openBLASThreads: Int(openblas_get_num_threads()))
  }
}

/// Process-wide LLVM set-up and small helpers over the C API's ownership conventions.
public enum LLVMSession {
  private static let initialized: Bool = {
    LLVMInitializeX86TargetInfo()
    LLVMInitializeX86Target()
    LLVMInitializeX86TargetMC()
    LLVMInitializeX86AsmPrinter()
    LLVMInitializeX86AsmParser()
    // Compile-time budget (W5): Loop Strength Reduction took about half of code generation for
    // our multi-version loop nests (21 of 47 ms on the largest Adam kernel) while our address
    // arithmetic is already linear in the induction variable; without it code generation halves
    // and the kernels measured no slower (W1-W4, see IR-specs/codegen.md).
    let options = ["ttfc", "-disable-lsr"]
    var pointers = options.map { strdup($0).map { UnsafePointer($0) } }
    LLVMParseCommandLineOptions(Int32(options.count), &pointers, "ttfc")
    for p in pointers { free(UnsafeMutablePointer(mutating: p)) }
    return true
  }()

  /// Registers the native (x86-64) target with LLVM once per process.
  public static func initializeNativeTarget() { _ = initialized }

  /// Copies an LLVM-owned message into a Swift string and frees it (LLVMDisposeMessage).
  public static func takeMessage(_ message: UnsafeMutablePointer<CChar>?) -> String {
    guard let message else { return "" }
    defer { LLVMDisposeMessage(message) }
    return String(cString: message)
  }
}
