// The vision ops against JAX (tools/gen_vision_jax.py): random conv2d (strides, dilations, groups,
// SAME/VALID/EXPLICIT), max/avg pooling, batch norm in both modes and strided slices, each with
// JAX's float64 outputs and vector-Jacobian products. Each case runs forward on the interpreter
// and compiled, and its gradient (ttfc's autodiff, i.e. the gradient rules and gradient ops) on
// the interpreter and compiled. The committed cases are in JAXVision/; tools/test writes a fresh
// random set with JAX and points TTFC_JAX_VISION_CASES at it.
import Testing
import TTIR

let jaxVisionCases = JAXCaseSet(environment: "TTFC_JAX_VISION_CASES", committed: "JAXVision")

struct VisionJAXTests {
  @Test func casesExist() {
    #expect(jaxVisionCases.names.count >= 30, "run tools/gen_vision_jax.py (\(jaxVisionCases.directory.path))")
    for family in ["conv2d", "max_pool", "avg_pool", "batch_norm_training", "batch_norm_inference", "strided_slice"] {
      #expect(jaxVisionCases.names.contains { $0.hasPrefix(family + "_") }, "no \(family) case")
    }
  }

  @Test(arguments: jaxVisionCases.names)
  func matchesJAX(_ name: String) throws {
    let run = try jaxVisionCases.check(name)
    // Every vision op compiles: convolutions (ConvKernels) and pools (PoolKernels) as routines,
    // batch norm expanded into swept statistics and fused loops; none runs on the interpreter.
    if let op = run.forward.body.map({ run.forward[$0].code }).first {
      let stats = run.executable.statistics
      #expect(stats.interpretedOpCount == 0, "\(name): \(stats.interpretedOps)")
      if op == .conv2d { #expect(stats.convolutions == 1, "\(name)") }
      if op == .maxPool || op == .avgPool { #expect(stats.poolings == 1, "\(name)") }
    }
  }
}
