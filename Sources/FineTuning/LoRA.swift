import Foundation
import Llama
import Tensor

/// How the low-rank update meets the pruned weights.
public enum LoRAMode: String, CaseIterable, Sendable {
    /// The update is multiplied by the layer's mask M (W ≠ 0) in the forward pass: the model trained is
    /// W + s·(BA ⊙ M), exactly the model shipped, and the merge keeps every zero.
    case masked
    /// PEFT's plain adapter, W + s·BA: dense once merged; the report also shows the merged-then-re-masked model.
    case plain
}

/// LoRA settings (PEFT's names): rank r, alpha (scaling s = alpha / r), dropout on the adapter's input,
/// the adapted linears, the mode, and the seed of A's initialization and of the dropout masks.
public struct LoRAOptions: Sendable, Equatable {
    public var rank: Int
    public var alpha: Double
    public var dropout: Double
    public var targets: [LinearKind]
    public var mode: LoRAMode
    public var seed: UInt64

    public init(rank: Int = 8, alpha: Double = 16, dropout: Double = 0.05, targets: [LinearKind] = [.q, .v],
                mode: LoRAMode = .masked, seed: UInt64 = 0) {
        self.rank = rank; self.alpha = alpha; self.dropout = dropout
        self.targets = LinearKind.allCases.filter { targets.contains($0) }
        self.mode = mode; self.seed = seed
    }

    /// s = alpha / r (PEFT without rsLoRA).
    public var scaling: Float { Float(alpha / Double(rank)) }

    public func validate() throws {
        guard rank > 0 else { throw FineTuningError("--lora-rank must be positive, got \(rank)") }
        guard alpha.isFinite, alpha > 0 else { throw FineTuningError("--lora-alpha must be positive, got \(alpha)") }
        guard dropout >= 0, dropout < 1 else { throw FineTuningError("--lora-dropout must lie in [0, 1), got \(dropout)") }
        guard !targets.isEmpty else { throw FineTuningError("--lora-targets names no layer") }
    }
}

/// An error of fine-tuning, one line.
public struct FineTuningError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// The LoRA adapters of a whole model: for each block and target linear, A (r, in) and B (out, r),
/// their gradients, and the block hooks that add s·B·A·drop(x) (plain) or s·((BA) ⊙ M)·drop(x) (masked)
/// to the frozen linear's output and differentiate it.
///
/// A is initialized as PEFT does — `kaiming_uniform_(a=√5)`, i.e. U(−1/√in, 1/√in) — from a
/// `SeededGenerator(seed)` in the order (layer, target) and row-major within A; B starts at zero, so the
/// adapted model starts equal to the base. Dropout masks are drawn per (step, micro-batch, layer,
/// target) from the seed, so a recomputed block forward sees the same mask as the first one.
public final class LoRAAdapters {
    public let options: LoRAOptions
    public let configuration: LlamaConfiguration
    /// [layer][target index]: A (r, in), B (out, r).
    public var a: [[Tensor]]
    public var b: [[Tensor]]
    public var gradA: [[Tensor]]
    public var gradB: [[Tensor]]
    /// The frozen base weights (the mask M is where they are non-zero).
    public let base: [DecoderBlockWeights]
    /// Masked mode: (BA) ⊙ M per layer and target, rebuilt by `refresh()` after every parameter change.
    private var delta: [[Tensor]]
    /// The dropout stream of the current micro-batch (set by the trainer).
    public var dropoutKey: (step: Int, micro: Int) = (0, 0)
    /// Dropout is on while training; evaluation turns it off.
    public var training = true
    private var hooks: [LayerHook] = []
    /// Where the adapters' products run (the blocks' backend).
    public let backend: any ComputeBackend

    public init(options: LoRAOptions, configuration c: LlamaConfiguration, base: [DecoderBlockWeights],
                backend: any ComputeBackend = CPUBackend()) throws {
        try options.validate()
        self.options = options
        self.backend = backend
        configuration = c
        self.base = base
        var rng = SeededGenerator(seed: options.seed)
        var a: [[Tensor]] = [], b: [[Tensor]] = []
        for _ in 0..<c.numHiddenLayers {
            var la: [Tensor] = [], lb: [Tensor] = []
            for kind in options.targets {
                let shape = kind.shape(c), out = shape[0], inp = shape[1]
                let bound = 1 / Double(inp).squareRoot()
                la.append(Tensor(shape: [options.rank, inp],
                                 data: (0..<(options.rank * inp)).map { _ in Float((rng.nextDouble() * 2 - 1) * bound) }))
                lb.append(Tensor.zeros([out, options.rank]))
            }
            a.append(la); b.append(lb)
        }
        self.a = a
        self.b = b
        gradA = a.map { $0.map { Tensor.zeros($0.shape) } }
        gradB = b.map { $0.map { Tensor.zeros($0.shape) } }
        delta = options.mode == .masked ? b.map { $0.map { Tensor.zeros([$0.shape[0], options.rank == 0 ? 0 : 1]) } } : []
        hooks = (0..<c.numHiddenLayers).map { LayerHook(owner: nil, layer: $0) }
        for h in hooks { h.owner = self }
        refresh()
    }

    /// The index of `kind` among the targets, nil when it is not adapted.
    public func target(_ kind: LinearKind) -> Int? { options.targets.firstIndex(of: kind) }

    /// The hook of block `layer` for `DecoderBlock.forward/backward`.
    public func adapter(layer: Int) -> BlockAdapter { hooks[layer] }

    /// Every trainable tensor in PEFT's `named_parameters` order: per layer, per target, A then B.
    public var parameterCount: Int { a.joined().reduce(0) { $0 + $1.count } + b.joined().reduce(0) { $0 + $1.count } }

    /// Zeroes the accumulated gradients.
    public func zeroGradients() {
        for l in gradA.indices {
            for t in gradA[l].indices {
                gradA[l][t].data.withUnsafeMutableBufferPointer { $0.update(repeating: 0) }
                gradB[l][t].data.withUnsafeMutableBufferPointer { $0.update(repeating: 0) }
            }
        }
    }

    /// Rebuilds the masked deltas (BA) ⊙ M after A or B changed (masked mode; a no-op in plain mode).
    public func refresh() {
        guard options.mode == .masked else { return }
        for l in 0..<configuration.numHiddenLayers {
            for (t, kind) in options.targets.enumerated() {
                delta[l][t] = maskedProduct(layer: l, target: t, kind: kind)
            }
        }
    }

    /// (BA) ⊙ M (out, in) in masked mode, BA in plain mode.
    func maskedProduct(layer l: Int, target t: Int, kind: LinearKind) -> Tensor {
        var d = b[l][t].matmul(a[l][t])
        if options.mode == .masked {
            let w = base[l][kind]
            d.data.withUnsafeMutableBufferPointer { dp in
                w.data.withUnsafeBufferPointer { wp in
                    for i in 0..<dp.count where wp[i] == 0 { dp[i] = 0 }
                }
            }
        }
        return d
    }

    /// The merged block weights: W + s·(BA ⊙ M) (masked) or W + s·BA (plain), and with `remask` the
    /// plain merge multiplied by M again (the public recipe's way back to the pruned pattern).
    public func mergedBlocks(remask: Bool = false) -> [DecoderBlockWeights] {
        let s = options.scaling
        return base.enumerated().map { l, block in
            var w = block
            for (t, kind) in options.targets.enumerated() {
                let d = maskedProduct(layer: l, target: t, kind: kind)
                let original = block[kind]
                w[kind].data.withUnsafeMutableBufferPointer { wp in
                    d.data.withUnsafeBufferPointer { dp in
                        original.data.withUnsafeBufferPointer { op in
                            for i in 0..<wp.count {
                                wp[i] = (remask && op[i] == 0) ? 0 : op[i] + s * dp[i]
                            }
                        }
                    }
                }
            }
            return w
        }
    }

    // MARK: The block hook

    /// Per-target scratch, sized for the largest batch seen: the dropout keep-factors (rows, in), the
    /// dropped input (rows, in), and in plain mode t = drop(x)·Aᵀ (rows, r).
    final class LayerHook: BlockAdapter {
        weak var owner: LoRAAdapters?
        let layer: Int
        init(owner: LoRAAdapters?, layer: Int) { self.owner = owner; self.layer = layer }
        func adapts(_ kind: LinearKind) -> Bool { owner?.target(kind) != nil }
        func forward(_ kind: LinearKind, out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, rows: Int) {
            owner!.forward(layer: layer, kind: kind, out: out, inp: inp, rows: rows)
        }
        func backward(_ kind: LinearKind, dy: UnsafePointer<Float>, inp: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>?, rows: Int) {
            owner!.backward(layer: layer, kind: kind, dy: dy, inp: inp, dx: dx, rows: rows)
        }
    }

    private var keep: [[Float]] = Array(repeating: [], count: 7)
    private var dropped: [[Float]] = Array(repeating: [], count: 7)
    private var lowRank: [[Float]] = Array(repeating: [], count: 7)
    private var work: [[Float]] = Array(repeating: [], count: 7)

    private var dropoutActive: Bool { training && options.dropout > 0 }

    /// Fills keep[t] with 0 or 1/(1 − p) for (rows, in) from the (step, micro, layer, target) stream, and
    /// dropped[t] = inp ⊙ keep[t].
    private func prepareInput(_ t: Int, layer: Int, inp: UnsafePointer<Float>, count n: Int) {
        if dropped[t].count < n { dropped[t] = [Float](repeating: 0, count: n); keep[t] = dropped[t] }
        var key = options.seed
        for v in [UInt64(dropoutKey.step), UInt64(dropoutKey.micro), UInt64(layer), UInt64(t)] {
            key = (key ^ v) &* 0x9E37_79B9_7F4A_7C15 &+ 0x632B_E59B_D9B4_E019
        }
        var rng = SeededGenerator(seed: key)
        let p = options.dropout, factor = Float(1 / (1 - p))
        keep[t].withUnsafeMutableBufferPointer { kp in
            dropped[t].withUnsafeMutableBufferPointer { dp in
                for i in 0..<n {
                    let k: Float = rng.nextDouble() < p ? 0 : factor
                    kp[i] = k
                    dp[i] = inp[i] * k
                }
            }
        }
    }

    func forward(layer l: Int, kind: LinearKind, out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, rows: Int) {
        guard let t = target(kind) else { return }
        let shape = kind.shape(configuration), o = shape[0], i = shape[1], r = options.rank, s = options.scaling
        if dropoutActive { prepareInput(t, layer: l, inp: inp, count: rows * i) }
        let run = { (x: UnsafePointer<Float>) in
            switch self.options.mode {
            case .masked:
                // out += s · x · ((BA) ⊙ M)ᵀ
                self.delta[l][t].data.withUnsafeBufferPointer { dp in
                    self.backend.gemm(transB: true, m: rows, n: o, k: i, alpha: s, a: x, b: dp.baseAddress!, beta: 1, c: out)
                }
            case .plain:
                // t = x · Aᵀ (rows, r); out += s · t · Bᵀ
                if self.lowRank[t].count < rows * r { self.lowRank[t] = [Float](repeating: 0, count: rows * r) }
                self.a[l][t].data.withUnsafeBufferPointer { ap in
                    self.b[l][t].data.withUnsafeBufferPointer { bp in
                        self.lowRank[t].withUnsafeMutableBufferPointer { tp in
                            self.backend.gemm(transB: true, m: rows, n: r, k: i, a: x, b: ap.baseAddress!, c: tp.baseAddress!)
                            self.backend.gemm(transB: true, m: rows, n: o, k: r, alpha: s, a: tp.baseAddress!, b: bp.baseAddress!, beta: 1, c: out)
                        }
                    }
                }
            }
        }
        if dropoutActive { dropped[t].withUnsafeBufferPointer { run($0.baseAddress!) } } else { run(inp) }
    }

    func backward(layer l: Int, kind: LinearKind, dy: UnsafePointer<Float>, inp: UnsafePointer<Float>,
                  dx: UnsafeMutablePointer<Float>?, rows: Int) {
        guard let t = target(kind) else { return }
        let shape = kind.shape(configuration), o = shape[0], i = shape[1], r = options.rank, s = options.scaling
        let dropout = dropoutActive
        // The dropped input was left by the forward of this same block (the recomputation just before).
        let body = { (x: UnsafePointer<Float>) in
            if self.work[t].count < max(rows * i, o * i) { self.work[t] = [Float](repeating: 0, count: max(rows * i, o * i)) }
            switch self.options.mode {
            case .masked:
                // G = s · dyᵀ · x (out, in), masked; dB += G · Aᵀ, dA += Bᵀ · G; dx += s · (dy · (BA ⊙ M)) ⊙ keep.
                self.work[t].withUnsafeMutableBufferPointer { gp in
                    let g = gp.baseAddress!
                    self.backend.gemm(transA: true, m: o, n: i, k: rows, alpha: s, a: dy, b: x, c: g)
                    self.base[l][kind].data.withUnsafeBufferPointer { wp in
                        for j in 0..<(o * i) where wp[j] == 0 { g[j] = 0 }
                    }
                    self.a[l][t].data.withUnsafeBufferPointer { ap in
                        self.b[l][t].data.withUnsafeBufferPointer { bp in
                            self.gradB[l][t].data.withUnsafeMutableBufferPointer { gb in
                                self.backend.gemm(transB: true, m: o, n: r, k: i, a: g, b: ap.baseAddress!, beta: 1, c: gb.baseAddress!)
                            }
                            self.gradA[l][t].data.withUnsafeMutableBufferPointer { ga in
                                self.backend.gemm(transA: true, m: r, n: i, k: o, a: bp.baseAddress!, b: g, beta: 1, c: ga.baseAddress!)
                            }
                        }
                    }
                }
                if let dx {
                    self.delta[l][t].data.withUnsafeBufferPointer { dp in
                        if dropout {
                            self.work[t].withUnsafeMutableBufferPointer { wp in
                                self.backend.gemm(m: rows, n: i, k: o, alpha: s, a: dy, b: dp.baseAddress!, c: wp.baseAddress!)
                                self.keep[t].withUnsafeBufferPointer { kp in
                                    for j in 0..<(rows * i) { dx[j] += wp[j] * kp[j] }
                                }
                            }
                        } else {
                            self.backend.gemm(m: rows, n: i, k: o, alpha: s, a: dy, b: dp.baseAddress!, beta: 1, c: dx)
                        }
                    }
                }
            case .plain:
                // t = x·Aᵀ (saved); dB += s · dyᵀ · t; u = s · dy · B (rows, r); dA += uᵀ · x; dx += (u · A) ⊙ keep.
                var u = [Float](repeating: 0, count: rows * r)
                self.lowRank[t].withUnsafeBufferPointer { tp in
                    self.gradB[l][t].data.withUnsafeMutableBufferPointer { gb in
                        self.backend.gemm(transA: true, m: o, n: r, k: rows, alpha: s, a: dy, b: tp.baseAddress!, beta: 1, c: gb.baseAddress!)
                    }
                }
                self.b[l][t].data.withUnsafeBufferPointer { bp in
                    u.withUnsafeMutableBufferPointer { up in
                        self.backend.gemm(m: rows, n: r, k: o, alpha: s, a: dy, b: bp.baseAddress!, c: up.baseAddress!)
                    }
                }
                u.withUnsafeBufferPointer { up in
                    self.gradA[l][t].data.withUnsafeMutableBufferPointer { ga in
                        self.backend.gemm(transA: true, m: r, n: i, k: rows, a: up.baseAddress!, b: x, beta: 1, c: ga.baseAddress!)
                    }
                    if let dx {
                        self.a[l][t].data.withUnsafeBufferPointer { ap in
                            if dropout {
                                self.work[t].withUnsafeMutableBufferPointer { wp in
                                    self.backend.gemm(m: rows, n: i, k: r, a: up.baseAddress!, b: ap.baseAddress!, c: wp.baseAddress!)
                                    self.keep[t].withUnsafeBufferPointer { kp in
                                        for j in 0..<(rows * i) { dx[j] += wp[j] * kp[j] }
                                    }
                                }
                            } else {
                                self.backend.gemm(m: rows, n: i, k: r, a: up.baseAddress!, b: ap.baseAddress!, beta: 1, c: dx)
                            }
                        }
                    }
                }
            }
        }
        if dropout { dropped[t].withUnsafeBufferPointer { body($0.baseAddress!) } } else { body(inp) }
    }
}
