/// The keys (after RoPE) and values of one sequence at every layer, positions 0..<count, in buffers sized
/// once for `capacity` positions: what incremental decoding (`IncrementalDecoder`) attends to instead of
/// running the earlier tokens again. Layer l's keys are (capacity, nkv·hd) row-major, the layout a
/// `BlockContinuation` reads as one prefix of stride `capacity`.
public final class KeyValueCache {
    /// The most positions the cache holds.
    public let capacity: Int
    /// nkv·hd of each layer.
    public let widths: [Int]
    /// Positions filled (the same at every layer once a pass has gone through all of them).
    public private(set) var count = 0
    private let keys: [UnsafeMutablePointer<Float>]
    private let values: [UnsafeMutablePointer<Float>]

    /// Room for `capacity` positions of layers whose key/value widths are `widths`.
    public init(capacity: Int, widths: [Int]) {
        precondition(capacity > 0 && widths.allSatisfy { $0 > 0 }, "KeyValueCache: capacity \(capacity), widths \(widths)")
        self.capacity = capacity
        self.widths = widths
        keys = widths.map { w in
            let p = UnsafeMutablePointer<Float>.allocate(capacity: capacity * w)
            p.initialize(repeating: 0, count: capacity * w)
            return p
        }
        values = widths.map { w in
            let p = UnsafeMutablePointer<Float>.allocate(capacity: capacity * w)
            p.initialize(repeating: 0, count: capacity * w)
            return p
        }
    }

    deinit {
        for (p, w) in zip(keys, widths) { p.deinitialize(count: capacity * w); p.deallocate() }
        for (p, w) in zip(values, widths) { p.deinitialize(count: capacity * w); p.deallocate() }
    }

    /// Bytes the cache holds.
    public var bytes: Int { 2 * capacity * widths.reduce(0, +) * MemoryLayout<Float>.stride }

    /// Layer `layer`'s keys and values, (capacity, width) each; rows 0..<count are filled.
    public func keys(layer: Int) -> UnsafePointer<Float> { UnsafePointer(keys[layer]) }
    public func values(layer: Int) -> UnsafePointer<Float> { UnsafePointer(values[layer]) }

    /// Stores `rows` positions starting at `count` of one layer (the caller then `advance`s once all layers
    /// have theirs).
    public func store(layer: Int, keys k: UnsafeBufferPointer<Float>, values v: UnsafeBufferPointer<Float>, rows: Int) {
        let w = widths[layer]
        precondition(count + rows <= capacity && k.count >= rows * w && v.count >= rows * w,
                     "KeyValueCache: \(rows) rows at \(count) of \(capacity)")
        (keys[layer] + count * w).update(from: k.baseAddress!, count: rows * w)
        (values[layer] + count * w).update(from: v.baseAddress!, count: rows * w)
    }

    /// Marks `rows` more positions as filled at every layer.
    public func advance(by rows: Int) {
        precondition(count + rows <= capacity, "KeyValueCache: \(count) + \(rows) beyond \(capacity)")
        count += rows
    }

    /// Empties the cache (the buffers are kept).
    public func reset() { count = 0 }
}
