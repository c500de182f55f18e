import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Terminating signals, and the work folders they must not leave behind.
///
/// A run registers its hidden work folder here while it writes (`PrunedCheckpointWriter` does). Each
/// signal of `handledSignals` then ends the process the usual way (killed by that signal, status 128 + n in
/// a shell) after removing every registered folder, except after a commit (the final rename) when
/// `completedRunExitsNormally` is set: the run's result is then complete and the signal is ignored so the
/// process can finish printing and exit 0.
///
/// The C handler only writes the signal number to a pipe (the one async-signal-safe step); a watcher
/// thread reads it, takes `lock`, removes the folders and re-raises the signal with the default action. It
/// never releases the lock: the main thread's commit (`commit(_:)`), folder creation and unregistration all
/// run under the same lock, so a signal that arrives during the rename is acted on after it, on the state
/// the rename left, and the cleanup never deletes a folder while it is being renamed. Signals ignored when
/// the process started (`nohup`, a background job of a shell script) stay ignored; blocked ones are
/// unblocked in the installing thread. Dispatch signal sources cannot do this on Linux: they need
/// the signal blocked in every thread, and an ignored signal is discarded before they see it.
public enum Interrupts {
    /// Every signal whose default action ends the process and that a user or a pipe may send.
    /// SIGQUIT included: without a handler the Swift runtime prints a backtrace for it and carries on.
    public static let handledSignals: [Int32] = [SIGHUP, SIGINT, SIGQUIT, SIGPIPE, SIGALRM, SIGTERM,
                                                 SIGUSR1, SIGUSR2, SIGXCPU, SIGXFSZ]

    /// Set by a command line so that a signal arriving after a run committed its output leaves the exit
    /// status at 0 (the signal is ignored; the process is about to end anyway).
    nonisolated(unsafe) public static var completedRunExitsNormally = false

    private static let lock = NSLock()
    nonisolated(unsafe) private static var folders: Set<String> = []
    nonisolated(unsafe) private static var committed = false
    nonisolated(unsafe) private static var installed = false

    /// Installs the handlers (idempotent). `PrunedCheckpointWriter` calls it; a command line calls it at
    /// start so that every phase of a run behaves the same.
    public static func install() {
        lock.lock(); defer { lock.unlock() }
        installLocked()
    }

    /// Runs `create` (which makes the folder at `path`) and registers `path`, atomically with respect to
    /// a signal: the folder is either never made or removed by the cleanup.
    static func register(_ path: String, create: () throws -> Void) rethrows {
        lock.lock(); defer { lock.unlock() }
        installLocked()
        folders.insert(path)
        committed = false
        do { try create() } catch {
            try? FileManager.default.removeItem(atPath: path)
            folders.remove(path)
            throw error
        }
    }

    /// Runs `body` under the cleanup's lock, e.g. creating a subfolder of a registered folder.
    static func whileHeld<T>(_ body: () throws -> T) rethrows -> T {
        lock.lock(); defer { lock.unlock() }
        return try body()
    }

    /// Removes the folder at `path` (if `remove`) and forgets it.
    static func unregister(_ path: String, remove: Bool) {
        lock.lock(); defer { lock.unlock() }
        if remove { removeFolder(path) }
        folders.remove(path)
    }

    /// Runs the commit step `body` (the final rename) with the cleanup held off; when `body` returns, the
    /// folder at `path` is forgotten and the run counts as complete.
    static func commit(_ path: String, _ body: () throws -> Void) rethrows {
        lock.lock(); defer { lock.unlock() }
        TestHooks.pause("commit")
        try body()
        folders.remove(path)
        committed = folders.isEmpty
    }

    /// Removes every registered folder now (for a caller's own signal handling).
    static func removeAll() {
        lock.lock(); defer { lock.unlock() }
        for path in folders { removeFolder(path) }
        folders = []
    }

    private static func removeFolder(_ path: String) {
        // A writer may still be adding files (its writes fail once the folder is gone); retry a few times.
        for _ in 0..<5 where FileManager.default.fileExists(atPath: path) {
            try? FileManager.default.removeItem(atPath: path)
        }
    }

    private static func installLocked() {
        guard !installed else { return }
        installed = true
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { return }
        signalPipeWrite = fds[1]
        let readFD = fds[0]
        let watcher = Thread {
            while true {
                var sig: Int32 = 0
                let n = withUnsafeMutableBytes(of: &sig) { read(readFD, $0.baseAddress, 4) }
                if n < 0 && errno == EINTR { continue }
                if n != 4 { return }
                lock.lock()
                if committed && folders.isEmpty && completedRunExitsNormally {
                    lock.unlock()
                    continue
                }
                for path in folders { removeFolder(path) }
                folders = []
                // The lock stays held: nothing may create or rename a work folder before the process ends.
                var action = sigaction()
                action.__sigaction_handler.sa_handler = SIG_DFL
                sigemptyset(&action.sa_mask)
                sigaction(sig, &action, nil)
                var set = sigset_t()
                sigemptyset(&set); sigaddset(&set, sig)
                pthread_sigmask(SIG_UNBLOCK, &set, nil)
                kill(getpid(), sig)   // process-directed: any thread that does not block it takes it
                while true { pause() }
            }
        }
        watcher.name = "llm-prune signal cleanup"
        watcher.start()
        // A blocked signal mask is inherited across exec (some launchers leave most signals blocked):
        // unblock ours in this thread, so that at least the thread that installs them (the main thread,
        // for the command line) takes them.
        var unblock = sigset_t()
        sigemptyset(&unblock)
        for sig in handledSignals { sigaddset(&unblock, sig) }
        pthread_sigmask(SIG_UNBLOCK, &unblock, nil)
        for sig in handledSignals {
            var old = sigaction()
            sigaction(sig, nil, &old)
            // Keep what the parent chose to ignore (nohup's SIGHUP, a shell's SIGPIPE).
            if unsafeBitCast(old.__sigaction_handler.sa_handler, to: Int.self) == unsafeBitCast(SIG_IGN, to: Int.self) { continue }
            var action = sigaction()
            action.__sigaction_handler.sa_handler = { received in
                var s = received
                _ = withUnsafeBytes(of: &s) { write(signalPipeWrite, $0.baseAddress, 4) }
            }
            sigemptyset(&action.sa_mask)
            action.sa_flags = Int32(SA_RESTART)
            sigaction(sig, &action, nil)
        }
    }
}

/// The write end of the signal pipe, read by the C signal handler (which cannot capture context).
nonisolated(unsafe) private var signalPipeWrite: Int32 = -1

/// Pauses at named points of a run, for tests that send signals at chosen moments.
///
/// `LLM_PRUNE_TEST_PAUSE=point:seconds[,point:seconds...]`: at each named point the process writes
/// "llm-prune test hook: paused at <point>" to stderr and sleeps that long. Points: `calibrated` (before
/// the first block), `block-<l>` (block l finished and, with --output, its resume state saved),
/// `evaluated`, `exported` (every file written, before the commit), `commit` (inside the commit, signals
/// held off), `committed` (after the final rename).
public enum TestHooks {
    nonisolated(unsafe) private static var points: [String: Double]? = nil

    public static func pause(_ point: String) {
        if points == nil {
            var p: [String: Double] = [:]
            for item in (ProcessInfo.processInfo.environment["LLM_PRUNE_TEST_PAUSE"] ?? "").split(separator: ",") {
                let parts = item.split(separator: ":")
                if parts.count == 2, let s = Double(parts[1]) { p[String(parts[0])] = s }
            }
            points = p
        }
        guard let seconds = points?[point] else { return }
        let line = Array("llm-prune test hook: paused at \(point)\n".utf8)
        _ = line.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
        Thread.sleep(forTimeInterval: seconds)
    }
}
