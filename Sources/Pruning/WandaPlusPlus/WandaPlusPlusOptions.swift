import Tensor

/// Which parts of Wanda++ run (the paper's ablation).
public enum WandaPlusPlusVariant: String, CaseIterable, Sendable {
    /// Regional gradient score and regional optimization.
    case full = "wanda++"
    /// Regional gradient score only: G, then one stage-by-stage prune over all samples.
    case rgsOnly = "wanda++-rgs"
    /// Regional optimization only: the Wanda score in the rounds and in the final prune.
    case roOnly = "wanda++-ro"

    public var usesGradientScore: Bool { self != .roOnly }
    public var usesRegionalOptimization: Bool { self != .rgsOnly }
}

/// The settings of Wanda++ (see docs/algorithms.md, "Wanda++"); each is a command-line flag.
public struct WandaPlusPlusOptions: Sendable, Equatable {
    public var variant: WandaPlusPlusVariant
    /// α in S = (α·G + ‖X_j‖₂)·|W| (`--alpha`, default 100).
    public var alpha: Float
    /// Rounds K of regional optimization per block (`--ro-rounds`, default 5).
    public var roRounds: Int
    /// Calibration samples drawn per round (`--ro-samples`, default 32).
    public var roSamples: Int
    /// RMSprop learning rate (`--ro-lr`, default 3e-7).
    public var roLearningRate: Float
    /// G averages over calibration samples 0..<k (`--gradient-samples`); nil: all samples.
    public var gradientSamples: Int?
    /// `--alpha auto`: each block chooses its score and its starting weights on held-out calibration samples
    /// (see `SettingSelection`); `alpha` is then one of the candidates (the paper's fixed α).
    public var selectsOnHeldOut: Bool
    /// Calibration samples held out for that choice (`--holdout`); nil: `defaultHoldout(of:)`.
    public var holdoutSamples: Int?

    /// The relative weights β tried by `--alpha auto`: S = (β·G/mean(G) + ‖X_j‖/mean(‖X‖))·|W|, so β = 0 is
    /// Wanda's score and β = 1 weighs the two terms equally whatever their units and the calibration size.
    public static let relativeAlphaGrid: [Float] = [0, 0.25, 0.5, 1, 2, 4]

    public init(variant: WandaPlusPlusVariant = .full, alpha: Float = 100, roRounds: Int = 5, roSamples: Int = 32,
                roLearningRate: Float = 3e-7, gradientSamples: Int? = nil, selectsOnHeldOut: Bool = false,
                holdoutSamples: Int? = nil) {
        self.variant = variant
        self.alpha = alpha
        self.roRounds = roRounds
        self.roSamples = roSamples
        self.roLearningRate = roLearningRate
        self.gradientSamples = gradientSamples
        self.selectsOnHeldOut = selectsOnHeldOut
        self.holdoutSamples = holdoutSamples
    }

    /// One sample in eight, at least one: 4 of 32, 16 of 128.
    public static func defaultHoldout(of samples: Int) -> Int { max(1, samples / 8) }

    /// The held-out samples (the last ones of the calibration set): none unless `--alpha auto`.
    public func holdoutCount(of samples: Int) -> Int {
        selectsOnHeldOut ? (holdoutSamples ?? Self.defaultHoldout(of: samples)) : 0
    }

    /// The samples that G, regional optimization and the candidates' prunes see: those not held out.
    public func trainingCount(of samples: Int) -> Int { samples - holdoutCount(of: samples) }

    /// How many samples G averages over, given N calibration samples (held-out ones excluded).
    public func gradientSampleCount(of samples: Int) -> Int { min(gradientSamples ?? samples, trainingCount(of: samples)) }

    /// Checks the settings against the number of calibration samples; one-line errors naming the flag.
    public func validate(samples: Int) throws {
        if !alpha.isFinite || alpha < 0 { throw WandaPlusPlusError("--alpha \(alpha) must be a finite number ≥ 0") }
        if roRounds < 0 { throw WandaPlusPlusError("--ro-rounds \(roRounds) must be ≥ 0") }
        if !roLearningRate.isFinite || roLearningRate < 0 {
            throw WandaPlusPlusError("--ro-lr \(roLearningRate) must be a finite number ≥ 0")
        }
        if let g = gradientSamples, g <= 0 { throw WandaPlusPlusError("--gradient-samples \(g) must be positive") }
        // Refused rather than capped, so the run record's gradient_samples is the count G averaged over.
        if let g = gradientSamples, g > samples {
            throw WandaPlusPlusError("--gradient-samples \(g) must be in 1...\(samples) (the calibration sample count)")
        }
        if samples <= 0 { throw WandaPlusPlusError("Wanda++ needs at least one calibration sample") }
        if let h = holdoutSamples, h <= 0 { throw WandaPlusPlusError("--holdout \(h) must be positive") }
        let training = trainingCount(of: samples)
        if selectsOnHeldOut && training < 1 {
            throw WandaPlusPlusError("--holdout \(holdoutCount(of: samples)) leaves no calibration sample to prune with (of \(samples)); use a smaller --holdout or more --nsamples")
        }
        if variant.usesRegionalOptimization && roRounds > 0 && (roSamples <= 0 || roSamples > training) {
            let what = training < samples ? "the calibration samples not held out" : "the calibration sample count"
            throw WandaPlusPlusError("--ro-samples \(roSamples) must be in 1...\(training) (\(what))")
        }
    }
}

/// A Wanda++ failure; `description` is one line naming the problem (and the block or layer).
public struct WandaPlusPlusError: Error, CustomStringConvertible, Equatable, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}
