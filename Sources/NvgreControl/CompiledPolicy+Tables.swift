import NvgreDatapath
import NvgreUserspace

extension CompiledPolicy {
    /// The compiled policy as the userspace data path's decision core reads it: the same
    /// entries the maps would hold.
    public var decisionTables: DecisionTables {
        var entries: [String: [(key: RawBytes, value: RawBytes)]] = [:]
        for (map, image) in images { entries[map.rawValue] = image.entries.map { (key: $0.key, value: $0.value) } }
        return DecisionTables(entries: entries, floodLists: floodLists)
    }
}
