import Testing
import Tensor

private final class Box {
    let id: Int
    init(_ id: Int) { self.id = id }
}

@Suite struct ReusableTests {
    @Test func lendsTheKeptValueAndMakesOneWhenItDoesNotFit() {
        let r = Reusable<Box>()
        var made = 0
        func make() -> Box { made += 1; return Box(made) }
        let a = r.borrow(make: make) { $0.id }
        let b = r.borrow(make: make) { $0.id }
        #expect(a == 1 && b == 1 && made == 1)
        // Not reusable for this caller: a new one, which is then the one kept.
        let c = r.borrow(make: make, reusable: { $0.id != 1 }) { $0.id }
        let d = r.borrow(make: make) { $0.id }
        #expect(c == 2 && d == 2 && made == 2)
        r.release()
        #expect(r.borrow(make: make) { $0.id } == 3)
    }

    @Test func aNestedBorrowGetsItsOwnValue() {
        // While the kept value is lent out, a second borrower (another thread, or a nested call) must not
        // receive the same one.
        let r = Reusable<Box>()
        var made = 0
        func make() -> Box { made += 1; return Box(made) }
        _ = r.borrow(make: make) { _ in 0 }
        let ids = r.borrow(make: make) { outer in (outer.id, r.borrow(make: make) { $0.id }) }
        #expect(ids.0 == 1 && ids.1 == 2)
    }

    @Test func aValueTypeIsNotCopiedWhenWritten() {
        // The lent array is uniquely referenced inside the body: writing it keeps its storage.
        let r = Reusable<[Float]>()
        let before = r.borrow(make: { [Float](repeating: 0, count: 1000) }) { v in v.withUnsafeBufferPointer { UInt(bitPattern: $0.baseAddress) } }
        let during = r.borrow(make: { [Float](repeating: 0, count: 1000) }) { v -> UInt in
            v[0] = 1
            return v.withUnsafeBufferPointer { UInt(bitPattern: $0.baseAddress) }
        }
        #expect(before == during)
    }
}
