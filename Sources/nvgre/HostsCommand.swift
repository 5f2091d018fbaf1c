import ArgumentParser
import Foundation
import NvgrePolicy
import NvgreStore

/// `nvgre hosts`: the hosts of the store, what each has there, and whether its agent lives.
struct HostsCommand: NvgreCommand {
    static let configuration = CommandConfiguration(
        commandName: "hosts",
        abstract: "List the hosts in the store (--store): provider addresses, ports, and whether an agent follows.",
        discussion:
            "A host is alive while its agent renews its liveness key (alive/NAME, on a lease of the agent's "
            + "--alive-ttl). A host that is not alive keeps its sections and records in the store: losing a host "
            + "erases no tenant.")

    @OptionGroup var global: GlobalOptions

    func execute() throws {
        guard let address = global.storeAddress else {
            throw fieldError("--store", "(none)", "the store of the hosts (hosts lists the store only)")
        }
        let store = PolicyStore(try EtcdClient(address: address))
        let snapshot = try store.read()
        let alive = try HostLiveness.alive(in: store.etcd)
        let names = Set(snapshot.hosts.keys).union(alive.keys).sorted()
        if global.json {
            print(
                JSON.array(
                    names.map { name in
                        let p = snapshot.hosts[name] ?? Policy()
                        return .object(
                            [
                                ("host", .string(name)), ("alive", .bool(alive[name] != nil)),
                                ("providerAddresses", .array(p.providerAddresses.map { .string("\($0.address)") })),
                                ("ports", .array(p.ports.map { .string($0.interface) })),
                                ("gateway", .bool(!p.gatewayDomains.isEmpty))
                            ] + (alive[name].map { [("agentSince", .number(UInt64(max(0, $0.since))))] } ?? []))
                    }
                ).rendered())
            return
        }
        if names.isEmpty { print("no host in the store \(address)") }
        for name in names {
            let p = snapshot.hosts[name] ?? Policy()
            let state = alive[name].map { "alive (agent since \(Self.time($0.since)))" } ?? "no agent"
            let pas = p.providerAddresses.map { "\($0.address)" }.joined(separator: ", ")
            let role = p.gatewayDomains.isEmpty ? "" : ", gateway"
            print("\(name): \(state); PA \(pas.isEmpty ? "none" : pas); \(p.ports.count) ports\(role)")
        }
    }

    static func time(_ seconds: Double) -> String {
        let f = DateFormatter()
        f.dateFormat = "yyyy-MM-dd HH:mm:ss"
        return f.string(from: Date(timeIntervalSince1970: seconds))
    }
}
