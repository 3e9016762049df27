// KernelDiskCache — compiled kernels on disk, so a second process compiles nothing. An entry is a
// relocatable object file (what LLVM emitted for the kernel) keyed by a hash of the kernel's
// region text and of everything else that decides the machine code: ttfc's code-generator
// version, the LLVM version, the target triple, CPU and features, and the identity of the running
// binary (its size and modification time), so a rebuilt ttfc never loads an older code
// generator's output.
//
// Safety: an entry is written to a unique temporary file and renamed into place, so readers see
// a whole entry or none, and concurrent processes writing the same entry are both correct (the
// last rename wins). Every entry carries its full key text and a CRC-32 of its contents: a
// truncated, corrupted or colliding entry is detected on read, deleted and rebuilt — which is
// also why entries are not fsync'd (a power loss can only cost a recompile).
// Temporary files of killed writers are never read and are swept after an hour.
//
// Location: $TTFC_CACHE_DIR if set ("" or "off" disables the cache), else
// $XDG_CACHE_HOME/ttfc or ~/.cache/ttfc; entries live in a subdirectory per identity, and the
// directories of builds unused for a week are removed when a new one starts — only directories
// ttfc made (named kernels-<32 hex digits>, holding the marker file `.ttfc-kernel-cache`, not a
// symlink), and in them only files of ttfc's own naming; anything else there is left alone.

import Glibc
import TTSupport

public struct KernelDiskCache: Sendable {
  public let directory: String

  /// Bumped whenever the code generator changes the code it emits for the same region.
  public static let codegenVersion = "ttfc-codegen-14"
  static let magic: [UInt8] = Array("TTFCKO01".utf8)
  /// The file that marks a directory as one ttfc made (the sweep touches no other directory).
  static let markerName = ".ttfc-kernel-cache"

  public enum ReadResult: Equatable {
    case hit(name: String, object: [UInt8])
    case miss
    /// The entry existed but was damaged (the reason); it has been deleted.
    case corrupt(String)
  }

  /// The cache for this process's identity under `root`, or the default location; nil when
  /// disabled.
  public static func standard(identity: String) -> KernelDiskCache? {
    let root: String
    if let configured = getenv("TTFC_CACHE_DIR").map({ String(cString: $0) }) {
      if configured.isEmpty || configured == "off" { return nil }
      root = configured
    } else if let xdg = getenv("XDG_CACHE_HOME").map({ String(cString: $0) }), !xdg.isEmpty {
      root = xdg + "/ttfc"
    } else if let home = getenv("HOME").map({ String(cString: $0) }), !home.isEmpty {
      root = home + "/.cache/ttfc"
    } else {
      return nil
    }
    return KernelDiskCache(root: root, identity: identity)
  }

  public init?(root: String, identity: String) {
    directory = root + "/kernels-" + Self.hex(Self.hash128(identity))
    let existed = access(directory, F_OK) == 0
    guard Self.makeDirectories(directory) else { return nil }
    let marker = directory + "/" + Self.markerName
    if access(marker, F_OK) != 0 { _ = AtomicFile.write(Array("ttfc kernel cache\n".utf8), to: marker, durable: false) }
    sweepTemporaryFiles()
    // Each rebuilt ttfc starts a directory of its own; when one starts, the directories of
    // builds unused for a week go.
    if !existed { Self.removeStaleSiblings(of: directory, root: root, olderThan: 7 * 24 * 3600) }
  }

  /// Whether `name` is a cache directory name ttfc makes: "kernels-" and 32 lowercase hex digits.
  static func isCacheDirectoryName(_ name: String) -> Bool {
    let hexDigits = name.utf8.dropFirst(8)
    return name.hasPrefix("kernels-") && hexDigits.count == 32 && hexDigits.allSatisfy { (48...57).contains($0) || (97...102).contains($0) }
  }

  /// Whether `name` is a file ttfc writes into a cache directory: an entry (32 hex digits and
  /// ".ttko"), a writer's temporary file of one (".tmp.PID.N" after that), or the marker.
  static func isCacheFileName(_ name: String) -> Bool {
    if name == markerName || name.hasPrefix(markerName + ".tmp.") { return true }
    let entry = name.utf8.prefix(32)
    guard entry.count == 32, entry.allSatisfy({ (48...57).contains($0) || (97...102).contains($0) }) else { return false }
    let rest = String(decoding: name.utf8.dropFirst(32), as: UTF8.self)
    return rest == ".ttko" || rest.hasPrefix(".ttko.tmp.")
  }

  /// Removes the cache directories of other builds unused for `seconds`: only real directories
  /// (never a symlink) named like ours that hold the marker, and in them only files of our naming
  /// (a directory left with anything else stays).
  static func removeStaleSiblings(of directory: String, root: String, olderThan seconds: Int) {
    guard let dir = opendir(root) else { return }
    var stale: [String] = []
    var now = timespec()
    clock_gettime(CLOCK_REALTIME, &now)
    while let entry = readdir(dir) {
      let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
      let path = root + "/" + name
      var stats = stat(), markerStats = stat()
      guard isCacheDirectoryName(name), path != directory, lstat(path, &stats) == 0, (stats.st_mode & S_IFMT) == S_IFDIR,
            now.tv_sec - stats.st_mtim.tv_sec > seconds,
            lstat(path + "/" + markerName, &markerStats) == 0, (markerStats.st_mode & S_IFMT) == S_IFREG else { continue }
      stale.append(path)
    }
    closedir(dir)
    for path in stale {
      guard let inner = opendir(path) else { continue }
      var files: [String] = []
      while let entry = readdir(inner) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        var stats = stat()
        if isCacheFileName(name), name != markerName, lstat(path + "/" + name, &stats) == 0, (stats.st_mode & S_IFMT) == S_IFREG {
          files.append(name)
        }
      }
      closedir(inner)
      for name in files { unlink(path + "/" + name) }
      // The marker goes last and only when nothing else is left, so a directory someone shares
      // with other files keeps them and stays recognizable.
      var remaining = 0
      if let check = opendir(path) {
        while let entry = readdir(check) {
          let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
          if name != "." && name != ".." && name != markerName { remaining += 1 }
        }
        closedir(check)
      }
      if remaining == 0 { unlink(path + "/" + markerName); rmdir(path) }
    }
  }

  /// What besides a kernel's region decides its machine code.
  public static func identity(llvmVersion: String, triple: String, cpu: String, features: String) -> String {
    var stats = stat()
    let binary = stat("/proc/self/exe", &stats) == 0 ? "\(stats.st_size)-\(stats.st_mtim.tv_sec).\(stats.st_mtim.tv_nsec)" : "unknown-binary"
    return [codegenVersion, llvmVersion, triple, cpu, features, binary].joined(separator: "|")
  }

  public func path(for key: String) -> String { directory + "/" + Self.hex(Self.hash128(key)) + ".ttko" }

  /// The entry for `key`: its symbol name and object bytes, a miss, or a detected corruption.
  public func read(key: String) -> ReadResult {
    let file = path(for: key)
    guard let bytes = AtomicFile.read(file) else { return .miss }
    func corrupt(_ reason: String) -> ReadResult {
      unlink(file)
      return .corrupt("\(file): \(reason)")
    }
    let header = Self.magic.count + 4 + 4 + 8 + 4
    guard bytes.count >= header, Array(bytes[0..<Self.magic.count]) == Self.magic else { return corrupt("not a kernel cache entry") }
    var offset = Self.magic.count
    func integer(_ width: Int) -> Int {
      var value = 0
      for i in 0..<width { value |= Int(bytes[offset + i]) << (8 * i) }
      offset += width
      return value
    }
    let keyLength = integer(4), nameLength = integer(4), objectLength = integer(8), crc = integer(4)
    // Lengths come from the file: add them overflow-checked (a forged 8-byte length is near Int.max).
    let (withKey, o1) = header.addingReportingOverflow(keyLength)
    let (withName, o2) = withKey.addingReportingOverflow(nameLength)
    let (total, o3) = withName.addingReportingOverflow(objectLength)
    guard keyLength >= 0, nameLength >= 0, objectLength >= 0, !o1, !o2, !o3,
          total == bytes.count else { return corrupt("truncated or padded entry") }
    let body = Array(bytes[header...])
    guard Int(CRC32.checksum(of: body)) == crc else { return corrupt("checksum mismatch") }
    let storedKey = String(decoding: body[0..<keyLength], as: UTF8.self)
    guard storedKey == key else { return corrupt("hash collision with another kernel") }
    let name = String(decoding: body[keyLength..<(keyLength + nameLength)], as: UTF8.self)
    return .hit(name: name, object: Array(body[(keyLength + nameLength)...]))
  }

  /// Stores an entry atomically (temporary file, rename; not fsync'd). False if the disk refused.
  @discardableResult
  public func write(key: String, name: String, object: [UInt8]) -> Bool {
    let body = Array(key.utf8) + Array(name.utf8) + object
    var bytes = Self.magic
    func append(_ value: Int, _ width: Int) { for i in 0..<width { bytes.append(UInt8((value >> (8 * i)) & 0xff)) } }
    append(key.utf8.count, 4); append(name.utf8.count, 4); append(object.count, 8); append(Int(CRC32.checksum(of: body)), 4)
    bytes += body
    return AtomicFile.write(bytes, to: path(for: key), durable: false) == nil
  }

  /// Removes temporary files older than an hour (left by killed writers).
  func sweepTemporaryFiles() {
    guard let dir = opendir(directory) else { return }
    defer { closedir(dir) }
    var now = timespec()
    clock_gettime(CLOCK_REALTIME, &now)
    while let entry = readdir(dir) {
      let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
      guard name.contains(".tmp."), Self.isCacheFileName(name) else { continue }
      var stats = stat()
      let file = directory + "/" + name
      if lstat(file, &stats) == 0, (stats.st_mode & S_IFMT) == S_IFREG, now.tv_sec - stats.st_mtim.tv_sec > 3600 { unlink(file) }
    }
  }

  // MARK: helpers

  static func makeDirectories(_ path: String) -> Bool {
    var current = path.hasPrefix("/") ? "" : "."
    for part in path.split(separator: "/") {
      current += "/" + part
      if mkdir(current, 0o755) != 0 && errno != EEXIST { return false }
    }
    var stats = stat()
    return stat(path, &stats) == 0 && (stats.st_mode & S_IFMT) == S_IFDIR
  }

  /// Two FNV-1a 64-bit hashes with different offsets: 128 bits, so distinct kernels do not share a
  /// symbol name or an entry by accident (and the stored key catches it if they ever do).
  public static func hash128(_ text: String) -> (UInt64, UInt64) {
    var a: UInt64 = 0xcbf29ce484222325, b: UInt64 = 0x84222325cbf29ce4
    for byte in text.utf8 {
      a = (a ^ UInt64(byte)) &* 0x100000001b3
      b = (b ^ UInt64(byte)) &* 0x100000001b3
      b = b ^ (b >> 29)
    }
    return (a, b)
  }

  public static func hex(_ h: (UInt64, UInt64)) -> String {
    func pad(_ v: UInt64) -> String { let s = String(v, radix: 16); return String(repeating: "0", count: 16 - s.count) + s }
    return pad(h.0) + pad(h.1)
  }
}
