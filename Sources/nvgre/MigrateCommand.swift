import ArgumentParser
import Foundation
import NvgrePolicy
import NvgreStore

/// `nvgre migrate`: a VM's port moves from one host to another in the store, make before
/// break, as three writes the agents see in order.
struct MigrateCommand: NvgreCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate",
        abstract: "Move a VM's port and lookup records from one host to another in the store (--store).",
        discussion: """
            Three writes, in order (--step runs one of them, for an orchestrator that pauses in between):
              prepare  the new host gets the port, marked moving: it accepts the VM's frames once the VM runs \
            there, while its lookup records still send traffic to the old host;
              switch   the VM's lookup records name the new host's provider address; the old host's port is \
            marked moving, and its agent sends frames still arriving for the VM on to the new host (its \
            --moved-grace);
              finish   the old host's port is removed, the new host's is no longer moving.
            """)

    @OptionGroup var global: GlobalOptions
    @Argument(help: "The VM's port (its interface) on the host it leaves.") var port: String
    @Option(help: ArgumentHelp("The host the VM leaves.", valueName: "host")) var from: String
    @Option(help: ArgumentHelp("The host the VM moves to.", valueName: "host")) var to: String
    @Option(help: ArgumentHelp("The port's interface on the new host (default: the same name).", valueName: "name"))
    var interface: String?
    @Option(help: ArgumentHelp("prepare, switch, finish, or all (default: all three in order).", valueName: "step"))
    var step = "all"

    enum Step: String, CaseIterable { case prepare, `switch`, finish }

    func execute() throws {
        guard let address = global.storeAddress else {
            throw fieldError("--store", "(none)", "the store of the hosts (migrate acts on the store only)")
        }
        let old = try checkedHostName(from, field: "--from"), new = try checkedHostName(to, field: "--to")
        if old == new { throw fieldError("--to", new, "a host other than --from") }
        let steps: [Step]
        if step == "all" {
            steps = Step.allCases
        } else if let s = Step(rawValue: step) {
            steps = [s]
        } else {
            throw fieldError("--step", step, "prepare, switch, finish or all")
        }
        let store = PolicyStore(try EtcdClient(address: address))
        var done: [(Step, PolicyStore.Change)] = []
        for s in steps {
            let change = try writingToStore(store) { base in
                var hosts = try Self.hosts(base, old, new)
                try migrate(s, &hosts.old, &hosts.new, base.shared)
                var shared = base.shared
                if s == .switch {
                    try Self.switchRecords(&shared, of: try Self.leaving(port, hosts.old), to: hosts.new)
                }
                return try store.write(shared: shared, hosts: [old: hosts.old, new: hosts.new], basedOn: base)
            }
            done.append((s, change))
            if !global.json {
                print("\(s.rawValue): \(Self.said(s, port: port, old, new)) (revision \(change.revision))")
            }
        }
        if global.json {
            print(
                JSON.array(
                    done.map { s, c in
                        .object([
                            ("step", .string(s.rawValue)), ("revision", .number(UInt64(max(0, c.revision)))),
                            ("changed", .number(UInt64(c.added + c.changed + c.removed)))
                        ])
                    }
                ).rendered())
        }
    }

    /// The two hosts' sections as the store has them.
    static func hosts(_ base: PolicyStore.Snapshot, _ old: String, _ new: String) throws -> (old: Policy, new: Policy) {
        let known = base.hosts.keys.sorted().joined(separator: ", ")
        guard let o = base.hosts[old] else { throw fieldError("--from", old, "a host in the store (\(known))") }
        guard let n = base.hosts[new] else { throw fieldError("--to", new, "a host in the store (\(known))") }
        return (o, n)
    }

    /// The port on the host it leaves (there until `finish`).
    static func leaving(_ name: String, _ old: Policy) throws -> VMPort {
        guard let p = old.ports.first(where: { $0.interface == name }) else {
            throw fieldError(
                "port", name, "a port of the host the VM leaves (\(old.ports.map(\.interface).joined(separator: ", ")))"
            )
        }
        return p
    }

    func migrate(_ s: Step, _ old: inout Policy, _ new: inout Policy, _ shared: Policy) throws {
        let leaving = try Self.leaving(port, old)
        let name = interface ?? port
        var arriving = leaving
        arriving.interface = name
        arriving.moving = true
        switch s {
        case .prepare:
            if let there = new.ports.first(where: { $0.interface == name }), there != arriving {
                throw fieldError("--interface", name, "an interface that is not already a port of host \(to)")
            }
            new.ports.removeAll { $0.interface == name }
            new.ports.append(arriving)
        case .switch:
            guard new.ports.contains(arriving) || new.ports.contains(where: { $0.interface == name && !$0.moving })
            else { throw fieldError("--step", "switch", "prepare first: host \(to) has no port \(name) moving in") }
            if let i = old.ports.firstIndex(of: leaving) { old.ports[i].moving = true }
        case .finish:
            let pas = Set(new.providerAddresses.map(\.address))
            let records = shared.lookupRecords.filter {
                $0.vsid == leaving.vsid && leaving.addresses.contains($0.customerAddress)
            }
            guard records.allSatisfy({ pas.contains($0.providerAddress) }) else {
                throw fieldError("--step", "finish", "switch first: the VM's lookup records do not name host \(to) yet")
            }
            old.ports.removeAll { $0.interface == port }
            if let i = new.ports.firstIndex(where: { $0.interface == name }) { new.ports[i].moving = false }
        }
    }

    /// The VM's lookup records name the new host: its provider address of the same family.
    static func switchRecords(_ shared: inout Policy, of vm: VMPort, to new: Policy) throws {
        for i in shared.lookupRecords.indices
        where shared.lookupRecords[i].vsid == vm.vsid && vm.addresses.contains(shared.lookupRecords[i].customerAddress)
        {
            let family = shared.lookupRecords[i].providerAddress.family
            guard let pa = new.providerAddresses.first(where: { $0.address.family == family })?.address else {
                throw fieldError(
                    "--to", "\(new.providerAddresses.map(\.address))",
                    "a host with a provider address of the family the VM's records use (\(family))")
            }
            shared.lookupRecords[i].providerAddress = pa
        }
    }

    static func said(_ s: Step, port: String, _ old: String, _ new: String) -> String {
        switch s {
        case .prepare: "host \(new) has the port of \(port), moving in; its traffic still goes to \(old)"
        case .switch: "the lookup records of \(port) name host \(new); \(old) sends on what still arrives there"
        case .finish: "host \(old) no longer has port \(port); the move is done"
        }
    }
}
