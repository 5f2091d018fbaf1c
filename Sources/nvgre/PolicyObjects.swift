import ArgumentParser
import NvgreControl
import NvgrePolicy
import NvgreWire

// One group per kind of policy object, each with add and del, as `ip route add|del`.
// Every change goes through the same validation and all-or-nothing apply as a policy file,
// except single lookup records, which are checked on their own so they stay fast.

struct DomainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "domain", abstract: "Routing domains (a tenant's network).",
        subcommands: [Add.self, Del.self])

    struct Add: ChangesInstance {
        static let configuration = CommandConfiguration(abstract: "Add a routing domain.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Its name, used by subnets and routes.") var name: String
        @Option(help: "Its id in the data path (1-4294967295).") var id: String

        func execute() throws {
            let rdid = try parseNumber(id, "--id", 1...UInt32.max)
            try edit(global) { p in
                if p.routingDomains.contains(where: { $0.name == name }) {
                    throw fieldError("name", name, "a routing domain name not used yet")
                }
                p.routingDomains.append(RoutingDomain(id: rdid, name: name))
            }
        }
    }

    struct Del: ChangesInstance {
        static let configuration = CommandConfiguration(
            abstract: "Delete a routing domain (its subnets and routes first).")
        @OptionGroup var global: GlobalOptions
        @Argument var name: String

        func execute() throws {
            try edit(global) { p in
                guard let i = p.routingDomains.firstIndex(where: { $0.name == name }) else {
                    throw fieldError("name", name, "an existing routing domain")
                }
                if let s = p.subnets.first(where: { $0.routingDomain == name }) {
                    throw fieldError(
                        "name", name, "a routing domain without subnets (subnet \(s.vsid) is in it; delete it first)")
                }
                p.routingDomains.remove(at: i)
                p.customerRoutes.removeAll { $0.routingDomain == name }
            }
        }
    }
}

struct SubnetCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "subnet", abstract: "Virtual subnets (one VSID each).",
        subcommands: [Add.self, Del.self])

    struct Add: ChangesInstance {
        static let configuration = CommandConfiguration(abstract: "Add a virtual subnet.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "VSID, 4096-16777214.") var vsid: String
        @Option(help: "Its routing domain.") var domain: String
        @Option(help: "A customer prefix (one per family; repeat for IPv4 and IPv6).") var prefix: [String] = []
        @Option(help: "The distributed router's address in a prefix (one per family).") var gateway: [String] = []
        @Option(help: "The distributed router's MAC in this subnet.") var gatewayMac: String
        @Flag(help: "Drop broadcast and multicast instead of replicating them (every answer from policy, as in HNV).")
        var noFlood = false

        func execute() throws {
            let v = try parseVSID(vsid, "vsid")
            let prefixes = try prefix.map { try parsePrefix($0, "--prefix") }
            let gateways = try gateway.map { try parseAddress($0, "--gateway") }
            let mac = try parseMAC(gatewayMac, "--gateway-mac")
            try edit(global) { p in
                if p.subnets.contains(where: { $0.vsid == v }) {
                    throw fieldError("vsid", vsid, "a VSID with no subnet yet")
                }
                p.subnets.append(
                    VirtualSubnet(
                        vsid: v, routingDomain: domain, prefixes: prefixes, gateways: gateways, gatewayMAC: mac,
                        flood: !noFlood))
            }
        }
    }

    struct Del: ChangesInstance {
        static let configuration = CommandConfiguration(
            abstract: "Delete a virtual subnet and its lookup records (its ports first).")
        @OptionGroup var global: GlobalOptions
        @Argument var vsid: String

        func execute() throws {
            let v = try parseVSID(vsid, "vsid")
            try edit(global) { p in
                guard let i = p.subnets.firstIndex(where: { $0.vsid == v }) else {
                    throw fieldError("vsid", vsid, "the VSID of an existing subnet")
                }
                if let port = p.ports.first(where: { $0.vsid == v }) {
                    throw fieldError(
                        "vsid", vsid, "a subnet without ports (port \(port.interface) is in it; delete it first)")
                }
                p.subnets.remove(at: i)
                p.lookupRecords.removeAll { $0.vsid == v }
            }
        }
    }
}

struct LookupCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lookup", abstract: "Lookup records: (VSID, customer address) -> (provider address, MAC).",
        subcommands: [Add.self, Del.self])

    struct Add: ChangesInstance {
        static let configuration = CommandConfiguration(
            abstract: "Add a lookup record (as New-NetVirtualizationLookupRecord).")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "VSID of the record.") var vsid: String
        @Argument(help: "Customer address.") var ca: String
        @Option(help: "Provider address of the host running the VM.") var pa: String
        @Option(help: "The VM's MAC.") var mac: String
        @Option(help: "static, l2-only or gateway.") var type = "static"

        func execute() throws {
            let v = try parseVSID(vsid, "vsid")
            let c = try parseAddress(ca, "ca"), p = try parseAddress(pa, "--pa"), m = try parseMAC(mac, "--mac")
            let t = try parseChoice(type, "--type", as: RecordType.self)
            let record = LookupRecord(vsid: v, customerAddress: c, providerAddress: p, mac: m, type: t)
            if global.storeAddress != nil { return try addRecordToStore(global, record) }
            if try global.userspaceInstance() != nil {
                return try edit(global) { policy in
                    if let old = policy.lookupRecords.first(where: { $0.vsid == v && $0.customerAddress == c }) {
                        throw recordExists(old)
                    }
                    policy.lookupRecords.append(record)
                }
            }
            let instance = try global.openInstance()
            try instance.addLookupRecord(record)
            if global.json { print(JSON.object([("added", .number(1))]).rendered()) }
        }
    }

    struct Del: ChangesInstance {
        static let configuration = CommandConfiguration(abstract: "Delete a lookup record.")
        @OptionGroup var global: GlobalOptions
        @Argument var vsid: String
        @Argument var ca: String

        func execute() throws {
            let v = try parseVSID(vsid, "vsid"), c = try parseAddress(ca, "ca")
            if global.storeAddress != nil { return try removeRecordFromStore(global, vsid: v, customerAddress: c) }
            if try global.userspaceInstance() != nil {
                return try edit(global) { policy in
                    if let port = policy.ports.first(where: { $0.vsid == v && $0.addresses.contains(c) }) {
                        throw recordOfPort(v, c, port: port.interface)
                    }
                    let before = policy.lookupRecords.count
                    policy.lookupRecords.removeAll { $0.vsid == v && $0.customerAddress == c }
                    if policy.lookupRecords.count == before { throw noRecord(v, c) }
                }
            }
            try global.openInstance().deleteLookupRecord(vsid: v, customerAddress: c)
            if global.json { print(JSON.object([("removed", .number(1))]).rendered()) }
        }
    }
}

struct RouteCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "route", abstract: "Customer routes of a routing domain (to a gateway).",
        subcommands: [Add.self, Del.self])

    struct Add: ChangesInstance {
        static let configuration = CommandConfiguration(
            abstract: "Add a customer route (as New-NetVirtualizationCustomerRoute).")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Destination prefix.") var prefix: String
        @Option(help: "Routing domain.") var domain: String
        @Option(help: "Next hop (a customer address in a subnet of the domain).") var via: String
        @Option(help: "Metric; the lowest usable one wins.") var metric = "256"

        func execute() throws {
            let pf = try parsePrefix(prefix, "prefix"), nh = try parseAddress(via, "--via")
            let m = try parseNumber(metric, "--metric", 0...UInt32.max)
            try edit(global) { p in
                p.customerRoutes.append(CustomerRoute(routingDomain: domain, prefix: pf, nextHop: nh, metric: m))
            }
        }
    }

    struct Del: ChangesInstance {
        static let configuration = CommandConfiguration(
            abstract: "Delete customer routes (all next hops of the prefix unless --via).")
        @OptionGroup var global: GlobalOptions
        @Argument var prefix: String
        @Option var domain: String
        @Option var via: String?

        func execute() throws {
            let pf = try parsePrefix(prefix, "prefix"), nh = try via.map { try parseAddress($0, "--via") }
            try edit(global) { p in
                let before = p.customerRoutes.count
                p.customerRoutes.removeAll {
                    $0.routingDomain == domain && $0.prefix == pf && (nh == nil || $0.nextHop == nh)
                }
                if p.customerRoutes.count == before {
                    throw fieldError("prefix", prefix, "a customer route of routing domain \(domain)")
                }
            }
        }
    }
}

struct ProviderAddressCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pa", abstract: "Provider addresses of this host (on the uplink).",
        subcommands: [Add.self, Del.self])

    struct Add: ChangesInstance {
        static let configuration = CommandConfiguration(
            abstract: "Add a provider address (as New-NetVirtualizationProviderAddress).")
        @OptionGroup var global: GlobalOptions
        @Argument var address: String

        func execute() throws {
            let a = try parseAddress(address, "address")
            let instance = try global.openInstance()
            var p = try instance.livePolicy()
            if p.providerAddresses.contains(where: { $0.address == a }) {
                throw fieldError("address", address, "a provider address not added yet")
            }
            p.providerAddresses.append(ProviderAddress(address: a, interface: instance.settings.uplink))
            printSummary(try instance.apply(p), json: global.json)
        }
    }

    struct Del: ChangesInstance {
        static let configuration = CommandConfiguration(abstract: "Delete a provider address.")
        @OptionGroup var global: GlobalOptions
        @Argument var address: String

        func execute() throws {
            let a = try parseAddress(address, "address")
            try edit(global) { p in
                guard let i = p.providerAddresses.firstIndex(where: { $0.address == a }) else {
                    throw fieldError("address", address, "a provider address of this host")
                }
                p.providerAddresses.remove(at: i)
            }
        }
    }
}

struct PortCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "port", abstract: "VM ports: the VM's interface on this host, its VSID, MAC and addresses.",
        subcommands: [Add.self, Del.self])

    struct Add: ChangesInstance {
        static let configuration = CommandConfiguration(
            abstract: "Add a VM port and attach the from-VM program to it.",
            discussion:
                "Each address needs the VM's lookup record (this host's provider address and the port's MAC). On "
                + "veth, frames redirected to the VM need GRO on (or an XDP program, which turns the port's TSO off) on the VM's end of the pair."
        )
        @OptionGroup var global: GlobalOptions
        @Argument(help: "The interface (host end of the VM's link).") var interface: String
        @Option(help: "VSID of the VM.") var vsid: String
        @Option(help: "The VM's MAC.") var mac: String
        @Option(help: "A customer address the VM may send from (repeat for more).") var ca: [String] = []
        @Flag(help: "The VM may send router advertisements (it is a router; off: Hyper-V's router guard).")
        var allowRouterAdvertisements = false
        @Flag(help: "The VM may send DHCP and DHCPv6 server messages (off: Hyper-V's DHCP guard).")
        var allowDhcpServer = false

        func execute() throws {
            let v = try parseVSID(vsid, "--vsid"), m = try parseMAC(mac, "--mac")
            let cas = try ca.map { try parseAddress($0, "--ca") }
            try edit(global) { p in
                if p.ports.contains(where: { $0.interface == interface }) {
                    throw fieldError("interface", interface, "an interface that is not a port yet")
                }
                p.ports.append(
                    VMPort(
                        interface: interface, vsid: v, mac: m, addresses: cas,
                        allowRouterAdvertisements: allowRouterAdvertisements, allowDHCPServer: allowDhcpServer))
            }
            // The userspace path reads and writes the port itself: no redirect to go astray.
            if global.storeAddress == nil, try global.userspaceInstance() == nil {
                warnAboutUnreadyVethPeers([interface])
            }
        }
    }

    struct Del: ChangesInstance {
        static let configuration = CommandConfiguration(abstract: "Delete a VM port and detach its program.")
        @OptionGroup var global: GlobalOptions
        @Argument var interface: String

        func execute() throws {
            try edit(global) { p in
                guard let i = p.ports.firstIndex(where: { $0.interface == interface }) else {
                    throw fieldError("interface", interface, "an existing port")
                }
                p.ports.remove(at: i)
            }
        }
    }
}

func recordExists(_ old: LookupRecord) -> ControlError {
    ControlError(
        "a lookup record for \(old.customerAddress) in VSID \(old.vsid) exists already (provider address "
            + "\(old.providerAddress), MAC \(old.mac))",
        hint: "delete it first (`nvgre lookup del`)")
}

func recordOfPort(_ vsid: UInt32, _ ca: IPAddress, port: String, host: String? = nil) -> ControlError {
    ControlError(
        "the lookup record for \(ca) in VSID \(vsid) belongs to the VM on port \(port)"
            + (host.map { " of host \($0)" } ?? ""),
        hint: "delete the port first (`nvgre \(host.map { "--host \($0) " } ?? "")port del \(port)`)")
}

func noRecord(_ vsid: UInt32, _ ca: IPAddress) -> ControlError {
    ControlError("there is no lookup record for \(ca) in VSID \(vsid)", hint: "`nvgre save` lists them")
}
