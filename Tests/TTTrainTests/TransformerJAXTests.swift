// The transformer ops against JAX (tools/gen_transformer_jax.py): random gathers with repeated
// indices, scatter-adds, layer norms, erf- and tanh-GELUs and integer-label softmax cross
// entropies, each with JAX's float64 outputs and vector-Jacobian products. Each case runs forward
// on the interpreter and compiled, and its gradient (ttfc's autodiff) on the interpreter and
// compiled; compiled code must not fall back to the interpreter for any of them (RowKernels,
// fused GELU kernels). TTFC_JAX_TRANSFORMER_CASES=DIR runs a fresh set.
import Testing

let jaxTransformerCases = JAXCaseSet(environment: "TTFC_JAX_TRANSFORMER_CASES", committed: "JAXTransformer")

struct TransformerJAXTests {
  @Test func casesExist() {
    #expect(jaxTransformerCases.names.count >= 30, "run tools/gen_transformer_jax.py (\(jaxTransformerCases.directory.path))")
    for family in ["gather", "scatter_add", "layer_norm", "gelu_erf", "gelu_tanh", "sparse_cross_entropy"] {
      #expect(jaxTransformerCases.names.contains { $0.hasPrefix(family + "_") }, "no \(family) case")
    }
  }

  @Test(arguments: jaxTransformerCases.names)
  func matchesJAX(_ name: String) throws {
    let run = try jaxTransformerCases.check(name)
    #expect(run.executable.statistics.interpretedOpCount == 0, "\(name): \(run.executable.statistics.interpretedOps)")
    #expect(run.gradient.statistics.interpretedOpCount == 0, "\(name): \(run.gradient.statistics.interpretedOps)")
  }
}
