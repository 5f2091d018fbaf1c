import NvgreWire

/// Writes a policy as YAML or JSON in the shape PolicyDocument reads: one item per line,
/// every section present (a saved file is a full desired state), lookup records in the
/// one-line form the fast reader takes.
public enum PolicyFormat: String, CaseIterable, Sendable {
    case yaml, json
}

public enum PolicyWriter {
    public static func write(_ p: Policy, as format: PolicyFormat, header: String? = nil) -> String {
        var out = ""
        out.reserveCapacity(256 + p.lookupRecords.count * 112)
        let json = format == .json
        if !json, let header {
            for line in header.split(separator: "\n", omittingEmptySubsequences: false) { out += "# \(line)\n" }
        }
        if json { out += "{\n" }
        var firstSection = true
        func section<T>(_ name: String, _ items: [T], _ fields: (T) -> [(String, Value)]) {
            if json {
                out += firstSection ? "" : ",\n"
                out += "  \"\(name)\": ["
                if items.isEmpty {
                    out += "]"
                } else {
                    out += "\n"
                    for (i, item) in items.enumerated() {
                        out += "    "
                        mapping(fields(item), json: true, into: &out)
                        out += i + 1 < items.count ? ",\n" : "\n"
                    }
                    out += "  ]"
                }
            } else {
                out += "\(name):"
                if items.isEmpty {
                    out += " []\n"
                } else {
                    out += "\n"
                    for item in items {
                        out += "  - "
                        mapping(fields(item), json: false, into: &out)
                        out += "\n"
                    }
                }
            }
            firstSection = false
        }
        section("routingDomains", p.routingDomains) { [("id", .number($0.id)), ("name", .text($0.name))] }
        section("subnets", p.subnets) { s in
            [
                ("vsid", .number(s.vsid)), ("routingDomain", .text(s.routingDomain)),
                ("prefixes", .list(s.prefixes.map { .text($0.description) })),
                ("gateways", .list(s.gateways.map { .text($0.description) })),
                ("gatewayMAC", .text(s.gatewayMAC.description))
            ] + (s.flood ? [] : [("flood", .bool(false))])
        }
        section("lookupRecords", p.lookupRecords) { r in
            var f: [(String, Value)] = [
                ("vsid", .number(r.vsid)), ("customerAddress", .text(r.customerAddress.description)),
                ("providerAddress", .text(r.providerAddress.description)), ("mac", .text(r.mac.description))
            ]
            if r.type != .staticRecord { f.append(("type", .text(r.type.rawValue))) }
            return f
        }
        section("customerRoutes", p.customerRoutes) { r in
            [
                ("routingDomain", .text(r.routingDomain)), ("prefix", .text(r.prefix.description)),
                ("nextHop", .text(r.nextHop.description)), ("metric", .number(r.metric))
            ]
        }
        section("providerAddresses", p.providerAddresses) {
            [("address", .text($0.address.description)), ("interface", .text($0.interface))]
        }
        section("ports", p.ports) { port in
            [
                ("interface", .text(port.interface)), ("vsid", .number(port.vsid)),
                ("mac", .text(port.mac.description)),
                ("addresses", .list(port.addresses.map { .text($0.description) }))
            ] + (port.allowRouterAdvertisements ? [("allowRouterAdvertisements", .bool(true))] : [])
                + (port.allowDHCPServer ? [("allowDHCPServer", .bool(true))] : [])
                + (port.moving ? [("moving", .bool(true))] : [])
        }
        if !p.foreignEndpoints.isEmpty {
            section("foreignEndpoints", p.foreignEndpoints) { e in
                [("address", .text(e.address.description))] + (e.name.isEmpty ? [] : [("name", .text(e.name))])
                    + [("flowID", .bool(e.flowID))]
            }
        }
        // A gateway's sections, only when the policy has any (most hosts are not gateways).
        if p.isGateway || !p.publishedServices.isEmpty || !p.infrastructurePrefixes.isEmpty {
            section("externalAddresses", p.externalAddresses) { e in
                [
                    ("address", .text(e.address.description)), ("interface", .text(e.interface)),
                    ("natPorts", .text(e.natPorts.description))
                ]
            }
            section("gatewayDomains", p.gatewayDomains) { d in
                [("routingDomain", .text(d.routingDomain)), ("mode", .text(d.mode.rawValue))]
                    + (d.prefixes.isEmpty ? [] : [("prefixes", .list(d.prefixes.map { .text($0.description) }))])
                    + (d.natShare == GatewayDomain.defaultNATShare ? [] : [("natShare", .number(d.natShare))])
            }
            section("publishedServices", p.publishedServices) { s in
                [
                    ("protocol", .text(s.proto.rawValue)), ("externalAddress", .text(s.externalAddress.description)),
                    ("externalPort", .number(UInt32(s.externalPort))), ("routingDomain", .text(s.routingDomain)),
                    ("customerAddress", .text(s.customerAddress.description)),
                    ("customerPort", .number(UInt32(s.customerPort)))
                ]
            }
            section("infrastructurePrefixes", p.infrastructurePrefixes) { i in
                [("prefix", .text(i.prefix.description))] + (i.name.isEmpty ? [] : [("name", .text(i.name))])
            }
        }
        if json { out += "\n}\n" }
        return out
    }

    enum Value {
        case number(UInt32)
        case bool(Bool)
        case text(String)
        case list([Value])
    }

    private static func mapping(_ fields: [(String, Value)], json: Bool, into out: inout String) {
        out += "{"
        for (i, (k, v)) in fields.enumerated() {
            if i > 0 { out += ", " }
            out += json ? "\"\(k)\": " : "\(k): "
            value(v, json: json, into: &out)
        }
        out += "}"
    }

    private static func value(_ v: Value, json: Bool, into out: inout String) {
        switch v {
        case let .number(n): out += String(n)
        case let .bool(b): out += b ? "true" : "false"
        case let .text(s): out += json || needsQuotes(s) ? quoted(s) : s
        case let .list(items):
            out += "["
            for (i, item) in items.enumerated() {
                if i > 0 { out += ", " }
                value(item, json: json, into: &out)
            }
            out += "]"
        }
    }

    /// Plain YAML scalars are kept to letters, digits and `.-_/:` not starting with `:`
    /// and without `::`; everything else (IPv6 addresses with `::`, odd names) is quoted.
    static func needsQuotes(_ s: String) -> Bool {
        if s.isEmpty || s.hasPrefix(":") || s.hasPrefix("-") || s.contains("::") { return true }
        return !s.utf8.allSatisfy { b in
            (b >= 0x30 && b <= 0x3a) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a)
                || b == 0x2e || b == 0x2d || b == 0x5f || b == 0x2f
        }
    }

    /// A double-quoted scalar, valid in JSON and in YAML.
    public static func quoted(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 {
                    let h = String(u.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - h.count) + h
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        return out + "\""
    }
}
