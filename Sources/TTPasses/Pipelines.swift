// Pipelines — every pass by its command-line name, and the standard pipelines, in one place.
//
// Order, and why:
//  1. canonicalize (fixpoint of simplify, constant-fold, cse, dce): simplification exposes
//     constants and duplicates, folding exposes more simplifications, CSE merges what the rules
//     made equal, DCE drops what they orphaned. A fixpoint, capped at 25 rounds like XLA's
//     HloPassFix, because each pass can enable the others.
//  2. fusion, only after the graph is canonical: fusion decisions depend on use counts and on
//     which ops remain, and a fused region hides its ops from the rewrite rules.
//  3. dce once more: fusion leaves the originals of duplicated cheap producers behind when all
//     their uses moved into regions.
//  4. schedule last: it orders whole regions (state updates right after their inputs), so it
//     needs the final regions, and it only reorders, so nothing after it has to rerun.
// The codegen pipeline runs inline and lower-composites before all of these, so the optimizer and
// the kernels see one flat function of primitives; attention-fusion runs between the two, while
// the attention chain is still whole (lowering and canonicalization would rewrite its softmax),
// and before autodiff in training (Autodiff.gradient), so the backward pass is fused too.

import TTIR

public enum Pipelines {
  public static let passes: [Pass] = [
    AlgebraicSimplification.pass, ConstantFolding.pass, CommonSubexpressionElimination.pass,
    DeadCodeElimination.pass, Fusion.pass, Inlining.pass, CompositeLowering.pass, UpdateScheduling.pass,
    AutomaticMixedPrecision.pass, BatchNormFolding.pass, AttentionFusion.pass,
  ]

  public static func pass(named name: String) -> Pass? { passes.first { $0.name == name } }

  public static let canonicalize = PipelineStep.fixpoint(
    name: "canonicalize",
    steps: [.pass(AlgebraicSimplification.pass), .pass(ConstantFolding.pass),
            .pass(CommonSubexpressionElimination.pass), .pass(DeadCodeElimination.pass)],
    cap: 25)

  /// -O0: nothing. -O1: canonicalization. -O2: canonicalization, fusion, cleanup, scheduling.
  public static func standard(level: Int) -> Pipeline {
    switch level {
    case ...0: return Pipeline([])
    case 1: return Pipeline([canonicalize])
    default: return Pipeline([canonicalize, .pass(Fusion.pass), .pass(DeadCodeElimination.pass), .pass(UpdateScheduling.pass)])
    }
  }

  /// What the compiler runs (`ttfc run`, `ttfc train`, `ttfc compile --emit=thunks|llvm|asm`): calls
  /// inlined and composites expanded first (so kernels and buffer plans see one flat function of
  /// primitives), then -O2.
  public static let codegen = Pipeline([.pass(Inlining.pass), .pass(AttentionFusion.pass), .pass(CompositeLowering.pass), canonicalize,
                                        .pass(Fusion.pass), .pass(DeadCodeElimination.pass), .pass(UpdateScheduling.pass)])

  /// Serving (`ttfc opt --inference`, `-p inference`): calls inlined so a batch norm and the
  /// convolution before it meet in one function; `fold-batch-norm` rewrites conv + inference batch
  /// norm into conv + bias; canonicalization then evaluates the folded filter and bias when they
  /// are constants (a frozen model) and drops the original conv and norm; fusion puts the bias add
  /// and the activation after each convolution into one loop region. Not for training: the fold
  /// needs the statistics fixed (parameters, states or constants) and is not bitwise exact.
  public static let inference: [PipelineStep] = [.pass(Inlining.pass), .pass(BatchNormFolding.pass), canonicalize,
                                                 .pass(Fusion.pass), .pass(DeadCodeElimination.pass)]

  /// An explicit pipeline from `-p name,name,...`; `canonicalize` names the fixpoint group and
  /// `inference` the serving pipeline's steps.
  public static func parse(_ list: String) -> Result<Pipeline, PipelineError> {
    var steps: [PipelineStep] = []
    for raw in list.split(separator: ",") {
      let name = raw.trimmingCharacters(in: .whitespaces)
      if name == "canonicalize" { steps.append(canonicalize); continue }
      if name == "inference" { steps.append(contentsOf: inference); continue }
      guard let pass = pass(named: name) else {
        return .failure(PipelineError(message: "unknown pass '\(name)' (passes: \((passes.map(\.name) + ["canonicalize", "inference"]).joined(separator: ", ")))"))
      }
      steps.append(.pass(pass))
    }
    return .success(Pipeline(steps))
  }

  public struct PipelineError: Error { public var message: String }
}
