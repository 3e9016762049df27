// swift-tools-version:6.0
// ttfc — a training compiler toolchain. The targets and what each depends on:
//   TTIR (the language: ops and their facts, parser, verifier)
//   TTEmbedding (dynamic embedding tables, sparse optimizers)
//   TTInterp (reference semantics) <- TTIR, TTEmbedding
//   TTPasses (optimization passes, fusion) <- TTIR, TTInterp
//   TTCodegen (LLVM kernels, kernel cache) <- TTIR
//   TTRuntime (programs run: memory, thunks, GEMM, shapes) <- TTIR, TTInterp, TTCodegen, TTEmbedding
//   TTCompiler (Module -> Program: verify, pipeline, lower, plan, compile kernels)
//     <- TTIR, TTInterp, TTPasses, TTCodegen, TTRuntime, TTEmbedding
//   TTTrain (autodiff, optimizers, training loop) <- the above
//   ttfc, ttfc-bench (command-line tools) <- the above
// System libraries come from Debian: LLVM 19 (via the pkg-config file that tools/setup writes),
// OpenBLAS and zlib.
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
  ],
  dependencies: [
    .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
  ],
  targets: [
    .systemLibrary(name: "CLLVM", pkgConfig: "ttfc-llvm",
                   providers: [.apt(["llvm-19-dev"])]),
    .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas",
                   providers: [.apt(["libopenblas-dev"])]),
    .systemLibrary(name: "CZlib", pkgConfig: "zlib",
                   providers: [.apt(["zlib1g-dev"])]),
    .target(name: "TTIR"),
    .target(name: "TTInterp", dependencies: ["TTIR", "TTEmbedding"]),
    .target(name: "TTPasses", dependencies: ["TTIR", "TTInterp"]),
    .target(name: "TTFuzz", dependencies: ["TTIR"]),
    .target(name: "TTTrain", dependencies: ["TTIR", "TTInterp", "TTPasses", "TTRuntime", "TTCompiler", "TTCodegen", "TTEmbedding"]),
    .target(name: "TTRuntime", dependencies: ["TTIR", "TTInterp", "TTCodegen", "TTEmbedding", "COpenBLAS", "CZlib"]),
    .target(name: "TTCompiler", dependencies: ["TTIR", "TTInterp", "TTPasses", "TTCodegen", "TTRuntime", "TTEmbedding"]),
    .target(name: "TTCodegen", dependencies: ["TTIR", "CLLVM", "COpenBLAS", "CZlib"]),
    .target(name: "CSupport"),
    .target(name: "TTEmbedding", dependencies: ["CZlib", "CSupport"]),
    .executableTarget(name: "ttfc", dependencies: [
      "TTIR", "TTInterp", "TTPasses", "TTRuntime", "TTCompiler", "TTCodegen", "TTTrain", "TTEmbedding",
      .product(name: "ArgumentParser", package: "swift-argument-parser"),
    ]),
    .executableTarget(name: "ttfc-bench", dependencies: ["TTIR", "TTRuntime", "TTCompiler", "TTCodegen", "TTTrain", "TTEmbedding", "COpenBLAS",
                                                         .product(name: "ArgumentParser", package: "swift-argument-parser")]),
    .testTarget(name: "TTIRTests", dependencies: ["TTIR", "TTFuzz"], exclude: ["Inputs"]),
    .testTarget(name: "TTInterpTests", dependencies: ["TTIR", "TTInterp", "TTRuntime", "TTFuzz"],
                exclude: ["Fixtures"]),
    .testTarget(name: "TTPassesTests", dependencies: ["TTIR", "TTInterp", "TTPasses", "TTFuzz"]),
    .testTarget(name: "TTRuntimeTests", dependencies: ["TTIR", "TTInterp", "TTPasses", "TTRuntime", "TTCompiler", "TTFuzz"]),
    .testTarget(name: "TTCompilerTests", dependencies: ["TTIR", "TTInterp", "TTPasses", "TTRuntime", "TTCompiler"]),
    .testTarget(name: "TTCodegenTests", dependencies: ["TTCodegen"]),
    .testTarget(name: "TTEmbeddingTests", dependencies: ["TTEmbedding"]),
    .testTarget(name: "TTTrainTests", dependencies: ["TTIR", "TTInterp", "TTTrain", "TTRuntime", "TTCompiler"]),
    .testTarget(name: "ttfcTests", dependencies: ["ttfc", "TTIR", "TTInterp", "TTPasses", "TTRuntime", "TTCompiler", "TTTrain"]),
  ]
)
