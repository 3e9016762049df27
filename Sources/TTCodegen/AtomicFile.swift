// AtomicFile — whole-file reads and crash-safe writes, shared by the kernel cache on disk and
// training checkpoints. A write goes to a temporary file unique to this process and call in the
// same directory, is fsync'd (durable writes), renamed over the target and the directory fsync'd:
// readers (other processes included) see the old file or the new one, never a part. The kernel
// cache writes without the fsyncs: after a power loss an entry may be empty or torn, which its
// CRC and stored key detect (the kernel is recompiled), and the two fsyncs per kernel cost a cold
// compile 20-40 ms (W5).

import Glibc

public enum AtomicFile {
  nonisolated(unsafe) private static var counter = 0
  private static let lock = NSLockish()

  /// Writes `bytes` to `path` atomically; nil on success, else why it failed (nothing replaced).
  /// `durable`: also on stable storage before returning (fsync of the file and its directory).
  public static func write(_ bytes: [UInt8], to path: String, durable: Bool = true) -> String? {
    let suffix = lock.withLock { counter += 1; return counter }
    let temporary = path + ".tmp.\(getpid()).\(suffix)"
    let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL, 0o644)
    guard fd >= 0 else { return String(cString: strerror(errno)) }
    var written = 0
    let ok: Bool = bytes.withUnsafeBytes { raw in
      while written < raw.count {
        let n = Glibc.write(fd, raw.baseAddress! + written, raw.count - written)
        if n <= 0 { return false }
        written += n
      }
      return !durable || fsync(fd) == 0
    }
    let failure = ok ? nil : String(cString: strerror(errno))
    close(fd)
    guard ok else { unlink(temporary); return failure }
    guard rename(temporary, path) == 0 else {
      let reason = String(cString: strerror(errno))
      unlink(temporary)
      return reason
    }
    guard durable else { return nil }
    let slash = path.lastIndex(of: "/")
    let directory = slash.map { String(path[..<$0]) } ?? "."
    let dirfd = open(directory.isEmpty ? "/" : directory, O_RDONLY)
    if dirfd >= 0 { fsync(dirfd); close(dirfd) }
    return nil
  }

  /// Removes temporary files that writers which no longer run left in `directory` (killed during a
  /// write): names `TARGET.tmp.PID.N` of this module's making, whose TARGET passes `isOurs`, whose
  /// PID is not a running process, and which are regular files (never a symlink). Returns how many.
  @discardableResult
  public static func removeAbandonedTemporaries(in directory: String, isOurs: (String) -> Bool) -> Int {
    guard let dir = opendir(directory.isEmpty ? "." : directory) else { return 0 }
    var abandoned: [String] = []
    while let entry = readdir(dir) {
      let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
      let parts = name.split(separator: ".", omittingEmptySubsequences: false)
      guard parts.count >= 4, parts[parts.count - 3] == "tmp", let pid = Int32(parts[parts.count - 2]), pid > 0,
            UInt64(parts[parts.count - 1]) != nil, pid != getpid(),
            isOurs(parts[..<(parts.count - 3)].joined(separator: ".")) else { continue }
      // A live writer's file is in use; only a process that is gone (ESRCH) abandoned its file.
      guard kill(pid, 0) != 0, errno == ESRCH else { continue }
      var stats = stat()
      let path = (directory.isEmpty ? "." : directory) + "/" + name
      if lstat(path, &stats) == 0, (stats.st_mode & S_IFMT) == S_IFREG { abandoned.append(path) }
    }
    closedir(dir)
    for path in abandoned { unlink(path) }
    return abandoned.count
  }

  /// The whole file, or nil when it cannot be read.
  public static func read(_ path: String) -> [UInt8]? {
    // Non-blocking open, then regular files only: a FIFO (or device) planted in place of the
    // file would otherwise block the open or the read forever.
    let fd = open(path, O_RDONLY | O_NONBLOCK)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var stats = stat()
    guard fstat(fd, &stats) == 0, (stats.st_mode & S_IFMT) == S_IFREG else { return nil }
    var bytes = [UInt8](repeating: 0, count: Int(stats.st_size))
    var done = 0
    let ok: Bool = bytes.withUnsafeMutableBytes { raw in
      while done < raw.count {
        let n = Glibc.read(fd, raw.baseAddress! + done, raw.count - done)
        if n <= 0 { return false }
        done += n
      }
      return true
    }
    return ok ? bytes : nil
  }
}
