/// Scans of float buffers for values that must stop a run (NaN scores, non-finite weights or inputs):
/// the first offending index, or nil. The buffer is split across the cores; each part is read in runs of
/// 1024 values with 8-wide SIMD compares (no branch per value), and only a run that holds an offending
/// value is searched for its index, so a clean buffer costs one streaming read.
public enum FloatScan {
    /// The index of the first NaN (any sign or payload).
    public static func firstNaN(_ values: UnsafeBufferPointer<Float>) -> Int? {
        firstIndex(values, isNaN: true)
    }

    /// The index of the first NaN or ±infinity.
    public static func firstNonFinite(_ values: UnsafeBufferPointer<Float>) -> Int? {
        firstIndex(values, isNaN: false)
    }

    private static func firstIndex(_ values: UnsafeBufferPointer<Float>, isNaN nanOnly: Bool) -> Int? {
        guard let v = values.baseAddress, values.count > 0 else { return nil }
        let n = values.count
        let chunks = max(1, min(workerCount, n >> 18))
        let per = (n + chunks - 1) / chunks
        var first = [Int](repeating: Int.max, count: chunks)
        first.withUnsafeMutableBufferPointer { fp in
            parallelChunks(chunks) { range in
                for chunk in range {
                    var i = chunk * per
                    let end = min(n, i + per)
                    while i < end {
                        let runEnd = min(end, i + 1024)
                        if runHas(v, i, runEnd, nanOnly: nanOnly),
                           let j = (i..<runEnd).first(where: { nanOnly ? v[$0].isNaN : !v[$0].isFinite }) {
                            fp[chunk] = j
                            break
                        }
                        i = runEnd
                    }
                }
            }
        }
        let i = first.min()!
        return i == Int.max ? nil : i
    }

    /// Whether v[start..<end] holds a NaN (or, with `nanOnly` false, a NaN or infinity): x ≠ x only for
    /// NaN; x − x is 0 for every finite x and NaN for ±infinity and NaN.
    @inline(__always)
    private static func runHas(_ v: UnsafePointer<Float>, _ start: Int, _ end: Int, nanOnly: Bool) -> Bool {
        var bad = SIMDMask<SIMD8<Int32>>(repeating: false)
        var i = start
        let raw = UnsafeRawPointer(v)
        while i + 8 <= end {
            let x = raw.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
            let y = nanOnly ? x : x - x
            bad .|= y .!= y
            i += 8
        }
        var any = bad != SIMDMask(repeating: false)
        while i < end { any = any || (nanOnly ? v[i].isNaN : !v[i].isFinite); i += 1 }
        return any
    }
}
