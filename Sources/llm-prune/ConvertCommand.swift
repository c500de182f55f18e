import CommandLineArguments
import Foundation
import SafeTensors
import Pruning
import Runs

enum ConvertCommand {
    static let spec = CommandSpec(
        name: "convert",
        abstract: "Rewrite a GGUF model (or a checkpoint folder) as a Hugging Face folder, dense or sparse.",
        discussion: """
        Writes config.json, model.safetensors (every tensor in --dtype), and tokenizer.json +
        tokenizer_config.json built from the GGUF's tokenizer.ggml.* metadata (the pre-tokenizer that
        tokenizer.ggml.pre names), or copied from --tokenizer's folder. GGUF tensors are dequantized to float32 exactly as the gguf
        package does, renamed to Hugging Face's names, and q/k rows are un-permuted from llama.cpp's RoPE
        layout, so the folder equals what transformers' own GGUF loader builds. The folder is written to a
        temporary sibling and renamed at the end: a failed or interrupted run leaves nothing.

        With --output-format sparse the decoder blocks' linears of a pruned model are packed in
        compressed-tensors' form: sparse-24-bitmask when every one holds 2:4, sparse-bitmask otherwise (or
        as --sparsity says, which is then checked on every linear); config.json carries the
        quantization_config compressed-tensors <= 0.14.0.1 reads (transformers 4.x with it loads the 2:4
        form). A compressed-tensors folder given as --model is decompressed: --output-format hf writes it
        dense.
        """,
        options: [
            OptionSpec(name: "model", valueName: "path", help: "The .gguf file (architectures llama, qwen2) or a Hugging Face folder.", required: true),
            OptionSpec(name: "output", valueName: "dir", help: "The folder to write; must not exist yet.", required: true),
            OptionSpec(name: "dtype", valueName: "type", help: "bf16, f16 or f32 (f32 keeps the dequantized values exactly); sparse: bf16 or f32.", defaultValue: "f32"),
            OptionSpec(name: "output-format", valueName: "fmt", help: "hf (every tensor dense) or sparse (the block linears packed in compressed-tensors' form).", defaultValue: "hf"),
            OptionSpec(name: "sparsity", valueName: "spec", help: "With sparse: the pattern every block linear must hold, N:M such as 2:4 (2:4 is stored as sparse-24-bitmask) or a ratio such as 0.5 (stored as sparse-bitmask); a linear that breaks an N:M pattern is an error naming it.", computedDefault: "detected: 2:4 when every linear holds it, else a bitmask"),
            tokenizerOption,
        ],
        examples: ["llm-prune convert --model ../shared/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf --output out/smollm2-hf"])

    static func run(_ a: ParsedArguments) throws {
        let format = try a.requiredChoice("output-format", ["hf", "sparse"])
        var storage: CheckpointStorage
        do { storage = try CheckpointStorage(format: format, dtype: try a.requiredChoice("dtype", ["bf16", "f16", "f32"])) } catch {
            throw UsageError("\(error)")
        }
        if let spec = a.string("sparsity") {
            guard case let .sparse(dtype, _) = storage else { throw UsageError("--sparsity applies to --output-format sparse") }
            do { storage = .sparse(dtype, try SparsityPattern(parsing: spec).packedLayout) } catch {
                throw UsageError("option '--sparsity': \(error)")
            }
        }
        let model = try a.requiredString("model")
        guard FileManager.default.fileExists(atPath: model) else { throw UsageError("model '\(model)' does not exist") }
        let output = URL(fileURLWithPath: try a.requiredString("output"))
        let files = try ModelConversion.convert(model: URL(fileURLWithPath: model), output: output, storage: storage,
                                                tokenizerDirectory: a.string("tokenizer").map { URL(fileURLWithPath: $0) },
                                                atPoint: TestPauses.hook)
        print("wrote \(output.path): \(files.sorted().joined(separator: ", "))")
    }
}
