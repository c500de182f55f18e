import Foundation
import JSON

/// A Hugging Face fast tokenizer read from `tokenizer.json` (and, beside it, `tokenizer_config.json`),
/// producing exactly the ids of the `tokenizers` library for the supported stage types.
///
/// Encoding, as in `tokenizers`: split the input on added tokens matched in the raw text; normalize each
/// remaining piece; split again on added tokens matched in the normalized text; pre-tokenize each piece
/// into words; run the model (BPE) on each word; with `addSpecialTokens`, let the post-processor add
/// special tokens (`<s> $A`). Decoding maps ids to token strings (dropping special tokens if asked) and
/// runs the decoder.
///
/// Thread-safe: the only mutable state, the model's word cache, is behind a lock.
public final class Tokenizer: @unchecked Sendable {
    public let normalizer: Normalizer?
    public let preTokenizer: PreTokenizer?
    public let model: BPEModel
    public let decoder: TokenDecoder?
    /// From `tokenizer.json`, or, when it has none, from `tokenizer_config.json`'s `add_bos_token` /
    /// `add_eos_token`.
    public let postProcessor: PostProcessor?
    let addedVocabulary: AddedVocabulary
    let specialContents: Set<[UInt8]>

    /// `bos_token` of `tokenizer_config.json`, else the first special id the post-processor prepends.
    /// Naming a BOS adds nothing: only the post-processor adds special tokens (`encode` with
    /// `addSpecialTokens`, transformers' `add_special_tokens=True`), so a tokenizer whose
    /// post-processor adds none (SmolLM2) has a BOS here that no encoding contains.
    public let bosTokenID: Int?
    /// `eos_token` of `tokenizer_config.json`, if any.
    public let eosTokenID: Int?
    /// One more than the largest id of the model's vocabulary and the added tokens: the number of rows an
    /// embedding table needs.
    public let vocabSize: Int

    /// Tokens from `tokenizer.json`'s `"added_tokens"`, in file order.
    public var addedTokens: [AddedToken] { addedVocabulary.tokens }

    /// Loads `tokenizer.json` from `directory`, with `tokenizer_config.json` if it is there.
    public convenience init(directory: URL) throws {
        let config = directory.appendingPathComponent("tokenizer_config.json")
        try self.init(tokenizerFile: directory.appendingPathComponent("tokenizer.json"),
                      configFile: FileManager.default.fileExists(atPath: config.path) ? config : nil)
    }

    /// Loads a `tokenizer.json` file and an optional `tokenizer_config.json` file.
    public convenience init(tokenizerFile: URL, configFile: URL?) throws {
        let tokenizerData = try Tokenizer.read(tokenizerFile)
        let configData = try configFile.map(Tokenizer.read)
        try self.init(tokenizerJSON: tokenizerData, configJSON: configData,
                      tokenizerName: tokenizerFile.path, configName: configFile?.path)
    }

    /// Builds a tokenizer from the contents of `tokenizer.json` and `tokenizer_config.json`; the names
    /// are used in error messages.
    public convenience init(tokenizerJSON: Data, configJSON: Data? = nil,
                            tokenizerName: String = "tokenizer.json", configName: String? = "tokenizer_config.json") throws {
        let root: JSONValue
        do { root = try JSONValue.parse(tokenizerJSON) } catch {
            throw TokenizerError(file: tokenizerName, "\(error)")
        }
        var config: JSONValue?
        if let configJSON {
            do { config = try JSONValue.parse(configJSON) } catch {
                throw TokenizerError(file: configName ?? "tokenizer_config.json", "\(error)")
            }
        }
        try self.init(tokenizer: root, config: config, tokenizerName: tokenizerName, configName: configName)
    }

    /// Builds a tokenizer from parsed `tokenizer.json` and `tokenizer_config.json` documents; the names
    /// are used in error messages.
    public init(tokenizer root: JSONValue, config: JSONValue? = nil,
                tokenizerName: String = "tokenizer.json", configName: String? = "tokenizer_config.json") throws {
        do {
            guard root.objectValue != nil else { throw TokenizerError("top level is not a JSON object") }
            func stage<T>(_ key: String, _ make: (JSONValue) throws -> T) throws -> T? {
                guard let v = root[key], !v.isNull else { return nil }
                return try make(v)
            }
            let normalizer = try stage("normalizer", Normalizers.make)
            self.normalizer = normalizer
            preTokenizer = try stage("pre_tokenizer", PreTokenizers.make)
            guard let modelJSON = root["model"], !modelJSON.isNull else { throw TokenizerError("missing \"model\"") }
            model = try BPEModel(json: modelJSON)
            decoder = try stage("decoder", Decoders.make)
            let fileProcessor = try stage("post_processor", PostProcessors.make)
            let addedJSON: [JSONValue]
            switch root["added_tokens"] {
            case nil, .null?: addedJSON = []
            case .array(let list)?: addedJSON = list
            case let other?: throw TokenizerError("\"added_tokens\" is \(other.rendered(limit: 40)), not an array")
            }
            let added = try addedJSON.map { try AddedToken(json: $0) }
            let idBound = BPEModel.idBound(entries: model.vocabularyCount + added.count)
            if let t = added.first(where: { $0.id >= idBound }) {
                throw TokenizerError("added token \"\(t.content)\" has id \(t.id), beyond the \(idBound) ids "
                                     + "\(model.vocabularyCount + added.count) tokens can plausibly span")
            }
            addedVocabulary = AddedVocabulary(tokens: added, normalizer: normalizer)
            specialContents = Set(added.filter { $0.special }.map { Array($0.content.utf8) })
            var maxID = -1
            for id in model.idToToken.keys { maxID = max(maxID, Int(id)) }
            for t in added { maxID = max(maxID, t.id) }
            vocabSize = maxID + 1

            // tokenizer_config.json: which strings are BOS/EOS, and whether to add them.
            var bos: Int?, eos: Int?
            var processor = fileProcessor
            if let config {
                let configName = configName ?? "tokenizer_config.json"
                do {
                    bos = try Tokenizer.configTokenID(config, "bos_token", addedVocabulary, model)
                    eos = try Tokenizer.configTokenID(config, "eos_token", addedVocabulary, model)
                    if fileProcessor == nil {
                        let addBOS = try Tokenizer.configFlag(config, "add_bos_token")
                        let addEOS = try Tokenizer.configFlag(config, "add_eos_token")
                        if addBOS && bos == nil { throw TokenizerError("add_bos_token is true but there is no bos_token") }
                        if addEOS && eos == nil { throw TokenizerError("add_eos_token is true but there is no eos_token") }
                        if addBOS || addEOS { processor = BosEosProcessing(bos: addBOS ? bos : nil, eos: addEOS ? eos : nil) }
                    }
                } catch let e as TokenizerError {
                    throw e.attributed(to: configName)
                }
            }
            postProcessor = processor
            bosTokenID = bos ?? processor?.prefixIDs.first
            eosTokenID = eos
        } catch let e as TokenizerError {
            throw e.attributed(to: tokenizerName)
        }
    }

    /// The largest tokenizer file read (the biggest real ones are about 35 MB).
    public static let maxFileBytes = 1 << 28

    private static func read(_ url: URL) throws -> Data {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) else {
            throw TokenizerError(file: url.path, "file not found")
        }
        if isDirectory.boolValue { throw TokenizerError(file: url.path, "is a directory, not a file") }
        var st = stat()
        if stat(url.path, &st) == 0 {
            // A device such as /dev/zero would be read forever.
            if (st.st_mode & S_IFMT) != S_IFREG { throw TokenizerError(file: url.path, "is not a regular file") }
            if Int(st.st_size) > maxFileBytes {
                throw TokenizerError(file: url.path, "is \(st.st_size) bytes, more than the \(maxFileBytes) accepted")
            }
        }
        do { return try Data(contentsOf: url) } catch {
            throw TokenizerError(file: url.path, "cannot read: \(error.localizedDescription)")
        }
    }

    /// A `tokenizer_config.json` token field: a string, or an object with `"content"` (AddedToken form).
    private static func configTokenID(_ config: JSONValue, _ key: String, _ added: AddedVocabulary,
                                      _ model: BPEModel) throws -> Int? {
        guard let v = config[key], !v.isNull else { return nil }
        guard let content = v.stringValue ?? v["content"]?.stringValue else {
            throw TokenizerError("\"\(key)\" is neither a string nor an object with \"content\"")
        }
        guard let id = added.contentToID[Array(content.utf8)] ?? model.id(for: content) else {
            throw TokenizerError("\(key) \"\(content)\" is not in the vocabulary")
        }
        return id
    }

    private static func configFlag(_ config: JSONValue, _ key: String) throws -> Bool {
        guard let v = config[key], !v.isNull else { return false }
        guard let b = v.boolValue else { throw TokenizerError("\"\(key)\" is not a boolean") }
        return b
    }

    /// The ids of `text`; with `addSpecialTokens`, wrapped by the post-processor (e.g. a leading BOS).
    public func encode(_ text: String, addSpecialTokens: Bool = true) -> [Int] {
        let scalars = Array(text.unicodeScalars)
        var ids: [Int] = []
        ids.reserveCapacity(scalars.count / 3 + 8)
        for (range, token) in addedVocabulary.split(scalars, normalized: false) {
            if let token { ids.append(token.id); continue }
            if range.isEmpty { continue }
            var segment = Array(scalars[range])
            if let normalizer { segment = normalizer.normalize(segment) }
            if segment.isEmpty { continue }
            let atInputStart = range.lowerBound == 0
            for (inner, token) in addedVocabulary.split(segment, normalized: true) {
                if let token { ids.append(token.id); continue }
                if inner.isEmpty { continue }
                let piece = PreToken(text: inner.count == segment.count ? segment : Array(segment[inner]),
                                     atInputStart: atInputStart && inner.lowerBound == 0)
                if let preTokenizer {
                    for word in preTokenizer.preTokenize([piece]) { model.tokenize(word.text, into: &ids) }
                } else {
                    model.tokenize(piece.text, into: &ids)
                }
            }
        }
        if addSpecialTokens, let postProcessor { return postProcessor.process(ids) }
        return ids
    }

    /// The text of `ids`. Unknown ids are skipped; with `skipSpecialTokens`, so are special added tokens.
    public func decode(_ ids: [Int], skipSpecialTokens: Bool = true) -> String {
        var tokens: [String] = []
        tokens.reserveCapacity(ids.count)
        for id in ids {
            guard let t = token(for: id) else { continue }
            if skipSpecialTokens && specialContents.contains(Array(t.utf8)) { continue }
            tokens.append(t)
        }
        guard let decoder else { return tokens.joined(separator: " ") }
        return decoder.decodeToString(tokens)
    }

    /// The id of a token string (added tokens first, then the model's vocabulary; exact scalars).
    public func id(for token: String) -> Int? {
        addedVocabulary.contentToID[Array(token.utf8)] ?? model.id(for: token)
    }

    /// The token string of an id (added tokens first, then the model's vocabulary).
    public func token(for id: Int) -> String? {
        addedVocabulary.idToContent[id] ?? model.token(for: id)
    }
}
