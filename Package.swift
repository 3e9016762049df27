// swift-tools-version:6.0
// ttfc — a training compiler toolchain. The targets, bottom up, and what each depends on:
//   TTSupport    the lock, the clock, CRC-32 and atomic files that every module shares (zlib)
//   TTIR         the language: every op and its facts (OpInfo), parser, printer, verifier
//   TTInterp     the reference semantics (TTIR); it knows embedding tables only as its own plain
//                model (ReferenceTable), never TTEmbedding's, so it stays an independent oracle
//   TTPasses     the optimizer (TTIR, TTInterp)
//   TTEmbedding  the production embedding tables (TTSupport, CSupport)
//   TTCodegen    LLVM kernels and the kernel caches (TTIR, TTSupport, LLVM, OpenBLAS)
//   TTRuntime    runs compiled programs: memory, thunks, GEMM, shape buckets, tensors on disk
//                (TTIR, TTInterp, TTCodegen, TTEmbedding, TTSupport, OpenBLAS, zlib); it joins the
//                two kinds of table (a production table from a declaration, a production table's
//                contents as the interpreter's model). It does not depend on TTPasses.
//   TTCompiler   Module -> Program: verify, pass pipeline, lower to thunks, plan slots, compile
//                kernels (TTIR, TTInterp, TTPasses, TTCodegen, TTRuntime, TTEmbedding)
//   TTTrain      training (TTIR, TTInterp, TTPasses, TTRuntime, TTCompiler, TTCodegen, TTEmbedding,
//                TTSupport, CMPI: Open MPI loaded with dlopen for distributed training)
//   ttfc, ttfc-bench  the command-line tool and the benchmarks (all of the above)
//   TTFuzz       random graphs for the tests (TTIR)
//   TTONNX       ONNX import: a protobuf wire-format reader and the ONNX -> TTIR op mapping (TTIR; TTInterp folds shape arithmetic)
// One test target per module; DocC catalogs (Sources/<Module>/<Module>.docc) for TTIR, TTCompiler,
// TTRuntime, TTTrain and TTEmbedding, built by tools/docs. System libraries come from Debian:
// LLVM 19 (via the pkg-config file that tools/setup writes), OpenBLAS and zlib.
import PackageDescription

let package = Package(
  name: "ttfc",
  platforms: [.macOS(.v13)],
  products: [
    .executable(name: "ttfc", targets: ["ttfc"]),
    .executable(name: "ttfc-bench", targets: ["ttfc-bench"]),
    .library(name: "TTIR", targets: ["TTIR"]),
    .library(name: "TTInterp", targets: ["TTInterp"]),
    .library(name: "TTPasses", targets: ["TTPasses"]),
    .library(name: "TTRuntime", targets: ["TTRuntime"]),
    .library(name: "TTCompiler", targets: ["TTCompiler"]),
    .library(name: "TTTrain", targets: ["TTTrain"]),
    .library(name: "TTCodegen", targets: ["TTCodegen"]),
    .library(name: "TTEmbedding", targets: ["TTEmbedding"]),
    .library(name: "TTSupport", targets: ["TTSupport"]),
  ],
  dependencies: [
    .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    // `swift package generate-documentation` (tools/docs); a plugin, linked into nothing.
    .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.4.0"),
  ],
  targets: [
    .systemLibrary(name: "CLLVM", pkgConfig: "ttfc-llvm",
                   providers: [.apt(["llvm-19-dev"])]),
    .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas",
                   providers: [.apt(["libopenblas-dev"])]),
    .systemLibrary(name: "CZlib", pkgConfig: "zlib",
                   providers: [.apt(["zlib1g-dev"])]),
    .target(name: "TTSupport", dependencies: ["CZlib"]),
    .target(name: "TTIR"),
    .target(name: "TTInterp", dependencies: ["TTIR"]),
    .target(name: "TTPasses", dependencies: ["TTIR", "TTInterp"]),
    .target(name: "TTFuzz", dependencies: ["TTIR"]),
    .target(name: "TTONNX", dependencies: ["TTIR", "TTInterp"]),
    .target(name: "TTTrain", dependencies: ["TTIR", "TTInterp", "TTPasses", "TTRuntime", "TTCompiler", "TTCodegen", "TTEmbedding", "TTSupport", "CMPI"]),
    .target(name: "TTRuntime", dependencies: ["TTIR", "TTInterp", "TTCodegen", "TTEmbedding", "TTSupport", "CSupport", "COpenBLAS", "CZlib"]),
    .target(name: "TTCompiler", dependencies: ["TTIR", "TTInterp", "TTPasses", "TTCodegen", "TTRuntime", "TTEmbedding", "TTSupport"]),
    .target(name: "TTCodegen", dependencies: ["TTIR", "TTSupport", "CLLVM", "COpenBLAS"]),
    .target(name: "CSupport"),
    // MPI through dlopen (Sources/CMPI/include/ttfc_mpi.h): ttfc builds and runs without MPI.
    .target(name: "CMPI", linkerSettings: [.linkedLibrary("dl")]),
    .target(name: "TTEmbedding", dependencies: ["TTSupport", "CSupport"]),
    .executableTarget(name: "ttfc", dependencies: [
      "TTIR", "TTInterp", "TTPasses", "TTRuntime", "TTCompiler", "TTCodegen", "TTTrain", "TTEmbedding", "TTSupport", "TTONNX",
      .product(name: "ArgumentParser", package: "swift-argument-parser"),
    ]),
    .executableTarget(name: "ttfc-bench", dependencies: ["TTIR", "TTRuntime", "TTCompiler", "TTCodegen", "TTTrain", "TTEmbedding", "TTSupport", "TTONNX", "COpenBLAS",
                                                         .product(name: "ArgumentParser", package: "swift-argument-parser")]),
    .testTarget(name: "TTIRTests", dependencies: ["TTIR", "TTFuzz"], exclude: ["Inputs"]),
    .testTarget(name: "TTInterpTests", dependencies: ["TTIR", "TTInterp", "TTRuntime", "TTFuzz"],
                exclude: ["Fixtures"]),
    .testTarget(name: "TTPassesTests", dependencies: ["TTIR", "TTInterp", "TTPasses", "TTFuzz"]),
    .testTarget(name: "TTRuntimeTests", dependencies: ["TTIR", "TTInterp", "TTPasses", "TTRuntime", "TTCompiler", "TTEmbedding", "TTFuzz"]),
    .testTarget(name: "TTCompilerTests", dependencies: ["TTIR", "TTInterp", "TTPasses", "TTRuntime", "TTCompiler"]),
    .testTarget(name: "TTCodegenTests", dependencies: ["TTCodegen"]),
    .testTarget(name: "TTEmbeddingTests", dependencies: ["TTEmbedding", "TTSupport"]),
    .testTarget(name: "TTSupportTests", dependencies: ["TTSupport"]),
    .testTarget(name: "TTTrainTests", dependencies: ["TTIR", "TTInterp", "TTTrain", "TTPasses", "TTRuntime", "TTCompiler", "TTEmbedding"],
                exclude: ["JAXVision", "JAXTransformer"]),
    .testTarget(name: "TTONNXTests", dependencies: ["TTONNX", "TTIR", "TTInterp", "TTRuntime", "TTCompiler"]),
    .testTarget(name: "ttfcTests", dependencies: ["ttfc", "TTIR", "TTInterp", "TTPasses", "TTRuntime", "TTCompiler", "TTTrain"]),
  ]
)
