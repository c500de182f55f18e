import CommandLineArguments
import Foundation
import SafeTensors
import Pruning
import Runs

enum ConvertCommand {
    static let spec = CommandSpec(
        name: "convert",
        abstract: "Rewrite a GGUF model (or a checkpoint folder) as a Hugging Face folder.",
        discussion: """
        Writes config.json, model.safetensors (every tensor in --dtype), and tokenizer.json +
        tokenizer_config.json built from the GGUF's tokenizer.ggml.* metadata (the pre-tokenizer that
        tokenizer.ggml.pre names), or copied from --tokenizer's folder. GGUF tensors are dequantized to float32 exactly as the gguf
        package does, renamed to Hugging Face's names, and q/k rows are un-permuted from llama.cpp's RoPE
        layout, so the folder equals what transformers' own GGUF loader builds. The folder is written to a
        temporary sibling and renamed at the end: a failed or interrupted run leaves nothing.
        """,
        options: [
            OptionSpec(name: "model", valueName: "path", help: "The .gguf file (architectures llama, qwen2) or a Hugging Face folder.", required: true),
            OptionSpec(name: "output", valueName: "dir", help: "The folder to write; must not exist yet.", required: true),
            OptionSpec(name: "dtype", valueName: "type", help: "bf16, f16 or f32 (f32 keeps the dequantized values exactly).", defaultValue: "f32"),
            tokenizerOption,
        ],
        examples: ["llm-prune convert --model ../shared/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf --output out/smollm2-hf"])

    static func run(_ a: ParsedArguments) throws {
        let dtype: DType
        switch try a.requiredChoice("dtype", ["bf16", "f16", "f32"]) {
        case "bf16": dtype = .BF16
        case "f16": dtype = .F16
        default: dtype = .F32
        }
        let model = try a.requiredString("model")
        guard FileManager.default.fileExists(atPath: model) else { throw UsageError("model '\(model)' does not exist") }
        let output = URL(fileURLWithPath: try a.requiredString("output"))
        let files = try ModelConversion.convert(model: URL(fileURLWithPath: model), output: output, dtype: dtype,
                                                tokenizerDirectory: a.string("tokenizer").map { URL(fileURLWithPath: $0) },
                                                atPoint: TestPauses.hook)
        print("wrote \(output.path): \(files.sorted().joined(separator: ", "))")
    }
}
