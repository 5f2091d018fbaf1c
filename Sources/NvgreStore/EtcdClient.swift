import Foundation

/// A client of etcd v3's JSON gateway (HTTP/1.1, keys and values base64, int64s as strings),
/// written here rather than taken from a package: a few blocking calls on loopback or a
/// management network need no event loop, and a build with no new dependency stays fast.
/// Each call goes to the member that answered last, then to the others in turn.
public final class EtcdClient: @unchecked Sendable {
    public struct Endpoint: Equatable, Sendable, CustomStringConvertible {
        public let host: String
        public let port: UInt16
        public var description: String { "\(host):\(port)" }
        public init(host: String, port: UInt16) {
            self.host = host
            self.port = port
        }
    }

    public struct KeyValue: Equatable, Sendable {
        public let key: String
        public let value: Data
        public let modRevision: Int64
        public let createRevision: Int64
    }

    /// A comparison in a transaction (etcd's Compare): on a key's value or revisions.
    public enum Compare: Sendable {
        /// The key's last change was at this revision (0: the key does not exist).
        case modRevision(String, equals: Int64)
        case value(String, equals: Data)
        case valueIsNot(String, Data)
    }

    /// An operation in a transaction.
    public enum Operation: Sendable {
        case put(String, Data)
        case delete(String)
        case deletePrefix(String)
    }

    public let endpoints: [Endpoint]
    public let timeout: Double
    private let lock = NSLock()
    private var preferred = 0

    public init(endpoints: [Endpoint], timeout: Double = 5) {
        precondition(!endpoints.isEmpty)
        self.endpoints = endpoints
        self.timeout = timeout
    }

    /// From `etcd://HOST:PORT[,HOST:PORT...]`.
    public convenience init(address: String, timeout: Double = 5) throws {
        self.init(endpoints: try Self.parse(address), timeout: timeout)
    }

    public static func parse(_ address: String) throws -> [Endpoint] {
        guard address.hasPrefix("etcd://") else { throw StoreError.badAddress(address) }
        let list = address.dropFirst("etcd://".count).split(separator: ",", omittingEmptySubsequences: false)
        let endpoints = try list.map { item -> Endpoint in
            guard let colon = item.lastIndex(of: ":"), let port = UInt16(item[item.index(after: colon)...]), port > 0,
                colon > item.startIndex
            else { throw StoreError.badAddress(address) }
            var host = String(item[..<colon])
            if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
            return Endpoint(host: host, port: port)
        }
        guard !endpoints.isEmpty else { throw StoreError.badAddress(address) }
        return endpoints
    }

    // MARK: calls

    /// Every key under `prefix` (all of them with ""), at revision `revision` (nil: the
    /// latest), and the store's revision they were read at.
    /// Read in pages of `pageSize` keys, every page at the revision of the first: one
    /// answer for a million keys would be hundreds of megabytes of JSON.
    public func range(prefix: String, revision: Int64? = nil, pageSize: Int = 5000) throws
        -> (revision: Int64, kvs: [KeyValue])
    {
        try range(from: prefix, upTo: nil, revision: revision, pageSize: pageSize)
    }

    /// The keys from `start` up to `end` (excluded; nil: every key starting with `start`),
    /// read as `range(prefix:)` reads.
    public func range(from start: String, upTo end: String?, revision: Int64? = nil, pageSize: Int = 5000) throws
        -> (revision: Int64, kvs: [KeyValue])
    {
        var at = revision
        var from = Array((start.isEmpty ? "\0" : start).utf8)
        let rangeEnd = end.map(Self.b64) ?? Self.prefixEnd(start)
        var all: [KeyValue] = []
        while true {
            var body: [String: Any] = [
                "key": Data(from).base64EncodedString(), "range_end": rangeEnd, "limit": String(pageSize)
            ]
            if let at { body["revision"] = String(at) }
            let r = try call("/v3/kv/range", body, idempotent: true)
            let page = try Self.kvs(r["kvs"])
            if at == nil { at = Self.revision(r) }
            all += page
            guard (r["more"] as? Bool) == true, let last = page.last else { break }
            from = Array(last.key.utf8) + [0]  // the next key after the last one
        }
        return (at ?? 0, all)
    }

    /// One key, or nil.
    public func get(_ key: String) throws -> KeyValue? {
        let r = try call("/v3/kv/range", ["key": Self.b64(key)], idempotent: true)
        return try Self.kvs(r["kvs"]).first
    }

    /// Sets `key` (bound to `lease`: gone when the lease expires); returns the store's
    /// revision after it.
    @discardableResult
    public func put(_ key: String, _ value: Data, lease: Int64? = nil) throws -> Int64 {
        var body: [String: Any] = ["key": Self.b64(key), "value": value.base64EncodedString()]
        if let lease { body["lease"] = String(lease) }
        return Self.revision(try call("/v3/kv/put", body))
    }

    /// A new lease of `ttl` seconds; its ID.
    public func grantLease(ttl: Int) throws -> Int64 {
        let r = try call("/v3/lease/grant", ["TTL": String(ttl)])
        guard let id = Int64((r["ID"] as? String) ?? "") else {
            throw StoreError.refused(endpoints.map(\.description).joined(separator: ","), "no lease granted: \(r)")
        }
        return id
    }

    /// Renews lease `id` (one keep-alive of the stream etcd offers); the seconds it has
    /// left, 0 when it is gone (expired or revoked).
    public func keepAlive(_ id: Int64) throws -> Int {
        let r = try call("/v3/lease/keepalive", ["ID": String(id)], idempotent: true)
        return Int(((r["result"] as? [String: Any])?["TTL"] as? String) ?? "") ?? 0
    }

    /// Deletes every key under `prefix`.
    public func deletePrefix(_ prefix: String) throws {
        _ = try call("/v3/kv/deleterange", ["key": Self.b64(prefix), "range_end": Self.prefixEnd(prefix)])
    }

    /// Forgets the history before `revision` (what an operator's or etcd's automatic
    /// compaction does); watches from before it are then cancelled as compacted.
    public func compact(to revision: Int64) throws {
        _ = try call("/v3/kv/compaction", ["revision": String(revision), "physical": true])
    }

    /// All of `success` if every comparison holds, else all of `failure`; whether they held
    /// and the revision after. etcd takes at most 128 operations in one (its --max-txn-ops).
    public func transaction(if compares: [Compare], then success: [Operation], else failure: [Operation] = [])
        throws -> (succeeded: Bool, revision: Int64)
    {
        // Written as text: every value is base64, a number or a fixed word (nothing to
        // escape), and Foundation's JSON writer would cost more than all the rest of a large
        // write.
        func object(_ fields: [(String, String)]) -> String {
            "{" + fields.map { "\"\($0.0)\":\"\($0.1)\"" }.joined(separator: ",") + "}"
        }
        func encode(_ op: Operation) -> String {
            switch op {
            case let .put(key, value):
                return #"{"request_put":"# + object([("key", Self.b64(key)), ("value", value.base64EncodedString())])
                    + "}"
            case let .delete(key): return #"{"request_delete_range":"# + object([("key", Self.b64(key))]) + "}"
            case let .deletePrefix(prefix):
                return #"{"request_delete_range":"#
                    + object([("key", Self.b64(prefix)), ("range_end", Self.prefixEnd(prefix))]) + "}"
            }
        }
        func encode(_ c: Compare) -> String {
            switch c {
            case let .modRevision(key, rev):
                return object([
                    ("key", Self.b64(key)), ("target", "MOD"), ("result", "EQUAL"), ("mod_revision", "\(rev)")
                ])
            case let .value(key, value):
                return object([
                    ("key", Self.b64(key)), ("target", "VALUE"), ("result", "EQUAL"),
                    ("value", value.base64EncodedString())
                ])
            case let .valueIsNot(key, value):
                return object([
                    ("key", Self.b64(key)), ("target", "VALUE"), ("result", "NOT_EQUAL"),
                    ("value", value.base64EncodedString())
                ])
            }
        }
        let body =
            #"{"compare":["# + compares.map(encode).joined(separator: ",") + #"],"success":["#
            + success.map(encode).joined(separator: ",") + #"],"failure":["#
            + failure.map(encode).joined(separator: ",")
            + "]}"
        let r = try call("/v3/kv/txn", json: Data(body.utf8))
        return ((r["succeeded"] as? Bool) ?? false, Self.revision(r))
    }

    /// The member that leads, by its id, as each reachable member sees it; for tests and `show`.
    public func status(of endpoint: Endpoint) throws -> (memberID: String, leaderID: String) {
        let r = try call("/v3/maintenance/status", [:], idempotent: true, only: endpoint)
        let header = r["header"] as? [String: Any]
        return ((header?["member_id"] as? String) ?? "", (r["leader"] as? String) ?? "")
    }

    /// POSTs to the preferred member, then the others; a member that answers with an error
    /// is believed (the error is the store's). The next member is asked when the request
    /// could not be sent, or the member had no leader; a request that left without an answer
    /// is asked again elsewhere only when it is `idempotent` (a read): a write may have been
    /// applied, and the caller is told so.
    func call(_ path: String, _ body: [String: Any], idempotent: Bool = false, only: Endpoint? = nil) throws
        -> [String: Any]
    {
        try call(path, json: try JSONSerialization.data(withJSONObject: body), idempotent: idempotent, only: only)
    }

    /// The same with the request body written already.
    func call(_ path: String, json data: Data, idempotent: Bool = false, only: Endpoint? = nil) throws
        -> [String: Any]
    {
        lock.lock()
        let first = preferred
        lock.unlock()
        let order = only.map { [$0] } ?? (0..<endpoints.count).map { endpoints[(first + $0) % endpoints.count] }
        var failures: [String] = []
        for endpoint in order {
            let exchange = HTTPExchange(host: endpoint.host, port: endpoint.port, timeout: timeout)
            let response: HTTPExchange.Response
            do {
                response = try exchange.post(path, body: data)
            } catch let HTTPExchange.Failure.beforeSending(why) {
                failures.append("\(endpoint): \(why)")
                continue
            } catch let HTTPExchange.Failure.afterSending(why) {
                if idempotent {
                    failures.append("\(endpoint): \(why)")
                    continue
                }
                throw StoreError.unreachable(endpoint.description, "\(why); the change may or may not have been made")
            }
            let json = (try? JSONSerialization.jsonObject(with: response.body)) as? [String: Any]
            guard response.status == 200, let json else {
                let message =
                    (json?["message"] as? String) ?? (json?["error"] as? String)
                    ?? String(decoding: response.body.prefix(200), as: UTF8.self)
                // A member without a leader did nothing: ask another. (A timeout or a leader
                // change may have been applied: only reads go on.)
                if message.contains("no leader") || (idempotent && response.status == 503) {
                    failures.append("\(endpoint): \(message)")
                    continue
                }
                throw StoreError.refused(endpoint.description, "\(message) (HTTP \(response.status))")
            }
            if let i = endpoints.firstIndex(of: endpoint) {
                lock.lock()
                preferred = i
                lock.unlock()
            }
            return json
        }
        throw StoreError.unreachable(
            endpoints.map(\.description).joined(separator: ","), failures.joined(separator: "; "))
    }

    // MARK: encoding

    static func b64(_ s: String) -> String { Data(s.utf8).base64EncodedString() }

    /// The range end that covers every key starting with `prefix` (its last byte plus one),
    /// base64: kept as bytes, since it need not be UTF-8.
    static func prefixEnd(_ prefix: String) -> String {
        var bytes = Array(prefix.utf8)
        while let last = bytes.last {
            if last < 0xff {
                bytes[bytes.count - 1] = last + 1
                return Data(bytes).base64EncodedString()
            }
            bytes.removeLast()
        }
        return Data([0]).base64EncodedString()  // every key
    }

    static func revision(_ r: [String: Any]) -> Int64 {
        Int64(((r["header"] as? [String: Any])?["revision"] as? String) ?? "") ?? 0
    }

    static func kvs(_ any: Any?) throws -> [KeyValue] {
        guard let list = any as? [[String: Any]] else { return [] }
        return try list.map { kv in
            guard let k = (kv["key"] as? String).flatMap({ Data(base64Encoded: $0) }) else {
                throw StoreError.badContent(key: "?", "a key that is not base64")
            }
            let key = String(decoding: k, as: UTF8.self)
            let value = (kv["value"] as? String).flatMap { Data(base64Encoded: $0) } ?? Data()
            return KeyValue(
                key: key, value: value, modRevision: Int64((kv["mod_revision"] as? String) ?? "") ?? 0,
                createRevision: Int64((kv["create_revision"] as? String) ?? "") ?? 0)
        }
    }
}
