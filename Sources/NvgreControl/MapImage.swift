import NvgreDatapath

/// The contents of one BPF map as raw keys and values: what the policy wants there
/// (compiled) or what is there now (read back). Diffing two images gives the map operations
/// that turn one into the other, and nothing more.
public struct MapImage: Equatable, Sendable {
    public var entries: [RawBytes: RawBytes]

    public init(_ entries: [RawBytes: RawBytes] = [:]) { self.entries = entries }

    public var count: Int { entries.count }

    public subscript(key: RawBytes) -> RawBytes? {
        get { entries[key] }
        set { entries[key] = newValue }
    }
}

/// The operations that turn a live map into the desired one.
public struct MapChanges: Sendable {
    /// New keys, with their values.
    public var added: [(key: RawBytes, value: RawBytes)] = []
    /// Keys whose value changes: the new value and the one it replaces.
    public var changed: [(key: RawBytes, value: RawBytes, old: RawBytes)] = []
    /// Keys to remove, with the value they had.
    public var removed: [(key: RawBytes, old: RawBytes)] = []

    public init() {}

    public var isEmpty: Bool { added.isEmpty && changed.isEmpty && removed.isEmpty }
    public var total: Int { added.count + changed.count + removed.count }

    /// What `desired` needs compared with `live`.
    public init(from live: MapImage, to desired: MapImage) {
        added.reserveCapacity(max(0, desired.count - live.count))
        for (k, v) in desired.entries {
            if let old = live.entries[k] {
                if old != v { changed.append((k, v, old)) }
            } else {
                added.append((k, v))
            }
        }
        for (k, old) in live.entries where desired.entries[k] == nil { removed.append((k, old)) }
    }
}
