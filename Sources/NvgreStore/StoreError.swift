/// What went wrong talking to the store, said so that a person can act on it.
public enum StoreError: Error, CustomStringConvertible, Equatable {
    /// No member answered (the address, and why).
    case unreachable(String, String)
    /// A member answered with an error (its message).
    case refused(String, String)
    /// The store's address is not `etcd://HOST:PORT[,HOST:PORT...]`.
    case badAddress(String)
    /// A key holds something that is not what the layout puts there.
    case badContent(key: String, String)
    /// Someone else changed the store between reading and writing.
    case conflict(String)

    public var description: String {
        switch self {
        case let .unreachable(at, why): return "store: etcd at \(at) unreachable: \(why)"
        case let .refused(at, why): return "store: etcd at \(at) refused the request: \(why)"
        case let .badAddress(text):
            return "store: '\(text)' is not a store address; expected etcd://HOST:PORT[,HOST:PORT...]"
        case let .badContent(key, why): return "store: key \(key): \(why)"
        case let .conflict(why): return "store: changed by another writer meanwhile (\(why)); nothing was written"
        }
    }
}
