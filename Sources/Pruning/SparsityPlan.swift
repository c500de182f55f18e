import Llama

/// The sparsity target of every linear layer of a model: one pattern for all (`base`), and exceptions for
/// single linears (layer l, kind).
///
/// A uniform plan (no exceptions) is what `--sparsity` gives; a planner (`SparsityPlanner`, e.g. OWL's
/// per-block ratios) sets exceptions from a pass over the dense model before pruning. Every method asks
/// the plan for the pattern of the linear it prunes (`BlockPruningContext.pattern(for:)`); the driver
/// checks each linear against its own pattern; the run record and the resume state carry the exceptions.
public struct SparsityPlan: Equatable, Sendable, CustomStringConvertible {
    /// One linear of the model.
    public struct Linear: Hashable, Sendable, Comparable {
        public var layer: Int
        public var kind: LinearKind

        public init(layer: Int, kind: LinearKind) { self.layer = layer; self.kind = kind }

        /// Layers in order, and within a layer the order of `LinearKind.allCases` (q, k, v, o, gate, up, down).
        public static func < (a: Linear, b: Linear) -> Bool {
            if a.layer != b.layer { return a.layer < b.layer }
            let order = LinearKind.allCases
            return order.firstIndex(of: a.kind)! < order.firstIndex(of: b.kind)!
        }

        /// "3.q": the key of `exceptionsByKey`.
        public var key: String { "\(layer).\(kind.rawValue)" }

        /// Reads `key`'s form.
        public init(key: String) throws {
            let parts = key.split(separator: ".", omittingEmptySubsequences: false)
            guard parts.count == 2, let layer = Int(parts[0]), layer >= 0, let kind = LinearKind(rawValue: String(parts[1])) else {
                throw PruningError("invalid linear '\(key)' in a sparsity plan: expected <layer>.<q|k|v|o|gate|up|down>")
            }
            self.init(layer: layer, kind: kind)
        }
    }

    /// The pattern of every linear without an exception.
    public var base: SparsityPattern
    /// The linears whose pattern differs from `base` (never one equal to it).
    public private(set) var exceptions: [Linear: SparsityPattern]

    /// A uniform plan.
    public init(_ base: SparsityPattern) {
        self.base = base
        exceptions = [:]
    }

    /// A plan with the given exceptions (entries equal to `base` are dropped).
    public init(base: SparsityPattern, exceptions: [Linear: SparsityPattern]) {
        self.base = base
        self.exceptions = exceptions.filter { $0.value != base }
    }

    /// The plan whose exceptions `exceptionsByKey` wrote (the run record's and the resume state's form).
    public init(base: SparsityPattern, exceptionsByKey: [String: String]) throws {
        var e: [Linear: SparsityPattern] = [:]
        for (key, value) in exceptionsByKey { e[try Linear(key: key)] = try SparsityPattern(parsing: value) }
        self.init(base: base, exceptions: e)
    }

    /// The pattern of linear `kind` of block `layer`.
    public func pattern(layer: Int, kind: LinearKind) -> SparsityPattern {
        exceptions[Linear(layer: layer, kind: kind)] ?? base
    }

    /// Sets the pattern of the given linears of block `layer` (default: all seven).
    public mutating func set(_ pattern: SparsityPattern, layer: Int, kinds: [LinearKind] = LinearKind.allCases) {
        for kind in kinds {
            let linear = Linear(layer: layer, kind: kind)
            exceptions[linear] = pattern == base ? nil : pattern
        }
    }

    public var isUniform: Bool { exceptions.isEmpty }

    /// The exceptions as "layer.kind" → pattern text (`0.5`, `2:4`); empty for a uniform plan.
    public var exceptionsByKey: [String: String] {
        Dictionary(uniqueKeysWithValues: exceptions.map { ($0.key.key, $0.value.description) })
    }

    /// `base` for a uniform plan (`2:4`, `0.5`), so a uniform run's records read as before; otherwise
    /// `base` with the count of exceptions, e.g. `0.7 (35 linears planned otherwise)`.
    public var description: String {
        isUniform ? base.description : "\(base) (\(exceptions.count) linear\(exceptions.count == 1 ? "" : "s") planned otherwise)"
    }

    /// The N:M pattern a linear must hold exactly, for the driver's check (nil for a ratio).
    func nm(layer: Int, kind: LinearKind) -> (n: Int, m: Int)? {
        if case .nm(let n, let m) = pattern(layer: layer, kind: kind) { return (n, m) }
        return nil
    }
}

/// Sets a run's sparsity plan from a pass over the dense model before pruning (OWL's per-block ratios
/// from outlier statistics, for one).
///
/// With a planner the driver first runs the dense model block by block over the calibration samples: it
/// loads block l, calls `observe` with a context whose `weights` are the dense block and whose `inputs`
/// are the dense model's own activations X₀ₗ (not the pruned model's), then computes X₀ₗ₊₁ with the dense
/// block. After the last block it calls `plan`, and prunes with the plan that returns. The context's
/// pattern is the base plan's; a planner must not change `weights`. A resumed run takes the plan from its
/// resume state and skips this pass.
public protocol SparsityPlanner: AnyObject {
    /// For progress lines and the run record, e.g. "owl".
    var name: String { get }
    /// Sees dense block `context.layer` (layers in order 0..<L).
    func observe(_ context: BlockPruningContext) throws
    /// The plan to prune with, from `base` (the run's uniform plan) and what `observe` saw.
    func plan(from base: SparsityPlan, layerCount: Int) throws -> SparsityPlan
    /// Whether `observe` reads the calibration inputs; when true the driver embeds and propagates them in
    /// the planning pass even for a method that reads none (magnitude). Default: true.
    var needsCalibrationInputs: Bool { get }
    /// The settings that decide the plan, for the run record and the resume identity (e.g. OWL's λ and M).
    /// Default: none.
    var settings: [String: String] { get }
}

extension SparsityPlanner {
    public var needsCalibrationInputs: Bool { true }
    public var settings: [String: String] { [:] }
}
