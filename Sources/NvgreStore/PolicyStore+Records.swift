import Foundation
import NvgrePolicy
import NvgreWire

// One lookup record added or removed without reading the others: the rules of one record
// need its subnet and, for a removal, the ports of every host, never the other records, so
// `lookup add|del` on a store of a million records costs what it costs on an empty one.

extension PolicyStore {
    /// What adding or removing one record is checked against, read at one revision: every
    /// table but the records, and the record itself if it exists.
    public struct RecordContext: Sendable {
        public let revision: Int64
        public let generation: String
        let currentModRevision: Int64
        let editedModRevision: Int64
        /// The shared tables, without their records.
        public let shared: Policy
        /// Each host's sections.
        public let hosts: [String: Policy]
        /// The record at (VSID, customer address), if there is one.
        public let existing: LookupRecord?
        let existingModRevision: Int64
    }

    /// Nil when the store holds no policy yet (a record then has no subnet to belong to).
    public func readForRecord(vsid: UInt32, customerAddress: IPAddress) throws -> RecordContext? {
        let current = try etcd.range(prefix: StoreLayout.current)
        let at = current.revision
        guard let currentKV = current.kvs.first(where: { $0.key == StoreLayout.current }) else { return nil }
        let generation = String(decoding: currentKV.value, as: UTF8.self)
        guard !generation.isEmpty, !generation.contains("/") else {
            throw StoreError.badContent(key: StoreLayout.current, "'\(generation)' is not a generation name")
        }
        let edited = try etcd.range(from: StoreLayout.edited, upTo: StoreLayout.edited + "\0", revision: at).kvs.first
        let prefix = StoreLayout.generations + generation + "/"
        let records = prefix + "record/"
        // Two ranges around the records: the keys before "record/" and those after it.
        let before = try etcd.range(from: prefix, upTo: records, revision: at).kvs
        let after = try etcd.range(
            from: prefix + "record0", upTo: StoreLayout.generations + generation + "0", revision: at
        )
        .kvs
        var items = StoreItems()
        for kv in before + after {
            let key = String(kv.key.dropFirst(prefix.count))
            if key.hasPrefix(".") { continue }
            try items.set(key, kv.value, storeKey: kv.key)
        }
        let recordKey = prefix + StoreLayout.recordKey(vsid, customerAddress)
        let existingKV = try etcd.range(from: recordKey, upTo: recordKey + "\0", revision: at).kvs.first
        var existing: LookupRecord?
        if let existingKV {
            var one = StoreItems()
            try one.set("record", existingKV.value, storeKey: recordKey)
            existing = one.records["record"] ?? one.others["record"]?.lookupRecords.first
        }
        let (shared, hosts) = items.assembled()
        return RecordContext(
            revision: at, generation: generation, currentModRevision: currentKV.modRevision,
            editedModRevision: edited?.modRevision ?? 0, shared: shared, hosts: hosts, existing: existing,
            existingModRevision: existingKV?.modRevision ?? 0)
    }

    /// Adds `record` (none may exist at its VSID and address), checked against its subnet.
    public func addRecord(_ record: LookupRecord, in c: RecordContext) throws -> Change {
        let errors = c.shared.validate(adding: record, field: "lookup")
        if !errors.isEmpty { throw PolicyErrors(errors: errors) }
        var change = Change()
        change.added = 1
        return try writeRecord(record.vsid, record.customerAddress, value: record, in: c, change)
    }

    /// Removes the record at (VSID, customer address): refused while a host's port has
    /// that address (the VM's own record).
    public func removeRecord(vsid: UInt32, customerAddress: IPAddress, in c: RecordContext) throws -> Change {
        var change = Change()
        change.removed = 1
        return try writeRecord(vsid, customerAddress, value: nil, in: c, change)
    }

    /// The record written or deleted with `edited`, if neither the generation, nor any
    /// write, nor the record changed since `c` was read.
    private func writeRecord(
        _ vsid: UInt32, _ ca: IPAddress, value: LookupRecord?, in c: RecordContext, _ change: Change
    )
        throws -> Change
    {
        let key = StoreLayout.generations + c.generation + "/" + StoreLayout.recordKey(vsid, ca)
        var op = EtcdClient.Operation.delete(key)
        if let value {
            var one = Policy()
            one.lookupRecords = [value]
            op = .put(key, try StoreLayout.items(of: one)[0].value)  // as every record is stored
        }
        let written = try etcd.transaction(
            if: [
                .modRevision(StoreLayout.current, equals: c.currentModRevision),
                .modRevision(StoreLayout.edited, equals: c.editedModRevision),
                .modRevision(key, equals: c.existingModRevision)
            ],
            then: [op, .put(StoreLayout.edited, Data("\(c.revision)".utf8))])
        guard written.succeeded else { throw StoreError.conflict("read at revision \(c.revision)") }
        var change = change
        change.generation = c.generation
        change.revision = written.revision
        return change
    }
}
