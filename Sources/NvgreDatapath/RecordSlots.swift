import CNvgre

#if canImport(Glibc)
    import Glibc
#endif

/// Where the slots of a lookup records' table are read and written: memory (tests), or the
/// kernel's map one system call per slot (RecordTable's small changes).
protocol RecordSlotStore {
    func slot(_ index: UInt32) throws -> nv_record_slot
    /// Writes a slot's key and value, then its state: a concurrent reader sees either the
    /// old state with the old contents or the new state with the new contents.
    func publish(_ index: UInt32, _ slot: nv_record_slot) throws
}

/// The lookup records' open-addressed table (nvgre_abi.h, nv_record_slot): find, put,
/// remove, in the order the programs rely on. No system calls of its own: the store has
/// the slots, `head` the table's head (slot 0, mapped or in memory).
struct RecordSlots<Store: RecordSlotStore> {
    let store: Store
    let head: UnsafeMutablePointer<nv_record_head>

    static var maxProbe: UInt32 { UInt32(NV_RECORD_MAX_PROBE) }
    var mask: UInt32 { head.pointee.mask }
    var slotCount: UInt32 { head.pointee.mask + 1 }

    /// The slot a probe for `key` visits at step `step` (what the programs' find_record walks).
    static func index(home: UInt32, step: UInt32, mask: UInt32) -> UInt32 { 1 + ((home &+ step) & mask) }

    static func sameKey(_ a: nv_lookup_key, _ b: nv_lookup_key) -> Bool {
        withUnsafeBytes(of: a) { x in withUnsafeBytes(of: b) { x.elementsEqual($0) } }
    }

    /// The slot holding `key`, and its record.
    func find(_ key: nv_lookup_key) throws -> (index: UInt32, value: nv_lookup_val)? {
        var k = key
        let home = nv_record_hash(&k)
        for step in 0..<Self.maxProbe {
            let index = Self.index(home: home, step: step, mask: mask)
            let s = try store.slot(index)
            if s.state == NV_SLOT_EMPTY.rawValue { return nil }
            if s.state == NV_SLOT_USED.rawValue && Self.sameKey(s.key, key) { return (index, s.val) }
        }
        return nil
    }

    /// Writes `key` with `value`. A new key goes into the first free slot of its probe; a
    /// changed one is written whole into a free slot, published, and only then its old slot
    /// freed, so readers see the old record or the new one. Slots in `freed` (freed by this
    /// writer, possibly still being read) are not reused. False when the probe has no free
    /// slot: the table needs rebuilding.
    func put(_ key: nv_lookup_key, _ value: nv_lookup_val, freed: inout Set<UInt32>) throws -> Bool {
        var k = key
        let home = nv_record_hash(&k)
        var existing: nv_record_slot?, existingIndex: UInt32 = 0
        var free: (index: UInt32, wasDeleted: Bool)?
        for step in 0..<Self.maxProbe {
            let index = Self.index(home: home, step: step, mask: mask)
            let s = try store.slot(index)
            if s.state == NV_SLOT_USED.rawValue {
                if existing == nil && Self.sameKey(s.key, key) { (existing, existingIndex) = (s, index) }
            } else if free == nil && !freed.contains(index) {
                free = (index, s.state == NV_SLOT_DELETED.rawValue)
            }
            if s.state == NV_SLOT_EMPTY.rawValue { break }
        }
        if let existing,
            withUnsafeBytes(of: existing.val, { old in withUnsafeBytes(of: value) { old.elementsEqual($0) } })
        {
            return true
        }
        guard let free else { return false }
        var s = nv_record_slot()
        s.state = NV_SLOT_USED.rawValue
        s.key = key
        s.val = value
        try store.publish(free.index, s)
        head.pointee.used += 1
        if free.wasDeleted { head.pointee.deleted -= 1 }
        if var existing {
            existing.state = NV_SLOT_DELETED.rawValue
            try vacate(existingIndex, existing, freed: &freed)
        }
        return true
    }

    /// Frees the slot of `key`; false when there is none.
    func remove(_ key: nv_lookup_key, freed: inout Set<UInt32>) throws -> Bool {
        guard let found = try find(key) else { return false }
        var s = nv_record_slot()
        s.state = NV_SLOT_DELETED.rawValue
        s.key = key
        s.val = found.value
        try vacate(found.index, s, freed: &freed)
        return true
    }

    private func vacate(_ index: UInt32, _ deleted: nv_record_slot, freed: inout Set<UInt32>) throws {
        try store.publish(index, deleted)
        head.pointee.used -= 1
        head.pointee.deleted += 1
        freed.insert(index)
    }

    /// Whether `adding` more records fit without a rebuild: at most half the slots used or
    /// deleted, which keeps probes short.
    func hasRoom(adding: Int) -> Bool {
        Int(head.pointee.used) + Int(head.pointee.deleted) + adding <= Int(slotCount) / 2
    }

    /// The record slots of a table for `records` records: a power of two, at least twice
    /// the records.
    static func slots(for records: Int) -> UInt32 {
        var n = UInt32(NV_RECORD_MIN_SLOTS)
        while Int(n) < 2 * records { n <<= 1 }
        return n
    }
}

/// Where each record of a new table goes, computed in process memory (four bytes a slot)
/// before the table is written in slot order: the same linear probing the programs walk,
/// a later record replacing an earlier one with the same key.
struct RecordPlacement {
    /// Per record slot (0-based): 0 for empty, else the source record's index + 1.
    private(set) var occupant: [UInt32]
    private(set) var count = 0
    let mask: UInt32

    /// Nil when some record lands more than NV_RECORD_MAX_PROBE slots from its home (a
    /// larger table is needed).
    init?(slots: UInt32, records: Int, key: (Int) -> nv_lookup_key) {
        mask = slots - 1
        let mask = self.mask
        var occupant = [UInt32](repeating: 0, count: Int(slots))
        var count = 0
        let limit = RecordSlots<MemorySlots>.maxProbe
        let ok = occupant.withUnsafeMutableBufferPointer { occ -> Bool in
            for i in 0..<records {
                var k = key(i)
                let home = nv_record_hash(&k)
                var placed = false
                for step in 0..<limit {
                    let s = Int((home &+ step) & mask)
                    if occ[s] == 0 {
                        occ[s] = UInt32(i + 1)
                        count += 1
                        placed = true
                        break
                    }
                    if RecordSlots<MemorySlots>.sameKey(key(Int(occ[s]) - 1), k) {
                        occ[s] = UInt32(i + 1)
                        placed = true
                        break
                    }
                }
                if !placed { return false }
            }
            return true
        }
        if !ok { return nil }
        self.occupant = occupant
        self.count = count
    }
}

/// Slots in memory: a mapped window of a new table, or plain memory in tests.
struct MemorySlots: RecordSlotStore {
    let base: UnsafeMutableRawPointer
    func slot(_ index: UInt32) -> nv_record_slot {
        base.load(fromByteOffset: Int(index) * MemoryLayout<nv_record_slot>.stride, as: nv_record_slot.self)
    }
    func publish(_ index: UInt32, _ slot: nv_record_slot) {
        let p = (base + Int(index) * MemoryLayout<nv_record_slot>.stride).assumingMemoryBound(to: nv_record_slot.self)
        p.pointee.key = slot.key
        p.pointee.val = slot.val
        withUnsafeMutablePointer(to: &p.pointee.state) { nv_store_release_u32($0, slot.state) }
    }
}
