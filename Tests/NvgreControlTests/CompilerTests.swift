import CNvgre
import NvgreControl
import NvgreDatapath
import NvgrePolicy
import NvgreWire
import Testing

/// The two-tenant policy of examples/two-tenants.yaml, built in code.
func twoTenants() -> Policy {
    var p = Policy()
    p.routingDomains = [RoutingDomain(id: 1, name: "red"), RoutingDomain(id: 2, name: "blue")]
    p.subnets = [
        VirtualSubnet(
            vsid: 5001, routingDomain: "red", prefixes: [IPPrefix(parsing: "198.19.1.0/24")!],
            gateways: ["198.19.1.254"], gatewayMAC: "02:00:00:00:ff:01"),
        VirtualSubnet(
            vsid: 5002, routingDomain: "red", prefixes: [IPPrefix(parsing: "198.19.2.0/24")!],
            gateways: ["198.19.2.254"], gatewayMAC: "02:00:00:00:ff:02"),
        VirtualSubnet(
            vsid: 6001, routingDomain: "blue", prefixes: [IPPrefix(parsing: "198.19.1.0/24")!],
            gateways: ["198.19.1.254"], gatewayMAC: "02:00:00:00:ff:03")
    ]
    p.lookupRecords = [
        LookupRecord(
            vsid: 5001, customerAddress: "198.19.1.1", providerAddress: "198.18.0.1", mac: "02:00:00:00:01:01"),
        LookupRecord(
            vsid: 5001, customerAddress: "198.19.1.2", providerAddress: "198.18.0.2", mac: "02:00:00:00:01:02"),
        LookupRecord(
            vsid: 6001, customerAddress: "198.19.1.1", providerAddress: "198.18.0.3", mac: "02:00:00:00:01:01",
            type: .gateway)
    ]
    p.customerRoutes = [
        CustomerRoute(routingDomain: "red", prefix: IPPrefix(parsing: "0.0.0.0/0")!, nextHop: "198.19.1.250")
    ]
    p.providerAddresses = [ProviderAddress(address: "198.18.0.1", interface: "ul")]
    p.ports = [VMPort(interface: "port1", vsid: 5001, mac: "02:00:00:00:01:01", addresses: ["198.19.1.1"])]
    return p
}

/// Interfaces of a pretend host.
let fakeInterfaces: [String: UInt32] = ["ul": 3, "port1": 7, "port2": 8]

func context(slots: [UInt32: UInt32] = [:]) -> CompileContext {
    var c = CompileContext(uplinkIfindex: 3, ifindex: { fakeInterfaces[$0] })
    c.liveSlots = slots
    return c
}

struct CompilerTests {
    @Test func eachPolicyObjectBecomesItsMapEntry() throws {
        let c = try PolicyCompiler.compile(twoTenants(), context())
        // Lookup records: same CA in two VSIDs are two keys; the local VM carries its port.
        let lookups = c.images[.lookups]!
        #expect(lookups.count == 3)
        let local = lookups[RawBytes(of: nv_lookup_key(vsid: 5001, ca: "198.19.1.1"))]!.load(as: nv_lookup_val.self)
        #expect(local.port_ifindex == 7 && local.providerAddress == "198.18.0.1")
        let blue = lookups[RawBytes(of: nv_lookup_key(vsid: 6001, ca: "198.19.1.1"))]!.load(as: nv_lookup_val.self)
        #expect(
            blue.port_ifindex == 0 && blue.type == UInt8(NV_REC_GATEWAY.rawValue)
                && blue.providerAddress == "198.18.0.3")
        // Subnets: routing domain id and a distinct counter slot each, all new.
        let subnets = c.images[.subnets]!.entries.values.map { $0.load(as: nv_subnet.self) }
        #expect(Set(subnets.map(\.stats_slot)).count == 3 && Set(c.newSlots) == [0, 1, 2])
        let s5001 = c.images[.subnets]![RawBytes(of: UInt32(5001))]!.load(as: nv_subnet.self)
        #expect(s5001.rdid == 1 && s5001.flags == UInt8(NV_SUBNET_HAS_GW4.rawValue))
        // Routes: three subnet prefixes and the customer route via 5001's subnet.
        let routes = c.images[.routes]!
        #expect(routes.count == 4)
        let dflt = routes[RawBytes(of: nv_route_key(rdid: 1, prefix: "0.0.0.0", prefixLength: 0))]!.load(
            as: nv_route_val.self)
        #expect(dflt.kind == NV_ROUTE_CUSTOMER.rawValue && dflt.vsid == 5001)
        let blueNet = routes[RawBytes(of: nv_route_key(rdid: 2, prefix: "198.19.1.0", prefixLength: 24))]!.load(
            as: nv_route_val.self)
        #expect(blueNet.kind == NV_ROUTE_SUBNET.rawValue && blueNet.vsid == 6001)
        // Port, its address, the PA and the host settings.
        #expect(c.images[.ports]![RawBytes(of: UInt32(7))]!.load(as: nv_port.self).vsid == 5001)
        #expect(c.images[.portAddresses]![RawBytes(of: nv_port_ca_key(ifindex: 7, ca: "198.19.1.1"))] != nil)
        #expect(c.images[.localPAs]!.count == 1)
        let cfg = c.images[.config]![RawBytes(of: UInt32(0))]!.load(as: nv_config.self)
        #expect(cfg.uplink_ifindex == 3 && cfg.flags == NV_CFG_HAS_PA4.rawValue)
    }

    /// A port's entry carries its subnet's fields and, when there is at most one of each
    /// family, its addresses, so a frame from it costs one lookup; port_cas has them all.
    @Test func aPortEntryCarriesItsSubnetAndFewAddresses() throws {
        var p = twoTenants()
        p.ports.append(
            VMPort(
                interface: "port2", vsid: 5001, mac: "02:00:00:00:01:02",
                addresses: ["198.19.1.2", "198.19.1.12", "2001:db8:19:1::2"]))
        let c = try PolicyCompiler.compile(p, context())
        let subnet = c.images[.subnets]![RawBytes(of: UInt32(5001))]!.load(as: nv_subnet.self)
        let one = c.images[.ports]![RawBytes(of: UInt32(7))]!.load(as: nv_port.self)
        let inline = UInt8(NV_PORT_SUBNET_INLINE.rawValue | NV_PORT_CAS_INLINE.rawValue | NV_PORT_HAS_CA4.rawValue)
        #expect(one.flags == inline)
        #expect(one.rdid == subnet.rdid && one.stats_slot == subnet.stats_slot)
        #expect(withUnsafeBytes(of: one.gw_mac) { Array($0) } == withUnsafeBytes(of: subnet.gw_mac) { Array($0) })
        #expect(withUnsafeBytes(of: one.ca4) { Array($0) } == [198, 19, 1, 1])
        // Two IPv4 addresses do not fit: the program asks port_cas, which has all three.
        let two = c.images[.ports]![RawBytes(of: UInt32(8))]!.load(as: nv_port.self)
        #expect(two.flags == UInt8(NV_PORT_SUBNET_INLINE.rawValue))
        #expect(
            c.images[.portAddresses]!.entries.keys.filter { $0.load(as: nv_port_ca_key.self).ifindex == 8 }.count == 3)
    }

    /// Head-end replication: a flooding VSID with a port here lists the other PAs its static
    /// and l2-only records name (never this host's, never a gateway record's) and its ports.
    @Test func floodListsComeFromTheLookupRecords() throws {
        var p = twoTenants()
        p.lookupRecords += [
            LookupRecord(
                vsid: 5001, customerAddress: "198.19.1.3", providerAddress: "198.18.0.2", mac: "02:00:00:00:01:03"),
            LookupRecord(
                vsid: 5001, customerAddress: "198.19.1.4", providerAddress: "2001:db8:18::4", mac: "02:00:00:00:01:04",
                type: .l2Only),
            LookupRecord(
                vsid: 5001, customerAddress: "198.19.1.250", providerAddress: "198.18.0.9", mac: "02:00:00:00:fe:01",
                type: .gateway)
        ]
        p.ports.append(VMPort(interface: "port2", vsid: 5001, mac: "02:00:00:00:01:02", addresses: []))
        p.foreignEndpoints = [ForeignEndpoint(address: "198.18.0.2", flowID: false)]
        let c = try PolicyCompiler.compile(p, context())
        #expect(c.floodLists.count == 1, "only 5001 has ports here")
        let l = try #require(c.floodLists[5001])
        #expect(Set(l.peerAddresses) == ["198.18.0.2", "2001:db8:18::4"] && l.peerAddresses.count == 2)
        #expect(l.portIfindexes == [7, 8])
        // The foreign endpoint's records carry FlowID 0.
        let rec = c.images[.lookups]![RawBytes(of: nv_lookup_key(vsid: 5001, ca: "198.19.1.2"))]!.load(
            as: nv_lookup_val.self)
        #expect(!rec.sendsFlowID)
        let local = c.images[.lookups]![RawBytes(of: nv_lookup_key(vsid: 5001, ca: "198.19.1.1"))]!.load(
            as: nv_lookup_val.self)
        #expect(local.sendsFlowID)

        // flood: false: no list, the subnet says so to the data path.
        p.subnets[0].flood = false
        let off = try PolicyCompiler.compile(p, context())
        #expect(off.floodLists.isEmpty)
        #expect(!off.images[.subnets]![RawBytes(of: UInt32(5001))]!.load(as: nv_subnet.self).floods)
    }

    @Test func aFloodingVSIDOnTooManyHostsIsRefusedByName() throws {
        var p = twoTenants()
        for i in 0..<65 {
            p.lookupRecords.append(
                LookupRecord(
                    vsid: 5001, customerAddress: IPAddress(v4: [198, 19, 1, UInt8(10 + i)]),
                    providerAddress: IPAddress(v4: [198, 18, 1, UInt8(1 + i)]),
                    mac: MACAddress([2, 0, 0, 1, 1, UInt8(i)])))
        }
        #expect {
            try PolicyCompiler.compile(p, context())
        } throws: { e in
            "\(e)".contains("subnets[0].flood") && "\(e)".contains("at most 64")
        }
    }

    @Test func liveCounterSlotsStayWithTheirVSIDs() throws {
        let c = try PolicyCompiler.compile(twoTenants(), context(slots: [5002: 0, 6001: 9]))
        func slot(_ v: UInt32) -> UInt32 { c.images[.subnets]![RawBytes(of: v)]!.load(as: nv_subnet.self).stats_slot }
        #expect(slot(5002) == 0 && slot(6001) == 9 && slot(5001) == 1 && c.newSlots == [1])
    }

    /// Decap counts a frame for a VM here in the slot its destination's record carries
    /// (issue 20): every record holds its subnet's slot, and an image built ahead of
    /// validation with other slots is not used.
    @Test func eachRecordCarriesItsSubnetsCounterSlot() throws {
        let p = twoTenants()
        let ctx = context(slots: [5002: 0, 6001: 9])
        func records(_ c: CompiledPolicy) -> [(vsid: UInt32, value: nv_lookup_val)] {
            c.images[.lookups]!.entries.map {
                ($0.key.load(as: nv_lookup_key.self).vsid, $0.value.load(as: nv_lookup_val.self))
            }
        }
        let compiled = try PolicyCompiler.compile(p, ctx)
        let found = records(compiled)
        #expect(found.count == 3)
        for (vsid, value) in found {
            let subnet = compiled.images[.subnets]![RawBytes(of: vsid)]!.load(as: nv_subnet.self)
            #expect(value.statsSlot == subnet.stats_slot, "record of VSID \(vsid)")
        }
        #expect(found.map(\.value.statsSlot).sorted() == [1, 1, 9])  // 5001 new (1), 6001 live (9)
        #expect(found.first { $0.vsid == 6001 }!.value.flags == 0)  // the slot does not leak into the flags

        // An image built with the slots of another moment is rebuilt with these.
        let stale = PolicyCompiler.lookupsImage(
            p, portIndexes: PolicyCompiler.portIndexes(p, ctx), slots: [5001: 4, 5002: 0, 6001: 5])
        let rebuilt = try PolicyCompiler.compile(p, ctx, lookups: (stale, [5001: 4, 5002: 0, 6001: 5]))
        #expect(records(rebuilt).map(\.value.statsSlot).sorted() == [1, 1, 9])
        let ahead = PolicyCompiler.counterSlots(p, ctx)
        #expect(ahead == [5001: 1, 5002: 0, 6001: 9])
    }

    @Test func theLowestUsableMetricWins() throws {
        var p = twoTenants()
        let dflt = IPPrefix(parsing: "0.0.0.0/0")!
        p.customerRoutes = [
            // Next hop in no subnet.
            CustomerRoute(routingDomain: "red", prefix: dflt, nextHop: "198.19.9.1", metric: 1),
            CustomerRoute(routingDomain: "red", prefix: dflt, nextHop: "198.19.2.250", metric: 50),
            CustomerRoute(routingDomain: "red", prefix: dflt, nextHop: "198.19.1.250", metric: 100),
            // A subnet's prefix.
            CustomerRoute(routingDomain: "red", prefix: IPPrefix(parsing: "198.19.2.0/24")!, nextHop: "198.19.1.250")
        ]
        let c = try PolicyCompiler.compile(p, context())
        let v = c.images[.routes]![RawBytes(of: nv_route_key(rdid: 1, prefix: "0.0.0.0", prefixLength: 0))]!.load(
            as: nv_route_val.self)
        #expect(v.vsid == 5002 && v.kind == NV_ROUTE_CUSTOMER.rawValue)
        #expect(c.idleRoutes.map(\.index) == [0, 2, 3])
        #expect(c.idleRoutes[0].why.contains("in no virtual subnet"))
        #expect(c.idleRoutes[2].why.contains("virtual subnet of red has this prefix"))
    }

    @Test func aMissingInterfaceIsNamed() {
        var p = twoTenants()
        p.ports[0].interface = "port9"
        #expect(
            throws: PolicyErrors(errors: [
                PolicyError("ports[0].interface", "port9", "an existing interface in this network namespace")
            ])
        ) {
            try PolicyCompiler.compile(p, context())
        }
    }
}

struct DiffTests {
    @Test func onlyTheDifferencesAreWritten() throws {
        let before = try PolicyCompiler.compile(twoTenants(), context()).images
        var p = twoTenants()
        p.lookupRecords[1].providerAddress = "198.18.0.9"  // changed
        p.lookupRecords.remove(at: 2)  // removed (Blue's record)
        p.lookupRecords.append(
            LookupRecord(
                vsid: 5002, customerAddress: "198.19.2.7", providerAddress: "198.18.0.2", mac: "02:00:00:00:02:07"))
        let slots = Dictionary(
            uniqueKeysWithValues: before[.subnets]!.entries.map {
                ($0.key.load(as: UInt32.self), $0.value.load(as: nv_subnet.self).stats_slot)
            })
        let after = try PolicyCompiler.compile(p, context(slots: slots)).images
        let plan = MapPlan(live: before, desired: after)
        let l = plan.changes[.lookups]!
        #expect(l.added.map { $0.key } == [RawBytes(of: nv_lookup_key(vsid: 5002, ca: "198.19.2.7"))])
        #expect(l.changed.map { $0.key } == [RawBytes(of: nv_lookup_key(vsid: 5001, ca: "198.19.1.2"))])
        #expect(l.changed[0].old.load(as: nv_lookup_val.self).providerAddress == "198.18.0.2")
        #expect(l.removed.map { $0.key } == [RawBytes(of: nv_lookup_key(vsid: 6001, ca: "198.19.1.1"))])
        // Nothing else moves.
        #expect(plan.total == 3)
    }

    @Test func theSamePolicyChangesNothing() throws {
        let a = try PolicyCompiler.compile(twoTenants(), context()).images
        #expect(MapPlan(live: a, desired: a).isEmpty)
    }

    @Test func removingEverythingRemovesEveryEntry() throws {
        let a = try PolicyCompiler.compile(twoTenants(), context()).images
        var empty = try PolicyCompiler.compile(Policy(), context()).images
        empty[.config] = a[.config]  // the host settings entry always exists (an array map)
        let plan = MapPlan(live: a, desired: empty)
        #expect(plan.changes[.lookups]!.removed.count == 3 && plan.changes[.routes]!.removed.count == 4)
        #expect(plan.changes.values.allSatisfy { $0.added.isEmpty && $0.changed.isEmpty })
    }
}

/// What a gateway host's infra map holds: no tenant reaches any of it through the gateway.
struct InfrastructureCompileTests {
    @Test func listedProviderHostExternalAndSpecialPrefixesAreAllThere() throws {
        var p = twoTenants()
        p.ports = []
        p.externalAddresses = [ExternalAddress(address: "203.0.113.1", interface: "ext")]
        p.gatewayDomains = [GatewayDomain(routingDomain: "red"), GatewayDomain(routingDomain: "blue")]
        p.infrastructurePrefixes = [InfrastructurePrefix(prefix: IPPrefix(parsing: "10.9.0.0/16")!, name: "management")]
        var ctx = CompileContext(uplinkIfindex: 3, ifindex: { ["ul": 3, "ext": 4, "mgmt": 5][$0] })
        ctx.hostAddresses = [
            InterfaceAddress(interface: "ul", prefix: IPPrefix(parsing: "198.18.0.1/16")!),
            InterfaceAddress(interface: "ext", prefix: IPPrefix(parsing: "203.0.113.1/24")!),
            InterfaceAddress(interface: "mgmt", prefix: IPPrefix(parsing: "192.0.2.5/24")!),
            InterfaceAddress(interface: "lo", prefix: IPPrefix(parsing: "127.0.0.1/8")!)
        ]
        let c = try PolicyCompiler.compile(p, ctx)
        var entries: [String: UInt32] = [:]
        for (k, v) in c.images[.infrastructure]!.entries {
            let key = k.load(as: nv_infra_key.self)
            let bits = Int(key.prefixlen) - Int(NV_INFRA_KEY_PREFIX_BITS)
            let bytes = withUnsafeBytes(of: key.addr) { Array($0) }
            let a = key.family == NV_AF_INET ? IPAddress(v4: Array(bytes.prefix(4))) : IPAddress(v6: bytes)
            entries["\(a)/\(bits)"] = v.load(as: UInt32.self)
        }
        let expected: [String: nv_infra_origin] = [
            "10.9.0.0/16": NV_INFRA_LISTED,
            "198.18.0.1/32": NV_INFRA_PROVIDER, "198.18.0.2/32": NV_INFRA_PROVIDER, "198.18.0.3/32": NV_INFRA_PROVIDER,
            "198.18.0.0/16": NV_INFRA_PROVIDER,  // the uplink's prefix: the provider network
            "203.0.113.1/32": NV_INFRA_EXTERNAL, "203.0.113.255/32": NV_INFRA_HOST,
            "192.0.2.5/32": NV_INFRA_HOST, "192.0.2.255/32": NV_INFRA_HOST, "198.18.255.255/32": NV_INFRA_HOST,
            "127.0.0.1/32": NV_INFRA_HOST, "127.255.255.255/32": NV_INFRA_HOST, "127.0.0.0/8": NV_INFRA_SPECIAL,
            "169.254.0.0/16": NV_INFRA_SPECIAL,
            "224.0.0.0/4": NV_INFRA_SPECIAL, "240.0.0.0/4": NV_INFRA_SPECIAL, "0.0.0.0/8": NV_INFRA_SPECIAL,
            "::/128": NV_INFRA_SPECIAL, "::1/128": NV_INFRA_SPECIAL, "fe80::/10": NV_INFRA_SPECIAL,
            "ff00::/8": NV_INFRA_SPECIAL
        ]
        #expect(entries == expected.mapValues(\.rawValue))
        // The external network itself (203.0.113.0/24) is where tenants go: not in it.
        #expect(entries["203.0.113.0/24"] == nil)

        // An ordinary host has none: tenants leave the virtual network only at a gateway.
        #expect(try PolicyCompiler.compile(twoTenants(), context()).images[.infrastructure]!.count == 0)
    }

    @Test func theExceptionShareIsDividedAmongTheCPUs() {
        let share = ExceptionShare(perSecond: 2000, burst: 200)
        #expect(share.perCPU(cpus: 1) == (500_000, 199 * 500_000))
        #expect(share.perCPU(cpus: 2) == (1_000_000, 99 * 1_000_000))
        #expect(ExceptionShare.unlimited.perCPU(cpus: 2) == (0, 0))
        let cfg = nv_config(
            uplinkIfindex: 3, pa4: nil, pa6: nil, exceptionShare: share, portExceptionShare: .defaultPerPort, cpus: 2)
        #expect(cfg.exc_interval_ns == 1_000_000 && cfg.exc_burst_ns == 99_000_000)
        #expect(
            cfg.exc_port_interval_ns == 4_000_000 && cfg.exc_port_burst_ns == 24 * 4_000_000,
            "500/s in bursts of 50 per port")
    }
}
