// ttfc-bench — the workloads of shared/bench/WORKLOADS.md on ttfc (W0-W5, W7 so far), timed as
// medians over repeated runs of prepared executables (inputs written once, no conversion in the
// loop). With --jax FILE it reads the same workloads' JAX timings (tools/bench_jax.py, same run)
// and prints ttfc/JAX ratios. A benchmark, not a test: nothing here fails on a slow result.
import COpenBLAS
import Foundation
import TTCodegen
import TTIR
import TTRuntime
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

func fill(_ p: UnsafeMutableRawPointer, count: Int, seed: UInt64) {
  let f = p.assumingMemoryBound(to: Float.self)
  var state = seed
  for i in 0..<count {
    state = state &* 6364136223846793005 &+ 1442695040888963407
    f[i] = Float(Int64(bitPattern: state >> 11) % 2000) / 1000.0 - 1.0
  }
}

func compile(_ text: String, _ function: String, _ inputs: [TensorType]) throws -> (Executable, Executable.PreparedRun, Double) {
  let module = try Parser.parseAndVerify(text)
  let start = DispatchClock.now()
  let executable = try Executable(module: module, function: function)
  let run = try executable.prepare(inputTypes: inputs)
  for (i, t) in inputs.enumerated() { fill(run.inputs[i], count: elementCount(t.staticShape!)!, seed: UInt64(i + 1)) }
  try run.execute()
  return (executable, run, DispatchClock.now() - start)
}

var measurements: [Measurement] = []
let arguments = CommandLine.arguments

// `ttfc-bench --file F.ttir --func NAME` times one function of a file instead (every argument
// static-shaped): a tool for profiling a kernel in isolation.
if let file = arguments.firstIndex(of: "--file").map({ arguments[$0 + 1] }) {
  let name = arguments.firstIndex(of: "--func").map { arguments[$0 + 1] } ?? "main"
  let text = try String(contentsOfFile: file, encoding: .utf8)
  let module = try Parser.parseAndVerify(text)
  let types = module.function(named: name)!.argumentTypes
  let (executable, run, compileSeconds) = try compile(text, name, types)
  let t = try median({ try run.execute() }, repetitions: 30)
  print(String(format: "@%@: %.3f ms (compile %.3f s, %d kernels)", name as NSString, t * 1e3, compileSeconds, executable.statistics.kernels))
  exit(0)
}
let jaxFile = arguments.firstIndex(of: "--jax").map { arguments[$0 + 1] }
let repetitions = arguments.firstIndex(of: "--repetitions").flatMap { Int(arguments[$0 + 1]) } ?? 20

// W0: memory copy of 64 MiB (read + write bytes per second).
do {
  let bytes = 64 << 20
  let a = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64), b = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
  memset(a, 1, bytes); memset(b, 0, bytes)
  let t = median({ memcpy(b, a, bytes) }, repetitions: repetitions)
  measurements.append(Measurement(id: "W0", name: "memcpy 64 MiB", seconds: t, metric: "GB/s", value: Double(2 * bytes) / t / 1e9))
}

// W1: the GELU-style elementwise chain over 16M floats.
do {
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
do {
  let text = "module @w2 {\n  func @f(%x: f32[4096, 1024]) -> f32[4096, 1024] {\n    %y = softmax %x : f32[4096, 1024]\n    return %y\n  }\n}\n"
  let (_, run, _) = try compile(text, "f", [TensorType(.f32, shape: [4096, 1024])])
  let t = try median({ try run.execute() }, repetitions: repetitions)
  measurements.append(Measurement(id: "W2", name: "softmax f32[4096, 1024]", seconds: t, metric: "ms", value: t * 1e3))
}

// W3: layer normalization (no affine, eps 1e-5) over the last axis of f32[4096, 1024].
do {
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
do {
  let n = 1024
  let text = "module @w7 {\n  func @f(%a: f32[\(n), \(n)], %b: f32[\(n), \(n)]) -> f32[\(n), \(n)] {\n    %c = matmul %a, %b : f32[\(n), \(n)]\n    return %c\n  }\n}\n"
  let (_, run, _) = try compile(text, "f", [TensorType(.f32, shape: [n, n]), TensorType(.f32, shape: [n, n])])
  let flops = 2.0 * Double(n * n * n)
  let t = try median({ try run.execute() }, repetitions: repetitions)
  measurements.append(Measurement(id: "W7", name: "f32 GEMM 1024^3", seconds: t, metric: "GFLOP/s", value: flops / t / 1e9))
  let a = run.inputs[0].assumingMemoryBound(to: Float.self), b = run.inputs[1].assumingMemoryBound(to: Float.self)
  let c = UnsafeMutablePointer<Float>.allocate(capacity: n * n)
  let direct = median({
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(n), Int32(n), Int32(n), 1, a, Int32(n), b, Int32(n), 0, c, Int32(n))
  }, repetitions: repetitions)
  openBLASGflops = flops / direct / 1e9
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
do {
  let batch = 256
  let x = Tensor(.f32, shape: [batch, 512], floats: (0..<(batch * 512)).map { _ in Double.random(in: -1...1) })
  let y = Tensor(.f32, shape: [batch], floats: (0..<batch).map { _ in Double(Int.random(in: 0...1)) })
  let module = try Parser.parseAndVerify(w4Model)
  let compileStart = DispatchClock.now()
  let trainer = try Trainer(module: module, loss: "loss", optimizer: OptimizerConfig(.adam))
  try trainer.step([x, y], lr: 1e-3)
  let cold = DispatchClock.now() - compileStart
  let t = try median({ try trainer.step([x, y], lr: 1e-3) }, repetitions: repetitions)
  let flops = 6.0 * Double(batch) * Double(512 * 1024 + 1024 * 1024 + 1024)
  if getenv("TTFC_PROFILE") != nil {
    print(trainer.profileReport)
    let c = trainer.compileStatistics
    print(String(format: "W5 phases: build step %.3f s, passes %.3f s, parameters %.3f s, kernels and thunks %.3f s (%d kernels)",
                 trainer.buildSeconds, c.optimizeSeconds, c.parameterSeconds,
                 c.compileSeconds - c.optimizeSeconds - c.parameterSeconds, c.kernels))
  }
  measurements.append(Measurement(id: "W4", name: "MLP train step, batch 256", seconds: t, metric: "ms", value: t * 1e3))
  measurements.append(Measurement(id: "W4f", name: "MLP train step throughput", seconds: t, metric: "GFLOP/s", value: flops / t / 1e9))
  measurements.append(Measurement(id: "W5", name: "cold compile of the W4 step", seconds: cold, metric: "s", value: cold))
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
    let speedup = (m.metric == "ms" || m.metric == "s") ? theirs / m.value : m.value / theirs
    line += String(format: "  %.2fx", speedup)
  }
  print(line)
}
if let w7 = measurements.first(where: { $0.id == "W7" }) {
  print(String(format: "W7  OpenBLAS sgemm called directly: %.1f GFLOP/s; ttfc reaches %.3f of it", openBLASGflops, w7.value / openBLASGflops))
}
if let w0 = measurements.first(where: { $0.id == "W0" }), let w1 = measurements.first(where: { $0.id == "W1" }) {
  print(String(format: "W1  bandwidth %.1f%% of W0 (memcpy)", 100 * w1.value / w0.value))
}
