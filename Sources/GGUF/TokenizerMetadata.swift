/// The raw `tokenizer.ggml.*` (and `tokenizer.chat_template`) values of a GGUF file, checked for type
/// and consistency but not interpreted: the Tokenizers module builds a tokenizer from them.
///
/// llama.cpp's meaning of the fields: `model` is `gpt2` (byte-level BPE: `tokens` are the byte-level
/// strings, `merges` the BPE merges as "left right") or `llama` (SentencePiece: `scores` the piece
/// scores, byte fallback through `<0xXX>` pieces); `pre` names the pre-tokenizer (`smollm`, `llama-bpe`,
/// `qwen2`, `gpt2`/`default`, ...); `tokenTypes` are 1 normal, 2 unknown, 3 control, 4 user-defined,
/// 5 unused, 6 byte.
public struct GGUFTokenizerMetadata: Sendable, Equatable {
    public var model: String
    public var pre: String?
    public var tokens: [String]
    public var scores: [Float]?
    public var tokenTypes: [Int]?
    public var merges: [String]?
    public var bosTokenID: Int?
    public var eosTokenID: Int?
    public var unknownTokenID: Int?
    public var paddingTokenID: Int?
    public var separatorTokenID: Int?
    public var addBOSToken: Bool?
    public var addEOSToken: Bool?
    public var addSpacePrefix: Bool?
    public var chatTemplate: String?
    /// `general.architecture` (the tokenizer of some architectures, e.g. Gemma's, is read with their own
    /// conventions); nil when the file has none.
    public var architecture: String?
}

extension GGUFFile {
    /// The tokenizer metadata, or nil when the file has no `tokenizer.ggml.model`. Throws when a field
    /// has the wrong type, the per-token arrays disagree in length with `tokens`, or a special token id
    /// is outside the vocabulary.
    public func tokenizerMetadata() throws -> GGUFTokenizerMetadata? {
        guard metadata["tokenizer.ggml.model"] != nil else { return nil }
        let p = "tokenizer.ggml."
        func array(_ key: String) throws -> GGUFArray? {
            guard let v = metadata[p + key] else { return nil }
            guard let a = v.array else {
                throw GGUFError(.invalidMetadata, file: url.path, key: p + key, "is \(v.type), expected an array")
            }
            return a
        }
        func typed<T>(_ key: String, _ what: String, _ get: (GGUFArray) -> T?) throws -> T? {
            guard let a = try array(key) else { return nil }
            guard let t = get(a) else {
                throw GGUFError(.invalidMetadata, file: url.path, key: p + key, "is an array of \(a.elementType), expected \(what)")
            }
            return t
        }
        guard let tokens = try typed("tokens", "strings", { $0.strings }) else {
            throw GGUFError(.notFound, file: url.path, key: p + "tokens", "missing (tokenizer.ggml.model is set)")
        }
        var m = GGUFTokenizerMetadata(model: try string(p + "model"), tokens: tokens)
        m.pre = metadata[p + "pre"] != nil ? try string(p + "pre") : nil
        m.scores = try typed("scores", "numbers", { $0.floats })
        m.tokenTypes = try typed("token_type", "integers", { $0.ints })
        m.merges = try typed("merges", "strings", { $0.strings })
        for (key, count) in [("scores", m.scores?.count), ("token_type", m.tokenTypes?.count)] {
            if let count, count != tokens.count {
                throw GGUFError(.invalidMetadata, file: url.path, key: p + key, "has \(count) entries for \(tokens.count) tokens")
            }
        }
        func id(_ key: String) throws -> Int? {
            guard let v = try int(p + key) else { return nil }
            guard (0..<tokens.count).contains(v) else {
                throw GGUFError(.invalidMetadata, file: url.path, key: p + key, "token id \(v) is outside the \(tokens.count)-token vocabulary")
            }
            return v
        }
        m.bosTokenID = try id("bos_token_id")
        m.eosTokenID = try id("eos_token_id")
        m.unknownTokenID = try id("unknown_token_id")
        m.paddingTokenID = try id("padding_token_id")
        m.separatorTokenID = try id("seperator_token_id") ?? id("separator_token_id")
        m.addBOSToken = try bool(p + "add_bos_token")
        m.addEOSToken = try bool(p + "add_eos_token")
        m.addSpacePrefix = try bool(p + "add_space_prefix")
        m.chatTemplate = metadata["tokenizer.chat_template"] != nil ? try string("tokenizer.chat_template") : nil
        m.architecture = metadata["general.architecture"] != nil ? try string("general.architecture") : nil
        return m
    }
}
