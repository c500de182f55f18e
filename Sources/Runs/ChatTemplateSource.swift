import Foundation
import JSON
import Llama
import Pruning

extension ModelInput {
    /// The largest tokenizer_config.json or chat_template.jinja read for a chat template.
    static let maxChatTemplateFileBytes = 1 << 26

    /// The chat template (Jinja source) a model carries, nil when it has none: a GGUF file's
    /// `tokenizer.chat_template`; for a folder (or `tokenizerDirectory`, which replaces the model's own
    /// tokenizer files), `chat_template.jinja` when present, else `chat_template` in tokenizer_config.json
    /// (a string, or a list of {name, template} of which the one named `default` is taken).
    public static func chatTemplate(for checkpoint: LlamaCheckpoint, at url: URL, tokenizerDirectory: URL?) throws -> String? {
        if tokenizerDirectory == nil, let gguf = (checkpoint.source as? GGUFWeights)?.file {
            do { return try gguf.tokenizerMetadata()?.chatTemplate } catch { throw PruningError("\(url.path): \(error)") }
        }
        let folder = tokenizerDirectory ?? url
        let jinja = folder.appendingPathComponent("chat_template.jinja")
        if FileManager.default.fileExists(atPath: jinja.path) {
            return String(decoding: try readBounded(jinja), as: UTF8.self)
        }
        let configURL = folder.appendingPathComponent("tokenizer_config.json")
        guard FileManager.default.fileExists(atPath: configURL.path) else { return nil }
        let config: JSONValue
        do { config = try JSONValue.parse(try readBounded(configURL)) } catch let e as PruningError { throw e } catch {
            throw PruningError("\(configURL.path): \(error)")
        }
        switch config["chat_template"] {
        case nil, .null?:
            return nil
        case .string(let s)?:
            return s
        case .array(let list)?:
            guard let entry = list.first(where: { $0["name"]?.stringValue == "default" }),
                  let s = entry["template"]?.stringValue else {
                throw PruningError("\(configURL.path): chat_template is a list without a \"default\" entry")
            }
            return s
        case let other?:
            throw PruningError("\(configURL.path): chat_template is \(other.kindDescription), not a string or a list")
        }
    }

    private static func readBounded(_ url: URL) throws -> Data {
        let attributes = try? FileManager.default.attributesOfItem(atPath: url.path)
        guard attributes?[.type] as? FileAttributeType == .typeRegular else {
            throw PruningError("\(url.path) is not a regular file")
        }
        if let size = attributes?[.size] as? Int, size > maxChatTemplateFileBytes {
            throw PruningError("\(url.path) is \(size) bytes, more than the \(maxChatTemplateFileBytes) accepted")
        }
        do { return try Data(contentsOf: url) } catch {
            throw PruningError("cannot read \(url.path): \(error.localizedDescription)")
        }
    }
}
