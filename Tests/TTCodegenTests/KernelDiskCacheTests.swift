// The on-disk kernel cache's entry format: round trip, and every kind of damage (wrong magic,
// truncation, a flipped byte, an entry stored under another key's name) read as a corruption that
// deletes the entry; a killed writer's temporary file is never read and is swept when old.
import Foundation
import Testing
import TTCodegen

struct KernelDiskCacheTests {
  static func cache() throws -> KernelDiskCache {
    let root = FileManager.default.temporaryDirectory.appendingPathComponent("ttfc-kc-\(UUID().uuidString)").path
    return try #require(KernelDiskCache(root: root, identity: "test"))
  }

  @Test func entriesRoundTrip() throws {
    let cache = try Self.cache()
    #expect(cache.read(key: "k1") == .miss)
    let object: [UInt8] = (0..<5000).map { UInt8($0 % 251) }
    #expect(cache.write(key: "k1", name: "ttfc_k_1", object: object))
    #expect(cache.read(key: "k1") == .hit(name: "ttfc_k_1", object: object))
    #expect(cache.read(key: "k2") == .miss)
    #expect(try #require(KernelDiskCache(root: (cache.directory as NSString).deletingLastPathComponent, identity: "other")).read(key: "k1") == .miss,
            "another identity (LLVM, CPU, binary) never sees the entry")
  }

  @Test(arguments: ["magic", "truncated", "flipped", "padded", "collision"])
  func damageIsDetectedAndTheEntryDeleted(_ damage: String) throws {
    let cache = try Self.cache()
    let object: [UInt8] = (0..<777).map { UInt8($0 % 13) }
    cache.write(key: "key", name: "n", object: object)
    let path = cache.path(for: "key")
    var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
    switch damage {
    case "magic": bytes[0] = 0x41
    case "truncated": bytes = bytes.prefix(bytes.count - 10)
    case "flipped": bytes[bytes.count - 5] ^= 1
    case "padded": bytes.append(0)
    default:
      // An entry whose stored key differs (what a hash collision would look like).
      cache.write(key: "other key", name: "n", object: object)
      bytes = try Data(contentsOf: URL(fileURLWithPath: cache.path(for: "other key")))
    }
    try bytes.write(to: URL(fileURLWithPath: path))
    guard case .corrupt = cache.read(key: "key") else { Issue.record("\(damage) not detected"); return }
    #expect(!FileManager.default.fileExists(atPath: path), "a damaged entry is deleted so it is rebuilt")
    #expect(cache.read(key: "key") == .miss)
  }

  @Test func aKilledWritersTemporaryFileIsIgnoredAndSwept() throws {
    let cache = try Self.cache()
    let temporary = cache.path(for: "key") + ".tmp.4242.1"
    try Data(repeating: 7, count: 64).write(to: URL(fileURLWithPath: temporary))
    #expect(cache.read(key: "key") == .miss)
    // Fresh temporary files may belong to a live writer: kept. Old ones are swept on open.
    _ = KernelDiskCache(root: (cache.directory as NSString).deletingLastPathComponent, identity: "test")
    #expect(FileManager.default.fileExists(atPath: temporary))
    try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSinceNow: -7200)], ofItemAtPath: temporary)
    _ = KernelDiskCache(root: (cache.directory as NSString).deletingLastPathComponent, identity: "test")
    #expect(!FileManager.default.fileExists(atPath: temporary))
    #expect(cache.write(key: "key", name: "n", object: [1, 2, 3]))
    #expect(cache.read(key: "key") == .hit(name: "n", object: [1, 2, 3]))
  }

  @Test func directoriesOfOldBuildsGoWhenANewBuildStarts() throws {
    let root = FileManager.default.temporaryDirectory.appendingPathComponent("ttfc-kc-\(UUID().uuidString)").path
    let old = try #require(KernelDiskCache(root: root, identity: "old build"))
    old.write(key: "k", name: "n", object: [1])
    let recent = try #require(KernelDiskCache(root: root, identity: "recent build"))
    try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSinceNow: -8 * 24 * 3600)], ofItemAtPath: old.directory)
    _ = try #require(KernelDiskCache(root: root, identity: "new build"))
    #expect(!FileManager.default.fileExists(atPath: old.directory), "unused for over a week: removed")
    #expect(FileManager.default.fileExists(atPath: recent.directory), "used recently: kept")
  }
}
