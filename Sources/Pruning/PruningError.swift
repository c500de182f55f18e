/// A pruning failure; `description` is one line naming the problem and, where known, the layer or file.
public struct PruningError: Error, CustomStringConvertible, Equatable, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}
