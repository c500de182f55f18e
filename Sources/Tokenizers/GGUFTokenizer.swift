import Foundation
import JSON

/// The tokenizer a GGUF file describes in its `tokenizer.ggml.*` metadata, as plain values. The GGUF
/// reader fills it in (this module reads no GGUF file); `Tokenizer(gguf:)` builds the tokenizer and
/// `GGUFTokenizer.write(_:to:)` writes it as Hugging Face `tokenizer.json` + `tokenizer_config.json`.
///
/// Each field is the GGUF key of the same name; nil where the file has no such key (llama.cpp's
/// defaults then apply, see `GGUFTokenizer`).
public struct GGUFTokenizerSpec: Sendable, Equatable {
    /// `tokenizer.ggml.token_type` values: llama.cpp's `llama_token_type`, which are SentencePiece's
    /// piece types.
    public enum TokenType: Int32, Sendable {
        case undefined = 0, normal = 1, unknown = 2, control = 3, userDefined = 4, unused = 5, byte = 6
    }

    /// `tokenizer.ggml.model`: `"gpt2"` (byte-level BPE) or `"llama"` (SentencePiece).
    public var model: String
    /// `tokenizer.ggml.pre`: the pre-tokenizer of a `gpt2` model, e.g. `"smollm"`, `"llama-bpe"`, `"qwen2"`.
    public var pre: String?
    /// `tokenizer.ggml.tokens`: the token of each id.
    public var tokens: [String]
    /// `tokenizer.ggml.scores`: one per token (needed by `llama`: merges go by score).
    public var scores: [Float]?
    /// `tokenizer.ggml.token_type`: one per token, `TokenType` raw values.
    public var tokenTypes: [Int32]?
    /// `tokenizer.ggml.merges`: `"left right"` in rank order (needed by `gpt2`).
    public var merges: [String]?
    /// `tokenizer.ggml.bos_token_id`, `eos_token_id`, `unknown_token_id`, `padding_token_id`.
    public var bosTokenID: Int?
    public var eosTokenID: Int?
    public var unknownTokenID: Int?
    public var paddingTokenID: Int?
    /// `tokenizer.ggml.add_bos_token`, `add_eos_token`.
    public var addBOS: Bool?
    public var addEOS: Bool?
    /// `tokenizer.ggml.add_space_prefix` (a `llama` model's leading ▁; llama.cpp defaults it to true).
    public var addSpacePrefix: Bool?
    /// `tokenizer.chat_template`, carried into `tokenizer_config.json`.
    public var chatTemplate: String?
    /// `general.architecture`: a `llama` (SentencePiece) vocabulary of `gemma`, `gemma2` or `gemma3` is
    /// built the way transformers' GGUF loader builds Gemma's (see `GGUFTokenizer`); other values, or nil,
    /// change nothing.
    public var architecture: String?

    public init(model: String, pre: String? = nil, tokens: [String], scores: [Float]? = nil,
                tokenTypes: [Int32]? = nil, merges: [String]? = nil,
                bosTokenID: Int? = nil, eosTokenID: Int? = nil, unknownTokenID: Int? = nil,
                paddingTokenID: Int? = nil, addBOS: Bool? = nil, addEOS: Bool? = nil,
                addSpacePrefix: Bool? = nil, chatTemplate: String? = nil, architecture: String? = nil) {
        self.model = model
        self.pre = pre
        self.tokens = tokens
        self.scores = scores
        self.tokenTypes = tokenTypes
        self.merges = merges
        self.bosTokenID = bosTokenID
        self.eosTokenID = eosTokenID
        self.unknownTokenID = unknownTokenID
        self.paddingTokenID = paddingTokenID
        self.addBOS = addBOS
        self.addEOS = addEOS
        self.addSpacePrefix = addSpacePrefix
        self.chatTemplate = chatTemplate
        self.architecture = architecture
    }
}

extension Tokenizer {
    /// The tokenizer of a GGUF file's `tokenizer.ggml.*` metadata, with llama.cpp's semantics: exactly
    /// the tokenizer that `GGUFTokenizer.tokenizerJSON(spec)` describes (one code path for both).
    /// - Throws: `TokenizerError` naming the metadata key at fault (an unsupported model or
    ///   pre-tokenizer, counts that disagree, ids out of range, a malformed merge, a duplicate token).
    public convenience init(gguf spec: GGUFTokenizerSpec) throws {
        let name = "GGUF tokenizer.ggml metadata"
        try self.init(tokenizer: try GGUFTokenizer.tokenizerJSON(spec), config: try GGUFTokenizer.tokenizerConfigJSON(spec),
                      tokenizerName: name, configName: name)
    }
}

/// GGUF tokenizer metadata as Hugging Face tokenizer files, following llama.cpp (`src/llama-vocab.cpp`).
///
/// - `gpt2`: byte-level BPE over `tokens` and `merges`. The pre-tokenizer follows `pre` as llama.cpp
///   maps it: `smollm` (also starcoder, refact, command-r, codeshell, exaone, minerva-7b) isolates every
///   number character, then splits as GPT-2: `Sequence[Digits(individual_digits), ByteLevel]`;
///   `gpt-2` (and phi-2, mpt, olmo, jais, …) is GPT-2's `ByteLevel`; `llama-bpe` (llama3, falcon3, …;
///   merges ignored for whole-vocabulary words) and `dbrx`/`smaug-bpe` split with LLaMA-3's regex;
///   `qwen2` (stablelm2, deepseek-r1-qwen, …) with Qwen2's; `falcon` and `default` (also used when `pre`
///   is absent) are llama.cpp's regex sequences of the same names. Other names are refused rather than
///   guessed. Where llama.cpp rewrote a regex for its own engine (`'[sS]` for `(?i:'s)`) the original
///   tokenizer.json's form is used; they differ only on `'ſ` (U+017F).
/// - `llama`: SentencePiece pieces with scores and byte fallback, as the LLaMA-1/2 `tokenizer.json`
///   does it: a leading ▁ (unless `add_space_prefix` is false) and spaces as ▁, then BPE whose merges are
///   every split of a normal piece into two tokens, ranked by the piece's score (highest first: llama.cpp's
///   and SentencePiece's merge order); characters without a piece become their `<0xAB>` byte tokens.
///
/// Token types: control and unknown tokens are special added tokens, user-defined ones plain added
/// tokens, all matched in the raw text (llama.cpp and transformers' GGUF loader agree). Without
/// `token_type`, the BOS/EOS/unknown/padding tokens are the special ones.
///
/// Gemma (`architecture` `gemma`, `gemma2`, `gemma3` with a `llama` vocabulary), as transformers' GGUF
/// loader builds it (`integrations/gguf`, `gemma_tokenizer`), since the file lists no merges and its
/// whitespace tokens are spelled differently from the original tokenizer: a token of whitespace that holds
/// a space (Gemma's runs of 2 to 31 spaces, stored as real spaces) is respelled as that many ▁ and becomes
/// an ordinary vocabulary entry, not an added token; the merges are every split of any token (all types)
/// into two tokens, ordered by the token's position in the file (Gemma's scores do not give its merge
/// order), longer left part first; no ▁ is prepended (the file says `add_space_prefix` false).
///
/// BOS/EOS: added by the post-processor exactly when `add_bos_token` / `add_eos_token` say; where the
/// file is silent, llama.cpp's defaults: a `llama` model adds BOS, a `gpt2` model adds it only for the
/// LLaMA-3 pre-tokenizers. Naming a BOS id alone adds nothing.
public enum GGUFTokenizer {
    /// The `tokenizer.json` document.
    public static func tokenizerJSON(_ spec: GGUFTokenizerSpec) throws -> JSONValue {
        try Resolved(spec).tokenizerJSON()
    }

    /// The `tokenizer_config.json` document: BOS/EOS/unknown/padding token strings, `add_bos_token` /
    /// `add_eos_token` (what the post-processor does), `added_tokens_decoder`, the chat template.
    public static func tokenizerConfigJSON(_ spec: GGUFTokenizerSpec) throws -> JSONValue {
        try Resolved(spec).configJSON()
    }

    /// The two files' bytes (UTF-8 JSON).
    public static func files(_ spec: GGUFTokenizerSpec) throws -> (tokenizer: Data, config: Data) {
        let r = try Resolved(spec)
        return (Data((try r.tokenizerJSON().jsonText + "\n").utf8), Data((r.configJSON().jsonText + "\n").utf8))
    }

    /// Writes `tokenizer.json` and `tokenizer_config.json` into `directory` (which must exist), each
    /// atomically (a temporary file renamed), so no half-written file is left.
    public static func write(_ spec: GGUFTokenizerSpec, to directory: URL) throws {
        let (tokenizer, config) = try files(spec)
        for (name, data) in [("tokenizer.json", tokenizer), ("tokenizer_config.json", config)] {
            let url = directory.appendingPathComponent(name)
            do { try data.write(to: url, options: .atomic) } catch {
                throw TokenizerError(file: url.path, "cannot write: \(error.localizedDescription)")
            }
        }
    }
}

/// How a `gpt2` model's `tokenizer.ggml.pre` splits text (llama.cpp's `llama_vocab_pre_type` groups).
enum GGUFPreTokenizer: Equatable {
    case gpt2, smollm, llama3, qwen2, falcon, llamaCppDefault

    /// llama.cpp's name → group table (the groups supported here).
    static func named(_ pre: String?) -> (GGUFPreTokenizer, ignoreMerges: Bool, addBOS: Bool)? {
        guard let pre else { return (.llamaCppDefault, false, false) }
        switch pre {
        case "default": return (.llamaCppDefault, false, false)
        case "llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2", "jina-v5-nano":
            return (.llama3, true, true)
        case "dbrx", "smaug-bpe": return (.llama3, false, false)
        case "gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es", "jina-v2-de", "a.x-4.0", "mellum",
             "mpt", "olmo", "jais", "trillion", "exaone4", "granite-docling":
            return (.gpt2, false, false)
        case "smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b":
            return (.smollm, false, false)
        case "qwen2", "deepseek-r1-qwen", "kormo", "stablelm2", "megrez", "hunyuan":
            return (.qwen2, false, false)
        case "falcon": return (.falcon, false, false)
        default: return nil
        }
    }
}

/// llama.cpp's `[\p{P}\$\+<=>\^~\|`]+` (punctuation runs) of its `default` and `falcon` sequences.
let llamaCppPunctuationPattern = #"[\p{P}\$\+<=>\^~\|`]+"#

/// A validated spec with llama.cpp's defaults filled in.
private struct Resolved {
    let spec: GGUFTokenizerSpec
    let types: [GGUFTokenizerSpec.TokenType]
    let bos: Int?, eos: Int?, unk: Int?, pad: Int?
    let addBOS: Bool, addEOS: Bool
    let addSpacePrefix: Bool
    let pre: GGUFPreTokenizer
    let ignoreMerges: Bool
    /// The added tokens in id order: (id, special).
    let added: [(Int, Bool)]
    /// Gemma's conventions (see `GGUFTokenizer`).
    let gemma: Bool
    /// The vocabulary's tokens: `spec.tokens`, with Gemma's space runs respelled as ▁ runs.
    let vocabTokens: [String]

    static let key = "tokenizer.ggml."

    init(_ spec: GGUFTokenizerSpec) throws {
        self.spec = spec
        let n = spec.tokens.count
        let k = Resolved.key
        guard n > 0 else { throw TokenizerError("\(k)tokens is empty") }
        guard n <= Int(Int32.max) else { throw TokenizerError("\(k)tokens has \(n) entries, more than an id can index") }
        if let s = spec.scores, s.count != n {
            throw TokenizerError("\(k)scores has \(s.count) entries for \(n) tokens")
        }
        var types = [GGUFTokenizerSpec.TokenType](repeating: .normal, count: n)
        if let t = spec.tokenTypes {
            guard t.count == n else { throw TokenizerError("\(k)token_type has \(t.count) entries for \(n) tokens") }
            for (i, v) in t.enumerated() {
                guard let type = GGUFTokenizerSpec.TokenType(rawValue: v) else {
                    throw TokenizerError("\(k)token_type of token \(i) is \(v), not one of 0-6")
                }
                types[i] = type == .undefined ? .normal : type
            }
        }
        self.types = types
        func id(_ name: String, _ v: Int?, default d: Int? = nil) throws -> Int? {
            if let v {
                guard v >= 0 && v < n else { throw TokenizerError("\(k)\(name) \(v) is not an id of the \(n) tokens") }
                return v
            }
            return d.flatMap { $0 < n ? $0 : nil }
        }
        let isLlama: Bool
        switch spec.model {
        case "llama":
            isLlama = true
            pre = .llamaCppDefault
            ignoreMerges = false
        case "gpt2":
            isLlama = false
            guard let p = GGUFPreTokenizer.named(spec.pre) else {
                throw TokenizerError("unsupported \(k)pre \"\(spec.pre ?? "")\" (supported: smollm, llama-bpe, qwen2, gpt-2, falcon, default and the names llama.cpp maps to them)")
            }
            pre = p.0
            ignoreMerges = p.ignoreMerges
        default:
            throw TokenizerError("unsupported \(k)model \"\(spec.model)\" (supported: gpt2, llama)")
        }
        // llama.cpp's defaults for a SentencePiece vocabulary: <unk> 0, <s> 1, </s> 2.
        bos = try id("bos_token_id", spec.bosTokenID, default: isLlama ? 1 : nil)
        eos = try id("eos_token_id", spec.eosTokenID, default: isLlama ? 2 : nil)
        unk = try id("unknown_token_id", spec.unknownTokenID, default: isLlama ? 0 : nil)
        pad = try id("padding_token_id", spec.paddingTokenID)
        addBOS = spec.addBOS ?? (isLlama ? true : GGUFPreTokenizer.named(spec.pre)?.addBOS ?? false)
        addEOS = spec.addEOS ?? false
        if addBOS && bos == nil { throw TokenizerError("\(k)add_bos_token is true but there is no \(k)bos_token_id") }
        if addEOS && eos == nil { throw TokenizerError("\(k)add_eos_token is true but there is no \(k)eos_token_id") }
        addSpacePrefix = spec.addSpacePrefix ?? isLlama
        if isLlama && spec.scores == nil { throw TokenizerError("\(k)model \"llama\" needs \(k)scores") }
        if !isLlama && spec.merges == nil { throw TokenizerError("\(k)model \"gpt2\" needs \(k)merges") }

        gemma = isLlama && ["gemma", "gemma2", "gemma3"].contains(spec.architecture ?? "")
        vocabTokens = gemma ? spec.tokens.map(respelledSpaceRun) : spec.tokens
        // A user-defined token respelled away (Gemma's "  ") is no longer in the vocabulary as written,
        // so transformers adds no token for it.
        let written = gemma ? Set(vocabTokens.map { Array($0.utf8) }) : []

        var added: [(Int, Bool)] = []
        let namedSpecial = Set([bos, eos, unk, pad].compactMap { $0 })
        for i in 0..<n {
            switch types[i] {
            case .control, .unknown: added.append((i, true))
            case .userDefined:
                if !gemma || written.contains(Array(spec.tokens[i].utf8)) { added.append((i, false)) }
            default:
                if spec.tokenTypes == nil && namedSpecial.contains(i) { added.append((i, true)) }
            }
        }
        self.added = added
    }

    var isLlama: Bool { spec.model == "llama" }

    // MARK: tokenizer.json

    func tokenizerJSON() throws -> JSONValue {
        .object([
            ("version", .string("1.0")),
            ("truncation", .null),
            ("padding", .null),
            ("added_tokens", .array(added.map { addedTokenJSON($0.0, special: $0.1, withID: true) })),
            ("normalizer", normalizerJSON()),
            ("pre_tokenizer", preTokenizerJSON()),
            ("post_processor", postProcessorJSON()),
            ("decoder", decoderJSON()),
            ("model", try modelJSON()),
        ])
    }

    func addedTokenJSON(_ id: Int, special: Bool, withID: Bool) -> JSONValue {
        var members: [(key: String, value: JSONValue)] = []
        if withID { members.append(("id", .number(String(id)))) }
        members += [
            ("content", .string(spec.tokens[id])),
            ("single_word", .bool(false)), ("lstrip", .bool(false)), ("rstrip", .bool(false)),
            ("normalized", .bool(false)), ("special", .bool(special)),
        ]
        return .object(members)
    }

    static func string(_ s: String) -> JSONValue { .object([("String", .string(s))]) }
    static func regex(_ s: String) -> JSONValue { .object([("Regex", .string(s))]) }

    func normalizerJSON() -> JSONValue {
        guard isLlama else { return .null }
        var steps: [JSONValue] = []
        if addSpacePrefix { steps.append(.object([("type", .string("Prepend")), ("prepend", .string("\u{2581}"))])) }
        steps.append(.object([("type", .string("Replace")), ("pattern", Resolved.string(" ")), ("content", .string("\u{2581}"))]))
        return .object([("type", .string("Sequence")), ("normalizers", .array(steps))])
    }

    static func byteLevel(useRegex: Bool, addPrefixSpace: Bool = false, trimOffsets: Bool = true) -> JSONValue {
        .object([("type", .string("ByteLevel")), ("add_prefix_space", .bool(addPrefixSpace)),
                 ("trim_offsets", .bool(trimOffsets)), ("use_regex", .bool(useRegex))])
    }

    static func split(_ pattern: String) -> JSONValue {
        .object([("type", .string("Split")), ("pattern", regex(pattern)), ("behavior", .string("Isolated")),
                 ("invert", .bool(false))])
    }

    static func sequence(_ steps: [JSONValue]) -> JSONValue {
        .object([("type", .string("Sequence")), ("pretokenizers", .array(steps))])
    }

    func preTokenizerJSON() -> JSONValue {
        if isLlama { return .null }
        switch pre {
        case .gpt2:
            return Resolved.byteLevel(useRegex: true)
        case .smollm:
            return Resolved.sequence([.object([("type", .string("Digits")), ("individual_digits", .bool(true))]),
                                      Resolved.byteLevel(useRegex: true)])
        case .llama3:
            return Resolved.sequence([Resolved.split(llama3Pattern), Resolved.byteLevel(useRegex: false)])
        case .qwen2:
            return Resolved.sequence([Resolved.split(qwen2Pattern), Resolved.byteLevel(useRegex: false)])
        case .falcon:
            // llama.cpp's second falcon regex is GPT-2's without the final `\s+`, which only matters for
            // text no alternative matches; Isolated keeps such text as a piece anyway.
            return Resolved.sequence([Resolved.split(llamaCppPunctuationPattern), Resolved.split(gpt2Pattern),
                                      Resolved.split("[0-9][0-9][0-9]"), Resolved.byteLevel(useRegex: false)])
        case .llamaCppDefault:
            return Resolved.sequence([Resolved.split(llamaCppPunctuationPattern), Resolved.split(gpt2Pattern),
                                      Resolved.split(#"\p{N}+"#), Resolved.split("[0-9][0-9][0-9]"),
                                      Resolved.byteLevel(useRegex: false)])
        }
    }

    func postProcessorJSON() -> JSONValue {
        var template: JSONValue = .null
        if addBOS || addEOS {
            func special(_ id: Int) -> JSONValue {
                .object([("SpecialToken", .object([("id", .string(spec.tokens[id])), ("type_id", .number("0"))]))])
            }
            func sequence(_ s: String) -> JSONValue {
                .object([("Sequence", .object([("id", .string(s)), ("type_id", .number("0"))]))])
            }
            var single: [JSONValue] = [], pair: [JSONValue] = []
            var specials: [(key: String, value: JSONValue)] = []
            for (flag, id) in [(addBOS, bos), (addEOS, eos)] where flag {
                guard let id, !specials.contains(where: { $0.key.utf8.elementsEqual(spec.tokens[id].utf8) }) else { continue }
                specials.append((spec.tokens[id], .object([("id", .string(spec.tokens[id])),
                                                           ("ids", .array([.number(String(id))])),
                                                           ("tokens", .array([.string(spec.tokens[id])]))])))
            }
            if addBOS, let bos { single.append(special(bos)); pair.append(special(bos)) }
            single.append(sequence("A")); pair.append(sequence("A"))
            if addEOS, let eos { single.append(special(eos)); pair.append(special(eos)) }
            if addBOS, let bos { pair.append(special(bos)) }
            pair.append(sequence("B"))
            if addEOS, let eos { pair.append(special(eos)) }
            template = .object([("type", .string("TemplateProcessing")), ("single", .array(single)),
                                ("pair", .array(pair)), ("special_tokens", .object(specials))])
        }
        if isLlama { return template }
        // Byte-level files keep ByteLevel's offset trimming before any template (as LLaMA-3's does).
        let byteLevel = Resolved.byteLevel(useRegex: true, addPrefixSpace: true, trimOffsets: false)
        if template.isNull { return byteLevel }
        return .object([("type", .string("Sequence")), ("processors", .array([byteLevel, template]))])
    }

    func decoderJSON() -> JSONValue {
        guard isLlama else { return Resolved.byteLevel(useRegex: true, addPrefixSpace: true, trimOffsets: true) }
        var steps: [JSONValue] = [
            .object([("type", .string("Replace")), ("pattern", Resolved.string("\u{2581}")), ("content", .string(" "))]),
            .object([("type", .string("ByteFallback"))]),
            .object([("type", .string("Fuse"))]),
        ]
        if addSpacePrefix {
            steps.append(.object([("type", .string("Strip")), ("content", .string(" ")), ("start", .number("1")), ("stop", .number("0"))]))
        }
        return .object([("type", .string("Sequence")), ("decoders", .array(steps))])
    }

    /// Token → id by exact UTF-8 bytes (String equality would merge canonically equivalent tokens).
    func vocabularyIndex() throws -> [[UInt8]: Int] {
        var index: [[UInt8]: Int] = [:]
        index.reserveCapacity(vocabTokens.count)
        for (i, t) in vocabTokens.enumerated() {
            let bytes = Array(t.utf8)
            if let j = index[bytes] { throw TokenizerError("\(Resolved.key)tokens has \"\(t)\" twice (ids \(j) and \(i))") }
            index[bytes] = i
        }
        return index
    }

    func modelJSON() throws -> JSONValue {
        let index = try vocabularyIndex()
        let vocab = JSONValue.object(vocabTokens.enumerated().map { ($0.element, .number(String($0.offset))) })
        let merges: [JSONValue]
        if gemma {
            merges = fileOrderMerges(index).map { .array([.string($0.0), .string($0.1)]) }
        } else if isLlama {
            merges = scoreMerges(index).map { .array([.string($0.0), .string($0.1)]) }
        } else {
            merges = try (spec.merges ?? []).enumerated().map { rank, m in
                // llama.cpp splits at the first space after the first character.
                let scalars = Array(m.unicodeScalars)
                guard let space = scalars.indices.dropFirst().first(where: { scalars[$0] == " " }) else {
                    throw TokenizerError("\(Resolved.key)merges entry \(rank) \"\(m)\" is not \"left right\"")
                }
                return .array([.string(makeString(Array(scalars[..<space]))), .string(makeString(Array(scalars[(space + 1)...])))])
            }
        }
        return .object([
            ("type", .string("BPE")),
            ("dropout", .null),
            ("unk_token", isLlama ? unk.map { .string(spec.tokens[$0]) } ?? .null : .null),
            ("continuing_subword_prefix", .null),
            ("end_of_word_suffix", .null),
            ("fuse_unk", .bool(isLlama)),
            ("byte_fallback", .bool(isLlama)),
            ("ignore_merges", .bool(ignoreMerges)),
            ("vocab", vocab),
            ("merges", .array(merges)),
        ])
    }

    /// Every split of a normal piece into two tokens, the piece with the highest score first (ties: lower
    /// piece id, then lower left id), which is the order SentencePiece and llama.cpp merge in.
    func scoreMerges(_ index: [[UInt8]: Int]) -> [(String, String)] {
        let scores = spec.scores ?? []
        var found: [(piece: Int, left: Int, right: Int, cut: Int)] = []
        for (i, t) in spec.tokens.enumerated() where types[i] == .normal {
            let bytes = Array(t.utf8)
            var cut = 0
            for s in t.unicodeScalars.dropLast() {
                cut += UTF8.width(s)
                guard let l = index[Array(bytes[..<cut])], let r = index[Array(bytes[cut...])] else { continue }
                found.append((i, l, r, cut))
            }
        }
        found.sort { a, b in
            let sa = scores[a.piece], sb = scores[b.piece]
            if sa != sb { return sa > sb }
            if a.piece != b.piece { return a.piece < b.piece }
            return a.left < b.left
        }
        return found.map { (spec.tokens[$0.left], spec.tokens[$0.right]) }
    }

    /// Gemma's merges as transformers derives them (`generate_merges` with each token's score the negated
    /// file position): every split of any token into two tokens, tokens in file order, within one token
    /// the longer left part first.
    func fileOrderMerges(_ index: [[UInt8]: Int]) -> [(String, String)] {
        var found: [(String, String)] = []
        for t in vocabTokens {
            let bytes = Array(t.utf8)
            var cuts: [Int] = []
            var cut = 0
            for s in t.unicodeScalars.dropLast() {
                cut += UTF8.width(s)
                if index[Array(bytes[..<cut])] != nil && index[Array(bytes[cut...])] != nil { cuts.append(cut) }
            }
            for c in cuts.reversed() {
                found.append((String(decoding: bytes[..<c], as: UTF8.self), String(decoding: bytes[c...], as: UTF8.self)))
            }
        }
        return found
    }

    // MARK: tokenizer_config.json

    func configJSON() -> JSONValue {
        var members: [(key: String, value: JSONValue)] = [
            ("add_bos_token", .bool(addBOS)),
            ("add_eos_token", .bool(addEOS)),
            ("added_tokens_decoder", .object(added.map { (String($0.0), addedTokenJSON($0.0, special: $0.1, withID: false)) })),
        ]
        for (name, id) in [("bos_token", bos), ("eos_token", eos), ("unk_token", unk), ("pad_token", pad)] {
            members.append((name, id.map { .string(spec.tokens[$0]) } ?? .null))
        }
        members.append(("clean_up_tokenization_spaces", .bool(false)))
        if let t = spec.chatTemplate { members.append(("chat_template", .string(t))) }
        if isLlama { members.append(("legacy", .bool(true))) }
        members.append(("tokenizer_class", .string("PreTrainedTokenizerFast")))
        return .object(members)
    }
}

/// Gemma's respelling in transformers' GGUF loader: a token made only of whitespace (Python's
/// `str.isspace`) that holds a space becomes that many ▁ (one per scalar); others are unchanged.
private func respelledSpaceRun(_ t: String) -> String {
    let scalars = t.unicodeScalars
    guard scalars.contains(" "), scalars.allSatisfy(isPythonSpace) else { return t }
    return String(repeating: "\u{2581}", count: scalars.count)
}

/// Python's `str.isspace` for one scalar: bidirectional class WS, B or S, or general category Zs.
private func isPythonSpace(_ s: Unicode.Scalar) -> Bool {
    switch s.value {
    case 0x09...0x0D, 0x1C...0x20, 0x85, 0xA0, 0x1680, 0x2000...0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000:
        return true
    default:
        return false
    }
}
