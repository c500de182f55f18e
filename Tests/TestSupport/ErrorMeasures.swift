/// Error measures every test target uses when it reduces differences to one number. Each propagates NaN:
/// Swift's `max(a, b)` returns `a` when `b` is NaN and `Sequence.max()` skips a NaN that is not first, so a
/// fold written with them can turn a NaN output into a passing error. A NaN here fails every comparison
/// (`<=`, `<`, `>`, `==`). `scripts/check_tests.sh` flags folds in Tests/ that do not go through these.

/// `max(a, b)`, NaN when either is NaN.
@inlinable
public func maxOrNaN<T: FloatingPoint>(_ a: T, _ b: T) -> T {
    a.isNaN || b.isNaN ? .nan : (a < b ? b : a)
}

/// `min(a, b)`, NaN when either is NaN.
@inlinable
public func minOrNaN<T: FloatingPoint>(_ a: T, _ b: T) -> T {
    a.isNaN || b.isNaN ? .nan : (b < a ? b : a)
}

extension Sequence where Element: FloatingPoint {
    /// The largest element, NaN when any element is NaN, nil when empty.
    @inlinable
    public func maxOrNaN() -> Element? {
        var it = makeIterator()
        guard var m = it.next() else { return nil }
        while let x = it.next() { m = TestSupport.maxOrNaN(m, x) }
        return m
    }

    /// The smallest element, NaN when any element is NaN, nil when empty.
    @inlinable
    public func minOrNaN() -> Element? {
        var it = makeIterator()
        guard var m = it.next() else { return nil }
        while let x = it.next() { m = TestSupport.minOrNaN(m, x) }
        return m
    }
}

/// max |a − b| in double precision; NaN when either side holds a NaN or the counts differ.
public func maxAbsError(_ a: [Float], _ b: [Double]) -> Double {
    guard a.count == b.count else { return .nan }
    var diff = 0.0
    for i in 0..<a.count { diff = maxOrNaN(diff, abs(Double(a[i]) - b[i])) }
    return diff
}

public func maxAbsError(_ a: [Float], _ b: [Float]) -> Double { maxAbsError(a, b.map(Double.init)) }
public func maxAbsError(_ a: [Double], _ b: [Double]) -> Double {
    guard a.count == b.count else { return .nan }
    var diff = 0.0
    for i in 0..<a.count { diff = maxOrNaN(diff, abs(a[i] - b[i])) }
    return diff
}

/// max |a − b| / max |b| (b the reference), in double precision; NaN when either side holds a NaN or the
/// counts differ.
public func relativeError(_ a: [Float], _ b: [Double]) -> Double {
    guard a.count == b.count else { return .nan }
    var diff = 0.0, scale = 0.0
    for i in 0..<a.count {
        diff = maxOrNaN(diff, abs(Double(a[i]) - b[i]))
        scale = maxOrNaN(scale, abs(b[i]))
    }
    return diff / maxOrNaN(scale, 1e-300)
}

public func relativeError(_ a: [Float], _ b: [Float]) -> Double { relativeError(a, b.map(Double.init)) }
