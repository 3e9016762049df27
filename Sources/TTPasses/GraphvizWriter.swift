// GraphvizWriter — a module as a Graphviz digraph for `ttfc compile --emit=dot`: one cluster per
// function, one nested cluster per fusion region (labelled with its kind), ops as boxes labelled
// "op" and their result type, arguments and parameters as ellipses. Edges into a region go to the
// body op that reads the value, so the data flow stays visible through the clusters. Expensive
// ops are shaded so the cost structure of a 200-op graph can be read at a glance.

import TTIR

public enum GraphvizWriter {
  public static func dot(_ module: Module) -> String {
    var out = "digraph \"\(module.name)\" {\n  rankdir=TB;\n  node [shape=box, fontname=\"Helvetica\", fontsize=10];\n  edge [arrowsize=0.6];\n"
    for (f, function) in module.functions.enumerated() {
      out += "  subgraph cluster_f\(f) {\n    label=\"@\(function.name)\";\n    fontsize=14;\n"
      var node: [ValueID: String] = [:]      // the node that produces each value
      for argument in function.arguments {
        let id = "f\(f)_a\(argument.index)"
        node[argument] = id
        out += "    \(id) [shape=ellipse, label=\"%\(escape(function[argument].name))\\n\(function.type(of: argument))\"];\n"
      }
      for (i, value) in function.values.enumerated() {
        if case .global(let name) = value.definition {
          let id = "f\(f)_g\(i)"
          node[ValueID(i)] = id
          out += "    \(id) [shape=ellipse, style=dashed, label=\"@\(escape(name))\\n\(value.type)\"];\n"
        }
      }
      var edges: [String] = []
      for opID in function.body {
        let op = function[opID]
        let id = "f\(f)_o\(opID.index)"
        if let body = op.body {
          out += "    subgraph cluster_f\(f)_o\(opID.index) {\n      label=\"fusion (\(kind(op)))\";\n      style=filled;\n      color=\"#dde8f5\";\n"
          var inner: [ValueID: String] = [:]
          for (k, argument) in body.arguments.enumerated() { inner[argument] = node[op.operands[k]] }
          for innerID in body.body {
            let innerOp = body[innerID]
            let nodeID = "\(id)_\(innerID.index)"
            out += "      \(nodeID) [label=\"\(innerOp.code)\\n\(body.type(of: innerOp.results[0]))\"\(style(innerOp.code))];\n"
            for v in innerOp.operands { if let from = inner[v] { edges.append("\(from) -> \(nodeID)") } }
            for r in innerOp.results { inner[r] = nodeID }
          }
          out += "    }\n"
          for (k, r) in op.results.enumerated() { node[r] = inner[body.returnValues[k]] }
        } else {
          out += "    \(id) [label=\"\(op.code)\\n\(function.type(of: op.results[0]))\"\(style(op.code))];\n"
          for v in op.operands { if let from = node[v] { edges.append("\(from) -> \(id)") } }
          for r in op.results { node[r] = id }
        }
      }
      let returnID = "f\(f)_ret"
      out += "    \(returnID) [shape=plaintext, label=\"return\"];\n"
      for v in function.returnValues { if let from = node[v] { edges.append("\(from) -> \(returnID)") } }
      for e in edges { out += "    \(e);\n" }
      out += "  }\n"
    }
    return out + "}\n"
  }

  static func kind(_ op: OpNode) -> String {
    if case .string(let k)? = op.attributes["kind"] { return k }
    return "loop"
  }

  static func style(_ code: OpCode) -> String {
    switch code.info.cost {
    case .gemm: return ", style=filled, fillcolor=\"#f5c6a5\""
    case .expensive: return ", style=filled, fillcolor=\"#f5e6a5\""
    default: return ""
    }
  }

  static func escape(_ s: String) -> String { s.replacingOccurrences(of: "\"", with: "\\\"") }
}
