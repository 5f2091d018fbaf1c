import CNvgre
import NvgreDatapath

/// Raw access to one policy map (BPFMap's batch extension), whatever its key and value.
protocol RawMapAccess {
    var name: String { get }
    var maxEntries: UInt32 { get }
    func rawEntries() throws -> [(key: RawBytes, value: RawBytes)]
    func rawUpdate(_ entries: [(key: RawBytes, value: RawBytes)]) throws
    func rawDelete(_ keys: [RawBytes]) throws
}

extension BPFMap: RawMapAccess {}

extension DatapathMaps {
    func raw(_ m: PolicyMap) -> RawMapAccess {
        switch m {
        case .localPAs: return localPAs
        case .subnets: return subnets
        case .lookups: return lookups
        case .routes: return routes
        case .portAddresses: return portAddresses
        case .ports: return ports
        case .config: return config
        }
    }

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
    static let removalOrder: [PolicyMap] = [.ports, .portAddresses, .routes, .lookups, .subnets, .localPAs]
    static let writeOrder: [PolicyMap] = [.localPAs, .subnets, .lookups, .routes, .portAddresses, .ports, .config]
}

/// Applies a plan and remembers every old value it overwrote, so that `rollBack` can put
/// the maps back as they were when anything later fails.
final class MapTransaction {
    private let maps: DatapathMaps
    private var journal: [(map: PolicyMap, key: RawBytes, old: RawBytes?)] = []
    private let progress: (String) -> Void

    init(maps: DatapathMaps, progress: @escaping (String) -> Void = { _ in }) {
        self.maps = maps
        self.progress = progress
    }

    func apply(_ plan: MapPlan) throws {
        for m in MapPlan.removalOrder {
            guard let c = plan.changes[m], !c.removed.isEmpty else { continue }
            journal.append(contentsOf: c.removed.map { (m, $0.key, $0.old) })
            try maps.raw(m).rawDelete(c.removed.map(\.key))
        }
        for m in MapPlan.writeOrder {
            guard let c = plan.changes[m] else { continue }
            let writes = c.added + c.changed.map { ($0.key, $0.value) }
            guard !writes.isEmpty else { continue }
            journal.append(contentsOf: c.added.map { (m, $0.key, nil) })
            journal.append(contentsOf: c.changed.map { (m, $0.key, $0.old) })
            // Large writes go in slices so that a terminal can show progress.
            let slice = 131_072
            var start = 0
            while start < writes.count {
                let end = min(start + slice, writes.count)
                try maps.raw(m).rawUpdate(Array(writes[start..<end]))
                if writes.count > slice { progress("\(m.noun): \(end)/\(writes.count) written") }
                start = end
            }
        }
    }

    /// Undoes everything applied so far, newest first. Returns the problems it met (each
    /// undo step is tried even when one fails).
    @discardableResult
    func rollBack() -> [String] {
        var problems: [String] = []
        var deletes: [PolicyMap: [RawBytes]] = [:]
        var restores: [PolicyMap: [(key: RawBytes, value: RawBytes)]] = [:]
        for j in journal.reversed() {
            if let old = j.old { restores[j.map, default: []].append((j.key, old)) } else { deletes[j.map, default: []].append(j.key) }
        }
        for m in MapPlan.removalOrder + [.config] {
            do { try maps.raw(m).rawDelete(deletes[m] ?? []) } catch { problems.append("\(error)") }
        }
        for m in MapPlan.writeOrder {
            do { try maps.raw(m).rawUpdate(restores[m] ?? []) } catch { problems.append("\(error)") }
        }
        journal.removeAll()
        return problems
    }
}
