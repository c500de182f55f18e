import Foundation
import Llama
import SafeTensors
import Tensor

/// AdamW exactly as `torch.optim.AdamW` (single-tensor path, float32 state): per step t (from 1)
///
///     p ← p·(1 − lr·λ);  m ← m + (1 − β₁)(g − m);  v ← β₂v + (1 − β₂)g²
///     p ← p − lr/(1 − β₁ᵗ) · m / (√v / √(1 − β₂ᵗ) + ε)
///
/// with PyTorch's defaults β = (0.9, 0.999), ε = 1e-8 and weight decay λ (PyTorch's default 0.01).
public struct AdamW: Sendable {
    public var beta1: Double = 0.9
    public var beta2: Double = 0.999
    public var eps: Double = 1e-8
    public var weightDecay: Double
    /// Steps taken so far.
    public var step = 0
    /// First and second moments, one buffer per parameter tensor.
    public var m: [[Float]]
    public var v: [[Float]]

    public init(parameterCounts: [Int], weightDecay: Double = 0.01) {
        self.weightDecay = weightDecay
        m = parameterCounts.map { [Float](repeating: 0, count: $0) }
        v = m
    }

    /// Starts step t + 1 (call once per optimizer step, before `update`).
    public mutating func beginStep() { step += 1 }

    /// Updates parameter tensor `i` in place with its gradient at learning rate `lr`.
    public mutating func update(_ i: Int, parameter p: UnsafeMutableBufferPointer<Float>, gradient g: UnsafeBufferPointer<Float>, lr: Double) {
        let decay = Float(1 - lr * weightDecay)
        let b2 = Float(beta2), oneMinusB1 = Float(1 - beta1), oneMinusB2 = Float(1 - beta2)
        let bc1 = 1 - Foundation.pow(beta1, Double(step)), bc2 = 1 - Foundation.pow(beta2, Double(step))
        let stepSize = Float(lr / bc1), bc2Sqrt = Float(bc2.squareRoot()), e = Float(eps)
        m[i].withUnsafeMutableBufferPointer { mp in
            v[i].withUnsafeMutableBufferPointer { vp in
                for j in 0..<p.count {
                    p[j] *= decay
                    mp[j] += oneMinusB1 * (g[j] - mp[j])   // torch's lerp_(g, 1 − β₁)
                    vp[j] = vp[j] * b2 + oneMinusB2 * g[j] * g[j]
                    let denom = vp[j].squareRoot() / bc2Sqrt + e
                    p[j] += -stepSize * (mp[j] / denom)
                }
            }
        }
    }
}

/// transformers' `get_linear_schedule_with_warmup`: the factor of the base learning rate for optimizer
/// step `i` (0-based): i / warmup during warmup, then linearly down to 0 at `total` steps. (As in
/// transformers, step 0 runs at factor 0 when there is a warmup.)
public func linearScheduleFactor(step i: Int, warmup: Int, total: Int) -> Double {
    if i < warmup { return Double(i) / Double(max(1, warmup)) }
    return max(0, Double(total - i) / Double(max(1, total - warmup)))
}

/// The training token stream cut into non-overlapping blocks of `seqlen` tokens, and the seeded order
/// in which they are visited: epoch e is a Fisher–Yates permutation drawn from `SeededGenerator(seed ⊕ e)`.
public struct TrainingBlocks: Sendable {
    public let blocks: [[Int]]
    public let seed: UInt64
    public let source: String

    public init(stream: [Int], seqlen: Int, seed: UInt64, source: String) throws {
        guard seqlen >= 2 else { throw FineTuningError("--seqlen must be at least 2, got \(seqlen)") }
        let n = stream.count / seqlen
        guard n > 0 else {
            throw FineTuningError("the training text has \(stream.count) tokens, fewer than one block of --seqlen \(seqlen)")
        }
        blocks = (0..<n).map { Array(stream[($0 * seqlen)..<(($0 + 1) * seqlen)]) }
        self.seed = seed
        self.source = source
    }

    /// The permutation of epoch e.
    public func order(epoch e: Int) -> [Int] {
        var rng = SeededGenerator(seed: seed ^ (0xB10C_0000 &+ UInt64(e)))
        var p = Array(0..<blocks.count)
        if p.count > 1 {
            for i in stride(from: p.count - 1, to: 0, by: -1) { p.swapAt(i, rng.nextInt(below: i + 1)) }
        }
        return p
    }

    /// The block index visited at position `k` of the whole run (k = step · accumulation + micro).
    public func index(at k: Int) -> Int { order(epoch: k / blocks.count)[k % blocks.count] }
}

/// Settings of one fine-tuning run besides LoRA's.
public struct TrainingOptions: Sendable {
    public var steps: Int
    public var learningRate: Double
    public var warmup: Int
    public var gradientAccumulation: Int
    /// Clip the global gradient norm to this (0: no clipping); transformers' default 1.0.
    public var maxGradNorm: Double
    public var weightDecay: Double
    /// Evaluate on the held-out text every this many steps (0: only at the end).
    public var evalEvery: Int
    /// Write a resumable state every this many steps (0: never).
    public var saveEvery: Int

    public init(steps: Int, learningRate: Double = 1e-4, warmup: Int = 5, gradientAccumulation: Int = 1,
                maxGradNorm: Double = 1, weightDecay: Double = 0.01, evalEvery: Int = 0, saveEvery: Int = 0) {
        self.steps = steps; self.learningRate = learningRate; self.warmup = warmup
        self.gradientAccumulation = gradientAccumulation; self.maxGradNorm = maxGradNorm
        self.weightDecay = weightDecay; self.evalEvery = evalEvery; self.saveEvery = saveEvery
    }

    public func validate() throws {
        guard steps > 0 else { throw FineTuningError("--steps must be positive, got \(steps)") }
        guard learningRate.isFinite, learningRate >= 0 else { throw FineTuningError("--lr must be a non-negative number, got \(learningRate)") }
        guard warmup >= 0 else { throw FineTuningError("--warmup must be non-negative, got \(warmup)") }
        guard gradientAccumulation > 0 else { throw FineTuningError("--grad-accum must be positive, got \(gradientAccumulation)") }
        guard maxGradNorm >= 0, maxGradNorm.isFinite else { throw FineTuningError("--max-grad-norm must be non-negative, got \(maxGradNorm)") }
        guard weightDecay >= 0, weightDecay.isFinite else { throw FineTuningError("--weight-decay must be non-negative, got \(weightDecay)") }
    }
}

/// One line of progress of the training loop.
public struct TrainingProgress: Sendable {
    public var step: Int
    public var steps: Int
    public var loss: Double
    public var learningRate: Double
    public var tokensPerSecond: Double
    public var secondsLeft: Double
    public var gradNorm: Double
}

/// LoRA fine-tuning of a frozen model: the causal-LM loss through `CausalLMBackward` with the adapters'
/// hooks in every block, AdamW on A and B, the linear schedule, gradient accumulation and clipping.
/// The state (`step`, adapters, moments, losses) can be saved and resumed bit for bit: the data order
/// and the dropout masks are functions of the seed and the position, not of the history.
public final class LoRATrainer {
    public let model: LlamaModel
    public let adapters: LoRAAdapters
    public let data: TrainingBlocks
    public let options: TrainingOptions
    public private(set) var optimizer: AdamW
    public private(set) var losses: [Double] = []
    public private(set) var gradNorms: [Double] = []
    private let backward: CausalLMBackward

    public var step: Int { optimizer.step }

    public init(model: LlamaModel, lora: LoRAOptions, data: TrainingBlocks, options: TrainingOptions) throws {
        try options.validate()
        let seqlen = data.blocks[0].count
        guard seqlen <= model.configuration.maxPositionEmbeddings else {
            throw FineTuningError("--seqlen \(seqlen) exceeds the model's max_position_embeddings \(model.configuration.maxPositionEmbeddings)")
        }
        self.model = model
        adapters = try LoRAAdapters(options: lora, configuration: model.configuration, base: model.blocks,
                                    backend: model.backend)
        self.data = data
        self.options = options
        optimizer = AdamW(parameterCounts: Self.parameterCounts(adapters), weightDecay: options.weightDecay)
        backward = try CausalLMBackward(configuration: model.configuration, batch: 1, length: seqlen, backend: model.backend)
    }

    static func parameterCounts(_ a: LoRAAdapters) -> [Int] {
        var counts: [Int] = []
        for l in a.a.indices { for t in a.a[l].indices { counts.append(a.a[l][t].count); counts.append(a.b[l][t].count) } }
        return counts
    }

    /// Runs optimizer steps until `options.steps` (or `until`), calling `progress` after each and
    /// `checkpoint` every `saveEvery` steps and `evaluate` every `evalEvery` steps.
    public func train(until last: Int? = nil, progress: (TrainingProgress) -> Void = { _ in },
                      checkpoint: (LoRATrainer) throws -> Void = { _ in },
                      evaluate: (LoRATrainer) throws -> Void = { _ in }) throws {
        let end = min(options.steps, last ?? options.steps)
        let seqlen = data.blocks[0].count
        let start = Date()
        let first = step
        while step < end {
            let s = step
            let lr = options.learningRate * linearScheduleFactor(step: s, warmup: options.warmup, total: options.steps)
            adapters.zeroGradients()
            adapters.training = true
            var loss = 0.0
            let K = options.gradientAccumulation
            for micro in 0..<K {
                let tokens = [data.blocks[data.index(at: s * K + micro)]]
                adapters.dropoutKey = (s, micro)
                let r = try backward.run(model: model, tokens: tokens, adapter: { self.adapters.adapter(layer: $0) },
                                         lossScale: 1 / Float(K))
                loss += r.loss / Double(K)
            }
            guard loss.isFinite else { throw FineTuningError("the training loss is \(loss) at step \(s + 1); lower --lr") }
            let norm = clipGradients()
            optimizer.beginStep()
            var i = 0
            for l in adapters.a.indices {
                for t in adapters.a[l].indices {
                    let ga = adapters.gradA[l][t], gb = adapters.gradB[l][t]
                    adapters.a[l][t].data.withUnsafeMutableBufferPointer { p in
                        ga.data.withUnsafeBufferPointer { optimizer.update(i, parameter: p, gradient: $0, lr: lr) }
                    }
                    adapters.b[l][t].data.withUnsafeMutableBufferPointer { p in
                        gb.data.withUnsafeBufferPointer { optimizer.update(i + 1, parameter: p, gradient: $0, lr: lr) }
                    }
                    i += 2
                }
            }
            adapters.refresh()
            losses.append(loss)
            gradNorms.append(norm)
            let elapsed = Date().timeIntervalSince(start)
            let done = step - first
            let rate = Double(done * K * seqlen) / max(elapsed, 1e-9)
            progress(TrainingProgress(step: step, steps: options.steps, loss: loss, learningRate: lr, tokensPerSecond: rate,
                                      secondsLeft: elapsed / Double(done) * Double(end - step), gradNorm: norm))
            if options.saveEvery > 0 && step % options.saveEvery == 0 { try checkpoint(self) }
            if options.evalEvery > 0 && step % options.evalEvery == 0 && step < options.steps { try evaluate(self) }
        }
    }

    /// torch.nn.utils.clip_grad_norm_: the 2-norm of all gradients; scales them by
    /// min(1, max / (norm + 1e-6)) when clipping is on. Returns the norm before clipping.
    private func clipGradients() -> Double {
        var norms: [Float] = []
        for l in adapters.gradA.indices {
            for t in adapters.gradA[l].indices {
                for g in [adapters.gradA[l][t], adapters.gradB[l][t]] {
                    var ss = 0.0
                    for x in g.data { ss += Double(x) * Double(x) }
                    norms.append(Float(ss.squareRoot()))
                }
            }
        }
        let total = Float(norms.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot())
        guard options.maxGradNorm > 0 else { return Double(total) }
        let coef = min(1, Float(options.maxGradNorm) / (total + 1e-6))
        if coef < 1 {
            for l in adapters.gradA.indices {
                for t in adapters.gradA[l].indices {
                    adapters.gradA[l][t].data.withUnsafeMutableBufferPointer { p in for j in p.indices { p[j] *= coef } }
                    adapters.gradB[l][t].data.withUnsafeMutableBufferPointer { p in for j in p.indices { p[j] *= coef } }
                }
            }
        }
        return Double(total)
    }

    // MARK: Resumable state

    /// Writes the step, A, B, the AdamW moments and the losses so far to one safetensors file, with the
    /// run's settings in its metadata (checked on resume).
    public func save(to url: URL, settings: [String: String]) throws {
        var entries: [TensorEntry] = []
        var i = 0
        for l in adapters.a.indices {
            for t in adapters.a[l].indices {
                let a = adapters.a[l][t], b = adapters.b[l][t]
                entries.append(TensorEntry(name: "a.\(l).\(t)", dtype: .F32, shape: a.shape, data: .floats(a.data)))
                entries.append(TensorEntry(name: "b.\(l).\(t)", dtype: .F32, shape: b.shape, data: .floats(b.data)))
                entries.append(TensorEntry(name: "m.\(i)", dtype: .F32, shape: [a.count], data: .floats(optimizer.m[i])))
                entries.append(TensorEntry(name: "v.\(i)", dtype: .F32, shape: [a.count], data: .floats(optimizer.v[i])))
                entries.append(TensorEntry(name: "m.\(i + 1)", dtype: .F32, shape: [b.count], data: .floats(optimizer.m[i + 1])))
                entries.append(TensorEntry(name: "v.\(i + 1)", dtype: .F32, shape: [b.count], data: .floats(optimizer.v[i + 1])))
                i += 2
            }
        }
        var metadata = settings
        metadata["step"] = String(step)
        metadata["losses"] = losses.map { "\($0)" }.joined(separator: ",")
        metadata["grad_norms"] = gradNorms.map { "\($0)" }.joined(separator: ",")
        let tmp = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).partial")
        try SafeTensorsWriter.write(entries, metadata: metadata, to: tmp)
        _ = try? FileManager.default.removeItem(at: url)
        try FileManager.default.moveItem(at: tmp, to: url)
    }

    /// Restores a state written by `save` whose settings equal `settings`.
    public func resume(from url: URL, settings: [String: String]) throws {
        let file: SafeTensorsFile
        do { file = try SafeTensorsFile(url: url) } catch { throw FineTuningError("cannot read --resume \(url.path): \(error)") }
        for (k, v) in settings where file.metadata[k] != v {
            throw FineTuningError("--resume \(url.path) was written with \(k) = \(file.metadata[k] ?? "nothing"), this run has \(v)")
        }
        guard let s = file.metadata["step"].flatMap(Int.init), s >= 0, s <= options.steps else {
            throw FineTuningError("--resume \(url.path): no valid step in its metadata")
        }
        var i = 0
        for l in adapters.a.indices {
            for t in adapters.a[l].indices {
                func load(_ name: String, _ count: Int) throws -> [Float] {
                    guard let info = file.info(name), info.shape.reduce(1, *) == count else {
                        throw FineTuningError("--resume \(url.path): tensor \(name) is missing or has the wrong size")
                    }
                    return try file.floats(name)
                }
                adapters.a[l][t].data = try load("a.\(l).\(t)", adapters.a[l][t].count)
                adapters.b[l][t].data = try load("b.\(l).\(t)", adapters.b[l][t].count)
                optimizer.m[i] = try load("m.\(i)", adapters.a[l][t].count)
                optimizer.v[i] = try load("v.\(i)", adapters.a[l][t].count)
                optimizer.m[i + 1] = try load("m.\(i + 1)", adapters.b[l][t].count)
                optimizer.v[i + 1] = try load("v.\(i + 1)", adapters.b[l][t].count)
                i += 2
            }
        }
        optimizer.step = s
        func doubles(_ key: String) -> [Double] {
            (file.metadata[key] ?? "").split(separator: ",").compactMap { Double(String($0)) }
        }
        losses = doubles("losses")
        gradNorms = doubles("grad_norms")
        guard losses.count == s else { throw FineTuningError("--resume \(url.path): \(losses.count) losses for step \(s)") }
        adapters.refresh()
    }
}
