/// Every failure of this module: a malformed file, a missing tensor or key, a bad argument to the writer.
///
/// `description` is one line: `<file>: tensor '<name>': <message>`, `<file>: key '<key>': <message>`, or
/// `<file>: <message>` when the problem concerns neither one tensor nor one key.
public struct GGUFError: Error, CustomStringConvertible, Sendable {
    /// The class of problem, for callers (and tests) that branch on it rather than on the text.
    public enum Kind: Sendable, Equatable {
        /// The file could not be opened, mapped, written or renamed.
        case io
        /// A count, string or value runs past the end of the file, or the data section lies beyond it.
        case truncated
        /// The first four bytes are not `GGUF`.
        case badMagic
        /// A version other than 2 or 3 (or a big-endian file).
        case unsupportedVersion
        /// A metadata key or value that is malformed: unknown value type, invalid UTF-8, nesting too deep,
        /// a count too large for the file, `general.alignment` not a power of two.
        case invalidMetadata
        /// The same metadata key twice.
        case duplicateKey
        /// A tensor info that is malformed: too many dimensions, negative or overflowing sizes, a row length
        /// that is not a multiple of the type's block size.
        case invalidShape
        /// A tensor type id this module does not know.
        case unknownType
        /// A tensor offset that is not aligned or whose bytes run past the data section.
        case invalidOffset
        /// Two tensors' bytes overlap.
        case overlap
        /// The same tensor name twice.
        case duplicateTensor
        /// No tensor (or metadata key) of that name.
        case notFound
        /// The tensor's type cannot be converted the way asked (e.g. floats of an integer or IQ tensor).
        case unsupportedType
        /// The writer was given inconsistent tensors or values.
        case invalidArgument
    }

    public let kind: Kind
    /// The file concerned, as a path.
    public let file: String
    /// The tensor concerned, when there is one.
    public let tensor: String?
    /// The metadata key concerned, when there is one.
    public let key: String?
    /// What is wrong, without the file/tensor/key prefix.
    public let message: String

    public init(_ kind: Kind, file: String, tensor: String? = nil, key: String? = nil, _ message: String) {
        self.kind = kind
        self.file = file
        self.tensor = tensor
        self.key = key
        self.message = message
    }

    public var description: String {
        var text = "\(file): "
        if let tensor { text += "tensor '\(Self.clip(tensor))': " }
        if let key { text += "key '\(Self.clip(key))': " }
        text += message
        // Names come from untrusted files; keep the description on one line whatever they hold.
        guard text.contains(where: \.isNewline) else { return text }
        return String(text.map { $0.isNewline ? " " : $0 })
    }

    /// Names from a hostile file may be megabytes long; an error line shows at most 200 characters of one.
    static func clip(_ s: String) -> String {
        s.count <= 200 ? s : String(s.prefix(200)) + "…"
    }
}
