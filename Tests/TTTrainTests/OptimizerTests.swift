// Each optimizer's compiled update against a hand-written reference, over several steps with a
// changing learning rate, on the quadratic loss 0.5 * sum((p - target)^2) whose gradient is
// p - target. f64 model, so the comparison is to 1e-12.
import Foundation
import Testing
import TTIR
import TTTrain

struct OptimizerTests {
  static let target: [Double] = [1.5, -2.0, 0.25, 4.0]
  static let start: [Double] = [0.1, 0.2, -0.3, 0.4]
  static let module = """
    module @quadratic {
      param @p : f64[4] = constant(0.0)
      func @loss(%target: f64[4]) -> f64[] {
        %d = sub @p, %target : f64[4]
        %s = mul %d, %d : f64[4]
        %t = reduce_sum %s : f64[]
        %h = constant 0.5 : f64[]
        %l = mul %t, %h : f64[]
        return %l
      }
    }
    """

  /// The reference update, written independently of the IR formulas.
  static func reference(_ config: OptimizerConfig, steps: Int, lr: (Int) -> Double) -> [Double] {
    var p = start
    var s0 = [Double](repeating: config.slots.first?.initial ?? 0, count: 4)
    var s1 = [Double](repeating: 0, count: 4)
    for t in 1...steps {
      var g = zip(p, target).map { $0 - $1 }
      if let c = config.clipNorm {
        let norm = sqrt(g.reduce(0) { $0 + $1 * $1 })
        g = g.map { $0 * c / max(c, norm) }
      }
      let r = lr(t)
      for i in 0..<4 {
        switch config.kind {
        case .sgd: p[i] -= r * g[i]
        case .momentum: s0[i] = config.momentum * s0[i] + g[i]; p[i] -= r * s0[i]
        case .nesterov: s0[i] = config.momentum * s0[i] + g[i]; p[i] -= r * (g[i] + config.momentum * s0[i])
        case .adagrad: s0[i] += g[i] * g[i]; p[i] -= r * g[i] / (s0[i].squareRoot() + config.epsilon)
        case .rmsprop: s0[i] = config.rho * s0[i] + (1 - config.rho) * g[i] * g[i]; p[i] -= r * g[i] / (s0[i].squareRoot() + config.epsilon)
        case .adam, .adamw:
          s0[i] = config.beta1 * s0[i] + (1 - config.beta1) * g[i]
          s1[i] = config.beta2 * s1[i] + (1 - config.beta2) * g[i] * g[i]
          let mHat = s0[i] / (1 - pow(config.beta1, Double(t))), vHat = s1[i] / (1 - pow(config.beta2, Double(t)))
          let old = p[i]
          p[i] -= r * mHat / (vHat.squareRoot() + config.epsilon)
          if config.kind == .adamw { p[i] -= r * config.weightDecay * old }
        }
      }
    }
    return p
  }

  static let configs: [OptimizerConfig] = {
    var list = OptimizerConfig.Kind.allCases.map { OptimizerConfig($0) }
    var clipped = OptimizerConfig(.sgd)
    clipped.clipNorm = 0.5
    list.append(clipped)
    var adamw = OptimizerConfig(.adamw)
    adamw.weightDecay = 0.1
    list.append(adamw)
    return list
  }()

  @Test(arguments: configs.indices)
  func matchesTheReference(_ index: Int) throws {
    let config = Self.configs[index]
    var params: [String: Tensor] = [:]
    params["p"] = Tensor(.f64, shape: [4], floats: Self.start)
    let trainer = try Trainer(module: try Parser.parseAndVerify(Self.module), loss: "loss", optimizer: config, params: params)
    let lr = { (t: Int) in 0.1 / Double(t) + 0.01 }
    let target = Tensor(.f64, shape: [4], floats: Self.target)
    var losses: [Double] = []
    for t in 1...7 { losses.append(try trainer.step([target], lr: lr(t))) }
    let expected = Self.reference(config, steps: 7, lr: lr)
    let got = trainer.params["p"]!.doubles
    for i in 0..<4 { #expect(abs(got[i] - expected[i]) < 1e-12, "\(config.kind) clip=\(String(describing: config.clipNorm)) p[\(i)]: \(got[i]) vs \(expected[i])") }
    #expect(losses.last! < losses.first!)
  }
}

/// Parameters whose type differs from the loss's (an f16 or f64 parameter of an f32 loss) update
/// in their own type: the learning rate, step count and clipping scale are cast to it.
struct MixedTypeParameterTests {
  @Test(arguments: [DType.f16, .bf16, .f64])
  func aParameterOfAnotherFloatTypeTrains(_ dtype: DType) throws {
    let module = try Parser.parseAndVerify("""
      module @s {
        param @w : \(dtype)[3] = zeros
        func @loss(%x: f32[B, 3]) -> f32[] {
          %c = cast @w : f32[3]
          %m = mul %x, %c : f32[B, 3]
          %s = reduce_sum %m : f32[]
          return %s
        }
      }
      """)
    let data = try Dataset(columns: ["x": Tensor(.f32, shape: [8, 3], floats: Array(repeating: 1, count: 24))])
    for clip in [nil, 1.0] {
      var options = TrainingOptions()
      options.batch = 4
      options.steps = 2
      options.learningRate = 0.25
      options.shuffle = false
      var config = OptimizerConfig(.sgd)
      config.clipNorm = clip
      let loop = try TrainingLoop(module: module, loss: "loss", optimizer: config, data: data, options: options)
      _ = try loop.run { _ in }
      // d loss / d w = 4 per element (a batch of 4 ones); with clipping the gradient's norm
      // (sqrt(3 * 16)) is scaled to 1. After one step w = -lr g, and the second loss is 12 w.
      let step = clip == nil ? 0.25 * 4 : 0.25 * 4 / (48.0).squareRoot()
      let expected = roundToFloat(-step, dtype) * 12
      #expect(loop.losses.count == 2 && loop.losses[0] == 0)
      #expect(abs(loop.losses[1] - expected) <= 1e-6 * abs(expected), "\(dtype), clip \(String(describing: clip)): \(loop.losses)")
    }
  }
}
