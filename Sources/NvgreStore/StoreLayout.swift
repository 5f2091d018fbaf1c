import Foundation
import NvgrePolicy
import NvgreWire

/// Where the desired state lives in etcd (version 1 of the layout):
///
///     /nvgre/v1/current                      the generation readers use (a number)
///     /nvgre/v1/edited                       bumped by every write: writers serialize on it
///     /nvgre/v1/gen/<G>/domain/<name>        the shared tables, one key per item:
///     /nvgre/v1/gen/<G>/subnet/<vsid>          routing domains, subnets, lookup records,
///     /nvgre/v1/gen/<G>/record/<vsid>/<ca>     customer routes, foreign endpoints
///     /nvgre/v1/gen/<G>/route/<domain>/<prefix>
///     /nvgre/v1/gen/<G>/host/<name>/pa/<address>   each host's provider addresses, ports
///     /nvgre/v1/gen/<G>/host/<name>/port/<ifname>  and, on a gateway host, its gateway
///     /nvgre/v1/gen/<G>/host/<name>/gateway/...    sections (they name its interfaces)
///     /nvgre/v1/begun/<G>                    a generation being written (its start time)
///     /nvgre/v1/alive/<name>                 a host's liveness, on a lease
///
/// Each value is the item alone as a JSON policy document, so the store holds what a policy
/// file holds, read and checked by the same code. A change to a few items is written in
/// place in the current generation; a whole new policy is written as the next generation
/// and switched to with one key, so a reader never sees half of one (etcd takes at most 128
/// operations per transaction). Records carry no lease: losing a host erases no tenant.
public enum StoreLayout {
    public static let root = "/nvgre/v1/"
    public static let current = root + "current"
    public static let edited = root + "edited"
    public static let generations = root + "gen/"
    public static func generation(_ g: Int64) -> String { generations + "\(g)/" }
    public static func alive(_ host: String) -> String { root + "alive/\(host)" }
    /// Marks a generation being written (its writer's start time): one never switched to and
    /// older than ten minutes was abandoned by a writer that died, and is removed.
    public static func begun(_ generation: String) -> String { root + "begun/\(generation)" }

    /// The item keys (relative to a generation) and values of `policy`'s shared sections, or
    /// of its host sections under `host`. Two items with one key are refused (the policy's
    /// own rules refuse them too).
    public static func items(of policy: Policy, host: String? = nil) throws -> [(key: String, value: Data)] {
        var out: [(key: String, value: Data)] = []
        var seen: Set<String> = []
        func add(_ key: String, _ item: (inout Policy) -> Void) throws {
            guard seen.insert(key).inserted else {
                throw StoreError.badContent(key: key, "two items of the policy have this key")
            }
            var one = Policy()
            item(&one)
            // Records, the many items, as the one line `save` writes (read back without a
            // YAML parser); the others as JSON documents.
            let format: PolicyFormat = one.lookupRecords.isEmpty ? .json : .yaml
            out.append((key, Data(PolicyWriter.write(one, as: format).utf8)))
        }
        if let host {
            let h = "host/\(host)/"
            for p in policy.providerAddresses { try add(h + "pa/\(p.address)") { $0.providerAddresses = [p] } }
            for p in policy.ports { try add(h + "port/\(p.interface)") { $0.ports = [p] } }
            for e in policy.externalAddresses {
                try add(h + "gateway/external/\(e.address)") { $0.externalAddresses = [e] }
            }
            for g in policy.gatewayDomains {
                try add(h + "gateway/domain/\(g.routingDomain)") { $0.gatewayDomains = [g] }
            }
            for s in policy.publishedServices {
                try add(h + "gateway/service/\(s.proto.rawValue)/\(s.externalAddress)/\(s.externalPort)") {
                    $0.publishedServices = [s]
                }
            }
            for i in policy.infrastructurePrefixes {
                try add(h + "gateway/infra/\(i.prefix)") { $0.infrastructurePrefixes = [i] }
            }
            return out
        }
        for d in policy.routingDomains { try add("domain/\(d.name)") { $0.routingDomains = [d] } }
        for s in policy.subnets { try add("subnet/\(s.vsid)") { $0.subnets = [s] } }
        for r in policy.lookupRecords { try add(recordKey(r.vsid, r.customerAddress)) { $0.lookupRecords = [r] } }
        for r in policy.customerRoutes { try add("route/\(r.routingDomain)/\(r.prefix)") { $0.customerRoutes = [r] } }
        for f in policy.foreignEndpoints { try add("foreign/\(f.address)") { $0.foreignEndpoints = [f] } }
        return out
    }

    public static func recordKey(_ vsid: UInt32, _ ca: IPAddress) -> String { "record/\(vsid)/\(ca)" }

    /// The host a relative key belongs to, or nil for the shared tables.
    static func host(ofItem key: Substring) -> String? {
        guard key.hasPrefix("host/") else { return nil }
        return key.dropFirst("host/".count).split(separator: "/", maxSplits: 1).first.map(String.init)
    }
}

extension Policy {
    /// The tables every host shares: routing domains, subnets, lookup records, customer
    /// routes, foreign endpoints.
    public var sharedSections: Policy {
        var p = Policy()
        p.routingDomains = routingDomains
        p.subnets = subnets
        p.lookupRecords = lookupRecords
        p.customerRoutes = customerRoutes
        p.foreignEndpoints = foreignEndpoints
        return p
    }

    /// One host's own sections: its provider addresses and ports, and a gateway host's
    /// external addresses, served domains, published services and infrastructure prefixes.
    public var hostSections: Policy {
        var p = Policy()
        p.providerAddresses = providerAddresses
        p.ports = ports
        p.externalAddresses = externalAddresses
        p.gatewayDomains = gatewayDomains
        p.publishedServices = publishedServices
        p.infrastructurePrefixes = infrastructurePrefixes
        return p
    }

    /// What a host needs of this (whole) policy: only the routing domains with a port on it
    /// or that it serves as a gateway, with their subnets, records and routes, so that one
    /// host's maps do not grow with the whole cloud.
    public var scopedToItsDomains: Policy {
        let subnetDomain = Dictionary(subnets.map { ($0.vsid, $0.routingDomain) }, uniquingKeysWith: { a, _ in a })
        let used = Set(ports.compactMap { subnetDomain[$0.vsid] } + gatewayDomains.map(\.routingDomain))
        var p = self
        p.routingDomains = routingDomains.filter { used.contains($0.name) }
        p.subnets = subnets.filter { used.contains($0.routingDomain) }
        let vsids = Set(p.subnets.map(\.vsid))
        p.lookupRecords = lookupRecords.filter { vsids.contains($0.vsid) }
        p.customerRoutes = customerRoutes.filter { used.contains($0.routingDomain) }
        return p
    }
}
