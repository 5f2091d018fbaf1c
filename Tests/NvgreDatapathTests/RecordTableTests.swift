import CNvgre
import Foundation
import NvgreWire
import Testing

@testable import NvgreDatapath

/// The lookup records' open-addressed table: the probe rules on plain memory, then the
/// kernel's table as the programs read it while it grows, shrinks, changes under their
/// feet and is written by two writers at once.
@Suite(.serialized)
struct RecordTableTests {
    /// A table in plain memory with `slots` record slots.
    final class MemoryTable {
        let base: UnsafeMutableRawPointer
        let slots: RecordSlots<MemorySlots>

        init(slots: UInt32) {
            let bytes = (Int(slots) + 1) * MemoryLayout<nv_record_slot>.stride
            base = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
            base.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
            let head = base.assumingMemoryBound(to: nv_record_head.self)
            head.pointee.state = NV_SLOT_HEAD.rawValue
            head.pointee.mask = slots - 1
            head.pointee.limit = slots
            self.slots = RecordSlots(store: MemorySlots(base: base), head: head)
        }
        deinit { base.deallocate() }
    }

    static func key(_ i: Int, vsid: UInt32 = 5001) -> nv_lookup_key {
        nv_lookup_key(vsid: vsid, ca: IPAddress(v4: [10, UInt8(i >> 16 & 0xff), UInt8(i >> 8 & 0xff), UInt8(i & 0xff)]))
    }

    static func value(_ pa: IPAddress, _ i: Int = 0) -> nv_lookup_val {
        nv_lookup_val(pa: pa, mac: MACAddress([2, 0, 0, UInt8(i >> 16 & 0xff), UInt8(i >> 8 & 0xff), UInt8(i & 0xff)]))
    }

    @Test func slotsAreFoundChangedAndFreedAsTheProgramsProbeThem() throws {
        let t = MemoryTable(slots: 4096)
        var freed = Set<UInt32>()
        for i in 0..<1500 { #expect(try t.slots.put(Self.key(i), Self.value("198.18.0.2", i), freed: &freed)) }
        #expect(t.slots.head.pointee.used == 1500)
        for i in 0..<1500 { #expect(try t.slots.find(Self.key(i))?.value.providerAddress == "198.18.0.2") }
        #expect(try t.slots.find(Self.key(1500)) == nil)
        #expect(try t.slots.find(Self.key(7, vsid: 5002)) == nil, "another VSID's key is another key")

        // A change lands in another slot; the old one is freed and not reused by this writer.
        let before = try #require(try t.slots.find(Self.key(7))).index
        #expect(try t.slots.put(Self.key(7), Self.value("198.18.0.3", 7), freed: &freed))
        let after = try #require(try t.slots.find(Self.key(7)))
        #expect(after.index != before && after.value.providerAddress == "198.18.0.3")
        #expect(freed == [before])
        #expect(t.slots.head.pointee.used == 1500 && t.slots.head.pointee.deleted == 1)
        // The same value again changes nothing.
        #expect(try t.slots.put(Self.key(7), Self.value("198.18.0.3", 7), freed: &freed))
        #expect(t.slots.head.pointee.deleted == 1)

        #expect(try t.slots.remove(Self.key(7), freed: &freed))
        #expect(try t.slots.find(Self.key(7)) == nil)
        #expect(try !t.slots.remove(Self.key(7), freed: &freed))
        #expect(try t.slots.put(Self.key(7), Self.value("198.18.0.2", 7), freed: &freed))
        let again = try #require(try t.slots.find(Self.key(7))).index
        #expect(!freed.contains(again) && freed.count == 2)
        // Everything else is still where a probe finds it.
        for i in 0..<1500 { #expect(try t.slots.find(Self.key(i)) != nil) }
    }

    @Test func aFullProbeSaysTheTableNeedsRebuildingAndAPlacementMatchesTheProbe() throws {
        let t = MemoryTable(slots: 64)
        var freed = Set<UInt32>()
        for i in 0..<64 { #expect(try t.slots.put(Self.key(i), Self.value("198.18.0.2"), freed: &freed)) }
        #expect(try !t.slots.put(Self.key(64), Self.value("198.18.0.2"), freed: &freed))
        #expect(!t.slots.hasRoom(adding: 1) && RecordSlots<MemorySlots>.slots(for: 64) == 4096)

        // A placement computed aside (later records win) is what a probe finds.
        let keys = (0..<3000).map { Self.key($0 % 2000) }
        let p = try #require(RecordPlacement(slots: 4096, records: keys.count) { keys[$0] })
        #expect(p.count == 2000)
        let placed = MemoryTable(slots: 4096)
        for (s, source) in p.occupant.enumerated() where source != 0 {
            var slot = nv_record_slot()
            slot.key = keys[Int(source) - 1]
            slot.val = Self.value("198.18.0.2", Int(source) - 1)
            slot.state = NV_SLOT_USED.rawValue
            MemorySlots(base: placed.base).publish(UInt32(s + 1), slot)
        }
        for i in 2000..<3000 {
            let found = try #require(try placed.slots.find(Self.key(i - 2000)))
            #expect(RawBytes(of: found.value) == RawBytes(of: Self.value("198.18.0.2", i)))
        }
    }

    /// The program's answer for a frame from vm1 to record `i`: the PA it encapsulated to.
    static func encapsulatedTo(_ host: HostFixture, _ i: Int) throws -> IPAddress? {
        let dst = IPAddress(v4: [10, UInt8(i >> 16 & 0xff), UInt8(i >> 8 & 0xff), UInt8(i & 0xff)])
        let frame = Frames.udp(Plan.vm1.mac, Plan.vm3.mac, Plan.vm1.ip4, dst)
        let r = try host.dp.testRun(.fromVM, frame: frame, ingressIfindex: host.port("port1"))
        guard r.action == .redirect, r.output.count >= 34 else { return nil }
        return IPAddress(v4: r.output[30..<34])
    }

    @Test func theTableGrowsAndShrinksWhileTheProgramFindsEveryRecord() throws {
        var options = LoadOptions()
        options.maxLookups = 60_000
        let host = try HostFixture(tag: "records", options: options)
        let table = host.dp.maps.lookups
        #expect(table.maxEntries == 60_000 && table.slotCount == UInt32(NV_RECORD_MIN_SLOTS))
        try NetworkNamespace.run(in: host.ns) {
            // One at a time past half the slots: the table is rebuilt larger and swapped in.
            let base = table.count
            for i in 0..<2500 { try table.update(Self.key(i), Self.value(Plan.paB, i)) }
            #expect(table.count == base + 2500 && table.slotCount == 8192)
            for i in stride(from: 0, to: 2500, by: 97) { #expect(try Self.encapsulatedTo(host, i) == Plan.paB) }

            // Many at once: one new table.
            let many = (2500..<50_000).map {
                (key: RawBytes(of: Self.key($0)), value: RawBytes(of: Self.value(Plan.paC, $0)))
            }
            try table.update(contentsOf: many)
            #expect(table.count == base + 50_000 && table.slotCount == 131_072)
            for i in stride(from: 0, to: 50_000, by: 997) {
                #expect(try Self.encapsulatedTo(host, i) == (i < 2500 ? Plan.paB : Plan.paC))
            }
            #expect(try table.rawEntries().count == base + 50_000)

            // Past the limit: refused, nothing written.
            let over = (50_000..<70_000).map {
                (key: RawBytes(of: Self.key($0)), value: RawBytes(of: Self.value(Plan.paC, $0)))
            }
            #expect(throws: DatapathError.self) { try table.update(contentsOf: over) }
            #expect(table.count == base + 50_000 && table.lookup(Self.key(50_001)) == nil)

            // Most of them deleted: a smaller table; the deleted ones are gone for the program.
            try table.rawDelete((1000..<50_000).map { RawBytes(of: Self.key($0)) })
            #expect(table.count == base + 1000 && table.slotCount == 4096)
            #expect(try Self.encapsulatedTo(host, 999) == Plan.paB)
            #expect(try Self.encapsulatedTo(host, 1000) == nil)
            #expect(try Self.encapsulatedTo(host, 49_999) == nil)
            // A few deleted one by one stay in place.
            for i in 0..<10 { #expect(try table.delete(Self.key(i))) }
            #expect(try !table.delete(Self.key(0)))
            #expect(table.count == base + 990 && table.slotCount == 4096)
            #expect(try Self.encapsulatedTo(host, 5) == nil && Self.encapsulatedTo(host, 10) == Plan.paB)
            // The fixture's own records came through every rebuild.
            #expect(table.lookup(nv_lookup_key(vsid: 5001, ca: Plan.vm3.ip4))?.providerAddress == Plan.paB)
        }
    }

    @Test func aRecordChangingUnderTheProgramIsAlwaysWholeAndNeverMissing() throws {
        let host = try HostFixture(tag: "records")
        let table = host.dp.maps.lookups
        let key = Self.key(42)
        try table.update(key, Self.value(Plan.paB))
        let flips = 3000
        let writer = Thread {
            for n in 0..<flips { try? table.update(key, Self.value(n % 2 == 0 ? Plan.paC : Plan.paB)) }
        }
        var seen: [IPAddress?: Int] = [:]
        try NetworkNamespace.run(in: host.ns) {
            writer.start()
            while !writer.isFinished || seen.values.reduce(0, +) < 2000 {
                seen[try Self.encapsulatedTo(host, 42), default: 0] += 1
                if seen.values.reduce(0, +) > 200_000 { break }
            }
        }
        #expect(Set(seen.keys).isSubset(of: [Plan.paB, Plan.paC]), "\(seen)")
        #expect(seen[nil] == nil, "a lookup missed the record while it changed: \(seen)")
        #expect(table.lookup(key)?.providerAddress == (flips % 2 == 0 ? Plan.paB : Plan.paC))
        #expect(table.count >= 1 && table.lookup(nv_lookup_key(vsid: 5001, ca: Plan.vm3.ip4)) != nil)
    }

    @Test func writersTakeTurnsAndADeadWritersTurnIsTakenOver() throws {
        var options = LoadOptions()
        options.maxLookups = 100_000
        let host = try HostFixture(tag: "records", options: options)
        let dir = "/sys/fs/bpf/nvgre-test-records-\(getpid())"
        // Two writers with their own view of the same table, as two processes have.
        let pinned = host.dp.maps.fd("lookups")
        _ = mkdir(dir, 0o700)
        defer {
            unlink("\(dir)/lookups")
            rmdir(dir)
        }
        #expect(bpf_obj_pin(pinned, "\(dir)/lookups") == 0)
        let first = RecordTable(outerFD: bpf_obj_get("\(dir)/lookups"))
        let second = RecordTable(outerFD: bpf_obj_get("\(dir)/lookups"))
        let base = first.count
        DispatchQueue.concurrentPerform(iterations: 2) { w in
            let t = w == 0 ? first : second
            for i in 0..<3000 { try? t.update(Self.key(w * 100_000 + i), Self.value(Plan.paB, i)) }
        }
        #expect(host.dp.maps.lookups.count == base + 6000)
        for w in 0..<2 {
            for i in stride(from: 0, to: 3000, by: 101) { #expect(first.lookup(Self.key(w * 100_000 + i)) != nil) }
        }

        // A writer killed mid-write leaves its pid in the head: the next writer takes over.
        let dead = Process()
        dead.executableURL = URL(fileURLWithPath: "/bin/true")
        try dead.run()
        dead.waitUntilExit()
        var zero: UInt32 = 0, id: UInt32 = 0
        #expect(bpf_map_lookup_elem(pinned, &zero, &id) == 0)
        let fd = bpf_map_get_fd_by_id(id)
        defer { close(fd) }
        var head = nv_record_head()
        #expect(bpf_map_lookup_elem(fd, &zero, &head) == 0)
        head.writer = UInt32(dead.processIdentifier)
        #expect(bpf_map_update_elem(fd, &zero, &head, UInt64(BPF_ANY)) == 0)
        let started = Date()
        try second.update(Self.key(7), Self.value(Plan.paC))
        #expect(Date().timeIntervalSince(started) < 1)
        #expect(first.lookup(Self.key(7))?.providerAddress == Plan.paC)
    }
}
