import Foundation

// A seeded generator of corrupt inputs: model folders (safetensors, config.json, tokenizer.json, shard
// index), calibration and evaluation files (text, jsonl, c4, tokens) and flag values. Case i of seed s is
// always the same bytes, so a failure is reproduced by its (seed, index) alone.
//
// Adding a format is one function `(inout FuzzRNG, FuzzBase) -> FuzzCase` and one line in
// `FuzzGenerator.formats` (the GGUF reader's files will go there the same way).

/// SplitMix64: small, fast, and stable across platforms and releases (unlike the system generator).
struct FuzzRNG {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func below(_ n: Int) -> Int { n <= 1 ? 0 : Int(next() % UInt64(n)) }
    mutating func chance(_ p: Double) -> Bool { Double(next() >> 11) / Double(1 << 53) < p }
    mutating func pick<T>(_ items: [T]) -> T { items[below(items.count)] }
    mutating func bytes(_ n: Int) -> [UInt8] { (0..<n).map { _ in UInt8(truncatingIfNeeded: next()) } }
}

/// One file of a case, relative to the case folder.
enum FuzzFile {
    case bytes([UInt8])
    case directory
    case symlink(String)
}

/// What a case exercises.
enum FuzzTarget {
    /// `model/` is a (corrupt) model folder.
    case model
    /// `calib` is a calibration file of this `--calibration-format` (and `--calibration-field`).
    case calibration(format: String, field: String)
    /// `data` is an evaluation file of this `--dataset`.
    case evaluation(dataset: String)
    /// Extra `prune` flags (hostile values) against the intact model and calibration text.
    case flags([String])
    /// `model.gguf` is a (corrupt) llama.cpp file, tokenizer in its metadata.
    case gguf
}

struct FuzzCase: CustomStringConvertible {
    var seed: UInt64
    var index: Int
    var format: String
    var mutation: String
    var files: [(path: String, file: FuzzFile)]
    var target: FuzzTarget
    var description: String { "case \(seed)/\(index) [\(format): \(mutation)]" }
}

/// The intact inputs every mutation starts from: the shared stories260K model and small valid
/// calibration files.
struct FuzzBase {
    let modelFolder: URL
    let config: [UInt8]
    let tokenizer: [UInt8]
    let tokenizerConfig: [UInt8]
    let safetensors: [UInt8]
    let text: [UInt8]
    /// A tiny llama GGUF with a byte-level tokenizer in its metadata (`Fixtures/gguf/tiny-llama.gguf`).
    let gguf: [UInt8]

    init(modelFolder: URL, textFile: URL, ggufFile: URL) throws {
        gguf = [UInt8](try Data(contentsOf: ggufFile))
        self.modelFolder = modelFolder
        func read(_ name: String) throws -> [UInt8] { [UInt8](try Data(contentsOf: modelFolder.appendingPathComponent(name))) }
        config = try read("config.json")
        tokenizer = try read("tokenizer.json")
        tokenizerConfig = try read("tokenizer_config.json")
        safetensors = try read("model.safetensors")
        text = [UInt8](try Data(contentsOf: textFile).prefix(6000))
    }

    /// The model folder's files with `replacing` in place of the ones it names.
    func modelFiles(_ replacing: [(String, FuzzFile)]) -> [(path: String, file: FuzzFile)] {
        var files: [String: FuzzFile] = [
            "config.json": .bytes(config), "tokenizer.json": .bytes(tokenizer),
            "tokenizer_config.json": .bytes(tokenizerConfig), "model.safetensors": .bytes(safetensors),
        ]
        var extra: [(String, FuzzFile)] = []
        for (name, file) in replacing {
            if files[name] != nil { files[name] = file } else { extra.append((name, file)) }
        }
        return (files.sorted { $0.key < $1.key }.map { ("model/" + $0.key, $0.value) }
                + extra.map { ("model/" + $0.0, $0.1) })
    }
}

enum FuzzGenerator {
    typealias Make = (inout FuzzRNG, FuzzBase) -> FuzzCase

    /// Every format with its weight (how often it is drawn).
    static let formats: [(name: String, weight: Int, make: Make)] = [
        ("safetensors", 5, safetensors),
        ("config", 4, config),
        ("tokenizer", 4, tokenizer),
        ("index", 2, shardIndex),
        ("text", 2, calibrationText),
        ("jsonl", 2, calibrationJSONL),
        ("c4", 1, calibrationC4),
        ("tokens", 2, calibrationTokens),
        ("eval", 2, evaluationText),
        ("flags", 4, flags),
        ("gguf", 4, gguf),
    ]

    static func generate(seed: UInt64, index: Int, base: FuzzBase) -> FuzzCase {
        var rng = FuzzRNG(seed: seed &* 0x100_0000_01B3 &+ UInt64(index) &* 0x9E37_79B9)
        _ = rng.next()
        let total = formats.reduce(0) { $0 + $1.weight }
        var r = rng.below(total)
        for f in formats {
            if r < f.weight {
                var c = f.make(&rng, base)
                c.seed = seed
                c.index = index
                return c
            }
            r -= f.weight
        }
        fatalError("unreachable")
    }

    // MARK: - Hostile values

    /// JSON literals that break naive readers: overflowing, non-integral, non-finite, wrong type.
    static let hostileLiterals: [String] = [
        "0", "-1", "1", "2", "3", "255", "65536", "2147483647", "2147483648", "4294967296",
        "4611686018427387904", "9223372036854775807", "9223372036854775808", "-9223372036854775808",
        "99999999999999999999999", "1e30", "1e400", "-1e400", "1.5", "0.5", "-0.0", "1e-320", "1E3",
        "\"12\"", "\"\"", "null", "true", "false", "[]", "{}", "[1, 2]", "[[]]", "{\"a\": 1}",
        "\"../../etc/passwd\"", "\"\\u0000\"", "\"" + String(repeating: "x", count: 5000) + "\"",
    ]

    static func hostileLiteral(_ rng: inout FuzzRNG) -> String {
        if rng.chance(0.15) { return String(Int64(bitPattern: rng.next()) >> rng.below(63)) }
        return rng.pick(hostileLiterals)
    }

    /// Whole-file replacements for a JSON file.
    static func brokenJSONText(_ rng: inout FuzzRNG, valid: [UInt8]) -> (String, [UInt8]) {
        switch rng.below(10) {
        case 0: return ("empty file", [])
        case 1: return ("truncated", Array(valid.prefix(rng.below(valid.count))))
        case 2: return ("top-level array", Array("[1, 2, 3]".utf8))
        case 3: return ("top-level string", Array("\"config\"".utf8))
        case 4: return ("deep nesting", Array((String(repeating: "[", count: 100_000)).utf8))
        case 5: return ("random bytes", rng.bytes(1 + rng.below(2000)))
        case 6: return ("invalid UTF-8", Array(valid.prefix(valid.count / 2)) + [0xC3, 0x28, 0xFF] + Array(valid.suffix(valid.count / 2)))
        case 7: return ("NaN literal", Array(valid.prefix(valid.count - 1)) + Array(", \"x\": NaN}".utf8))
        case 8: return ("BOM + trailing garbage", [0xEF, 0xBB, 0xBF] + valid + Array("}}".utf8))
        default:
            var v = valid
            for _ in 0..<(1 + rng.below(8)) where !v.isEmpty { v[rng.below(v.count)] = UInt8(truncatingIfNeeded: rng.next()) }
            return ("flipped bytes", v)
        }
    }

    /// Serializes `object` and then splices `literal` in place of the placeholder string.
    static func jsonWithLiteral(_ object: Any, literal: String) -> [UInt8] {
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data()
        let text = String(decoding: data, as: UTF8.self)
        return Array(text.replacingOccurrences(of: "\"@@HOSTILE@@\"", with: literal).utf8)
    }

    // MARK: - Model files

    static func safetensors(_ rng: inout FuzzRNG, _ base: FuzzBase) -> FuzzCase {
        let bytes = base.safetensors
        let n = Int(UInt64(littleEndian: bytes.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }))
        let headerText = Array(bytes[8..<(8 + n)])
        let data = Array(bytes[(8 + n)...])
        func file(header: [UInt8], data: [UInt8], declared: UInt64? = nil) -> [UInt8] {
            var length = (declared ?? UInt64(header.count)).littleEndian
            return withUnsafeBytes(of: &length) { Array($0) } + header + data
        }
        var mutation: String
        var out: [UInt8]
        switch rng.below(9) {
        case 0:
            let cut = rng.below(bytes.count)
            mutation = "truncated at \(cut)"; out = Array(bytes.prefix(cut))
        case 1:
            let declared = rng.pick([UInt64.max, UInt64(Int64.max), 1 << 40, 100_000_001, UInt64(n + 1), 0, 1, UInt64(n - 1)])
            mutation = "header length \(declared)"; out = file(header: headerText, data: data, declared: declared)
        case 2:
            var h = headerText
            for _ in 0..<(1 + rng.below(6)) { h[rng.below(h.count)] = UInt8(truncatingIfNeeded: rng.next()) }
            mutation = "flipped header bytes"; out = file(header: h, data: data)
        case 3, 4, 5:
            // One field of one entry replaced by a hostile value.
            guard var header = (try? JSONSerialization.jsonObject(with: Data(headerText))) as? [String: Any] else {
                return FuzzCase(seed: 0, index: 0, format: "safetensors", mutation: "unparsable base", files: base.modelFiles([]), target: .model)
            }
            let names = header.keys.filter { $0 != "__metadata__" }.sorted()
            let name = rng.pick(names)
            var entry = header[name] as! [String: Any]
            let literal = hostileLiteral(&rng)
            let field = rng.pick(["shape", "dtype", "data_offsets", "shape[0]", "data_offsets[1]", "entry", "__metadata__"])
            switch field {
            case "shape[0]":
                var shape = entry["shape"] as! [Any]
                if shape.isEmpty { shape = ["@@HOSTILE@@"] } else { shape[0] = "@@HOSTILE@@" }
                entry["shape"] = shape
                header[name] = entry
            case "data_offsets[1]":
                var offsets = entry["data_offsets"] as! [Any]
                offsets[1] = "@@HOSTILE@@"
                entry["data_offsets"] = offsets
                header[name] = entry
            case "entry":
                header[name] = "@@HOSTILE@@"
            case "__metadata__":
                header["__metadata__"] = ["format": "@@HOSTILE@@"]
            default:
                entry[field] = "@@HOSTILE@@"
                header[name] = entry
            }
            mutation = "\(name).\(field) = \(literal.prefix(40))"
            out = file(header: jsonWithLiteral(header, literal: literal), data: data)
        case 6:
            mutation = "trailing garbage"; out = bytes + rng.bytes(1 + rng.below(64))
        case 7:
            // NaN / infinity written into the data section (a tensor's float32 bits).
            var v = bytes
            let start = 8 + n + 4 * rng.below(data.count / 4)
            let bits: UInt32 = rng.pick([0x7FC0_0000, 0x7F80_0000, 0xFF80_0000, 0x7FFF_FFFF])
            for k in 0..<4 { v[start + k] = UInt8(truncatingIfNeeded: bits >> (8 * k)) }
            mutation = "non-finite float at byte \(start)"; out = v
        default:
            let choice = rng.below(3)
            if choice == 0 {
                return FuzzCase(seed: 0, index: 0, format: "safetensors", mutation: "a directory",
                                files: base.modelFiles([("model.safetensors", .directory)]), target: .model)
            }
            if choice == 1 {
                return FuzzCase(seed: 0, index: 0, format: "safetensors", mutation: "symlink to /dev/zero",
                                files: base.modelFiles([("model.safetensors", .symlink("/dev/zero"))]), target: .model)
            }
            mutation = "empty header object"; out = file(header: Array("{}".utf8), data: [])
        }
        return FuzzCase(seed: 0, index: 0, format: "safetensors", mutation: mutation,
                        files: base.modelFiles([("model.safetensors", .bytes(out))]), target: .model)
    }

    static let configKeys = [
        "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim",
        "intermediate_size", "vocab_size", "max_position_embeddings", "rms_norm_eps", "rope_theta",
        "tie_word_embeddings", "bos_token_id", "eos_token_id", "model_type", "hidden_act", "sliding_window",
        "attention_bias", "torch_dtype", "rope_scaling", "rope_scaling.factor",
        "rope_scaling.original_max_position_embeddings", "rope_scaling.low_freq_factor",
    ]

    static func config(_ rng: inout FuzzRNG, _ base: FuzzBase) -> FuzzCase {
        var out: [UInt8]
        var mutation: String
        if rng.chance(0.25) {
            (mutation, out) = brokenJSONText(&rng, valid: base.config)
        } else {
            var object = (try? JSONSerialization.jsonObject(with: Data(base.config))) as? [String: Any] ?? [:]
            let key = rng.pick(configKeys)
            let literal = hostileLiteral(&rng)
            if key.hasPrefix("rope_scaling.") {
                var rope: [String: Any] = ["rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                           "high_freq_factor": 4.0, "original_max_position_embeddings": 256]
                rope[String(key.dropFirst("rope_scaling.".count))] = "@@HOSTILE@@"
                object["rope_scaling"] = rope
            } else if rng.chance(0.1) {
                object[key] = nil
            } else {
                object[key] = "@@HOSTILE@@"
            }
            mutation = "\(key) = \(literal.prefix(40))"
            out = jsonWithLiteral(object, literal: literal)
        }
        if rng.chance(0.05) {
            return FuzzCase(seed: 0, index: 0, format: "config", mutation: "a directory",
                            files: base.modelFiles([("config.json", .directory)]), target: .model)
        }
        return FuzzCase(seed: 0, index: 0, format: "config", mutation: mutation,
                        files: base.modelFiles([("config.json", .bytes(out))]), target: .model)
    }

    static func tokenizer(_ rng: inout FuzzRNG, _ base: FuzzBase) -> FuzzCase {
        var out: [UInt8]
        var mutation: String
        switch rng.below(10) {
        case 0, 1:
            (mutation, out) = brokenJSONText(&rng, valid: base.tokenizer)
        case 2:
            return FuzzCase(seed: 0, index: 0, format: "tokenizer", mutation: rng.chance(0.5) ? "a directory" : "symlink to /dev/zero",
                            files: base.modelFiles([("tokenizer.json", rng.chance(0.5) ? .directory : .symlink("/dev/zero"))]), target: .model)
        default:
            var object = (try? JSONSerialization.jsonObject(with: Data(base.tokenizer))) as? [String: Any] ?? [:]
            var model = object["model"] as? [String: Any] ?? [:]
            let literal = hostileLiteral(&rng)
            let what = rng.pick(["vocab id", "added id", "merges", "merge entry", "model.type", "vocab", "added_tokens",
                                 "normalizer", "pre_tokenizer", "decoder", "post_processor", "added content",
                                 "byte_fallback", "unk_token", "model"])
            switch what {
            case "vocab id":
                var vocab = model["vocab"] as? [String: Any] ?? [:]
                let token = rng.pick(vocab.keys.sorted())
                vocab[token] = "@@HOSTILE@@"
                model["vocab"] = vocab
                object["model"] = model
            case "added id", "added content":
                var added = object["added_tokens"] as? [[String: Any]] ?? []
                if !added.isEmpty {
                    let k = rng.below(added.count)
                    added[k][what == "added id" ? "id" : "content"] = "@@HOSTILE@@"
                }
                object["added_tokens"] = added
            case "merges":
                model["merges"] = "@@HOSTILE@@"
                object["model"] = model
            case "merge entry":
                var merges = model["merges"] as? [Any] ?? []
                if !merges.isEmpty { merges[rng.below(merges.count)] = "@@HOSTILE@@" }
                model["merges"] = merges
                object["model"] = model
            case "model.type", "byte_fallback", "unk_token":
                model[what == "model.type" ? "type" : what] = "@@HOSTILE@@"
                object["model"] = model
            default:
                object[what] = "@@HOSTILE@@"
            }
            mutation = "\(what) = \(literal.prefix(40))"
            out = jsonWithLiteral(object, literal: literal)
        }
        return FuzzCase(seed: 0, index: 0, format: "tokenizer", mutation: mutation,
                        files: base.modelFiles([("tokenizer.json", .bytes(out))]), target: .model)
    }

    /// A model.safetensors.index.json beside the single file: wrong shard, missing shard, a path out of
    /// the folder, not JSON.
    static func shardIndex(_ rng: inout FuzzRNG, _ base: FuzzBase) -> FuzzCase {
        let names = ["model.embed_tokens.weight", "model.norm.weight", "model.layers.0.mlp.up_proj.weight"]
        let target = rng.pick(["model-00002-of-00002.safetensors", "../../etc/passwd", "/etc/passwd", "",
                               "model.safetensors", ".", "..", "config.json", "tokenizer.json"])
        var map: [String: Any] = [:]
        for n in names { map[n] = "model.safetensors" }
        map[rng.pick(names)] = target
        var mutation = "weight_map → \(target)"
        var out = jsonWithLiteral(["metadata": ["total_size": 1], "weight_map": map], literal: "")
        if rng.chance(0.3) { (mutation, out) = brokenJSONText(&rng, valid: out) }
        if rng.chance(0.1) {
            let literal = hostileLiteral(&rng)
            mutation = "weight_map = \(literal.prefix(20))"
            out = jsonWithLiteral(["weight_map": "@@HOSTILE@@"], literal: literal)
        }
        return FuzzCase(seed: 0, index: 0, format: "index", mutation: mutation,
                        files: base.modelFiles([("model.safetensors.index.json", .bytes(out))]), target: .model)
    }

    // MARK: - Calibration and evaluation files

    /// Text mutations shared by every text-like format.
    static func brokenText(_ rng: inout FuzzRNG, valid: [UInt8]) -> (String, FuzzFile) {
        switch rng.below(11) {
        case 0: return ("empty", .bytes([]))
        case 1: return ("random bytes", .bytes(rng.bytes(1 + rng.below(4000))))
        case 2:
            var v = valid
            for _ in 0..<(1 + rng.below(5)) { v.insert(rng.pick([0xFF, 0xC0, 0x80, 0xED, 0xF5]), at: rng.below(v.count)) }
            return ("invalid UTF-8", .bytes(v))
        case 3: return ("NUL bytes", .bytes([UInt8](repeating: 0, count: 1 + rng.below(10_000))))
        case 4: return ("symlink to /dev/zero", .symlink("/dev/zero"))
        case 5: return ("a directory", .directory)
        case 6: return ("gzip of the text", .bytes(gzipStored(valid)))
        case 7:
            var g = gzipStored(valid)
            g = Array(g.prefix(rng.below(g.count)))
            return ("truncated gzip", .bytes(g))
        case 8:
            var g = gzipStored(valid)
            for _ in 0..<(1 + rng.below(4)) { g[2 + rng.below(g.count - 2)] ^= UInt8(1 << rng.below(8)) }
            return ("corrupt gzip", .bytes(g))
        case 9: return ("gzip magic only", .bytes([0x1F, 0x8B] + rng.bytes(rng.below(30))))
        default: return ("one long line", .bytes([UInt8](repeating: UInt8(ascii: "a"), count: 200_000 + rng.below(200_000))))
        }
    }

    static func calibrationText(_ rng: inout FuzzRNG, _ base: FuzzBase) -> FuzzCase {
        let (mutation, file) = rng.chance(0.2) ? ("intact", .bytes(base.text)) : brokenText(&rng, valid: base.text)
        return FuzzCase(seed: 0, index: 0, format: "text", mutation: mutation, files: [("calib", file)],
                        target: .calibration(format: "text", field: "text"))
    }

    static func jsonLinesText(_ rng: inout FuzzRNG, base: FuzzBase, field: String) -> (String, FuzzFile) {
        let text = String(decoding: base.text, as: UTF8.self)
        let docs = text.split(separator: "\n\n").prefix(20).map(String.init)
        func line(_ s: String) -> String {
            String(decoding: (try? JSONSerialization.data(withJSONObject: [field: s])) ?? Data(), as: UTF8.self)
        }
        var lines = docs.map(line)
        let mutation: String
        switch rng.below(8) {
        case 0: mutation = "intact"
        case 1:
            let literal = hostileLiteral(&rng)
            lines[rng.below(lines.count)] = "{\"\(field)\": \(literal)}"
            mutation = "field = \(literal.prefix(30))"
        case 2:
            lines[rng.below(lines.count)] = rng.pick(["[1]", "\"text\"", "42", "null", "{", "{\"other\": \"x\"}", "}{"])
            mutation = "a line that is not an object"
        case 3:
            lines.insert(String(repeating: " ", count: rng.below(5)), at: rng.below(lines.count))
            mutation = "blank lines"
        case 4:
            lines = lines.map { _ in "{\"\(field)\": \"\"}" }
            mutation = "empty documents"
        default:
            let (m, f) = brokenText(&rng, valid: Array(lines.joined(separator: "\n").utf8))
            return (m, f)
        }
        return (mutation, .bytes(Array(lines.joined(separator: "\n").utf8)))
    }

    static func calibrationJSONL(_ rng: inout FuzzRNG, _ base: FuzzBase) -> FuzzCase {
        let field = rng.pick(["text", "content", "body"])
        let (mutation, file) = jsonLinesText(&rng, base: base, field: field)
        return FuzzCase(seed: 0, index: 0, format: "jsonl", mutation: mutation, files: [("calib", file)],
                        target: .calibration(format: "jsonl", field: rng.chance(0.9) ? field : "missing"))
    }

    static func calibrationC4(_ rng: inout FuzzRNG, _ base: FuzzBase) -> FuzzCase {
        var (mutation, file) = jsonLinesText(&rng, base: base, field: "text")
        if case .bytes(let b) = file, rng.chance(0.5), b.first != 0x1F {
            file = .bytes(gzipStored(b))
            mutation += ", gzipped"
        }
        return FuzzCase(seed: 0, index: 0, format: "c4", mutation: mutation, files: [("calib", file)],
                        target: .calibration(format: "c4", field: "text"))
    }

    /// A safetensors file with an `input_ids` tensor of hostile shape, dtype or values.
    static func calibrationTokens(_ rng: inout FuzzRNG, _ base: FuzzBase) -> FuzzCase {
        var rows = 4, cols = 32
        var dtype = "I64"
        var name = "input_ids"
        var values: [Int64] = (0..<(rows * cols)).map { _ in Int64(rng.below(512)) }
        var mutation: String
        switch rng.below(8) {
        case 0: mutation = "intact"
        case 1: values[rng.below(values.count)] = rng.pick([-1, 512, 100_000, Int64.max, Int64.min]); mutation = "id out of range"
        case 2: rows = 1; values = Array(values.prefix(cols)); mutation = "one row"
        case 3: cols = 8; values = Array(values.prefix(rows * cols)); mutation = "short rows"
        case 4: dtype = rng.pick(["F32", "BF16", "F64"]); mutation = "float dtype \(dtype)"
        case 5: name = "ids"; mutation = "no input_ids"
        case 6: dtype = rng.pick(["I32", "I16", "U8", "BOOL", "I8"]); mutation = "dtype \(dtype)"
        default:
            let (m, f) = brokenText(&rng, valid: [])
            return FuzzCase(seed: 0, index: 0, format: "tokens", mutation: m, files: [("calib", f)],
                            target: .calibration(format: "tokens", field: "text"))
        }
        let file = tokensFile(name: name, dtype: dtype, rows: rows, cols: cols, values: values)
        return FuzzCase(seed: 0, index: 0, format: "tokens", mutation: mutation, files: [("calib", .bytes(file))],
                        target: .calibration(format: "tokens", field: "text"))
    }

    static func evaluationText(_ rng: inout FuzzRNG, _ base: FuzzBase) -> FuzzCase {
        let (mutation, file) = rng.chance(0.2) ? ("intact", .bytes(base.text)) : brokenText(&rng, valid: base.text)
        return FuzzCase(seed: 0, index: 0, format: "eval", mutation: mutation, files: [("data", file)],
                        target: .evaluation(dataset: rng.pick(["wikitext2", "text"])))
    }

    // MARK: - Flags

    static let hostileFlagValues = [
        "0", "-1", "1", "2", "7", "512", "513", "2147483648", "9223372036854775807",
        "9223372036854775808", "1e30", "nan", "inf", "-inf", "0.5", "1.0", "", " ", "abc", "0x10", "1_000",
        "１", "--", "2:4", "4:8", "0:4", "4:4", "5:4", "1:0", "-2:4", "2:-4", "1:9223372036854775807",
        "1:1000000000000", "1:65537", "2:4:8", ":", "2:", ":4", "0.9999999999999999", "1e-400",
    ]

    static let flagNames = [
        "sparsity", "nsamples", "seqlen", "seed", "percdamp", "blocksize", "alpha", "gradient-samples",
        "ro-rounds", "ro-samples", "ro-lr", "eval-seqlen", "calibration-format", "method", "eval-dataset",
    ]

    static func flags(_ rng: inout FuzzRNG, _ base: FuzzBase) -> FuzzCase {
        var args: [String] = []
        var described: [String] = []
        for _ in 0..<(1 + rng.below(2)) {
            let name = rng.pick(flagNames)
            var value = rng.chance(0.1) ? String(decoding: rng.bytes(rng.below(12)).map { $0 % 94 + 33 }, as: UTF8.self)
                                        : rng.pick(hostileFlagValues)
            // Valid choices half the time, so the other flags meet every method and format.
            if name == "method" && rng.chance(0.5) { value = rng.pick(["wanda++", "wanda++-ro", "sparsegpt", "magnitude", "wanda"]) }
            if name == "calibration-format" && rng.chance(0.5) { value = rng.pick(["c4", "jsonl", "text", "tokens"]) }
            args += ["--\(name)", value]
            described.append("--\(name) \(value)")
        }
        return FuzzCase(seed: 0, index: 0, format: "flags", mutation: described.joined(separator: " "), files: [],
                        target: .flags(args))
    }

    // MARK: - GGUF

    /// Byte-level corruption of a GGUF file: the fixed header (version, tensor and metadata counts), the
    /// length and type fields of the metadata and tensor tables (hostile u64/u32 values at 4-aligned
    /// positions), flipped bytes, truncation, and non-finite data.
    static func gguf(_ rng: inout FuzzRNG, _ base: FuzzBase) -> FuzzCase {
        var v = base.gguf
        func put64(_ at: Int, _ x: UInt64) { for k in 0..<8 where at + k < v.count { v[at + k] = UInt8(truncatingIfNeeded: x >> (8 * k)) } }
        func put32(_ at: Int, _ x: UInt32) { for k in 0..<4 where at + k < v.count { v[at + k] = UInt8(truncatingIfNeeded: x >> (8 * k)) } }
        let hostile64: [UInt64] = [0, 1, 2, 0xFF, 1 << 31, 1 << 32, 1 << 40, 1 << 62, UInt64(Int64.max), UInt64.max, UInt64.max - 7]
        // The tables (metadata then tensor infos) sit in the first part of the file; the data after.
        let tableEnd = min(v.count, 16_384)
        let mutation: String
        switch rng.below(8) {
        case 0:
            let x = UInt32(truncatingIfNeeded: rng.pick([0, 1, 2, 4, 0xFFFF_FFFF, rng.next()]))
            put32(4, x); mutation = "version \(x)"
        case 1:
            let x = rng.pick(hostile64); put64(8, x); mutation = "tensor count \(x)"
        case 2:
            let x = rng.pick(hostile64); put64(16, x); mutation = "metadata count \(x)"
        case 3, 4:
            let at = 24 + 4 * rng.below((tableEnd - 24) / 4)
            if rng.chance(0.5) { let x = rng.pick(hostile64); put64(at, x); mutation = "u64 \(x) at byte \(at)" }
            else { let x = UInt32(truncatingIfNeeded: rng.pick(hostile64)); put32(at, x); mutation = "u32 \(x) at byte \(at)" }
        case 5:
            for _ in 0..<(1 + rng.below(6)) { v[rng.below(tableEnd)] = UInt8(truncatingIfNeeded: rng.next()) }
            mutation = "flipped table bytes"
        case 6:
            let cut = rng.below(v.count); v = Array(v.prefix(cut)); mutation = "truncated at \(cut)"
        default:
            if rng.chance(0.5) {
                v = Array("GGUF".utf8) + rng.bytes(rng.below(64)); mutation = "magic and noise"
            } else {
                // A float32 NaN somewhere in the data section.
                let at = v.count - 4 * (1 + rng.below(min(4096, v.count / 8)))
                put32(at, 0x7FC0_0000); mutation = "NaN bits at byte \(at)"
            }
        }
        return FuzzCase(seed: 0, index: 0, format: "gguf", mutation: mutation, files: [("model.gguf", .bytes(v))], target: .gguf)
    }

    // MARK: - File builders

    static func tokensFile(name: String, dtype: String, rows: Int, cols: Int, values: [Int64]) -> [UInt8] {
        let width: Int
        var data: [UInt8] = []
        switch dtype {
        case "I64", "F64": width = 8
        case "I32", "F32": width = 4
        case "I16", "BF16", "F16": width = 2
        default: width = 1
        }
        for v in values {
            var x = UInt64(bitPattern: v)
            if dtype == "F32" { x = UInt64(Float(v).bitPattern) }
            if dtype == "F64" { x = Double(v).bitPattern }
            for k in 0..<width { data.append(UInt8(truncatingIfNeeded: x >> (8 * k))) }
        }
        var header = Array("{\"\(name)\":{\"dtype\":\"\(dtype)\",\"shape\":[\(rows),\(cols)],\"data_offsets\":[0,\(data.count)]}}".utf8)
        while header.count % 8 != 0 { header.append(0x20) }
        var n = UInt64(header.count).littleEndian
        return withUnsafeBytes(of: &n) { Array($0) } + header + data
    }

    /// A gzip member holding `content` in stored (uncompressed) deflate blocks: valid gzip without zlib.
    static func gzipStored(_ content: [UInt8]) -> [UInt8] {
        var out: [UInt8] = [0x1F, 0x8B, 8, 0, 0, 0, 0, 0, 0, 255]
        var i = 0
        repeat {
            let n = min(65535, content.count - i)
            let final: UInt8 = i + n >= content.count ? 1 : 0
            out += [final, UInt8(n & 0xFF), UInt8(n >> 8), UInt8(~n & 0xFF), UInt8((~n >> 8) & 0xFF)]
            out += content[i..<(i + n)]
            i += n
        } while i < content.count
        let crc = crc32(content)
        for k in 0..<4 { out.append(UInt8(truncatingIfNeeded: crc >> (8 * k))) }
        for k in 0..<4 { out.append(UInt8(truncatingIfNeeded: UInt32(truncatingIfNeeded: content.count) >> (8 * k))) }
        return out
    }

    static func crc32(_ bytes: [UInt8]) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        for b in bytes {
            c ^= UInt32(b)
            for _ in 0..<8 { c = (c >> 1) ^ (0xEDB8_8320 & (0 &- (c & 1))) }
        }
        return ~c
    }
}
