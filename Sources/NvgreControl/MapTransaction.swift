import CNvgre
import Foundation
import NvgreDatapath

extension DatapathMaps {
    func raw(_ m: PolicyMap) -> RawMapAccess { raw(m.rawValue) }

    /// What the policy maps hold now.
    public func liveImages(only: [PolicyMap] = PolicyMap.allCases) throws -> [PolicyMap: MapImage] {
        var out: [PolicyMap: MapImage] = [:]
        for m in only {
            let entries = try raw(m).rawEntries()
            var image = MapImage(reserving: entries.count)
            for e in entries { image[e.key] = e.value }
            out[m] = image
        }
        return out
    }
}

/// The changes that take the live maps to a compiled policy, applied all or nothing.
public struct MapPlan {
    public var changes: [PolicyMap: MapChanges] = [:]

    public init(live: [PolicyMap: MapImage], desired: [PolicyMap: MapImage]) {
        for m in PolicyMap.allCases {
            changes[m] = MapChanges(from: live[m] ?? MapImage(), to: desired[m] ?? MapImage())
        }
    }

    public var isEmpty: Bool { changes.values.allSatisfy(\.isEmpty) }
    public var total: Int { changes.values.reduce(0) { $0 + $1.total } }

    /// Removals go first, dependents before what they depend on (ports before their
    /// addresses and records, records before their subnet), so that a map never holds more
    /// than max(live, desired) entries; additions and changes then go in the other order, so
    /// that nothing points at an entry that is not there yet.
    static let removalOrder: [PolicyMap] = [
        .infrastructure, .services, .gatewayRouted, .gatewayPrefixes, .gatewayDomains, .externalAddresses, .ports,
        .portAddresses, .routes,
        .lookups, .subnets, .localPAs
    ]
    static let writeOrder: [PolicyMap] = [
        .localPAs, .subnets, .lookups, .routes, .portAddresses, .ports, .config,
        .externalAddresses, .gatewayPrefixes, .gatewayRouted, .gatewayDomains, .services, .infrastructure
    ]
}

/// Applies a plan step by step and remembers which steps it started, so that `rollBack`
/// can put the maps back as they were when anything later fails. The plan itself holds the
/// old values, so no per-entry journal is kept (a million records stay cheap).
final class MapTransaction {
    private enum Phase { case remove, add, change }
    private let maps: DatapathMaps
    private var plan = MapPlan(live: [:], desired: [:])
    private var started: [(map: PolicyMap, phase: Phase)] = []
    private let progress: (String) -> Void

    init(maps: DatapathMaps, progress: @escaping (String) -> Void = { _ in }) {
        self.maps = maps
        self.progress = progress
    }

    func apply(_ plan: MapPlan) throws {
        self.plan = plan
        for m in MapPlan.removalOrder {
            guard let c = plan.changes[m], !c.removed.isEmpty else { continue }
            started.append((m, .remove))
            try maps.raw(m).rawDelete(Array(c.removed.map(\.key)))
        }
        for m in MapPlan.writeOrder {
            guard let c = plan.changes[m] else { continue }
            if !c.added.isEmpty {
                started.append((m, .add))
                try write(m, c.added)
            }
            if !c.changed.isEmpty {
                started.append((m, .change))
                try write(m, c.changed.map { (key: $0.key, value: $0.value) })
            }
        }
    }

    /// Large writes go in slices gathered from the images they point into (no copy of the
    /// whole change), on two threads when there are many: the kernel's inserts into a hash
    /// map (an element allocated each) are most of a million-record apply, and scale with
    /// cores. A terminal sees progress.
    private func write<C: Collection>(_ m: PolicyMap, _ entries: C) throws
    where C.Element == (key: RawBytes, value: RawBytes), C.Index == Int {
        let map = maps.raw(m)
        // The lookup records' table takes the change at once (a large one becomes a new table).
        if let table = map as? RecordTable {
            progress("\(m.noun): \(entries.count) being written")
            return try table.update(contentsOf: entries)
        }
        let slice = 65_536
        let workers = entries.count >= 4 * slice ? min(2, ProcessInfo.processInfo.activeProcessorCount) : 1
        let share = (entries.count + workers - 1) / workers
        let lock = NSLock()
        var firstError: Error?
        var done = 0
        let total = entries.count
        DispatchQueue.concurrentPerform(iterations: workers) { w in
            let start = entries.startIndex + w * share
            let end = min(start + share, entries.endIndex)
            guard start < end else { return }
            var batch: [(key: RawBytes, value: RawBytes)] = []
            batch.reserveCapacity(min(slice, end - start))
            var i = start
            while i < end {
                batch.removeAll(keepingCapacity: true)
                let stop = min(i + slice, end)
                while i < stop {
                    batch.append(entries[i])
                    i += 1
                }
                do {
                    try map.rawUpdate(batch[...])
                } catch {
                    lock.withLock { if firstError == nil { firstError = error } }
                    return
                }
                let failed = lock.withLock { () -> Bool in
                    done += batch.count
                    if total > slice { progress("\(m.noun): \(done)/\(total) written") }
                    return firstError != nil
                }
                if failed { return }
            }
        }
        if let firstError { throw firstError }
    }

    /// Undoes every started step, newest first (a step that failed half-way is undone
    /// whole: deleting a key not written yet is not an error). Returns the problems it met;
    /// every step is tried even when one fails.
    @discardableResult
    func rollBack() -> [String] {
        var problems: [String] = []
        for (m, phase) in started.reversed() {
            guard let c = plan.changes[m] else { continue }
            do {
                switch phase {
                case .remove: try maps.raw(m).rawUpdate(Array(c.removed.map { (key: $0.key, value: $0.old) })[...])
                case .add: try maps.raw(m).rawDelete(Array(c.added.map(\.key)))
                case .change: try maps.raw(m).rawUpdate(Array(c.changed.map { (key: $0.key, value: $0.old) })[...])
                }
            } catch {
                problems.append("\(error)")
            }
        }
        started.removeAll()
        return problems
    }
}
