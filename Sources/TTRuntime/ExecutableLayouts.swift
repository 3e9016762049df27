// ExecutableLayouts — memory planning for an executable: the shapes of every slot for a binding
// of the symbols, and layouts (one arena per capacity binding, offsets by liveness, first fit,
// in-place reuse of dying operands, pinned state outside the arenas). A layout planned at a
// capacity serves every smaller binding: buffer sizes grow monotonically with every symbol and
// liveness does not depend on sizes (IR-specs/codegen.md, IR-specs/dynamic-shapes.md).

import Glibc
import TTIR

extension Executable {
  func shapes(for values: [Int]) -> [[Int]] {
    slots.map { slot in slot.type.dims.map { d -> Int in
      switch d {
      case .known(let n): return n
      case .symbol(let s): return symbols.firstIndex(of: s).map { values[$0] } ?? 0
      }
    } }
  }

  func plan(for key: [Int], capacity: [Int]) throws(ExecutableError) -> Plan {
    guard capacity.count == key.count, zip(key, capacity).allSatisfy({ $0 <= $1 }) else {
      throw .runtime("the layout capacity \(capacity) does not cover the symbol values \(key) (\(symbols.joined(separator: ", ")))")
    }
    for requirement in program.nonEmptyRequirements {
      let count = requirement.dims.reduce(1) { n, d in
        switch d {
        case .known(let k): return n * k
        case .symbol(let s): return n * (symbols.firstIndex(of: s).map { key[$0] } ?? 1)
        }
      }
      if count == 0 {
        throw .runtime("\(requirement.op) over an empty batch has no answer (\(zip(symbols, key).map { "\($0) = \($1)" }.joined(separator: ", ")))")
      }
    }
    return Plan(shapes: shapes(for: key), layout: try layout(for: capacity))
  }

  /// Arena offsets for one capacity binding of the symbols, computed once and cached. Sizes grow
  /// monotonically with every symbol, so offsets planned at the capacity are valid for any
  /// smaller binding; liveness does not depend on sizes at all.
  func layout(for capacity: [Int]) throws(ExecutableError) -> Layout {
    if let existing = layouts[capacity] { return existing }
    let shapes = shapes(for: capacity)
    // Live ranges over the thunk sequence: arguments from before the first thunk, outputs to the end.
    var first = [Int](repeating: Int.max, count: slots.count)
    var last = [Int](repeating: -1, count: slots.count)
    // Arguments stay intact for the whole run (a prepared run may be executed again on them),
    // except donated ones, which live only until their last use.
    for (k, slot) in slots.enumerated() {
      switch slot.storage {
      case .argument(let i): first[k] = -1; last[k] = donated.contains(i) ? -1 : thunks.count
      case .pinned: first[k] = -1; last[k] = -1
      case .arena, .persistent: break
      }
    }
    for (t, thunk) in thunks.enumerated() {
      let (reads, writes) = Self.uses(thunk)
      for s in reads { last[s] = max(last[s], t) }
      for s in writes { first[s] = min(first[s], t); last[s] = max(last[s], t) }
    }
    for s in outputs { last[s] = thunks.count }
    // Blocks: arena ranges, or a pinned argument's own buffer (`external`), which a result may
    // take over in place once the argument is dead but never enters the first-fit arena.
    struct Block { var start: Int; var end: Int; var first: Int; var last: Int; var external: UnsafeMutableRawPointer? }
    var offsets = [Int](repeating: 0, count: slots.count)
    var placed: [Block] = []
    var blockOf: [Int: Int] = [:]          // slot -> index in `placed`
    var arenaBytes = 0
    let order = slots.indices.filter { if case .persistent = slots[$0].storage { return false }; return first[$0] != Int.max }
      .sorted { first[$0] < first[$1] }
    // In-place candidates: the output of thunk t may take the block of an operand that dies at t.
    var reusable: [Int: [Int]] = [:]       // result slot -> operand slots
    var argumentSlot: [Int: Int] = [:]
    for (k, slot) in slots.enumerated() {
      if case .argument(let i) = slot.storage { argumentSlot[i] = k }
      if case .pinned(let i, _) = slot.storage { argumentSlot[i] = k }
    }
    var preferred: [Int: Int] = [:]        // result slot -> the argument slot it should overwrite
    for (r, a) in aliasing where r < outputs.count { if let k = argumentSlot[a] { preferred[outputs[r]] = k } }
    for (t, thunk) in thunks.enumerated() {
      if case .kernel(_, _, let results, let inPlace) = thunk {
        let candidates = inPlace.filter { last[$0] == t }
        for result in results {
          let first = preferred[result].map { p in candidates.filter { $0 == p } } ?? []
          reusable[result] = first + candidates.filter { !first.contains($0) }
        }
      }
    }
    func bytes(_ s: Int) throws(ExecutableError) -> Int {
      guard let count = elementCount(shapes[s]), count <= maxTensorElements else {
        throw .runtime("a value of shape \(shapes[s]) is too large")
      }
      return (max(count * slots[s].type.dtype.byteSize, 1) + 63) / 64 * 64
    }
    var takenInPlace = Set<Int>()
    placing: for s in order {
      let size = try bytes(s)
      if case .pinned(_, let p) = slots[s].storage {
        blockOf[s] = placed.count
        placed.append(Block(start: 0, end: size, first: first[s], last: last[s], external: p))
        continue
      }
      for o in reusable[s] ?? [] {
        // An operand's memory goes to one result only (a multi-output kernel lists it for each).
        guard let b = blockOf[o], isReusable(o), placed[b].end - placed[b].start == size,
              !outputs.contains(o), takenInPlace.insert(o).inserted else { continue }
        placed[b].last = max(placed[b].last, last[s])
        blockOf[s] = b
        offsets[s] = placed[b].start
        statisticsReused += 1
        continue placing
      }
      // First fit among arena blocks whose live ranges overlap this one.
      let conflicts = placed.filter { $0.external == nil && !($0.last < first[s] || last[s] < $0.first) }.sorted { $0.start < $1.start }
      var offset = 0
      for c in conflicts where offset + size > c.start { offset = max(offset, c.end) }
      offsets[s] = offset
      blockOf[s] = placed.count
      placed.append(Block(start: offset, end: offset + size, first: first[s], last: last[s], external: nil))
      arenaBytes = max(arenaBytes, offset + size)
    }
    if let shortfall = MemoryBudget.shortfall(arenaBytes) {
      throw .runtime("out of memory: the run \(shortfall)")
    }
    let arena: UnsafeMutableRawPointer? = HostMemory.allocate(max(arenaBytes, 64), owner: memoryOwner)
    // Touch every page now, so the first step in this layout does not pay for page faults.
    memset(arena!, 0, max(arenaBytes, 64))
    let pointers = slots.indices.map { k -> UnsafeMutableRawPointer in
      switch slots[k].storage {
      case .persistent(let p), .pinned(_, let p): return p
      case .arena, .argument:
        if let b = blockOf[k], let external = placed[b].external { return external }
        return arena! + offsets[k]
      }
    }
    let layout = Layout(capacity: capacity, pointers: pointers, arena: arena!, arenaBytes: arenaBytes)
    layouts[capacity] = layout
    return layout
  }

  /// Whether a slot's memory may be taken over by another value once the slot is dead.
  func isReusable(_ slot: Int) -> Bool {
    switch slots[slot].storage {
    case .arena: return true
    case .argument(let i), .pinned(let i, _): return donated.contains(i)
    case .persistent: return false
    }
  }

}
