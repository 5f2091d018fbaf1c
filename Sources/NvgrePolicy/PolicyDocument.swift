import NvgreWire
import Yams

/// Reads a policy file (YAML, or JSON, which is YAML too) strictly: every unknown key,
/// wrong type and malformed value is an error naming its path, its value and what is
/// allowed. Scalars are read as text and parsed here, never guessed by the YAML resolver
/// (a MAC such as 12:34:56:00:01:02 would otherwise be a base-60 number).
public enum PolicyDocument {
    /// Parses `text`; throws PolicyErrors listing every problem, decoding and validation.
    /// With `validate` false only the reading is checked (for state the tool wrote itself).
    public static func decode(_ text: String, validate: Bool = true) throws -> Policy {
        try decode(bytes: Array(text.utf8), validate: validate)
    }

    /// The same, from the file's bytes (a large file is never copied into a String whole).
    /// A document that holds exactly one lookup record, one line as `save` writes it, and
    /// otherwise only empty sections (`subnets: []`): how the store keeps each record, read
    /// without the YAML parser. nil for anything else (which `decode` then reads, or refuses
    /// by name).
    public static func singleRecord(_ bytes: [UInt8]) -> LookupRecord? {
        guard let fast = RecordLines.split(bytes), fast.records.count == 1 else { return nil }
        for line in fast.rest.split(separator: "\n") where !line.allSatisfy({ $0 == " " }) {
            guard line.hasSuffix(": []"), line.dropLast(4).allSatisfy({ $0.isLetter }) else { return nil }
        }
        return fast.records[0]
    }

    public static func decode(bytes: [UInt8], validate: Bool = true) throws -> Policy {
        // One record per line (as `save` writes them) takes the fast reader; the rest of the
        // file, or all of it when that reader declines, goes to the YAML parser.
        let fast = RecordLines.split(bytes)
        let root: Node?
        do {
            root = try Yams.compose(yaml: fast?.rest ?? String(decoding: bytes, as: UTF8.self))
        } catch {
            throw PolicyErrors(errors: [PolicyError("file", "(unreadable)", "YAML or JSON; the parser said: \(error)")])
        }
        let ctx = DecodeContext()
        var policy = Policy()
        if let root {
            let top = ctx.fields(
                root, "",
                allowed: [
                    "routingDomains", "subnets", "lookupRecords", "customerRoutes",
                    "providerAddresses", "ports", "foreignEndpoints", "externalAddresses", "gatewayDomains",
                    "publishedServices", "infrastructurePrefixes"
                ])
            policy.routingDomains = ctx.list(top["routingDomains"], "routingDomains") { n, at in
                let f = ctx.fields(n, at, allowed: ["id", "name"], required: ["id", "name"])
                guard let id = ctx.number(f["id"], "\(at).id", 1...UInt32.max),
                    let name = ctx.text(f["name"], "\(at).name")
                else { return nil }
                return RoutingDomain(id: id, name: name)
            }
            policy.subnets = ctx.list(top["subnets"], "subnets") { n, at in
                let f = ctx.fields(
                    n, at, allowed: ["vsid", "routingDomain", "prefixes", "gateways", "gatewayMAC", "flood"],
                    required: ["vsid", "routingDomain", "prefixes", "gatewayMAC"])
                let flood = f["flood"].map { ctx.bool($0, "\(at).flood") } ?? true
                let prefixes = ctx.list(f["prefixes"], "\(at).prefixes") { ctx.prefix($0, $1) }
                let gateways = ctx.list(f["gateways"], "\(at).gateways") { ctx.address($0, $1) }
                guard let vsid = ctx.vsid(f["vsid"], "\(at).vsid"),
                    let rd = ctx.text(f["routingDomain"], "\(at).routingDomain"),
                    let mac = ctx.mac(f["gatewayMAC"], "\(at).gatewayMAC"), let flood
                else { return nil }
                return VirtualSubnet(
                    vsid: vsid, routingDomain: rd, prefixes: prefixes, gateways: gateways, gatewayMAC: mac,
                    flood: flood)
            }
            policy.lookupRecords = ctx.list(top["lookupRecords"], "lookupRecords") { n, at in
                let f = ctx.fields(
                    n, at, allowed: ["vsid", "customerAddress", "providerAddress", "mac", "type"],
                    required: ["vsid", "customerAddress", "providerAddress", "mac"])
                let type = f["type"].map { ctx.choice($0, "\(at).type", RecordType.self) } ?? .staticRecord
                guard let vsid = ctx.vsid(f["vsid"], "\(at).vsid"),
                    let ca = ctx.address(f["customerAddress"], "\(at).customerAddress"),
                    let pa = ctx.address(f["providerAddress"], "\(at).providerAddress"),
                    let mac = ctx.mac(f["mac"], "\(at).mac"), let type
                else { return nil }
                return LookupRecord(vsid: vsid, customerAddress: ca, providerAddress: pa, mac: mac, type: type)
            }
            policy.customerRoutes = ctx.list(top["customerRoutes"], "customerRoutes") { n, at in
                let f = ctx.fields(
                    n, at, allowed: ["routingDomain", "prefix", "nextHop", "metric"],
                    required: ["routingDomain", "prefix", "nextHop"])
                let metric = f["metric"].map { ctx.number($0, "\(at).metric", 0...UInt32.max) } ?? 256
                guard let rd = ctx.text(f["routingDomain"], "\(at).routingDomain"),
                    let prefix = ctx.prefix(f["prefix"], "\(at).prefix"),
                    let nh = ctx.address(f["nextHop"], "\(at).nextHop"), let metric
                else { return nil }
                return CustomerRoute(routingDomain: rd, prefix: prefix, nextHop: nh, metric: metric)
            }
            policy.providerAddresses = ctx.list(top["providerAddresses"], "providerAddresses") { n, at in
                let f = ctx.fields(n, at, allowed: ["address", "interface"], required: ["address", "interface"])
                guard let a = ctx.address(f["address"], "\(at).address"),
                    let i = ctx.text(f["interface"], "\(at).interface")
                else { return nil }
                return ProviderAddress(address: a, interface: i)
            }
            policy.ports = ctx.list(top["ports"], "ports") { n, at in
                let f = ctx.fields(
                    n, at,
                    allowed: [
                        "interface", "vsid", "mac", "addresses", "allowRouterAdvertisements", "allowDHCPServer",
                        "moving"
                    ],
                    required: ["interface", "vsid", "mac"])
                let addresses = ctx.list(f["addresses"], "\(at).addresses") { ctx.address($0, $1) }
                let ra = f["allowRouterAdvertisements"].map { ctx.bool($0, "\(at).allowRouterAdvertisements") } ?? false
                let dhcp = f["allowDHCPServer"].map { ctx.bool($0, "\(at).allowDHCPServer") } ?? false
                let moving = f["moving"].map { ctx.bool($0, "\(at).moving") } ?? false
                guard let i = ctx.text(f["interface"], "\(at).interface"),
                    let vsid = ctx.vsid(f["vsid"], "\(at).vsid"),
                    let mac = ctx.mac(f["mac"], "\(at).mac"), let ra, let dhcp, let moving
                else { return nil }
                return VMPort(
                    interface: i, vsid: vsid, mac: mac, addresses: addresses, allowRouterAdvertisements: ra,
                    allowDHCPServer: dhcp, moving: moving)
            }
            policy.foreignEndpoints = ctx.list(top["foreignEndpoints"], "foreignEndpoints") { n, at in
                let f = ctx.fields(n, at, allowed: ["address", "name", "flowID"], required: ["address"])
                let name = f["name"].map { ctx.text($0, "\(at).name") } ?? ""
                let flowID = f["flowID"].map { ctx.bool($0, "\(at).flowID") } ?? true
                guard let a = ctx.address(f["address"], "\(at).address"), let name, let flowID else { return nil }
                return ForeignEndpoint(address: a, name: name, flowID: flowID)
            }
            policy.externalAddresses = ctx.list(top["externalAddresses"], "externalAddresses") { n, at in
                let f = ctx.fields(
                    n, at, allowed: ["address", "interface", "natPorts"], required: ["address", "interface"])
                let ports = f["natPorts"].map { ctx.portRange($0, "\(at).natPorts") } ?? .defaultNAT
                guard let a = ctx.address(f["address"], "\(at).address"),
                    let i = ctx.text(f["interface"], "\(at).interface"),
                    let ports
                else { return nil }
                return ExternalAddress(address: a, interface: i, natPorts: ports)
            }
            policy.gatewayDomains = ctx.list(top["gatewayDomains"], "gatewayDomains") { n, at in
                let f = ctx.fields(
                    n, at, allowed: ["routingDomain", "mode", "prefixes", "natShare"], required: ["routingDomain"])
                let mode = f["mode"].map { ctx.choice($0, "\(at).mode", GatewayMode.self) } ?? .nat
                let prefixes = f["prefixes"].map { ctx.list($0, "\(at).prefixes") { ctx.prefix($0, $1) } } ?? []
                let share =
                    f["natShare"].map { ctx.number($0, "\(at).natShare", 1...100) } ?? GatewayDomain.defaultNATShare
                guard let rd = ctx.text(f["routingDomain"], "\(at).routingDomain"), let mode, let share else {
                    return nil
                }
                return GatewayDomain(routingDomain: rd, mode: mode, prefixes: prefixes, natShare: share)
            }
            policy.publishedServices = ctx.list(top["publishedServices"], "publishedServices") { n, at in
                let f = ctx.fields(
                    n, at,
                    allowed: [
                        "protocol", "externalAddress", "externalPort", "routingDomain", "customerAddress",
                        "customerPort"
                    ],
                    required: [
                        "protocol", "externalAddress", "externalPort", "routingDomain", "customerAddress",
                        "customerPort"
                    ])
                guard let protoNode = f["protocol"],
                    let proto = ctx.choice(protoNode, "\(at).protocol", ServiceProtocol.self),
                    let ea = ctx.address(f["externalAddress"], "\(at).externalAddress"),
                    let ep = ctx.number(f["externalPort"], "\(at).externalPort", 1...65535),
                    let rd = ctx.text(f["routingDomain"], "\(at).routingDomain"),
                    let ca = ctx.address(f["customerAddress"], "\(at).customerAddress"),
                    let cp = ctx.number(f["customerPort"], "\(at).customerPort", 1...65535)
                else { return nil }
                return PublishedService(
                    proto: proto, externalAddress: ea, externalPort: UInt16(ep), routingDomain: rd,
                    customerAddress: ca, customerPort: UInt16(cp))
            }
            policy.infrastructurePrefixes = ctx.list(top["infrastructurePrefixes"], "infrastructurePrefixes") { n, at in
                let f = ctx.fields(n, at, allowed: ["prefix", "name"], required: ["prefix"])
                let name = f["name"].map { ctx.text($0, "\(at).name") } ?? ""
                guard let prefix = ctx.prefix(f["prefix"], "\(at).prefix"), let name else { return nil }
                return InfrastructurePrefix(prefix: prefix, name: name)
            }
        }
        if let fast { policy.lookupRecords = fast.records }
        if !ctx.errors.isEmpty { throw PolicyErrors(errors: ctx.errors) }
        return validate ? try policy.validated() : policy
    }
}

/// Collects decoding errors while reading as much of the document as it can.
final class DecodeContext {
    var errors: [PolicyError] = []

    func fail(_ field: String, _ value: String, _ allowed: String) {
        errors.append(PolicyError(field.isEmpty ? "file" : field, value, allowed))
    }

    private func describe(_ n: Node) -> String {
        switch n {
        case let .scalar(s): return s.string
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .alias: return "an alias"
        }
    }

    /// The keys of a mapping; unknown and missing keys are errors.
    func fields(_ n: Node, _ at: String, allowed: [String], required: [String] = []) -> [String: Node] {
        guard case let .mapping(m) = n else {
            fail(at, describe(n), "a mapping with the keys \(allowed.joined(separator: ", "))")
            return [:]
        }
        var out: [String: Node] = [:]
        for (k, v) in m {
            let key = k.scalar?.string ?? describe(k)
            let path = at.isEmpty ? key : "\(at).\(key)"
            if !allowed.contains(key) {
                fail(path, key, "a known key: \(allowed.joined(separator: ", "))")
            } else if out[key] != nil {
                fail(path, key, "each key once")
            } else {
                out[key] = v
            }
        }
        for r in required where out[r] == nil { fail(at.isEmpty ? r : "\(at).\(r)", "", "a value (required)") }
        return out
    }

    /// A list whose items are read by `item`; an absent list is empty.
    func list<T>(_ n: Node?, _ at: String, _ item: (Node, String) -> T?) -> [T] {
        guard let n else { return [] }
        // A key with nothing under it (`ports:` and no items) is an empty list.
        if case let .scalar(v) = n, ["", "~", "null"].contains(v.string) { return [] }
        guard case let .sequence(s) = n else {
            fail(at, describe(n), "a list")
            return []
        }
        return s.enumerated().compactMap { item($0.element, "\(at)[\($0.offset)]") }
    }

    func text(_ n: Node?, _ at: String) -> String? {
        guard let n else { return nil }
        guard let s = n.scalar?.string else {
            fail(at, describe(n), "text")
            return nil
        }
        return s
    }

    /// A scalar parsed by `parse`; `allowed` says what a good value looks like.
    private func parsed<T>(_ n: Node?, _ at: String, _ allowed: String, _ parse: (String) -> T?) -> T? {
        guard let s = text(n, at) else { return nil }
        guard let v = parse(s) else {
            fail(at, s, allowed)
            return nil
        }
        return v
    }

    func address(_ n: Node?, _ at: String) -> IPAddress? {
        parsed(n, at, "an IPv4 address (198.19.1.1) or an IPv6 address (2001:db8::1)") { IPAddress(parsing: $0) }
    }

    func prefix(_ n: Node?, _ at: String) -> IPPrefix? {
        parsed(n, at, "a prefix such as 198.19.1.0/24 or 2001:db8:19:1::/64") { IPPrefix(parsing: $0) }
    }

    func mac(_ n: Node?, _ at: String) -> MACAddress? {
        parsed(n, at, "a MAC address such as 02:00:00:00:01:01") { MACAddress(parsing: $0) }
    }

    func portRange(_ n: Node?, _ at: String) -> PortRange? {
        parsed(n, at, "a port range such as 32768-65535 (first 1 or more, first <= last)") { PortRange(parsing: $0) }
    }

    /// A whole number, in decimal or in hex with 0x (VSIDs are often written as GRE keys).
    func number(_ n: Node?, _ at: String, _ range: ClosedRange<UInt32>) -> UInt32? {
        parsed(n, at, "a whole number from \(range.lowerBound) to \(range.upperBound) (decimal, or hex with 0x)") { s in
            let value = s.lowercased().hasPrefix("0x") ? UInt32(s.dropFirst(2), radix: 16) : UInt32(s)
            return value.flatMap { range.contains($0) ? $0 : nil }
        }
    }

    /// A VSID: any 32-bit number parses (validation then names the reserved ones); anything
    /// else is answered with the VSID range.
    func vsid(_ n: Node?, _ at: String) -> UInt32? {
        parsed(n, at, "a VSID from 4096 to 16777214 (decimal, or hex with 0x)") { s in
            s.lowercased().hasPrefix("0x") ? UInt32(s.dropFirst(2), radix: 16) : UInt32(s)
        }
    }

    func bool(_ n: Node?, _ at: String) -> Bool? {
        parsed(n, at, "true or false") { ["true": true, "false": false][$0] }
    }

    func choice<T: RawRepresentable & CaseIterable>(_ n: Node, _ at: String, _: T.Type) -> T?
    where T.RawValue == String {
        parsed(n, at, "one of \(T.allCases.map(\.rawValue).joined(separator: ", "))") { T(rawValue: $0) }
    }
}
