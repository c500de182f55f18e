import Foundation

/// One value lent to successive callers instead of made afresh by each: buffers of tens of megabytes
/// whose allocation and first touch (page faults) cost a measurable share of a pass that runs many times
/// (an evaluation's windows). `borrow` hands the kept value to one caller at a time; a caller that finds it
/// lent out, or not `reusable` for its shapes, gets a new one from `make`. The value last given back is the
/// one kept, so at most one idle value lives at a time.
public final class Reusable<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var idle: Value?

    public init() {}

    public func borrow<R>(
        make: () throws -> Value, reusable: (Value) -> Bool = { _ in true }, _ body: (inout Value) throws -> R
    ) rethrows -> R {
        var kept: Value? = lock.withLock {
            defer { idle = nil }
            return idle
        }
        // The kept value is moved out of `kept` before the body runs, so that its buffers are uniquely
        // referenced and writing them does not copy them.
        var value: Value
        if let k = kept, reusable(k) { value = k } else { value = try make() }
        kept = nil
        defer {
            let back = value
            lock.withLock { idle = back }
        }
        return try body(&value)
    }

    /// Drops the idle value (its memory is returned at once).
    public func release() {
        lock.withLock { idle = nil }
    }
}
