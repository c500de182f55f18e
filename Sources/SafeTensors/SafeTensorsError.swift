/// Every failure of this module: a malformed file, a missing tensor, a bad argument to the writer.
///
/// `description` is one line: `<file>: tensor '<name>': <message>`, or `<file>: <message>` when the
/// problem is not about one tensor. `file` is the path as the caller gave it.
public struct SafeTensorsError: Error, CustomStringConvertible, Sendable {
    /// The class of problem, for callers (and tests) that branch on it rather than on the text.
    public enum Kind: Sendable, Equatable {
        /// The file or folder could not be opened, mapped, listed, written or renamed.
        case io
        /// Shorter than the 8-byte length prefix, or the header length runs past the end of the file.
        case truncated
        /// The header length is beyond `SafeTensorsFile.maxHeaderBytes`.
        case headerTooLarge
        /// The header is not UTF-8 JSON, not an object, or an entry is not the expected object.
        case invalidHeader
        /// `__metadata__` is not a map of strings to strings.
        case invalidMetadata
        /// A dtype name this module does not know.
        case unknownDType
        /// A shape that is not an array of non-negative integers, or whose size overflows.
        case invalidShape
        /// `data_offsets` that are not `[begin, end]` with `begin <= end` inside the data section.
        case invalidOffsets
        /// The byte span of `data_offsets` differs from shape × dtype size.
        case sizeMismatch
        /// Two tensors' byte spans overlap.
        case overlap
        /// Bytes of the data section that no tensor owns (a gap or trailing bytes).
        case uncoveredBytes
        /// The same tensor name twice, in one header or across the files of a checkpoint.
        case duplicateTensor
        /// No tensor of that name.
        case noSuchTensor
        /// The tensor's dtype cannot be read the way asked (floats of an integer tensor, or the reverse).
        case dtypeMismatch
        /// A checkpoint folder without any `.safetensors` file.
        case noFiles
        /// `model.safetensors.index.json` is not JSON, has no `weight_map`, names something that is not a
        /// file of the folder, or maps a tensor to a shard without it.
        case invalidIndex
        /// A shard the index names, or a member of a `-NNNNN-of-MMMMM` set, is absent.
        case missingShard
        /// The writer was given inconsistent tensors (wrong element count, bad name, value out of range).
        case invalidArgument
    }

    public let kind: Kind
    /// The file (or folder) concerned, as a path.
    public let file: String
    /// The tensor concerned, when there is one.
    public let tensor: String?
    /// What is wrong, without the file and tensor prefix.
    public let message: String

    public init(_ kind: Kind, file: String, tensor: String? = nil, _ message: String) {
        self.kind = kind
        self.file = file
        self.tensor = tensor
        self.message = message
    }

    public var description: String {
        let text: String
        if let tensor {
            text = "\(file): tensor '\(tensor)': \(message)"
        } else {
            text = "\(file): \(message)"
        }
        // Names come from untrusted headers; keep the description on one line whatever they hold.
        return text.replacingLineBreaks()
    }
}

extension String {
    func replacingLineBreaks() -> String {
        guard contains(where: { $0.isNewline }) else { return self }
        return String(map { $0.isNewline ? " " : $0 })
    }
}
