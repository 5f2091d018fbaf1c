import Foundation
import NvgrePolicy

/// An agent's side of the store: it lists the state at revision R, hands its host's part
/// on (`apply`), then watches from R+1 and takes each change's items from the watch's
/// events into the items it keeps; each batch (what arrives within 20 ms of the first) is
/// handed on as one change. A new generation (a whole policy written anew) comes through the
/// watch item by item too, before it is switched to. A broken watch, a compaction, a switch
/// it did not see begin, or an unreachable store make it list again, with backoff and
/// jitter, one resync at a time. It never hands on anything but a whole state: while the
/// store is away the host keeps forwarding on the last one, and `status` says since when.
public final class StoreFollower: @unchecked Sendable {
    /// What `nvgre show` and `stats` report about the store.
    public struct Status: Codable, Equatable, Sendable {
        public var store: String
        public var host: String
        /// The store revision of the state applied last (0: none yet).
        public var revision: Int64 = 0
        public var generation: String?
        /// When the store was last read (seconds since 1970; 0: never).
        public var lastSync: Double = 0
        /// When the host's state last changed from the store.
        public var lastChange: Double = 0
        /// Lists of the whole state since start (the first one included).
        public var resyncs = 0
        /// Changes applied.
        public var applies = 0
        /// Whole reads of the store: the first, the resyncs, and a switch to a generation
        /// begun before the last one. Every other change came from the watch's events.
        public var lists = 0
        /// Why the last read or apply failed; nil once one succeeds again.
        public var lastError: String?
        /// VMs that moved from this host moments ago ("VSID CA -> PA"): frames still arriving
        /// here for them go on to their new host until the grace period ends.
        public var movedAway: [String] = []

        /// Seconds since the store was last read.
        public func staleness(now: Double = Date().timeIntervalSince1970) -> Double? {
            lastSync == 0 ? nil : max(0, now - lastSync)
        }
    }

    /// Its name in an instance's state directory.
    public static let statusFile = "store.json"

    private let store: PolicyStore
    private let host: String
    private let apply: (Policy, _ listed: Bool) throws -> Void
    private let report: (Status) -> Void
    private var status: Status
    private var applied: Policy?
    /// The followed generation's items, at store revision `revision`.
    private var items = StoreItems()
    private var generation: String?
    private var revision: Int64 = 0
    private var editedModRevision: Int64 = 0
    /// The revision of the last list: older events are in it already.
    private var listedAt: Int64 = 0
    /// Generations begun since the last list, with every item written to them so far: a
    /// switch to one of them needs no list.
    private var begun: [String: StoreItems] = [:]
    /// A change only a list can bring in (a switch to a generation begun before the list).
    private var needList = false
    /// How long frames for a VM that moved away are sent on after it left.
    public var movedGrace: Double = 30
    /// The VMs that moved away and when their grace ends.
    private var graceUntil: [MovedVM: Date] = [:]

    /// `apply` takes the host's policy (scoped to its routing domains), and whether it was
    /// listed whole (the moment to reconcile with the live maps) rather than changed by the
    /// watch on top of the policy handed on before; `report` gets the status after every
    /// read, change or failure.
    public init(
        store: PolicyStore, address: String, host: String, apply: @escaping (Policy, _ listed: Bool) throws -> Void,
        report: @escaping (Status) -> Void
    ) {
        self.store = store
        self.host = host
        self.apply = apply
        self.report = report
        status = Status(store: address, host: host)
    }

    /// A watch that ended (compacted away, cancelled by the server): list again, after the
    /// usual backoff.
    struct WatchEnded: Error, CustomStringConvertible {
        let why: String
        var description: String { "the watch ended (\(why)); listing again" }
    }

    /// When set, the next watch starts at this revision instead of the one after the list:
    /// a test replays a follower whose watch starts in history compacted meanwhile.
    var nextWatchFrom: Int64?

    /// Follows the store until `stop` returns true (checked at least twice a second).
    public func run(stop: () -> Bool) {
        var backoff = 0.2
        while !stop() {
            do {
                try list(resync: true)
                backoff = 0.2
                let watch = try EtcdWatch(
                    endpoints: store.etcd.endpoints, prefix: StoreLayout.root, from: nextWatchFrom ?? listedAt + 1,
                    timeout: store.etcd.timeout)
                nextWatchFrom = nil
                var lastCheck = Date()
                following: while !stop() {
                    var events = try watch.next(wait: 0.5)
                    if !events.isEmpty {
                        // A batch: what else arrives within 20 ms goes with it.
                        let deadline = Date().addingTimeInterval(0.02)
                        while Date() < deadline, case let more = try watch.next(wait: 0.005), !more.isEmpty {
                            events += more
                        }
                    }
                    var changed = false
                    for e in events {
                        switch e {
                        case let .compacted(r): throw WatchEnded(why: "revision \(r) compacted")
                        case let .canceled(why): throw WatchEnded(why: why)
                        case let .changed(_, changes):
                            for c in changes where c.revision > listedAt { changed = try take(c) || changed }
                        }
                    }
                    let graceEnded = graceUntil.values.contains { $0 <= Date() }
                    if needList {
                        try list(resync: false)
                        lastCheck = Date()
                    } else if changed || graceEnded || (pendingApply && Date().timeIntervalSince(lastCheck) > 2) {
                        applyItems(listed: false)
                        lastCheck = Date()
                    } else if Date().timeIntervalSince(lastCheck) > 5 {
                        // A quiet stream may be a dead one: `edited` is read directly; if it
                        // moved without an event, list and watch again.
                        let edited = try store.etcd.get(StoreLayout.edited)
                        if (edited?.modRevision ?? 0) != editedModRevision { break following }
                        status.lastSync = Date().timeIntervalSince1970
                        report(status)
                        lastCheck = Date()
                    }
                }
            } catch {
                status.lastError = "\(error)"
                report(status)
                let pause = backoff * Double.random(in: 0.5...1.5)
                backoff = min(backoff * 2, 5)
                let until = Date().addingTimeInterval(pause)
                while !stop() && Date() < until { usleep(50_000) }
            }
        }
    }

    /// Takes one key's change from the watch into the items kept; true when the host's
    /// view may have changed. Every write ends by rewriting `edited` in the same
    /// transaction, and etcd sends a transaction's events together, so a batch never ends
    /// in the middle of a write.
    func take(_ c: EtcdWatch.KeyChange) throws -> Bool {
        if c.key == StoreLayout.current {
            // A switch: to a generation seen begun, its items are here already.
            revision = c.revision
            let g = c.value.map { String(decoding: $0, as: UTF8.self) }
            if let g, let built = begun.removeValue(forKey: g) {
                items = built
                generation = g
            } else {
                needList = true
            }
            return true
        }
        if c.key == StoreLayout.edited {
            revision = c.revision
            editedModRevision = c.revision
            return true
        }
        let marks = StoreLayout.root + "begun/"
        if c.key.hasPrefix(marks) {
            // A generation begun: its items follow. The mark goes at the switch, or when an
            // abandoned one is removed.
            let g = String(c.key.dropFirst(marks.count))
            begun[g] = c.value == nil ? nil : StoreItems()
            return false
        }
        guard c.key.hasPrefix(StoreLayout.generations) else { return false }
        let rest = c.key.dropFirst(StoreLayout.generations.count)
        guard let slash = rest.firstIndex(of: "/") else { return false }
        let g = String(rest[..<slash])
        let key = String(rest[rest.index(after: slash)...])
        if key.hasPrefix(".") { return false }  // a generation's own marks
        if g == generation {
            try items.set(key, c.value, storeKey: c.key)
            return true
        }
        try begun[g]?.set(key, c.value, storeKey: c.key)
        return false
    }

    /// The last state read could not be applied (or was refused): tried again every 2 s.
    private var pendingApply = false

    /// Reads the state whole, then hands the host's part on when it changed.
    func list(resync: Bool) throws {
        let snapshot = try store.read()
        items = snapshot.decoded
        generation = snapshot.generation
        revision = snapshot.revision
        listedAt = snapshot.revision
        editedModRevision = snapshot.editedModRevision
        begun = [:]
        needList = false
        status.lists += 1
        if resync { status.resyncs += 1 }
        applyItems(listed: true)
    }

    /// Hands the host's part of the items on when it changed.
    private func applyItems(listed: Bool) {
        var policy = items.policy(forHost: host).scopedToItsDomains
        // A VM that just left this host: frames for it go on to its new host for a while.
        let now = Date()
        if let applied {
            for vm in policy.vmsMovedAway(since: applied) where graceUntil[vm] == nil {
                graceUntil[vm] = now.addingTimeInterval(movedGrace)
            }
        }
        let elsewhere = policy.elsewhere
        graceUntil = graceUntil.filter { $0.value > now && elsewhere.contains($0.key) }
        policy.movedAway = Set(graceUntil.keys)
        // An empty store, or none of this host's sections (a name mistyped, a host not yet
        // written): nothing is applied rather than emptying the maps.
        let refusal: String? =
            generation == nil
            ? "the store holds no policy yet"
            : !items.hasHost(host)
                ? "the store has nothing for host \(host) (its provider addresses and ports)" : nil
        if policy != applied {
            do {
                if let refusal { throw StoreError.badContent(key: StoreLayout.root, refusal) }
                try apply(policy, listed)
            } catch {
                // Not applied (all or nothing): the host keeps the last state; tried again.
                status.lastError = "generation \(generation ?? "none") not applied: \(error)"
                status.lastSync = Date().timeIntervalSince1970
                pendingApply = true
                report(status)
                return
            }
            applied = policy
            status.applies += 1
            status.lastChange = Date().timeIntervalSince1970
        }
        pendingApply = false
        status.movedAway = policy.lookupRecords.filter {
            policy.movedAway.contains(MovedVM(vsid: $0.vsid, customerAddress: $0.customerAddress))
        }.map { "\($0.vsid) \($0.customerAddress) -> \($0.providerAddress)" }.sorted()
        status.revision = revision
        status.generation = generation
        status.lastSync = Date().timeIntervalSince1970
        status.lastError = nil
        report(status)
    }
}
