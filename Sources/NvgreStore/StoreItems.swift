import Foundation
import NvgrePolicy

/// The items of one generation, decoded, by key relative to the generation. A reader builds
/// them from a list; a follower keeps them between changes and sets what each watch event
/// brings, so that a change costs the items it touches, not the size of the store.
struct StoreItems: Sendable {
    /// Lookup records, the many items, kept as records; every other item as a policy.
    private(set) var records: [String: LookupRecord] = [:]
    private(set) var others: [String: Policy] = [:]

    var count: Int { records.count + others.count }

    /// Sets the item at `key` from its stored bytes; nil removes it. `storeKey` (the whole
    /// key) names a value that is not a policy item.
    mutating func set(_ key: String, _ value: Data?, storeKey: @autoclosure () -> String) throws {
        guard let value else {
            records[key] = nil
            others[key] = nil
            return
        }
        let bytes = [UInt8](value)
        if let record = PolicyDocument.singleRecord(bytes) {
            others[key] = nil
            records[key] = record
            return
        }
        do {
            let item = try PolicyDocument.decode(bytes: bytes, validate: false)
            records[key] = nil
            others[key] = item
        } catch {
            throw StoreError.badContent(key: storeKey(), "not a policy item: \(error)")
        }
    }

    /// Whether `host` has sections (its provider addresses, ports...).
    func hasHost(_ host: String) -> Bool {
        let prefix = "host/\(host)/"
        return others.keys.contains { $0.hasPrefix(prefix) } || records.keys.contains { $0.hasPrefix(prefix) }
    }

    /// The shared tables and each host's sections, every section in key order (the order a
    /// list returns them in, so that the same items always make an equal policy).
    func assembled(hosts wanted: (String) -> Bool = { _ in true }) -> (shared: Policy, hosts: [String: Policy]) {
        var shared = Policy()
        var hosts: [String: Policy] = [:]
        func add(_ key: String, _ item: Policy) {
            if let host = StoreLayout.host(ofItem: key[...]) {
                if !wanted(host) { return }
                hosts[host, default: Policy()].append(item)
            } else {
                shared.append(item)
            }
        }
        for key in others.keys.sorted() { add(key, others[key]!) }
        shared.lookupRecords.reserveCapacity(records.count)
        for key in records.keys.sorted() {
            let r = records[key]!
            if key.hasPrefix("host/") {
                var one = Policy()
                one.lookupRecords = [r]
                add(key, one)
            } else {
                shared.lookupRecords.append(r)
            }
        }
        return (shared, hosts)
    }

    /// What host `name` runs: the shared tables and its own sections.
    func policy(forHost name: String?) -> Policy {
        let (shared, hosts) = assembled(hosts: { $0 == name })
        var p = shared
        if let name, let own = hosts[name] { p.append(own) }
        return p
    }
}
