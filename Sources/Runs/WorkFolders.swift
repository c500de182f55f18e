import Foundation
import Pruning
#if canImport(Glibc)
import Glibc
#endif

/// The hidden work folder of a run writing `--output DIR`: `.DIR.partial-PID` beside DIR, holding a
/// `.lock` file that its process keeps locked (flock) while it lives.
///
/// A work folder is *stale* when its process is gone: its lock can be taken, or its pid names no process.
/// A stale folder is what a SIGKILL, a power loss or a crash leaves; `--resume` continues it, and any other
/// run for the same output (or `llm-prune clean`) removes it.
public struct WorkFolder: Sendable, Equatable {
    public var url: URL
    /// The pid in the folder's name.
    public var pid: Int32
    /// Its process is gone.
    public var isStale: Bool
    /// Blocks finished, from its resume state (nil: none saved).
    public var finishedBlocks: Int?
}

public enum WorkFolders {
    /// The longest `--output` name: the work folder's name (`.` + name + `.partial-` + up to 10 pid
    /// digits) must fit the file system's 255 bytes.
    public static let maxOutputNameBytes = 255 - 1 - ".partial-".utf8.count - 10

    static let lockFileName = ".lock"

    /// false: commit as on a file system without renameat2's RENAME_NOREPLACE (mkdir, then rename over the
    /// empty folder), for a command line that tests that path. Set before any writer exists.
    nonisolated(unsafe) public static var usesRenameNoReplace = true

    static func prefix(for output: URL) -> String { ".\(output.lastPathComponent).partial-" }

    static func url(for output: URL, pid: Int32) -> URL {
        output.deletingLastPathComponent().appendingPathComponent(prefix(for: output) + String(pid))
    }

    /// The work folders beside `output` (of running and of dead processes), by name.
    public static func list(for output: URL) -> [WorkFolder] {
        let output = output.standardizedFileURL
        let parent = output.deletingLastPathComponent()
        let prefix = prefix(for: output)
        let names = (try? FileManager.default.contentsOfDirectory(atPath: parent.path)) ?? []
        var result: [WorkFolder] = []
        for name in names.sorted() where name.hasPrefix(prefix) {
            guard let pid = Int32(name.dropFirst(prefix.count)), pid > 0 else { continue }
            let url = parent.appendingPathComponent(name)
            result.append(WorkFolder(url: url, pid: pid, isStale: isStale(url, pid: pid),
                                     finishedBlocks: RunCheckpoint.finishedBlocks(in: url)))
        }
        return result
    }

    /// Removes the stale work folders beside `output`; returns them, and the live ones it kept.
    public static func clean(for output: URL) -> (removed: [WorkFolder], kept: [WorkFolder]) {
        var removed: [WorkFolder] = [], kept: [WorkFolder] = []
        for f in list(for: output) {
            if f.isStale {
                try? FileManager.default.removeItem(at: f.url)
                removed.append(f)
            } else {
                kept.append(f)
            }
        }
        return (removed, kept)
    }

    static func isStale(_ folder: URL, pid: Int32) -> Bool {
        let fd = open(folder.appendingPathComponent(lockFileName).path, O_RDWR | O_CLOEXEC)
        if fd >= 0 {
            defer { close(fd) }
            // Our own process holds its lock through another descriptor, so this fails for it too.
            return flock(fd, LOCK_EX | LOCK_NB) == 0
        }
        if pid == getpid() { return true }   // not ours (ours has a lock): a dead process with our pid
        return kill(pid, 0) != 0 && errno == ESRCH
    }

    /// Creates the lock file in `folder` and locks it for the life of the process; returns the descriptor.
    static func lock(_ folder: URL) throws -> Int32 {
        let path = folder.appendingPathComponent(lockFileName).path
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw PruningError("cannot create \(path): \(String(cString: strerror(errno)))") }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            close(fd)
            throw PruningError("\(folder.path) is in use by another llm-prune process")
        }
        return fd
    }

    /// Creates the parent folders of `output` as `mkdir -p` does; a file in the way is an error.
    static func createParent(of output: URL) throws {
        let fm = FileManager.default
        let parent = output.deletingLastPathComponent()
        var isDir: ObjCBool = false
        if fm.fileExists(atPath: parent.path, isDirectory: &isDir) {
            guard isDir.boolValue else {
                throw PruningError("the parent of --output \(output.path) is a file, not a folder")
            }
            return
        }
        do { try fm.createDirectory(at: parent, withIntermediateDirectories: true) } catch {
            throw PruningError("cannot create the parent folder of --output \(output.path): \(error.localizedDescription)")
        }
    }

    /// Checks `output` as a destination before any work: its name fits beside the work folder's, nothing
    /// (not even a dangling symbolic link) is there, and it does not lie inside `input`.
    public static func checkDestination(_ output: URL, input: URL) throws {
        let output = output.standardizedFileURL
        let name = output.lastPathComponent
        guard !name.isEmpty, name != "/", name != ".", name != ".." else {
            throw PruningError("--output \(output.path) does not name a new folder")
        }
        guard name.utf8.count <= maxOutputNameBytes else {
            throw PruningError("--output name is \(name.utf8.count) bytes long; at most \(maxOutputNameBytes) fit beside its temporary work folder (file names are limited to 255 bytes)")
        }
        var st = stat()
        if lstat(output.path, &st) == 0 {
            if (st.st_mode & S_IFMT) == S_IFLNK {
                let target = (try? FileManager.default.destinationOfSymbolicLink(atPath: output.path)) ?? "?"
                let dangling = stat(output.path, &st) != 0
                throw PruningError("--output \(output.path) is a symbolic link\(dangling ? " to \(target), which does not exist" : " to \(target)"); give a folder that does not exist yet")
            }
            throw PruningError("output folder \(output.path) already exists; choose another --output or remove it")
        }
        let inputReal = realPath(input.standardizedFileURL)
        let outputReal = realPath(output)
        if outputReal == inputReal || outputReal.hasPrefix(inputReal.hasSuffix("/") ? inputReal : inputReal + "/") {
            throw PruningError("--output \(output.path) lies inside the input model folder \(input.path); choose a folder outside it")
        }
    }

    /// `url` with symbolic links resolved in its longest existing ancestor (the rest appended as is).
    static func realPath(_ url: URL) -> String {
        var existing = url
        var rest: [String] = []
        while existing.path != "/" {
            if let p = realpath(existing.path, nil) {
                defer { free(p) }
                return ([String(cString: p)] + rest.reversed()).joined(separator: "/")
                    .replacingOccurrences(of: "//", with: "/")
            }
            rest.append(existing.lastPathComponent)
            existing = existing.deletingLastPathComponent()
        }
        return "/" + rest.reversed().joined(separator: "/")
    }
}

/// Durable file-system steps: fsync of files and folders, and a rename that never replaces.
enum Durable {
    /// fsyncs the file or folder at `path` (errors ignored where the file system cannot).
    static func sync(_ path: String) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return }
        _ = fsync(fd)
        close(fd)
    }

    /// fsyncs every file under `folder`, then the folders themselves.
    static func syncTree(_ folder: URL) {
        let fm = FileManager.default
        if let e = fm.enumerator(atPath: folder.path) {
            for case let name as String in e { sync(folder.appendingPathComponent(name).path) }
        }
        sync(folder.path)
    }

    private typealias RenameAt2 = @convention(c) (Int32, UnsafePointer<CChar>, Int32, UnsafePointer<CChar>, UInt32) -> Int32
    /// glibc ≥ 2.28 has renameat2, but Swift's Glibc module does not export it (and `syscall` is variadic).
    private static let systemRenameAt2: RenameAt2? = {
        guard let handle = dlopen(nil, RTLD_NOW), let symbol = dlsym(handle, "renameat2") else { return nil }
        return unsafeBitCast(symbol, to: RenameAt2.self)
    }()
    private static var renameat2: RenameAt2? { WorkFolders.usesRenameNoReplace ? systemRenameAt2 : nil }

    /// Renames the folder or file `from` to `to`, failing (EEXIST) if anything is at `to`: renameat2 with
    /// RENAME_NOREPLACE, atomic. Where the file system does not support that flag: for a folder, it creates
    /// `to` as an empty folder (mkdir fails if anything is there) and renames over it (rename replaces only an
    /// empty folder, so a folder someone else filled in between is never replaced); for a file (a GGUF
    /// output), it hard-links `to` to it (link fails if anything is there) and removes the old name. Then
    /// fsyncs the parent.
    static func renameNoReplace(_ from: URL, to: URL) throws {
        var r: Int32 = -1
        var err: Int32 = ENOSYS
        if let renameat2 {
            r = renameat2(AT_FDCWD, from.path, AT_FDCWD, to.path, 1 /* RENAME_NOREPLACE */)
            err = errno
        }
        var isFolder: ObjCBool = false
        if r != 0 && (err == EINVAL || err == ENOSYS),
           FileManager.default.fileExists(atPath: from.path, isDirectory: &isFolder), !isFolder.boolValue {
            r = link(from.path, to.path)
            err = errno
            if r == 0 { unlink(from.path) }
        } else if r != 0 && (err == EINVAL || err == ENOSYS) {
            guard mkdir(to.path, 0o755) == 0 else {
                throw PruningError("cannot move the result to \(to.path): \(String(cString: strerror(errno)))")
            }
            r = rename(from.path, to.path)
            err = errno
            if r != 0 { rmdir(to.path) }
        }
        guard r == 0 else {
            if err == EEXIST || err == ENOTEMPTY {
                throw PruningError("output \(to.path) appeared while pruning; the result was not moved there")
            }
            throw PruningError("cannot rename \(from.path) to \(to.path): \(String(cString: strerror(err)))")
        }
        sync(to.deletingLastPathComponent().path)
    }
}
