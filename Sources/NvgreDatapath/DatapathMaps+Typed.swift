import CNvgre

/// The typed view of every map of bpf/maps.h: one line each, key and value types from the
/// ABI header (checked against the kernel's sizes when a view is made).
extension DatapathMaps {
    public var floodLists: BPFMap<UInt32, nv_flood_list> { self["flood_lists"] }
    public var subnets: BPFMap<UInt32, nv_subnet> { self["subnets"] }
    public var ports: BPFMap<UInt32, nv_port> { self["ports"] }
    public var portAddresses: BPFMap<nv_port_ca_key, UInt32> { self["port_cas"] }
    public var routes: BPFMap<nv_route_key, nv_route_val> { self["routes"] }
    public var localPAs: BPFMap<nv_pa_key, UInt32> { self["local_pas"] }
    public var config: BPFMap<UInt32, nv_config> { self["config"] }
    public var nexthops: BPFMap<nv_pa_key, nv_nexthop> { self["nexthops"] }
    public var nexthopLease: BPFMap<UInt32, UInt64> { self["nexthop_lease"] }
    public var vsidStats: BPFMap<UInt32, nv_vsid_stats> { self["vsid_stats"] }
    public var dropStats: BPFMap<UInt32, nv_reason_stats> { self["drop_stats"] }
    public var exceptionStats: BPFMap<UInt32, nv_reason_stats> { self["exc_stats"] }
    public var exceptionRingFD: Int32 { fd("exceptions") }
    public var exceptionBuckets: BPFMap<UInt32, UInt64> { self["exc_buckets"] }
    public var domainStats: BPFMap<nv_domain_counter_key, nv_reason_stats> { self["domain_stats"] }
    public var infrastructure: BPFMap<nv_infra_key, UInt32> { self["infra"] }
    public var gatewayDomains: BPFMap<UInt32, UInt32> { self["gw_domains"] }
    public var gatewayPrefixes: BPFMap<nv_gw_prefix_key, UInt32> { self["gw_prefixes"] }
    public var gatewayRouted: BPFMap<nv_gw_routed_key, nv_gw_routed> { self["gw_routed"] }
    public var externalAddresses: BPFMap<nv_ext_addr_key, UInt32> { self["ext_addrs"] }
    public var services: BPFMap<nv_service_key, nv_service> { self["services"] }
    public var natOut: BPFMap<nv_nat_out_key, nv_nat_flow> { self["nat_out"] }
    public var natIn: BPFMap<nv_nat_in_key, nv_nat_flow> { self["nat_in"] }
    public var gatewayStats: BPFMap<UInt32, nv_reason_stats> { self["gw_stats"] }
}
