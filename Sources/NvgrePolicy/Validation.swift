import NvgreWire

/// The rules a policy must follow before anything touches a map (RFC 7637 and what a user
/// of HNV expects). `validate()` returns every violation, not just the first.
extension Policy {
    public static let vsidRange: ClosedRange<UInt32> = 4096...16_777_214

    public func validate() -> [PolicyError] {
        var errors: [PolicyError] = []
        func fail(_ field: String, _ value: CustomStringConvertible, _ allowed: String) {
            errors.append(PolicyError(field, "\(value)", allowed))
        }

        // Routing domains: unique ids and names.
        var domainIDs = Set<UInt32>(), domainNames = Set<String>()
        for (i, d) in routingDomains.enumerated() {
            let at = "routingDomains[\(i)]"
            if d.id == 0 { fail("\(at).id", d.id, "a routing domain id from 1 to 4294967295") }
            if !domainIDs.insert(d.id).inserted { fail("\(at).id", d.id, "an id no other routing domain uses") }
            if d.name.isEmpty || d.name.count > 64 { fail("\(at).name", d.name, "a name of 1 to 64 characters") }
            if !domainNames.insert(d.name).inserted {
                fail("\(at).name", d.name, "a name no other routing domain uses")
            }
        }

        // Subnets: usable VSID in exactly one routing domain, one prefix per family,
        // gateways inside a prefix of their family, unicast gateway MAC.
        var subnetByVSID: [UInt32: VirtualSubnet] = [:]
        for (i, s) in subnets.enumerated() {
            let at = "subnets[\(i)]"
            if !Self.vsidRange.contains(s.vsid) {
                fail(
                    "\(at).vsid", s.vsid,
                    "a VSID from 4096 to 16777214 (0-4095 are reserved, 16777215 is vendor-specific)")
            }
            if subnetByVSID[s.vsid] != nil {
                fail("\(at).vsid", s.vsid, "a VSID no other subnet uses (a VSID belongs to one routing domain)")
            }
            subnetByVSID[s.vsid] = s
            if !domainNames.contains(s.routingDomain) {
                fail("\(at).routingDomain", s.routingDomain, "the name of a routing domain in this policy")
            }
            if s.prefixes.isEmpty { fail("\(at).prefixes", "[]", "one IPv4 and/or one IPv6 prefix") }
            var families = Set<IPFamily>()
            for (j, p) in s.prefixes.enumerated() {
                if !families.insert(p.family).inserted {
                    fail("\(at).prefixes[\(j)]", p, "at most one prefix per family")
                }
                if !p.isCanonical {
                    fail("\(at).prefixes[\(j)]", p, "a prefix without host bits, such as \(p.canonical)")
                }
            }
            for (j, g) in s.gateways.enumerated() where !s.prefixes.contains(where: { $0.contains(g) }) {
                fail("\(at).gateways[\(j)]", g, "an address inside one of the subnet's prefixes")
            }
            Self.checkUnicast(s.gatewayMAC, "\(at).gatewayMAC", &errors)
        }
        // Subnets of one routing domain must not overlap: the router could not choose.
        for (i, s) in subnets.enumerated() {
            for (k, t) in subnets.enumerated() where k > i && t.routingDomain == s.routingDomain {
                for p in s.prefixes where t.prefixes.contains(where: { $0.overlaps(p) }) {
                    fail(
                        "subnets[\(k)].prefixes", t.prefixes.map(\.description).joined(separator: ","),
                        "prefixes that do not overlap subnets[\(i)] (\(p)) in routing domain \(s.routingDomain)")
                }
            }
        }

        // Provider addresses: unique, all on the one uplink of this host.
        var pas = Set<IPAddress>()
        for (i, p) in providerAddresses.enumerated() {
            if !pas.insert(p.address).inserted {
                fail("providerAddresses[\(i)].address", p.address, "an address listed once")
            }
            if !p.address.isHostUnicast {
                fail(
                    "providerAddresses[\(i)].address", p.address,
                    "a unicast address of this host (not unspecified, multicast, loopback or broadcast)")
            }
            if p.interface.isEmpty || p.interface.count > 15 {
                fail("providerAddresses[\(i)].interface", p.interface, "an interface name of 1 to 15 characters")
            }
            if i > 0, p.interface != providerAddresses[0].interface {
                fail(
                    "providerAddresses[\(i)].interface", p.interface,
                    "the uplink of the other provider addresses (\(providerAddresses[0].interface)); a host has one "
                        + "uplink"
                )
            }
        }

        // Lookup records: known subnet, CA inside its prefix, CAs unique within a VSID,
        // unicast MAC. The same CA and MAC in another VSID (another tenant) is fine.
        var recordAt = RecordIndex(capacity: lookupRecords.count)
        // Records usually come grouped by VSID: the subnet is looked up when the VSID changes.
        var lastSubnet: (vsid: UInt32, subnet: VirtualSubnet?)?
        for (i, r) in lookupRecords.enumerated() {
            if lastSubnet?.vsid != r.vsid { lastSubnet = (r.vsid, subnetByVSID[r.vsid]) }
            guard Self.checkRecord(r, at: "lookupRecords[\(i)]", subnet: lastSubnet?.subnet, &errors) else {
                continue
            }
            if recordAt.insert(i, of: lookupRecords) != nil {
                fail(
                    "lookupRecords[\(i)].customerAddress", r.customerAddress,
                    "an address with one lookup record per VSID (\(r.vsid) has it already)")
            }
        }

        // Customer routes: known domain, canonical prefix, next hop of the prefix's family,
        // each (domain, prefix, next hop) once.
        var routeSeen = Set<String>()
        for (i, r) in customerRoutes.enumerated() {
            let at = "customerRoutes[\(i)]"
            if !domainNames.contains(r.routingDomain) {
                fail("\(at).routingDomain", r.routingDomain, "the name of a routing domain in this policy")
            }
            if !r.prefix.isCanonical {
                fail("\(at).prefix", r.prefix, "a prefix without host bits, such as \(r.prefix.canonical)")
            }
            if r.nextHop.family != r.prefix.family {
                fail("\(at).nextHop", r.nextHop, "an \(r.prefix.family) address, like the prefix")
            }
            if !routeSeen.insert("\(r.routingDomain) \(r.prefix) \(r.nextHop)").inserted {
                fail(
                    "\(at).nextHop", r.nextHop,
                    "a next hop listed once for \(r.prefix) in routing domain \(r.routingDomain)")
            }
        }

        // Ports: unique interface, known subnet, unicast MAC, addresses inside the subnet.
        var interfaces = Set<String>()
        for (i, p) in ports.enumerated() {
            let at = "ports[\(i)]"
            if p.interface.isEmpty || p.interface.count > 15 {
                fail("\(at).interface", p.interface, "an interface name of 1 to 15 characters")
            }
            if !interfaces.insert(p.interface).inserted {
                fail("\(at).interface", p.interface, "an interface used by one port only")
            }
            Self.checkUnicast(p.mac, "\(at).mac", &errors)
            guard let s = subnetByVSID[p.vsid] else {
                fail("\(at).vsid", p.vsid, "the VSID of a subnet in this policy")
                continue
            }
            if p.mac == s.gatewayMAC {
                fail("\(at).mac", p.mac, "a MAC other than subnet \(p.vsid)'s gateway MAC (the distributed router's)")
            }
            for (j, a) in p.addresses.enumerated() {
                if !s.prefixes.contains(where: { $0.contains(a) }) {
                    fail("\(at).addresses[\(j)]", a, "an address inside subnet \(p.vsid)'s prefixes")
                    continue
                }
                // As in HNV, a local VM has a lookup record too: it names this host's
                // provider address and the port's MAC, so other hosts and this one agree.
                guard let r = recordAt.find(vsid: p.vsid, address: a, in: lookupRecords).map({ lookupRecords[$0] })
                else {
                    fail(
                        "\(at).addresses[\(j)]", a,
                        "an address with a lookup record in VSID \(p.vsid) (add the VM's record: this host's "
                            + "provider address and the port's MAC)"
                    )
                    continue
                }
                if r.mac != p.mac { fail("\(at).mac", p.mac, "the MAC of the VM's lookup record for \(a) (\(r.mac))") }
                if !pas.isEmpty, !pas.contains(r.providerAddress), !p.moving {
                    fail(
                        "\(at).addresses[\(j)]", a,
                        "an address whose lookup record names a provider address of this host (it names "
                            + "\(r.providerAddress)); during a migration, a port marked moving"
                    )
                }
            }
        }
        // Foreign endpoints: each once, never one of this host's provider addresses.
        var endpoints = Set<IPAddress>()
        for (i, e) in foreignEndpoints.enumerated() {
            let at = "foreignEndpoints[\(i)]"
            if !endpoints.insert(e.address).inserted { fail("\(at).address", e.address, "an address listed once") }
            if pas.contains(e.address) || e.address.isUnspecified {
                fail("\(at).address", e.address, "the provider address of another host (this one is ours)")
            }
            if e.name.count > 64 { fail("\(at).name", e.name, "a name of at most 64 characters") }
        }
        validateGateway(domainNames: domainNames, fail: fail)
        return errors
    }

    /// Throws every violation at once; returns quietly when the policy is valid.
    public func validated() throws -> Policy {
        let e = validate()
        if !e.isEmpty { throw PolicyErrors(errors: e) }
        return self
    }

    /// The rules of one lookup record on its own (its subnet given): what `lookup add` checks
    /// without reading every other record. False when the subnet is missing.
    @discardableResult
    static func checkRecord(
        _ r: LookupRecord, at: @autoclosure () -> String, subnet: VirtualSubnet?,
        _ errors: inout [PolicyError]
    ) -> Bool {
        guard let s = subnet else {
            errors.append(PolicyError("\(at()).vsid", "\(r.vsid)", "the VSID of a subnet in this policy"))
            return false
        }
        if !s.prefixes.contains(where: { $0.contains(r.customerAddress) }) {
            errors.append(
                PolicyError(
                    "\(at()).customerAddress", r.customerAddress.description,
                    "an address inside subnet \(r.vsid)'s prefixes "
                        + "(\(s.prefixes.map(\.description).joined(separator: ", ")))"
                ))
        }
        if !r.providerAddress.isHostUnicast {
            errors.append(
                PolicyError(
                    "\(at()).providerAddress", r.providerAddress.description,
                    "a unicast provider address of a host (not unspecified, multicast, loopback or broadcast)"))
        }
        // The distributed router answers for the gateway address with the gateway MAC: a
        // record may claim neither.
        if s.gateways.contains(r.customerAddress) {
            errors.append(
                PolicyError(
                    "\(at()).customerAddress", r.customerAddress.description,
                    "an address other than subnet \(r.vsid)'s gateway address (the distributed router answers for it)"))
        }
        checkUnicast(r.mac, "\(at()).mac", &errors)
        if r.mac == s.gatewayMAC {
            errors.append(
                PolicyError(
                    "\(at()).mac", r.mac.description,
                    "a MAC other than subnet \(r.vsid)'s gateway MAC (the distributed router's)"))
        }
        return true
    }

    /// Checks one new lookup record against this policy's subnets and records (for
    /// `lookup add`): the same rules as a whole-policy validation.
    public func validate(adding r: LookupRecord, field: String) -> [PolicyError] {
        var errors: [PolicyError] = []
        Self.checkRecord(r, at: field, subnet: subnets.first { $0.vsid == r.vsid }, &errors)
        return errors
    }

    private static func checkUnicast(
        _ mac: MACAddress, _ field: @autoclosure () -> String, _ errors: inout [PolicyError]
    ) {
        if mac.isMulticast || mac.isZero {
            errors.append(
                PolicyError(field(), mac.description, "a unicast MAC address (first octet even, not all zero)"))
        }
    }
}
