import CNvgre

/// Stable, user-facing names of drop and exception reasons (used in stats and JSON). The
/// tests check that every reason in the ABI header has exactly one name here.
public enum ReasonNames {
    public static let drops: [(nv_drop_reason, String)] = [
        (NV_DROP_MALFORMED, "malformed"),
        (NV_DROP_PORT_UNKNOWN, "port-unknown"),
        (NV_DROP_SUBNET_UNKNOWN, "subnet-unknown"),
        (NV_DROP_SRC_MAC_SPOOF, "source-mac-spoofed"),
        (NV_DROP_SRC_CA_SPOOF, "source-ca-spoofed"),
        (NV_DROP_DOUBLE_VLAN, "stacked-vlan-tags"),
        (NV_DROP_NOT_IP, "not-ip"),
        (NV_DROP_ARP_UNANSWERED, "arp-target-unknown"),
        (NV_DROP_ARP_NOT_REQUEST, "arp-not-request"),
        (NV_DROP_ND_UNANSWERED, "nd-target-unknown"),
        (NV_DROP_NO_LOCAL_PA, "no-local-pa"),
        (NV_DROP_FIB_UNREACHABLE, "underlay-unreachable"),
        (NV_DROP_FIB_FWD_DISABLED, "uplink-forwarding-disabled"),
        (NV_DROP_HEADROOM, "no-headroom"),
        (NV_DROP_OUTER_FRAGMENT, "outer-fragment"),
        (NV_DROP_GRE_FLAGS, "gre-flags"),
        (NV_DROP_GRE_PROTOCOL, "gre-protocol"),
        (NV_DROP_VSID_RESERVED, "vsid-reserved"),
        (NV_DROP_VSID_UNKNOWN, "vsid-unknown"),
        (NV_DROP_INNER_VLAN, "inner-vlan-tag"),
        (NV_DROP_INNER_NOT_IP, "inner-not-ip"),
        (NV_DROP_INNER_SRC_UNKNOWN, "inner-source-unknown"),
        (NV_DROP_PA_SPOOF, "provider-address-spoofed"),
        (NV_DROP_DST_NOT_LOCAL, "destination-not-local"),
        (NV_DROP_EXCEPTION_RING_FULL, "exception-ring-full"),
        (NV_DROP_EXTERNAL_UNKNOWN, "external-unknown"),
        (NV_DROP_EXTERNAL_SPOOF, "external-source-not-routed"),
        (NV_DROP_EXTERNAL_NO_RECORD, "external-destination-unknown"),
        (NV_DROP_EXTERNAL_TTL, "external-ttl-expired"),
        (NV_DROP_TO_INFRASTRUCTURE, "to-infrastructure"),
        (NV_DROP_EXCEPTION_THROTTLED, "exception-throttled"),
        (NV_DROP_EXTERNAL_FROM_INFRA, "external-source-infrastructure"),
        (NV_DROP_GSO_UNSUPPORTED, "gso-type-unsupported"),
        (NV_DROP_FLOOD_OFF, "flood-off"),
        (NV_DROP_FLOOD_THROTTLED, "flood-throttled"),
        (NV_DROP_ROUTER_GUARD, "router-advertisement-guarded"),
        (NV_DROP_DHCP_GUARD, "dhcp-server-guarded"),
        (NV_DROP_MOVED_UNSENT, "moved-vm-unsent")
    ]

    /// Every per-VSID counter with its name in `nvgre stats` (in the enum's order).
    public static let vsidCounters: [(nv_vsid_counter, String)] = [
        (NV_CNT_ENCAP, "encap"), (NV_CNT_DECAP, "decap"), (NV_CNT_LOCAL, "local"), (NV_CNT_ROUTE, "routed"),
        (NV_CNT_EXCEPTION, "exception"), (NV_CNT_FLOOD, "flood"), (NV_CNT_FLOOD_COPY, "flood-copies"),
        (NV_CNT_MOVED, "moved-on")
    ]

    public static let exceptions: [(nv_exception_reason, String)] = [
        (NV_EXC_NO_LOOKUP, "no-lookup-record"),
        (NV_EXC_GATEWAY, "gateway-record"),
        (NV_EXC_CUSTOMER_ROUTE, "customer-route"),
        (NV_EXC_NO_ROUTE, "no-route"),
        (NV_EXC_TTL_EXPIRED, "ttl-expired"),
        (NV_EXC_OVERSIZE, "oversize"),
        (NV_EXC_NO_NEIGH, "underlay-neighbor-unresolved"),
        (NV_EXC_NAT_OUT, "nat-outbound"),
        (NV_EXC_NAT_IN, "nat-inbound"),
        (NV_EXC_ROUTE_OUT, "routed-outbound")
    ]

    /// The gateway's counters (gw_stats).
    public static let gateway: [(nv_gw_counter, String)] = [
        (NV_GW_OFFLOADED_OUT, "offloaded-out"),
        (NV_GW_OFFLOADED_IN, "offloaded-in"),
        (NV_GW_USERSPACE_OUT, "userspace-out"),
        (NV_GW_USERSPACE_IN, "userspace-in"),
        (NV_GW_FLOWS_CREATED, "flows-created"),
        (NV_GW_FLOWS_OFFLOADED, "flows-offloaded"),
        (NV_GW_FLOWS_EXPIRED, "flows-expired"),
        (NV_GW_PORTS_EXHAUSTED, "ports-exhausted"),
        (NV_GW_FLOW_TABLE_FULL, "flow-table-full"),
        (NV_GW_DROP_UNSUPPORTED, "drop-unsupported"),
        (NV_GW_DROP_INSIDE, "drop-inside-domain"),
        (NV_GW_DROP_NO_RECORD, "drop-no-lookup-record"),
        (NV_GW_DROP_TTL, "drop-ttl-expired"),
        (NV_GW_ROUTED_OUT, "routed-out"),
        (NV_GW_ROUTED_IN, "routed-in"),
        (NV_GW_USERSPACE_ROUTED, "userspace-routed"),
        (NV_GW_DROP_INFRA, "drop-to-infrastructure"),
        (NV_GW_HAIRPIN, "hairpin"),
        (NV_GW_TOO_BIG_OUTSIDE, "too-big-told-outside")
    ]

    /// Per routing domain (domain_stats).
    public static let domain: [(nv_domain_counter, String)] = [
        (NV_DOM_EXC_THROTTLED, "exception-throttled"),
        (NV_DOM_TO_INFRA, "to-infrastructure"),
        (NV_DOM_PORTS_EXHAUSTED, "ports-exhausted"),
        (NV_DOM_USERSPACE_TO_INFRA, "userspace-to-infrastructure"),
        (NV_DOM_FLOW_SHARE_FULL, "flow-share-full")
    ]

    /// Why a prefix is in the infra map.
    public static let infrastructureOrigins: [(nv_infra_origin, String)] = [
        (NV_INFRA_LISTED, "listed"), (NV_INFRA_PROVIDER, "provider"), (NV_INFRA_HOST, "host"),
        (NV_INFRA_EXTERNAL, "external"), (NV_INFRA_SPECIAL, "special")
    ]

    public static func drop(_ reason: nv_drop_reason) -> String { drop(reason.rawValue) }
    public static func exception(_ reason: nv_exception_reason) -> String { exception(reason.rawValue) }

    public static func drop(_ code: UInt32) -> String {
        drops.first { $0.0.rawValue == code }?.1 ?? "drop-\(code)"
    }

    public static func exception(_ code: UInt32) -> String {
        exceptions.first { $0.0.rawValue == code }?.1 ?? "exception-\(code)"
    }
}
