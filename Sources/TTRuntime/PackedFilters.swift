// PackedFilters — a convolution's filter kept across runs in the form its GEMMs read: JitGemm's
// 16-column panels of W[KH·KW·Cin, Cout] (the im2col path) or of Winograd's 16 or 36 transformed
// matrices U (WinogradConv). Only filters the executable owns are kept — parameters and
// constants (persistent slots), which no thunk writes. Their one writer,
// `Executable.updateParameters`, bumps the executable's parameter generation, and a form made
// at an older generation is made again on its next use. A training step's filters are
// arguments and are still packed on every call. TTFC_PREPACK=off packs on every call as before
// (for comparison); the bits of every result are the same either way.

import Glibc
import Synchronization
import TTSupport

/// One packed form of a filter, immutable once made; its memory is counted to the executable.
final class PackedFilter: @unchecked Sendable {
  let pointer: UnsafeMutablePointer<Float>
  let generation: Int
  /// False when the form must not be used (Winograd: a transformed value is not finite).
  let usable: Bool

  init(pointer: UnsafeMutablePointer<Float>, generation: Int, usable: Bool) {
    self.pointer = pointer; self.generation = generation; self.usable = usable
  }
  deinit { HostMemory.release(UnsafeMutableRawPointer(pointer)) }
}

/// The packed forms of one convolution thunk's filter (one of each form at most).
final class ConvFilterCache: @unchecked Sendable {
  enum Form: Int { case im2col = 0, winograd2 = 1, winograd4 = 2 }

  /// TTFC_PREPACK=off: filters are packed on every call.
  static let enabled: Bool = {
    guard let text = getenv("TTFC_PREPACK") else { return true }
    return String(cString: text) != "off"
  }()

  /// The HostMemory owner the forms are counted to (the executable's).
  let owner: Int
  private let lock = NSLockish()
  private var kept: [PackedFilter?] = [nil, nil, nil]
  /// How many forms were made (tests: a second run makes none).
  private var madeCount = 0
  var made: Int { lock.withLock { madeCount } }

  init(owner: Int) { self.owner = owner }

  /// The form for `generation`: the kept one, or one made now by `make` (which fills `floats`
  /// floats and says whether the result is usable). Nil when `floats` does not fit the memory
  /// budget: the caller packs per call as it would without a cache.
  func packed(_ form: Form, generation: Int, floats: Int, make: (UnsafeMutablePointer<Float>) -> Bool) -> PackedFilter? {
    lock.withLock {
      if let current = kept[form.rawValue], current.generation == generation { return current }
      kept[form.rawValue] = nil   // the stale form's memory goes back before the new one is taken
      let bytes = max(floats, 16) * MemoryLayout<Float>.stride
      guard MemoryBudget.shortfall(bytes + HostMemory.liveBytes(owner: owner)) == nil else { return nil }
      let pointer = HostMemory.allocate(bytes, owner: owner).bindMemory(to: Float.self, capacity: max(floats, 16))
      let filter = PackedFilter(pointer: pointer, generation: generation, usable: make(pointer))
      kept[form.rawValue] = filter
      madeCount += 1
      return filter
    }
  }
}

/// What a convolution call is given to find its filter packed: its thunk's cache and the
/// executable's parameter generation at the call.
struct FilterCacheKey {
  let cache: ConvFilterCache
  let generation: Int
}
