// ttfc-bench — the workloads of shared/bench/WORKLOADS.md on ttfc (W0-W7, W7h, and W6s: variable
// sequence length), timed as
// medians over repeated runs of prepared executables (inputs written once, no conversion in the
// loop). With --jax FILE it reads the same workloads' JAX timings (tools/bench_jax.py, same run)
// and prints ttfc/JAX ratios. A benchmark, not a test: nothing here fails on a slow result.
import ArgumentParser
import COpenBLAS
import Foundation
import TTCodegen
import TTEmbedding
import TTCompiler
import TTIR
import TTONNX
import TTRuntime
import TTSupport
import TTTrain

struct Measurement { var id: String; var name: String; var seconds: Double; var metric: String; var value: Double }

func median(_ body: () throws -> Void, repetitions: Int = 20, warmup: Int = 3) rethrows -> Double {
  for _ in 0..<warmup { try body() }
  var times: [Double] = []
  for _ in 0..<repetitions {
    let start = DispatchClock.now()
    try body()
    times.append(DispatchClock.now() - start)
  }
  return times.sorted()[times.count / 2]
}

/// `count` values in [-1, 1) of type `dtype` (f32 by default); integers and i1 get zeros (valid
/// indices and a constant mask: a --file function's integer inputs are usually indices).
func fill(_ p: UnsafeMutableRawPointer, count: Int, seed: UInt64, dtype: DType = .f32) {
  var state = seed
  for i in 0..<count {
    state = state &* 6364136223846793005 &+ 1442695040888963407
    let value = Float(Int64(bitPattern: state >> 11) % 2000) / 1000.0 - 1.0
    switch dtype {
    case .f32: p.storeBytes(of: value, toByteOffset: 4 * i, as: Float.self)
    case .f64: p.storeBytes(of: Double(value), toByteOffset: 8 * i, as: Double.self)
    case .f16: p.storeBytes(of: Float16(value).bitPattern, toByteOffset: 2 * i, as: UInt16.self)
    case .bf16: p.storeBytes(of: UInt16(truncatingIfNeeded: value.bitPattern >> 16), toByteOffset: 2 * i, as: UInt16.self)
    case .i64, .i32, .i8, .i1: (p + i * dtype.byteSize).initializeMemory(as: UInt8.self, repeating: 0, count: dtype.byteSize)
    }
  }
}

func compile(_ text: String, _ function: String, _ inputs: [TensorType]) throws -> (Executable, Executable.PreparedRun, Double) {
  let module = try Parser.parseAndVerify(text)
  let start = DispatchClock.now()
  let executable = try Executable(module: module, function: function)
  let run = try executable.prepare(inputTypes: inputs)
  for (i, t) in inputs.enumerated() { fill(run.inputs[i], count: elementCount(t.staticShape!)!, seed: UInt64(i + 1), dtype: t.dtype) }
  try run.execute()
  return (executable, run, DispatchClock.now() - start)
}

/// The command line, parsed (and `--help` answered, unknown options refused) before anything runs.
struct BenchOptions: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "ttfc-bench",
    abstract: "Time the workloads of shared/bench/WORKLOADS.md on ttfc (a benchmark, never a test).",
    discussion: "tools/bench builds and runs this beside JAX in alternating rounds; run that instead for ratios.")
  @Option(help: "Time one function of this .ttir file instead (every argument static-shaped).") var file: String?
  @Option(help: "The function of --file to time.") var `func` = "main"
  @Option(help: "JAX timings of the same workloads (tools/bench_jax.py, same run) for ratios.") var jax: String?
  @Option(help: "Repetitions per workload (the median is reported).") var repetitions = 20
  @Option(help: "Only these workloads, comma-separated (W0..W10, W7h, W5warm, W5L, W6s, W12, gemms, curve; W12 only when named).") var only: String?
  @Flag(help: "Print the per-thunk table (time, calls, kernel, fused ops) of the training-step workloads' timed runs, from the same recording as ttfc's --trace.") var profile = false
  @Option(name: .customLong("json-out"), help: "Write the measurements to this JSON file instead of a table.") var jsonOut: String?
  @Option(help: "Merge these JSON files (from --json-out) into this run's table, comma-separated.") var extra: String?
  @Option(name: .customLong("w6-sizes"), help: "A file of W6's batch sizes (shared with bench_jax.py).") var w6Sizes: String?
  @Option(name: .customLong("w6s-lengths"), help: "A file of W6s's sequence lengths.") var w6sLengths: String?
  @Option(name: .customLong("w12-dir"), help: "W12's exported ONNX models and inputs (tools/onnx_real writes them).") var w12Dir = "out/w12"
}
let options = BenchOptions.parseOrExit()
guard options.repetitions >= 1 else { BenchOptions.exit(withError: ValidationError("--repetitions must be at least 1")) }

var measurements: [Measurement] = []

// `ttfc-bench --file F.ttir --func NAME` times one function of a file instead (every argument
// static-shaped): a tool for profiling a kernel in isolation.
if let file = options.file {
  let name = options.func
  let text = try String(contentsOfFile: file, encoding: .utf8)
  let module = try Parser.parseAndVerify(text)
  let types = module.function(named: name)!.argumentTypes
  let (executable, run, compileSeconds) = try compile(text, name, types)
  let t = try median({ try run.execute() }, repetitions: 30)
  print(String(format: "@%@: %.3f ms (compile %.3f s, %d kernels)", name as NSString, t * 1e3, compileSeconds, executable.statistics.kernels))
  exit(0)
}
let jaxFile = options.jax
let repetitions = options.repetitions
// `--only W6,W5` runs just those workloads (tools/bench runs W6 and a warm-cache W5 in processes
// of their own, so their compilation is not served by kernels compiled earlier in this process);
// `--json-out FILE` writes the measurements instead of a table, `--extra FILE,...` merges such
// files into this run's table.
let only: Set<String>? = options.only.map { Set($0.split(separator: ",").map(String.init)) }
func selected(_ id: String) -> Bool { only?.contains(id) ?? (id != "W5warm" && id != "curve" && id != "W5Lchild" && id != "W12") }
/// --profile or TTFC_PROFILE: every executable records an ExecutionTrace (Executable.trace), and
/// the training-step workloads print their per-thunk tables from it (W4 and W4h from their timed
/// steps only).
if options.profile { setenv("TTFC_PROFILE", "1", 1) }
let profiling = getenv("TTFC_PROFILE") != nil
let jsonOut = options.jsonOut
let extraFiles = options.extra.map { $0.split(separator: ",").map(String.init) } ?? []

// W0: memory copy of 64 MiB (read + write bytes per second).
if selected("W0") {
  let bytes = 64 << 20
  let a = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64), b = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
  memset(a, 1, bytes); memset(b, 0, bytes)
  let t = median({ memcpy(b, a, bytes) }, repetitions: repetitions)
  measurements.append(Measurement(id: "W0", name: "memcpy 64 MiB", seconds: t, metric: "GB/s", value: Double(2 * bytes) / t / 1e9))
}

// W1: the GELU-style elementwise chain over 16M floats.
if selected("W1") {
  let n = 16_777_216
  let text = """
    module @w1 {
      func @f(%x: f32[\(n)]) -> f32[\(n)] {
        %c17 = constant 1.7 : f32[]
        %c03 = constant 0.3 : f32[]
        %xa = mul %x, %c17 : f32[\(n)]
        %z = add %xa, %c03 : f32[\(n)]
        %z2 = mul %z, %z : f32[\(n)]
        %z3 = mul %z2, %z : f32[\(n)]
        %k = constant 0.044715 : f32[]
        %kz3 = mul %z3, %k : f32[\(n)]
        %inner = add %z, %kz3 : f32[\(n)]
        %s = constant 0.7978845608 : f32[]
        %arg = mul %inner, %s : f32[\(n)]
        %t = tanh %arg : f32[\(n)]
        %one = constant 1.0 : f32[]
        %t1 = add %t, %one : f32[\(n)]
        %h = constant 0.5 : f32[]
        %hz = mul %z, %h : f32[\(n)]
        %y = mul %hz, %t1 : f32[\(n)]
        return %y
      }
    }
    """
  let (_, run, _) = try compile(text, "f", [TensorType(.f32, shape: [n])])
  let t = try median({ try run.execute() }, repetitions: repetitions)
  measurements.append(Measurement(id: "W1", name: "elementwise chain f32[16M]", seconds: t, metric: "GB/s", value: Double(8 * n) / t / 1e9))
}

// W2: softmax over the last axis of f32[4096, 1024].
if selected("W2") {
  let text = "module @w2 {\n  func @f(%x: f32[4096, 1024]) -> f32[4096, 1024] {\n    %y = softmax %x : f32[4096, 1024]\n    return %y\n  }\n}\n"
  let (_, run, _) = try compile(text, "f", [TensorType(.f32, shape: [4096, 1024])])
  let t = try median({ try run.execute() }, repetitions: repetitions)
  measurements.append(Measurement(id: "W2", name: "softmax f32[4096, 1024]", seconds: t, metric: "ms", value: t * 1e3))
}

// W3: layer normalization (no affine, eps 1e-5) over the last axis of f32[4096, 1024].
if selected("W3") {
  let text = """
    module @w3 {
      func @f(%x: f32[4096, 1024]) -> f32[4096, 1024] {
        %m = reduce_mean %x {axes = [1], keepdims = true} : f32[4096, 1]
        %d = sub %x, %m : f32[4096, 1024]
        %sq = mul %d, %d : f32[4096, 1024]
        %v = reduce_mean %sq {axes = [1], keepdims = true} : f32[4096, 1]
        %eps = constant 1e-05 : f32[]
        %ve = add %v, %eps : f32[4096, 1]
        %r = rsqrt %ve : f32[4096, 1]
        %y = mul %d, %r : f32[4096, 1024]
        return %y
      }
    }
    """
  let (_, run, _) = try compile(text, "f", [TensorType(.f32, shape: [4096, 1024])])
  let t = try median({ try run.execute() }, repetitions: repetitions)
  measurements.append(Measurement(id: "W3", name: "layer norm f32[4096, 1024]", seconds: t, metric: "ms", value: t * 1e3))
}

// W7: f32 GEMM 1024^3 through ttfc, and OpenBLAS called directly for the target ratio.
var openBLASGflops = 0.0
if selected("W7") {
  let n = 1024
  let text = "module @w7 {\n  func @f(%a: f32[\(n), \(n)], %b: f32[\(n), \(n)]) -> f32[\(n), \(n)] {\n    %c = matmul %a, %b : f32[\(n), \(n)]\n    return %c\n  }\n}\n"
  let (_, run, _) = try compile(text, "f", [TensorType(.f32, shape: [n, n]), TensorType(.f32, shape: [n, n])])
  let flops = 2.0 * Double(n * n * n)
  let a = run.inputs[0].assumingMemoryBound(to: Float.self), b = run.inputs[1].assumingMemoryBound(to: Float.self)
  let c = UnsafeMutablePointer<Float>.allocate(capacity: n * n)
  // ttfc and the direct call alternate in blocks, so both see the same load on this shared host.
  // The direct call is OpenBLAS at its best, with its own threads (one per core; ttfc runs
  // OpenBLAS single-threaded and splits GEMMs over its own pool: ParallelGemm). After a block of
  // direct calls their threads spin for a while; ttfc's block waits until they sleep.
  var ours: [Double] = [], direct: [Double] = []
  let block = 5
  for round in 0..<((repetitions + block - 1) / block) {
    for r in 0..<(block + (round == 0 ? 2 : 0)) {
      let start = DispatchClock.now()
      try run.execute()
      if r >= (round == 0 ? 2 : 0) { ours.append(DispatchClock.now() - start) }
    }
    openblas_set_num_threads(Int32(ThreadPool.shared.threadCount))
    for r in 0..<(block + (round == 0 ? 2 : 0)) {
      let start = DispatchClock.now()
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(n), Int32(n), Int32(n), 1, a, Int32(n), b, Int32(n), 0, c, Int32(n))
      if r >= (round == 0 ? 2 : 0) { direct.append(DispatchClock.now() - start) }
    }
    openblas_set_num_threads(1)
    usleep(250_000)
  }
  let t = ours.sorted()[ours.count / 2]
  measurements.append(Measurement(id: "W7", name: "f32 GEMM 1024^3", seconds: t, metric: "GFLOP/s", value: flops / t / 1e9))
  openBLASGflops = flops / direct.sorted()[direct.count / 2] / 1e9
}

// W7h: bf16 GEMM 1024^3 with f32 output (HalfGemm, on its default path for this host) against
// ttfc's f32 GEMM (W7's compiled matmul) in the same run: alternating rounds, each a block of f32
// calls then a block of bf16 calls; each round's ratio is its two medians' ratio. The ratio's
// median and spread over the rounds are the W7h figure (WORKLOADS.md: goal 1.8x).
var w7hRounds: [(f32: Double, bf16: Double)] = []
if selected("W7h") {
  let n = 1024
  let text = "module @w7 {\n  func @f(%a: f32[\(n), \(n)], %b: f32[\(n), \(n)]) -> f32[\(n), \(n)] {\n    %c = matmul %a, %b : f32[\(n), \(n)]\n    return %c\n  }\n}\n"
  let (_, run, _) = try compile(text, "f", [TensorType(.f32, shape: [n, n]), TensorType(.f32, shape: [n, n])])
  let a32 = run.inputs[0].assumingMemoryBound(to: Float.self), b32 = run.inputs[1].assumingMemoryBound(to: Float.self)
  // The same values rounded to bf16 (the f32 inputs are multiples of 1/1000 in [-1, 1)).
  let a = UnsafeMutablePointer<UInt16>.allocate(capacity: n * n), b = UnsafeMutablePointer<UInt16>.allocate(capacity: n * n)
  for i in 0..<(n * n) { a[i] = bfloat16Bits(a32[i]); b[i] = bfloat16Bits(b32[i]) }
  let c = UnsafeMutablePointer<Float>.allocate(capacity: n * n)
  let flops = 2.0 * Double(n * n * n)
  func bf16Gemm() {
    HalfGemm.gemm(input: .bf16, output: .f32, transposeA: false, transposeB: false, m: n, n: n, k: n, a: a, lda: n, b: b, ldb: n,
                  c: c, pool: ThreadPool.shared)
  }
  let block = 5
  for round in 0..<max(7, (repetitions + block - 1) / block) {
    let warm = round == 0 ? 2 : 0
    var f32Times: [Double] = [], bf16Times: [Double] = []
    for r in 0..<(block + warm) {
      let start = DispatchClock.now()
      try run.execute()
      if r >= warm { f32Times.append(DispatchClock.now() - start) }
    }
    for r in 0..<(block + warm) {
      let start = DispatchClock.now()
      bf16Gemm()
      if r >= warm { bf16Times.append(DispatchClock.now() - start) }
    }
    w7hRounds.append((f32: flops / f32Times.sorted()[block / 2] / 1e9, bf16: flops / bf16Times.sorted()[block / 2] / 1e9))
  }
  let t = flops / (w7hRounds.map(\.bf16).sorted()[w7hRounds.count / 2] * 1e9)
  measurements.append(Measurement(id: "W7h", name: "bf16 GEMM 1024^3 (f32 out)", seconds: t, metric: "GFLOP/s", value: flops / t / 1e9))
}

// W4 / W5: one training step of the MLP 512-1024-1024-1 (ReLU, sigmoid cross entropy, mean),
// batch 256, Adam 1e-3 — forward, backward and update; and the cold compile of that step.
let w4Model = """
  module @w4 {
    param @w1 : f32[512, 1024] = glorot_uniform(seed: 1)
    param @b1 : f32[1024] = zeros
    param @w2 : f32[1024, 1024] = glorot_uniform(seed: 2)
    param @b2 : f32[1024] = zeros
    param @w3 : f32[1024, 1] = glorot_uniform(seed: 3)
    param @b3 : f32[1] = zeros
    func @loss(%x: f32[B, 512], %y: f32[B]) -> f32[] {
      %h1 = matmul %x, @w1 : f32[B, 1024]
      %a1 = add %h1, @b1 : f32[B, 1024]
      %r1 = relu %a1 : f32[B, 1024]
      %h2 = matmul %r1, @w2 : f32[B, 1024]
      %a2 = add %h2, @b2 : f32[B, 1024]
      %r2 = relu %a2 : f32[B, 1024]
      %h3 = matmul %r2, @w3 : f32[B, 1]
      %a3 = add %h3, @b3 : f32[B, 1]
      %z = reshape %a3 : f32[B]
      %l = sigmoid_cross_entropy %z, %y : f32[B]
      %m = reduce_mean %l : f32[]
      return %m
    }
  }
  """
if selected("W4") || selected("W5") || selected("W5warm") {
  let batch = 256
  let x = Tensor(.f32, shape: [batch, 512], floats: (0..<(batch * 512)).map { _ in Double.random(in: -1...1) })
  let y = Tensor(.f32, shape: [batch], floats: (0..<batch).map { _ in Double(Int.random(in: 0...1)) })
  let module = try Parser.parseAndVerify(w4Model)
  let compileStart = DispatchClock.now()
  let trainer = try Trainer(module: module, loss: "loss", optimizer: OptimizerConfig(.adam))
  let constructed = DispatchClock.now() - compileStart
  try trainer.step([x, y], lr: 1e-3)
  let cold = DispatchClock.now() - compileStart
  if options.profile { trainer.attachTrace(ExecutionTrace()) }
  let t = try median({ try trainer.step([x, y], lr: 1e-3) }, repetitions: repetitions)
  let flops = 6.0 * Double(batch) * Double(512 * 1024 + 1024 * 1024 + 1024)
  if profiling {
    print(trainer.profileReport)
    for k in trainer.kernelList.sorted(by: { $0.compileSeconds > $1.compileSeconds }).prefix(40) {
      print(String(format: "compile %.1f ms  %@  inputs %d  %@", k.compileSeconds * 1e3, k.name as NSString, k.signature.inputs.count, "\(k.signature.output)" as NSString))
    }
    let c = trainer.compileStatistics
    print(String(format: "W5 phases: build step %.3f s, passes %.3f s, parameters %.3f s, kernels and thunks %.3f s (%d kernels); trainer ready at %.3f s, first step done at %.3f s",
                 trainer.buildSeconds, c.optimizeSeconds, c.parameterSeconds,
                 c.compileSeconds - c.optimizeSeconds - c.parameterSeconds, c.kernels, constructed, cold))
  }
  if selected("W4") {
    measurements.append(Measurement(id: "W4", name: "MLP train step, batch 256", seconds: t, metric: "ms", value: t * 1e3))
    measurements.append(Measurement(id: "W4f", name: "MLP train step throughput", seconds: t, metric: "GFLOP/s", value: flops / t / 1e9))
  }
  if selected("W5") { measurements.append(Measurement(id: "W5", name: "cold compile of the W4 step", seconds: cold, metric: "s", value: cold)) }
  if selected("W5warm") {
    measurements.append(Measurement(id: "W5warm", name: "W5, kernels in the disk cache", seconds: cold, metric: "s", value: cold))
  }
}

// W5L: the cold compile of a deep MLP's training step (SyntheticModels.deepMLP: L layers of
// 64x64 matmul + bias + tanh, MSE, Adam, batch 64), at L = 128 and L = 512, and their ratio:
// compile time must grow linearly with the graph (issue 23: under 4.5x for 4x the layers).
// Every layer's kernels are alike, so a second compile in the same process would find them in
// memory: each size compiles in a child process of its own, with the disk cache off.
/// CPU seconds (user + system) of this process so far, every thread's.
func processCPUSeconds() -> Double {
  var usage = rusage()
  getrusage(RUSAGE_SELF.rawValue, &usage)
  return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) * 1e-6
}
func w5lCompile(layers: Int) throws -> (seconds: Double, cpuSeconds: Double, statistics: ExecutableStatistics) {
  let batch = 64
  let x = Tensor(.f32, shape: [batch, 64], floats: (0..<(batch * 64)).map { _ in Double.random(in: -1...1) })
  let y = Tensor(.f32, shape: [batch, 64], floats: (0..<(batch * 64)).map { _ in Double.random(in: -1...1) })
  let module = try Parser.parseAndVerify(SyntheticModels.deepMLP(layers: layers))
  let start = DispatchClock.now(), cpuStart = processCPUSeconds()
  let trainer = try Trainer(module: module, loss: "loss", optimizer: OptimizerConfig(.adam))
  try trainer.step([x, y], lr: 1e-3)
  return (DispatchClock.now() - start, processCPUSeconds() - cpuStart, trainer.compileStatistics)
}
if selected("W5Lchild"), let text = getenv("TTFC_W5L_LAYERS"), let layers = Int(String(cString: text)) {
  let (seconds, cpuSeconds, statistics) = try w5lCompile(layers: layers)
  let passCPU = statistics.passTimes.reduce(0) { $0 + $1.cpuSeconds }
  measurements.append(Measurement(id: "W5L\(layers)", name: "deep MLP step cold compile, L=\(layers)", seconds: seconds, metric: "s", value: seconds))
  measurements.append(Measurement(id: "W5L\(layers)c", name: "  its CPU time (all threads)", seconds: cpuSeconds, metric: "s", value: cpuSeconds))
  measurements.append(Measurement(id: "W5L\(layers)p", name: "  of which passes (CPU)", seconds: passCPU, metric: "s", value: passCPU))
}
if selected("W5L") {
  var results: [String: Double] = [:]
  for layers in [128, 512] {
    let output = FileManager.default.temporaryDirectory.appendingPathComponent("ttfc-w5l-\(getpid())-\(layers).json").path
    let child = Process()
    child.executableURL = URL(fileURLWithPath: CommandLine.arguments[0].contains("/") ? CommandLine.arguments[0] : "/proc/self/exe")
    child.arguments = ["--only", "W5Lchild", "--json-out", output]
    var environment = ProcessInfo.processInfo.environment
    environment["TTFC_W5L_LAYERS"] = String(layers)
    environment["TTFC_CACHE_DIR"] = "off"
    environment["TTFC_PROFILE"] = nil   // a recording would be timed with the compile
    child.environment = environment
    try child.run()
    child.waitUntilExit()
    guard child.terminationStatus == 0, let data = FileManager.default.contents(atPath: output),
          let object = try? JSONSerialization.jsonObject(with: data) as? [String: [String: Any]] else {
      print("W5L: the L=\(layers) compile failed (exit \(child.terminationStatus))")
      continue
    }
    try? FileManager.default.removeItem(atPath: output)
    for (id, m) in object.sorted(by: { $0.key < $1.key }) {
      let value = m["value"] as? Double ?? 0
      results[id] = value
      measurements.append(Measurement(id: id, name: m["name"] as? String ?? id, seconds: m["seconds"] as? Double ?? 0, metric: "s", value: value))
    }
  }
  if let small = results["W5L128"], let large = results["W5L512"] {
    measurements.append(Measurement(id: "W5Lr", name: "W5L512 / W5L128 (goal < 4.5)", seconds: 0, metric: "x", value: large / small))
  }
  if let small = results["W5L128c"], let large = results["W5L512c"] {
    measurements.append(Measurement(id: "W5Lrc", name: "  the same in CPU time", seconds: 0, metric: "x", value: large / small))
  }
}

// W4h: the W4 step under bf16 automatic mixed precision (`--precision bf16`: the amp rewrite,
// f32 master weights and Adam state, no loss scaling), beside W4 in the same rounds.
if selected("W4h") {
  let batch = 256
  let x = Tensor(.f32, shape: [batch, 512], floats: (0..<(batch * 512)).map { _ in Double.random(in: -1...1) })
  let y = Tensor(.f32, shape: [batch], floats: (0..<batch).map { _ in Double(Int.random(in: 0...1)) })
  let trainer = try Trainer(module: try Parser.parseAndVerify(w4Model), loss: "loss", optimizer: OptimizerConfig(.adam),
                            mixedPrecision: MixedPrecisionOptions(halfType: .bf16, policy: FixedPrecisionPolicy(.mixed, spelling: "fixed:bf16")))
  try trainer.step([x, y], lr: 1e-3)
  if options.profile { trainer.attachTrace(ExecutionTrace()) }
  let t = try median({ try trainer.step([x, y], lr: 1e-3) }, repetitions: repetitions)
  let flops = 6.0 * Double(batch) * Double(512 * 1024 + 1024 * 1024 + 1024)
  if profiling { print(trainer.profileReport) }
  measurements.append(Measurement(id: "W4h", name: "MLP train step, batch 256, bf16 AMP", seconds: t, metric: "ms", value: t * 1e3))
  measurements.append(Measurement(id: "W4hf", name: "MLP train step throughput, bf16 AMP", seconds: t, metric: "GFLOP/s", value: flops / t / 1e9))
}

// W9: one training step (SGD with momentum 0.9) of a ResNet stage — batch 64, 32x32, 64
// channels, two basic residual blocks (3x3 conv, batch norm, ReLU, 3x3 conv, batch norm, + the
// block's input, ReLU) — and of a depthwise-separable block (3x3 depthwise conv, batch norm,
// ReLU, 1x1 conv to 128 channels, batch norm, ReLU), each ending in global average pooling, a
// dense layer to 10 classes and softmax cross entropy. Batch norm is the `batch_norm_training` op
// (epsilon 1e-3, batch statistics), which compiles to swept statistics and fused normalizing
// loops; the JAX side writes the same formula in jnp. GFLOP/s counts the convolutions and the
// dense layer: forward, and the input and filter gradients the step computes (no input gradient
// for the first layer).
func w9BatchNorm(_ lines: inout [String], _ input: String, _ name: String, channels: Int, shape: String) -> String {
  lines += [
    "%\(name), %\(name)_m, %\(name)_v = batch_norm_training %\(input), @\(name)_scale, @\(name)_offset {epsilon = 0.001} : \(shape), f32[\(channels)], f32[\(channels)]",
  ]
  return name
}

func w9Model(depthwise: Bool) -> String {
  let shape = "f32[B, 32, 32, 64]", wide = "f32[B, 32, 32, 128]"
  var params: [String] = [], lines: [String] = []
  func bnParams(_ name: String, _ c: Int) {
    params += ["param @\(name)_scale : f32[\(c)] = ones", "param @\(name)_offset : f32[\(c)] = zeros"]
  }
  var head = 64
  if depthwise {
    params += ["param @dk : f32[3, 3, 1, 64] = he_normal(seed: 1)", "param @pk : f32[1, 1, 64, 128] = he_normal(seed: 2)"]
    bnParams("bn1", 64); bnParams("bn2", 128)
    lines += ["%c1 = conv2d %x, @dk {groups = 64, padding = \"SAME\"} : \(shape)"]
    _ = w9BatchNorm(&lines, "c1", "bn1", channels: 64, shape: shape)
    lines += ["%r1 = relu %bn1 : \(shape)", "%c2 = conv2d %r1, @pk : \(wide)"]
    _ = w9BatchNorm(&lines, "c2", "bn2", channels: 128, shape: wide)
    lines += ["%out = relu %bn2 : \(wide)"]
    head = 128
  } else {
    var input = "x"
    for block in 1...2 {
      let a = "k\(block)a", b = "k\(block)b"
      params += ["param @\(a) : f32[3, 3, 64, 64] = he_normal(seed: \(block * 2))",
                 "param @\(b) : f32[3, 3, 64, 64] = he_normal(seed: \(block * 2 + 1))"]
      bnParams("bn\(block)a", 64); bnParams("bn\(block)b", 64)
      lines += ["%c\(block)a = conv2d %\(input), @\(a) {padding = \"SAME\"} : \(shape)"]
      _ = w9BatchNorm(&lines, "c\(block)a", "bn\(block)a", channels: 64, shape: shape)
      lines += ["%r\(block)a = relu %bn\(block)a : \(shape)", "%c\(block)b = conv2d %r\(block)a, @\(b) {padding = \"SAME\"} : \(shape)"]
      _ = w9BatchNorm(&lines, "c\(block)b", "bn\(block)b", channels: 64, shape: shape)
      lines += ["%s\(block) = add %bn\(block)b, %\(input) : \(shape)", "%a\(block) = relu %s\(block) : \(shape)"]
      input = "a\(block)"
    }
    lines += ["%out = relu %\(input) : \(shape)"]
  }
  params += ["param @wd : f32[\(head), 10] = glorot_uniform(seed: 9)", "param @bd : f32[10] = zeros"]
  lines += [
    "%p = reduce_mean %out {axes = [1, 2]} : f32[B, \(head)]",
    "%z = matmul %p, @wd : f32[B, 10]",
    "%zb = add %z, @bd : f32[B, 10]",
    "%l = softmax_cross_entropy %zb, %y : f32[B]",
    "%loss = reduce_mean %l : f32[]",
    "return %loss",
  ]
  return "module @w9 {\n" + params.map { "  " + $0 }.joined(separator: "\n")
    + "\n  func @loss(%x: f32[B, 32, 32, 64], %y: f32[B, 10]) -> f32[] {\n" + lines.map { "    " + $0 }.joined(separator: "\n") + "\n  }\n}\n"
}

/// FLOPs of one W9 step (convolutions and the dense layer, as the header says).
func w9Flops(depthwise: Bool, batch: Int) -> Double {
  let pixels = Double(batch * 32 * 32)
  if depthwise {
    let dw = 2 * pixels * 9 * 64, pw = 2 * pixels * 64 * 128, dense = 2 * Double(batch) * 128 * 10
    return 2 * dw + 3 * pw + 3 * dense
  }
  let conv = 2 * pixels * 9 * 64 * 64, dense = 2 * Double(batch) * 64 * 10
  return 11 * conv + 3 * dense
}

if selected("W9") {
  // TTFC_W9_BATCH: another batch size, for profiling (the workload is batch 64).
  let batch = getenv("TTFC_W9_BATCH").flatMap { Int(String(cString: $0)) } ?? 64
  let x = Tensor(.f32, shape: [batch, 32, 32, 64], floats: (0..<(batch * 32 * 32 * 64)).map { _ in Double.random(in: -1...1) })
  let y = Tensor(.f32, shape: [batch, 10], floats: (0..<(batch * 10)).map { k in k % 10 == (k / 10) % 10 ? 1 : 0 })
  for (id, depthwise, name) in [("W9", false, "ResNet stage train step, b64"), ("W9d", true, "depthwise-separable step, b64")] {
    let module = try Parser.parseAndVerify(w9Model(depthwise: depthwise))
    let trainer = try Trainer(module: module, loss: "loss", optimizer: OptimizerConfig(.momentum))
    if getenv("TTFC_W9_STATS") != nil, let summary = trainer.compileStatistics.interpretedSummary { print("\(id) \(summary)") }
    try trainer.step([x, y], lr: 1e-3)
    let t = try median({ try trainer.step([x, y], lr: 1e-3) }, repetitions: repetitions, warmup: 1)
    if profiling { print(trainer.profileReport) }
    let flops = w9Flops(depthwise: depthwise, batch: batch)
    measurements.append(Measurement(id: id, name: name, seconds: t, metric: "ms", value: t * 1e3))
    measurements.append(Measurement(id: id + "f", name: name + " throughput", seconds: t, metric: "GFLOP/s", value: flops / t / 1e9))
  }
}

// W10: one Adam step of BERT-tiny (examples/bert_tiny.ttir: L = 2, H = 128, A = 2, I = 512, vocab
// 8192, dropout 0.1, fused attention) at batch 32, sequence 128, 20 predicted positions per
// example; tools/bench_jax.py runs the same encoder in JAX (BENCH_JAX_ONLY=W10).
if selected("W10") {
  let path = ProcessInfo.processInfo.environment["TTFC_BERT_MODEL"] ?? "examples/bert_tiny.ttir"
  let module = try Parser.parseAndVerify(String(contentsOfFile: path, encoding: .utf8))
  let (batch, length, predictions) = (32, 128, 20)
  var state: UInt64 = 7
  func next(_ bound: Int) -> Int64 { state = state &* 6364136223846793005 &+ 1442695040888963407; return Int64((state >> 33) % UInt64(bound)) }
  let tokens = Tensor(.i32, shape: [batch, length], ints: (0..<(batch * length)).map { _ in 5 + next(8187) })
  let segments = Tensor(.i32, shape: [batch, length], ints: (0..<(batch * length)).map { ($0 % length) < length / 2 ? 0 : 1 })
  let lengths = Tensor(.i32, shape: [batch], ints: [Int64](repeating: Int64(length), count: batch))
  let positions = Tensor(.i32, shape: [batch, predictions], ints: (0..<(batch * predictions)).map { 1 + Int64($0 % predictions) * 6 })
  let ids = Tensor(.i32, shape: [batch, predictions], ints: (0..<(batch * predictions)).map { _ in 5 + next(8187) })
  let weights = Tensor(.f32, shape: [batch, predictions], floats: [Double](repeating: 1, count: batch * predictions))
  let labels = Tensor(.i32, shape: [batch], ints: (0..<batch).map { Int64($0 % 2) })
  let inputs = [tokens, segments, lengths, positions, ids, weights, labels]
  let trainer = try Trainer(module: module, loss: "loss", optimizer: OptimizerConfig(.adam))
  try trainer.step(inputs, lr: 1e-3)
  let t = try median({ try trainer.step(inputs, lr: 1e-3) }, repetitions: repetitions, warmup: 1)
  if profiling { print(trainer.profileReport) }
  measurements.append(Measurement(id: "W10", name: "BERT-tiny train step, b32 s128", seconds: t, metric: "ms", value: t * 1e3))
}

/// A training run over batches of varying shapes: total seconds including compilation, the
/// kernels compiled, the layouts built; and the same batches again once everything is warm.
func varyingShapeRun(_ model: String, batches: [[Tensor]], policy: BucketPolicy) throws -> (total: Double, warm: Double, compiled: Int, layouts: Int, trainer: Trainer) {
  let module = try Parser.parseAndVerify(model)
  let compiledBefore = KernelCache.shared.counters.compiled
  let start = DispatchClock.now()
  let trainer = try Trainer(module: module, loss: "loss", optimizer: OptimizerConfig(.adam), bucketPolicy: policy)
  for b in batches { try trainer.step(b, lr: 1e-3) }
  let total = DispatchClock.now() - start
  let compiled = KernelCache.shared.counters.compiled - compiledBefore
  let warmStart = DispatchClock.now()
  for b in batches { try trainer.step(b, lr: 1e-3) }
  return (total, DispatchClock.now() - warmStart, compiled, trainer.shapes.statistics.layoutsBuilt, trainer)
}

/// The comma-separated integers in the file at `path` (empty if absent).
func integerList(in path: String?) -> [Int] {
  guard let path, let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [] }
  return text.split(whereSeparator: { $0 == "," || $0 == "\n" || $0 == " " }).compactMap { Int($0) }
}

func randomTensor(_ shape: [Int], seed: UInt64, labels: Bool = false) -> Tensor {
  var state = seed
  let n = shape.reduce(1, *)
  return Tensor(.f32, shape: shape, floats: (0..<n).map { _ in
    state = state &* 6364136223846793005 &+ 1442695040888963407
    let u = Double(state >> 11) / Double(1 << 53)
    return labels ? (u < 0.5 ? 0 : 1) : 2 * u - 1
  })
}

// W6: the W4 step on 200 batches whose sizes are numpy default_rng(0).integers(1, 513, 200)
// (tools/bench_jax.py writes them; the fallback is a seeded uniform draw), cold: compilation
// included. The static reference is 200 steps of the W4 shape (batch 256, the mean size).
if selected("W6") {
  var sizes = integerList(in: options.w6Sizes)
  if sizes.isEmpty { var rng = SystemRandomNumberGenerator(); sizes = (0..<200).map { _ in Int.random(in: 1...512, using: &rng) } }
  let batches = sizes.enumerated().map { [randomTensor([$1, 512], seed: UInt64($0)), randomTensor([$1], seed: UInt64($0) + 7_777, labels: true)] }
  let policy = try BucketPolicy(parsing: ProcessInfo.processInfo.environment["W6_POLICY"] ?? "pow2")
  let run = try varyingShapeRun(w4Model, batches: batches, policy: policy)
  let fixed = [randomTensor([256, 512], seed: 1), randomTensor([256], seed: 2, labels: true)]
  let staticStart = DispatchClock.now()
  for _ in 0..<200 { try run.trainer.step(fixed, lr: 1e-3) }
  let staticSteps = DispatchClock.now() - staticStart
  measurements.append(Measurement(id: "W6", name: "200 steps, batch 1..512", seconds: run.total, metric: "s", value: run.total))
  // A compile, as JAX counts them, is one program (executable) compiled; its kernels are listed apart.
  measurements.append(Measurement(id: "W6c", name: "W6 compiles (programs)", seconds: 0, metric: "", value: 1))
  measurements.append(Measurement(id: "W6k", name: "W6 kernels compiled (LLVM)", seconds: 0, metric: "", value: Double(run.compiled)))
  // Against the same 200 batches run again with nothing left to compile or lay out (each at its
  // exact shape), and against 200 steps of the W4 shape (batch 256, the mean size).
  measurements.append(Measurement(id: "W6x", name: "W6 / same steps, warm", seconds: 0, metric: "x", value: run.total / run.warm))
  measurements.append(Measurement(id: "W6y", name: "W6 / 200 steps at B=256", seconds: 0, metric: "x", value: run.total / staticSteps))
  measurements.append(Measurement(id: "W6w", name: "W6 batches again, warm", seconds: run.warm, metric: "s", value: run.warm))
  print(String(format: "W6  %d distinct sizes; 1 executable, %d kernels compiled, %d layouts (%@ buckets); 200 static steps at B=256: %.3f s",
               Set(sizes).count, run.compiled, run.layouts, policy.description as NSString, staticSteps))
}

// W6s (ours): variable sequence length. An attention-pooled sequence classifier over
// x: f32[32, T, 64] (tanh projection to 128, softmax over T, weighted sum, logistic output),
// Adam, 200 steps with T drawn log-normally around 48 (4..256) as NLP batches are. Every op that
// reads across T — the softmax, the sum over T, the batched matmuls — runs at the exact T.
let sequenceModel = """
  module @seq {
    param @w1 : f32[64, 128] = glorot_uniform(seed: 1)
    param @b1 : f32[128] = zeros
    param @q : f32[128, 1] = glorot_uniform(seed: 2)
    param @w2 : f32[128, 1] = glorot_uniform(seed: 3)
    param @b2 : f32[1] = zeros
    func @loss(%x: f32[B, T, 64], %y: f32[B]) -> f32[] {
      %h0 = matmul %x, @w1 : f32[B, T, 128]
      %h1 = add %h0, @b1 : f32[B, T, 128]
      %h = tanh %h1 : f32[B, T, 128]
      %s0 = matmul %h, @q : f32[B, T, 1]
      %s = reshape %s0 : f32[B, T]
      %a = softmax %s {axis = 1} : f32[B, T]
      %a1 = reshape %a : f32[B, T, 1]
      %wh = mul %h, %a1 : f32[B, T, 128]
      %p = reduce_sum %wh {axes = [1]} : f32[B, 128]
      %z0 = matmul %p, @w2 : f32[B, 1]
      %z1 = add %z0, @b2 : f32[B, 1]
      %z = reshape %z1 : f32[B]
      %l = sigmoid_cross_entropy %z, %y : f32[B]
      %m = reduce_mean %l : f32[]
      return %m
    }
  }
  """
if selected("W6s") {
  var lengths = integerList(in: options.w6sLengths)
  if lengths.isEmpty { lengths = (0..<200).map { _ in min(256, max(4, Int((48 * exp(0.6 * Double.random(in: -2...2))).rounded())))} }
  let batches = lengths.enumerated().map { [randomTensor([32, $1, 64], seed: UInt64($0)), randomTensor([32], seed: UInt64($0) + 555, labels: true)] }
  let run = try varyingShapeRun(sequenceModel, batches: batches, policy: .adaptive)
  if profiling { print(run.trainer.profileReport.split(separator: "\n").prefix(12).joined(separator: "\n")) }
  measurements.append(Measurement(id: "W6s", name: "seq model, 200 steps, T 4..256", seconds: run.total, metric: "s", value: run.total))
  measurements.append(Measurement(id: "W6sc", name: "W6s compiles (programs)", seconds: 0, metric: "", value: 1))
  measurements.append(Measurement(id: "W6sk", name: "W6s kernels compiled (LLVM)", seconds: 0, metric: "", value: Double(run.compiled)))
  measurements.append(Measurement(id: "W6sw", name: "W6s batches again, warm", seconds: run.warm, metric: "s", value: run.warm))
  print(String(format: "W6s %d distinct lengths; 1 executable, %d kernels compiled, %d layouts (adaptive buckets: %@)",
               Set(lengths).count, run.compiled, run.layouts, run.trainer.shapes.adaptiveEdges.description as NSString))
}

// W8: dynamic embedding tables at dim 16 and 64 — insert 2^20 ids (training lookups of new ids),
// look up batches of 65,536 Zipf(1.1) ids over them (evaluation), and one training step on such
// a batch: lookup with insertion, gradient summed per unique row, SparseAdam update of the rows
// (the row-count variant, which the recorded W8 figures measured; the published variant, ttfc's
// default, does the same work per row).
if selected("W8") {
  let idCount = 1 << 20, batch = 65_536
  // Zipf(1.1) over ranks 1...idCount by inverse CDF; ranks map to scattered ids.
  var cdf = [Double](repeating: 0, count: idCount)
  var total = 0.0
  for k in 0..<idCount { total += pow(Double(k + 1), -1.1); cdf[k] = total }
  var state: UInt64 = 12345
  func uniform() -> Double { state = state &* 6364136223846793005 &+ 1442695040888963407; return Double(state >> 11) / Double(1 << 53) }
  func scatter(_ k: Int) -> Int64 { Int64(bitPattern: UInt64(k) &* 0x9E3779B97F4A7C15 >> 1) }
  let batches: [[Int64]] = (0..<8).map { _ in (0..<batch).map { _ in
    let u = uniform() * total
    var lo = 0, hi = idCount - 1
    while lo < hi { let mid = (lo + hi) / 2; if cdf[mid] < u { lo = mid + 1 } else { hi = mid } }
    return scatter(lo)
  } }
  for dim in [16, 64] {
    let sparseAdam = SparseOptimizer.sparseAdam(.rowCount)
    let table = try EmbeddingTable(dim: dim, optimizer: sparseAdam, seed: 1, initialCapacity: 1024)
    let all = (0..<idCount).map(scatter)
    var out = [Float](repeating: 0, count: batch * dim)
    var rows = [Int32](repeating: 0, count: batch)
    let insertStart = DispatchClock.now()
    for start in stride(from: 0, to: idCount, by: batch) {
      all[start..<(start + batch)].withUnsafeBufferPointer { ids in _ = table.lookup(ids, into: &out, training: true, step: 1) }
    }
    let insertRate = Double(idCount) / (DispatchClock.now() - insertStart)
    var next = 0
    let lookup = median({
      batches[next % batches.count].withUnsafeBufferPointer { ids in _ = table.lookup(ids, into: &out, training: false) }
      next += 1
    }, repetitions: repetitions)
    let grad = (0..<(batch * dim)).map { Float(($0 % 17) - 8) * 0.01 }
    var step: Int64 = 1
    var uniqueRows = 0
    let update = median({
      step += 1
      batches[Int(step) % batches.count].withUnsafeBufferPointer { ids in _ = table.lookup(ids, into: &out, training: true, step: step, rowsOut: &rows) }
      let sparse = rows.withUnsafeBufferPointer { r in grad.withUnsafeBufferPointer { table.sparseGradient(rows: r, grad: $0.baseAddress!) } }
      uniqueRows = sparse.rows.count
      try? table.apply(sparseAdam, sparse, step: step, lr: 1e-3)
    }, repetitions: repetitions)
    // The update alone, on a gradient prepared beforehand (what "row updates/s" counts).
    batches[0].withUnsafeBufferPointer { ids in _ = table.lookup(ids, into: &out, training: true, step: step, rowsOut: &rows) }
    let sparse = rows.withUnsafeBufferPointer { r in grad.withUnsafeBufferPointer { table.sparseGradient(rows: r, grad: $0.baseAddress!) } }
    let apply = median({ step += 1; try? table.apply(sparseAdam, sparse, step: step, lr: 1e-3) }, repetitions: repetitions)
    let stats = table.statistics
    measurements.append(Measurement(id: "W8i\(dim)", name: "dim \(dim): insert", seconds: 0, metric: "Mkeys/s", value: insertRate / 1e6))
    measurements.append(Measurement(id: "W8l\(dim)", name: "dim \(dim): lookup (Zipf 1.1)", seconds: lookup, metric: "Mkeys/s", value: Double(batch) / lookup / 1e6))
    measurements.append(Measurement(id: "W8u\(dim)", name: "dim \(dim): lookup+grad+SparseAdam", seconds: update, metric: "Mkeys/s", value: Double(batch) / update / 1e6))
    measurements.append(Measurement(id: "W8r\(dim)", name: "dim \(dim): SparseAdam row updates", seconds: apply, metric: "Mrows/s", value: Double(sparse.rows.count) / apply / 1e6))
    measurements.append(Measurement(id: "W8b\(dim)", name: "dim \(dim): bytes per row / raw", seconds: 0, metric: "x",
                                    value: Double(stats.bytes) / Double(stats.size) / Double(table.rawBytesPerRow)))
    print(String(format: "W8  dim %d: %d rows, %.1f bytes per row (raw values and slots %d), %d unique rows per batch of %d",
                 dim, stats.size, Double(stats.bytes) / Double(stats.size), table.rawBytesPerRow, uniqueRows, batch))
  }
}

// W12: inference of real models imported from ONNX (tools/onnx_real exports them from torchvision
// and transformers): ResNet-18 at batch 1 and 32 (224x224) and a BERT encoder (L=4, H=256) at
// batch 8, sequence 128, each imported with TTONNX, compiled and timed as the median of
// prepared runs on the exported inputs. tools/bench times onnxruntime on the same files in
// alternating rounds. Skipped, with a message, when the models are not there (CI has no torch).
if selected("W12") {
  let dir = options.w12Dir
  let cases: [(id: String, name: String, model: String, inputs: [(String, String)], items: Int, unit: String)] = [
    ("W12r1", "ResNet-18 inference, batch 1", "resnet18.onnx", [("image", "resnet18_image_b1.npy")], 1, "images/s"),
    ("W12r32", "ResNet-18 inference, batch 32", "resnet18.onnx", [("image", "resnet18_image_b32.npy")], 32, "images/s"),
    ("W12b", "BERT L4 H256 inference, b8 s128", "bert.onnx",
     [("input_ids", "bert_input_ids.npy"), ("attention_mask", "bert_attention_mask.npy")], 8, "seqs/s"),
  ]
  let missing = cases.flatMap { [$0.model] + $0.inputs.map(\.1) }.filter { !FileManager.default.fileExists(atPath: (dir as NSString).appendingPathComponent($0)) }
  if !missing.isEmpty {
    print("W12 skipped: \(missing.count) exported file(s) missing from \(dir) (\(missing.first!)...); tools/onnx_real exports them (it needs torch)")
  } else {
    var imported: [String: (Executable, [String], Double)] = [:]
    for c in cases {
      func path(_ file: String) -> String { (dir as NSString).appendingPathComponent(file) }
      if imported[c.model] == nil {
        let start = DispatchClock.now()
        guard let bytes = FileManager.default.contents(atPath: path(c.model)) else { fatalError("W12: cannot read \(path(c.model))") }
        let result = try ONNXImporter.importModel(bytes: [UInt8](bytes))
        let executable = try Executable(module: result.module, function: "main",
                                        params: Dictionary(uniqueKeysWithValues: result.parameters.map { ($0.name, $0.tensor) }))
        imported[c.model] = (executable, result.argumentInputs, DispatchClock.now() - start)
      }
      let (executable, argumentInputs, importSeconds) = imported[c.model]!
      let byName = Dictionary(uniqueKeysWithValues: try c.inputs.map { ($0.0, try NumpyFormat.read(path: path($0.1))) })
      let tensors = argumentInputs.map { byName[$0]! }
      let prepareStart = DispatchClock.now()
      let run = try executable.prepare(inputTypes: tensors.map(\.type))
      for (i, t) in tensors.enumerated() { RawTensor.write(t, to: run.inputs[i]) }
      try run.execute()
      let first = DispatchClock.now() - prepareStart
      if profiling { executable.trace = ExecutionTrace(threads: ThreadPool.shared.threadCount) }
      let t = try median({ try run.execute() }, repetitions: repetitions, warmup: 2)
      if profiling { print("\(c.id) profile:\n" + executable.profileReport); executable.trace = nil }
      print(String(format: "%@: import and compile %.2f s, first run (with shape preparation) %.1f ms", c.id as NSString, importSeconds, first * 1e3))
      measurements.append(Measurement(id: c.id, name: c.name, seconds: t, metric: "ms", value: t * 1e3))
      measurements.append(Measurement(id: c.id + "t", name: "  throughput", seconds: t, metric: c.unit, value: Double(c.items) / t))
    }
  }
}

if let jsonOut {
  let object = Dictionary(uniqueKeysWithValues: measurements.map { ($0.id, ["name": $0.name, "metric": $0.metric, "value": $0.value, "seconds": $0.seconds] as [String: Any]) })
  let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
  try data.write(to: URL(fileURLWithPath: jsonOut))
  exit(0)
}
for file in extraFiles {
  guard let data = FileManager.default.contents(atPath: file),
        let object = try? JSONSerialization.jsonObject(with: data) as? [String: [String: Any]] else { continue }
  for (id, m) in object.sorted(by: { $0.key < $1.key }) {
    measurements.append(Measurement(id: id, name: m["name"] as? String ?? id, seconds: m["seconds"] as? Double ?? 0,
                                    metric: m["metric"] as? String ?? "", value: m["value"] as? Double ?? 0))
  }
}

// Report, with JAX figures from the same run when given.
var jax: [String: Double] = [:]
if let jaxFile, let data = FileManager.default.contents(atPath: jaxFile),
   let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] {
  for (k, v) in object { if let d = v as? Double { jax[k] = d } else if let i = v as? Int { jax[k] = Double(i) } }
}
let host = HostInfo.current()
print("ttfc benchmarks on \(host.cpuName), \(ThreadPool.shared.threadCount) threads, median of \(repetitions) runs")
print("id  workload                        ttfc              JAX               ttfc speedup vs JAX")
for m in measurements {
  let ours = String(format: "%9.3f %@", m.value, m.metric as NSString)
  var line = "\(m.id)  \(m.name.padding(toLength: 30, withPad: " ", startingAt: 0))  \(ours.padding(toLength: 16, withPad: " ", startingAt: 0))"
  if let theirs = jax[m.id] {
    line += "  " + String(format: "%9.3f %@", theirs, m.metric as NSString).padding(toLength: 16, withPad: " ", startingAt: 0)
    // For times (ms, s) lower is better; for rates higher is better.
    let speedup = (m.metric == "ms" || m.metric == "s" || m.metric == "") ? theirs / m.value : m.value / theirs
    line += String(format: "  %.2fx", speedup)
  }
  print(line)
}
if let w7 = measurements.first(where: { $0.id == "W7" }) {
  print(String(format: "W7  OpenBLAS sgemm called directly: %.1f GFLOP/s; ttfc reaches %.3f of it", openBLASGflops, w7.value / openBLASGflops))
}
if let w7 = measurements.first(where: { $0.id == "W7" }) {
  for id in ["W9f", "W9df"] {
    guard let m = measurements.first(where: { $0.id == id }) else { continue }
    print(String(format: "%@  %.1f GFLOP/s: %.2f of ttfc's W7 GEMM rate (%.1f GFLOP/s)", String(id.dropLast()) as NSString, m.value, m.value / w7.value, w7.value))
  }
}
if !w7hRounds.isEmpty {
  func summary(_ values: [Double]) -> String {
    let sorted = values.sorted()
    return String(format: "median %.2f, spread %.2f-%.2f", sorted[sorted.count / 2], sorted.first!, sorted.last!)
  }
  let path = HalfGemm.bf16Path == .dotProducts ? "vdpbf16ps dot products" : "portable: widened to f32, f32 microkernel"
  print("W7h bf16 path: \(path); \(w7hRounds.count) alternating rounds of 5 calls each")
  print("W7h ttfc f32 GEMM GFLOP/s: \(summary(w7hRounds.map(\.f32))); bf16 GEMM GFLOP/s: \(summary(w7hRounds.map(\.bf16)))")
  print("W7h ratio bf16/f32 (goal 1.8x): \(summary(w7hRounds.map { $0.bf16 / $0.f32 }))")
}
if let w0 = measurements.first(where: { $0.id == "W0" }), let w1 = measurements.first(where: { $0.id == "W1" }) {
  print(String(format: "W1  bandwidth %.1f%% of W0 (memcpy)", 100 * w1.value / w0.value))
}
// `--only curve`: the W4 step's time across batch sizes (a fixed cost for the Adam update of the
// 1.6M parameters plus a per-row cost), which is what W6's mix of sizes adds up.
if only?.contains("curve") == true {
  let module = try Parser.parseAndVerify(w4Model)
  let trainer = try Trainer(module: module, loss: "loss", optimizer: OptimizerConfig(.adam))
  for b in [1, 8, 32, 64, 128, 192, 256, 320, 384, 448, 512] {
    let batch = [randomTensor([b, 512], seed: 1), randomTensor([b], seed: 2, labels: true)]
    let t = try median({ try trainer.step(batch, lr: 1e-3) }, repetitions: 15)
    print(b, String(format: "%.3f ms  %.4f ms/row", t * 1e3, t * 1e3 / Double(b)))
  }
}
// `--only gemms`: the W4 step's five GEMMs (forward, weight and input gradients at batch 256)
// through ttfc's GEMM (JitGemm) and through OpenBLAS split the same way over the pool, in
// alternating blocks; a tool for tuning the GEMM, not a workload.
if only?.contains("gemms") == true {
  let pool = ThreadPool.shared
  let compileStart = DispatchClock.now()
  _ = try GemmKernels.compiled()
  print(String(format: "GEMM routines compiled in %.1f ms", (DispatchClock.now() - compileStart) * 1e3))
  // (transpose A, transpose B, m, n, k, what it is)
  let shapes: [(Bool, Bool, Int, Int, Int, String)] = [
    (false, false, 256, 1024, 512, "x W1"), (false, false, 256, 1024, 1024, "h1 W2"),
    (true, false, 1024, 1024, 256, "h1^T dz2"), (false, true, 256, 1024, 1024, "dz2 W2^T"), (true, false, 512, 1024, 256, "x^T dz1"),
  ]
  var totals = (jit: 0.0, blas: 0.0)
  for (ta, tb, m, n, k, name) in shapes {
    let a = UnsafeMutablePointer<Float>.allocate(capacity: m * k), b = UnsafeMutablePointer<Float>.allocate(capacity: k * n)
    let c = UnsafeMutablePointer<Float>.allocate(capacity: m * n)
    fill(a, count: m * k, seed: 1); fill(b, count: k * n, seed: 2)
    // Alternating single calls: both engines see the same moments of this noisy host; the
    // medians and the minimums (each engine's capability) are reported.
    var jit: [Double] = [], blas: [Double] = []
    for r in 0..<42 {
      var start = DispatchClock.now()
      ParallelGemm.jitGemm(transposeA: ta, transposeB: tb, m: m, n: n, k: k, a: a, lda: ta ? m : k, b: b, ldb: tb ? k : n, c: c, pool: pool)
      if r > 1 { jit.append(DispatchClock.now() - start) }
      start = DispatchClock.now()
      ParallelGemm.blasGemm(transposeA: ta, transposeB: tb, m: m, n: n, k: k, a: a, lda: ta ? m : k, b: b, ldb: tb ? k : n, c: c, pool: pool)
      if r > 1 { blas.append(DispatchClock.now() - start) }
    }
    jit.sort(); blas.sort()
    let tj = jit[jit.count / 2], tb = blas[blas.count / 2]
    let flops = 2.0 * Double(m * n * k)
    print(String(format: "%-10@ %4d x %4d x %4d  GFLOP/s median (best): ttfc %6.1f (%6.1f)  OpenBLAS split %6.1f (%6.1f)  ratio %.3f (%.3f)",
                 name as NSString, m, n, k, flops / tj / 1e9, flops / jit[0] / 1e9, flops / tb / 1e9, flops / blas[0] / 1e9,
                 tb / tj, blas[0] / jit[0]))
    totals.jit += tj; totals.blas += tb
    a.deallocate(); b.deallocate(); c.deallocate()
  }
  print(String(format: "five GEMMs: ttfc %.3f ms, OpenBLAS %.3f ms", totals.jit * 1e3, totals.blas * 1e3))
}
