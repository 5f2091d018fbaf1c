import CNvgre
import NvgreDatapath

/// Raw access to one policy map (BPFMap's batch extension), whatever its key and value.
protocol RawMapAccess {
    var name: String { get }
    var maxEntries: UInt32 { get }
    func rawEntries() throws -> [(key: RawBytes, value: RawBytes)]
    func rawUpdate(_ entries: ArraySlice<(key: RawBytes, value: RawBytes)>) throws
    func rawDelete(_ keys: [RawBytes]) throws
}

extension BPFMap: RawMapAccess {}

extension DatapathMaps {
    func raw(_ m: PolicyMap) -> RawMapAccess { raw(m.rawValue) }

    /// What the policy maps hold now.
    public func liveImages(only: [PolicyMap] = PolicyMap.allCases) throws -> [PolicyMap: MapImage] {
        var out: [PolicyMap: MapImage] = [:]
        for m in only {
            let entries = try raw(m).rawEntries()
            var image = [RawBytes: RawBytes](minimumCapacity: entries.count)
            for e in entries { image[e.key] = e.value }
            out[m] = MapImage(image)
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
            try maps.raw(m).rawDelete(c.removed.map(\.key))
        }
        for m in MapPlan.writeOrder {
            guard let c = plan.changes[m] else { continue }
            if !c.added.isEmpty {
                started.append((m, .add))
                try write(m, c.added[...])
            }
            if !c.changed.isEmpty {
                started.append((m, .change))
                try write(m, c.changed.map { ($0.key, $0.value) }[...])
            }
        }
    }

    /// Large writes go in slices so that a terminal can show progress.
    private func write(_ m: PolicyMap, _ entries: ArraySlice<(key: RawBytes, value: RawBytes)>) throws {
        let slice = 131_072
        var start = entries.startIndex
        while start < entries.endIndex {
            let end = min(start + slice, entries.endIndex)
            try maps.raw(m).rawUpdate(entries[start..<end])
            if entries.count > slice { progress("\(m.noun): \(end - entries.startIndex)/\(entries.count) written") }
            start = end
        }
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
                case .remove: try maps.raw(m).rawUpdate(c.removed.map { ($0.key, $0.old) }[...])
                case .add: try maps.raw(m).rawDelete(c.added.map(\.key))
                case .change: try maps.raw(m).rawUpdate(c.changed.map { ($0.key, $0.old) }[...])
                }
            } catch {
                problems.append("\(error)")
            }
        }
        started.removeAll()
        return problems
    }
}
