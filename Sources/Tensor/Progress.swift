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

/// The rate and remaining time of a progress counter, measured from the first sample it was given.
///
/// A rate from the first report alone is noise: a stage's first update may already count a whole chunk
/// (or, on resume, every block done before), so `completed / tiny elapsed` can read millions per second.
/// This estimator keeps the first `(time, completed)` as its base and gives a rate only once at least
/// `minimumInterval` seconds have passed since it and at least one more unit was completed; until then
/// `rate` is nil and the caller prints none. Pure: time comes from the caller (seconds, any origin).
public struct ProgressRate: Sendable, Equatable {
    /// Seconds that must pass after the first sample before a rate is given.
    public var minimumInterval: Double
    /// The first sample (seconds, units completed), nil before any.
    public var base: (time: Double, completed: Int)? { baseTime.map { ($0, baseCompleted) } }
    private var baseTime: Double?
    private var baseCompleted = 0
    private var lastCompleted = 0

    public init(minimumInterval: Double = 1) {
        self.minimumInterval = minimumInterval
    }

    /// Forgets the base (a new stage starts its own measurement).
    public mutating func reset() { baseTime = nil; baseCompleted = 0; lastCompleted = 0 }

    /// Takes a sample: the first one (or one whose count is below the previous sample's, a restarted
    /// count) becomes the base; later ones are measured against it. Returns the units per second since
    /// the base, or nil while less than `minimumInterval` has passed or nothing was completed since it.
    @discardableResult
    public mutating func update(time: Double, completed: Int) -> Double? {
        defer { lastCompleted = completed }
        guard let b = base, completed >= lastCompleted, time >= b.time else {
            baseTime = time
            baseCompleted = completed
            return nil
        }
        return rate(time: time, completed: completed)
    }

    /// The units per second since the base at `(time, completed)`, without recording the sample; nil
    /// before the interval has passed, with no progress since the base, or with no base.
    public func rate(time: Double, completed: Int) -> Double? {
        guard let b = base else { return nil }
        let dt = time - b.time
        let done = completed - b.completed
        guard dt >= minimumInterval, dt > 0, done > 0 else { return nil }
        return Double(done) / dt
    }

    /// Seconds left to reach `total` at `rate`, nil without a positive rate.
    public static func remaining(completed: Int, total: Int, rate: Double?) -> Double? {
        guard let rate, rate > 0, rate.isFinite else { return nil }
        return Double(max(total - completed, 0)) / rate
    }
}
