import CBLASRuntime
import Dispatch
import Foundation

/// How many worker threads the kernels split their work across (the machine's active cores).
public let workerCount: Int = max(1, ProcessInfo.processInfo.activeProcessorCount)

/// Runs `body(i)` for every i in 0..<n, spread over the cores in contiguous chunks. GEMMs inside a
/// dispatched chunk run unsplit on its worker (see `BLAS.singleThreaded`).
/// Small `n` runs inline: dispatching costs more than it saves below a few thousand flops.
public func parallelFor(_ n: Int, minimumPerThread: Int = 1, _ body: (Int) -> Void) {
    if n <= 0 { return }
    let threads = min(workerCount, max(1, n / max(1, minimumPerThread)))
    if threads == 1 {
        for i in 0..<n { body(i) }
        return
    }
    let chunk = (n + threads - 1) / threads
    withoutActuallyEscaping(body) { body in
        DispatchQueue.concurrentPerform(iterations: threads) { t in
            let start = t * chunk
            let end = min(n, start + chunk)
            if start < end {
                llmprune_serial_enter()
                for i in start..<end { body(i) }
                llmprune_serial_leave()
            }
        }
    }
}

/// Runs `body(range)` for contiguous chunks covering 0..<n, one chunk per worker.
public func parallelChunks(_ n: Int, minimumPerThread: Int = 1, _ body: (Range<Int>) -> Void) {
    if n <= 0 { return }
    let threads = min(workerCount, max(1, n / max(1, minimumPerThread)))
    if threads == 1 { body(0..<n); return }
    let chunk = (n + threads - 1) / threads
    withoutActuallyEscaping(body) { body in
        DispatchQueue.concurrentPerform(iterations: threads) { t in
            let start = t * chunk
            let end = min(n, start + chunk)
            if start < end {
                llmprune_serial_enter()
                body(start..<end)
                llmprune_serial_leave()
            }
        }
    }
}
