import Foundation
import NvgrePolicy

/// The desired state of every host, in etcd (StoreLayout): read whole at one revision,
/// changed all or nothing. Writers serialize on one key (`edited`): a write based on a
/// snapshot that someone else has changed since is refused (StoreError.conflict) and
/// nothing of it is visible.
public final class PolicyStore: @unchecked Sendable {
    public let etcd: EtcdClient

    public init(_ etcd: EtcdClient) { self.etcd = etcd }

    /// The state as read at one store revision.
    public struct Snapshot: Sendable {
        /// The store revision it was read at.
        public let revision: Int64
        /// The generation readers use; nil: nothing was ever applied.
        public let generation: String?
        let currentModRevision: Int64
        let editedModRevision: Int64
        /// The tables every host shares.
        public var shared: Policy
        /// Each host's provider addresses and ports, by host name.
        public var hosts: [String: Policy]
        /// The item keys and values read (relative to the generation).
        let items: [String: Data]
        /// The same items decoded (what a follower keeps).
        let decoded: StoreItems

        /// What host `name` runs: the shared tables and its own sections.
        public func policy(forHost name: String?) -> Policy {
            var p = shared
            if let name, let own = hosts[name] { p.append(own) }
            return p
        }
    }

    /// Reads the current generation whole, at one revision.
    public func read() throws -> Snapshot {
        let current = try etcd.range(prefix: StoreLayout.current)
        let at = current.revision
        let currentKV = current.kvs.first { $0.key == StoreLayout.current }
        let edited = try etcd.range(prefix: StoreLayout.edited, revision: at).kvs.first { $0.key == StoreLayout.edited }
        guard let currentKV else {
            return Snapshot(
                revision: at, generation: nil, currentModRevision: 0, editedModRevision: edited?.modRevision ?? 0,
                shared: Policy(), hosts: [:], items: [:], decoded: StoreItems())
        }
        let generation = String(decoding: currentKV.value, as: UTF8.self)
        guard !generation.isEmpty, !generation.contains("/") else {
            throw StoreError.badContent(key: StoreLayout.current, "'\(generation)' is not a generation name")
        }
        let prefix = StoreLayout.generations + generation + "/"
        let kvs = try etcd.range(prefix: prefix, revision: at).kvs
        var decoded = StoreItems()
        var items: [String: Data] = [:]
        for kv in kvs {
            let key = String(kv.key.dropFirst(prefix.count))
            if key.hasPrefix(".") { continue }  // the generation's own marks
            try decoded.set(key, kv.value, storeKey: kv.key)
            items[key] = kv.value
        }
        let (shared, hosts) = decoded.assembled()
        return Snapshot(
            revision: at, generation: generation, currentModRevision: currentKV.modRevision,
            editedModRevision: edited?.modRevision ?? 0, shared: shared, hosts: hosts, items: items,
            decoded: decoded)
    }

    /// What a write changed, in items.
    public struct Change: Equatable, Sendable {
        public var added = 0
        public var changed = 0
        public var removed = 0
        public var generation = ""
        /// The store's revision once written (an agent that has read at this revision or
        /// later has the change); the revision read when nothing was written.
        public var revision: Int64 = 0
        /// Written as a new generation (a whole policy, or more than a transaction holds).
        public var newGeneration = false
        public var nothing: Bool { added == 0 && changed == 0 && removed == 0 }
    }

    /// Makes `shared` the shared tables and `hosts` the given hosts' sections (other hosts
    /// keep theirs), on top of `base`. Every host's whole policy is validated first (a
    /// PolicyErrors names what is wrong, nothing is written). A few changed items are written
    /// in place in one transaction; more, or a store with no generation yet, as a new
    /// generation switched to at once. `dryRun`: validated and counted only.
    public func write(
        shared: Policy, hosts changedHosts: [String: Policy], basedOn base: Snapshot, dryRun: Bool = false
    )
        throws -> Change
    {
        var hosts = base.hosts
        for (name, p) in changedHosts { hosts[name] = p }
        // Every host's view must hold; with no host yet, the shared tables on their own.
        for name in hosts.keys.sorted() {
            var whole = shared
            whole.append(hosts[name]!)
            do {
                _ = try whole.validated()
            } catch let e as PolicyErrors {
                throw PolicyErrors(
                    errors: e.errors.map { PolicyError("host \(name): \($0.field)", $0.value, $0.allowed) })
            }
        }
        if hosts.isEmpty { _ = try shared.validated() }

        var items: [String: Data] = [:]
        for (k, v) in try StoreLayout.items(of: shared) { items[k] = v }
        for (name, p) in hosts {
            for (k, v) in try StoreLayout.items(of: p, host: name) { items[k] = v }
        }
        var change = Change()
        var puts: [(String, Data)] = []
        var deletes: [String] = []
        for (k, v) in items.sorted(by: { $0.key < $1.key }) {
            if let old = base.items[k] {
                if old != v {
                    change.changed += 1
                    puts.append((k, v))
                }
            } else {
                change.added += 1
                puts.append((k, v))
            }
        }
        for k in base.items.keys.sorted() where items[k] == nil {
            change.removed += 1
            deletes.append(k)
        }
        change.generation = base.generation ?? ""
        change.revision = base.revision
        if dryRun || change.nothing { return change }

        let guards: [EtcdClient.Compare] = [
            .modRevision(StoreLayout.current, equals: base.currentModRevision),
            .modRevision(StoreLayout.edited, equals: base.editedModRevision)
        ]
        let stamp = Data("\(base.revision)".utf8)
        if let g = base.generation, puts.count + deletes.count + 1 <= Self.transactionLimit {
            let prefix = StoreLayout.generations + g + "/"
            let ops: [EtcdClient.Operation] =
                puts.map { .put(prefix + $0.0, $0.1) } + deletes.map { .delete(prefix + $0) }
                + [.put(StoreLayout.edited, stamp)]
            let written = try etcd.transaction(if: guards, then: ops)
            guard written.succeeded else { throw StoreError.conflict("read at revision \(base.revision)") }
            change.revision = written.revision
            return change
        }
        // A new generation: its items written first (no reader looks there yet), then one
        // transaction switches `current` to it if nobody wrote meanwhile.
        let g = "\(base.revision)-\(UInt32.random(in: 0...UInt32.max))"
        let prefix = StoreLayout.generations + g + "/"
        let begun = StoreLayout.begun(g)
        let begunRevision = try etcd.put(begun, Data("\(Int(Date().timeIntervalSince1970))".utf8))
        let all = items.sorted { $0.key < $1.key }
        let batches = stride(from: 0, to: all.count, by: Self.transactionLimit).map {
            all[$0..<min($0 + Self.transactionLimit, all.count)]
        }
        try concurrently(batches.count) { i in
            _ = try self.etcd.transaction(if: [], then: batches[i].map { .put(prefix + $0.key, $0.value) })
        }
        // The switch also removes the old generation and the mark, in the same transaction.
        let switched = try etcd.transaction(
            if: guards + [.modRevision(begun, equals: begunRevision)],
            then: [.put(StoreLayout.current, Data(g.utf8)), .put(StoreLayout.edited, stamp), .delete(begun)]
                + (base.generation.map { [.deletePrefix(StoreLayout.generations + $0 + "/")] } ?? []))
        guard switched.succeeded else {
            // Removed unless it is current after all (an earlier attempt of this very switch).
            _ = try? etcd.transaction(
                if: [.valueIsNot(StoreLayout.current, Data(g.utf8))], then: [.deletePrefix(prefix), .delete(begun)])
            throw StoreError.conflict("read at revision \(base.revision)")
        }
        try? removeAbandonedGenerations(keeping: g)
        change.generation = g
        change.newGeneration = true
        change.revision = switched.revision
        return change
    }

    /// etcd's default --max-txn-ops.
    public static let transactionLimit = 128

    /// Writes in flight at once while a generation is written: etcd commits concurrent
    /// requests together (one consensus round and one fsync for many), and no reader looks
    /// at a generation before the switch, so the order of its writes does not matter.
    static let writesInFlight = 8

    /// Runs `body(0..<count)` on `writesInFlight` threads; the first error stops the rest
    /// from starting and is thrown.
    private func concurrently(_ count: Int, _ body: (Int) throws -> Void) throws {
        let state = NSLock()
        nonisolated(unsafe) var next = 0
        nonisolated(unsafe) var failure: Error?
        DispatchQueue.concurrentPerform(iterations: min(Self.writesInFlight, count)) { _ in
            while true {
                state.lock()
                let i = next
                next += 1
                let stop = failure != nil || i >= count
                state.unlock()
                if stop { return }
                do {
                    try body(i)
                } catch {
                    state.withLock { failure = failure ?? error }
                }
            }
        }
        if let failure { throw failure }
    }

    /// Generations a writer began more than ten minutes ago and never switched to (it died):
    /// removed. A writer still at work on one is younger than that.
    func removeAbandonedGenerations(keeping: String) throws {
        let now = Int(Date().timeIntervalSince1970)
        for mark in try etcd.range(prefix: StoreLayout.root + "begun/").kvs {
            let g = String(mark.key.dropFirst((StoreLayout.root + "begun/").count))
            let started = Int(String(decoding: mark.value, as: UTF8.self)) ?? 0
            guard g != keeping, now - started > 600 else { continue }
            // Only if the mark is unchanged and the generation did not become current.
            _ = try etcd.transaction(
                if: [.modRevision(mark.key, equals: mark.modRevision), .valueIsNot(StoreLayout.current, Data(g.utf8))],
                then: [.deletePrefix(StoreLayout.generations + g + "/"), .delete(mark.key)])
        }
    }
}
