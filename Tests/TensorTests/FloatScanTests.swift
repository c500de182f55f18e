import Testing
import Tensor

/// The scans against the plain definition (the lowest index whose value is NaN, or not finite): none,
/// one in the first or last run, a late one and an early one (the early one wins, across the cores'
/// parts), NaN with a sign or payload, infinities, in buffers with and without a SIMD tail, below and above
/// the size where the scan is split across the cores.
@Suite struct FloatScanTests {
    @Test(arguments: [1, 5, 1023, 1025, 300_000, (1 << 19) + 77])
    func scansFindTheLowestOffendingIndex(count: Int) {
        func nanIndex(_ v: [Float]) -> Int? { v.firstIndex(where: { $0.isNaN }) }
        func nonFiniteIndex(_ v: [Float]) -> Int? { v.firstIndex(where: { !$0.isFinite }) }
        let clean = (0..<count).map { Float($0 % 7) - 3 + Float.ulpOfOne }
        let cases: [([Int], Float)] = [
            ([], 0), ([count - 1], .nan), ([0], -.nan), ([count - 1, count / 2], Float(nan: 0x1234, signaling: false)),
            ([count - 1, count / 2, min(count - 1, 1024)], .nan), ([count / 3], .infinity), ([count - 1], -.infinity),
            ([max(0, count - 9)], .greatestFiniteMagnitude),
        ]
        for (positions, value) in cases {
            var v = clean
            for p in positions { v[p] = value }
            // A NaN after an infinity: firstNonFinite names the infinity, firstNaN the NaN.
            if value.isInfinite, count > 2 { v[count - 1] = .nan }
            let label = "\(count) values, \(value) at \(positions)"
            #expect(v.withUnsafeBufferPointer { FloatScan.firstNaN($0) } == nanIndex(v), "\(label)")
            #expect(v.withUnsafeBufferPointer { FloatScan.firstNonFinite($0) } == nonFiniteIndex(v), "\(label)")
        }
        #expect([Float]().withUnsafeBufferPointer { FloatScan.firstNaN($0) } == nil)
    }
}
