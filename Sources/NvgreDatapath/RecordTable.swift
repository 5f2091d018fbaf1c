import CNvgre
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Raw access to one policy map, whatever its key and value: what the control plane's diff
/// and apply need (BPFMap's batch extension, and the lookup records' table).
public protocol RawMapAccess {
    var name: String { get }
    var maxEntries: UInt32 { get }
    func rawEntries() throws -> [(key: RawBytes, value: RawBytes)]
    func rawUpdate(_ entries: ArraySlice<(key: RawBytes, value: RawBytes)>) throws
    func rawDelete(_ keys: [RawBytes]) throws
}

extension BPFMap: RawMapAccess {}

/// The lookup records (nvgre_abi.h, nv_record_slot): an open-addressed table in an array
/// map that `lookups` (a one-slot map-in-map) points at. Small changes are written in place,
/// a system call per slot; a large change, growth past half the slots, or many deleted
/// slots build a new table in process-mapped windows and swap it in whole, which readers
/// see at once. Writers of one instance take turns through the head's `writer` word, in
/// this process through a lock. The same calls as a BPFMap of (nv_lookup_key,
/// nv_lookup_val); `maxEntries` is the limit `nvgre up --max-lookups` set.
public final class RecordTable: RawMapAccess, @unchecked Sendable {
    public let name = "lookups"
    let outerFD: Int32
    private let lock = NSLock()
    private var current: Table?
    /// Slots this process freed in `current`: never reused by it (a program may still be
    /// comparing their key).
    private var freed = Set<UInt32>()

    init(outerFD: Int32) { self.outerFD = outerFD }

    /// One table: its map, and its head's page mapped (counts and the writers' turn).
    final class Table {
        let id: UInt32
        let fd: Int32
        let head: UnsafeMutablePointer<nv_record_head>
        let slotsInMap: UInt32

        init(owning fd: Int32) throws {
            var info = bpf_map_info()
            var len = UInt32(MemoryLayout<bpf_map_info>.size)
            guard bpf_obj_get_info_by_fd(fd, &info, &len) == 0 else {
                let e = errno
                close(fd)
                throw DatapathError("read the lookup records' table", errno: e)
            }
            guard let page = mmap(nil, Int(getpagesize()), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0),
                page != MAP_FAILED
            else {
                let e = errno
                close(fd)
                throw DatapathError("map the lookup records' table", errno: e)
            }
            self.fd = fd
            id = info.id
            slotsInMap = info.max_entries
            head = page.assumingMemoryBound(to: nv_record_head.self)
        }

        deinit {
            munmap(head, Int(getpagesize()))
            close(fd)
        }

        var slots: RecordSlots<MapSlots> { RecordSlots(store: MapSlots(fd: fd), head: head) }

        var writerWord: UnsafeMutablePointer<UInt32> {
            (UnsafeMutableRawPointer(head) + MemoryLayout<nv_record_head>.offset(of: \.writer)!)
                .assumingMemoryBound(to: UInt32.self)
        }
    }

    // MARK: reading

    /// The id of the table the programs read now, nil before the first is installed.
    private func installedID() throws -> UInt32? {
        var zero: UInt32 = 0
        var id: UInt32 = 0
        if bpf_map_lookup_elem(outerFD, &zero, &id) == 0 { return id }
        if errno == ENOENT { return nil }
        throw DatapathError("read map lookups", errno: errno)
    }

    /// The installed table (lock held), reopened when another writer swapped it.
    private func table() throws -> Table {
        guard let id = try installedID() else {
            throw DatapathError("read the lookup records", errno: ENOENT, detail: "no table installed yet")
        }
        if let current, current.id == id { return current }
        let fd = bpf_map_get_fd_by_id(id)
        if fd < 0 { throw DatapathError("open the lookup records' table \(id)", errno: errno) }
        current = try Table(owning: fd)
        freed = []
        return current!
    }

    public var maxEntries: UInt32 { lock.withLock { (try? table())?.head.pointee.limit ?? 0 } }
    public var count: Int { lock.withLock { Int((try? table())?.head.pointee.used ?? 0) } }
    /// Record slots of the installed table (kernel memory: 64 bytes each).
    public var slotCount: UInt32 { lock.withLock { (try? table())?.slots.slotCount ?? 0 } }

    public func lookup(_ key: nv_lookup_key) -> nv_lookup_val? {
        lock.withLock { try? table().slots.find(key)?.value }
    }

    /// Every record, read through mapped windows of the table.
    public func rawEntries() throws -> [(key: RawBytes, value: RawBytes)] {
        try lock.withLock {
            let t = try table()
            var out: [(key: RawBytes, value: RawBytes)] = []
            out.reserveCapacity(Int(t.head.pointee.used))
            try Self.forEachRecord(in: t) { out.append((RawBytes(of: $0), RawBytes(of: $1))) }
            return out
        }
    }

    /// Window size for whole-table passes: the process maps 4 MiB of the table at a time,
    /// so its memory does not grow with the table.
    static let windowSlots = 65_536

    /// Visits every mapped window of table `fd` (`slots` slots with the head), in order.
    private static func withWindows(
        fd: Int32, slots: Int, _ body: (_ first: Int, _ window: UnsafeMutableRawPointer, _ count: Int) throws -> Void
    ) throws {
        let stride = MemoryLayout<nv_record_slot>.stride
        var first = 0
        while first < slots {
            let count = min(windowSlots, slots - first)
            let page = Int(getpagesize())
            let bytes = (count * stride + page - 1) / page * page
            guard let window = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, off_t(first * stride)),
                window != MAP_FAILED
            else { throw DatapathError("map the lookup records' table", errno: errno) }
            defer { munmap(window, bytes) }
            try body(first, window, count)
            first += count
        }
    }

    private static func forEachRecord(in t: Table, _ body: (nv_lookup_key, nv_lookup_val) throws -> Void) throws {
        try withWindows(fd: t.fd, slots: Int(t.slotsInMap)) { first, window, count in
            let slots = window.assumingMemoryBound(to: nv_record_slot.self)
            for i in 0..<count where first + i > 0 && slots[i].state == NV_SLOT_USED.rawValue {
                try body(slots[i].key, slots[i].val)
            }
        }
    }

    // MARK: writing

    /// Installs an empty table when there is none (a new instance), with `limit`.
    public func install(limit: UInt32) throws {
        try lock.withLock {
            if try installedID() != nil { return }
            try build(limit: limit, records: 0, turn: 0) { _ in fatalError("no records") }
        }
    }

    public func update(_ key: nv_lookup_key, _ value: nv_lookup_val, flags: UInt64 = UInt64(BPF_ANY)) throws {
        try writing { t in
            if flags == UInt64(BPF_NOEXIST), try t.slots.find(key) != nil {
                throw DatapathError("update lookups", errno: EEXIST)
            }
            let entry = (key: RawBytes(of: key), value: RawBytes(of: value))
            try put(count: 1, entry: { _ in entry }, into: t)
        }
    }

    public func rawUpdate(_ entries: ArraySlice<(key: RawBytes, value: RawBytes)>) throws {
        try update(contentsOf: entries)
    }

    /// Writes many records at once: in place when they are few against the table, else a
    /// new table with them swapped in whole. Inlinable, so that the caller's collection (a
    /// lazy view of a million) is read specialized, not through witness tables per record.
    @inlinable
    public func update<C: Collection>(contentsOf entries: C) throws
    where C.Element == (key: RawBytes, value: RawBytes), C.Index == Int {
        let start = entries.startIndex
        try update(count: entries.count) { entries[start + $0] }
    }

    /// The same with the records given by position, 0 to count - 1.
    public func update(count: Int, entry: (Int) -> (key: RawBytes, value: RawBytes)) throws {
        try writing { t in try put(count: count, entry: entry, into: t) }
    }

    @discardableResult
    public func delete(_ key: nv_lookup_key) throws -> Bool {
        try writing { t in try t.slots.remove(key, freed: &freed) }
    }

    /// Deleting a record that is not there is not an error (a rollback deletes what it may
    /// not have written).
    public func rawDelete(_ keys: [RawBytes]) throws {
        guard !keys.isEmpty else { return }
        try writing { t in
            let slots = t.slots
            if keys.count > max(64, Int(slots.head.pointee.used) / 8) {
                let gone = Set(keys)
                let live = try Self.records(of: t).filter { !gone.contains(RawBytes(of: $0.key)) }
                try build(limit: t.head.pointee.limit, records: live.count, turn: t.head.pointee.writer) {
                    (live[$0].key, live[$0].val)
                }
                return
            }
            for k in keys { _ = try slots.remove(k.load(as: nv_lookup_key.self), freed: &freed) }
            if Int(slots.head.pointee.deleted) > Int(slots.slotCount) / 4 {
                try rebuild(t, adding: 0) { _ in fatalError("no records to add") }
            }
        }
    }

    private func put(count: Int, entry: (Int) -> (key: RawBytes, value: RawBytes), into t: Table) throws {
        let slots = t.slots
        let used = Int(slots.head.pointee.used)
        guard slots.hasRoom(adding: count), count <= max(64, used / 8) else {
            return try rebuild(t, adding: count, entry: entry)
        }
        var i = 0
        while i < count {
            let e = entry(i)
            let key = e.key.load(as: nv_lookup_key.self)
            if t.head.pointee.used >= t.head.pointee.limit, try slots.find(key) == nil { throw full(t) }
            guard try slots.put(key, e.value.load(as: nv_lookup_val.self), freed: &freed) else {
                let first = i
                return try rebuild(t, adding: count - first) { entry(first + $0) }
            }
            i += 1
        }
    }

    private func full(_ t: Table) -> DatapathError {
        DatapathError(
            "update lookups", errno: E2BIG, detail: "the table holds at most \(t.head.pointee.limit) lookup records")
    }

    private static func records(of t: Table) throws -> [(key: nv_lookup_key, val: nv_lookup_val)] {
        var live: [(key: nv_lookup_key, val: nv_lookup_val)] = []
        live.reserveCapacity(Int(t.head.pointee.used))
        try forEachRecord(in: t) { live.append(($0, $1)) }
        return live
    }

    /// A new table with table `t`'s records and `count` more (`entry`, which win over the
    /// same key).
    private func rebuild(_ t: Table, adding count: Int, entry: (Int) -> (key: RawBytes, value: RawBytes)) throws {
        let live = try Self.records(of: t)
        try build(limit: t.head.pointee.limit, records: live.count + count, turn: t.head.pointee.writer) { i in
            if i < live.count { return (live[i].key, live[i].val) }
            let e = entry(i - live.count)
            return (e.key.load(as: nv_lookup_key.self), e.value.load(as: nv_lookup_val.self))
        }
    }

    /// Creates a table holding `records` (later ones replacing earlier ones with the same
    /// key), sized for them, writes it through mapped windows and swaps it in; it becomes
    /// `current`, its turn held by `turn`.
    private func build(
        limit: UInt32, records: Int, turn: UInt32, record: (Int) -> (key: nv_lookup_key, val: nv_lookup_val)
    ) throws {
        var slots = RecordSlots<MemorySlots>.slots(for: records)
        var placement: RecordPlacement?
        var grown = false
        while true {
            placement = RecordPlacement(slots: slots, records: records) { record($0).key }
            if let p = placement {
                // Updates of existing keys made the guess too large: size for what is left.
                let fits = RecordSlots<MemorySlots>.slots(for: p.count)
                if grown || fits >= slots { break }
                slots = fits
                continue
            }
            slots <<= 1
            grown = true
        }
        let p = placement!
        if p.count > Int(limit) {
            throw DatapathError(
                "update lookups", errno: E2BIG, detail: "the table holds at most \(limit) lookup records")
        }
        var opts = bpf_map_create_opts()
        opts.sz = MemoryLayout<bpf_map_create_opts>.size
        opts.map_flags = UInt32(BPF_F_MMAPABLE | BPF_F_INNER_MAP)
        let fd = bpf_map_create(
            BPF_MAP_TYPE_ARRAY, "nv_records", 4, UInt32(MemoryLayout<nv_record_slot>.stride), slots + 1, &opts)
        if fd < 0 { throw DatapathError("create a lookup records' table of \(slots) slots", errno: errno) }
        let table = try Table(owning: fd)
        try Self.withWindows(fd: fd, slots: Int(slots) + 1) { first, window, count in
            let out = window.assumingMemoryBound(to: nv_record_slot.self)
            p.occupant.withUnsafeBufferPointer { occ in
                for i in 0..<count where first + i > 0 {
                    let source = occ[first + i - 1]
                    guard source != 0 else { continue }
                    let r = record(Int(source) - 1)
                    out[i].key = r.key
                    out[i].val = r.val
                    out[i].state = NV_SLOT_USED.rawValue
                }
            }
        }
        var head = nv_record_head()
        head.state = NV_SLOT_HEAD.rawValue
        head.mask = slots - 1
        head.limit = limit
        head.used = UInt32(p.count)
        head.writer = turn
        table.head.pointee = head
        var zero: UInt32 = 0
        var newFD = UInt32(fd)
        try check("install the lookup records' table", bpf_map_update_elem(outerFD, &zero, &newFD, UInt64(BPF_ANY)))
        current = table
        freed = []
    }

    /// Runs `body` on the installed table with this writer's turn: other processes' writers
    /// wait (a turn whose process died is taken over), as do this process's other threads.
    private func writing<R>(_ body: (Table) throws -> R) throws -> R {
        try lock.withLock {
            let me = UInt32(getpid())
            var waited = 0
            while true {
                let t = try table()
                let word = t.writerWord
                let holder = nv_load_acquire_u32(word)
                let taken =
                    nv_cas_u32(word, 0, me) != 0
                    || (holder != 0 && holder != me && kill(pid_t(holder), 0) != 0 && errno == ESRCH
                        && nv_cas_u32(word, holder, me) != 0)
                if taken {
                    if try installedID() != t.id {  // swapped before we took the turn
                        nv_store_release_u32(word, 0)
                        continue
                    }
                    defer {
                        nv_store_release_u32(word, 0)
                        if let now = current, now !== t { nv_store_release_u32(now.writerWord, 0) }
                    }
                    return try body(t)
                }
                waited += 1
                if waited > 30_000 {
                    throw DatapathError(
                        "write the lookup records", errno: EBUSY,
                        detail: "process \(holder) has been writing them for 30 s")
                }
                usleep(1000)
            }
        }
    }
}

/// The slots of the kernel's table, one system call each.
struct MapSlots: RecordSlotStore {
    let fd: Int32

    func slot(_ index: UInt32) throws -> nv_record_slot {
        var k = index
        var s = nv_record_slot()
        try check("read slot \(index) of the lookup records' table", bpf_map_lookup_elem(fd, &k, &s))
        return s
    }

    /// The kernel copies a whole slot in no particular byte order, so the contents go first
    /// under the slot's present state, then the same contents with the new state.
    func publish(_ index: UInt32, _ slot: nv_record_slot) throws {
        var k = index
        var first = slot
        first.state = try self.slot(index).state
        try check("write the lookup records' table", bpf_map_update_elem(fd, &k, &first, UInt64(BPF_ANY)))
        var second = slot
        try check("write the lookup records' table", bpf_map_update_elem(fd, &k, &second, UInt64(BPF_ANY)))
    }
}
