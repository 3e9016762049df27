// `ttfc run FILE` — run one function of a model on .npy inputs with the reference interpreter and
// print a summary of each result (optionally saving them as .npy).
import ArgumentParser
import Foundation
import TTCompiler
import TTIR
import TTInterp
import TTPasses
import TTRuntime

struct Run: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Run a function on .npy inputs (JIT-compiled; --interpret for the reference) and print its results.",
    discussion: helpText("""
      Every argument of the function needs a value: `--input NAME=PATH.npy` for each (NAME without
      the %), or `--random-inputs` to fill the missing ones with seeded random values, sizing each
      symbolic dimension with `--dim SYMBOL=SIZE`. Parameters come from their initializers unless
      `--params PATH.npz` supplies them by name.
      `--dim B=3,17,64` runs once per size (through shape buckets chosen by --bucket-policy;
      --stats shows compiles, cache hits, bucket occupancy and padding).
      Example: ttfc run examples/mlp.ttir --func loss --random-inputs --dim B=8
      """))

  @Argument(help: "The .ttir model.")
  var file: String

  @Option(name: .customLong("func"), help: "The function to run (default: the only one, or @main).")
  var function: String?

  @Option(name: .customLong("function"), help: .hidden)
  var functionAlias: String?

  @Option(name: .customLong("input"), help: "An input as NAME=PATH.npy (repeatable).")
  var inputs: [String] = []

  @Option(help: "A .npz whose arrays replace parameters of the same name.")
  var params: String?

  @Flag(help: "Fill inputs not given with --input with seeded random values.")
  var randomInputs = false

  @Option(name: .customLong("dim"), help: "The size of a symbolic dimension for --random-inputs, as SYMBOL=SIZE or SYMBOL=SIZE,SIZE,... for several runs (repeatable).")
  var dims: [String] = []

  @Option(help: "Seed for --random-inputs.")
  var seed: UInt64 = 0

  @Option(help: "Write each result to DIR/result<N>.npy (with several --dim sizes: DIR/SYMBOL=SIZE,.../result<N>.npy per run).")
  var outputDir: String?

  @Flag(help: "Print every element of each result, not just a summary.")
  var full = false

  @Flag(help: "Run on the reference interpreter instead of compiled code.")
  var interpret = false

  @Flag(help: "Print what was compiled and cached, and what shape bucketing did (to stderr).")
  var stats = false

  @Flag(help: "Verify the module after every compiler pass; stop at the first pass that breaks it.")
  var verifyEach = false

  @Option(help: "Shape buckets for several sizes: exact, pow2, geometric:R, list:E1,E2,..., adaptive.")
  var bucketPolicy = "pow2"

  @Option(help: "Threads for compiled kernels, 1 to 1024 (default: TTFC_THREADS or the number of cores).")
  var threads: Int?

  @Option(help: "Write a Chrome trace-event profile of the compiled runs here (JSON: open it in Perfetto or chrome://tracing): a slice per thunk on each pool thread's track, and the compile's phases.")
  var trace: String?

  func run() throws {
    // Options about compiled code mean nothing to the interpreter: refused, not ignored.
    if interpret {
      let compiledOnly = [(stats, "--stats"), (verifyEach, "--verify-each"), (threads != nil, "--threads"), (bucketPolicy != "pow2", "--bucket-policy"),
                          (trace != nil, "--trace")]
      if let (_, name) = compiledOnly.first(where: { $0.0 }) {
        throw fail("\(name) applies to compiled runs; it has no effect with --interpret")
      }
    }
    if let trace, let reason = ExecutionTrace.unwritableReason(trace) { throw fail("--trace: cannot write '\(trace)': \(reason)") }
    if let threads {
      // Each is an OS thread started at once: a slip of the keyboard (100000) must not exhaust the
      // machine's process limit.
      guard (1...ThreadPool.maxThreads).contains(threads) else { throw fail("--threads must be 1 to \(ThreadPool.maxThreads), not \(threads)") }
      setenv("TTFC_THREADS", String(threads), 1)   // read once, when the thread pool starts
    }
    let module = try SourceFile.read(file).module()
    let function = try selectFunction(module)
    let given = try parseAssignments(inputs, what: "--input")
    for name in given.keys where !function.arguments.contains(where: { function[$0].name == name }) {
      throw fail("'@\(function.name)' has no argument %\(name) (its arguments: \(function.arguments.map { "%" + function[$0].name }.joined(separator: ", ")))")
    }
    var sizeLists: [String: [Int]] = [:]
    for (symbol, text) in try parseAssignments(dims, what: "--dim") {
      let sizes = text.split(separator: ",", omittingEmptySubsequences: false).map { Int($0) }
      guard !sizes.isEmpty, sizes.allSatisfy({ ($0 ?? -1) >= 0 }) else {
        throw fail("--dim \(symbol)=\(text): sizes must be non-negative integers, separated by commas")
      }
      sizeLists[symbol] = sizes.map { $0! }
    }
    let runCount = sizeLists.values.map(\.count).max() ?? 1
    for (symbol, sizes) in sizeLists where sizes.count != 1 && sizes.count != runCount {
      throw fail("--dim \(symbol): \(sizes.count) sizes, but another --dim has \(runCount) (give one size or the same number)")
    }
    if runCount > 1 && !given.isEmpty { throw fail("several --dim sizes need --random-inputs for every argument (no --input)") }
    let policy: BucketPolicy
    do { policy = try BucketPolicy(parsing: bucketPolicy) } catch { throw fail("--bucket-policy: \(error)") }

    // Unknown symbols are mistakes (a typo would otherwise be ignored silently).
    let known = Set(function.values.flatMap(\.type.symbols))
    for symbol in sizeLists.keys.sorted() where !known.contains(symbol) {
      let list = known.sorted().joined(separator: ", ")
      throw fail("--dim \(symbol): '@\(function.name)' has no symbolic dimension \(symbol) (its symbols: \(list.isEmpty ? "none" : list))")
    }
    // Calls inlined, so the uses of each argument are in one function (for the integer ranges).
    var flatModule = module
    _ = try? PassManager().run(Pipeline([.pass(Inlining.pass)]), on: &flatModule, context: PassContext())
    let flat = flatModule.function(named: function.name) ?? function

    func makeInputs(run: Int) throws -> [Tensor] {
      let symbolSizes = sizeLists.mapValues { $0.count == 1 ? $0[0] : $0[run] }
      var arguments: [Tensor] = []
      for (index, argument) in function.arguments.enumerated() {
        let name = function[argument].name
        let type = function.type(of: argument)
        if let path = given[name] {
          let tensor: Tensor
          do { tensor = try NumpyFormat.read(path: path) } catch { throw fail("input %\(name): \(error)") }
          try Self.checkIndices(tensor, of: argument, in: flat)
          arguments.append(tensor)
        } else if randomInputs {
          let bound = type.dtype.isFloat ? 10 : try Self.integerBound(argument, in: flat, symbols: symbolSizes)
          arguments.append(try randomTensor(type, name: name, symbols: symbolSizes, stream: UInt64(index), bound: bound))
        } else {
          throw fail("missing input %\(name) : \(type); pass --input \(name)=PATH.npy or --random-inputs")
        }
      }
      return arguments
    }

    var paramValues: [String: Tensor] = [:]
    if let params {
      do { for (name, tensor) in try NpzArchive.read(path: params) { paramValues[name] = tensor } }
      catch { throw fail("\(error)") }
      for name in paramValues.keys.sorted() {
        if let reason = module.unknownParameterReason(name) { throw fail("--params: \(reason)") }
      }
    }
    var results: [Tensor] = []
    var specializer: ShapeSpecializer?
    for run in 0..<runCount {
      let arguments = try makeInputs(run: run)
      do {
        if interpret {
          results = try Interpreter(module: module, params: paramValues).run(function.name, arguments)
        } else {
          if specializer == nil {
            let executable = try Executable(module: module, function: function.name, params: paramValues,
                                            verifyEach: verifyEach || CompileOptions.verifyEachByDefault)
            if trace != nil {
              let recorder = ExecutionTrace(threads: ThreadPool.shared.threadCount)
              recorder.addCompilePhases(executable.statistics)
              executable.trace = recorder
            }
            specializer = ShapeSpecializer(executable, policy: policy)
          }
          if runCount > 1 { specializer!.executable.trace?.nextRunLabel = "run \(run + 1)" }
          let prepared = try specializer!.prepare(inputTypes: arguments.map(\.type))
          for (i, t) in arguments.enumerated() { RawTensor.write(t, to: prepared.inputs[i]) }
          try prepared.execute()
          results = zip(function.resultTypes, zip(prepared.outputs, prepared.outputShapes)).map { RawTensor.read($0.dtype, shape: $1.1, from: $1.0) }
        }
      } catch {
        throw fail("\(error)")
      }
      if runCount > 1 {
        let sizes = sizeLists.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value.count == 1 ? $0.value[0] : $0.value[run])" }
        print("run \(run + 1) (" + sizes.joined(separator: ", ") + "):")
        // Each size's results go to a directory of their own: DIR/B=3/result0.npy.
        let runDirectory = outputDir.map { ($0 as NSString).appendingPathComponent(sizes.joined(separator: ",")) }
        if let runDirectory {
          do { try FileManager.default.createDirectory(atPath: runDirectory, withIntermediateDirectories: true) }
          catch { throw fail("cannot create '\(runDirectory)': \(error.localizedDescription)") }
        }
        for (i, result) in results.enumerated() {
          print("  result \(i): \(TensorSummary.describe(result, full: full))")
          if let runDirectory {
            let path = (runDirectory as NSString).appendingPathComponent("result\(i).npy")
            do { try NumpyFormat.write(result, path: path) } catch { throw fail("\(error)") }
            print("    written to \(path)")
          }
        }
      }
    }
    if stats, let specializer { for line in specializer.report() { print(line, to: &standardError) } }
    if let trace, let recorder = specializer?.executable.trace {
      do { try recorder.write(to: trace) } catch { throw fail("--trace: cannot write '\(trace)': \(error)") }
      print("trace of \(recorder.runCount) run\(recorder.runCount == 1 ? "" : "s") written to \(trace) (open it in Perfetto or chrome://tracing)", to: &standardError)
    }
    if runCount > 1 { return }
    if let outputDir {
      do { try FileManager.default.createDirectory(atPath: outputDir, withIntermediateDirectories: true) }
      catch { throw fail("cannot create '\(outputDir)': \(error.localizedDescription)") }
    }
    for (i, result) in results.enumerated() {
      let name = function[function.returnValues[i]].name
      print("result \(i) (%\(name)): \(TensorSummary.describe(result, full: full))")
      if let outputDir {
        let path = (outputDir as NSString).appendingPathComponent("result\(i).npy")
        do { try NumpyFormat.write(result, path: path) } catch { throw fail("\(error)") }
        print("  written to \(path)")
      }
    }
  }

  func selectFunction(_ module: Module) throws -> Function {
    if let name = function ?? functionAlias {
      let bare = name.hasPrefix("@") ? String(name.dropFirst()) : name
      guard let f = module.function(named: bare) else {
        throw fail("no function '@\(bare)' in '\(file)' (it has: \(module.functions.map { "@" + $0.name }.joined(separator: ", ")))")
      }
      return f
    }
    if module.functions.count == 1 { return module.functions[0] }
    if let main = module.function(named: "main") { return main }
    throw fail("'\(file)' has several functions; choose one with --func (\(module.functions.map { "@" + $0.name }.joined(separator: ", ")))")
  }

  func parseAssignments(_ items: [String], what: String) throws -> [String: String] {
    var result: [String: String] = [:]
    for item in items {
      guard let eq = item.firstIndex(of: "=") else { throw fail("\(what) \(item): expected NAME=VALUE") }
      var key = String(item[..<eq])
      if key.hasPrefix("%") { key.removeFirst() }
      guard result[key] == nil else { throw fail("\(what) \(key) is given twice") }
      result[key] = String(item[item.index(after: eq)...])
    }
    return result
  }

  /// Random input: floats ~ N(0, 1); integers uniform in [0, bound) with bound = `integerBound`
  /// (2 for i1, else 10 or less: the valid range of every index the argument feeds).
  func randomTensor(_ type: TensorType, name: String, symbols: [String: Int], stream: UInt64, bound: Int = 10) throws -> Tensor {
    var shape: [Int] = []
    for dim in type.dims {
      switch dim {
      case .known(let n): shape.append(n)
      case .symbol(let s):
        guard let n = symbols[s] else { throw fail("input %\(name) : \(type) needs a size for \(s); pass --dim \(s)=SIZE") }
        shape.append(n)
      }
    }
    guard let count = elementCount(shape), count <= maxInterpreterElements else { throw fail("input %\(name) is too large") }
    let streamSeed = seed &* 1_000_003 &+ stream
    if type.dtype.isFloat {
      return Tensor(type.dtype, shape: shape, floats: (0..<count).map { SeededRandom.normal(streamSeed, UInt64($0), 0) })
    }
    let range = type.dtype == .i1 ? 2.0 : Double(bound)
    return Tensor(type.dtype, shape: shape, ints: (0..<count).map { Int64(SeededRandom.uniform(streamSeed, UInt64($0), 0) * range) })
  }

  /// What the indices an integer argument feeds must satisfy: for each op reading it as indices
  /// (following it through layout ops), the op and its valid range [0, limit). `strict`: a value
  /// outside is an error (gather, scatter_add, softmax_cross_entropy labels), not a row of off_value (one_hot).
  struct IndexUse { let op: OpCode; let limit: Int; let strict: Bool }

  static func indexUses(_ argument: ValueID, in function: Function, symbols: [String: Int]) -> [IndexUse] {
    var uses: [IndexUse] = []
    var pending = [argument]
    var seen = Set<ValueID>()
    func size(_ d: Dim) -> Int? {
      switch d { case .known(let n): return n; case .symbol(let s): return symbols[s] }
    }
    while let value = pending.popLast() {
      guard seen.insert(value).inserted else { continue }
      for id in function.body where function[id].operands.contains(value) {
        let op = function[id]
        switch op.code {
        case .oneHot:
          if let depth = op.attributes.int("depth") { uses.append(IndexUse(op: op.code, limit: depth, strict: false)) }
        case .gather where op.operands.count == 2 && op.operands[1] == value,
             .scatterAdd where op.operands.count == 3 && op.operands[1] == value:
          let params = function.type(of: op.operands[0])
          var axis = op.attributes.int("axis") ?? 0
          if axis < 0 { axis += params.rank }
          if axis >= 0 && axis < params.rank, let n = size(params.dims[axis]) { uses.append(IndexUse(op: op.code, limit: n, strict: true)) }
        case .softmaxCrossEntropy where op.operands.count == 2 && op.operands[1] == value:
          if let n = function.type(of: op.operands[0]).dims.last.flatMap(size) { uses.append(IndexUse(op: op.code, limit: n, strict: true)) }
        case .reshape, .transpose, .broadcastTo, .slice, .concat, .pad, .cast:
          // Moved, copied or converted, the values still index (a cast to another integer type).
          if op.code != .cast || function.type(of: op.results[0]).dtype.isInteger { pending += op.results }
        default: break
        }
      }
    }
    return uses
  }

  /// The exclusive upper bound for random values of an integer argument: the smallest valid
  /// range among the indices it feeds; 10 when it feeds none.
  static func integerBound(_ argument: ValueID, in function: Function, symbols: [String: Int]) throws -> Int {
    let uses = indexUses(argument, in: function, symbols: symbols)
    // one_hot accepts any index (outside [0, depth) gives a row of off_value): only a depth of
    // at least 1 narrows the draw.
    let bound = uses.filter { $0.strict || $0.limit > 0 }.map(\.limit).min().map { Swift.min($0, 10) } ?? 10
    if bound <= 0 {
      let feeds = uses.map { "'\($0.op)' (valid range [0, \($0.limit)))" }.joined(separator: ", ")
      throw fail("--random-inputs: input %\(function[argument].name) feeds \(feeds): no valid value to draw")
    }
    return bound
  }

  /// A named error when a given integer input holds an index outside the range an op needs.
  static func checkIndices(_ tensor: Tensor, of argument: ValueID, in function: Function) throws {
    // A tensor of the wrong dtype or rank gets the executable's type error, which says so.
    let type = function.type(of: argument)
    guard tensor.dtype.isInteger, tensor.dtype == type.dtype, tensor.shape.count == type.rank,
          zip(type.dims, tensor.shape).allSatisfy({ $0.staticSize == nil || $0.staticSize == $1 }) else { return }
    var symbols: [String: Int] = [:]
    for (d, n) in zip(function.type(of: argument).dims, tensor.shape) { if case .symbol(let s) = d { symbols[s] = n } }
    for use in indexUses(argument, in: function, symbols: symbols) where use.strict {
      let values = tensor.int64s
      if let k = values.firstIndex(where: { $0 < 0 || $0 >= Int64(use.limit) }) {
        throw fail("input %\(function[argument].name): element \(k) is \(values[k]), outside [0, \(use.limit)) for '\(use.op)'")
      }
    }
  }
}
