import Foundation
import NvgreControl
import NvgrePolicy
import NvgreStore
import NvgreWire

// The CLI on the store of many hosts (`--store`): the same policy files, validation and
// messages as on one host, all or nothing in the store instead of the maps.

extension Policy {
    var hasSharedSections: Bool { sharedSections != Policy() }
}

extension Apply {
    /// With a store: the files' shared tables replace the store's (when they have any), and
    /// their host sections (provider addresses, ports, a gateway's sections) replace those
    /// of `--host` (which they need).
    func applyToStore() throws {
        guard let address = global.storeAddress else { return }
        let files = try files
        if files.isEmpty { throw fieldError("file", "(none)", "one or more policy files, or - for standard input") }
        let policy = try readPolicy(files)
        let hostPart = policy.hostSections
        let host = try global.storeHost()
        if hostPart != Policy() && host == nil {
            throw fieldError(
                "--host", "(none)",
                "the name of the host the files' providerAddresses, ports and gateway sections belong to")
        }
        let store = PolicyStore(try EtcdClient(address: address))
        let change = try writingToStore(store) { base in
            let shared = policy.hasSharedSections || hostPart == Policy() ? policy.sharedSections : base.shared
            // A host's sections are replaced only by files that have some.
            let hosts = hostPart == Policy() ? [:] : host.map { [$0: hostPart] } ?? [:]
            return try store.write(shared: shared, hosts: hosts, basedOn: base, dryRun: dryRun)
        }
        printStoreChange(change, address: address, dryRun: dryRun, json: global.json)
    }
}

/// An object command (`lookup add`, `subnet del`, ...) on the store: the shared tables and
/// `--host`'s sections edited as one policy, written back all or nothing.
func editStore(_ g: GlobalOptions, _ edit: (inout Policy) throws -> Void) throws {
    guard let address = g.storeAddress else { return }
    let store = PolicyStore(try EtcdClient(address: address))
    let host = try g.storeHost()
    let change = try writingToStore(store) { base in
        var p = base.policy(forHost: host)
        try edit(&p)
        if p.hostSections != (host.flatMap { base.hosts[$0] } ?? Policy()) && host == nil {
            throw fieldError(
                "--host", "(none)", "the name of the host whose provider addresses, ports or gateway sections change")
        }
        return try store.write(
            shared: p.sharedSections, hosts: host.map { [$0: p.hostSections] } ?? [:], basedOn: base)
    }
    printStoreChange(change, address: address, dryRun: false, json: g.json)
}

/// Reads the store and writes on what it read; when another writer got in between (the
/// write is refused whole), reads and tries again, three times at most.
func writingToStore(_ store: PolicyStore, _ write: (PolicyStore.Snapshot) throws -> PolicyStore.Change) throws
    -> PolicyStore.Change
{
    try retryingConflicts { try write(try store.read()) }
}

/// `readAndWrite` again when another writer got in between, three times at most.
func retryingConflicts(_ readAndWrite: () throws -> PolicyStore.Change) throws -> PolicyStore.Change {
    var attempt = 0
    while true {
        do {
            return try readAndWrite()
        } catch StoreError.conflict where attempt < 2 {
            attempt += 1
            usleep(UInt32.random(in: 10_000...50_000))
        }
    }
}

/// `lookup add` on the store: the record checked against its subnet and written alone,
/// without reading the other records.
func addRecordToStore(_ g: GlobalOptions, _ record: LookupRecord) throws {
    guard let address = g.storeAddress else { return }
    let store = PolicyStore(try EtcdClient(address: address))
    let change = try retryingConflicts {
        guard let c = try store.readForRecord(vsid: record.vsid, customerAddress: record.customerAddress) else {
            throw emptyStore(address)
        }
        if let old = c.existing { throw recordExists(old) }
        return try store.addRecord(record, in: c)
    }
    printStoreChange(change, address: address, dryRun: false, json: g.json)
}

/// `lookup del` on the store: refused while a port of any host has the address.
func removeRecordFromStore(_ g: GlobalOptions, vsid: UInt32, customerAddress ca: IPAddress) throws {
    guard let address = g.storeAddress else { return }
    let store = PolicyStore(try EtcdClient(address: address))
    let change = try retryingConflicts {
        guard let c = try store.readForRecord(vsid: vsid, customerAddress: ca) else { throw emptyStore(address) }
        for (host, p) in c.hosts.sorted(by: { $0.key < $1.key }) {
            if let port = p.ports.first(where: { $0.vsid == vsid && $0.addresses.contains(ca) }) {
                throw recordOfPort(vsid, ca, port: port.interface, host: host)
            }
        }
        guard c.existing != nil else { throw noRecord(vsid, ca) }
        return try store.removeRecord(vsid: vsid, customerAddress: ca, in: c)
    }
    printStoreChange(change, address: address, dryRun: false, json: g.json)
}

func emptyStore(_ address: String) -> ControlError {
    ControlError(
        "the store at \(address) holds no policy yet",
        hint: "apply the shared tables (routing domains, subnets) first: `nvgre --store \(address) apply FILE`")
}

func printStoreChange(_ c: PolicyStore.Change, address: String, dryRun: Bool, json: Bool) {
    if json {
        print(
            JSON.object([
                ("store", .string(address)), ("dryRun", .bool(dryRun)), ("generation", .string(c.generation)),
                ("revision", .number(UInt64(max(0, c.revision)))),
                ("newGeneration", .bool(c.newGeneration)), ("added", .number(UInt64(c.added))),
                ("changed", .number(UInt64(c.changed))), ("removed", .number(UInt64(c.removed)))
            ]).rendered())
        return
    }
    let counts = "\(c.added) items added, \(c.changed) changed, \(c.removed) removed"
    if dryRun {
        print("valid (the store unchanged): would be \(counts)")
    } else if c.nothing {
        print("the store holds this already: nothing changed")
    } else {
        print("applied to the store (generation \(c.generation), revision \(c.revision)): \(counts)")
    }
}
