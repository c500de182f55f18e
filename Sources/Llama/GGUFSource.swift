import Foundation
import GGUF
import JSON

/// A llama.cpp GGUF file read as a LLaMA-family checkpoint with Hugging Face tensor names and layout, so
/// that `LlamaCheckpoint` and everything built on it work unchanged.
///
/// What differs from a Hugging Face folder, and how it is undone:
/// - Names: `token_embd` → `model.embed_tokens`, `blk.N.attn_q` → `model.layers.N.self_attn.q_proj`, ...
///   (`GGUFTensorNaming`). Tensors of other names keep their GGUF name, so the strict checkpoint check
///   reports them as unused rather than silently dropping them.
/// - Shapes: GGUF lists dimensions innermost first; `shape(of:)` gives them outermost first.
/// - q/k rows (architecture `llama` only): llama.cpp's converter permutes the rows of q_proj and k_proj
///   from the rotate-half RoPE layout of Hugging Face to the interleaved layout of llama.cpp, per head:
///   GGUF row (h, i, t) = HF row (h, t, i) for t ∈ {0, 1}, i < head_dim/2. `floats` applies the inverse,
///   as transformers' GGUF loader does (`LlamaTensorProcessor._reverse_permute_weights`), so the weights
///   equal the ones transformers loads.
/// - Values: every type is dequantized to float32 (`GGUFFile.floats`), bit-identical to the gguf package.
public final class GGUFWeights: WeightSource, @unchecked Sendable {
    public let file: GGUFFile
    public let configuration: LlamaConfiguration
    /// Hugging Face names, in the file's tensor order.
    public let tensorNames: [String]
    private let ggufNameOf: [String: String]

    public init(file: GGUFFile, configuration: LlamaConfiguration) {
        self.file = file
        self.configuration = configuration
        var names: [String] = []
        var map: [String: String] = [:]
        for g in file.tensorNames {
            var hf = GGUFTensorNaming.huggingFaceName(g, normPlacement: configuration.architecture.normPlacement) ?? g
            // Two tensors under one HF name (e.g. `output_norm.weight` and a literal `model.norm.weight`):
            // the later one is listed as `gguf:<name>`, so the strict check reports it as unused instead of
            // one silently shadowing the other.
            while map[hf] != nil { hf = "gguf:" + hf }
            names.append(hf)
            map[hf] = g
        }
        tensorNames = names
        ggufNameOf = map
    }

    /// The GGUF tensor behind a Hugging Face name.
    public func ggufName(of name: String) -> String? { ggufNameOf[name] }

    public func shape(of name: String) throws -> [Int] {
        guard let g = ggufNameOf[name], let info = file.info(g) else { throw LlamaError.missingTensor(name) }
        return info.shape
    }

    public func floats(_ name: String) throws -> [Float] {
        guard let g = ggufNameOf[name] else { throw LlamaError.missingTensor(name) }
        var data: [Float]
        do { data = try file.floats(g) } catch { throw LlamaError.checkpoint(String(describing: error)) }
        if let shift = normShift(ggufName: g) {
            for i in data.indices { data[i] -= shift }
        }
        guard let heads = permutedHeads(ggufName: g) else { return data }
        let rows = try shape(of: name).first ?? 1
        return try GGUFTensorNaming.permuteRows(data, rows: rows, heads: heads, toHuggingFace: true, tensor: name)
    }

    /// What llama.cpp's converter added to norm tensor `g` (Gemma's (1 + w) norms are stored as 1 + w, so
    /// that llama.cpp multiplies by the stored value), or nil. `floats` subtracts it, as transformers' GGUF
    /// loader does, and a GGUF export adds it back.
    public func normShift(ggufName g: String) -> Float? {
        guard configuration.architecture.normForm == .offset, g.hasSuffix("norm.weight") else { return nil }
        return 1
    }

    /// The head count whose rows llama.cpp permuted in tensor `g`, or nil when it did not.
    public func permutedHeads(ggufName g: String) -> Int? {
        guard configuration.modelType == .llama else { return nil }
        if g.contains(".attn_q.") { return configuration.numAttentionHeads }
        if g.contains(".attn_k.") { return configuration.numKeyValueHeads }
        return nil
    }
}

/// The mapping between llama.cpp's tensor names and Hugging Face's for LLaMA-family models, and the q/k
/// row permutation of llama.cpp's converter.
public enum GGUFTensorNaming {
    /// llama.cpp's block tensor names and the block part each stands for: a norm by role (its HF name
    /// depends on the architecture's norm placement, `BlockNorm.moduleName`) or a linear layer.
    static let blockParts: [(gguf: String, part: LlamaTensorNames.BlockEntry)] = [
        ("attn_norm", .norm(.input)), ("attn_q_norm", .norm(.query)), ("attn_k_norm", .norm(.key)),
        ("post_attention_norm", .norm(.attentionOutput)), ("ffn_norm", .norm(.mlpInput)), ("post_ffw_norm", .norm(.mlpOutput)),
        ("attn_q", .weight(.q)), ("attn_k", .weight(.k)), ("attn_v", .weight(.v)), ("attn_output", .weight(.o)),
        ("ffn_gate", .weight(.gate)), ("ffn_up", .weight(.up)), ("ffn_down", .weight(.down)),
    ]
    static let topLevel: [(gguf: String, hf: String)] = [
        ("token_embd", "model.embed_tokens"), ("output_norm", "model.norm"), ("output", "lm_head"),
    ]

    /// The module path of a block part under `model.layers.N.` for a norm placement; nil for a norm blocks
    /// of that placement do not have (the sandwich norms of a pre-norm model).
    private static func modulePath(_ part: LlamaTensorNames.BlockEntry, _ placement: Architecture.NormPlacement) -> String? {
        switch part {
        case .norm(let role):
            let a = Architecture(normPlacement: placement, qkNorm: true, attentionScale: 1, layers: [])
            return role.isPresent(in: a) ? role.moduleName(a) : nil
        case .weight(let kind), .bias(let kind): return kind.modulePath
        }
    }

    /// The Hugging Face name of a llama.cpp tensor name (`blk.3.attn_q.weight` →
    /// `model.layers.3.self_attn.q_proj.weight`; `blk.3.ffn_norm.weight` → `post_attention_layernorm` with
    /// pre-norms, `pre_feedforward_layernorm` with sandwich norms), or nil for names outside the table.
    public static func huggingFaceName(_ g: String, normPlacement: Architecture.NormPlacement = .pre) -> String? {
        let parts = g.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        guard let suffix = parts.last, suffix == "weight" || suffix == "bias" else { return nil }
        if parts.count == 2, let t = topLevel.first(where: { $0.gguf == parts[0] }) { return "\(t.hf).\(suffix)" }
        if parts.count == 4, parts[0] == "blk", let n = Int(parts[1]), n >= 0, String(n) == parts[1],
           let b = blockParts.first(where: { $0.gguf == parts[2] }) {
            if case .norm = b.part, suffix != "weight" { return nil }
            return modulePath(b.part, normPlacement).map { "model.layers.\(n).\($0).\(suffix)" }
        }
        return nil
    }

    /// The llama.cpp name of a Hugging Face tensor name (the inverse of `huggingFaceName`).
    public static func ggufName(_ hf: String, normPlacement: Architecture.NormPlacement = .pre) -> String? {
        let suffix: String
        if hf.hasSuffix(".weight") { suffix = "weight" } else if hf.hasSuffix(".bias") { suffix = "bias" } else { return nil }
        let stem = String(hf.dropLast(suffix.count + 1))
        if let t = topLevel.first(where: { $0.hf == stem }) { return "\(t.gguf).\(suffix)" }
        let prefix = "model.layers."
        guard stem.hasPrefix(prefix) else { return nil }
        let rest = stem.dropFirst(prefix.count)
        guard let dot = rest.firstIndex(of: "."), let n = Int(rest[..<dot]) else { return nil }
        let module = String(rest[rest.index(after: dot)...])
        guard let b = blockParts.first(where: { modulePath($0.part, normPlacement) == module }) else { return nil }
        return "blk.\(n).\(b.gguf).\(suffix)"
    }

    /// Reorders the rows of a (rows × columns) matrix (or a bias, columns = 1) split into `heads` heads of
    /// 2·half rows. `toHuggingFace`: GGUF row (h, i, t) goes to HF row (h, t, i) (transformers'
    /// reverse_permute); otherwise the converter's permutation, HF (h, t, i) → GGUF (h, i, t).
    public static func permuteRows(_ x: [Float], rows: Int, heads: Int, toHuggingFace: Bool, tensor: String) throws -> [Float] {
        guard heads > 0, rows > 0, rows % (2 * heads) == 0, x.count % rows == 0 else {
            throw LlamaError.checkpoint("\(tensor): \(rows) rows cannot be split into \(heads) heads of rotary pairs")
        }
        let columns = x.count / rows
        let half = rows / heads / 2
        var out = [Float](repeating: 0, count: x.count)
        x.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for h in 0..<heads {
                    for t in 0..<2 {
                        for i in 0..<half {
                            let hfRow = h * 2 * half + t * half + i
                            let ggRow = h * 2 * half + 2 * i + t
                            let (from, to) = toHuggingFace ? (ggRow, hfRow) : (hfRow, ggRow)
                            for c in 0..<columns { dst[to * columns + c] = src[from * columns + c] }
                        }
                    }
                }
            }
        }
        return out
    }
}

extension LlamaConfiguration {
    /// The configuration a GGUF file's `<arch>.*` metadata describes (architectures `llama`, `qwen2`, `qwen3`
    /// and `gemma3`, the last as `gemma3_text`),
    /// with the keys transformers' GGUF loader reads: `context_length`, `block_count`,
    /// `feed_forward_length`, `embedding_length`, `attention.head_count(_kv)`,
    /// `attention.layer_norm_rms_epsilon`, `rope.freq_base`, `rope.dimension_count` (head_dim, llama),
    /// `vocab_size` (else the tokenizer's token count), tied embeddings when there is no `output.weight`,
    /// BOS/EOS from `tokenizer.ggml.*`. The result goes through the same validation as a config.json.
    public init(gguf file: GGUFFile) throws {
        let source = file.url.path
        func gguf<T>(_ body: () throws -> T) throws -> T {
            do { return try body() } catch let e as GGUFError {
                throw LlamaError.unreadableConfiguration(file: source, reason: (e.key.map { "key '\($0)' " } ?? "") + e.message)
            }
        }
        let arch = try gguf { try file.string("general.architecture") }
        guard ["llama", "qwen2", "qwen3", "gemma3"].contains(arch) else {
            throw LlamaError.unsupportedOption("GGUF general.architecture '\(arch)' (supported: llama, qwen2, qwen3, gemma3)")
        }
        func required(_ key: String) throws -> Int {
            guard let v = try gguf({ try file.int("\(arch).\(key)") }) else {
                throw LlamaError.unreadableConfiguration(file: source, reason: "missing key '\(arch).\(key)'")
            }
            return v
        }
        /// A GGUF float as a config.json number (JSON has no NaN or infinity).
        func number(_ key: String) throws -> JSONValue? {
            guard let v = try gguf({ try file.double(key) }) else { return nil }
            guard let n = JSONValue(v) else {
                throw LlamaError.unreadableConfiguration(file: source, reason: "key '\(key)' is \(v), not a finite number")
            }
            return n
        }
        var config: [String: JSONValue] = [
            "model_type": .string(arch == "gemma3" ? "gemma3_text" : arch),
            "hidden_size": JSONValue(try required("embedding_length")),
            "num_hidden_layers": JSONValue(try required("block_count")),
            "num_attention_heads": JSONValue(try required("attention.head_count")),
            "intermediate_size": JSONValue(try required("feed_forward_length")),
            "tie_word_embeddings": .bool(file.info("output.weight") == nil),
        ]
        if let v = try gguf({ try file.int("\(arch).attention.head_count_kv") }) { config["num_key_value_heads"] = JSONValue(v) }
        if let v = try gguf({ try file.int("\(arch).context_length") }) { config["max_position_embeddings"] = JSONValue(v) }
        if let v = try number("\(arch).attention.layer_norm_rms_epsilon") { config["rms_norm_eps"] = v }
        if let v = try number("\(arch).rope.freq_base") { config["rope_theta"] = v }
        if let v = try gguf({ try file.int("\(arch).vocab_size") }) {
            config["vocab_size"] = JSONValue(v)
        } else if let tokens = file["tokenizer.ggml.tokens"]?.array {
            config["vocab_size"] = JSONValue(tokens.count)
        } else if let e = file.info("token_embd.weight"), e.shape.count == 2 {
            config["vocab_size"] = JSONValue(e.shape[0])
        }
        if arch == "gemma3" {
            // transformers' GGUF loader reads these two; the layer pattern, the sliding layers' RoPE base and
            // query_pre_attn_scalar are not in the file and take Gemma3TextConfig's defaults (6, 10,000, 256).
            if let v = try gguf({ try file.int("gemma3.attention.sliding_window") }) { config["sliding_window"] = JSONValue(v) }
        }
        if arch == "gemma3" || arch == "qwen3" {
            if let v = try gguf({ try file.int("\(arch).attention.key_length") }) { config["head_dim"] = JSONValue(v) }
        }
        if arch == "llama" {
            if let keyLength = try gguf({ try file.int("llama.attention.key_length") }) {
                config["head_dim"] = JSONValue(keyLength)
            } else if let rope = try gguf({ try file.int("llama.rope.dimension_count") }) {
                config["head_dim"] = JSONValue(rope)
            }
        }
        if let rope = try gguf({ try file.int("\(arch).rope.dimension_count") }),
           let heads = config["num_attention_heads"]?.intValue, heads > 0 {
            let headDim = config["head_dim"]?.intValue ?? ((config["hidden_size"]?.intValue ?? 0) / heads)
            if rope != headDim {
                throw LlamaError.unsupportedOption("\(arch).rope.dimension_count \(rope) differs from head_dim \(headDim) (partial rotary embeddings)")
            }
        }
        if let kind = file["\(arch).rope.scaling.type"] {
            switch kind.string {
            case "none"?: break
            case "linear"?:
                guard let f = try number("\(arch).rope.scaling.factor") else {
                    throw LlamaError.invalidConfiguration("\(arch).rope.scaling.type is linear but rope.scaling.factor is missing")
                }
                config["rope_scaling"] = .object([("rope_type", .string("linear")), ("factor", f)])
            default:
                throw LlamaError.unsupportedOption("GGUF \(arch).rope.scaling.type \(kind.summary) (supported: none, linear)")
            }
        }
        if let bos = try gguf({ try file.int("tokenizer.ggml.bos_token_id") }) { config["bos_token_id"] = JSONValue(bos) }
        if let eos = try gguf({ try file.int("tokenizer.ggml.eos_token_id") }) { config["eos_token_id"] = JSONValue(eos) }
        try self.init(json: .object(config.map { ($0.key, $0.value) }), source: source)
    }
}

extension LlamaCheckpoint {
    /// Opens a GGUF file (memory-mapped; nothing is dequantized until a tensor is loaded) and checks its
    /// tensors against the configuration its metadata describes.
    public init(ggufFile url: URL) throws {
        let file: GGUFFile
        do { file = try GGUFFile(url: url) } catch { throw LlamaError.checkpoint(String(describing: error)) }
        let configuration = try LlamaConfiguration(gguf: file)
        try self.init(configuration: configuration, source: GGUFWeights(file: file, configuration: configuration))
    }

    /// Whether `url` names a GGUF file (a regular file whose first four bytes are `GGUF`) rather than a
    /// Hugging Face checkpoint folder.
    public static func isGGUF(_ url: URL) -> Bool {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDir), !isDir.boolValue,
              let h = FileHandle(forReadingAtPath: url.path) else { return false }
        defer { try? h.close() }
        return (try? h.read(upToCount: 4)) == Data("GGUF".utf8)
    }

    /// Opens a model given as a Hugging Face folder or a GGUF file.
    public init(model url: URL) throws {
        if Self.isGGUF(url) { try self.init(ggufFile: url) } else { try self.init(directory: url) }
    }
}
