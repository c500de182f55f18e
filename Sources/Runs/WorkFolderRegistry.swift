import Foundation
import Tensor

/// The hidden work folders this process is writing, and the one lock that orders their creation, removal
/// and the final rename (the commit) against a cleanup.
///
/// A writer registers its work folder here while it writes (`PrunedCheckpointWriter`,
/// `ConvertedCheckpointWriter`). The library installs no signal handler: a command line that wants a
/// terminating signal to leave nothing behind installs its own and calls `beginExit` from it (the
/// `llm-prune` executable does, see its `Signals.swift`). `beginExit` takes the lock and never gives it
/// back, so a signal that arrives during a rename is acted on after the rename, on the state it left, and
/// no folder is removed while it is being renamed.
public final class WorkFolderRegistry: @unchecked Sendable {
    /// The registry of this process: writers use it unless handed another.
    public static let shared = WorkFolderRegistry()

    private let lock = NSLock()
    private var folders: Set<String> = []
    private var committed = false

    public init() {}

    /// Runs `create` (which makes the folder at `path`) and registers `path`, atomically with respect to
    /// a cleanup: the folder is either never made or removed by it.
    func register(_ path: String, create: () throws -> Void) rethrows {
        lock.lock(); defer { lock.unlock() }
        folders.insert(path)
        committed = false
        do { try create() } catch {
            try? FileManager.default.removeItem(atPath: path)
            folders.remove(path)
            throw error
        }
    }

    /// Runs `body` under the cleanup's lock, e.g. creating a subfolder of a registered folder.
    func whileHeld<T>(_ body: () throws -> T) rethrows -> T {
        lock.lock(); defer { lock.unlock() }
        return try body()
    }

    /// Removes the folder at `path` (if `remove`) and forgets it.
    func unregister(_ path: String, remove: Bool) {
        lock.lock(); defer { lock.unlock() }
        if remove { Self.removeFolder(path) }
        folders.remove(path)
    }

    /// Runs the commit step `body` (the final rename) with the cleanup held off; when `body` returns, the
    /// folder at `path` is forgotten and the run counts as complete. `atPoint("commit")` runs first, inside.
    func commit(_ path: String, atPoint: RunPointHook?, _ body: () throws -> Void) rethrows {
        lock.lock(); defer { lock.unlock() }
        atPoint?("commit")
        try body()
        folders.remove(path)
        committed = folders.isEmpty
    }

    /// Removes every registered folder now.
    public func removeAll() {
        lock.lock(); defer { lock.unlock() }
        for path in folders { Self.removeFolder(path) }
        folders = []
    }

    /// For a terminating signal's handler: takes the lock and removes every registered folder, then
    /// returns true *with the lock still held*, so nothing may create or rename a work folder before the
    /// process ends. When `sparingCompletedRun` is set and the last commit left no folder registered (the
    /// result is complete), it removes nothing, releases the lock and returns false: the caller may ignore
    /// the signal and let the process finish.
    public func beginExit(sparingCompletedRun: Bool) -> Bool {
        lock.lock()
        if sparingCompletedRun && committed && folders.isEmpty {
            lock.unlock()
            return false
        }
        for path in folders { Self.removeFolder(path) }
        folders = []
        return true
    }

    private static func removeFolder(_ path: String) {
        // A writer may still be adding files (its writes fail once the folder is gone); retry a few times.
        for _ in 0..<5 where FileManager.default.fileExists(atPath: path) {
            try? FileManager.default.removeItem(atPath: path)
        }
    }
}
