import NvgreWire

// The gateway's part of a policy (HNV gateway): the external addresses it translates to,
// the routing domains it serves, and the tenant services it publishes on the outside. A
// host whose policy has none of these is an ordinary host.

/// An IPv4 address of the gateway on its external interface, with the ports that outbound
/// NAT may give to flows (a published service's port must lie outside them).
public struct ExternalAddress: Equatable, Sendable {
    public var address: IPAddress
    public var interface: String
    public var natPorts: PortRange

    public init(address: IPAddress, interface: String, natPorts: PortRange = .defaultNAT) {
        self.address = address
        self.interface = interface
        self.natPorts = natPorts
    }
}

/// An inclusive range of TCP/UDP ports, written `32768-65535`.
public struct PortRange: Equatable, Sendable, CustomStringConvertible {
    public var first: UInt16
    public var last: UInt16

    public static let defaultNAT = PortRange(first: 32768, last: 65535)

    public init(first: UInt16, last: UInt16) {
        self.first = first
        self.last = last
    }

    /// "1024-65535", or one port "8080".
    public init?(parsing s: String) {
        let parts = s.split(separator: "-", omittingEmptySubsequences: false)
        guard (1...2).contains(parts.count), let a = UInt16(parts[0]), let b = UInt16(parts.last!), a >= 1, a <= b
        else { return nil }
        self.init(first: a, last: b)
    }

    public func contains(_ port: UInt16) -> Bool { port >= first && port <= last }
    public var count: Int { Int(last) - Int(first) + 1 }
    public var description: String { first == last ? "\(first)" : "\(first)-\(last)" }
}

/// What the gateway does for a routing domain.
public enum GatewayMode: String, CaseIterable, Equatable, Sendable {
    case nat  // outbound NAT on the external addresses; published services come in
    case route  // plain routing, no NAT: the domain's subnets and `prefixes` reach each other
}

/// A routing domain this gateway serves. In route mode, `prefixes` are the physical IPv4
/// prefixes the domain reaches through the external interface (and the only sources it
/// accepts from there); the physical network must route the domain's subnets to the gateway.
public struct GatewayDomain: Equatable, Sendable {
    public var routingDomain: String
    public var mode: GatewayMode
    public var prefixes: [IPPrefix]
    /// The most of the gateway's shared NAT resources that this domain may hold at once, in
    /// percent: of each external address's ports (per protocol), and of the flow table. The
    /// rest stays for the other domains.
    public var natShare: UInt32

    public static let defaultNATShare: UInt32 = 50

    public init(
        routingDomain: String, mode: GatewayMode = .nat, prefixes: [IPPrefix] = [],
        natShare: UInt32 = GatewayDomain.defaultNATShare
    ) {
        self.routingDomain = routingDomain
        self.mode = mode
        self.prefixes = prefixes
        self.natShare = natShare
    }
}

/// A prefix no tenant may reach through the gateway (management networks, the store,
/// monitoring). Provider addresses, the uplink's prefixes, the gateway host's own addresses
/// and the special ranges are in the same set without being listed (`specialPrefixes`).
public struct InfrastructurePrefix: Equatable, Sendable {
    public var prefix: IPPrefix
    public var name: String

    public init(prefix: IPPrefix, name: String = "") {
        self.prefix = prefix
        self.name = name
    }

    /// Never a destination out of a virtual network: unspecified, loopback, link-local,
    /// multicast, reserved and limited broadcast (IPv4); unspecified, loopback, link-local
    /// and multicast (IPv6).
    public static let specialPrefixes: [IPPrefix] = [
        "0.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "224.0.0.0/4", "240.0.0.0/4",
        "::/128", "::1/128", "fe80::/10", "ff00::/8"
    ].map { IPPrefix(parsing: $0)! }
}

public enum ServiceProtocol: String, CaseIterable, Equatable, Sendable {
    case tcp, udp

    public var number: UInt8 { self == .tcp ? 6 : 17 }
}

/// external address:port -> (routing domain, CA, port): a tenant's service on the outside.
public struct PublishedService: Equatable, Sendable {
    public var proto: ServiceProtocol
    public var externalAddress: IPAddress
    public var externalPort: UInt16
    public var routingDomain: String
    public var customerAddress: IPAddress
    public var customerPort: UInt16

    public init(
        proto: ServiceProtocol, externalAddress: IPAddress, externalPort: UInt16, routingDomain: String,
        customerAddress: IPAddress, customerPort: UInt16
    ) {
        self.proto = proto
        self.externalAddress = externalAddress
        self.externalPort = externalPort
        self.routingDomain = routingDomain
        self.customerAddress = customerAddress
        self.customerPort = customerPort
    }

    /// "tcp 203.0.113.1:8080", the service's identity on the outside.
    public var outside: String { "\(proto.rawValue) \(externalAddress):\(externalPort)" }
}

extension Policy {
    public var isGateway: Bool { !gatewayDomains.isEmpty || !externalAddresses.isEmpty }

    /// Routing domain id -> its share of the NAT ports and of the flow table, in percent.
    /// Empty when one domain alone is served with NAT: there is nobody to keep ports for.
    public var natShares: [UInt32: UInt32] {
        let nat = gatewayDomains.filter { $0.mode == .nat }
        guard nat.count > 1 else { return [:] }
        var out: [UInt32: UInt32] = [:]
        for d in nat {
            if let id = routingDomains.first(where: { $0.name == d.routingDomain })?.id { out[id] = d.natShare }
        }
        return out
    }

    /// The gateway's rules; part of `validate()`.
    func validateGateway(domainNames: Set<String>, fail: (String, CustomStringConvertible, String) -> Void) {
        var addresses = Set<IPAddress>()
        for (i, e) in externalAddresses.enumerated() {
            let at = "externalAddresses[\(i)]"
            if e.address.family != .v4 || e.address.isUnspecified {
                fail("\(at).address", e.address, "a unicast IPv4 address (the gateway translates IPv4 to IPv4)")
            }
            if !addresses.insert(e.address).inserted { fail("\(at).address", e.address, "an address listed once") }
            if e.interface.isEmpty || e.interface.count > 15 {
                fail("\(at).interface", e.interface, "an interface name of 1 to 15 characters")
            }
            if i > 0, e.interface != externalAddresses[0].interface {
                fail(
                    "\(at).interface", e.interface,
                    "the external interface of the other addresses (\(externalAddresses[0].interface)); a gateway "
                        + "has one"
                )
            }
            if let pa = providerAddresses.first, pa.interface == e.interface {
                fail("\(at).interface", e.interface, "an interface other than the uplink \(pa.interface)")
            }
        }
        var served = Set<String>()
        for (i, d) in gatewayDomains.enumerated() {
            let at = "gatewayDomains[\(i)]"
            if !domainNames.contains(d.routingDomain) {
                fail("\(at).routingDomain", d.routingDomain, "the name of a routing domain in this policy")
            }
            if !served.insert(d.routingDomain).inserted {
                fail("\(at).routingDomain", d.routingDomain, "a routing domain listed once")
            }
            validateRouteMode(d, at: at, fail: fail)
        }
        validateRoutedSubnetsDisjoint(fail: fail)
        if !gatewayDomains.isEmpty && externalAddresses.isEmpty {
            fail("externalAddresses", "[]", "at least one external address when gatewayDomains serves a routing domain")
        }
        for (i, d) in gatewayDomains.enumerated() where !(1...100).contains(d.natShare) {
            fail("gatewayDomains[\(i)].natShare", d.natShare, "a percentage from 1 to 100")
        }
        for (i, x) in infrastructurePrefixes.enumerated() where !x.prefix.isCanonical {
            fail("infrastructurePrefixes[\(i)].prefix", x.prefix, "a prefix without host bits (\(x.prefix.canonical))")
        }
        var outside = Set<String>()
        for (i, s) in publishedServices.enumerated() {
            let at = "publishedServices[\(i)]"
            if let e = externalAddresses.first(where: { $0.address == s.externalAddress }) {
                if e.natPorts.contains(s.externalPort) {
                    fail("\(at).externalPort", s.externalPort, "a port outside \(e.address)'s NAT ports \(e.natPorts)")
                }
            } else {
                fail("\(at).externalAddress", s.externalAddress, "one of externalAddresses")
            }
            if s.externalPort == 0 { fail("\(at).externalPort", s.externalPort, "a port from 1 to 65535") }
            if s.customerPort == 0 { fail("\(at).customerPort", s.customerPort, "a port from 1 to 65535") }
            if !served.contains(s.routingDomain) {
                fail("\(at).routingDomain", s.routingDomain, "a routing domain in gatewayDomains")
            } else if gatewayDomains.contains(where: { $0.routingDomain == s.routingDomain && $0.mode != .nat }) {
                fail(
                    "\(at).routingDomain", s.routingDomain,
                    "a routing domain in mode nat (a route-mode domain's replies leave untranslated)")
            } else if !subnets.contains(where: {
                $0.routingDomain == s.routingDomain && $0.prefixes.contains { $0.contains(s.customerAddress) }
            }) {
                fail(
                    "\(at).customerAddress", s.customerAddress,
                    "an IPv4 address inside a subnet of routing domain \(s.routingDomain)")
            }
            if !outside.insert(s.outside).inserted {
                fail(
                    "\(at).externalPort", s.externalPort,
                    "one service per protocol, address and port (\(s.outside) is taken)")
            }
        }
    }

    /// A route-mode domain names IPv4 physical prefixes that its own subnets do not overlap;
    /// a NAT domain names none.
    private func validateRouteMode(
        _ d: GatewayDomain, at: String, fail: (String, CustomStringConvertible, String) -> Void
    ) {
        guard d.mode == .route else {
            if !d.prefixes.isEmpty {
                fail(
                    "\(at).prefixes", d.prefixes.map(\.description).joined(separator: ", "),
                    "none in mode nat (prefixes are for mode route)")
            }
            return
        }
        if d.prefixes.isEmpty {
            fail("\(at).prefixes", "[]", "at least one physical IPv4 prefix the domain reaches in mode route")
        }
        let own = subnets.filter { $0.routingDomain == d.routingDomain }.flatMap(\.prefixes)
        for (j, prefix) in d.prefixes.enumerated() {
            let field = "\(at).prefixes[\(j)]"
            if prefix.family != .v4 {
                fail(field, prefix, "an IPv4 prefix (the gateway routes IPv4)")
                continue
            }
            if !prefix.isCanonical { fail(field, prefix, "a prefix without host bits (\(prefix.canonical))") }
            if let clash = own.first(where: { $0.overlaps(prefix) }) {
                fail(field, prefix, "a prefix outside the domain's own subnet \(clash)")
            }
        }
    }

    /// The outside reaches a route-mode domain by destination address alone, so the IPv4
    /// subnets of all route-mode domains must be disjoint, and none may hold an external address.
    private func validateRoutedSubnetsDisjoint(fail: (String, CustomStringConvertible, String) -> Void) {
        let routed = Set(gatewayDomains.filter { $0.mode == .route }.map(\.routingDomain))
        var seen: [(IPPrefix, String)] = []
        for (i, s) in subnets.enumerated() where routed.contains(s.routingDomain) {
            for (j, prefix) in s.prefixes.enumerated() where prefix.family == .v4 {
                let field = "subnets[\(i)].prefixes[\(j)]"
                if let other = seen.first(where: { $0.0.overlaps(prefix) && $0.1 != s.routingDomain }) {
                    fail(
                        field, prefix,
                        "a prefix no other routed domain uses (\(other.1) has \(other.0)); the gateway routes "
                            + "\(s.routingDomain) without NAT"
                    )
                }
                if let e = externalAddresses.first(where: { prefix.contains($0.address) }) {
                    fail(field, prefix, "a prefix without the gateway's external address \(e.address)")
                }
                seen.append((prefix, s.routingDomain))
            }
        }
    }
}
