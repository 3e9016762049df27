// Mixed precision for training: which precision each step runs in (a `PrecisionPolicy`, chosen
// per step at run time), loss scaling (static or dynamic), and how both are named on the command
// line and kept in checkpoints. The trainer compiles the full-precision step and the mixed one
// (the `amp` rewrite of the loss, f32 master weights and optimizer state) once each, over the same
// state buffers, so a policy's switch costs nothing but the choice (IR-specs/training.md).

import Foundation
import TTIR

/// The precision one training step runs in.
public enum StepPrecision: String, Sendable, Equatable, CaseIterable {
  /// The loss function as written (f32, or whatever types it declares).
  case full = "fp32"
  /// The `amp` rewrite of the loss function (the trainer's half type).
  case mixed
}

/// What a policy knows when it chooses a step's precision.
public struct PrecisionDecision: Sendable {
  /// The step about to run (1-based).
  public var step: Int
  /// Its learning rate, and the previous step's (nil at the first step of the run or after a
  /// resume whose checkpoint had none).
  public var learningRate: Double
  public var previousLearningRate: Double?
}

/// What a policy learns after a step ran.
public struct StepOutcome: Sendable {
  public var step: Int
  public var precision: StepPrecision
  /// The step's loss (unscaled; NaN or inf when it was not finite).
  public var loss: Double
  /// Whether the loss and every gradient were finite (false: the update was skipped).
  public var finite: Bool
}

/// Chooses each training step's precision. Implement it to plug in a strategy of your own
/// (``MixedPrecisionOptions/policy``); the state a policy returns from ``state`` is saved in
/// checkpoints and given back to ``restore(_:)`` on resume, so a resumed run makes the same
/// choices as an uninterrupted one.
public protocol PrecisionPolicy: AnyObject {
  /// The policy as `--precision-policy` spells it.
  var description: String { get }
  /// The precision of the step described by `decision`.
  func precision(for decision: PrecisionDecision) -> StepPrecision
  /// Called after every step with what happened.
  func observe(_ outcome: StepOutcome)
  /// Whether a mixed step whose loss or gradients were not finite is this policy's to handle
  /// (the update is skipped and training goes on) rather than a divergence.
  var handlesNonFiniteSteps: Bool { get }
  /// The policy's state, for checkpoints (numbers by name).
  var state: [String: Double] { get }
  /// Restores `state` as written by ``state``; throws a message when it does not fit.
  func restore(_ state: [String: Double]) throws
}

extension PrecisionPolicy {
  public var handlesNonFiniteSteps: Bool { false }
  public func observe(_ outcome: StepOutcome) {}
  public var state: [String: Double] { [:] }
  public func restore(_ state: [String: Double]) throws {}
}

/// Every step in one precision (`fixed:fp32`, `fixed:bf16`, `fixed:f16`).
public final class FixedPrecisionPolicy: PrecisionPolicy {
  public let precision: StepPrecision
  let spelling: String
  public init(_ precision: StepPrecision, spelling: String? = nil) {
    self.precision = precision
    self.spelling = spelling ?? "fixed:\(precision.rawValue)"
  }
  public var description: String { spelling }
  public func precision(for decision: PrecisionDecision) -> StepPrecision { precision }
}

/// The published strategy (`lr-change:HOLD`): a step whose learning rate differs from the
/// previous step's, and the HOLD - 1 steps after it, run in full precision; every other step is
/// mixed. A change inside a hold restarts it.
public final class LearningRateChangePolicy: PrecisionPolicy {
  public let hold: Int
  /// The last step of the current full-precision hold (0: none yet).
  var holdUntil = 0
  /// The learning rate of the last step seen (survives resumes through the checkpoint).
  var lastLearningRate: Double?
  public init(hold: Int) { self.hold = hold }
  public var description: String { "lr-change:\(hold)" }
  public func precision(for decision: PrecisionDecision) -> StepPrecision {
    let previous = decision.previousLearningRate ?? lastLearningRate
    if let previous, previous != decision.learningRate { holdUntil = decision.step + hold - 1 }
    lastLearningRate = decision.learningRate
    return decision.step <= holdUntil ? .full : .mixed
  }
  public var state: [String: Double] {
    var s = ["hold_until": Double(holdUntil)]
    if let lastLearningRate { s["last_lr"] = lastLearningRate }
    return s
  }
  public func restore(_ state: [String: Double]) throws {
    holdUntil = try restoredStep(state["hold_until"], "lr-change")
    if let lr = state["last_lr"] {
      guard lr.isFinite, lr >= 0 else { throw PrecisionOptionError("the checkpoint's lr-change policy state has last_lr \(lr), not a finite rate") }
    }
    lastLearningRate = state["last_lr"]
  }
}

/// `loss:HOLD[:RISE[:DECAY]]`: HOLD steps in full precision after a step whose loss was not
/// finite, or rose more than RISE (a fraction, default 0.5) above the moving average of earlier
/// losses (decay DECAY per step, default 0.9; full-precision steps update it too). A mixed step
/// with a non-finite loss or gradient skips its update and starts the hold.
public final class LossSpikePolicy: PrecisionPolicy {
  public let hold: Int, rise: Double, decay: Double
  var holdUntil = 0
  var average: Double?
  public init(hold: Int, rise: Double = 0.5, decay: Double = 0.9) { self.hold = hold; self.rise = rise; self.decay = decay }
  public var description: String { "loss:\(hold):\(rise):\(decay)" }
  public var handlesNonFiniteSteps: Bool { true }
  public func precision(for decision: PrecisionDecision) -> StepPrecision { decision.step <= holdUntil ? .full : .mixed }
  public func observe(_ outcome: StepOutcome) {
    guard outcome.finite, outcome.loss.isFinite else { holdUntil = outcome.step + hold; return }
    if let average, outcome.loss > average + rise * abs(average) { holdUntil = outcome.step + hold }
    average = average.map { decay * $0 + (1 - decay) * outcome.loss } ?? outcome.loss
  }
  public var state: [String: Double] {
    var s = ["hold_until": Double(holdUntil)]
    if let average { s["average"] = average }
    return s
  }
  public func restore(_ state: [String: Double]) throws {
    holdUntil = try restoredStep(state["hold_until"], "loss")
    if let average = state["average"] {
      guard average.isFinite else { throw PrecisionOptionError("the checkpoint's loss policy state has average \(average), not a finite loss") }
    }
    average = state["average"]
  }
}

/// A step number read from a checkpoint's policy state: whole, 0 to the longest run plus a hold.
func restoredStep(_ value: Double?, _ policy: String) throws(PrecisionOptionError) -> Int {
  guard let value, value >= 0, value <= 2e12, value == value.rounded() else {
    throw PrecisionOptionError("the checkpoint's \(policy) policy state has no valid 'hold_until' (a step number up to 2e12)\(value.map { ", got \($0)" } ?? "")")
  }
  return Int(value)
}

/// A decimal number (no hex, no nan/inf spellings): what option values and checkpoint entries hold.
func decimalNumber(_ text: String) -> Double? {
  guard !text.isEmpty, text.allSatisfy({ "0123456789.eE+-".contains($0) }) else { return nil }
  return Double(text)
}

/// A named error in a precision option or in precision state read from a checkpoint.
public struct PrecisionOptionError: Error, CustomStringConvertible {
  public var description: String
  public init(_ description: String) { self.description = description }
}

/// How the mixed step scales its loss: not at all, by a fixed factor, or dynamically (start at
/// `initial`; a step with a non-finite gradient is skipped and multiplies the scale by `backoff`;
/// after `interval` finite mixed steps in a row it is multiplied by `growth`, up to `maximum`).
public enum LossScaling: Sendable, Equatable, CustomStringConvertible {
  case none
  case fixed(Double)
  case dynamic(initial: Double, growth: Double, backoff: Double, interval: Int, minimum: Double, maximum: Double)

  /// A loss scale the f32 step can hold: a normal, finite f32.
  static func isScale(_ x: Double) -> Bool { x.isFinite && x >= Double(Float.leastNormalMagnitude) && x <= Double(Float.greatestFiniteMagnitude) }

  public static let defaultDynamic = LossScaling.dynamic(initial: 32768, growth: 2, backoff: 0.5, interval: 2000, minimum: 1, maximum: 16_777_216)

  public var description: String {
    switch self {
    case .none: return "none"
    case .fixed(let s): return "\(s)"
    case .dynamic(let initial, let growth, let backoff, let interval, let minimum, let maximum):
      return "dynamic:initial=\(initial),growth=\(growth),backoff=\(backoff),interval=\(interval),min=\(minimum),max=\(maximum)"
    }
  }

  /// `none`, a positive finite number, or `dynamic[:key=value,...]` with keys initial, growth,
  /// backoff, interval, min and max.
  public static func parse(_ text: String) throws(PrecisionOptionError) -> LossScaling {
    if text == "none" { return .none }
    if text.first.map({ "0123456789.+-".contains($0) }) == true {
      guard let value = decimalNumber(text), isScale(value) else {
        throw PrecisionOptionError("--loss-scale \(text): a fixed loss scale is a decimal number from \(Float.leastNormalMagnitude) to \(Float.greatestFiniteMagnitude) (the step computes in f32)")
      }
      return .fixed(value)
    }
    guard text == "dynamic" || text.hasPrefix("dynamic:") else {
      throw PrecisionOptionError("--loss-scale \(text): expected none, a positive number, or dynamic[:initial=S,growth=G,backoff=B,interval=N,min=M,max=X]")
    }
    guard case .dynamic(var initial, var growth, var backoff, var interval, var minimum, var maximum) = defaultDynamic else { return defaultDynamic }
    var seen = Set<String>()
    let pairs = text.dropFirst("dynamic".count).drop(while: { $0 == ":" })
    if text.hasPrefix("dynamic:") && pairs.isEmpty { throw PrecisionOptionError("--loss-scale dynamic: no KEY=NUMBER after the colon") }
    for pair in pairs.isEmpty ? [] : pairs.split(separator: ",", omittingEmptySubsequences: false) {
      let parts = pair.split(separator: "=", maxSplits: 1).map(String.init)
      guard parts.count == 2, let value = decimalNumber(parts[1]), value.isFinite else {
        throw PrecisionOptionError("--loss-scale: '\(pair)' is not KEY=NUMBER (keys: initial, growth, backoff, interval, min, max)")
      }
      guard seen.insert(parts[0]).inserted else { throw PrecisionOptionError("--loss-scale: '\(parts[0])' is given twice") }
      switch parts[0] {
      case "initial": initial = value
      case "growth": growth = value
      case "backoff": backoff = value
      case "interval":
        guard value >= 1, value <= 1e9, value == value.rounded() else { throw PrecisionOptionError("--loss-scale: interval=\(parts[1]) is not a whole number of steps in 1...1000000000") }
        interval = Int(value)
      case "min": minimum = value
      case "max": maximum = value
      default: throw PrecisionOptionError("--loss-scale: unknown key '\(parts[0])' (keys: initial, growth, backoff, interval, min, max)")
      }
    }
    guard isScale(minimum), isScale(maximum), isScale(initial) else {
      throw PrecisionOptionError("--loss-scale: initial, min and max are scales from \(Float.leastNormalMagnitude) to \(Float.greatestFiniteMagnitude) (the step computes in f32)")
    }
    guard growth <= 65536 else { throw PrecisionOptionError("--loss-scale: growth=\(growth) must be at most 65536") }
    guard minimum > 0, maximum >= minimum, initial >= minimum, initial <= maximum else {
      throw PrecisionOptionError("--loss-scale: need 0 < min <= initial <= max (min \(minimum), initial \(initial), max \(maximum))")
    }
    guard growth >= 1 else { throw PrecisionOptionError("--loss-scale: growth=\(growth) must be at least 1") }
    guard backoff > 0, backoff < 1 else { throw PrecisionOptionError("--loss-scale: backoff=\(backoff) must be in (0, 1)") }
    return .dynamic(initial: initial, growth: growth, backoff: backoff, interval: interval, minimum: minimum, maximum: maximum)
  }
}

/// The loss scale as training goes: its value and the finite mixed steps since it last changed.
public struct LossScaler: Sendable, Equatable {
  public let scaling: LossScaling
  public private(set) var scale: Double
  public private(set) var finiteSteps = 0

  public init(_ scaling: LossScaling) {
    self.scaling = scaling
    switch scaling {
    case .none: scale = 1
    case .fixed(let s): scale = s
    case .dynamic(let initial, _, _, _, _, _): scale = initial
    }
  }

  /// After a mixed step: halve on overflow, grow after `interval` finite steps (dynamic only).
  public mutating func update(finite: Bool) {
    guard case .dynamic(_, let growth, let backoff, let interval, let minimum, let maximum) = scaling else { return }
    if !finite {
      scale = max(minimum, scale * backoff)
      finiteSteps = 0
      return
    }
    finiteSteps += 1
    if finiteSteps >= interval {
      scale = min(maximum, scale * growth)
      finiteSteps = 0
    }
  }

  public var isDynamic: Bool { if case .dynamic = scaling { return true } else { return false } }

  var state: [String: Double] { ["scale": scale, "finite_steps": Double(finiteSteps)] }
  mutating func restore(_ state: [String: Double]) throws(PrecisionOptionError) {
    guard let s = state["scale"], s.isFinite, s > 0, let n = state["finite_steps"], n >= 0, n == n.rounded(), n < 1e12 else {
      throw PrecisionOptionError("the checkpoint's loss scale state is not a positive scale and a step count")
    }
    switch scaling {
    case .none, .fixed:
      // Nothing to restore: the scale is the setting's (a checkpoint saying otherwise was edited).
      guard s == scale, n == 0 else { throw PrecisionOptionError("the checkpoint's loss scale \(s) is not this run's fixed \(scaling)") }
    case .dynamic(_, _, _, let interval, let minimum, let maximum):
      guard s >= minimum, s <= maximum, Int(n) < interval else {
        throw PrecisionOptionError("the checkpoint's loss scale \(s) (after \(Int(n)) finite steps) is outside this run's \(scaling)")
      }
      scale = s
      finiteSteps = Int(n)
    }
  }

  /// Whether the scale can still back off (dynamic, above its minimum).
  public var canBackOff: Bool {
    if case .dynamic(_, _, _, _, let minimum, _) = scaling { return scale > minimum }
    return false
  }
}

/// Mixed precision for a trainer: the half type, the loss scaling of mixed steps, and the policy.
public struct MixedPrecisionOptions {
  public var halfType: DType
  public var lossScaling: LossScaling
  public var policy: PrecisionPolicy

  public init(halfType: DType, lossScaling: LossScaling? = nil, policy: PrecisionPolicy) {
    self.halfType = halfType
    self.lossScaling = lossScaling ?? (halfType == .f16 ? .defaultDynamic : .none)
    self.policy = policy
  }

  /// `fixed:fp32|bf16|f16`, `lr-change:HOLD`, `loss:HOLD[:RISE[:DECAY]]`.
  public static func policy(named text: String) throws(PrecisionOptionError) -> PrecisionPolicy {
    let parts = text.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
    func positive(_ s: String, _ what: String) throws(PrecisionOptionError) -> Int {
      guard let n = Int(s), n >= 1, n <= 1_000_000_000 else { throw PrecisionOptionError("--precision-policy \(text): \(what) '\(s)' is not a whole number in 1...1000000000") }
      return n
    }
    switch parts[0] {
    case "fixed" where parts.count == 2:
      switch parts[1] {
      case "fp32": return FixedPrecisionPolicy(.full)
      case "bf16", "f16": return FixedPrecisionPolicy(.mixed, spelling: text)
      default: throw PrecisionOptionError("--precision-policy \(text): fixed takes fp32, bf16 or f16")
      }
    case "lr-change" where parts.count == 2:
      return LearningRateChangePolicy(hold: try positive(parts[1], "HOLD"))
    case "loss" where (2...4).contains(parts.count):
      let hold = try positive(parts[1], "HOLD")
      let rise = parts.count > 2 ? Double(parts[2]) : 0.5
      let decay = parts.count > 3 ? Double(parts[3]) : 0.9
      guard let rise, rise.isFinite, rise >= 0 else { throw PrecisionOptionError("--precision-policy \(text): RISE is a fraction at least 0") }
      guard let decay, decay >= 0, decay < 1 else { throw PrecisionOptionError("--precision-policy \(text): DECAY is in [0, 1)") }
      return LossSpikePolicy(hold: hold, rise: rise, decay: decay)
    default:
      throw PrecisionOptionError("--precision-policy \(text): expected fixed:fp32|bf16|f16, lr-change:HOLD or loss:HOLD[:RISE[:DECAY]]")
    }
  }
}
