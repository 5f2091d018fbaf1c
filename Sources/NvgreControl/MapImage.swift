import NvgreDatapath

#if canImport(Glibc)
    import Glibc
#endif

/// The contents of one BPF map as raw keys and values: what the policy wants there
/// (compiled) or what is there now (read back). Diffing two images gives the map operations
/// that turn one into the other, and nothing more.
///
/// The entries of a map all have one key size and one value size, so they are kept packed
/// (keys in one byte array, values in another) behind an open-addressed index of entry
/// numbers: a million lookup records take 56 MB and no allocation each, where a dictionary
/// of RawBytes took 235 MB. Entries keep the order they were added in.
public struct MapImage: Equatable, Sendable {
    private var table: PackedEntries

    public init() { table = PackedEntries(capacity: 0) }

    /// An empty image with room for `capacity` entries.
    public init(reserving capacity: Int) { table = PackedEntries(capacity: capacity) }

    public init(_ entries: [RawBytes: RawBytes]) {
        table = PackedEntries(capacity: entries.count)
        for (k, v) in entries { table.set(k, v) }
    }

    public var count: Int { table.live }

    public subscript(key: RawBytes) -> RawBytes? {
        get { table.find(key).map { table.value(at: $0) } }
        set {
            if !isKnownUniquelyReferenced(&table) { table = table.copy() }
            if let newValue { table.set(key, newValue) } else { table.remove(key) }
        }
    }

    /// Every entry, in the order added (for small maps and tests; large ones use forEach).
    public var entries: [RawBytes: RawBytes] {
        var out = [RawBytes: RawBytes](minimumCapacity: count)
        forEach { out[$0] = $1 }
        return out
    }

    public func forEach(_ body: (RawBytes, RawBytes) throws -> Void) rethrows {
        for i in 0..<table.used where table.isLive(i) { try body(table.key(at: i), table.value(at: i)) }
    }

    /// Entry numbers, for MapChanges to point into an image instead of copying it.
    var slots: Range<Int> { 0..<table.used }
    func isLive(_ slot: Int) -> Bool { table.isLive(slot) }
    func key(at slot: Int) -> RawBytes { table.key(at: slot) }
    func value(at slot: Int) -> RawBytes { table.value(at: slot) }
    func slot(of key: RawBytes) -> Int? { table.find(key) }

    public static func == (a: MapImage, b: MapImage) -> Bool {
        guard a.count == b.count else { return false }
        for i in a.slots where a.isLive(i) {
            guard let j = b.slot(of: a.key(at: i)), b.value(at: j) == a.value(at: i) else { return false }
        }
        return true
    }
}

/// The storage of a MapImage: packed keys and values, a live flag per entry, and an index
/// (linear probing, at most half full) from a key's hash to its entry number + 1.
private final class PackedEntries: @unchecked Sendable {
    var keySize = 0, valueSize = 0
    private var keys = PackedBytes(), values = PackedBytes()
    private var dead: [Bool] = []
    private var index: [Int32]
    private let expected: Int
    var used = 0, live = 0

    init(capacity: Int) {
        expected = capacity
        var slots = 16
        while slots < capacity * 2 { slots <<= 1 }
        index = [Int32](repeating: 0, count: slots)
    }

    func copy() -> PackedEntries {
        let c = PackedEntries(capacity: 0)
        (c.keySize, c.valueSize, c.dead, c.index, c.used, c.live) = (keySize, valueSize, dead, index, used, live)
        c.keys = keys.copy()
        c.values = values.copy()
        return c
    }

    deinit {
        keys.free()
        values.free()
    }

    func isLive(_ i: Int) -> Bool { !dead[i] }

    func key(at i: Int) -> RawBytes { RawBytes(UnsafeRawBufferPointer(start: keys.at(i * keySize), count: keySize)) }

    func value(at i: Int) -> RawBytes {
        RawBytes(UnsafeRawBufferPointer(start: values.at(i * valueSize), count: valueSize))
    }

    /// The index position of `key`, or of the empty slot where it would go.
    @inline(__always)
    private func probe(_ key: RawBytes) -> (position: Int, entry: Int?) {
        let mask = index.count - 1
        var p = Int(truncatingIfNeeded: key.quickHash) & mask
        while true {
            let e = Int(index[p])
            if e == 0 { return (p, nil) }
            if !dead[e - 1], key.count == keySize, key.equals(keys.at((e - 1) * keySize)) { return (p, e - 1) }
            p = (p + 1) & mask
        }
    }

    func find(_ key: RawBytes) -> Int? { used == 0 ? nil : probe(key).entry }

    func set(_ key: RawBytes, _ value: RawBytes) {
        if used == 0 {
            keySize = key.count
            valueSize = value.count
            keys.reserve(expected * keySize)
            values.reserve(expected * valueSize)
            dead.reserveCapacity(expected)
        }
        precondition(key.count == keySize && value.count == valueSize, "one key and value size per map image")
        let (position, entry) = probe(key)
        if let entry {
            value.copy(to: values.at(entry * valueSize))
            return
        }
        keys.append(key)
        values.append(value)
        dead.append(false)
        used += 1
        live += 1
        index[position] = Int32(used)
        if used * 2 > index.count { grow() }
    }

    /// Marks the entry dead; its index slot keeps pointing at it (a dead entry never
    /// matches), so probing past it still works.
    func remove(_ key: RawBytes) {
        guard let i = find(key) else { return }
        dead[i] = true
        live -= 1
    }

    private func grow() {
        index = [Int32](repeating: 0, count: index.count * 2)
        let mask = index.count - 1
        for i in 0..<used {
            var p = Int(truncatingIfNeeded: key(at: i).quickHash) & mask
            while index[p] != 0 { p = (p + 1) & mask }
            index[p] = Int32(i + 1)
        }
    }
}

/// A growable run of bytes that entries are copied into with memcpy.
private struct PackedBytes {
    private var base: UnsafeMutableRawPointer?
    private var capacity = 0
    private(set) var count = 0

    func at(_ offset: Int) -> UnsafeMutableRawPointer { base! + offset }

    mutating func reserve(_ n: Int) {
        guard n > capacity else { return }
        base = realloc(base, n)
        capacity = n
    }

    mutating func append(_ b: RawBytes) {
        if count + b.count > capacity { reserve(max(64, capacity * 2, count + b.count)) }
        b.copy(to: base! + count)
        count += b.count
    }

    func copy() -> PackedBytes {
        var c = PackedBytes()
        c.reserve(count)
        if count > 0 { c.base!.copyMemory(from: base!, byteCount: count) }
        c.count = count
        return c
    }

    func free() { Glibc.free(base) }
}

/// The operations that turn a live map into the desired one. Added and changed entries
/// point into the desired image (and removed ones into the live image) rather than copying
/// them: the first apply of a million records adds a million entries.
public struct MapChanges: Sendable {
    private var desired = MapImage()
    private var live = MapImage()
    private var addedSlots: [Int32] = []
    private var changedSlots: [(desired: Int32, live: Int32)] = []
    private var removedSlots: [Int32] = []

    public init() {}

    public var isEmpty: Bool { addedSlots.isEmpty && changedSlots.isEmpty && removedSlots.isEmpty }
    /// Whether the map was empty before: then everything in it after is what was added.
    public var liveWasEmpty: Bool { live.count == 0 }
    public var total: Int { addedSlots.count + changedSlots.count + removedSlots.count }

    /// New keys, with their values.
    public var added: LazyMapSequence<[Int32], (key: RawBytes, value: RawBytes)> {
        addedSlots.lazy.map { [desired] s in (desired.key(at: Int(s)), desired.value(at: Int(s))) }
    }
    /// The new keys alone.
    public var addedKeys: LazyMapSequence<[Int32], RawBytes> {
        addedSlots.lazy.map { [desired] s in desired.key(at: Int(s)) }
    }
    /// Keys whose value changes: the new value and the one it replaces.
    public var changed:
        LazyMapSequence<[(desired: Int32, live: Int32)], (key: RawBytes, value: RawBytes, old: RawBytes)>
    {
        changedSlots.lazy.map { [desired, live] s in
            (desired.key(at: Int(s.desired)), desired.value(at: Int(s.desired)), live.value(at: Int(s.live)))
        }
    }
    /// Keys to remove, with the value they had.
    public var removed: LazyMapSequence<[Int32], (key: RawBytes, old: RawBytes)> {
        removedSlots.lazy.map { [live] s in (live.key(at: Int(s)), live.value(at: Int(s))) }
    }

    /// What `desired` needs compared with `live`.
    public init(from live: MapImage, to desired: MapImage) {
        self.desired = desired
        self.live = live
        addedSlots.reserveCapacity(max(0, desired.count - live.count))
        for i in desired.slots where desired.isLive(i) {
            if let j = live.count == 0 ? nil : live.slot(of: desired.key(at: i)) {
                if live.value(at: j) != desired.value(at: i) { changedSlots.append((Int32(i), Int32(j))) }
            } else {
                addedSlots.append(Int32(i))
            }
        }
        for j in live.slots where live.isLive(j) && desired.slot(of: live.key(at: j)) == nil {
            removedSlots.append(Int32(j))
        }
    }
}
