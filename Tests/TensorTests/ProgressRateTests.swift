import Testing
import Tensor

private func close(_ x: Double?, _ y: Double) -> Bool {
    guard let x else { return false }
    return abs(x - y) <= 1e-9 * y
}

@Suite struct ProgressRateTests {
    @Test func noRateBeforeTheIntervalThenTheRateSinceTheFirstSample() {
        var r = ProgressRate(minimumInterval: 1)
        // The first update already counts a whole chunk (512 tokens) microseconds after the stage began:
        // the old printer divided 512 by that and printed tens of millions of tokens per second. Now it is
        // the base, with no rate.
        #expect(r.update(time: 0.00002, completed: 512) == nil)
        #expect(r.base?.time == 0.00002 && r.base?.completed == 512)
        // Progress, but before a second has passed: still no rate, and the base stays.
        #expect(r.update(time: 0.5, completed: 1024) == nil)
        #expect(r.update(time: 0.99, completed: 1536) == nil)
        #expect(r.base?.completed == 512)
        // After the interval: (units since the base) / (seconds since the base).
        let rate = r.update(time: 2.00002, completed: 2560)
        #expect(close(rate, 1024))
        let later = r.update(time: 4.00002, completed: 4608)
        #expect(close(later, 1024))
        #expect(close(ProgressRate.remaining(completed: 4608, total: 6656, rate: later), 2))
    }

    @Test func noRateWithoutProgressAfterTheFirstSample() {
        // A resumed prune reports 10 blocks done at once, then nothing for a while: the ten blocks
        // finished before the resume are no rate, and neither is a wait with no new unit.
        var r = ProgressRate(minimumInterval: 1)
        #expect(r.update(time: 0, completed: 10) == nil)
        #expect(r.update(time: 5, completed: 10) == nil)
        #expect(r.update(time: 8, completed: 12) == 0.25)
        #expect(ProgressRate.remaining(completed: 12, total: 22, rate: nil) == nil)
        #expect(ProgressRate.remaining(completed: 12, total: 22, rate: 0.25) == 40)
    }

    @Test func resetAndACountGoingBackwardsStartANewBase() {
        var r = ProgressRate(minimumInterval: 1)
        r.update(time: 0, completed: 0)
        #expect(r.update(time: 2, completed: 100) == 50)
        // A count below the previous one (a restarted pass under the same stage name) becomes the new base.
        #expect(r.update(time: 3, completed: 5) == nil)
        #expect(r.base?.completed == 5)
        #expect(r.update(time: 5, completed: 45) == 20)
        r.reset()
        #expect(r.base == nil)
        #expect(r.rate(time: 100, completed: 1000) == nil)
        #expect(r.update(time: 100, completed: 1000) == nil)
        #expect(r.rate(time: 101, completed: 1100) == 100)
    }
}
