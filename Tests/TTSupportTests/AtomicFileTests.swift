// AtomicFile: a failed write (part way, or at the rename) leaves the old file as it was and no
// temporary behind; concurrent readers see a whole old or whole new file, never a part; abandoned
// temporaries of dead writers are swept and nothing else is. Output files the user names: symlinks
// (dangling, chained, cyclic), kept permissions, FIFOs and device nodes written in place (only
// ones these tests make: never /dev/null), directories and missing directories named.
import Dispatch
import Foundation
import Glibc
import Testing
@testable import TTSupport

/// A fresh empty directory for one test.
func scratchDirectory() throws -> String {
  let path = NSTemporaryDirectory() + "ttsupport-\(getpid())-\(UUID().uuidString)"
  try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
  return path
}

/// The names in `directory`, sorted.
func entries(_ directory: String) -> [String] {
  ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).sorted()
}

func contents(_ path: String) -> String? {
  AtomicFile.read(path).map { String(decoding: $0, as: UTF8.self) }
}

func fileType(_ path: String, followingLinks: Bool = false) -> mode_t? {
  var info = stat()
  let found = followingLinks ? stat(path, &info) : lstat(path, &info)
  return found == 0 ? info.st_mode & S_IFMT : nil
}

struct AtomicFileTests {
  @Test func writesReplaceWholeFilesAndLeaveNothingElse() throws {
    let dir = try scratchDirectory()
    let path = dir + "/state.bin"
    #expect(AtomicFile.write(Array("first".utf8), to: path) == nil)
    #expect(contents(path) == "first")
    #expect(AtomicFile.write(Array("second, longer".utf8), to: path, durable: false) == nil)
    #expect(contents(path) == "second, longer")
    #expect(AtomicFile.write([], to: path) == nil)
    #expect(AtomicFile.read(path) == [])
    #expect(entries(dir) == ["state.bin"])
  }

  @Test func aWriteFailingPartWayLeavesTheOldFile() throws {
    let dir = try scratchDirectory()
    let path = dir + "/checkpoint"
    #expect(AtomicFile.write(Array("the good old state".utf8), to: path) == nil)
    // The disk fills after 10 bytes of the new contents.
    var written = 0
    let failing: AtomicFile.ByteWriter = { fd, bytes, count in
      if written >= 10 { errno = ENOSPC; return -1 }
      let n = Glibc.write(fd, bytes, min(count, 10 - written))
      written += max(n, 0)
      return n
    }
    let failure = AtomicFile.replace(path, with: [UInt8](repeating: 7, count: 4096), durable: true, writingWith: failing)
    #expect(failure == ENOSPC)
    #expect(written == 10, "the write did begin")
    #expect(contents(path) == "the good old state")
    #expect(entries(dir) == ["checkpoint"], "no temporary left behind")
    // A writer that makes no progress without an error is a failure too, not an endless loop.
    #expect(AtomicFile.replace(path, with: [1, 2, 3], durable: false, writingWith: { _, _, _ in 0 }) == EIO)
    #expect(contents(path) == "the good old state")
    #expect(entries(dir) == ["checkpoint"])
  }

  @Test func aFailedRenameLeavesTheTargetAndNoTemporary() throws {
    let dir = try scratchDirectory()
    let target = dir + "/occupied"
    try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: false)
    _ = FileManager.default.createFile(atPath: target + "/inside", contents: Data("keep".utf8))
    let reason = AtomicFile.write(Array("x".utf8), to: target)
    #expect(reason != nil)
    #expect(fileType(target) == S_IFDIR && contents(target + "/inside") == "keep")
    #expect(entries(dir) == ["occupied"])
    #expect(AtomicFile.write(Array("x".utf8), to: dir + "/no/such/directory/file") != nil)
    #expect(entries(dir) == ["occupied"])
  }

  @Test func concurrentReadersSeeOnlyWholeFiles() throws {
    let dir = try scratchDirectory()
    let path = dir + "/shared"
    let small = [UInt8](repeating: UInt8(ascii: "a"), count: 300_000)
    let large = [UInt8](repeating: UInt8(ascii: "b"), count: 700_000)
    #expect(AtomicFile.write(small, to: path, durable: false) == nil)
    final class Tally: @unchecked Sendable { var torn = 0; var reads = 0; let lock = NSLockish() }
    let tally = Tally()
    DispatchQueue.concurrentPerform(iterations: 3) { worker in
      if worker == 0 {
        for round in 0..<60 { _ = AtomicFile.write(round % 2 == 0 ? large : small, to: path, durable: false) }
      } else {
        for _ in 0..<150 {
          guard let bytes = AtomicFile.read(path) else { continue }
          let whole = bytes == small || bytes == large
          tally.lock.withLock { tally.reads += 1; if !whole { tally.torn += 1 } }
        }
      }
    }
    #expect(tally.reads >= 250, "every read found a file")
    #expect(tally.torn == 0, "\(tally.torn) of \(tally.reads) reads saw a partial file")
    #expect(entries(dir) == ["shared"])
  }

  @Test func onlyDeadWritersTemporariesAreSwept() throws {
    let dir = try scratchDirectory()
    let finished = Process()
    finished.executableURL = URL(fileURLWithPath: "/bin/true")
    try finished.run()
    finished.waitUntilExit()
    let dead = finished.processIdentifier
    let swept = ["checkpoint.tmp.\(dead).1", "table.a.ttemb.tmp.\(dead).12"]
    let kept = ["notes.txt.tmp.\(dead).1",                  // not ours (isOurs says no)
                "checkpoint.tmp.\(getpid()).3",             // this process: a live writer
                "checkpoint.tmp.1.4",                       // pid 1 is alive
                "checkpoint.tmp.\(dead).x",                 // not a counter
                "checkpoint"]
    for name in swept + kept { _ = FileManager.default.createFile(atPath: dir + "/" + name, contents: Data([1])) }
    try FileManager.default.createSymbolicLink(atPath: dir + "/checkpoint.tmp.\(dead).9", withDestinationPath: dir + "/checkpoint")
    let removed = AtomicFile.removeAbandonedTemporaries(in: dir) { $0 == "checkpoint" || $0.hasSuffix(".ttemb") }
    #expect(removed == swept.count)
    #expect(entries(dir) == (kept + ["checkpoint.tmp.\(dead).9"]).sorted(), "a symlink is never swept")
  }

  @Test func readRefusesWhatIsNotARegularFile() throws {
    let dir = try scratchDirectory()
    #expect(AtomicFile.read(dir + "/missing") == nil)
    #expect(AtomicFile.read(dir) == nil)
    #expect(mkfifo(dir + "/fifo", 0o600) == 0)
    #expect(AtomicFile.read(dir + "/fifo") == nil, "a FIFO is refused at once, not waited on")
  }
}

struct OutputFileTests {
  @Test func newAndRewrittenFilesKeepTheirPermissions() throws {
    let dir = try scratchDirectory()
    let path = dir + "/out.ttir"
    try AtomicFile.writeOutput(Array("one".utf8), to: path)
    #expect(contents(path) == "one")
    chmod(path, 0o640)
    try AtomicFile.writeOutput(Array("two".utf8), to: path)
    var info = stat()
    #expect(stat(path, &info) == 0 && info.st_mode & 0o7777 == 0o640)
    #expect(contents(path) == "two")
    #expect(entries(dir) == ["out.ttir"])
  }

  @Test func symlinksStayAndTheirTargetsReceiveTheText() throws {
    let dir = try scratchDirectory()
    // A relative link to an existing file, through a second link.
    try "old".write(toFile: dir + "/real.ttir", atomically: false, encoding: .utf8)
    chmod(dir + "/real.ttir", 0o600)
    try FileManager.default.createSymbolicLink(atPath: dir + "/first", withDestinationPath: "second")
    try FileManager.default.createSymbolicLink(atPath: dir + "/second", withDestinationPath: "real.ttir")
    try AtomicFile.writeOutput(Array("new".utf8), to: dir + "/first")
    #expect(fileType(dir + "/first") == S_IFLNK && fileType(dir + "/second") == S_IFLNK)
    #expect(contents(dir + "/real.ttir") == "new")
    var info = stat()
    #expect(stat(dir + "/real.ttir", &info) == 0 && info.st_mode & 0o7777 == 0o600, "the target keeps its permissions")
    // A dangling link (relative, into a subdirectory) creates its target.
    try FileManager.default.createDirectory(atPath: dir + "/sub", withIntermediateDirectories: false)
    try FileManager.default.createSymbolicLink(atPath: dir + "/dangling", withDestinationPath: "sub/made.ttir")
    try AtomicFile.writeOutput(Array("made".utf8), to: dir + "/dangling")
    #expect(fileType(dir + "/dangling") == S_IFLNK)
    #expect(contents(dir + "/sub/made.ttir") == "made")
    // An absolute link.
    try FileManager.default.createSymbolicLink(atPath: dir + "/absolute", withDestinationPath: dir + "/sub/abs.ttir")
    try AtomicFile.writeOutput(Array("abs".utf8), to: dir + "/absolute")
    #expect(fileType(dir + "/absolute") == S_IFLNK && contents(dir + "/sub/abs.ttir") == "abs")
    #expect(entries(dir) == ["absolute", "dangling", "first", "real.ttir", "second", "sub"])
    #expect(entries(dir + "/sub") == ["abs.ttir", "made.ttir"])
  }

  @Test func whatCannotBeWrittenIsNamed() throws {
    let dir = try scratchDirectory()
    #expect(throws: OutputFileError.emptyPath) { try AtomicFile.writeOutput([1], to: "") }
    #expect(throws: OutputFileError.isDirectory) { try AtomicFile.writeOutput([1], to: dir) }
    try FileManager.default.createSymbolicLink(atPath: dir + "/to-dir", withDestinationPath: dir)
    #expect(throws: OutputFileError.isDirectory) { try AtomicFile.writeOutput([1], to: dir + "/to-dir") }
    #expect(throws: OutputFileError.directoryMissing) { try AtomicFile.writeOutput([1], to: dir + "/no/such/out.ttir") }
    try FileManager.default.createSymbolicLink(atPath: dir + "/loop-a", withDestinationPath: "loop-b")
    try FileManager.default.createSymbolicLink(atPath: dir + "/loop-b", withDestinationPath: "loop-a")
    #expect(throws: OutputFileError.symlinkCycle) { try AtomicFile.writeOutput([1], to: dir + "/loop-a") }
    #expect(fileType(dir + "/loop-a") == S_IFLNK && fileType(dir + "/loop-b") == S_IFLNK, "the links were not replaced")
    #expect(entries(dir) == ["loop-a", "loop-b", "to-dir"])
    #expect(OutputFileError.isDirectory.description == "it is a directory")
    #expect(OutputFileError.directoryMissing.description == "its directory does not exist")
  }

  @Test func aFIFOIsWrittenInPlaceNotReplaced() throws {
    let dir = try scratchDirectory()
    let fifo = dir + "/pipe"
    #expect(mkfifo(fifo, 0o600) == 0)
    // The reading end is opened first (non-blocking), so the writer's open does not wait; the
    // text fits the pipe's buffer. Had the FIFO been replaced, the reader would find nothing.
    let reader = open(fifo, O_RDONLY | O_NONBLOCK)
    #expect(reader >= 0)
    defer { close(reader) }
    try AtomicFile.writeOutput(Array("through the pipe".utf8), to: fifo)
    var buffer = [UInt8](repeating: 0, count: 64)
    let n = read(reader, &buffer, buffer.count)
    #expect(n >= 0 && String(decoding: buffer[0..<max(n, 0)], as: UTF8.self) == "through the pipe")
    #expect(fileType(fifo) == S_IFIFO)
    #expect(entries(dir) == ["pipe"])
  }

  /// A character device of this test's own making (a copy of /dev/null's node: major 1, minor
  /// 3), where the filesystem allows device nodes: it stays a device, whatever the write gives.
  @Test func aDeviceNodeIsNeverReplaced() throws {
    let dir = try scratchDirectory()
    let node = dir + "/null"
    guard mknod(node, S_IFCHR | 0o666, dev_t((1 << 8) | 3)) == 0 else { return }   // not root, or no device nodes here
    _ = try? AtomicFile.writeOutput(Array("discarded".utf8), to: node)
    #expect(fileType(node) == S_IFCHR)
    #expect(entries(dir) == ["null"])
  }
}
