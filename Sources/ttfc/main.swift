import TTIR
import Foundation
for path in CommandLine.arguments.dropFirst() {
  let src = try String(contentsOfFile: path, encoding: .utf8)
  do { let m = try Parser.parseAndVerify(src); let p = Printer.print(m); print(p); let p2 = Printer.print(try Parser.parseAndVerify(p)); print(p == p2 ? "ROUNDTRIP OK" : "ROUNDTRIP FAIL") }
  catch { print(error.render(file: path, source: src)) }
}
