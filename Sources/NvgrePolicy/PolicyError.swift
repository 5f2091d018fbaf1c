/// One thing wrong with a policy: where (a path such as `lookupRecords[3].mac`), the value
/// found, and what is allowed there.
public struct PolicyError: Error, Equatable, Sendable, CustomStringConvertible {
    public let field: String
    public let value: String
    public let allowed: String

    public init(_ field: String, _ value: String, _ allowed: String) {
        self.field = field
        self.value = value
        self.allowed = allowed
    }

    public var description: String { "\(field): \(value.isEmpty ? "(empty)" : value) is not valid: \(allowed)" }
}

/// Every problem found in one policy, reported together so a user can fix them in one go.
public struct PolicyErrors: Error, Equatable, Sendable, CustomStringConvertible {
    public let errors: [PolicyError]

    public init(errors: [PolicyError]) { self.errors = errors }
    public var description: String { errors.map(\.description).joined(separator: "\n") }
}
