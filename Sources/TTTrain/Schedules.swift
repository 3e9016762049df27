// Learning-rate schedules, evaluated by the trainer on the host each step and fed to the compiled
// step as its %lr argument (so changing the schedule never recompiles). Spellings for --schedule:
//   constant | step:EVERY:FACTOR | exponential:DECAY_STEPS:RATE | cosine[:FINAL_FRACTION]
// optionally prefixed by warmup:STEPS+ (linear warmup from 0), e.g. "warmup:100+cosine".

import Foundation

/// How the learning rate changes over a run: a shape (``Kind``) after an optional linear warmup.
public struct LearningRateSchedule: Sendable, Equatable, CustomStringConvertible {
  public enum Kind: Sendable, Equatable {
    case constant
    case step(every: Int, factor: Double)
    case exponential(decaySteps: Double, rate: Double)
    case cosine(finalFraction: Double)
  }
  public var kind: Kind
  public var warmupSteps: Int

  public init(_ kind: Kind = .constant, warmup: Int = 0) { self.kind = kind; warmupSteps = warmup }

  /// The learning rate at 1-based step `t` of `total`, for base rate `base`.
  public func rate(base: Double, step t: Int, total: Int) -> Double {
    if t <= warmupSteps { return base * Double(t) / Double(max(warmupSteps, 1)) }
    let s = Double(t - warmupSteps), span = Double(max(total - warmupSteps, 1))
    switch kind {
    case .constant: return base
    case .step(let every, let factor): return base * pow(factor, Double((t - warmupSteps - 1) / max(every, 1)))
    case .exponential(let decay, let rate): return base * pow(rate, s / decay)
    case .cosine(let final):
      let progress = min(s / span, 1)
      return base * (final + (1 - final) * 0.5 * (1 + cos(Double.pi * progress)))
    }
  }

  /// Reads the `--schedule` spelling (see the file header); nil when it is malformed.
  public static func parse(_ text: String) -> LearningRateSchedule? {
    var rest = Substring(text)
    var warmup = 0
    if rest.hasPrefix("warmup:") {
      guard let plus = rest.firstIndex(of: "+"), let n = Int(rest[rest.index(rest.startIndex, offsetBy: 7)..<plus]), n >= 0 else { return nil }
      warmup = n
      rest = rest[rest.index(after: plus)...]
    }
    let parts = rest.split(separator: ":", omittingEmptySubsequences: false).map(String.init)   // "cosine:" is refused
    switch parts.first {
    case "constant" where parts.count == 1: return LearningRateSchedule(.constant, warmup: warmup)
    case "step" where parts.count == 3:
      guard let every = Int(parts[1]), every > 0, let factor = Double(parts[2]), factor.isFinite, factor > 0 else { return nil }
      return LearningRateSchedule(.step(every: every, factor: factor), warmup: warmup)
    case "exponential" where parts.count == 3:
      guard let decay = Double(parts[1]), decay.isFinite, decay > 0, let rate = Double(parts[2]), rate.isFinite, rate > 0 else { return nil }
      return LearningRateSchedule(.exponential(decaySteps: decay, rate: rate), warmup: warmup)
    case "cosine" where parts.count <= 2:
      let final = parts.count == 2 ? Double(parts[1]) : 0
      guard let final, final >= 0, final <= 1 else { return nil }
      return LearningRateSchedule(.cosine(finalFraction: final), warmup: warmup)
    default: return nil
    }
  }

  public var description: String {
    let base: String
    switch kind {
    case .constant: base = "constant"
    case .step(let every, let factor): base = "step:\(every):\(factor)"
    case .exponential(let d, let r): base = "exponential:\(d):\(r)"
    case .cosine(let f): base = f == 0 ? "cosine" : "cosine:\(f)"
    }
    return warmupSteps > 0 ? "warmup:\(warmupSteps)+\(base)" : base
  }
}
