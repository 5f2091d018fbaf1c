import CNvgre
#if canImport(Glibc)
import Glibc
#endif

/// The maps of one data path instance, typed by the ABI header: either those of a loaded
/// object, or those pinned under an instance's bpffs directory (opened without loading any
/// program, which is what makes `nvgre lookup add` cheap).
/// Immutable after init (descriptors only), hence safe to share between threads.
public final class DatapathMaps: @unchecked Sendable {
    public let lookups: BPFMap<nv_lookup_key, nv_lookup_val>
    public let subnets: BPFMap<UInt32, nv_subnet>
    public let ports: BPFMap<UInt32, nv_port>
    public let portAddresses: BPFMap<nv_port_ca_key, UInt32>
    public let routes: BPFMap<nv_route_key, nv_route_val>
    public let localPAs: BPFMap<nv_pa_key, UInt32>
    public let config: BPFMap<UInt32, nv_config>
    public let vsidStats: BPFMap<UInt32, nv_vsid_stats>
    public let dropStats: BPFMap<UInt32, nv_reason_stats>
    public let exceptionStats: BPFMap<UInt32, nv_reason_stats>
    public let exceptionRingFD: Int32
    public let gatewayDomains: BPFMap<UInt32, UInt32>
    public let gatewayPrefixes: BPFMap<nv_gw_prefix_key, UInt32>
    public let gatewayRouted: BPFMap<nv_gw_routed_key, nv_gw_routed>
    public let externalAddresses: BPFMap<nv_ext_addr_key, UInt32>
    public let services: BPFMap<nv_service_key, nv_service>
    public let natOut: BPFMap<nv_nat_out_key, nv_nat_flow>
    public let natIn: BPFMap<nv_nat_in_key, nv_nat_flow>
    public let gatewayStats: BPFMap<UInt32, nv_reason_stats>
    public let infrastructure: BPFMap<nv_infra_key, UInt32>
    public let exceptionBuckets: BPFMap<UInt32, UInt64>
    public let domainStats: BPFMap<nv_domain_counter_key, nv_reason_stats>
    /// Descriptors opened from pins are ours to close; a loaded object's belong to libbpf.
    private let ownsDescriptors: Bool

    /// The map names, as in bpf/maps.h and as pinned.
    public static let names = ["lookups", "subnets", "ports", "port_cas", "routes", "local_pas", "config",
                               "vsid_stats", "drop_stats", "exc_stats", "exceptions",
                               "gw_domains", "gw_prefixes", "gw_routed", "ext_addrs", "services", "nat_out", "nat_in", "gw_stats",
                               "infra", "exc_buckets", "domain_stats"]

    init(owning: Bool = false, fd: (String) -> Int32) {
        ownsDescriptors = owning
        lookups = BPFMap(fd: fd("lookups"), name: "lookups")
        subnets = BPFMap(fd: fd("subnets"), name: "subnets")
        ports = BPFMap(fd: fd("ports"), name: "ports")
        portAddresses = BPFMap(fd: fd("port_cas"), name: "port_cas")
        routes = BPFMap(fd: fd("routes"), name: "routes")
        localPAs = BPFMap(fd: fd("local_pas"), name: "local_pas")
        config = BPFMap(fd: fd("config"), name: "config")
        vsidStats = BPFMap(fd: fd("vsid_stats"), name: "vsid_stats", perCPU: true)
        dropStats = BPFMap(fd: fd("drop_stats"), name: "drop_stats", perCPU: true)
        exceptionStats = BPFMap(fd: fd("exc_stats"), name: "exc_stats", perCPU: true)
        exceptionRingFD = fd("exceptions")
        gatewayDomains = BPFMap(fd: fd("gw_domains"), name: "gw_domains")
        gatewayPrefixes = BPFMap(fd: fd("gw_prefixes"), name: "gw_prefixes")
        gatewayRouted = BPFMap(fd: fd("gw_routed"), name: "gw_routed")
        externalAddresses = BPFMap(fd: fd("ext_addrs"), name: "ext_addrs")
        services = BPFMap(fd: fd("services"), name: "services")
        natOut = BPFMap(fd: fd("nat_out"), name: "nat_out")
        natIn = BPFMap(fd: fd("nat_in"), name: "nat_in")
        gatewayStats = BPFMap(fd: fd("gw_stats"), name: "gw_stats", perCPU: true)
        infrastructure = BPFMap(fd: fd("infra"), name: "infra")
        exceptionBuckets = BPFMap(fd: fd("exc_buckets"), name: "exc_buckets", perCPU: true)
        domainStats = BPFMap(fd: fd("domain_stats"), name: "domain_stats", perCPU: true)
    }

    /// Opens the maps pinned in an instance directory.
    public convenience init(pinDirectory dir: String) throws {
        var opened: [String: Int32] = [:]
        for name in Self.names {
            let fd = bpf_obj_get("\(dir)/\(name)")
            if fd < 0 {
                let e = errno
                opened.values.forEach { _ = close($0) }
                throw DatapathError("open the pinned map \(dir)/\(name)", errno: e)
            }
            opened[name] = fd
        }
        self.init(owning: true) { opened[$0] ?? -1 }
    }

    deinit {
        guard ownsDescriptors else { return }
        for fd in [lookups.fd, subnets.fd, ports.fd, portAddresses.fd, routes.fd, localPAs.fd, config.fd,
                   vsidStats.fd, dropStats.fd, exceptionStats.fd, exceptionRingFD, gatewayDomains.fd,
                   gatewayPrefixes.fd, gatewayRouted.fd, externalAddresses.fd, services.fd, natOut.fd, natIn.fd, gatewayStats.fd,
                   infrastructure.fd, exceptionBuckets.fd, domainStats.fd] { close(fd) }
    }

    // MARK: counters

    /// A reason's packets and bytes summed over all CPUs.
    public func dropCount(_ reason: nv_drop_reason) -> (packets: UInt64, bytes: UInt64) {
        sum(dropStats.lookupPerCPU(reason.rawValue))
    }

    public func exceptionCount(_ reason: nv_exception_reason) -> (packets: UInt64, bytes: UInt64) {
        sum(exceptionStats.lookupPerCPU(reason.rawValue))
    }

    public func gatewayCount(_ counter: nv_gw_counter) -> (packets: UInt64, bytes: UInt64) {
        sum(gatewayStats.lookupPerCPU(counter.rawValue))
    }

    /// Per-VSID counters of one stats slot summed over all CPUs, by counter id.
    public func vsidCounters(slot: UInt32) -> [nv_vsid_counter: (packets: UInt64, bytes: UInt64)] {
        var out: [nv_vsid_counter: (packets: UInt64, bytes: UInt64)] = [:]
        let perCPU = vsidStats.lookupPerCPU(slot)
        for c in 0..<Int(NV_CNT_MAX.rawValue) {
            var p: UInt64 = 0, b: UInt64 = 0
            for var s in perCPU {
                withUnsafeBytes(of: &s.packets) { p += $0.load(fromByteOffset: c * 8, as: UInt64.self) }
                withUnsafeBytes(of: &s.bytes) { b += $0.load(fromByteOffset: c * 8, as: UInt64.self) }
            }
            out[nv_vsid_counter(UInt32(c))] = (p, b)
        }
        return out
    }

    /// A routing domain's counter summed over all CPUs.
    public func domainCount(_ rdid: UInt32, _ counter: nv_domain_counter) -> (packets: UInt64, bytes: UInt64) {
        sum(domainStats.lookupPerCPU(nv_domain_counter_key(rdid: rdid, counter: counter.rawValue)))
    }

    private func sum(_ values: [nv_reason_stats]) -> (packets: UInt64, bytes: UInt64) {
        values.reduce((0, 0)) { ($0.0 + $1.packets, $0.1 + $1.bytes) }
    }
}
