import Foundation
import Testing
import Datasets

/// Text sources that never end or are too large (issue 11): reading stops at a bound with an error.
@Suite struct BoundedReadingTests {
    @Test func aDeviceIsRefusedWithoutReading() throws {
        for read in [{ _ = try TextReader.plainText(at: URL(fileURLWithPath: "/dev/zero")) },
                     { _ = try TextReader.jsonLines(at: URL(fileURLWithPath: "/dev/zero")) },
                     { _ = try TextReader.wikiTextRows(at: URL(fileURLWithPath: "/dev/zero")) }] as [() throws -> Void] {
            let e = datasetError(read)
            #expect(e?.kind == "unreadable" && e?.message == "/dev/zero: is not a regular file or a pipe", "\(String(describing: e))")
        }
    }

    @Test func aFileLargerThanTheLimitIsRefusedUnread() throws {
        let dir = try TempDir()
        let url = try dir.write("big.txt", String(repeating: "x", count: 5000))
        let e = datasetError { try TextReader.plainText(at: url, maxBytes: 4096) }
        #expect(e?.kind == "tooLarge" && e?.message == "\(url.path): is 5,000 bytes, more than the 4,096 accepted")
        #expect(try TextReader.plainText(at: url, maxBytes: 5000).count == 5000)
    }

    /// A pipe that never ends (a writer feeding zeros forever) stops at the bound.
    @Test func aPipeThatNeverEndsStopsAtTheLimit() throws {
        let dir = try TempDir()
        let fifo = dir.file("endless")
        #expect(mkfifo(fifo.path, 0o600) == 0)
        let writer = Thread {
            let fd = open(fifo.path, O_WRONLY)
            guard fd >= 0 else { return }
            let zeros = [UInt8](repeating: 0, count: 1 << 16)
            // Writes until the reader closes its end (EPIPE), which ends the thread.
            signal(SIGPIPE, SIG_IGN)
            while zeros.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) > 0 {}
            close(fd)
        }
        writer.start()
        let e = datasetError { try TextReader.jsonLines(at: fifo, maxBytes: 3 << 20) }
        #expect(e?.kind == "tooLarge" && e?.message == "\(fifo.path): holds more than the 3,145,728 bytes accepted", "\(String(describing: e))")
    }

    /// A small gzip file whose content exceeds the bound (a gzip bomb in miniature).
    @Test func decompressedContentIsBoundedToo() throws {
        let dir = try TempDir()
        let plain = try dir.write("zeros.txt", String(repeating: "a", count: 2 << 20))
        let gz = try dir.write("zeros.txt.gz", bytes: try gzipWithTool(plain))
        let e = datasetError { try TextReader.plainText(at: gz, maxBytes: 1 << 20) }
        #expect(e?.kind == "tooLarge" && e?.message == "\(gz.path): holds more than the 1,048,576 bytes accepted (decompressed)")
    }
}
