// OutputFiles — writing a file the user named (`ttfc opt -o`, `fmt -i`, `train --emit-ir`): what
// the name stands for decides how. A regular file (or a new one) is replaced atomically
// (AtomicFile: never half a file) and keeps its permission bits; a symlink, dangling or not, keeps
// pointing where it did and its target receives the text; a device, FIFO or socket (/dev/null,
// /dev/stdout on a pipe) is written directly, since a rename over it would replace the device
// node with a regular file; a directory, an empty name, a missing directory and a cycle of
// symlinks are named errors.

import Glibc

/// Why an output file could not be written; the description completes "cannot write 'PATH': ".
public enum OutputFileError: Error, Equatable, CustomStringConvertible {
  case emptyPath
  case isDirectory
  case directoryMissing
  case symlinkCycle
  /// The system's reason (strerror), e.g. "No space left on device".
  case failed(reason: String)

  public var description: String {
    switch self {
    case .emptyPath: return "an empty path"
    case .isDirectory: return "it is a directory"
    case .directoryMissing: return "its directory does not exist"
    case .symlinkCycle: return "too many levels of symbolic links"
    case .failed(let reason): return reason
    }
  }
}

extension AtomicFile {
  /// Most symlinks followed before a name counts as a cycle (Linux's own limit).
  static let maximumSymlinkHops = 40

  /// Writes `bytes` to the output file `path` as the header says.
  public static func writeOutput(_ bytes: [UInt8], to path: String) throws(OutputFileError) {
    guard !path.isEmpty else { throw .emptyPath }
    var info = stat()
    // What the name finally stands for: the kernel follows every link (/proc/self/fd's too).
    if stat(path, &info) == 0 {
      switch info.st_mode & S_IFMT {
      case S_IFDIR: throw .isDirectory
      case S_IFREG: break
      default:
        try writeInPlace(bytes, to: path)
        return
      }
    }
    guard let target = followingSymlinks(path) else { throw .symlinkCycle }
    let permissions: mode_t? = stat(target, &info) == 0 ? info.st_mode & 0o7777 : nil
    if let failure = replace(target, with: bytes, durable: true, permissions: permissions) {
      throw failure == ENOENT ? .directoryMissing : .failed(reason: describe(failure))
    }
  }

  /// Writes into an existing file that is not replaced (a device, FIFO or socket).
  static func writeInPlace(_ bytes: [UInt8], to path: String) throws(OutputFileError) {
    let fd = open(path, O_WRONLY | O_CLOEXEC)
    guard fd >= 0 else { throw .failed(reason: describe(errno)) }
    let failure = writeAll(bytes, to: fd)
    close(fd)
    if let failure { throw .failed(reason: describe(failure)) }
  }

  /// The name `path` leads to once its symlinks are followed — a dangling link's missing target
  /// too, which writing creates — or nil when the links go on longer than a cycle allows.
  static func followingSymlinks(_ path: String) -> String? {
    var name = path
    for _ in 0..<maximumSymlinkHops {
      guard let destination = symlinkDestination(name) else { return name }
      if destination.hasPrefix("/") {
        name = destination
      } else {
        // A relative destination is relative to the directory holding the link.
        let slash = name.lastIndex(of: "/")
        name = slash.map { String(name[...$0]) + destination } ?? destination
      }
    }
    return nil
  }

  /// What the symlink `path` points to, or nil when `path` is not a symlink.
  static func symlinkDestination(_ path: String) -> String? {
    var buffer = [UInt8](repeating: 0, count: Int(PATH_MAX))
    let count = buffer.withUnsafeMutableBytes { readlink(path, $0.baseAddress!.assumingMemoryBound(to: CChar.self), $0.count) }
    guard count >= 0 else { return nil }
    return String(decoding: buffer[0..<count], as: UTF8.self)
  }
}
