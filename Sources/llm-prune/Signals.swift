import Foundation
import Runs
import Tensor
#if canImport(Glibc)
import Glibc
#endif

/// Terminating signals, and the work folders they must not leave behind.
///
/// Each signal of `handledSignals` ends the process the usual way (killed by that signal, status 128 + n
/// in a shell) after removing every work folder registered in `WorkFolderRegistry.shared`, except after a
/// commit (the final rename) when `completedRunExitsNormally` is set: the run's result is then complete
/// and the signal is ignored so the process can finish printing and exit 0.
///
/// The C handler only writes the signal number to a pipe (the one async-signal-safe step); a watcher
/// thread reads it and calls the registry's `beginExit`, which takes the registry's lock for good (so the
/// cleanup waits for a rename in progress and nothing is renamed after it), then re-raises the signal with
/// the default action. Signals ignored when the process started (`nohup`, a background job of a shell
/// script) stay ignored; blocked ones are unblocked in the installing thread. Dispatch signal sources
/// cannot do this on Linux: they need the signal blocked in every thread, and an ignored signal is
/// discarded before they see it.
enum Signals {
    /// Every signal whose default action ends the process and that a user or a pipe may send.
    /// SIGQUIT included: without a handler the Swift runtime prints a backtrace for it and carries on.
    static let handledSignals: [Int32] = [SIGHUP, SIGINT, SIGQUIT, SIGPIPE, SIGALRM, SIGTERM,
                                          SIGUSR1, SIGUSR2, SIGXCPU, SIGXFSZ]

    /// Set once a command's result is complete, so that a signal arriving after its commit leaves the exit
    /// status at 0.
    nonisolated(unsafe) static var completedRunExitsNormally = false

    /// Installs the handlers; called once, at start.
    static func install(registry: WorkFolderRegistry = .shared) {
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
                guard registry.beginExit(sparingCompletedRun: completedRunExitsNormally) else { continue }
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
        // unblock ours in this thread, so that at least the thread that installs them (the main thread)
        // takes them.
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

/// The command line's test pauses, read from the environment here and handed to the library as a
/// `RunPointHook`.
///
/// `LLM_PRUNE_TEST_PAUSE=point:seconds[,point:seconds...]`: at each named point (`RunPointHook` lists them)
/// the process writes "llm-prune test hook: paused at <point>" to stderr and sleeps that long.
enum TestPauses {
    static let hook: RunPointHook? = {
        var points: [String: Double] = [:]
        for item in (ProcessInfo.processInfo.environment["LLM_PRUNE_TEST_PAUSE"] ?? "").split(separator: ",") {
            let parts = item.split(separator: ":")
            if parts.count == 2, let s = Double(parts[1]) { points[String(parts[0])] = s }
        }
        guard !points.isEmpty else { return nil }
        return { point in
            guard let seconds = points[point] else { return }
            let line = Array("llm-prune test hook: paused at \(point)\n".utf8)
            _ = line.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
            Thread.sleep(forTimeInterval: seconds)
        }
    }()

    /// `LLM_PRUNE_TEST_NO_RENAMEAT2=1`: commit as on a file system without RENAME_NOREPLACE.
    static var withoutRenameAt2: Bool { ProcessInfo.processInfo.environment["LLM_PRUNE_TEST_NO_RENAMEAT2"] == "1" }
}
