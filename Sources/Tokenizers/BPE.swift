import Foundation
import JSON

/// Merge rules keyed by the pair of ids they join: an open-addressing hash table from
/// `(left << 32) | right` to (rank, id of the merged token).
struct MergeTable {
    private static let empty = UInt64.max
    private(set) var keys: [UInt64]
    private(set) var ranks: [Int32]
    private(set) var newIDs: [Int32]
    private let mask: Int
    private(set) var count = 0

    init(minimumCapacity: Int) {
        var cap = 16
        while cap < 2 * minimumCapacity { cap <<= 1 }
        keys = [UInt64](repeating: MergeTable.empty, count: cap)
        ranks = [Int32](repeating: 0, count: cap)
        newIDs = [Int32](repeating: 0, count: cap)
        mask = cap - 1
    }

    @inline(__always)
    static func key(_ a: Int32, _ b: Int32) -> UInt64 { UInt64(UInt32(bitPattern: a)) << 32 | UInt64(UInt32(bitPattern: b)) }

    @inline(__always)
    private func slot(for key: UInt64) -> Int {
        // Fibonacci hashing spreads the packed pair over the table.
        Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> 32) & mask
    }

    /// Inserts or replaces the rule for (a, b); a later duplicate wins, as in `tokenizers`' HashMap.
    mutating func insert(_ a: Int32, _ b: Int32, rank: Int32, newID: Int32) {
        let k = MergeTable.key(a, b)
        var s = slot(for: k)
        while keys[s] != MergeTable.empty && keys[s] != k { s = (s + 1) & mask }
        if keys[s] == MergeTable.empty { count += 1 }
        keys[s] = k
        ranks[s] = rank
        newIDs[s] = newID
    }

    /// The slot holding the rule for (a, b), or -1.
    @inline(__always)
    func find(_ a: Int32, _ b: Int32) -> Int {
        let k = MergeTable.key(a, b)
        var s = slot(for: k)
        while true {
            let stored = keys[s]
            if stored == k { return s }
            if stored == MergeTable.empty { return -1 }
            s = (s + 1) & mask
        }
    }
}

/// A pending merge: `key` packs (rank << 32 | position); smaller keys merge first, i.e. lowest rank,
/// then leftmost — the order of `tokenizers`' `BinaryHeap<Merge>`.
private struct HeapEntry {
    var key: UInt64
    var newID: Int32
}

/// Binary min-heap on `HeapEntry.key`.
private struct MergeHeap {
    var items: [HeapEntry] = []

    mutating func heapify() {
        if items.count < 2 { return }
        var i = items.count / 2 - 1
        while i >= 0 { siftDown(i); i -= 1 }
    }

    mutating func push(_ e: HeapEntry) {
        items.append(e)
        var i = items.count - 1
        items.withUnsafeMutableBufferPointer { h in
            while i > 0 {
                let parent = (i - 1) / 2
                if h[parent].key <= e.key { break }
                h[i] = h[parent]
                i = parent
            }
            h[i] = e
        }
    }

    mutating func pop() -> HeapEntry? {
        guard let last = items.popLast() else { return nil }
        if items.isEmpty { return last }
        let top = items[0]
        items[0] = last
        siftDown(0)
        return top
    }

    private mutating func siftDown(_ start: Int) {
        items.withUnsafeMutableBufferPointer { h in
            let n = h.count
            var i = start
            let e = h[i]
            while true {
                var child = 2 * i + 1
                if child >= n { break }
                if child + 1 < n, h[child + 1].key < h[child].key { child += 1 }
                if h[child].key >= e.key { break }
                h[i] = h[child]
                i = child
            }
            h[i] = e
        }
    }
}

/// Byte-pair encoding (`"type": "BPE"`): each word starts as one symbol per scalar (or its UTF-8 bytes
/// as `<0xAB>` tokens under byte fallback, or `unk_token`), then adjacent pairs are merged, lowest
/// merge rank first and leftmost among equals, until no rule applies. Words are cached.
public final class BPEModel: @unchecked Sendable {
    /// Vocabulary keyed by the token's exact UTF-8 bytes.
    let vocab: [[UInt8]: Int32]
    let idToToken: [Int32: String]
    /// Ids of single-scalar tokens, keyed by scalar value: the fast path of the initial split.
    let scalarIDs: [UInt32: Int32]
    /// Id of `<0xAB>` for each byte, or -1.
    let byteIDs: [Int32]
    let merges: MergeTable
    public let unknownTokenID: Int?
    public let fuseUnknown: Bool
    public let byteFallback: Bool
    public let ignoreMerges: Bool
    let continuingSubwordPrefix: [Unicode.Scalar]?
    let endOfWordSuffix: [Unicode.Scalar]?

    /// For each id, the first and last scalar value of its token (0 for ids with no token).
    let firstScalar: [UInt32]
    let lastScalar: [UInt32]
    /// Every pair of adjacent scalars inside some vocabulary token, packed as (a << 32 | b).
    let joinableBigrams: Set<UInt64>

    private let cacheLock = NSLock()
    private var cache: [[Unicode.Scalar]: [Int32]] = [:]
    /// Merged ids of independent pieces of long words, keyed by their initial symbols.
    private var pieceCache: [[Int32]: [Int32]] = [:]
    private static let cacheCapacity = 200_000
    /// Longer words are not cached (`tokenizers` uses the same cut-off, in bytes).
    private static let maxCachedWordLength = 256

    /// Number of entries in the model's vocabulary.
    public var vocabularyCount: Int { vocab.count }

    /// The exclusive bound on token ids for a vocabulary of `entries` entries (model vocabulary plus added
    /// tokens): ids may leave gaps, but not more than 2^20 beyond the entry count, and never 2^24 or more.
    /// Id-indexed tables are sized by the largest id, so a hostile id of 2^31 − 1 must not size them.
    public static func idBound(entries: Int) -> Int { min(1 << 24, entries + (1 << 20)) }

    /// Builds the model from a `tokenizer.json` `"model"` object.
    public init(json: JSONValue) throws {
        let c = try StageConfig(json, stage: "model")
        if c.has("type") {
            let t = try c.type()
            guard t == "BPE" else { throw TokenizerError.unsupported("model", t) }
        }
        if let d = c.json["dropout"]?.doubleValue, d > 0 {
            throw TokenizerError.invalid("BPE model", "dropout \(d) is not supported (encoding would be random)")
        }
        guard let vocabJSON = c.json["vocab"]?.objectValue else { throw TokenizerError.invalid("BPE model", "missing object \"vocab\"") }
        var vocab: [[UInt8]: Int32] = [:]
        var idToToken: [Int32: String] = [:]
        var scalarIDs: [UInt32: Int32] = [:]
        vocab.reserveCapacity(vocabJSON.count)
        let idBound = BPEModel.idBound(entries: vocabJSON.count)
        for (token, value) in vocabJSON {
            guard let id = value.intValue, id >= 0 else {
                throw TokenizerError.invalid("BPE model", "vocab entry \"\(token)\" has no valid id")
            }
            // Tables indexed by id are sized by the largest id: bound it by the entries present.
            guard id < idBound else {
                throw TokenizerError.invalid("BPE model", "vocab entry \"\(token)\" has id \(id), beyond the \(idBound) ids "
                                             + "\(vocabJSON.count) entries can plausibly span")
            }
            let id32 = Int32(id)
            vocab[Array(token.utf8)] = id32
            idToToken[id32] = token
            let scalars = token.unicodeScalars
            if scalars.count == 1, let s = scalars.first { scalarIDs[s.value] = id32 }
        }
        self.vocab = vocab
        self.idToToken = idToToken
        self.scalarIDs = scalarIDs
        let idCount = (idToToken.keys.max().map { Int($0) } ?? -1) + 1
        var firstScalar = [UInt32](repeating: 0, count: idCount)
        var lastScalar = [UInt32](repeating: 0, count: idCount)
        var bigrams = Set<UInt64>()
        for (id, token) in idToToken {
            var previous: UInt32?
            for s in token.unicodeScalars {
                if let p = previous { bigrams.insert(UInt64(p) << 32 | UInt64(s.value)) }
                else { firstScalar[Int(id)] = s.value }
                previous = s.value
            }
            lastScalar[Int(id)] = previous ?? 0
        }
        self.firstScalar = firstScalar
        self.lastScalar = lastScalar
        joinableBigrams = bigrams

        var byteIDs = [Int32](repeating: -1, count: 256)
        let hex = Array("0123456789ABCDEF".utf8)
        for b in 0..<256 {
            // `tokenizers` formats the byte as `<0x{:02X}>`.
            let name: [UInt8] = Array("<0x".utf8) + [hex[b >> 4], hex[b & 15], UInt8(ascii: ">")]
            byteIDs[b] = vocab[name] ?? -1
        }
        self.byteIDs = byteIDs

        unknownTokenID = try c.optionalString("unk_token").map { unk in
            guard let id = vocab[Array(unk.utf8)] else {
                throw TokenizerError.invalid("BPE model", "unk_token \"\(unk)\" is not in the vocabulary")
            }
            return Int(id)
        }
        fuseUnknown = try c.bool("fuse_unk", default: false)
        byteFallback = try c.bool("byte_fallback", default: false)
        ignoreMerges = try c.bool("ignore_merges", default: false)
        // An empty prefix or suffix (transformers 5 writes "") is no prefix or suffix; nil keeps the fast paths.
        let prefix = try c.optionalString("continuing_subword_prefix").flatMap { $0.isEmpty ? nil : Array($0.unicodeScalars) }
        continuingSubwordPrefix = prefix
        endOfWordSuffix = try c.optionalString("end_of_word_suffix").flatMap { $0.isEmpty ? nil : Array($0.unicodeScalars) }

        // An absent or null "merges" means none; anything else but an array is a broken file (Hugging Face
        // refuses it too), not "no merges".
        let mergeList: [JSONValue]
        switch c.json["merges"] {
        case nil, .null?: mergeList = []
        case .array(let list)?: mergeList = list
        case let other?:
            throw TokenizerError.invalid("BPE model", "\"merges\" is \(other.rendered(limit: 40)), not an array")
        }
        var table = MergeTable(minimumCapacity: mergeList.count)
        let prefixBytes = prefix.map { utf8Bytes($0) } ?? []
        for (rank, m) in mergeList.enumerated() {
            // Two forms: "a b" (older files) or ["a", "b"].
            let pair: [String]
            if let s = m.stringValue {
                pair = s.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
            } else if let a = m.arrayValue {
                pair = a.compactMap { $0.stringValue }
                if pair.count != a.count { throw TokenizerError.invalid("BPE model", "merge \(rank) is not a pair of strings") }
            } else {
                throw TokenizerError.invalid("BPE model", "merge \(rank) is neither \"a b\" nor [\"a\", \"b\"]")
            }
            guard pair.count == 2 else { throw TokenizerError.invalid("BPE model", "merge \(rank) is not a pair: \(m)") }
            let a = Array(pair[0].utf8), b = Array(pair[1].utf8)
            guard let ia = vocab[a] else { throw TokenizerError.invalid("BPE model", "merge \(rank) token \"\(pair[0])\" is not in the vocabulary") }
            guard let ib = vocab[b] else { throw TokenizerError.invalid("BPE model", "merge \(rank) token \"\(pair[1])\" is not in the vocabulary") }
            // The right part loses its continuing-subword prefix when merged.
            let right = (!prefixBytes.isEmpty && b.starts(with: prefixBytes)) ? Array(b[prefixBytes.count...]) : b
            guard let merged = vocab[a + right] else {
                throw TokenizerError.invalid("BPE model", "merge \(rank) result \"\(String(decoding: a + right, as: UTF8.self))\" is not in the vocabulary")
            }
            table.insert(ia, ib, rank: Int32(rank), newID: merged)
        }
        merges = table
    }

    /// The id of a token of the model's vocabulary (exact scalars).
    public func id(for token: String) -> Int? { vocab[Array(token.utf8)].map(Int.init) }

    /// The token with this id in the model's vocabulary.
    public func token(for id: Int) -> String? {
        guard id >= 0, id <= Int(Int32.max) else { return nil }
        return idToToken[Int32(id)]
    }

    /// Ids of one word.
    public func tokenize(_ word: [Unicode.Scalar]) -> [Int] {
        var out: [Int] = []
        tokenize(word, into: &out)
        return out
    }

    /// Appends the ids of one word to `out`.
    public func tokenize(_ word: [Unicode.Scalar], into out: inout [Int]) {
        if word.isEmpty { return }
        if ignoreMerges, let id = vocab[utf8Bytes(word)] {
            out.append(Int(id))
            return
        }
        let cacheable = word.count < BPEModel.maxCachedWordLength
        if cacheable {
            cacheLock.lock()
            let hit = cache[word]
            cacheLock.unlock()
            if let hit {
                for id in hit { out.append(Int(id)) }
                return
            }
        }
        var ids = initialSymbols(word)
        if !cacheable && continuingSubwordPrefix == nil && endOfWordSuffix == nil {
            // A long word (the whole text, for legacy LLaMA files without a pre-tokenizer): merge its
            // independent pieces separately, which also lets repeated pieces hit the cache.
            mergePieces(ids, into: &out)
            return
        }
        mergeAll(&ids)
        for id in ids { out.append(Int(id)) }
        if cacheable {
            cacheLock.lock()
            if cache.count < BPEModel.cacheCapacity { cache[word] = ids }
            cacheLock.unlock()
        }
    }

    /// Ids of one word by the plain algorithm: initial symbols, then one merge loop over the whole word,
    /// with no cache and no splitting into independent pieces. Same result as `tokenize`; slower on
    /// long words. Exposed so tests can check the fast path against it.
    public func tokenizeWholeWord(_ word: [Unicode.Scalar]) -> [Int] {
        if word.isEmpty { return [] }
        if ignoreMerges, let id = vocab[utf8Bytes(word)] { return [Int(id)] }
        var ids = initialSymbols(word)
        mergeAll(&ids)
        return ids.map(Int.init)
    }

    /// One symbol per scalar: its token, else its bytes' `<0xAB>` tokens (byte fallback), else the
    /// unknown token (consecutive unknowns fused into one when `fuse_unk`), else nothing.
    func initialSymbols(_ word: [Unicode.Scalar]) -> [Int32] {
        var ids: [Int32] = []
        ids.reserveCapacity(word.count)
        var pendingUnknown = false
        let unk = unknownTokenID.map(Int32.init)
        let plain = continuingSubwordPrefix == nil && endOfWordSuffix == nil
        var bytes: [UInt8] = []
        for (i, s) in word.enumerated() {
            var found: Int32?
            if plain {
                found = scalarIDs[s.value]
            } else {
                var piece: [Unicode.Scalar] = []
                if i > 0, let p = continuingSubwordPrefix { piece += p }
                piece.append(s)
                if i == word.count - 1, let suf = endOfWordSuffix { piece += suf }
                bytes = utf8Bytes(piece)
                found = vocab[bytes]
            }
            if let id = found {
                if pendingUnknown, let unk { ids.append(unk) }
                pendingUnknown = false
                ids.append(id)
                continue
            }
            if byteFallback {
                if plain { bytes.removeAll(keepingCapacity: true); appendUTF8(s, to: &bytes) }
                if bytes.allSatisfy({ byteIDs[Int($0)] >= 0 }) {
                    // As in `tokenizers`, a pending unknown is not flushed here: it stays pending
                    // and is emitted after these bytes.
                    for b in bytes { ids.append(byteIDs[Int(b)]) }
                    continue
                }
            }
            guard let unk else { continue }
            if !pendingUnknown {
                pendingUnknown = true
            } else if !fuseUnknown {
                ids.append(unk)
            }
        }
        if pendingUnknown, let unk { ids.append(unk) }
        return ids
    }

    /// Merges `symbols` piece by piece. A merge joining symbols x and y yields a vocabulary token whose
    /// text contains the last scalar of x followed by the first scalar of y (without a continuing-subword
    /// prefix, a merged token's text is exactly its parts' texts concatenated). So where no vocabulary
    /// token contains that scalar pair, no merge ever crosses the boundary, and since merges elsewhere
    /// never look across it either, merging the pieces separately gives the same ids as the whole word.
    func mergePieces(_ symbols: [Int32], into out: inout [Int]) {
        var start = 0
        var batch: [[Int32]] = []
        func flush(_ piece: ArraySlice<Int32>) {
            let key = Array(piece)
            if key.count == 1 { out.append(Int(key[0])); return }
            cacheLock.lock()
            let hit = pieceCache[key]
            cacheLock.unlock()
            if let hit {
                for id in hit { out.append(Int(id)) }
                return
            }
            var merged = key
            mergeAll(&merged)
            for id in merged { out.append(Int(id)) }
            if key.count < BPEModel.maxCachedWordLength { batch.append(key); batch.append(merged) }
        }
        for k in 1..<max(1, symbols.count) {
            let a = symbols[k - 1], b = symbols[k]
            let left = Int(a) < lastScalar.count ? lastScalar[Int(a)] : 0
            let right = Int(b) < firstScalar.count ? firstScalar[Int(b)] : 0
            if !joinableBigrams.contains(UInt64(left) << 32 | UInt64(right)) {
                flush(symbols[start..<k])
                start = k
            }
        }
        if start < symbols.count { flush(symbols[start...]) }
        if !batch.isEmpty {
            cacheLock.lock()
            var i = 0
            while i + 1 < batch.count, pieceCache.count < BPEModel.cacheCapacity {
                pieceCache[batch[i]] = batch[i + 1]
                i += 2
            }
            cacheLock.unlock()
        }
    }

    /// Applies merges to `ids` in place.
    func mergeAll(_ ids: inout [Int32]) {
        let n = ids.count
        if n < 2 { return }
        var next = [Int32](unsafeUninitializedCapacity: n) { buf, count in
            for i in 0..<n { buf[i] = Int32(i + 1) }
            buf[n - 1] = -1
            count = n
        }
        var prev = [Int32](unsafeUninitializedCapacity: n) { buf, count in
            for i in 0..<n { buf[i] = Int32(i - 1) }
            count = n
        }
        var alive = [Bool](repeating: true, count: n)
        var heap = MergeHeap()
        let table = merges
        table.ranks.withUnsafeBufferPointer { ranks in
        table.newIDs.withUnsafeBufferPointer { newIDs in
        ids.withUnsafeMutableBufferPointer { c in
        next.withUnsafeMutableBufferPointer { next in
        prev.withUnsafeMutableBufferPointer { prev in
        alive.withUnsafeMutableBufferPointer { alive in
            heap.items.reserveCapacity(n)
            for i in 0..<(n - 1) {
                let s = table.find(c[i], c[i + 1])
                if s >= 0 { heap.items.append(HeapEntry(key: UInt64(ranks[s]) << 32 | UInt64(i), newID: newIDs[s])) }
            }
            heap.heapify()
            while let top = heap.pop() {
                let pos = Int(top.key & 0xFFFF_FFFF)
                if !alive[pos] { continue }
                let right = Int(next[pos])
                if right < 0 { continue }
                // An entry is stale if the pair at `pos` no longer merges into the same token.
                let s = table.find(c[pos], c[right])
                if s < 0 || newIDs[s] != top.newID { continue }
                c[pos] = top.newID
                alive[right] = false
                let after = next[right]
                next[pos] = after
                if after >= 0 { prev[Int(after)] = Int32(pos) }
                let before = Int(prev[pos])
                if before >= 0 {
                    let sp = table.find(c[before], c[pos])
                    if sp >= 0 { heap.push(HeapEntry(key: UInt64(ranks[sp]) << 32 | UInt64(before), newID: newIDs[sp])) }
                }
                if after >= 0 {
                    let sn = table.find(c[pos], c[Int(after)])
                    if sn >= 0 { heap.push(HeapEntry(key: UInt64(ranks[sn]) << 32 | UInt64(pos), newID: newIDs[sn])) }
                }
            }
        }}}}}}
        var k = 0
        for i in 0..<n where alive[i] {
            ids[k] = ids[i]
            k += 1
        }
        ids.removeLast(n - k)
    }
}
