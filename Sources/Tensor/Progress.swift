/// One progress report from a long-running library operation. The library only reports; the
/// executable decides how to show it (rate, ETA, a line per block).
public struct ProgressUpdate: Sendable {
    /// What is being done, e.g. "eval" or "prune".
    public var stage: String
    /// Units finished so far and in all (tokens, windows, blocks).
    public var completed: Int
    public var total: Int
    /// The unit `completed` counts, e.g. "tokens".
    public var unit: String
    /// Free-form detail, e.g. "block 3/22 down_proj".
    public var detail: String

    public init(stage: String, completed: Int, total: Int, unit: String, detail: String = "") {
        self.stage = stage
        self.completed = completed
        self.total = total
        self.unit = unit
        self.detail = detail
    }
}

/// A callback that receives progress; it may be called from any thread but never concurrently.
public typealias ProgressHandler = (ProgressUpdate) -> Void

/// Called at named points of a long run, in order: `calibrated` (before the first block), `block-<l>`
/// (block l finished and, with an output, its resume state saved), `evaluated`, `exported` (every file
/// written, before the commit), `commit` (inside the commit, a cleanup held off), `committed` (after the
/// final rename). The library never acts at these points itself; a caller may (the command line's test
/// pauses do, so its tests can send signals at chosen moments).
public typealias RunPointHook = (String) -> Void
