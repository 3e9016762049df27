// AtomicFile — whole-file reads and crash-safe writes: kernel-cache entries, training checkpoints
// and table files, and (OutputFiles.swift) the outputs a user names on the command line. A write
// goes to a temporary file unique to this process and call in the same directory, is fsync'd
// (durable writes), renamed over the target and the directory fsync'd: readers (other processes
// included) see the old file or the new one, never a part, and a write that fails leaves the old
// file as it was and no temporary behind. The kernel cache writes without the fsyncs: after a
// power loss an entry may be empty or torn, which its CRC and stored key detect (the kernel is
// recompiled), and the two fsyncs per kernel cost a cold compile 20-40 ms (W5).

import Glibc

public enum AtomicFile {
  nonisolated(unsafe) private static var counter = 0
  private static let lock = NSLockish()

  /// Writes `bytes` to `path` atomically; nil on success, else why it failed (nothing replaced).
  /// `durable`: also on stable storage before returning (fsync of the file and its directory).
  public static func write(_ bytes: [UInt8], to path: String, durable: Bool = true) -> String? {
    replace(path, with: bytes, durable: durable).map(describe)
  }

  /// Writes up to `count` bytes from `bytes` to the open file `fd`: how many were written, or -1
  /// with errno set. Glibc's `write`; tests pass one that fails part way.
  typealias ByteWriter = (_ fd: Int32, _ bytes: UnsafeRawPointer, _ count: Int) -> Int

  /// The atomic write itself; returns nil on success, else the errno of the step that failed.
  /// `permissions`: the new file's mode bits (else 0644 less the umask).
  static func replace(_ path: String, with bytes: [UInt8], durable: Bool, permissions: mode_t? = nil,
                      writingWith writeBytes: ByteWriter = { Glibc.write($0, $1, $2) }) -> Int32? {
    let suffix = lock.withLock { counter += 1; return counter }
    let temporary = path + ".tmp.\(getpid()).\(suffix)"
    let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
    guard fd >= 0 else { return errno }
    var failure: Int32? = nil
    if let permissions, fchmod(fd, permissions) != 0 { failure = errno }
    if failure == nil { failure = writeAll(bytes, to: fd, writingWith: writeBytes) }
    if failure == nil, durable, fsync(fd) != 0 { failure = errno }
    if close(fd) != 0, failure == nil { failure = errno }
    if failure == nil, rename(temporary, path) != 0 { failure = errno }
    if let failure {
      unlink(temporary)
      return failure
    }
    if durable {
      let slash = path.lastIndex(of: "/")
      let directory = slash.map { String(path[..<$0]) } ?? "."
      let dirfd = open(directory.isEmpty ? "/" : directory, O_RDONLY | O_CLOEXEC)
      if dirfd >= 0 { fsync(dirfd); close(dirfd) }
    }
    return nil
  }

  /// Writes every byte to `fd` (retrying short and interrupted writes); nil, or the errno.
  static func writeAll(_ bytes: [UInt8], to fd: Int32, writingWith writeBytes: ByteWriter = { Glibc.write($0, $1, $2) }) -> Int32? {
    bytes.withUnsafeBytes { raw -> Int32? in
      var written = 0
      while written < raw.count {
        let n = writeBytes(fd, raw.baseAddress! + written, raw.count - written)
        if n < 0 && errno == EINTR { continue }
        if n < 0 { return errno }
        if n == 0 { return EIO }       // no progress and no error: never loop on it
        written += n
      }
      return nil
    }
  }

  /// The C library's text for an errno value.
  static func describe(_ code: Int32) -> String { String(cString: strerror(code)) }

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
    let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var stats = stat()
    guard fstat(fd, &stats) == 0, (stats.st_mode & S_IFMT) == S_IFREG else { return nil }
    var bytes = [UInt8](repeating: 0, count: Int(stats.st_size))
    var done = 0
    let ok: Bool = bytes.withUnsafeMutableBytes { raw in
      while done < raw.count {
        let n = Glibc.read(fd, raw.baseAddress! + done, raw.count - done)
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { return false }
        done += n
      }
      return true
    }
    return ok ? bytes : nil
  }
}
