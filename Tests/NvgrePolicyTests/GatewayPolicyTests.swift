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
    p.publishedServices = [PublishedService(proto: .tcp, externalAddress: "203.0.113.1", externalPort: 8080, routingDomain: "red",
                                            customerAddress: "198.19.1.2", customerPort: 80)]
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

    static let brokenRules: [BrokenRule] = [
        BrokenRule("IPv6 external address", "externalAddresses[0].address", "2001:db8:113::1", "IPv4") { p in p.externalAddresses[0].address = "2001:db8:113::1" },
        BrokenRule("external on the uplink", "externalAddresses[0].interface", "ul", "other than the uplink") { p in p.externalAddresses[0].interface = "ul" },
        BrokenRule("unknown served domain", "gatewayDomains[1].routingDomain", "green", "routing domain") { p in p.gatewayDomains[1].routingDomain = "green" },
        BrokenRule("service port among NAT ports", "publishedServices[0].externalPort", "40000", "outside 203.0.113.1's NAT ports 32768-65535") { p in p.publishedServices[0].externalPort = 40000 },
        BrokenRule("service on a foreign address", "publishedServices[0].externalAddress", "203.0.113.9", "one of externalAddresses") { p in p.publishedServices[0].externalAddress = "203.0.113.9" },
        BrokenRule("service CA outside the domain", "publishedServices[0].customerAddress", "198.19.9.9", "inside a subnet of routing domain red") { p in p.publishedServices[0].customerAddress = "198.19.9.9" },
        BrokenRule("service of an unserved domain", "publishedServices[0].routingDomain", "blue", "in gatewayDomains") { p in p.gatewayDomains.removeLast(); p.publishedServices[0].routingDomain = "blue" },
        BrokenRule("same service twice", "publishedServices[1].externalPort", "8080", "one service per protocol") { p in p.publishedServices.append(p.publishedServices[0]) },
        BrokenRule("served without an external address", "externalAddresses", "[]", "at least one external address") { p in p.externalAddresses = []; p.publishedServices = [] },
    ]

    @Test(arguments: brokenRules)
    func eachBrokenRuleIsNamed(_ rule: BrokenRule) {
        var p = gatewayPolicy()
        rule.mutate(&p)
        let errors = p.validate()
        #expect(errors.contains { $0.field == rule.field && $0.value == rule.value && $0.allowed.contains(rule.allowed) }, "\(rule.name): got \(errors)")
    }

    @Test func badPortRangesAreNamed() {
        let text = "externalAddresses:\n  - {address: 203.0.113.1, interface: ext, natPorts: 70000-80000}\n"
        #expect { try PolicyDocument.decode(text) } throws: { e in
            (e as? PolicyErrors)?.errors.contains { $0.field == "externalAddresses[0].natPorts" && $0.value == "70000-80000" } == true
        }
    }
}
