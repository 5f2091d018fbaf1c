import NvgrePolicy
import NvgreWire
import Testing

/// The two-tenant policy as its gateway host holds it: an external address, both domains
/// served with NAT, one published service.
func gatewayPolicy() -> Policy {
    var p = twoTenants()
    p.ports = []
    p.externalAddresses = [ExternalAddress(address: "203.0.113.1", interface: "ext")]
    p.gatewayDomains = [GatewayDomain(routingDomain: "red"), GatewayDomain(routingDomain: "blue")]
    p.publishedServices = [
        PublishedService(
            proto: .tcp, externalAddress: "203.0.113.1", externalPort: 8080, routingDomain: "red",
            customerAddress: "198.19.1.2", customerPort: 80)
    ]
    return p
}

struct GatewayPolicyTests {
    @Test func aGatewayPolicyIsValidAndReadsBackAsWritten() throws {
        let p = gatewayPolicy()
        #expect(p.validate() == [])
        for format in PolicyFormat.allCases {
            #expect(try PolicyDocument.decode(PolicyWriter.write(p, as: format)) == p)
        }
    }

    @Test func aRouteModeDomainIsValidAndReadsBackAsWritten() throws {
        var p = gatewayPolicy()
        p.gatewayDomains[0] = GatewayDomain(
            routingDomain: "red", mode: .route, prefixes: [IPPrefix(parsing: "203.0.113.0/25")!])
        p.publishedServices = []
        #expect(p.validate() == [])
        for format in PolicyFormat.allCases {
            #expect(try PolicyDocument.decode(PolicyWriter.write(p, as: format)) == p)
        }
    }

    @Test func infrastructurePrefixesAndPortSharesReadBackAsWritten() throws {
        var p = gatewayPolicy()
        p.infrastructurePrefixes = [
            InfrastructurePrefix(prefix: IPPrefix(parsing: "10.9.0.0/16")!, name: "management"),
            InfrastructurePrefix(prefix: IPPrefix(parsing: "2001:db8:ff::/48")!)
        ]
        p.gatewayDomains[1].natShare = 25
        #expect(p.validate() == [])
        for format in PolicyFormat.allCases {
            #expect(try PolicyDocument.decode(PolicyWriter.write(p, as: format)) == p)
        }
        #expect(p.natShares == [1: 50, 2: 25], "the default keeps half of each address's ports for the other domains")
        p.gatewayDomains.removeLast()
        p.publishedServices = []
        #expect(p.natShares == [:], "one NAT domain alone has nobody to keep ports for")
    }

    static let routeMode = GatewayDomain(
        routingDomain: "red", mode: .route, prefixes: [IPPrefix(parsing: "203.0.113.0/25")!])

    static let brokenRules: [BrokenRule] = [
        BrokenRule(
            "route mode without prefixes", "gatewayDomains[0].prefixes", "[]", "at least one physical IPv4 prefix"
        ) { p in p.gatewayDomains[0] = GatewayDomain(routingDomain: "red", mode: .route) },
        BrokenRule("service of a route-mode domain", "publishedServices[0].routingDomain", "red", "in mode nat") { p in
            p.gatewayDomains[0] = routeMode
        },
        BrokenRule("prefixes in mode nat", "gatewayDomains[1].prefixes", "203.0.113.0/25", "none in mode nat") { p in
            p.gatewayDomains[1].prefixes = [IPPrefix(parsing: "203.0.113.0/25")!]
        },
        BrokenRule("IPv6 routed prefix", "gatewayDomains[0].prefixes[0]", "2001:db8:113::/64", "an IPv4 prefix") { p in
            p.gatewayDomains[0] = routeMode
            p.publishedServices = []
            p.gatewayDomains[0].prefixes = [IPPrefix(parsing: "2001:db8:113::/64")!]
        },
        BrokenRule("host bits in a routed prefix", "gatewayDomains[0].prefixes[0]", "203.0.113.7/25", "203.0.113.0/25")
        { p in
            p.gatewayDomains[0] = routeMode
            p.publishedServices = []
            p.gatewayDomains[0].prefixes = [IPPrefix(parsing: "203.0.113.7/25")!]
        },
        BrokenRule(
            "routed prefix over the domain's own subnet", "gatewayDomains[0].prefixes[0]", "0.0.0.0/0",
            "outside the domain's own subnet 198.19.1.0/24"
        ) { p in
            p.gatewayDomains[0] = routeMode
            p.publishedServices = []
            p.gatewayDomains[0].prefixes = [IPPrefix(parsing: "0.0.0.0/0")!]
        },
        BrokenRule(
            "two routed domains with one address space", "subnets[2].prefixes[0]", "198.19.1.0/24",
            "no other routed domain uses (red has 198.19.1.0/24)"
        ) { p in
            p.gatewayDomains = [
                routeMode, GatewayDomain(routingDomain: "blue", mode: .route, prefixes: routeMode.prefixes)
            ]
            p.publishedServices = []
        },
        BrokenRule(
            "external address inside a routed subnet", "subnets[1].prefixes[0]", "198.19.2.0/24",
            "without the gateway's external address 198.19.2.1"
        ) { p in
            p.gatewayDomains[0] = routeMode
            p.externalAddresses[0].address = "198.19.2.1"
            p.publishedServices = []
        },
        BrokenRule("IPv6 external address", "externalAddresses[0].address", "2001:db8:113::1", "IPv4") { p in
            p.externalAddresses[0].address = "2001:db8:113::1"
        },
        BrokenRule("external on the uplink", "externalAddresses[0].interface", "ul", "other than the uplink") { p in
            p.externalAddresses[0].interface = "ul"
        },
        BrokenRule("unknown served domain", "gatewayDomains[1].routingDomain", "green", "routing domain") { p in
            p.gatewayDomains[1].routingDomain = "green"
        },
        BrokenRule(
            "service port among NAT ports", "publishedServices[0].externalPort", "40000",
            "outside 203.0.113.1's NAT ports 32768-65535"
        ) { p in p.publishedServices[0].externalPort = 40000 },
        BrokenRule(
            "service on a foreign address", "publishedServices[0].externalAddress", "203.0.113.9",
            "one of externalAddresses"
        ) { p in p.publishedServices[0].externalAddress = "203.0.113.9" },
        BrokenRule(
            "service CA outside the domain", "publishedServices[0].customerAddress", "198.19.9.9",
            "inside a subnet of routing domain red"
        ) { p in p.publishedServices[0].customerAddress = "198.19.9.9" },
        BrokenRule("service of an unserved domain", "publishedServices[0].routingDomain", "blue", "in gatewayDomains") {
            p in
            p.gatewayDomains.removeLast()
            p.publishedServices[0].routingDomain = "blue"
        },
        BrokenRule("same service twice", "publishedServices[1].externalPort", "8080", "one service per protocol") { p in
            p.publishedServices.append(p.publishedServices[0])
        },
        BrokenRule("no NAT port share", "gatewayDomains[0].natShare", "0", "a percentage from 1 to 100") { p in
            p.gatewayDomains[0].natShare = 0
        },
        BrokenRule(
            "host bits in an infrastructure prefix", "infrastructurePrefixes[0].prefix", "10.9.1.1/16", "10.9.0.0/16"
        ) { p in p.infrastructurePrefixes = [InfrastructurePrefix(prefix: IPPrefix(parsing: "10.9.1.1/16")!)] },
        BrokenRule("served without an external address", "externalAddresses", "[]", "at least one external address") {
            p in
            p.externalAddresses = []
            p.publishedServices = []
        }
    ]

    @Test(arguments: brokenRules)
    func eachBrokenRuleIsNamed(_ rule: BrokenRule) {
        var p = gatewayPolicy()
        rule.mutate(&p)
        let errors = p.validate()
        #expect(
            errors.contains { $0.field == rule.field && $0.value == rule.value && $0.allowed.contains(rule.allowed) },
            "\(rule.name): got \(errors)")
    }

    @Test func aPortShareOutOfRangeIsNamedWhenRead() {
        let text = "gatewayDomains:\n  - {routingDomain: red, natShare: 150}\n"
        #expect { try PolicyDocument.decode(text, validate: false) } throws: { e in
            (e as? PolicyErrors)?.errors.contains { $0.field == "gatewayDomains[0].natShare" && $0.value == "150" }
                == true
        }
    }

    @Test func badPortRangesAreNamed() {
        let text = "externalAddresses:\n  - {address: 203.0.113.1, interface: ext, natPorts: 70000-80000}\n"
        #expect { try PolicyDocument.decode(text) } throws: { e in
            (e as? PolicyErrors)?.errors.contains {
                $0.field == "externalAddresses[0].natPorts" && $0.value == "70000-80000"
            } == true
        }
    }
}
