import Foundation
import JSON

/// The tensors of a Hugging Face checkpoint folder: one `model.safetensors`, or shards listed by
/// `model.safetensors.index.json`.
///
/// Which files hold the checkpoint:
/// - with an index: exactly the files its `weight_map` names (extra `*.safetensors` in the folder are
///   ignored and listed in `notes`). An index that is not JSON, has no `weight_map` object, names a file
///   that is not a plain file name in the folder (a missing shard, `../x`), or puts a tensor in a shard
///   that does not hold it is an error (`invalidIndex`, or `missingShard` for a missing file): a loader
///   that trusts the index, as transformers does, would not load the folder either.
/// - without an index: every `*.safetensors` file in the folder, by name. Files named in the Hugging Face
///   pattern `<prefix>-NNNNN-of-MMMMM.safetensors` must form the complete set 1...MMMMM (`missingShard`).
///
/// A tensor name in two of those files is an error. Every file is opened (mapped and validated) at `init`;
/// tensor data is converted only when asked for, one tensor at a time.
public final class SafeTensorsCheckpoint: @unchecked Sendable {
    /// The index file name Hugging Face uses for sharded safetensors checkpoints.
    public static let indexFileName = "model.safetensors.index.json"

    public let directory: URL
    /// The files holding the tensors, by file name, sorted.
    public let shardFiles: [String]
    /// The opened files, parallel to `shardFiles`.
    public let files: [SafeTensorsFile]
    /// True when the tensor→file map came from `model.safetensors.index.json`.
    public let usedIndex: Bool
    /// Why the index was ignored, or which files it left out; empty when nothing was unusual.
    public let notes: [String]
    /// All tensor names: the shards in `shardFiles` order, each in file order.
    public let tensorNames: [String]

    private let fileIndexByTensor: [String: Int]

    /// Opens the checkpoint in `directory`. A path to a single `.safetensors` file also works: it is a
    /// checkpoint of that one file.
    public init(directory: URL) throws {
        self.directory = directory
        let fm = FileManager.default
        var isDirectory: ObjCBool = false
        guard fm.fileExists(atPath: directory.path, isDirectory: &isDirectory) else {
            throw SafeTensorsError(.io, file: directory.path, "no such file or folder")
        }
        if !isDirectory.boolValue {
            let file = try SafeTensorsFile(url: directory)
            shardFiles = [directory.lastPathComponent]
            files = [file]
            usedIndex = false
            notes = []
            tensorNames = file.tensorNames
            fileIndexByTensor = Dictionary(uniqueKeysWithValues: file.tensorNames.map { ($0, 0) })
            return
        }

        let listing: [String]
        do {
            listing = try fm.contentsOfDirectory(atPath: directory.path)
        } catch {
            throw SafeTensorsError(.io, file: directory.path, "cannot list the folder: \(error.localizedDescription)")
        }
        // Hidden files are skipped: they include our own writer's temporary files.
        let globbed = listing.filter { $0.hasSuffix(".safetensors") && !$0.hasPrefix(".") }.sorted()

        var notes: [String] = []
        var chosen: (names: [String], files: [SafeTensorsFile])?
        let indexURL = directory.appendingPathComponent(Self.indexFileName)
        if fm.fileExists(atPath: indexURL.path) {
            switch Self.readIndex(indexURL, directory: directory) {
            case let .unusable(kind, reason):
                throw SafeTensorsError(kind, file: indexURL.path, reason)
            case let .usable(index):
                let names = index.files.sorted()
                let opened = try names.map { try SafeTensorsFile(url: directory.appendingPathComponent($0)) }
                let fileByName = Dictionary(uniqueKeysWithValues: zip(names, opened))
                let misplaced = index.entries.first { entry in fileByName[entry.file]?.info(entry.tensor) == nil }
                if let misplaced {
                    throw SafeTensorsError(.invalidIndex, file: indexURL.path, tensor: misplaced.tensor,
                                           "is mapped to \(misplaced.file), which has no such tensor")
                } else {
                    chosen = (names, opened)
                    let extra = globbed.filter { !names.contains($0) }
                    if !extra.isEmpty {
                        notes.append("\(Self.indexFileName) leaves out \(extra.joined(separator: ", ")); those files are ignored")
                    }
                }
            }
        }
        usedIndex = chosen != nil
        let names: [String], opened: [SafeTensorsFile]
        if let chosen {
            (names, opened) = chosen
        } else {
            guard !globbed.isEmpty else {
                throw SafeTensorsError(.noFiles, file: directory.path, "no *.safetensors file in the folder")
            }
            if let missing = Self.missingShard(globbed) {
                throw SafeTensorsError(.missingShard, file: directory.path,
                                       "shard \(missing) is missing (the folder has \(globbed.joined(separator: ", ")))")
            }
            names = globbed
            opened = try globbed.map { try SafeTensorsFile(url: directory.appendingPathComponent($0)) }
        }
        var map: [String: Int] = [:]
        var order: [String] = []
        for (i, file) in opened.enumerated() {
            for tensor in file.tensorNames {
                if let other = map[tensor] {
                    throw SafeTensorsError(.duplicateTensor, file: directory.path, tensor: tensor,
                                           "appears in both \(names[other]) and \(names[i])")
                }
                map[tensor] = i
                order.append(tensor)
            }
        }
        shardFiles = names
        files = opened
        self.notes = notes
        tensorNames = order
        fileIndexByTensor = map
    }

    /// What a usable index says: its distinct files and its tensor→file entries.
    private struct Index {
        var files: [String]
        var entries: [(tensor: String, file: String)]
    }

    private enum IndexReading {
        case usable(Index)
        case unusable(SafeTensorsError.Kind, String)
    }

    /// The first absent member of a set of `<prefix>-NNNNN-of-MMMMM.safetensors` shard names, if any.
    public static func missingShard(_ names: [String]) -> String? {
        var present: [String: Set<Int>] = [:]   // "<prefix>|<total>" → shard numbers
        for name in names {
            guard name.hasSuffix(".safetensors") else { continue }
            let stem = name.dropLast(".safetensors".count)
            let parts = stem.split(separator: "-", omittingEmptySubsequences: false)
            guard parts.count >= 4, parts[parts.count - 2] == "of",
                  let k = Int(parts[parts.count - 3]), let total = Int(parts[parts.count - 1]),
                  parts[parts.count - 3].count == 5, parts[parts.count - 1].count == 5,
                  (1...total).contains(k)
            else { continue }
            let prefix = parts[0..<(parts.count - 3)].joined(separator: "-")
            present["\(prefix)|\(parts[parts.count - 1])", default: []].insert(k)
        }
        for key in present.keys.sorted() {
            let split = key.split(separator: "|", maxSplits: 1, omittingEmptySubsequences: false)
            let prefix = String(split[0]), totalText = String(split[1])
            let total = Int(totalText)!
            if let k = (1...total).first(where: { !present[key]!.contains($0) }) {
                let number = String(k), padded = String(repeating: "0", count: max(0, 5 - number.count)) + number
                return "\(prefix)-\(padded)-of-\(totalText).safetensors"
            }
        }
        return nil
    }

    /// Reads the index and checks that it names only files present in `directory`; `.unusable` says why
    /// not (unreadable, malformed, naming an absent file).
    private static func readIndex(_ url: URL, directory: URL) -> IndexReading {
        var st = stat()
        guard stat(url.path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else {
            return .unusable(.invalidIndex, "is not a regular file")
        }
        guard st.st_size <= SafeTensorsFile.maxHeaderBytes else {
            return .unusable(.invalidIndex, "is \(st.st_size) bytes, more than the \(SafeTensorsFile.maxHeaderBytes) accepted")
        }
        guard let data = FileManager.default.contents(atPath: url.path) else { return .unusable(.io, "cannot be read") }
        let json: JSONValue
        do {
            json = try JSONValue.parse([UInt8](data))
        } catch let e as JSONSyntaxError {
            return .unusable(.invalidIndex, "is not valid JSON (\(e.reason) at byte \(e.offset))")
        } catch {
            return .unusable(.invalidIndex, "is not valid JSON")
        }
        guard case let .object(top) = json,
              let weightMap = top.first(where: { $0.key == "weight_map" })?.value,
              case let .object(members) = weightMap
        else { return .unusable(.invalidIndex, "has no weight_map object") }
        var index = Index(files: [], entries: [])
        var seen = Set<String>()
        for (tensor, value) in members {
            guard case let .string(file) = value else {
                return .unusable(.invalidIndex, "its weight_map entry '\(tensor)' is \(value.rendered(limit: 40)), not a file name")
            }
            index.entries.append((tensor, file))
            if seen.insert(file).inserted { index.files.append(file) }
        }
        guard !index.files.isEmpty else { return .unusable(.invalidIndex, "its weight_map is empty") }
        for name in index.files {
            // Shards live beside the index: a path (`../../etc/passwd`, `sub/x`) is refused unread.
            if name.isEmpty || name.contains("/") || name == "." || name == ".." || name.contains("\0") {
                return .unusable(.invalidIndex, "its weight_map names \(jsonQuoted(name)), which is not a file name in the folder")
            }
            var isDirectory: ObjCBool = false
            let path = directory.appendingPathComponent(name).path
            if !FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) {
                return .unusable(.missingShard, "names shard \(name), which is missing from the folder")
            }
            if isDirectory.boolValue {
                return .unusable(.invalidIndex, "names shard \(name), which is a folder, not a file")
            }
        }
        return .usable(index)
    }

    /// The header entry of `name`, or nil when no file has it.
    public func info(_ name: String) -> TensorInfo? {
        guard let i = fileIndexByTensor[name] else { return nil }
        return files[i].info(name)
    }

    /// The name of the file holding `name` (e.g. `model-00002-of-00003.safetensors`), or nil.
    public func shardFile(of name: String) -> String? {
        fileIndexByTensor[name].map { shardFiles[$0] }
    }

    /// The opened file holding `name`, or nil.
    public func file(containing name: String) -> SafeTensorsFile? {
        fileIndexByTensor[name].map { files[$0] }
    }

    private func requireFile(_ name: String) throws -> SafeTensorsFile {
        guard let file = file(containing: name) else {
            throw SafeTensorsError(.noSuchTensor, file: directory.path, tensor: name, "no such tensor in the checkpoint")
        }
        return file
    }

    /// The tensor as float32 (see `SafeTensorsFile.floats(_:)`).
    public func floats(_ name: String) throws -> [Float] { try requireFile(name).floats(name) }

    /// Converts the tensor to float32 into `buffer` (see `SafeTensorsFile.floats(_:into:)`).
    public func floats(_ name: String, into buffer: UnsafeMutableBufferPointer<Float>) throws {
        try requireFile(name).floats(name, into: buffer)
    }

    /// The tensor's integer values (see `SafeTensorsFile.int64s(_:)`).
    public func int64s(_ name: String) throws -> [Int64] { try requireFile(name).int64s(name) }

    /// The tensor's stored bytes (see `SafeTensorsFile.withRawBytes(_:_:)`).
    public func withRawBytes<R>(_ name: String, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        try requireFile(name).withRawBytes(name, body)
    }

    /// The first file's `__metadata__` (Hugging Face writes the same map, e.g. `format: pt`, in every shard).
    public var metadata: [String: String] { files.first?.metadata ?? [:] }

    /// How many tensors of each dtype the checkpoint holds.
    public var dtypeCounts: [DType: Int] {
        var counts: [DType: Int] = [:]
        for file in files { for info in file.infos { counts[info.dtype, default: 0] += 1 } }
        return counts
    }

    /// One line such as `F32 (47 tensors)` or `BF16 (290 tensors), F32 (1 tensor)`, most common first.
    public var dtypeSummary: String {
        dtypeCounts.sorted { ($1.value, $0.key.rawValue) < ($0.value, $1.key.rawValue) }
            .map { "\($0.key.rawValue) (\($0.value) tensor\($0.value == 1 ? "" : "s"))" }
            .joined(separator: ", ")
    }

    /// Total bytes of tensor data over all files (the index's `total_size`).
    public var totalTensorBytes: Int {
        files.reduce(0) { sum, file in file.infos.reduce(sum) { $0 + $1.byteCount } }
    }
}
