// swift-tools-version:6.0
import PackageDescription

// One module per concern; see docs/DESIGN.md for what each holds and why.
let package = Package(
    name: "llm-prune",
    products: [
        .executable(name: "llm-prune", targets: ["llm-prune"]),
        .library(name: "LLMPrune", targets: ["Tensor", "JSON", "SafeTensors", "Tokenizers", "Llama", "Datasets", "Pruning", "Evaluation", "FineTuning"]),
    ],
    targets: [
        .systemLibrary(
            name: "COpenBLAS",
            pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"])]
        ),
        .systemLibrary(
            name: "CZlib",
            providers: [.apt(["zlib1g-dev"])]
        ),
        .target(name: "Tensor", dependencies: ["COpenBLAS"]),
        .target(name: "JSON"),
        .target(name: "SafeTensors", dependencies: ["JSON"]),
        .target(name: "Tokenizers", dependencies: ["JSON"]),
        .target(name: "Llama", dependencies: ["Tensor", "SafeTensors"]),
        .target(name: "Datasets", dependencies: ["Tensor", "Tokenizers", "SafeTensors", "CZlib"]),
        .target(name: "Pruning", dependencies: ["Tensor", "SafeTensors", "Tokenizers", "Llama", "Datasets", "Evaluation"]),
        .target(name: "Evaluation", dependencies: ["Tensor", "Llama", "Datasets", "Tokenizers"]),
        .target(name: "FineTuning", dependencies: ["Tensor", "SafeTensors", "Tokenizers", "Llama", "Datasets", "Evaluation", "Pruning"]),
        .executableTarget(
            name: "llm-prune",
            dependencies: ["Tensor", "SafeTensors", "Tokenizers", "Llama", "Datasets", "Pruning", "Evaluation", "FineTuning"]
        ),
        .testTarget(name: "TensorTests", dependencies: ["Tensor"]),
        .testTarget(name: "JSONTests", dependencies: ["JSON"]),
        .testTarget(name: "SafeTensorsTests", dependencies: ["SafeTensors"]),
        .testTarget(name: "TokenizersTests", dependencies: ["Tokenizers", "JSON"]),
        .testTarget(name: "LlamaTests", dependencies: ["Llama", "Tensor", "SafeTensors"]),
        .testTarget(name: "DatasetsTests", dependencies: ["Datasets", "Tokenizers", "SafeTensors"]),
        .testTarget(name: "PruningTests", dependencies: ["Pruning", "JSON", "Llama", "Tensor", "SafeTensors", "Datasets", "Tokenizers", "Evaluation"]),
        .testTarget(name: "EvaluationTests", dependencies: ["Evaluation", "Llama", "Datasets", "Tokenizers"]),
        .testTarget(name: "FineTuningTests", dependencies: ["FineTuning", "Llama", "Tensor", "SafeTensors", "Pruning", "Datasets"]),
    ],
    // Swift 5 mode: the kernels share raw buffers across Dispatch workers by design (disjoint ranges),
    // which Swift 6's strict Sendable checking cannot express without wrapping every pointer.
    swiftLanguageModes: [.v5]
)
