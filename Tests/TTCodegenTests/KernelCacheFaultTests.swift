// The kernel cache against what is not its own (issue 15): the sweep of old builds' directories
// never follows a symlink and never deletes a file or directory ttfc did not write; forged entry
// lengths are corruptions, not traps. A seeded family mutates entries, each read must be a hit of
// the original, a miss or a named corruption.
import Foundation
import Testing
import TTCodegen

struct KernelCacheFaultTests {
  static func root() -> String {
    FileManager.default.temporaryDirectory.appendingPathComponent("ttfc-kcf-\(UUID().uuidString)").path
  }

  static func age(_ path: String, days: Double) throws {
    try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSinceNow: -days * 24 * 3600)], ofItemAtPath: path)
  }

  @Test func theSweepLeavesSymlinksAndForeignDirectoriesAlone() throws {
    let root = Self.root()
    let precious = Self.root() + "-precious"
    try FileManager.default.createDirectory(atPath: precious, withIntermediateDirectories: true)
    try "keep me".write(toFile: precious + "/notes.txt", atomically: true, encoding: .utf8)
    try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
    // A symlink named like a cache directory, a foreign directory with our prefix, and a directory
    // with our exact name but no marker: all old, none ours.
    try FileManager.default.createSymbolicLink(atPath: root + "/kernels-shared", withDestinationPath: precious)
    let lookalike = root + "/kernels-" + String(repeating: "ab", count: 16)
    try FileManager.default.createDirectory(atPath: lookalike, withIntermediateDirectories: true)
    try "mine".write(toFile: lookalike + "/0123456789abcdef0123456789abcdef.ttko", atomically: true, encoding: .utf8)
    let foreign = root + "/kernels-backup"
    try FileManager.default.createDirectory(atPath: foreign, withIntermediateDirectories: true)
    try "data".write(toFile: foreign + "/file", atomically: true, encoding: .utf8)
    for path in [precious, lookalike, foreign] { try Self.age(path, days: 30) }
    _ = try #require(KernelDiskCache(root: root, identity: "new build"))
    #expect(FileManager.default.fileExists(atPath: precious + "/notes.txt"))
    #expect(FileManager.default.fileExists(atPath: lookalike + "/0123456789abcdef0123456789abcdef.ttko"))
    #expect(FileManager.default.fileExists(atPath: foreign + "/file"))
  }

  @Test func anOldCacheDirectoryLosesOnlyItsEntries() throws {
    let root = Self.root()
    let old = try #require(KernelDiskCache(root: root, identity: "old build"))
    old.write(key: "k", name: "n", object: [1, 2])
    try "user file".write(toFile: old.directory + "/README", atomically: true, encoding: .utf8)
    try Self.age(old.directory, days: 8)
    _ = try #require(KernelDiskCache(root: root, identity: "new build"))
    #expect(!FileManager.default.fileExists(atPath: old.path(for: "k")), "its entry is swept")
    #expect(FileManager.default.fileExists(atPath: old.directory + "/README"), "a file ttfc did not write stays")
  }

  /// An entry of one key with its 4- and 8-byte length fields (after the 8-byte magic) set.
  static func forged(_ cache: KernelDiskCache, key: String, keyLength: UInt64?, objectLength: UInt64?) throws -> String {
    #expect(cache.write(key: key, name: "n", object: [1, 2, 3]))
    let path = cache.path(for: key)
    var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
    if let keyLength { for i in 0..<4 { bytes[8 + i] = UInt8(truncatingIfNeeded: keyLength >> (8 * UInt64(i))) } }
    if let objectLength { for i in 0..<8 { bytes[16 + i] = UInt8(truncatingIfNeeded: objectLength >> (8 * UInt64(i))) } }
    try Data(bytes).write(to: URL(fileURLWithPath: path))
    return path
  }

  @Test func forgedLengthsAreCorruptionsNotTraps() throws {
    let cache = try #require(KernelDiskCache(root: Self.root(), identity: "t"))
    for objectLength: UInt64 in [0x7FFF_FFFF_FFFF_FFFF, 0x7FFF_FFFF_FFFF_FFF0, 0xFFFF_FFFF_FFFF_FFFF, 1 << 40] {
      _ = try Self.forged(cache, key: "key", keyLength: nil, objectLength: objectLength)
      guard case .corrupt = cache.read(key: "key") else { Issue.record("object length \(objectLength) was not a corruption"); continue }
    }
    _ = try Self.forged(cache, key: "key", keyLength: 0xFFFF_FFFF, objectLength: 0x7FFF_FFFF_FFFF_FFFF)
    guard case .corrupt = cache.read(key: "key") else { Issue.record("forged key length was not a corruption"); return }
  }

  /// Seeded mutations of cache entries (bytes, lengths, truncation, extension).
  @Test func mutatedEntriesAreHitsMissesOrCorruptions() throws {
    let cache = try #require(KernelDiskCache(root: Self.root(), identity: "t"))
    var generator = SeededGenerator(seed: 915)
    var corruptions = 0
    for iteration in 0..<500 {
      let object = (0..<(iteration % 40)).map { UInt8(truncatingIfNeeded: $0 &* 31) }
      #expect(cache.write(key: "k\(iteration % 5)", name: "sym", object: object))
      let path = cache.path(for: "k\(iteration % 5)")
      var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
      switch generator.next() % 4 {
      case 0: bytes[Int(generator.next() % UInt64(bytes.count))] ^= UInt8(truncatingIfNeeded: 1 | generator.next())
      case 1: bytes = Array(bytes.prefix(Int(generator.next() % UInt64(bytes.count))))
      case 2: bytes += [UInt8](repeating: 0xFF, count: 1 + Int(generator.next() % 9))
      default:
        let at = 8 + Int(generator.next() % 16)
        for k in 0..<4 where at + k < bytes.count { bytes[at + k] = [0xFF, 0x7F, 0x80, 0x00][Int(generator.next() % 4)] }
      }
      try Data(bytes).write(to: URL(fileURLWithPath: path))
      switch cache.read(key: "k\(iteration % 5)") {
      case .hit(let name, let read): #expect(name == "sym" && read == object)
      case .miss: break
      case .corrupt(let reason): #expect(!reason.isEmpty); corruptions += 1
      }
    }
    #expect(corruptions > 400)
  }
}

/// SplitMix64: a small seeded generator for the adversarial families.
struct SeededGenerator: RandomNumberGenerator {
  var state: UInt64
  init(seed: UInt64) { state = seed }
  mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }
}
