// swift-tools-version:6.0
import PackageDescription

// One module per concern; see docs/DESIGN.md for what each holds and why.
let package = Package(
    name: "llm-prune",
    products: [
        .executable(name: "llm-prune", targets: ["llm-prune"]),
        .library(name: "LLMPrune", targets: ["Tensor", "JSON", "SafeTensors", "GGUF", "Tokenizers", "SparseWeights", "Llama", "Datasets", "Pruning", "Evaluation", "FineTuning", "Runs", "Generation"]),
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
        .systemLibrary(
            name: "CBZip2",
            providers: [.apt(["libbz2-dev"])]
        ),
        // Runs before main: puts OpenBLAS on the best kernel for the CPU and on one thread (see the source).
        .target(name: "CBLASRuntime", dependencies: ["COpenBLAS"]),
        .target(name: "Tensor", dependencies: ["COpenBLAS", "CBLASRuntime"]),
        .target(name: "JSON"),
        // A read-only memory map of a whole file and checked tensor sizes, shared by the two file formats.
        .target(name: "MappedFiles"),
        .target(name: "SafeTensors", dependencies: ["JSON", "MappedFiles"]),
        .target(name: "GGUF", dependencies: ["MappedFiles"]),
        .target(name: "Tokenizers", dependencies: ["JSON"]),
        // One matrix stored packed (N:M kept values and in-group indices, or a bitmask) and
        // compressed-tensors' on-disk forms of it.
        .target(name: "SparseWeights", dependencies: ["Tensor", "SafeTensors", "JSON"]),
        .target(name: "Llama", dependencies: ["Tensor", "SafeTensors", "GGUF", "JSON", "SparseWeights"]),
        .target(name: "Datasets", dependencies: ["Tensor", "JSON", "Tokenizers", "SafeTensors", "CZlib"]),
        .target(name: "Pruning", dependencies: ["Tensor", "JSON", "Llama", "Datasets"]),
        .target(name: "Evaluation", dependencies: ["Tensor", "Llama", "Datasets", "Tokenizers", "JSON", "CBZip2"]),
        .target(name: "FineTuning", dependencies: ["Tensor", "SafeTensors", "Llama"]),
        // Text generation: sampling, chat templates, streamed detokenization, the generation loop.
        .target(name: "Generation", dependencies: ["Tensor", "Llama", "Tokenizers"]),
        // The application layer: the prune and fine-tune jobs, checkpoint writers, resume, work folders,
        // memory estimates, run records, model opening and conversion.
        .target(name: "Runs", dependencies: ["Tensor", "JSON", "SafeTensors", "GGUF", "Tokenizers", "Llama", "Datasets", "Pruning", "Evaluation", "FineTuning", "SparseWeights"]),
        // The command line's option parser: specs, parsing, typed accessors, usage errors, --help.
        .target(name: "CommandLineArguments"),
        .executableTarget(
            name: "llm-prune",
            dependencies: ["CommandLineArguments", "Tensor", "JSON", "SafeTensors", "GGUF", "Tokenizers", "Llama", "Datasets", "Pruning", "Evaluation", "FineTuning", "Runs", "Generation"]
        ),
        .testTarget(name: "TensorTests", dependencies: ["Tensor", "CBLASRuntime"]),
        .testTarget(name: "JSONTests", dependencies: ["JSON"]),
        .testTarget(name: "CommandLineArgumentsTests", dependencies: ["CommandLineArguments"]),
        .testTarget(name: "SafeTensorsTests", dependencies: ["SafeTensors"]),
        .testTarget(name: "SparseWeightsTests", dependencies: ["SparseWeights", "SafeTensors", "Tensor", "JSON", "Llama", "Pruning", "FineTuning", "Runs"]),
        .testTarget(name: "GGUFTests", dependencies: ["GGUF", "Llama", "SafeTensors", "Tensor"]),
        .testTarget(name: "TokenizersTests", dependencies: ["Tokenizers", "JSON", "GGUF"]),
        .testTarget(name: "LlamaTests", dependencies: ["Llama", "JSON", "Tensor", "SafeTensors"]),
        .testTarget(name: "DatasetsTests", dependencies: ["Datasets", "Tokenizers", "SafeTensors"]),
        .testTarget(name: "PruningTests", dependencies: ["Pruning", "GGUF", "JSON", "Llama", "Tensor", "SafeTensors", "Datasets", "Tokenizers", "Evaluation", "Runs"]),
        .testTarget(name: "EvaluationTests", dependencies: ["Evaluation", "Llama", "Datasets", "Tokenizers", "JSON", "SafeTensors", "GGUF", "Pruning", "Runs"]),
        // Seeded corrupt inputs against the library and the llm-prune binary (see scripts/fuzz_campaign.sh).
        .testTarget(name: "FuzzTests", dependencies: ["Pruning", "Llama", "Datasets", "Tokenizers", "SafeTensors", "Runs"]),
        // Runs the built llm-prune binary as subprocesses: exit codes, messages, signals, resume.
        .testTarget(name: "CLITests"),
        .testTarget(name: "GenerationTests", dependencies: ["Generation", "Llama", "Tensor", "Tokenizers", "Runs", "Pruning", "JSON"]),
        .testTarget(name: "FineTuningTests", dependencies: ["FineTuning", "Llama", "Tensor", "SafeTensors", "Pruning", "Datasets", "Tokenizers", "Evaluation", "Runs"]),
    ],
    // Swift 5 mode: the kernels share raw buffers across Dispatch workers by design (disjoint ranges),
    // which Swift 6's strict Sendable checking cannot express without wrapping every pointer.
    swiftLanguageModes: [.v5]
)

// Test-only targets, added here so the module list above stays as it is. TestSupport holds what several
// test targets share (the NaN-propagating error measures every test reduces differences with, the
// child-process runner); llm-prune-test-child is the child process of the tests that need a fresh process
// (OpenBLAS's core, oneDNN's ISA cap, the peak resident size): its own entry point, not a @Test.
package.targets += [
    .target(name: "TestSupport", dependencies: ["Llama"], path: "Tests/TestSupport"),
    .executableTarget(name: "llm-prune-test-child", dependencies: ["Tensor", "Runs", "TestSupport"], path: "Tests/TestChild"),
]
for target in package.targets where target.type == .test {
    target.dependencies.append("TestSupport")
}
