import Foundation
import JSON

/// Adds special tokens around the ids of one encoded sequence (when `addSpecialTokens` is true).
public protocol PostProcessor: Sendable {
    func process(_ ids: [Int]) -> [Int]
    /// The ids this processor puts before the sequence (e.g. `[bos]`).
    var prefixIDs: [Int] { get }
}

public enum PostProcessors {
    /// The post-processor a `tokenizer.json` `"post_processor"` object describes, chosen by its `"type"`.
    public static func make(_ json: JSONValue) throws -> PostProcessor {
        let c = try StageConfig(json, stage: "post_processor")
        switch try c.type() {
        case "TemplateProcessing":
            return try TemplateProcessing(c)
        case "BertProcessing", "RobertaProcessing":
            func pair(_ key: String) throws -> Int {
                guard let a = c.json[key]?.arrayValue, a.count == 2, let id = a[1].intValue else {
                    throw TokenizerError.invalid("post_processor", "\"\(key)\" must be [token, id]")
                }
                return id
            }
            return WrapProcessing(cls: try pair("cls"), sep: try pair("sep"))
        case "ByteLevel":
            // Only adjusts offsets; ids pass through.
            return SequenceProcessing(processors: [])
        case "Sequence":
            return SequenceProcessing(processors: try c.array("processors").map(make))
        case let other:
            throw TokenizerError.unsupported("post_processor", other)
        }
    }
}

/// A template of special tokens and the sequence `$A`, e.g. `<s> $A`.
public struct TemplateProcessing: PostProcessor {
    public enum Piece: Sendable, Equatable {
        case special([Int])
        case sequence
    }
    public let single: [Piece]

    init(_ c: StageConfig) throws {
        let specials = c.json["special_tokens"]
        var pieces: [Piece] = []
        for item in try c.array("single") {
            if let s = item["SpecialToken"] {
                guard let name = s["id"]?.stringValue else {
                    throw TokenizerError.invalid("TemplateProcessing", "SpecialToken without \"id\"")
                }
                guard let ids = specials?[name]?["ids"]?.arrayValue else {
                    throw TokenizerError.invalid("TemplateProcessing", "special token \"\(name)\" missing from special_tokens")
                }
                let values = ids.compactMap { $0.intValue }
                guard values.count == ids.count else {
                    throw TokenizerError.invalid("TemplateProcessing", "special token \"\(name)\" has non-integer ids")
                }
                pieces.append(.special(values))
            } else if let s = item["Sequence"] {
                guard s["id"]?.stringValue == "A" else {
                    throw TokenizerError.invalid("TemplateProcessing", "single template may only use sequence A")
                }
                pieces.append(.sequence)
            } else {
                throw TokenizerError.invalid("TemplateProcessing", "template item is neither SpecialToken nor Sequence")
            }
        }
        single = pieces
    }

    public func process(_ ids: [Int]) -> [Int] {
        var out: [Int] = []
        out.reserveCapacity(ids.count + 4)
        for p in single {
            switch p {
            case .special(let s): out.append(contentsOf: s)
            case .sequence: out.append(contentsOf: ids)
            }
        }
        return out
    }

    public var prefixIDs: [Int] {
        var out: [Int] = []
        for p in single {
            guard case .special(let s) = p else { break }
            out.append(contentsOf: s)
        }
        return out
    }
}

/// `[cls] $A [sep]` (BERT and RoBERTa single sequences).
public struct WrapProcessing: PostProcessor {
    public let cls: Int
    public let sep: Int
    public func process(_ ids: [Int]) -> [Int] { [cls] + ids + [sep] }
    public var prefixIDs: [Int] { [cls] }
}

/// Applies each processor in order.
public struct SequenceProcessing: PostProcessor {
    public let processors: [PostProcessor]
    public func process(_ ids: [Int]) -> [Int] { processors.reduce(ids) { $1.process($0) } }
    // Each processor wraps the output of the one before it.
    public var prefixIDs: [Int] { processors.reduce([]) { $1.prefixIDs + $0 } }
}

/// Adds BOS and/or EOS: what `tokenizer_config.json`'s `add_bos_token` / `add_eos_token` ask for when
/// `tokenizer.json` has no post-processor.
public struct BosEosProcessing: PostProcessor {
    public let bos: Int?
    public let eos: Int?
    public func process(_ ids: [Int]) -> [Int] {
        var out: [Int] = []
        out.reserveCapacity(ids.count + 2)
        if let bos { out.append(bos) }
        out.append(contentsOf: ids)
        if let eos { out.append(eos) }
        return out
    }
    public var prefixIDs: [Int] { bos.map { [$0] } ?? [] }
}
