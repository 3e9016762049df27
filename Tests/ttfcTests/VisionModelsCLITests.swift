// The vision examples through the command: they check, are in canonical form (fmt stable), and
// the serving pipeline folds every inference-mode batch norm of @logits into its convolution.
import Foundation
import Testing

struct VisionModelsCLITests {
  @Test(arguments: ["resnet_small.ttir", "inception_small.ttir"])
  func visionExamplesCheckFormatAndFold(_ file: String) throws {
    let path = "examples/\(file)"
    let check = try CLI.run(["check", path])
    #expect(check.status == 0, "\(check.stderr)")
    #expect(try CLI.run(["fmt", "--check", path]).status == 0, "\(path) is not in canonical form")
    let folded = try CLI.run(["opt", path, "--inference", "--stats"])
    #expect(folded.status == 0, "\(folded.stderr)")
    #expect(folded.stderr.contains("folded="), "\(folded.stderr)")
    // @logits keeps no batch norm; the training loss keeps its batch_norm_training.
    let logits = folded.stdout.components(separatedBy: "func @logits(")[1].components(separatedBy: "\n  }\n")[0]
    #expect(!logits.contains("batch_norm_inference"), "\(logits)")
    #expect(folded.stdout.contains("batch_norm_training"))
    #expect(try CLI.run(["opt", path, "--inference", "-p", "dce"]).status != 0)
  }
}
