import ArgumentParser
import NvgreControl
import NvgrePolicy
import NvgreWire

/// Published services of a gateway: external address:port -> (routing domain, CA, port),
/// changed live (one all-or-nothing apply, like every other policy object).
struct ServiceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "service", abstract: "Tenant services published on the gateway's external addresses.",
        subcommands: [Add.self, Del.self, List.self])

    struct Add: ChangesInstance {
        static let configuration = CommandConfiguration(
            abstract: "Publish a tenant's service: new connections to the external address and port reach the VM.",
            discussion:
                "Example: nvgre service add tcp 203.0.113.1:8080 --domain red --to 198.19.1.2:80. The external port "
                + "must lie outside the address's natPorts."
        )
        @OptionGroup var global: GlobalOptions
        @Argument(help: "tcp or udp.") var proto: String
        @Argument(help: "External address:port.") var external: String
        @Option(help: "The tenant's routing domain.") var domain: String
        @Option(help: "The VM's customer address:port.") var to: String

        func execute() throws {
            let p = try parseProtocol(proto)
            let (ea, ep) = try parseEndpoint(external, "external")
            let (ca, cp) = try parseEndpoint(to, "--to")
            try edit(global) { policy in
                let s = PublishedService(
                    proto: p, externalAddress: ea, externalPort: ep, routingDomain: domain, customerAddress: ca,
                    customerPort: cp)
                if policy.publishedServices.contains(where: { $0.outside == s.outside }) {
                    throw fieldError(
                        "external", external,
                        "an address and port not published yet for \(p.rawValue) (`nvgre service del` first)")
                }
                policy.publishedServices.append(s)
            }
        }
    }

    struct Del: ChangesInstance {
        static let configuration = CommandConfiguration(
            abstract: "Stop publishing a service. Connections already open go on until they are idle.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "tcp or udp.") var proto: String
        @Argument(help: "External address:port.") var external: String

        func execute() throws {
            let p = try parseProtocol(proto)
            let (ea, ep) = try parseEndpoint(external, "external")
            try edit(global) { policy in
                let before = policy.publishedServices.count
                policy.publishedServices.removeAll {
                    $0.proto == p && $0.externalAddress == ea && $0.externalPort == ep
                }
                if policy.publishedServices.count == before {
                    throw fieldError("external", external, "a published \(p.rawValue) service (`nvgre service list`)")
                }
            }
        }
    }

    struct List: NvgreCommand {
        static let configuration = CommandConfiguration(abstract: "List the published services.")
        @OptionGroup var global: GlobalOptions

        func execute() throws {
            let services = try global.openInstance().livePolicy().publishedServices
            if global.json {
                print(
                    JSON.array(
                        services.map { s in
                            .object([
                                ("protocol", .string(s.proto.rawValue)),
                                ("externalAddress", .string(s.externalAddress.description)),
                                ("externalPort", .number(UInt64(s.externalPort))),
                                ("routingDomain", .string(s.routingDomain)),
                                ("customerAddress", .string(s.customerAddress.description)),
                                ("customerPort", .number(UInt64(s.customerPort)))
                            ])
                        }
                    ).rendered())
            } else {
                for s in services { print("\(s.outside) -> \(s.routingDomain) \(s.customerAddress):\(s.customerPort)") }
            }
        }
    }
}

func parseProtocol(_ s: String) throws -> ServiceProtocol {
    guard let p = ServiceProtocol(rawValue: s) else { throw fieldError("protocol", s, "tcp or udp") }
    return p
}

/// "203.0.113.1:8080": an IPv4 address and a port from 1 to 65535.
func parseEndpoint(_ s: String, _ field: String) throws -> (IPAddress, UInt16) {
    let parts = s.split(separator: ":", omittingEmptySubsequences: false)
    guard parts.count == 2, let a = IPAddress(parsing: String(parts[0])), a.family == .v4,
        let port = UInt16(parts[1]), port > 0
    else {
        throw fieldError(field, s, "an IPv4 address and a port, such as 203.0.113.1:8080 (port 1-65535)")
    }
    return (a, port)
}
