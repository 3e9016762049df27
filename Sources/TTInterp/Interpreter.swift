// Interpreter — the reference semantics of TTIR, and the oracle every pass and compiled kernel is
// tested against. It walks a verified function op by op on concrete Tensors, binding symbolic
// dimensions from the inputs. It favours obviousness over speed: float math is done in Double and
// rounded to the result dtype after every op (f16/bf16 round-to-nearest-even through f32), integer
// math wraps to the dtype's width. Bad inputs (wrong count, dtype, shape, an out-of-range index)
// produce a named InterpreterError, never a crash.

import TTIR

public enum InterpreterError: Error, Equatable, CustomStringConvertible {
  case unknownFunction(String)
  case inputCount(function: String, expected: Int, got: Int)
  case inputMismatch(function: String, input: String, expected: TensorType, got: TensorType, reason: String)
  case missingParam(String)
  case paramMismatch(name: String, expected: TensorType, got: TensorType)
  case indexOutOfRange(op: String, index: Int64, bound: Int)
  case emptyReduction(op: String)
  case tooLarge(op: String, elements: Int)
  case invalidModule(String)

  public var description: String {
    switch self {
    case .unknownFunction(let f): return "no function named '@\(f)' in the module"
    case .inputCount(let f, let e, let g): return "'@\(f)' takes \(e) input\(e == 1 ? "" : "s"), got \(g)"
    case .inputMismatch(let f, let i, let e, let g, let r):
      return "input %\(i) of '@\(f)': expected \(e), got \(g) (\(r))"
    case .missingParam(let p): return "parameter '@\(p)' has no value and no initializer"
    case .paramMismatch(let n, let e, let g): return "parameter '@\(n)': expected \(e), got \(g)"
    case .indexOutOfRange(let op, let i, let b): return "\(op): index \(i) is out of range [0, \(b))"
    case .emptyReduction(let op): return "\(op) over an empty axis has no answer"
    case .tooLarge(let op, let n): return "\(op): a result of \(n) elements is larger than the interpreter handles"
    case .invalidModule(let m): return "module does not verify: \(m)"
    }
  }
}

/// Most elements one interpreter tensor may hold (2^28: 2 GiB of doubles). The oracle runs on
/// test-sized inputs; anything bigger is a mistake we report instead of exhausting memory.
public let maxInterpreterElements = 1 << 28

public struct Interpreter {
  public let module: Module
  public private(set) var params: [String: Tensor]
  /// Every declared parameter's name (those without a value are an error when read).
  let declaredParams: Set<String>
  /// The embedding tables the module declares, by name: what the embedding ops read. A value:
  /// change a row here to change what later runs read.
  public var tables: [String: ReferenceTable]

  /// Prepares `module` for interpretation. Parameters take their value from `params` when given
  /// there and from their initializer otherwise; tables from `tables` when given there, else
  /// empty (every id reads the declaration's default).
  public init(module: Module, params given: [String: Tensor] = [:], tables givenTables: [String: ReferenceTable] = [:]) throws(InterpreterError) {
    declaredParams = Set(module.params.map(\.name))
    let problems = Verifier.verify(module)
    if let first = problems.first { throw .invalidModule(first.description) }
    self.module = module
    var values: [String: Tensor] = [:]
    for param in module.params {
      if let tensor = given[param.name] {
        guard tensor.type == param.type else {
          throw .paramMismatch(name: param.name, expected: param.type, got: tensor.type)
        }
        values[param.name] = tensor
      } else if let initializer = param.initializer {
        values[param.name] = try ParamInitializer.materialize(initializer, type: param.type, name: param.name)
      }
      // A parameter with neither is an error only where a function reads it (`evaluate`).
    }
    params = values
    var made: [String: ReferenceTable] = [:]
    for decl in module.tables {
      let declared = try ReferenceTable(declaration: decl)
      if let given = givenTables[decl.name] {
        guard given.dim == declared.dim else {
          throw .invalidModule("table '@\(decl.name)' holds \(declared.dim) values per row; the table given for it \(given.dim)")
        }
        made[decl.name] = given
      } else {
        made[decl.name] = declared
      }
    }
    tables = made
  }

  /// Runs function `name` on `inputs` (one per argument, in order) and returns its results.
  public func run(_ name: String, _ inputs: [Tensor]) throws(InterpreterError) -> [Tensor] {
    guard let function = module.function(named: name) else { throw .unknownFunction(name) }
    try bindInputs(function, inputs)
    return try evaluate(function, inputs)
  }

  /// Checks inputs against the signature and returns the size of every symbolic dimension.
  @discardableResult
  public func bindInputs(_ function: Function, _ inputs: [Tensor]) throws(InterpreterError) -> [String: Int] {
    try Interpreter.bindInputs(function, inputs.map(\.type))
  }

  /// Checks concrete input types against a function's signature; returns each symbol's size.
  public static func bindInputs(_ function: Function, _ inputs: [TensorType]) throws(InterpreterError) -> [String: Int] {
    guard inputs.count == function.arguments.count else {
      throw .inputCount(function: function.name, expected: function.arguments.count, got: inputs.count)
    }
    var symbols: [String: Int] = [:]
    for (argument, tensor) in zip(function.arguments, inputs) {
      let expected = function.type(of: argument)
      let name = function[argument].name
      func mismatch(_ reason: String) -> InterpreterError {
        .inputMismatch(function: function.name, input: name, expected: expected, got: tensor, reason: reason)
      }
      guard tensor.dtype == expected.dtype else { throw mismatch("element type differs") }
      guard tensor.rank == expected.rank else { throw mismatch("rank differs") }
      for (axis, (dim, size)) in zip(expected.dims, tensor.staticShape ?? []).enumerated() {
        switch dim {
        case .known(let n):
          guard n == size else { throw mismatch("dimension \(axis) must be \(n)") }
        case .symbol(let s):
          if let bound = symbols[s], bound != size {
            throw mismatch("\(s) is \(bound) from an earlier input but \(size) here")
          }
          symbols[s] = size
        }
      }
    }
    return symbols
  }

  func evaluate(_ function: Function, _ inputs: [Tensor]) throws(InterpreterError) -> [Tensor] {
    let symbols = try bindInputs(function, inputs)
    var env = [Tensor?](repeating: nil, count: function.values.count)
    for (argument, tensor) in zip(function.arguments, inputs) { env[argument.index] = tensor }
    for (i, value) in function.values.enumerated() {
      // A table global stands for the table; the embedding ops read the table itself.
      if case .global(let name) = value.definition {
        if let tensor = params[name] { env[i] = tensor }
        else if declaredParams.contains(name) { throw .missingParam(name) }
        else { env[i] = Tensor.filled(.f32, shape: [0], value: 0) }
      }
    }
    for opID in function.body {
      let op = function[opID]
      let operands = op.operands.map { env[$0.index]! }
      let resultTypes = op.results.map { function.type(of: $0) }
      let results: [Tensor]
      if op.code == .fusion, let body = op.body {
        results = try evaluate(body, operands)
      } else if op.code == .embeddingLookup || op.code == .embeddingLookupPooled {
        guard case .global(let name) = function[op.operands[0]].definition, let table = tables[name] else {
          throw .invalidModule("'\(op.code)' reads no table")
        }
        let shape = resultTypes[0].dims.map { dim -> Int in
          switch dim { case .known(let n): return n; case .symbol(let s): return symbols[s] ?? 0 }
        }
        results = [try table.evaluate(op, operands: operands, shape: shape)]
      } else if op.code == .call {
        guard let callee = module.function(named: op.callee ?? "") else { throw .unknownFunction(op.callee ?? "") }
        results = try evaluate(callee, operands)
      } else {
        let shapes = resultTypes.map { type in
          type.dims.map { dim -> Int in
            switch dim { case .known(let n): return n; case .symbol(let s): return symbols[s] ?? 0 }
          }
        }
        if resultTypes.count == 1 {
          results = [try Kernels.apply(op, operands, result: resultTypes[0].dtype, shape: shapes[0])]
        } else {
          results = try Kernels.applyMultiple(op, operands, dtypes: resultTypes.map(\.dtype), shapes: shapes)
        }
      }
      for (id, tensor) in zip(op.results, results) { env[id.index] = tensor }
    }
    return function.returnValues.map { env[$0.index]! }
  }
}

extension Interpreter {
  /// Evaluates one op (not `call` or `fusion`) on concrete operands, as the interpreter would.
  /// `shape` is the result's concrete shape. Constant folding uses this, so folded values are
  /// exactly the values the unfolded program computes.
  public static func evaluate(_ op: OpNode, operands: [Tensor], dtype: DType, shape: [Int]) throws(InterpreterError) -> Tensor {
    precondition(op.code != .call && op.code != .fusion, "evaluate one primitive op at a time")
    return try Kernels.apply(op, operands, result: dtype, shape: shape)
  }
}
