// Dataset — training data as named columns whose first dimension indexes examples, read from an
// .npz archive, a directory of .npy files, or a CSV file with a header. Columns are bound to the
// loss function's inputs by name: input %x takes column `x` (or, from CSV, a rank-2 input %x of
// width K takes columns x_0 ... x_{K-1}). Batches follow a seeded shuffle per epoch; the position
// (epoch, offset) is part of the training state, so a resumed run sees the same batches.

import Foundation
import TTIR
import TTInterp
import TTRuntime

/// Why data could not be read or bound to a function's inputs; the message names the file, row
/// or column.
public enum DataError: Error, CustomStringConvertible {
  case cannotRead(String)
  case malformed(String)
  case binding(String)
  case cannotWrite(String)
  public var description: String {
    switch self { case .cannotRead(let m), .malformed(let m), .binding(let m), .cannotWrite(let m): return m }
  }
}

/// Training or evaluation data: named columns whose first dimension indexes the examples.
///
/// A function input `%x` reads column `x`, converted to the input's element type (integers must
/// be exact). From CSV, a rank-2 input `%x` of width K may instead read columns `x_0` to
/// `x_{K-1}`.
public struct Dataset {
  public var columns: [String: Tensor]
  /// The number of examples (every column's first dimension).
  public var count: Int

  /// Data held in memory; every column must have the same number of examples.
  public init(columns: [String: Tensor]) throws(DataError) {
    self.columns = columns
    let counts = Set(columns.values.map { $0.shape.first ?? 1 })
    guard counts.count <= 1 else { throw .malformed("columns have different numbers of examples: \(counts.sorted())") }
    count = counts.first ?? 0
  }

  /// Reads an `.npz` archive (one column per array), a directory of `.npy` files (one column per
  /// file, named by it) or a `.csv` file with a header row (integer columns become i64, others
  /// f64).
  public static func load(_ path: String) throws(DataError) -> Dataset {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { throw .cannotRead("no data at '\(path)'") }
    if isDirectory.boolValue {
      var columns: [String: Tensor] = [:]
      let files = ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).filter { $0.hasSuffix(".npy") }
      guard !files.isEmpty else { throw .cannotRead("'\(path)' has no .npy files") }
      for file in files {
        do { columns[String(file.dropLast(4))] = try NumpyFormat.read(path: (path as NSString).appendingPathComponent(file)) }
        catch { throw .malformed("\(file): \(error)") }
      }
      return try Dataset(columns: columns)
    }
    if path.hasSuffix(".npz") {
      let members: [(name: String, tensor: Tensor)]
      do { members = try NpzArchive.read(path: path).map { ($0.name, $0.tensor) } } catch { throw .malformed("\(error)") }
      var columns: [String: Tensor] = [:]
      for (name, tensor) in members {
        guard columns[name] == nil else { throw .malformed("'\(path)' holds two arrays named '\(name)' (\(name).npy twice)") }
        columns[name] = tensor
      }
      return try Dataset(columns: columns)
    }
    if path.hasSuffix(".csv") { return try readCSV(path) }
    throw .cannotRead("'\(path)': expected a .npz, a .csv or a directory of .npy files")
  }

  static func readCSV(_ path: String) throws(DataError) -> Dataset {
    guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw .cannotRead("cannot read '\(path)'") }
    var lines = text.split(whereSeparator: \.isNewline).map(String.init).filter { !$0.isEmpty }
    guard !lines.isEmpty else { throw .malformed("'\(path)' is empty") }
    let names = lines.removeFirst().split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
    var seen = Set<String>()
    for name in names {
      guard !name.isEmpty else { throw .malformed("\(path):1: the header has an empty column name") }
      guard seen.insert(name).inserted else { throw .malformed("\(path):1: the header names column '\(name)' twice") }
    }
    // Columns whose every field is an integer stay exact i64 (ids beyond 2^53 included);
    // others are f64.
    var values = [[Double]](repeating: [], count: names.count)
    var integers = [[Int64]?](repeating: [], count: names.count)
    for (row, line) in lines.enumerated() {
      let fields = line.split(separator: ",", omittingEmptySubsequences: false)
      guard fields.count == names.count else { throw .malformed("\(path):\(row + 2): \(fields.count) fields, the header has \(names.count)") }
      for (k, f) in fields.enumerated() {
        let field = f.trimmingCharacters(in: .whitespaces)
        guard let v = Double(field) else {
          throw .malformed("\(path):\(row + 2): '\(f)' in column '\(names[k])' is not a number")
        }
        values[k].append(v)
        if integers[k] != nil { if let i = Int64(field) { integers[k]!.append(i) } else { integers[k] = nil } }
      }
    }
    return try Dataset(columns: Dictionary(uniqueKeysWithValues: names.indices.map { k in
      (names[k], integers[k].map { Tensor(.i64, shape: [$0.count], ints: $0) } ?? Tensor(.f64, shape: [values[k].count], floats: values[k]))
    }))
  }

  /// The column for input `name` of `type` (batch dimension first), converted to its dtype.
  public func column(for name: String, type: TensorType) throws(DataError) -> Tensor {
    let rest = Array(type.dims.dropFirst())
    var tensor: Tensor
    if let c = columns[name] { tensor = c }
    else if rest.count == 1, let width = rest[0].staticSize, (0..<width).allSatisfy({ columns["\(name)_\($0)"] != nil }) {
      // CSV: x_0 ... x_{K-1} become one [N, K] column.
      let parts = (0..<width).map { columns["\(name)_\($0)"]!.doubles }
      var flat = [Double](repeating: 0, count: count * width)
      for i in 0..<count { for k in 0..<width { flat[i * width + k] = parts[k][i] } }
      tensor = Tensor(.f64, shape: [count, width], floats: flat)
    } else {
      throw .binding("the data has no column '\(name)' for input %\(name) : \(type) (columns: \(columns.keys.sorted().joined(separator: ", ")))")
    }
    guard tensor.rank == type.rank else { throw .binding("column '\(name)' has shape \(tensor.shape), input %\(name) is \(type)") }
    for (d, n) in zip(rest, tensor.shape.dropFirst()) where d.staticSize != nil && d.staticSize != n {
      throw .binding("column '\(name)' has shape \(tensor.shape), input %\(name) is \(type)")
    }
    if tensor.dtype != type.dtype {
      if !type.dtype.isFloat && tensor.dtype.isFloat {
        // Floats into an integer input (ids, labels): only exact integers, never a silent truncation.
        if let bad = tensor.doubles.first(where: { $0 != $0.rounded() || abs($0) > 9.007199254740992e15 }) {
          throw .binding("column '\(name)' holds \(bad), which is not an exact integer, but input %\(name) is \(type)")
        }
      }
      if !type.dtype.isFloat, let range = Self.integerRange(type.dtype),
         let bad = tensor.dtype.isFloat ? tensor.doubles.first(where: { $0 < Double(range.lowerBound) || $0 > Double(range.upperBound) }).map({ "\($0)" })
                                  : tensor.int64s.first(where: { !range.contains($0) }).map({ "\($0)" }) {
        throw .binding("column '\(name)' holds \(bad), which does not fit input %\(name) : \(type) (\(type.dtype) holds \(range.lowerBound) to \(range.upperBound))")
      }
      tensor = type.dtype.isFloat ? Tensor(type.dtype, shape: tensor.shape, floats: tensor.doubles)
                                  : Tensor(type.dtype, shape: tensor.shape, ints: tensor.int64s)
    }
    return tensor
  }

  /// The values an integer dtype holds (nil: i64, which holds every value read).
  static func integerRange(_ dtype: DType) -> ClosedRange<Int64>? {
    switch dtype {
    case .i32: return Int64(Int32.min)...Int64(Int32.max)
    case .i8: return Int64(Int8.min)...Int64(Int8.max)
    case .i1: return 0...1
    default: return nil
    }
  }

  /// Rows `indices` of a column.
  public static func rows(_ t: Tensor, _ indices: [Int]) -> Tensor {
    let width = t.shape.dropFirst().reduce(1, *)
    let shape = [indices.count] + t.shape.dropFirst()
    switch t.storage {
    case .floats(let v):
      var out: [Double] = []; out.reserveCapacity(indices.count * width)
      for i in indices { out += v[(i * width)..<((i + 1) * width)] }
      return Tensor(unchecked: t.dtype, shape: shape, storage: .floats(out))
    case .ints(let v):
      var out: [Int64] = []; out.reserveCapacity(indices.count * width)
      for i in indices { out += v[(i * width)..<((i + 1) * width)] }
      return Tensor(unchecked: t.dtype, shape: shape, storage: .ints(out))
    }
  }
}

/// Variable-length sequences stored padded to one length S: each batch is cut on axis 1 to its
/// longest example, in every column bound to an input whose axis 1 is symbolic and S long, so a
/// batch of short sentences runs at its own length (one compiled step serves every length; the
/// shape buckets choose its layout). The lengths are a column of the data (`ttfc train
/// --sequence-lengths`), one per example, 0 to S.
public struct SequenceTrimming {
  /// The column of per-example lengths.
  public let column: String
  /// The padded length S of the trimmed columns.
  public let paddedLength: Int
  let lengths: [Int64]

  /// Reads the lengths column of `data` and checks it against the padded columns' length.
  public init(column: String, data: Dataset, paddedLength: Int) throws(DataError) {
    guard let tensor = data.columns[column] else {
      throw .binding("--sequence-lengths: the data has no column '\(column)' (columns: \(data.columns.keys.sorted().joined(separator: ", ")))")
    }
    guard tensor.rank == 1, !tensor.dtype.isFloat, tensor.dtype != .i1 else {
      throw .binding("--sequence-lengths: column '\(column)' must be integer lengths, one per example, but is \(tensor.dtype)\(tensor.shape)")
    }
    let values = tensor.int64s
    if let bad = values.firstIndex(where: { $0 < 0 || $0 > Int64(paddedLength) }) {
      throw .binding("--sequence-lengths: example \(bad) has length \(values[bad]), outside 0 to \(paddedLength) (the padded length of the sequence columns)")
    }
    self.column = column
    self.paddedLength = paddedLength
    lengths = values
  }

  /// The length a batch of these examples runs at: its longest example, at least 1 (so a batch of
  /// empty sequences still has a position for every op to read) unless S is 0.
  public func length(of indices: [Int]) -> Int {
    min(paddedLength, max(1, indices.map { Int(lengths[$0]) }.max() ?? 1))
  }

  /// Rows `indices` of a column, cut to `length` on axis 1.
  public static func rows(_ t: Tensor, _ indices: [Int], length: Int) -> Tensor {
    precondition(t.rank >= 2 && length <= t.shape[1])
    let inner = t.shape.dropFirst(2).reduce(1, *)
    let width = t.shape[1] * inner, kept = length * inner
    var shape = t.shape
    shape[0] = indices.count
    shape[1] = length
    switch t.storage {
    case .floats(let v):
      var out: [Double] = []; out.reserveCapacity(indices.count * kept)
      for i in indices { out += v[(i * width)..<(i * width + kept)] }
      return Tensor(unchecked: t.dtype, shape: shape, storage: .floats(out))
    case .ints(let v):
      var out: [Int64] = []; out.reserveCapacity(indices.count * kept)
      for i in indices { out += v[(i * width)..<(i * width + kept)] }
      return Tensor(unchecked: t.dtype, shape: shape, storage: .ints(out))
    }
  }

  /// Which of a function's inputs are cut: axis 1 symbolic, and S long in the data.
  public static func trimmed(types: [TensorType], columns: [Tensor], paddedLength: Int) -> [Bool] {
    zip(types, columns).map { type, column in
      type.rank >= 2 && type.dims[1].staticSize == nil && column.shape[1] == paddedLength
    }
  }
}

/// Seeded epoch-wise shuffled batches; (epoch, offset) is the resumable state.
public struct BatchOrder {
  public let count: Int
  public let batch: Int
  public let seed: UInt64
  public var epoch = 0
  public var offset = 0
  private var permutation: [Int] = []

  /// Without shuffling, batches take the examples in file order (for comparisons with other tools).
  public let shuffle: Bool

  public init(count: Int, batch: Int, seed: UInt64, epoch: Int = 0, offset: Int = 0, shuffle: Bool = true) {
    self.count = count; self.batch = batch; self.seed = seed; self.epoch = epoch; self.offset = offset
    self.shuffle = shuffle
    permutation = Self.permutation(count, seed: seed, epoch: epoch, shuffle: shuffle)
  }

  static func permutation(_ n: Int, seed: UInt64, epoch: Int, shuffle: Bool = true) -> [Int] {
    var p = Array(0..<n)
    guard n > 1, shuffle else { return p }
    for i in stride(from: n - 1, to: 0, by: -1) {
      let j = Int(SeededRandom.uniform(seed, UInt64(epoch) << 32 | UInt64(i), 7) * Double(i + 1))
      p.swapAt(i, min(j, i))
    }
    return p
  }

  /// The next batch's example indices (the last batch of an epoch may be smaller).
  public mutating func next() -> [Int] {
    if offset >= count {
      epoch += 1
      offset = 0
      permutation = Self.permutation(count, seed: seed, epoch: epoch, shuffle: shuffle)
    }
    let end = min(offset + batch, count)
    defer { offset = end }
    return Array(permutation[offset..<end])
  }
}
