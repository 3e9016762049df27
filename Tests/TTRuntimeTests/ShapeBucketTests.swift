// Shape bucketing: a run in a bucket's layout (planned at the bucket edge) must give bit for bit
// the results of an exact-shape run, for random graphs and the examples, whichever layout serves
// it (its own, a larger one while its own builds in the background, or the megamorphic guard's).
// The adaptive policy's edges are checked on skewed, uniform and shifting distributions.
import Foundation
import Testing
import TTFuzz
import TTCompiler
import TTIR
import TTInterp
@testable import TTRuntime

/// Runs `inputs` through the specializer's prepared run (native buffers, as training does).
func runBucketed(_ specializer: ShapeSpecializer, _ inputs: [Tensor]) throws -> [Tensor] {
  let run = try specializer.prepare(inputTypes: inputs.map(\.type))
  for (i, t) in inputs.enumerated() { RawTensor.write(t, to: run.inputs[i]) }
  try run.execute()
  let types = specializer.executable.lowered.resultTypes
  return zip(types, zip(run.outputs, run.outputShapes)).map { RawTensor.read($0.dtype, shape: $1.1, from: $1.0) }
}

struct ShapeBucketTests {
  static let policies: [BucketPolicy] = [.powersOfTwo, .geometric(ratio: 1.5), .list([4, 16, 48]), .adaptive]

  @Test(arguments: policies)
  func randomGraphsInBucketsEqualExactShapeRuns(_ policy: BucketPolicy) throws {
    var sizes = GraphRandom(state: 99)
    for seed in 0..<UInt64(60) {
      var builder = RandomGraphBuilder(seed: seed &* 7_919 &+ 3)
      let module = builder.build(ops: Int(seed % 16) + 4)
      let function = module.functions[0]
      let bucketed = ShapeSpecializer(try Executable(module: module, function: "main"), policy: policy)
      let exact = try Executable(module: module, function: "main")
      // Large sizes first, so later ones are often served by a larger layout while theirs builds.
      let batches = [40] + (0..<7).map { _ in Int.random(in: 0...40, using: &sizes) }
      for batch in batches {
        let inputs = ExecutableTests.randomInputs(function, batch: batch, seed: seed &+ UInt64(batch))
        let expected = try exact.run(inputs)
        let got = try runBucketed(bucketed, inputs)
        for (i, (g, e)) in zip(got, expected).enumerated() where !g.isIdentical(to: e) {
          Issue.record("\(policy) seed \(seed) B=\(batch) result \(i): \(compiledMismatch(g, e, rtol: 0, atol: 0) ?? "differs")\n\(Printer.print(module))")
        }
      }
      bucketed.waitForBackgroundBuilds()
    }
  }

  @Test(arguments: ["mlp.ttir", "logreg.ttir", "wide_deep.ttir"])
  func examplesInBucketsEqualExactShapeRuns(_ file: String) throws {
    let module = try Parser.parseAndVerify(String(contentsOf: Repository.root.appendingPathComponent("examples/\(file)"), encoding: .utf8))
    for function in module.functions {
      let bucketed = ShapeSpecializer(try Executable(module: module, function: function.name), policy: .powersOfTwo)
      let exact = try Executable(module: module, function: function.name)
      for batch in [64, 33, 1, 17, 64, 5, 0, 31] {
        let inputs = ExecutableTests.randomInputs(function, batch: batch, seed: UInt64(batch))
        let expected = try exact.run(inputs)
        let got = try runBucketed(bucketed, inputs)
        for (g, e) in zip(got, expected) { #expect(g.isIdentical(to: e), "@\(function.name) B=\(batch)") }
      }
      bucketed.waitForBackgroundBuilds()
      // Powers of two: 64, 32, 1, 32 (for 17), 8 (for 5), 0 and 32 (for 31) at most five layouts.
      #expect(bucketed.executable.layoutBytes.count <= 5)
    }
  }

  @Test func smallerSizesRunInALargerLayoutUntilTheirOwnIsBuilt() throws {
    let module = try Parser.parseAndVerify(String(contentsOf: Repository.root.appendingPathComponent("examples/mlp.ttir"), encoding: .utf8))
    let function = module.function(named: "loss")!
    let bucketed = ShapeSpecializer(try Executable(module: module, function: "loss"), policy: .powersOfTwo)
    let exact = try Executable(module: module, function: "loss")
    let big = ExecutableTests.randomInputs(function, batch: 100, seed: 1)
    #expect(try runBucketed(bucketed, big)[0].isIdentical(to: exact.run(big)[0]))
    let small = ExecutableTests.randomInputs(function, batch: 3, seed: 2)
    #expect(try runBucketed(bucketed, small)[0].isIdentical(to: exact.run(small)[0]))
    #expect(bucketed.statistics.servedByLargerBucket == 1, "B=3 should run in the 128 layout while the 4 layout builds")
    bucketed.waitForBackgroundBuilds()
    let run = try bucketed.prepare(inputTypes: small.map(\.type))
    #expect(run.capacity == [4], "after the background build, B=3 switches to its own bucket")
    #expect(try runBucketed(bucketed, small)[0].isIdentical(to: exact.run(small)[0]))
    let stats = bucketed.statistics
    #expect(stats.layoutsBuilt == 2 && stats.backgroundBuilds == 1)
    #expect(stats.paddingOverhead > 0)
  }

  @Test func theMegamorphicGuardStopsBuildingLayouts() throws {
    var builder = RandomGraphBuilder(seed: 5)
    let module = builder.build(ops: 8)
    let function = module.functions[0]
    let bucketed = ShapeSpecializer(try Executable(module: module, function: "main"), policy: .exact, megamorphicLimit: 6)
    bucketed.backgroundBuilds = false
    let exact = try Executable(module: module, function: "main")
    for batch in 1...40 {
      let inputs = ExecutableTests.randomInputs(function, batch: batch, seed: UInt64(batch))
      let got = try runBucketed(bucketed, inputs)
      for (g, e) in zip(got, try exact.run(inputs)) { #expect(g.isIdentical(to: e), "B=\(batch)") }
    }
    let stats = bucketed.statistics
    #expect(stats.megamorphic)
    // Six exact layouts, then the guard grows one layout geometrically: 8, 16, 32, 64.
    #expect(stats.layoutsBuilt <= 10, "\(stats.layoutsBuilt) layouts")
    #expect(stats.runs == 40)
  }

  /// Issue 14, defect 4: with the guard on, a size runs in the smallest layout that covers it
  /// (B=150 in the 200 layout, not the 300 one), and growing past a new maximum replaces the
  /// largest layout instead of keeping every old one alive.
  @Test func theMegamorphicGuardServesFromTheSmallestCoveringLayout() throws {
    var builder = RandomGraphBuilder(seed: 5)
    let module = builder.build(ops: 8)
    let function = module.functions[0]
    let bucketed = ShapeSpecializer(try Executable(module: module, function: "main"), policy: .exact, megamorphicLimit: 16)
    bucketed.backgroundBuilds = false
    let exact = try Executable(module: module, function: "main")
    var capacities: [Int: [Int]] = [:]
    for batch in Array(1...14) + [200, 300, 150, 150, 400, 250, 1000, 2000, 120] {
      let inputs = ExecutableTests.randomInputs(function, batch: batch, seed: UInt64(batch))
      let got = try runBucketed(bucketed, inputs)
      for (g, e) in zip(got, try exact.run(inputs)) { #expect(g.isIdentical(to: e), "B=\(batch)") }
      capacities[batch] = try bucketed.prepare(inputTypes: inputs.map(\.type)).capacity
      #expect(bucketed.executable.layoutBytes.count <= 16, "B=\(batch): \(bucketed.executable.layoutBytes.count) layouts")
    }
    #expect(bucketed.statistics.megamorphic)
    #expect(capacities[150] == [200], "B=150 ran in \(capacities[150] ?? [])")
    // 400 replaced the 300 layout by 512; 1000 and 2000 replaced the largest in turn.
    #expect(capacities[400] == [512] && capacities[250] == [512], "B=250 ran in \(capacities[250] ?? [])")
    #expect(capacities[2000] == [2048] && capacities[120] == [200], "B=120 ran in \(capacities[120] ?? [])")
    #expect(bucketed.executable.layoutBytes[[512]] == nil && bucketed.executable.layoutBytes[[300]] == nil)
  }

  /// Sizes near Int.max are their own edge (the next power of two, or a geometric edge, does
  /// not fit an Int): no wrapped negative capacity, no trap converting a huge Double.
  @Test func hugeSizesAreTheirOwnEdge() {
    for size in [Int.max, Int.max - 1, (1 << 62) + 1, 1 << 62] {
      #expect(BucketPolicy.powersOfTwo.fixedEdge(for: size) >= size)
      #expect(BucketPolicy.geometric(ratio: 1.5).fixedEdge(for: size) >= size)
    }
    #expect(BucketPolicy.powersOfTwo.fixedEdge(for: 1000) == 1024)
    #expect(BucketPolicy.geometric(ratio: 2).fixedEdge(for: 10) == 16)
  }

  @Test func adaptiveEdgesConvergeOnSkewedDistributions() {
    var rng = GraphRandom(state: 3)
    // 90% of batches are full (512), the rest are the ragged tail of epochs.
    var skewed = AdaptiveBucketer()
    for _ in 0..<2000 { _ = skewed.edge(for: Double.random(in: 0..<1, using: &rng) < 0.9 ? 512 : Int.random(in: 1...511, using: &rng)) }
    #expect(skewed.edges.last == 512)
    #expect(skewed.edges.count <= 4, "\(skewed.edges)")
    // Three sizes only: exactly those three edges.
    var modes = AdaptiveBucketer()
    for i in 0..<600 { _ = modes.edge(for: [32, 128, 500][i % 3]) }
    #expect(modes.edges == [32, 128, 500])
    // Uniform sizes: a handful of buckets, far fewer than distinct sizes.
    var uniform = AdaptiveBucketer()
    for _ in 0..<2000 { _ = uniform.edge(for: Int.random(in: 1...512, using: &rng)) }
    #expect((3...10).contains(uniform.edges.count), "\(uniform.edges)")
    #expect(uniform.edges.last! >= 500)
  }

  @Test func adaptiveEdgesFollowAShiftAndReleaseOldLayouts() throws {
    var bucketer = AdaptiveBucketer()
    for i in 0..<400 { _ = bucketer.edge(for: 400 + i % 50) }
    #expect(bucketer.edges.last! >= 449)
    for i in 0..<1200 { _ = bucketer.edge(for: 10 + i % 20) }
    #expect(bucketer.edges.last! < 40, "after the shift the large edges go: \(bucketer.edges)")
    #expect(bucketer.revisions >= 2)

    let module = try Parser.parseAndVerify(String(contentsOf: Repository.root.appendingPathComponent("examples/logreg.ttir"), encoding: .utf8))
    let function = module.function(named: "loss")!
    let bucketed = ShapeSpecializer(try Executable(module: module, function: "loss"), policy: .adaptive)
    bucketed.backgroundBuilds = false
    for step in 0..<600 {
      let batch = step < 200 ? 200 + step % 30 : 3 + step % 5
      _ = try runBucketed(bucketed, ExecutableTests.randomInputs(function, batch: batch, seed: UInt64(step)))
    }
    let stats = bucketed.statistics
    #expect(stats.layoutsDropped > 0, "layouts of the old distribution are released")
    #expect(bucketed.executable.layoutBytes.keys.allSatisfy { $0[0] < 200 }, "\(bucketed.executable.layoutBytes.keys.sorted { $0[0] < $1[0] })")
  }

  @Test func optimalEdgesMatchExhaustiveSearch() {
    var rng = GraphRandom(state: 11)
    for _ in 0..<50 {
      var histogram: [Int: Double] = [:]
      for _ in 0..<Int.random(in: 1...9, using: &rng) { histogram[Int.random(in: 1...100, using: &rng)] = Double(Int.random(in: 1...20, using: &rng)) }
      let cost = Double(Int.random(in: 0...30, using: &rng))
      let sizes = histogram.keys.sorted()
      let total = histogram.values.reduce(0, +)
      func expected(_ edges: [Int]) -> Double {
        var sum = cost * Double(edges.count)
        for (size, count) in histogram {
          let edge = edges.first { $0 >= size }!
          sum += count / total * Double(edge - size)
        }
        return sum
      }
      // Every subset of sizes that contains the largest.
      var best = Double.infinity
      for mask in 0..<(1 << (sizes.count - 1)) {
        let edges = sizes.indices.filter { $0 == sizes.count - 1 || mask & (1 << $0) != 0 }.map { sizes[$0] }
        best = min(best, expected(edges))
      }
      let found = AdaptiveBucketer.optimalEdges(histogram, bucketCost: cost)
      #expect(abs(expected(found) - best) < 1e-9, "\(histogram) cost \(cost): \(found)")
    }
  }

  @Test func policiesParseAndNameTheirErrors() throws {
    #expect(try BucketPolicy(parsing: "pow2") == .powersOfTwo)
    #expect(try BucketPolicy(parsing: "geometric:1.5") == .geometric(ratio: 1.5))
    #expect(try BucketPolicy(parsing: "list:64,8,512") == .list([8, 64, 512]))
    #expect(try BucketPolicy(parsing: "adaptive") == .adaptive)
    #expect(try BucketPolicy(parsing: "exact") == .exact)
    for bad in ["pow3", "geometric:1", "geometric:x", "list:", "list:0,4", "list:a", ""] {
      #expect(throws: ExecutableError.self, "\(bad)") { try BucketPolicy(parsing: bad) }
    }
    #expect(BucketPolicy.powersOfTwo.fixedEdge(for: 300) == 512)
    #expect(BucketPolicy.powersOfTwo.fixedEdge(for: 1) == 1)
    #expect(BucketPolicy.powersOfTwo.fixedEdge(for: 0) == 0)
    #expect(BucketPolicy.geometric(ratio: 1.5).fixedEdge(for: 10) == 12)
    #expect(BucketPolicy.list([8, 64]).fixedEdge(for: 9) == 64)
    #expect(BucketPolicy.list([8, 64]).fixedEdge(for: 65) == 128)
  }

  @Test func aCapacityBelowTheShapeIsANamedError() throws {
    let module = try Parser.parseAndVerify(String(contentsOf: Repository.root.appendingPathComponent("examples/logreg.ttir"), encoding: .utf8))
    let executable = try Executable(module: module, function: "loss")
    let types = ExecutableTests.randomInputs(module.function(named: "loss")!, batch: 9, seed: 1).map(\.type)
    #expect(throws: ExecutableError.self) { try executable.prepare(inputTypes: types, capacity: [8]) }
    #expect(try executable.prepare(inputTypes: types, capacity: [16]).capacity == [16])
  }
}
