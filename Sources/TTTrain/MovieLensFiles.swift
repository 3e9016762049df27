// MovieLensFiles — ratings files as MovieLens ships them, read and written without holding the
// text: `ratings.csv` (ml-20m, ml-25m, ml-latest: the header userId,movieId,rating,timestamp,
// comma-separated) and `ratings.dat` (ml-1m, ml-10m: UserID::MovieID::Rating::Timestamp, no
// header). The reader maps the file and parses bytes; CRLF line ends and blank lines are
// accepted; everything else that is not a rating (another separator, a missing or extra field,
// a number that does not parse, an id outside 0...2^63-1, an empty file) is a named error with
// the file and line.

import Foundation

extension MovieLens {
  /// The two layouts of a MovieLens ratings file.
  public enum FileFormat: Equatable, Sendable {
    /// `userId,movieId,rating,timestamp` header, comma-separated fields (more columns allowed).
    case csv
    /// `UserID::MovieID::Rating::Timestamp` lines, no header (ml-1m, ml-10m).
    case dat
  }

  /// The format a path is written in: `.dat` files as ratings.dat, anything else as ratings.csv.
  public static func format(forPath path: String) -> FileFormat { path.lowercased().hasSuffix(".dat") ? .dat : .csv }

  /// Reads a ratings.csv or ratings.dat (the format is recognized from the first line).
  public static func read(_ path: String) throws(DataError) -> [Rating] {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { throw .cannotRead("cannot read ratings file '\(path)': no such file") }
    guard !isDirectory.boolValue else { throw .cannotRead("cannot read ratings file '\(path)': it is a directory") }
    let data: Data
    do { data = try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped) } catch {
      throw .cannotRead("cannot read ratings file '\(path)': \(error.localizedDescription)")
    }
    var result: Result<[Rating], DataError> = .success([])
    data.withUnsafeBytes { bytes in
      do throws(DataError) { result = .success(try parse(bytes, name: path)) } catch { result = .failure(error) }
    }
    return try result.get()
  }

  /// Parses the bytes of a ratings file; `name` prefixes every error (`name:line: ...`).
  public static func parse(_ bytes: UnsafeRawBufferPointer, name: String) throws(DataError) -> [Rating] {
    var parser = RatingsParser(bytes: bytes, name: name)
    return try parser.ratings()
  }
}

/// The byte-level reader behind `MovieLens.parse`.
struct RatingsParser {
  let bytes: UnsafeRawBufferPointer
  let name: String
  var offset = 0
  var lineNumber = 0

  init(bytes: UnsafeRawBufferPointer, name: String) {
    self.bytes = bytes
    self.name = name
  }

  static let header = ["userId", "movieId", "rating", "timestamp"]
  static let formats = "expected MovieLens ratings: a ratings.csv whose first line is the header userId,movieId,rating,timestamp "
    + "(ml-20m, ml-25m, ml-latest) or a ratings.dat of UserID::MovieID::Rating::Timestamp lines (ml-1m, ml-10m)"

  /// The next line without its line end (LF or CRLF), or nil at the end of the bytes.
  mutating func nextLine() -> UnsafeRawBufferPointer? {
    guard offset < bytes.count else { return nil }
    lineNumber += 1
    let start = offset
    var end = bytes.count
    if let found = memchr(bytes.baseAddress! + start, 0x0A, bytes.count - start) {
      end = bytes.baseAddress!.distance(to: UnsafeRawPointer(found))
      offset = end + 1
    } else {
      offset = bytes.count
    }
    if end > start && bytes[end - 1] == 0x0D { end -= 1 }
    return UnsafeRawBufferPointer(rebasing: bytes[start..<end])
  }

  static func isBlank(_ line: UnsafeRawBufferPointer) -> Bool { line.allSatisfy { $0 == 0x20 || $0 == 0x09 || $0 == 0x0D } }

  /// A line for an error message: printable ASCII, others escaped, at most 60 characters.
  static func shown(_ line: UnsafeRawBufferPointer) -> String {
    var text = ""
    for byte in line.prefix(60) {
      text += (0x20..<0x7F).contains(byte) ? String(UnicodeScalar(byte)) : "\\x" + String(byte, radix: 16, uppercase: true).leftPadded(to: 2)
    }
    return text + (line.count > 60 ? "..." : "")
  }

  func failure(_ message: String) -> DataError { .malformed("\(name):\(lineNumber): \(message)") }

  mutating func ratings() throws(DataError) -> [Rating] {
    // The first non-blank line tells the format (a UTF-8 byte order mark before it is skipped).
    var first: UnsafeRawBufferPointer?
    while let line = nextLine() {
      if !Self.isBlank(line) { first = line; break }
    }
    guard var line = first else { throw .malformed("\(name): the file is empty (no ratings)") }
    if line.starts(with: [0xEF, 0xBB, 0xBF]) { line = UnsafeRawBufferPointer(rebasing: line[3...]) }
    var ratings: [Rating] = []
    ratings.reserveCapacity(bytes.count / 24)
    if Self.find("::", in: line) != nil {
      ratings.append(try record(line, format: .dat, columns: 4))
      try skipBlankLinesThenRecords(into: &ratings, format: .dat, columns: 4)
    } else {
      let header = Self.split(line, by: ",").map { String(decoding: $0, as: UTF8.self).trimmingCharacters(in: .whitespaces) }
      guard header.count >= 4, Array(header.prefix(4)) == Self.header else {
        throw failure("\(Self.formats); got '\(Self.shown(line))'")
      }
      try skipBlankLinesThenRecords(into: &ratings, format: .csv, columns: header.count)
      guard !ratings.isEmpty else { throw .malformed("\(name): no ratings after the header") }
    }
    return ratings
  }

  /// Reads every remaining line as a record (blank lines skipped).
  mutating func skipBlankLinesThenRecords(into ratings: inout [Rating], format: MovieLens.FileFormat, columns: Int) throws(DataError) {
    while let line = nextLine() {
      if Self.isBlank(line) { continue }
      ratings.append(try record(line, format: format, columns: columns))
    }
  }

  /// One rating from a line of `columns` fields.
  func record(_ line: UnsafeRawBufferPointer, format: MovieLens.FileFormat, columns: Int) throws(DataError) -> Rating {
    let fields = format == .dat ? Self.split(line, by: "::") : Self.split(line, by: ",")
    let layout = format == .dat ? "UserID::MovieID::Rating::Timestamp" : "userId,movieId,rating,timestamp"
    guard fields.count == columns else {
      if format == .csv && fields.count == 1 && (Self.find("::", in: line) != nil || line.contains(0x09) || line.contains(0x3B)) {
        throw failure("the fields are not separated by commas as the header's are ('\(Self.shown(line))')")
      }
      if format == .dat && fields.count == 1 && (line.contains(0x2C) || line.contains(0x09) || line.contains(0x3B)) {
        throw failure("the fields are not separated by '::' as the first line's are ('\(Self.shown(line))')")
      }
      throw failure("expected \(columns) fields (\(layout)\(columns > 4 ? ",..." : "")), got \(fields.count): '\(Self.shown(line))'")
    }
    let user = try identifier(fields[0], "userId"), item = try identifier(fields[1], "movieId")
    let text = Self.trimmed(fields[2])
    guard !text.isEmpty, text.count <= 32, let rating = Double(String(decoding: text, as: UTF8.self)), rating.isFinite else {
      throw failure("the rating '\(Self.shown(fields[2]))' is not a finite number")
    }
    guard let timestamp = Self.integer(Self.trimmed(fields[3]), allowsSign: true) else {
      throw failure("the timestamp '\(Self.shown(fields[3]))' is not an integer from -2^63 to 2^63-1")
    }
    return Rating(user: user, item: item, rating: rating, timestamp: timestamp)
  }

  func identifier(_ field: UnsafeRawBufferPointer, _ what: String) throws(DataError) -> Int64 {
    let digits = Self.trimmed(field)
    guard let value = Self.integer(digits, allowsSign: false) else {
      if !digits.isEmpty && digits.allSatisfy({ (0x30...0x39).contains($0) }) {
        throw failure("\(what) \(Self.shown(digits)) is out of range (ids are 0 to 9223372036854775807)")
      }
      throw failure("\(what) '\(Self.shown(field))' is not an id (an integer 0 to 9223372036854775807)")
    }
    return value
  }

  /// A decimal integer (an optional '-' when `allowsSign`), nil if it does not parse or overflows.
  static func integer(_ text: UnsafeRawBufferPointer, allowsSign: Bool) -> Int64? {
    var digits = text[...]
    let negative = allowsSign && digits.first == 0x2D
    if negative { digits = digits.dropFirst() }
    guard !digits.isEmpty else { return nil }
    var value: Int64 = 0
    for byte in digits {
      guard (0x30...0x39).contains(byte) else { return nil }
      let (times10, o1) = value.multipliedReportingOverflow(by: 10)
      let (next, o2) = negative ? times10.subtractingReportingOverflow(Int64(byte - 0x30)) : times10.addingReportingOverflow(Int64(byte - 0x30))
      guard !o1, !o2 else { return nil }
      value = next
    }
    return value
  }

  static func trimmed(_ field: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer {
    var start = 0, end = field.count
    while start < end && (field[start] == 0x20 || field[start] == 0x09) { start += 1 }
    while end > start && (field[end - 1] == 0x20 || field[end - 1] == 0x09) { end -= 1 }
    return UnsafeRawBufferPointer(rebasing: field[start..<end])
  }

  static func find(_ separator: String, in line: UnsafeRawBufferPointer) -> Int? {
    let pattern = Array(separator.utf8)
    guard line.count >= pattern.count else { return nil }
    for i in 0...(line.count - pattern.count) where line[i] == pattern[0] {
      if (1..<pattern.count).allSatisfy({ line[i + $0] == pattern[$0] }) { return i }
    }
    return nil
  }

  static func split(_ line: UnsafeRawBufferPointer, by separator: String) -> [UnsafeRawBufferPointer] {
    let pattern = Array(separator.utf8)
    var fields: [UnsafeRawBufferPointer] = []
    var start = 0, i = 0
    while i + pattern.count <= line.count {
      if line[i] == pattern[0] && (1..<pattern.count).allSatisfy({ line[i + $0] == pattern[$0] }) {
        fields.append(UnsafeRawBufferPointer(rebasing: line[start..<i]))
        i += pattern.count
        start = i
      } else {
        i += 1
      }
    }
    fields.append(UnsafeRawBufferPointer(rebasing: line[start..<line.count]))
    return fields
  }
}

extension String {
  func leftPadded(to width: Int) -> String { String(repeating: "0", count: max(0, width - count)) + self }
}

/// Writes ratings one at a time in MovieLens's format (`.dat` paths as ratings.dat, others as
/// ratings.csv with its header) through a buffer, to a temporary file renamed into place by
/// `finish()`: an interrupted write never leaves a partial file under the name.
public final class RatingsWriter {
  let path: String
  let temporaryPath: String
  let format: MovieLens.FileFormat
  var file: UnsafeMutablePointer<FILE>?
  var buffer: [UInt8] = []
  public private(set) var count = 0

  public init(path: String) throws(DataError) {
    self.path = path
    temporaryPath = path + ".partial"
    format = MovieLens.format(forPath: path)
    guard let opened = fopen(temporaryPath, "w") else {
      throw .cannotWrite("cannot write ratings to '\(path)': \(String(cString: strerror(errno)))")
    }
    file = opened
    buffer.reserveCapacity(1 << 20)
    if format == .csv { buffer += Array("userId,movieId,rating,timestamp\n".utf8) }
  }

  deinit {
    if let file {
      fclose(file)
      unlink(temporaryPath)
    }
  }

  public func append(_ r: Rating) throws(DataError) {
    let stars = r.rating == r.rating.rounded() && abs(r.rating) < 1e15 ? String(Int64(r.rating)) + ".0" : String(r.rating)
    let line = format == .dat ? "\(r.user)::\(r.item)::\(stars)::\(r.timestamp)\n" : "\(r.user),\(r.item),\(stars),\(r.timestamp)\n"
    buffer += Array(line.utf8)
    count += 1
    if buffer.count >= 1 << 20 { try flush() }
  }

  func flush() throws(DataError) {
    guard let file else { throw .cannotWrite("cannot write ratings to '\(path)': the writer is closed") }
    let written = buffer.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, file) }
    guard written == buffer.count else { throw .cannotWrite("cannot write ratings to '\(path)': \(String(cString: strerror(errno)))") }
    buffer.removeAll(keepingCapacity: true)
  }

  /// Writes what is buffered, closes the file and renames it to the path.
  public func finish() throws(DataError) {
    try flush()
    let status = fclose(file)
    file = nil
    guard status == 0, rename(temporaryPath, path) == 0 else {
      unlink(temporaryPath)
      throw .cannotWrite("cannot write ratings to '\(path)': \(String(cString: strerror(errno)))")
    }
  }
}
