import Foundation
import Llama
import Pruning
import SafeTensors
import Tensor
#if canImport(Glibc)
import Glibc
#endif

/// The life of one writer's hidden work folder: created (or adopted) and registered for a signal's
/// cleanup in one step, a `.staging` subfolder for the pruned blocks as the driver hands them over, and an
/// end that is either the commit (one atomic rename that never replaces anything) or the removal of
/// everything. Both checkpoint writers keep their output here until the commit.
final class WorkFolderSession {
    let output: URL
    /// `.NAME.partial-PID` beside the output.
    let temporary: URL
    let staging: URL
    let registry: WorkFolderRegistry
    var atPoint: RunPointHook?
    private var lockFD: Int32 = -1
    private(set) var ended = false

    /// Creates the work folder and its staging subfolder, or takes over `adopting` (a stale work folder
    /// being resumed) by renaming it; with `locked`, holds its `.lock` (flock) so other runs see it alive.
    init(output: URL, adopting: URL? = nil, locked: Bool, registry: WorkFolderRegistry, atPoint: RunPointHook?) throws {
        let fm = FileManager.default
        self.output = output
        self.registry = registry
        self.atPoint = atPoint
        let temporary = WorkFolders.url(for: output, pid: getpid())
        let staging = temporary.appendingPathComponent(".staging")
        self.temporary = temporary
        self.staging = staging
        var fd: Int32 = -1
        // Created (or adopted) and registered in one step under the cleanup's lock: a signal cannot fall
        // between the folder's appearance and its registration.
        do {
            try registry.register(temporary.path) {
                try? fm.removeItem(at: temporary)      // a leftover of an earlier run with the same pid
                if let adopting {
                    guard rename(adopting.path, temporary.path) == 0 else {
                        throw PruningError("cannot take over \(adopting.path): \(String(cString: strerror(errno)))")
                    }
                    if !fm.fileExists(atPath: staging.path) {
                        try fm.createDirectory(at: staging, withIntermediateDirectories: false)
                    }
                } else {
                    try fm.createDirectory(at: temporary, withIntermediateDirectories: false)
                    try fm.createDirectory(at: staging, withIntermediateDirectories: false)
                }
                if locked { fd = try WorkFolders.lock(temporary) }
            }
        } catch let e as PruningError {
            throw e
        } catch {
            throw PruningError("cannot create \(temporary.path): \(error.localizedDescription)")
        }
        lockFD = fd
    }

    deinit {
        if !ended { discard() }
        if lockFD >= 0 { close(lockFD) }
    }

    /// Removes the work folder (nothing of the run remains).
    func discard() {
        registry.unregister(temporary.path, remove: true)
        ended = true
    }

    /// Writes one block's `entries` to `.staging/block-<layer>.safetensors` and returns the file, mapped.
    func stage(_ entries: [TensorEntry], layer: Int) throws -> SafeTensorsFile {
        guard !ended else { throw PruningError("the checkpoint was already written or discarded") }
        let url = staging.appendingPathComponent("block-\(layer).safetensors")
        do {
            try SafeTensorsWriter.write(entries, to: url)
            return try SafeTensorsFile(url: url)
        } catch let e as PruningError {
            throw e
        } catch {
            throw PruningError("cannot save block \(layer): \(error)")
        }
    }

    /// The staged file of block `layer` from an earlier process (a resumed run), mapped.
    func staged(layer: Int) throws -> SafeTensorsFile {
        try SafeTensorsFile(url: staging.appendingPathComponent("block-\(layer).safetensors"))
    }

    /// The commit: `result` (the work folder itself, or a file inside it) synced, renamed to the output
    /// atomically and never over anything that appeared meanwhile, with the cleanup held off; then the
    /// work folder is forgotten (and removed, when the result was a file inside it). Run points
    /// `exported`, `commit` and `committed` in that order.
    func commit(_ result: URL) throws {
        Durable.syncTree(result)
        atPoint?("exported")
        try registry.commit(temporary.path, atPoint: atPoint) {
            try Durable.renameNoReplace(result, to: output)
        }
        if result != temporary { registry.unregister(temporary.path, remove: true) }
        ended = true
        atPoint?("committed")
    }
}
