import Tensor

/// Where the driver resumes: the next block to prune, the state the finished blocks left.
public struct ResumePoint {
    public var nextBlock: Int
    public var generator: SeededGenerator
    public var blocks: [BlockPruningReport]
    /// The plan the run prunes with, when it is not its options' (a planner set it).
    public var plan: SparsityPlan?
    /// Fills the driver's activation buffer with the next block's inputs (nsamples × seqlen × hidden).
    public var loadInputs: (UnsafeMutableBufferPointer<Float>) throws -> Void

    public init(nextBlock: Int, generator: SeededGenerator, blocks: [BlockPruningReport], plan: SparsityPlan? = nil,
                loadInputs: @escaping (UnsafeMutableBufferPointer<Float>) throws -> Void) {
        self.nextBlock = nextBlock; self.generator = generator; self.blocks = blocks; self.plan = plan
        self.loadInputs = loadInputs
    }
}

/// Saves the driver's state after each block and gives it back to a resumed run.
public protocol BlockCheckpointing: AnyObject {
    /// The state to continue from, or nil to start at block 0.
    func resumePoint() throws -> ResumePoint?
    /// Block `layer` is finished (its pruned weights were handed to the block sink): save the next block's
    /// inputs (nil after the last block or for a method without inputs), the generator, the plan and the
    /// reports.
    func blockFinished(layer: Int, nextInputs: UnsafeBufferPointer<Float>?, generator: SeededGenerator,
                       plan: SparsityPlan, blocks: [BlockPruningReport]) throws
}
