// Mixed-precision training: dynamic loss scaling skips exactly an overflowing update; the
// lr-change policy runs full precision on exactly the hold steps after each learning-rate change;
// switching by policy equals switching by hand; a user's policy plugs in; a resume restores the
// policy and the loss scale; and the amp step trains a small MLP close to the f32 one.
import Foundation
import Testing
import TTIR
import TTTrain

struct MixedPrecisionTests {
  static let model = """
    module @regression {
      param @w1 : f32[8, 16] = glorot_uniform(seed: 1)
      param @b1 : f32[16] = zeros
      param @w2 : f32[16, 1] = glorot_uniform(seed: 2)

      func @loss(%x: f32[B, 8], %y: f32[B, 1]) -> f32[] {
        %h = matmul %x, @w1 : f32[B, 16]
        %hb = add %h, @b1 : f32[B, 16]
        %a = relu %hb : f32[B, 16]
        %p = matmul %a, @w2 : f32[B, 1]
        %d = sub %p, %y : f32[B, 1]
        %s = mul %d, %d : f32[B, 1]
        %m = reduce_mean %s : f32[]
        return %m
      }
    }
    """

  /// x uniform in [-1, 1), y = x0 - 2 x1 + x2 x3 (times `scale`), from a fixed congruential sequence.
  static func columns(count: Int, seed: UInt64, scale: Double = 1) -> (x: Tensor, y: Tensor) {
    var state = seed &* 6364136223846793005 &+ 1442695040888963407
    func uniform() -> Double {
      state = state &* 6364136223846793005 &+ 1442695040888963407
      return Double(state >> 11) / Double(1 << 53) * 2 - 1
    }
    var x: [Double] = [], y: [Double] = []
    for _ in 0..<count {
      let row = (0..<8).map { _ in uniform() }
      x += row
      y.append(scale * (row[0] - 2 * row[1] + row[2] * row[3]))
    }
    return (Tensor(.f32, shape: [count, 8], floats: x), Tensor(.f32, shape: [count, 1], floats: y))
  }

  static func module() throws -> Module { try Parser.parseAndVerify(model) }

  static func bits(_ trainer: Trainer) -> [String: [UInt32]] {
    Dictionary(uniqueKeysWithValues: zip(trainer.stateNames, trainer.state).map { ($0, $1.doubles.map { Float($0).bitPattern }) })
  }

  @Test func dynamicLossScalingSkipsExactlyTheOverflowingUpdate() throws {
    let options = MixedPrecisionOptions(halfType: .f16, lossScaling: try LossScaling.parse("dynamic:initial=32768,interval=2"),
                                        policy: FixedPrecisionPolicy(.mixed, spelling: "fixed:f16"))
    let trainer = try Trainer(module: Self.module(), loss: "loss", optimizer: OptimizerConfig(.adam), mixedPrecision: options)
    let normal = Self.columns(count: 16, seed: 3)
    // Targets of 50 times the usual: the squared errors (up to about 150^2) fit f16, but the
    // scaled gradient 2 (p - y) x 32768 / 16 is far above f16's largest 65504.
    let huge = Self.columns(count: 16, seed: 4, scale: 50)
    try trainer.step([normal.x, normal.y], lr: 1e-2)
    #expect(trainer.lastStep?.updateSkipped == false)
    #expect(trainer.lossScaler.scale == 32768 && trainer.lossScaler.finiteSteps == 1)
    let before = Self.bits(trainer)
    let loss = try trainer.step([huge.x, huge.y], lr: 1e-2)
    #expect(trainer.lastStep?.updateSkipped == true)
    #expect(trainer.lastStep?.lossScale == 32768)
    #expect(trainer.lossScaler.scale == 16384 && trainer.lossScaler.finiteSteps == 0)
    #expect(trainer.stepCount == 2)
    #expect(Self.bits(trainer) == before, "a skipped update leaves parameters and slots bit for bit")
    #expect(loss.isFinite, "the loss itself is finite in f32 (\(loss)); the gradient overflowed")
    // The next two finite steps update, and the second doubles the scale (interval 2).
    try trainer.step([normal.x, normal.y], lr: 1e-2)
    #expect(trainer.lastStep?.updateSkipped == false && Self.bits(trainer) != before)
    #expect(trainer.lossScaler.scale == 16384)
    try trainer.step([normal.x, normal.y], lr: 1e-2)
    #expect(trainer.lossScaler.scale == 32768 && trainer.lossScaler.finiteSteps == 0)
  }

  @Test func withoutLossScalingAnOverflowIsADivergenceThatKeepsTheState() throws {
    // bf16 has f32's range, so the same targets do not overflow it; f16 without scaling does.
    let options = MixedPrecisionOptions(halfType: .f16, lossScaling: LossScaling.none, policy: FixedPrecisionPolicy(.mixed))
    let trainer = try Trainer(module: Self.module(), loss: "loss", optimizer: OptimizerConfig(.sgd), mixedPrecision: options)
    let huge = Self.columns(count: 16, seed: 4, scale: 1e6)
    let normal = Self.columns(count: 16, seed: 3)
    try trainer.step([normal.x, normal.y], lr: 1e-3)
    let before = Self.bits(trainer)
    #expect(throws: TrainingError.self) { try trainer.step([huge.x, huge.y], lr: 1e-3) }
    #expect(Self.bits(trainer) == before)
    #expect(trainer.stateIsFinite())
  }

  /// The steps `lr-change:hold` runs in full precision under `schedule` over `steps` steps,
  /// derived from the rates alone: each step whose rate differs from the previous step's, and
  /// the hold - 1 steps after it.
  static func expectedFullSteps(_ schedule: LearningRateSchedule, base: Double, steps: Int, hold: Int) -> Set<Int> {
    var full = Set<Int>()
    for s in 2...steps where schedule.rate(base: base, step: s, total: steps) != schedule.rate(base: base, step: s - 1, total: steps) {
      for k in s..<min(s + hold, steps + 1) { full.insert(k) }
    }
    return full
  }

  @Test func lrChangeRunsFullPrecisionExactlyOnTheHoldStepsAfterEachDrop() throws {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("ttfc-amp-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let metrics = directory + "/metrics.jsonl"
    #expect(FileManager.default.createFile(atPath: metrics, contents: nil))
    var options = TrainingOptions()
    options.batch = 16; options.steps = 30; options.learningRate = 1e-2
    options.schedule = LearningRateSchedule.parse("step:10:0.5")!
    options.metricsPath = metrics
    options.mixedPrecision = MixedPrecisionOptions(halfType: .bf16, policy: LearningRateChangePolicy(hold: 3))
    let (x, y) = Self.columns(count: 128, seed: 5)
    let loop = try TrainingLoop(module: Self.module(), loss: "loss", optimizer: OptimizerConfig(.adam),
                                data: try Dataset(columns: ["x": x, "y": y]), options: options)
    try loop.run()
    let expected = Self.expectedFullSteps(options.schedule, base: 1e-2, steps: 30, hold: 3)
    #expect(expected == [11, 12, 13, 21, 22, 23])
    var seen: [Int: String] = [:]
    for line in try String(contentsOfFile: metrics, encoding: .utf8).split(separator: "\n") {
      let entry = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
      guard let step = entry["step"] as? Int, let precision = entry["precision"] as? String else { continue }
      seen[step] = precision
    }
    #expect(seen.count == 30)
    for step in 1...30 { #expect(seen[step] == (expected.contains(step) ? "fp32" : "bf16"), "step \(step)") }
    #expect(loop.precisionCounts.full == 6 && loop.precisionCounts.mixed == 24)
  }

  @Test func switchingByPolicyEqualsSwitchingByHand() throws {
    let schedule = LearningRateSchedule.parse("step:7:0.3")!
    let steps = 20, hold = 4
    let expected = Self.expectedFullSteps(schedule, base: 1e-2, steps: steps, hold: hold)
    let options = { MixedPrecisionOptions(halfType: .bf16, policy: LearningRateChangePolicy(hold: hold)) }
    let byPolicy = try Trainer(module: Self.module(), loss: "loss", optimizer: OptimizerConfig(.adam), mixedPrecision: options())
    let byHand = try Trainer(module: Self.module(), loss: "loss", optimizer: OptimizerConfig(.adam), mixedPrecision: options())
    for s in 1...steps {
      let (x, y) = Self.columns(count: 16, seed: UInt64(100 + s))
      let lr = schedule.rate(base: 1e-2, step: s, total: steps)
      try byPolicy.step([x, y], lr: lr)
      try byHand.step([x, y], lr: lr, precision: expected.contains(s) ? .full : .mixed)
      #expect(byPolicy.lastStep?.precision == (expected.contains(s) ? .full : .mixed), "step \(s)")
    }
    #expect(Self.bits(byPolicy) == Self.bits(byHand))
    // And the two precisions really differ: an all-f32 run ends elsewhere.
    let allFull = try Trainer(module: Self.module(), loss: "loss", optimizer: OptimizerConfig(.adam))
    for s in 1...steps {
      let (x, y) = Self.columns(count: 16, seed: UInt64(100 + s))
      try allFull.step([x, y], lr: schedule.rate(base: 1e-2, step: s, total: steps))
    }
    #expect(Self.bits(allFull) != Self.bits(byHand))
  }

  /// A user's policy: mixed precision on odd steps, full on even ones; it counts what it saw.
  final class AlternatingPolicy: PrecisionPolicy {
    var observed: [StepPrecision] = []
    var description: String { "alternating" }
    func precision(for decision: PrecisionDecision) -> StepPrecision { decision.step % 2 == 1 ? .mixed : .full }
    func observe(_ outcome: StepOutcome) { observed.append(outcome.precision) }
  }

  @Test func aUserPolicyPlugsIn() throws {
    let policy = AlternatingPolicy()
    let trainer = try Trainer(module: Self.module(), loss: "loss", optimizer: OptimizerConfig(.adam),
                              mixedPrecision: MixedPrecisionOptions(halfType: .bf16, policy: policy))
    var losses: [Double] = []
    for s in 1...40 {
      let (x, y) = Self.columns(count: 32, seed: UInt64(s % 4))
      losses.append(try trainer.step([x, y], lr: 1e-2))
    }
    let alternating: [StepPrecision] = (1...40).map { $0 % 2 == 1 ? StepPrecision.mixed : StepPrecision.full }
    #expect(policy.observed == alternating)
    let first: Double = losses.prefix(4).reduce(0, +), last: Double = losses.suffix(4).reduce(0, +)
    #expect(last < 0.5 * first, "it trains: \(first / 4) -> \(last / 4)")
  }

  @Test func resumeRestoresThePolicyAndTheLossScale() throws {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("ttfc-amp-resume-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let (x, y) = Self.columns(count: 96, seed: 9)
    let data = try Dataset(columns: ["x": x, "y": y])
    func options(_ checkpoint: String?) -> TrainingOptions {
      var o = TrainingOptions()
      o.batch = 16; o.steps = 30; o.learningRate = 1e-2; o.seed = 3
      o.schedule = LearningRateSchedule.parse("step:12:0.5")!
      o.checkpointDirectory = checkpoint
      // f16 with dynamic scaling growing every 4 finite steps, so the scale moves during the run.
      o.mixedPrecision = MixedPrecisionOptions(halfType: .f16, lossScaling: try! LossScaling.parse("dynamic:initial=1024,interval=4"),
                                               policy: LearningRateChangePolicy(hold: 5))
      return o
    }
    let whole = try TrainingLoop(module: Self.module(), loss: "loss", optimizer: OptimizerConfig(.adam), data: data, options: options(nil))
    try whole.run()
    // The hold after the change at step 13 covers steps 13-17; the first run stops after 15.
    let first = try TrainingLoop(module: Self.module(), loss: "loss", optimizer: OptimizerConfig(.adam), data: data, options: options(directory))
    first.stopRequested = { first.trainer.stepCount >= 15 }
    #expect(try first.run() == false)
    var resumedOptions = options(directory)
    resumedOptions.resumesFromCheckpoint = true
    let second = try TrainingLoop(module: Self.module(), loss: "loss", optimizer: OptimizerConfig(.adam), data: data, options: resumedOptions)
    #expect(try second.resume())
    #expect(second.trainer.stepCount == 15)
    try second.run()
    #expect(second.precisionCounts.full == 2 + 5, "steps 16 and 17 are still in the hold, then 25-29")
    #expect(Self.bits(second.trainer) == Self.bits(whole.trainer))
    #expect(second.trainer.lossScaler == whole.trainer.lossScaler)
    #expect(whole.trainer.lossScaler.scale > 1024, "the scale grew during the run")
  }

  @Test func theAmpStepTrainsTheMLPCloseToF32() throws {
    // 300 Adam steps on 512 examples: the final loss (mean of the last 16 steps) in bf16 and
    // f16 is within 10% of f32's (the stated tolerance), and far below the starting loss.
    var finals: [String: Double] = [:]
    for (name, options) in [("fp32", nil), ("bf16", MixedPrecisionOptions(halfType: .bf16, policy: FixedPrecisionPolicy(.mixed))),
                            ("f16", MixedPrecisionOptions(halfType: .f16, policy: FixedPrecisionPolicy(.mixed)))] as [(String, MixedPrecisionOptions?)] {
      var o = TrainingOptions()
      o.batch = 32; o.steps = 300; o.learningRate = 3e-3; o.seed = 1
      o.mixedPrecision = options
      let (x, y) = Self.columns(count: 512, seed: 21)
      let loop = try TrainingLoop(module: Self.module(), loss: "loss", optimizer: OptimizerConfig(.adam),
                                  data: try Dataset(columns: ["x": x, "y": y]), options: o)
      try loop.run()
      let last: Double = loop.losses.suffix(16).reduce(0, +) / 16
      let start: Double = loop.losses.prefix(4).reduce(0, +) / 4
      #expect(last < 0.25 * start, "\(name) trains: \(start) -> \(last)")
      finals[name] = last
    }
    let f32 = finals["fp32"]!
    for half in ["bf16", "f16"] { #expect(abs(finals[half]! - f32) <= 0.1 * f32, "\(half): \(finals[half]!) against f32 \(f32)") }
  }

  @Test func policiesAndLossScalesAreParsedOrNamed() throws {
    #expect(try MixedPrecisionOptions.policy(named: "lr-change:100").description == "lr-change:100")
    #expect(try MixedPrecisionOptions.policy(named: "loss:5").description == "loss:5:0.5:0.9")
    #expect((try MixedPrecisionOptions.policy(named: "fixed:f16") as? FixedPrecisionPolicy)?.precision == .mixed)
    for bad in ["lr-change", "lr-change:0", "lr-change:-3", "lr-change:x", "fixed:f8", "loss:5:-1", "loss:5:0.5:1", "sometimes"] {
      #expect(throws: PrecisionOptionError.self, "\(bad)") { try MixedPrecisionOptions.policy(named: bad) }
    }
    #expect(try LossScaling.parse("none") == LossScaling.none)
    #expect(try LossScaling.parse("128") == .fixed(128))
    #expect(try LossScaling.parse("dynamic") == LossScaling.defaultDynamic)
    for bad in ["0", "-4", "inf", "nan", "1e39", "1e-40", "0x10", "dynamic:initial=0", "dynamic:backoff=1", "dynamic:growth=0.5",
                "dynamic:interval=0", "dynamic:interval=2.5", "dynamic:size=3", "dynamic:initial", "dyn", "dynamic:min=8,initial=4",
                "dynamic:initial=2,initial=4", "dynamic:initial=1e300,max=1e300", "dynamic:min=1e-300", "dynamic:initial=0x20", "dynamic:"] {
      #expect(throws: PrecisionOptionError.self, "\(bad)") { try LossScaling.parse(bad) }
    }
  }

  @Test func forgedOrForeignPrecisionStateInACheckpointIsANamedError() throws {
    let options = { MixedPrecisionOptions(halfType: .f16, lossScaling: try! LossScaling.parse("dynamic:initial=1024,min=4,max=65536"),
                                          policy: LearningRateChangePolicy(hold: 3)) }
    let trainer = try Trainer(module: Self.module(), loss: "loss", optimizer: OptimizerConfig(.adam), mixedPrecision: options())
    let good = trainer.precisionMetadata
    #expect(good["policy.hold_until"] == "0.0" && good["loss_scale.scale"] == "1024.0")
    for (key, value) in [("policy.hold_until", "1e19"), ("policy.hold_until", "inf"), ("policy.hold_until", "-1"), ("policy.hold_until", "2.5"),
                         ("policy.last_lr", "nan"), ("policy.last_lr", "-5"), ("loss_scale.scale", "1e300"), ("loss_scale.scale", "2"),
                         ("loss_scale.finite_steps", "1e13"), ("loss_scale.scale", "0x10")] {
      var forged = good
      forged[key] = value
      let fresh = try Trainer(module: Self.module(), loss: "loss", optimizer: OptimizerConfig(.adam), mixedPrecision: options())
      #expect(throws: PrecisionOptionError.self, "\(key)=\(value)") { try fresh.restorePrecision(from: forged) }
    }
    var withoutSetting = good
    withoutSetting["precision"] = nil
    #expect(throws: PrecisionOptionError.self) { try trainer.restorePrecision(from: withoutSetting) }
    // A fixed or absent scale cannot be overridden by a checkpoint.
    let unscaled = try Trainer(module: Self.module(), loss: "loss", optimizer: OptimizerConfig(.adam),
                               mixedPrecision: MixedPrecisionOptions(halfType: .bf16, policy: LearningRateChangePolicy(hold: 3)))
    var seven = unscaled.precisionMetadata
    seven["loss_scale.scale"] = "7.0"
    #expect(throws: PrecisionOptionError.self) { try unscaled.restorePrecision(from: seven) }
    try unscaled.restorePrecision(from: unscaled.precisionMetadata)
  }

  @Test func aSkippedMixedStepKeepsTheEvaluationAndCheckpointSchedule() throws {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("ttfc-amp-skip-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let metrics = directory + "/metrics.jsonl"
    #expect(FileManager.default.createFile(atPath: metrics, contents: nil))
    // 4 ordinary batches, then one whose gradient overflows f16 at scale 32768 (the last step).
    let normal = Self.columns(count: 64, seed: 3), huge = Self.columns(count: 16, seed: 4, scale: 50)
    let x = Tensor(.f32, shape: [80, 8], floats: normal.x.doubles + huge.x.doubles)
    let y = Tensor(.f32, shape: [80, 1], floats: normal.y.doubles + huge.y.doubles)
    var o = TrainingOptions()
    o.batch = 16; o.steps = 5; o.shuffle = false; o.learningRate = 1e-3
    o.evalEvery = 5; o.checkpointDirectory = directory; o.checkpointEvery = 5; o.metricsPath = metrics
    o.mixedPrecision = MixedPrecisionOptions(halfType: .f16, policy: FixedPrecisionPolicy(.mixed))
    let data = try Dataset(columns: ["x": x, "y": y])
    let loop = try TrainingLoop(module: Self.module(), loss: "loss", optimizer: OptimizerConfig(.adam), data: data, evalData: data, options: o)
    try loop.run()
    #expect(loop.skippedSteps == 1 && loop.trainer.stepCount == 5)
    let lines = try String(contentsOfFile: metrics, encoding: .utf8).split(separator: "\n")
    #expect(lines.contains { $0.contains("\"skipped\":true") && $0.contains("\"step\":5") })
    #expect(lines.contains { $0.contains("\"eval\":true") && $0.contains("\"step\":5") }, "the evaluation at the end still runs")
    let checkpoint = try Checkpoint.read(from: directory + "/checkpoint.safetensors")
    #expect(checkpoint.metadata["step"] == "5")
  }

  @Test func aForwardOverflowIsNotALossScaleProblem() throws {
    // Targets of 1e6 overflow f16 in the forward pass (the prediction minus the target): the loss
    // is not finite, which backing off the scale cannot change, so the step is a divergence.
    let trainer = try Trainer(module: Self.module(), loss: "loss", optimizer: OptimizerConfig(.adam),
                              mixedPrecision: MixedPrecisionOptions(halfType: .f16, policy: FixedPrecisionPolicy(.mixed)))
    let huge = Self.columns(count: 16, seed: 4, scale: 1e6)
    #expect { try trainer.step([huge.x, huge.y], lr: 1e-3) } throws: { error in
      guard case TrainingError.nonFinite(_, let reason) = error else { return false }
      return reason.contains("loss scaling cannot help")
    }
    #expect(trainer.lossScaler.scale == 32768, "the scale did not back off")
  }
}
