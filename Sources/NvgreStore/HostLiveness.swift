import Foundation

/// A host's liveness key (`alive/<host>`) on a lease: put while the agent runs, renewed a
/// few times per TTL, gone by itself a TTL after the agent stops renewing it (a crash, a
/// host that died). Only the key is on the lease: records and a host's sections never are,
/// so losing a host erases no tenant.
public final class HostLiveness: @unchecked Sendable {
    /// What the key holds: since when the agent runs, and which process.
    public struct Value: Codable, Equatable, Sendable {
        public var since: Double
        public var pid: Int32
        public init(since: Double, pid: Int32) {
            self.since = since
            self.pid = pid
        }
    }

    private let etcd: EtcdClient
    private let key: String
    private let ttl: Int
    private let value: Data

    public init(etcd: EtcdClient, host: String, ttl: Int = 10) {
        self.etcd = etcd
        key = StoreLayout.alive(host)
        self.ttl = ttl
        value = (try? JSONEncoder().encode(Value(since: Date().timeIntervalSince1970, pid: getpid()))) ?? Data()
    }

    /// Keeps the key until `stop` returns true; `failed` hears why a round did not (the next
    /// round tries again, with a new lease if the old one is gone).
    public func run(stop: () -> Bool, failed: (String) -> Void = { _ in }) {
        var lease: Int64?
        while !stop() {
            do {
                if let id = lease, try etcd.keepAlive(id) > 0 {
                    // renewed
                } else {
                    let id = try etcd.grantLease(ttl: ttl)
                    try etcd.put(key, value, lease: id)
                    lease = id
                }
            } catch {
                failed("\(error)")
            }
            // A third of the TTL between renewals: two may fail before the key goes.
            let until = Date().addingTimeInterval(Double(ttl) / 3)
            while !stop() && Date() < until { usleep(100_000) }
        }
    }

    /// The hosts whose key is there now, with what it holds.
    public static func alive(in etcd: EtcdClient) throws -> [String: Value] {
        var out: [String: Value] = [:]
        let prefix = StoreLayout.root + "alive/"
        for kv in try etcd.range(prefix: prefix).kvs {
            out[String(kv.key.dropFirst(prefix.count))] =
                (try? JSONDecoder().decode(Value.self, from: kv.value)) ?? Value(since: 0, pid: 0)
        }
        return out
    }
}
