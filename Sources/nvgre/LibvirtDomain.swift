import Foundation
import NvgrePolicy
import NvgreWire

#if canImport(FoundationXML)
    import FoundationXML
#endif

/// What libvirt's domain XML says of a VM's NVGRE ports: in `<metadata>`, an element of
/// our namespace naming the instance and, per interface (by MAC), its VSID and addresses;
/// in `<devices>`, each interface's MAC and tap (`<target dev=...>`, in the live XML that
/// hooks receive).
///
///     <metadata>
///       <nvgre:ports xmlns:nvgre="https://nvgre-xdp.dev/libvirt/1" instance="hv1">
///         <nvgre:port mac="52:54:00:00:01:09" vsid="5001">
///           <nvgre:address>198.19.1.9</nvgre:address>
///         </nvgre:port>
///       </nvgre:ports>
///     </metadata>
struct LibvirtDomain {
    static let namespace = "https://nvgre-xdp.dev/libvirt/1"

    struct Port {
        var mac: String
        var vsid: String
        var addresses: [String] = []
        var allowRouterAdvertisements = false
        var allowDHCPServer = false
    }

    var name = ""
    var instance: String?
    var ports: [Port] = []
    /// Each interface's MAC (lowercased) and tap.
    var taps: [String: String] = [:]

    /// Parses the XML; a document that is not XML is an error naming the domain.
    static func parse(_ data: Data, domain: String) throws -> LibvirtDomain {
        let reader = Reader()
        let parser = XMLParser(data: data)
        parser.shouldProcessNamespaces = true
        parser.delegate = reader
        guard parser.parse() else {
            throw fieldError(
                "domain XML", "\(domain) (\(parser.parserError.map { "\($0)" } ?? "unreadable"))",
                "libvirt's domain XML on standard input")
        }
        reader.domain.taps.merge(reader.pendingTaps) { $1 }
        return reader.domain
    }

    /// The ports of the metadata as the policy's VM ports, each on its tap; a port whose MAC
    /// no interface has, or whose fields are malformed, is an error naming it.
    func vmPorts() throws -> [VMPort] {
        try ports.enumerated().map { i, p in
            let field = "metadata port[\(i)]"
            let mac = try parseMAC(p.mac, "\(field).mac")
            guard let tap = taps[p.mac.lowercased()] else {
                throw fieldError(
                    "\(field).mac", p.mac, "the MAC of one of the domain's interfaces that has a tap (<target dev=...>)"
                )
            }
            return VMPort(
                interface: tap, vsid: try parseVSID(p.vsid, "\(field).vsid"), mac: mac,
                addresses: try p.addresses.map { try parseAddress($0, "\(field).address") },
                allowRouterAdvertisements: p.allowRouterAdvertisements, allowDHCPServer: p.allowDHCPServer)
        }
    }

    /// A SAX reader: the domain's name, our metadata, and interfaces' MAC and target.
    private final class Reader: NSObject, XMLParserDelegate {
        var domain = LibvirtDomain()
        var pendingTaps: [String: String] = [:]
        private var path: [String] = []
        private var text = ""
        private var interfaceMAC: String?, interfaceTap: String?

        func parser(
            _ parser: XMLParser, didStartElement element: String, namespaceURI: String?, qualifiedName: String?,
            attributes: [String: String] = [:]
        ) {
            text = ""
            if namespaceURI == LibvirtDomain.namespace {
                switch element {
                case "ports": domain.instance = attributes["instance"]
                case "port":
                    domain.ports.append(
                        Port(
                            mac: attributes["mac"] ?? "", vsid: attributes["vsid"] ?? "",
                            allowRouterAdvertisements: attributes["allowRouterAdvertisements"] == "yes",
                            allowDHCPServer: attributes["allowDhcpServer"] == "yes"))
                default: break
                }
            } else if path == ["domain", "devices"] && element == "interface" {
                (interfaceMAC, interfaceTap) = (nil, nil)
            } else if path == ["domain", "devices", "interface"] {
                if element == "mac" { interfaceMAC = attributes["address"]?.lowercased() }
                if element == "target" { interfaceTap = attributes["dev"] }
            }
            path.append(namespaceURI == LibvirtDomain.namespace ? "nvgre:" + element : element)
        }

        func parser(_ parser: XMLParser, foundCharacters string: String) { text += string }

        func parser(
            _ parser: XMLParser, didEndElement element: String, namespaceURI: String?, qualifiedName: String?
        ) {
            path.removeLast()
            let value = text.trimmingCharacters(in: .whitespacesAndNewlines)
            if namespaceURI == LibvirtDomain.namespace, element == "address", !domain.ports.isEmpty {
                domain.ports[domain.ports.count - 1].addresses.append(value)
            } else if path == ["domain"] && element == "name" {
                domain.name = value
            } else if path == ["domain", "devices"] && element == "interface" {
                if let mac = interfaceMAC, let tap = interfaceTap { pendingTaps[mac] = tap }
            }
            text = ""
        }
    }
}
