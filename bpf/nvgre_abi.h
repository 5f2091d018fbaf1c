/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * nvgre_abi.h - the one contract between the XDP programs and the Swift control plane.
 *
 * Included by the bpf/ programs and by the Swift C target (Sources/CNvgre). Every map key and
 * value, every constant, drop reason, exception reason and counter id lives here, with
 * fixed sizes, explicit padding and a static assertion per struct. Swift imports these
 * structs; it never redeclares them.
 *
 * Addresses: `family` is NV_AF_INET or NV_AF_INET6; an IPv4 address fills the first four
 * bytes of a 16-byte field and the other twelve are zero. All multi-byte address bytes are
 * in network order; integer fields (vsid, ifindex, slots) are host order.
 */
#ifndef NVGRE_ABI_H
#define NVGRE_ABI_H

#include <linux/types.h> /* __u8..__u64, for BPF and userspace alike */

#ifndef NV_ABI_VERSION /* a test object may claim another (make's nvgre-abi99.bpf.o) */
#define NV_ABI_VERSION 12
#endif
/* The build of the programs, with the ABI in the object's .rodata (nvgre.bpf.c): another build
 * of the same code differs only here (make's nvgre-build2.bpf.o). */
#ifndef NV_PROGRAM_BUILD
#define NV_PROGRAM_BUILD 1
#endif

/* ---- Wire constants (RFC 7637) ---------------------------------------------------- */
#define NV_GRE_FLAGS_VERSION 0x2000 /* C=0 K=1 S=0, version 0 */
#define NV_ETH_P_TEB 0x6558         /* Transparent Ethernet Bridging */
#define NV_IPPROTO_GRE 47
#define NV_VSID_MIN 4096u           /* 0x000000-0x000FFF are reserved */
#define NV_VSID_MAX 16777214u       /* 0xFFFFFF is vendor specific */
#define NV_GRE_LEN 8
#define NV_OUTER4_LEN 42            /* Ethernet 14 + IPv4 20 + GRE 8 */
#define NV_OUTER6_LEN 62            /* Ethernet 14 + IPv6 40 + GRE 8 */
#define NV_OUTER_TTL 64

#define NV_AF_INET 4
#define NV_AF_INET6 6

/* ---- Default map sizes (all can be changed at load time) -------------------------- */
#define NV_DEFAULT_MAX_LOOKUPS 1048576
#define NV_DEFAULT_MAX_SUBNETS 65536
#define NV_DEFAULT_MAX_PORTS 16384
#define NV_DEFAULT_MAX_PORT_CAS 65536
#define NV_DEFAULT_MAX_ROUTES 65536
#define NV_DEFAULT_MAX_LOCAL_PAS 64
#define NV_DEFAULT_EXC_RING_BYTES (1u << 22)
#define NV_DEFAULT_MAX_NAT_FLOWS 262144 /* per direction */
#define NV_DEFAULT_MAX_SERVICES 4096
#define NV_DEFAULT_MAX_EXT_ADDRS 64
#define NV_DEFAULT_MAX_GW_PREFIXES 4096
#define NV_DEFAULT_MAX_INFRA_PREFIXES 4096
#define NV_DEFAULT_MAX_DOMAINS 65536
#define NV_NO_STATS_SLOT 0xffffffffu     /* counts nothing per VSID */

/* ---- Map keys and values ----------------------------------------------------------- */

/* lookups: (VSID, customer address) -> where that CA lives. */
struct nv_lookup_key {
	__u32 vsid;
	__u8 family;
	__u8 pad[3];
	__u8 ca[16];
};

enum nv_record_type {
	NV_REC_STATIC = 1,  /* an ordinary VM: deliver locally or encapsulate */
	NV_REC_L2_ONLY = 2, /* switched inside the VSID only, never a routing target */
	NV_REC_GATEWAY = 3, /* behind a gateway: userspace decides */
};

struct nv_lookup_val {
	__u8 pa[16];        /* provider address of the host that runs the VM */
	__u8 mac[6];        /* the VM's MAC (customer MAC) */
	__u8 pa_family;
	__u8 type;          /* enum nv_record_type */
	__u32 port_ifindex; /* non-zero: the VM is on this host, behind this port */
	/* enum nv_record_flags in the low NV_REC_FLAG_BITS bits; above them the counter slot of
	 * the record's subnet (its stats_slot), so that a frame decapsulated to a VM here is
	 * counted without a lookup of its subnet. */
	__u32 slot_flags;
};

#define NV_REC_FLAG_BITS 8

static inline __u32 nv_record_flags_of(const struct nv_lookup_val *v)
{
	return v->slot_flags & ((1u << NV_REC_FLAG_BITS) - 1);
}

static inline __u32 nv_record_slot_of(const struct nv_lookup_val *v)
{
	return v->slot_flags >> NV_REC_FLAG_BITS;
}

enum nv_record_flags {
	/* The PA is an endpoint that matches all 32 bits of the GRE key (Open vSwitch with a
	 * fixed key): frames to it carry FlowID 0, which RFC 7637 allows. */
	NV_REC_NO_FLOWID = 1 << 0,
	/* The VM moved from this host to the record's PA moments ago (set by the agent that
	 * follows the store, for a grace period): frames still arriving here for it are sent on
	 * to its new host unchanged but for the outer destination, so senders that have not
	 * seen the move lose nothing. */
	NV_REC_MOVED_AWAY = 1 << 1,
};

/* The lookup records live in an open-addressed table (linear probing) in a memory-mappable
 * array map, reached through the one-slot map-in-map `lookups`: key and value share one
 * 64-byte slot, so a lookup at a million records costs about one cache miss where a hash
 * map's bucket walk costs two or three. Slot 0 is the head (its `mask`: the number of
 * record slots - 1); records sit in slots 1..mask+1, each at most NV_RECORD_MAX_PROBE
 * slots after its home. A slot's contents are written while its state keeps readers away
 * (EMPTY ends a probe, DELETED is skipped) and published by the store of `state` alone, so
 * a reader never sees half a record; the writer never reuses a slot it freed in the same
 * pass. Growing, or clearing out deleted slots, builds a new table and swaps it in whole. */
#define NV_RECORD_MAX_PROBE 64
#define NV_RECORD_MIN_SLOTS 4096

enum nv_slot_state {
	NV_SLOT_EMPTY = 0,
	NV_SLOT_USED = 1,
	NV_SLOT_DELETED = 2,
	NV_SLOT_HEAD = 3,
};

struct nv_record_slot {
	__u32 state; /* enum nv_slot_state */
	__u32 mask;  /* in the head only: record slots - 1 (a power of two - 1) */
	struct nv_lookup_key key;
	struct nv_lookup_val val;
};

/* Slot 0, as userspace reads it: the programs read only `mask`. */
struct nv_record_head {
	__u32 state; /* NV_SLOT_HEAD */
	__u32 mask;
	__u32 limit;   /* most records the table may grow to (`nvgre up --max-lookups`) */
	__u32 used;    /* slots in state USED */
	__u32 deleted; /* slots in state DELETED */
	__u32 writer;  /* the writing process's pid, 0 when none: writers take turns */
	__u8 pad[40];
};

/* Where a key's probe starts (before masking): a multiply-xor fold of the key's six
 * words, whose top half depends on every bit. One function for the programs and for
 * Swift, so both always agree. */
static inline __u32 nv_record_hash(const struct nv_lookup_key *k)
{
	const __u32 *w = (const __u32 *)k;
	__u64 h = 0x243F6A8885A308D3ull;
#pragma unroll
	for (int i = 0; i < 6; i++)
		h = (h ^ w[i]) * 0x9E3779B97F4A7C15ull;
	return (__u32)(h >> 32);
}

/* subnets: VSID -> virtual subnet. */
enum nv_subnet_flags {
	NV_SUBNET_HAS_GW4 = 1 << 0,
	NV_SUBNET_HAS_GW6 = 1 << 1,
	/* Broadcast and multicast are dropped (flood-off) instead of replicated: every
	 * answer comes from policy, as in HNV. */
	NV_SUBNET_NO_FLOOD = 1 << 2,
};

struct nv_subnet {
	__u32 rdid;       /* routing domain id */
	__u32 stats_slot; /* index into vsid_stats */
	__u8 gw_mac[6];   /* the distributed router's MAC in this subnet */
	__u8 flags;       /* enum nv_subnet_flags */
	__u8 pad;
	__u8 gw4[4];
	__u8 gw6[16];
};

/* ports: ingress ifindex of a VM port -> the VM behind it. The compiler also copies into
 * the entry what a unicast frame from the port needs, so that the common path makes one
 * lookup where it made three: its subnet's routing domain, counter slot and router MAC
 * (NV_PORT_SUBNET_INLINE; else the subnets map is asked) and its allowed addresses when
 * there is at most one of each family (NV_PORT_CAS_INLINE, with NV_PORT_HAS_CA4/CA6 saying
 * which are there; else port_cas is asked, which always holds them all). 48 bytes, the
 * control plane's inline size for a map value. */
struct nv_port {
	__u32 vsid;
	__u8 mac[6];
	__u8 flags; /* enum nv_port_flags */
	__u8 pad;
	__u32 rdid;       /* NV_PORT_SUBNET_INLINE: subnets[vsid].rdid */
	__u32 stats_slot; /*   .stats_slot */
	__u8 gw_mac[6];   /*   .gw_mac */
	__u8 pad2[2];
	__u8 ca4[4]; /* NV_PORT_HAS_CA4: the one IPv4 address the VM may send from */
	__u8 ca6[16]; /* NV_PORT_HAS_CA6: the one IPv6 address (link-local ones always may) */
};

enum nv_port_flags {
	/* Hyper-V's router and DHCP guards, lifted per port: without the flag, router
	 * advertisements and DHCP/DHCPv6 server messages from the VM are dropped. */
	NV_PORT_ALLOW_RA = 1 << 0,
	NV_PORT_ALLOW_DHCP_SERVER = 1 << 1,
	NV_PORT_SUBNET_INLINE = 1 << 2,
	NV_PORT_CAS_INLINE = 1 << 3,
	NV_PORT_HAS_CA4 = 1 << 4,
	NV_PORT_HAS_CA6 = 1 << 5,
};

/* flood_lists: VSID -> where its broadcast and multicast go from this host (head-end
 * replication, RFC 7637 section 4.3): the other PAs that host the VSID, from its lookup
 * records at apply time, and this host's ports in it. Only VSIDs with a port here. */
#define NV_FLOOD_MAX_PEERS 64
#define NV_FLOOD_MAX_PORTS 32
struct nv_flood_peer {
	__u8 pa[16];
	__u8 family;
	__u8 pad[3];
};

struct nv_flood_list {
	__u32 n_peers;
	__u32 n_ports;
	/* Each VM port's share of replication (the host's setting, in every list): one frame
	 * every interval_ns per CPU, bursts of burst_ns worth (0: no limit). */
	__u32 interval_ns;
	__u32 burst_ns;
	struct nv_flood_peer peers[NV_FLOOD_MAX_PEERS];
	__u32 ports[NV_FLOOD_MAX_PORTS];
};

/* A broadcast from the fabric is checked and decapsulated by the uplink's XDP program and
 * replicated to the ports by its tc program (nv_fabric_flood), which finds this in the
 * frame's metadata. Until then the inner destination MAC is parked at NV_FLOOD_PARKED_MAC
 * (unicast, not the uplink's): should the frame reach the host's stack, it is not for the
 * host and goes nowhere. */
#define NV_FLOOD_META_MAGIC 0x4e56464cu /* "NVFL" */
struct nv_flood_meta {
	__u32 magic;
	__u32 vsid;
	__u8 dst_mac[6];
	__u8 pad[2];
};
#define NV_FLOOD_PARKED_MAC { 0x02, 0x4e, 0x56, 0x46, 0x4c, 0x00 }

/* port_cas: (port ifindex, CA) -> 1 when the VM on that port may use that source CA. */
struct nv_port_ca_key {
	__u32 ifindex;
	__u8 family;
	__u8 pad[3];
	__u8 ca[16];
};

/* routes (LPM trie): (routing domain, family, prefix) -> subnet or customer route. The
 * prefix length counts rdid (32 bits) and family+pad (32 bits) before the address. */
#define NV_ROUTE_KEY_PREFIX_BITS 64
struct nv_route_key {
	__u32 prefixlen;
	__u32 rdid_be; /* big endian so that the trie compares it bit by bit */
	__u8 family;
	__u8 pad[3];
	__u8 addr[16];
};

enum nv_route_kind {
	NV_ROUTE_SUBNET = 1,   /* a virtual subnet of the domain: route on the spot */
	NV_ROUTE_CUSTOMER = 2, /* a customer route: on to the next hop's lookup record */
};

struct nv_route_val {
	__u32 vsid;      /* SUBNET: the subnet; CUSTOMER: the subnet that holds the next hop */
	__u32 kind;      /* enum nv_route_kind */
	__u8 nh_family;  /* CUSTOMER: the next hop, a CA with a lookup record in `vsid` */
	__u8 pad[3];     /*   (usually a gateway-type record: the frame is sent to its PA) */
	__u8 nh[16];
};

/* local_pas: the provider addresses of this host; decap only accepts these as outer dst. */
struct nv_pa_key {
	__u8 family;
	__u8 pad[3];
	__u8 addr[16];
};

/* nexthops: remote PA (nv_pa_key) -> the underlay's way there, as bpf_fib_lookup would
 * answer it: written by the agent from the kernel's routes and neighbors, rewritten on
 * their netlink events. An entry counts only while the agent's lease runs (nexthop_lease:
 * CLOCK_MONOTONIC_COARSE ns, renewed every second), so a stopped agent leaves every frame
 * to bpf_fib_lookup again within seconds instead of to a next hop nobody keeps. A frame
 * longer than `mtu`, or a PA without an entry, is asked of the FIB as before. */
#define NV_DEFAULT_MAX_NEXTHOPS 65536
struct nv_nexthop {
	__u8 dmac[6];
	__u8 smac[6];
	__u32 ifindex; /* egress */
	__u32 mtu;     /* the route's MTU, else the egress device's */
};

/* config (array, one entry): the host's uplink and source provider addresses. */
enum nv_config_flags {
	NV_CFG_HAS_PA4 = 1 << 0,
	NV_CFG_HAS_PA6 = 1 << 1,
	/* Honour `ip rule` policy routing when looking up the underlay next hop. Off by default:
	 * the lookup then goes straight to the uplink's table (main, or its VRF's), which on
	 * this kernel costs about 200 ns less per encapsulated packet. */
	NV_CFG_FIB_USE_RULES = 1 << 2,
};

struct nv_config {
	__u32 uplink_ifindex;
	__u32 flags; /* enum nv_config_flags */
	__u8 pa4[4];
	__u8 pa6[16];
	__u32 external_ifindex; /* a gateway's external interface (0: not a gateway) */
	/* Each routing domain's share of the exception path, per CPU: one exception every
	 * exc_interval_ns, bursts of exc_burst_ns worth (0: no limit). See exc_buckets. */
	__u32 exc_interval_ns;
	__u32 exc_burst_ns;
	/* The same for each VM port, within its domain's share (0: no limit per port). */
	__u32 exc_port_interval_ns;
	__u32 exc_port_burst_ns;
};

/* ---- Gateway: NAT44 toward the physical network, published services ----------------
 * A gateway host's from-fabric program sends frames of a served routing domain that are
 * not for a VM of this host through NAT; its from-external program takes frames to an
 * external address back in. A flow's first packets go to userspace (the gateway process),
 * which allocates the external port and writes the flow into nat_out and nat_in; once the
 * flow is established it sets NV_NAT_OFFLOADED in both and XDP translates the rest. */

/* gw_domains: routing domain id -> how this gateway serves it. */
enum nv_gw_mode {
	NV_GW_NAT = 1,   /* outbound NAT on the external addresses, published services */
	NV_GW_ROUTE = 2, /* plain routing without NAT between the domain and physical prefixes */
};

/* gw_prefixes (LPM trie): (routing domain in route mode, IPv4 prefix) -> 1. The physical
 * prefixes the domain reaches through this gateway, and the only sources it accepts from
 * the external interface. The prefix length counts rdid (32 bits) before the address. */
#define NV_GW_PREFIX_KEY_BITS 32
struct nv_gw_prefix_key {
	__u32 prefixlen;
	__u32 rdid_be; /* big endian so that the trie compares it bit by bit */
	__u8 addr[4];
};

/* gw_routed (LPM trie): the IPv4 subnets of the route-mode domains, as the physical
 * network reaches them through the external interface -> the subnet. Validation keeps
 * them disjoint, so an address names one domain. */
struct nv_gw_routed_key {
	__u32 prefixlen;
	__u8 addr[4];
};

struct nv_gw_routed {
	__u32 rdid;
	__u32 vsid;
};

/* infra (LPM trie): addresses no tenant traffic may reach through the gateway -> why
 * (enum nv_infra_origin). The control plane fills it from the policy's
 * infrastructurePrefixes, every provider address and the uplink's prefixes, the gateway
 * host's own addresses, its external addresses, and the special ranges (loopback,
 * link-local, multicast, broadcast, unspecified). The prefix length counts family+pad
 * (32 bits) before the address. */
#define NV_INFRA_KEY_PREFIX_BITS 32
struct nv_infra_key {
	__u32 prefixlen;
	__u8 family;
	__u8 pad[3];
	__u8 addr[16];
};

enum nv_infra_origin {
	NV_INFRA_LISTED = 1,   /* infrastructurePrefixes of the policy */
	NV_INFRA_PROVIDER = 2, /* a provider address or the uplink's prefix */
	NV_INFRA_HOST = 3,     /* an address of this host (any interface), or its broadcast */
	NV_INFRA_EXTERNAL = 4, /* an external address (only published services are reachable) */
	NV_INFRA_SPECIAL = 5,  /* loopback, link-local, multicast, broadcast, unspecified */
};

/* exc_buckets (per-CPU LRU hash): routing domain id -> the domain's theoretical arrival time
 * (ns) on this CPU's exception path: an exception is admitted while it is at most
 * exc_burst_ns ahead of now, and moves it exc_interval_ns on (GCRA). Written by XDP only.
 * What comes from outside to a domain (new connections to its services, its flows' packets
 * and ICMP errors) has a bucket of its own: the domain id with NV_SHARE_FROM_OUTSIDE set. */
#define NV_SHARE_FROM_OUTSIDE 0x80000000u
/* A VM port's own bucket: its ifindex with this bit set (checked before the domain's). */
#define NV_SHARE_PORT 0x40000000u
/* A VM port's share of head-end replication: its ifindex with this bit set. */
#define NV_SHARE_FLOOD 0x20000000u

/* domain_stats (per-CPU hash): (routing domain, counter) -> packets and bytes. XDP counts
 * its counters on every CPU; the gateway process adds its own (never written by XDP) to
 * CPU 0's slot, as for gw_stats. */
struct nv_domain_counter_key {
	__u32 rdid;
	__u32 counter; /* enum nv_domain_counter */
};

enum nv_domain_counter {
	NV_DOM_EXC_THROTTLED = 0, /* XDP: over the domain's exception share, dropped */
	NV_DOM_TO_INFRA,          /* XDP: to an infrastructure address, dropped */
	NV_DOM_PORTS_EXHAUSTED,   /* gateway process: no NAT port within the domain's share */
	NV_DOM_USERSPACE_TO_INFRA, /* gateway process: to an infrastructure address, dropped */
	NV_DOM_FLOW_SHARE_FULL,   /* gateway process: a new flow over the domain's share of the flow table */
	NV_DOM_MAX
};

/* ext_addrs: the gateway's external IPv4 addresses -> 1. */
struct nv_ext_addr_key {
	__u8 addr[4];
};

/* services: (protocol, external address, port) -> a tenant's service. */
struct nv_service_key {
	__u8 proto; /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 pad;
	__be16 port;
	__u8 addr[4];
};

struct nv_service {
	__u32 rdid;
	__u8 ca[4];
	__be16 ca_port;
	__u8 pad[2];
};

/* nat_out: a flow as it comes from the tenant (after decap). ICMP echo: the identifier is
 * the CA's port and the remote port is 0. */
struct nv_nat_out_key {
	__u32 rdid;
	__u8 proto;
	__u8 pad;
	__be16 ca_port;
	__u8 ca[4];
	__u8 remote[4];
	__be16 remote_port;
	__u8 pad2[2];
};

/* nat_in: the same flow as it comes from outside, to the external address and port. */
struct nv_nat_in_key {
	__u8 proto;
	__u8 pad;
	__be16 ext_port;
	__u8 ext[4];
	__u8 remote[4];
	__be16 remote_port;
	__u8 pad2[2];
};

enum nv_nat_flags {
	NV_NAT_OFFLOADED = 1 << 0, /* XDP translates this direction (set by userspace) */
	NV_NAT_FIN = 1 << 1,       /* a FIN was seen in this direction */
	NV_NAT_RST = 1 << 2,       /* a RST was seen in this direction */
	NV_NAT_SERVICE = 1 << 3,   /* opened from outside, to a published service */
	NV_NAT_ESTABLISHED = 1 << 4, /* TCP: the SYN+ACK was answered (userspace's, for its idle
				      * timeout; the programs do not read it) */
};

#define NV_NAT_SEEN_GRANULARITY_NS 1000000ull /* 1 ms; flows expire after seconds */

/* The value of both maps: the whole flow, so either direction can be translated alone. */
struct nv_nat_flow {
	__u64 last_seen_ns; /* bpf_ktime_get_ns (CLOCK_MONOTONIC) of this direction's last packet,
			     * to NV_NAT_SEEN_GRANULARITY_NS: XDP writes the entry only that often, so
			     * that CPUs sharing a flow do not bounce its cache line per packet */
	__u32 rdid;
	__u32 vsid;         /* the CA's subnet: return traffic is sent in it */
	__u8 ca[4];
	__u8 ext[4];
	__u8 remote[4];
	__be16 ca_port;
	__be16 ext_port;
	__be16 remote_port;
	__u8 proto;
	__u8 flags;         /* enum nv_nat_flags */
	__u8 pad[4];
};

/* gw_stats (per-CPU array of nv_reason_stats): what the gateway did, in XDP and in the
 * gateway process (which adds its counts to CPU 0's slot; XDP never writes those). */
enum nv_gw_counter {
	NV_GW_OFFLOADED_OUT = 0,  /* XDP: translated toward the outside */
	NV_GW_OFFLOADED_IN,       /* XDP: translated toward a VM */
	NV_GW_USERSPACE_OUT,      /* gateway process: translated toward the outside */
	NV_GW_USERSPACE_IN,       /* gateway process: translated toward a VM */
	NV_GW_FLOWS_CREATED,
	NV_GW_FLOWS_OFFLOADED,
	NV_GW_FLOWS_EXPIRED,
	NV_GW_PORTS_EXHAUSTED,    /* a new flow found no free external port: dropped */
	NV_GW_FLOW_TABLE_FULL,    /* a new flow did not fit the flow maps: dropped */
	NV_GW_DROP_UNSUPPORTED,   /* neither TCP, UDP nor ICMP echo, or a fragment: dropped */
	NV_GW_DROP_INSIDE,        /* to the routing domain itself, not outside: dropped */
	NV_GW_DROP_NO_RECORD,     /* to a CA that has no lookup record: dropped */
	NV_GW_DROP_TTL,           /* TTL would expire at the gateway: dropped */
	NV_GW_ROUTED_OUT,         /* XDP: routed without NAT toward the outside */
	NV_GW_ROUTED_IN,          /* XDP: routed without NAT toward a VM */
	NV_GW_USERSPACE_ROUTED,   /* gateway process: routed without NAT (next hop unresolved) */
	NV_GW_DROP_INFRA,         /* gateway process: to an infrastructure address: dropped */
	NV_GW_HAIRPIN,            /* gateway process: a tenant to a published service, both ways */
	NV_GW_TOO_BIG_OUTSIDE,    /* gateway process: an outside host told "fragmentation needed" */
	NV_GW_MAX
};

/* ---- Counters ---------------------------------------------------------------------- */

/* Per-VSID packet and byte counters (vsid_stats, per-CPU array indexed by stats_slot).
 * Bytes count the customer frame (without NVGRE overhead). */
enum nv_vsid_counter {
	NV_CNT_ENCAP = 0,
	NV_CNT_DECAP,
	NV_CNT_LOCAL,     /* switched to a port on this host */
	NV_CNT_ROUTE,     /* routed by the distributed router (counted on the source VSID) */
	NV_CNT_EXCEPTION, /* handed to userspace */
	NV_CNT_FLOOD,     /* broadcast/multicast replicated, once per frame (from a VM or the fabric) */
	NV_CNT_FLOOD_COPY, /* the copies: one per port and per PA it was sent to */
	NV_CNT_MOVED,     /* from the fabric for a VM that moved away, sent on to its new host */
	NV_CNT_MAX
};

struct nv_vsid_stats {
	__u64 packets[NV_CNT_MAX];
	__u64 bytes[NV_CNT_MAX];
};

/* Drop and exception counters (drop_stats / exc_stats, per-CPU arrays indexed by reason). */
struct nv_reason_stats {
	__u64 packets;
	__u64 bytes;
};

/* Every reason a frame is dropped (drop_stats, per-CPU array indexed by reason). */
enum nv_drop_reason {
	NV_DROP_MALFORMED = 0,       /* truncated or inconsistent headers */
	NV_DROP_PORT_UNKNOWN,        /* from-VM program on an interface that is not a port */
	NV_DROP_SUBNET_UNKNOWN,      /* the port's VSID has no virtual subnet */
	NV_DROP_SRC_MAC_SPOOF,       /* source MAC is not the port's MAC */
	NV_DROP_SRC_CA_SPOOF,        /* source CA is not allowed on the port */
	NV_DROP_DOUBLE_VLAN,         /* stacked 802.1Q/802.1ad tags from a VM */
	NV_DROP_NOT_IP,              /* ethertype neither ARP, IPv4 nor IPv6 */
	NV_DROP_ARP_UNANSWERED,      /* ARP request for an address not in policy */
	NV_DROP_ARP_NOT_REQUEST,     /* ARP replies and other ARP operations from a VM */
	NV_DROP_ND_UNANSWERED,       /* neighbor solicitation for an address not in policy */
	NV_DROP_NO_LOCAL_PA,         /* no provider address of the family the record needs */
	NV_DROP_FIB_UNREACHABLE,     /* the underlay has no route to the provider address */
	NV_DROP_FIB_FWD_DISABLED,    /* forwarding is disabled on the uplink */
	NV_DROP_HEADROOM,            /* no room to add or remove headers */
	NV_DROP_OUTER_FRAGMENT,      /* fragmented NVGRE packet from the fabric */
	NV_DROP_GRE_FLAGS,           /* GRE flags/version not exactly 0x2000 */
	NV_DROP_GRE_PROTOCOL,        /* GRE protocol not 0x6558 */
	NV_DROP_VSID_RESERVED,       /* VSID outside 4096..16777214 */
	NV_DROP_VSID_UNKNOWN,        /* VSID has no virtual subnet here */
	NV_DROP_INNER_VLAN,          /* inner frame carries an 802.1Q tag */
	NV_DROP_INNER_NOT_IP,        /* inner frame is neither IPv4 nor IPv6 */
	NV_DROP_INNER_SRC_UNKNOWN,   /* no lookup record for (VSID, inner source CA) */
	NV_DROP_PA_SPOOF,            /* outer source is not the PA the record names */
	NV_DROP_DST_NOT_LOCAL,       /* inner destination is not a VM on this host */
	NV_DROP_EXCEPTION_RING_FULL, /* userspace is not keeping up with exceptions */
	NV_DROP_EXTERNAL_UNKNOWN,    /* to an external address: no NAT flow, no published service */
	NV_DROP_EXTERNAL_SPOOF,      /* to a routed domain from a source outside its prefixes */
	NV_DROP_EXTERNAL_NO_RECORD,  /* to a routed domain's CA without a VM lookup record */
	NV_DROP_EXTERNAL_TTL,        /* to a routed domain with TTL <= 1 */
	NV_DROP_TO_INFRASTRUCTURE,   /* a tenant's packet to an infrastructure address (infra) */
	NV_DROP_EXCEPTION_THROTTLED, /* over the routing domain's share of the exception path */
	NV_DROP_EXTERNAL_FROM_INFRA, /* to a tenant from an infrastructure address on the outside */
	NV_DROP_GSO_UNSUPPORTED,     /* a GSO frame from a VM of a kind that cannot be encapsulated */
	NV_DROP_FLOOD_OFF,           /* broadcast/multicast in a subnet with flood: false */
	NV_DROP_FLOOD_THROTTLED,     /* over the VM port's share of replication */
	NV_DROP_ROUTER_GUARD,        /* a router advertisement from a VM whose port does not allow it */
	NV_DROP_DHCP_GUARD,          /* a DHCP server message from a VM whose port does not allow it */
	NV_DROP_MOVED_UNSENT,        /* for a VM that moved away: no way on to its new host (TTL, family, FIB) */
	NV_DROP_MAX
};

/* Every reason a frame is handed to userspace (exc_stats, per-CPU array indexed by reason). */
enum nv_exception_reason {
	NV_EXC_NO_LOOKUP = 0,      /* no lookup record for (VSID, destination CA) */
	NV_EXC_GATEWAY,            /* destination is a gateway-type record */
	NV_EXC_CUSTOMER_ROUTE,     /* destination matched a customer route */
	NV_EXC_NO_ROUTE,           /* routed, but no subnet or route in the domain matches */
	NV_EXC_TTL_EXPIRED,        /* routed with TTL/hop limit <= 1 */
	NV_EXC_OVERSIZE,           /* encapsulated frame exceeds the uplink MTU */
	NV_EXC_NO_NEIGH,           /* the underlay next hop is not resolved yet */
	NV_EXC_NAT_OUT,            /* gateway: to the outside, no offloaded NAT flow (decapsulated) */
	NV_EXC_NAT_IN,             /* gateway: from outside, a flow not offloaded or a service */
	NV_EXC_ROUTE_OUT,          /* gateway: routed to the outside, next hop unresolved or TTL */
	NV_EXC_MAX
};

/* ---- Exception channel (ring buffer) ----------------------------------------------- */
#define NV_EXC_SNAPLEN 2048 /* frames longer than this are truncated; orig_len says so */

struct nv_exception_hdr {
	__u32 reason;          /* enum nv_exception_reason */
	__u32 ingress_ifindex;
	__u32 vsid;            /* VSID of the frame (0 when unknown) */
	__u32 orig_len;        /* length of the frame on the wire */
	__u32 cap_len;         /* bytes copied into data[] */
	__u32 mtu;             /* NV_EXC_OVERSIZE: the underlay MTU that was exceeded */
};

struct nv_exception {
	struct nv_exception_hdr hdr;
	__u8 data[NV_EXC_SNAPLEN];
};

/* ---- Trace metadata ------------------------------------------------------------------
 * When a program is loaded with the read-only flag nv_trace_enabled set (the `trace`
 * command and the tests do this; a live data path does not), it writes this record into
 * the XDP metadata area in front of the frame before returning, so a test run can see the
 * decision, not only the verdict. */
#define NV_TRACE_MAGIC 0x4e564752u /* "NVGR" */

enum nv_trace_kind {
	NV_TRACE_FORWARD = 0,   /* redirected (encap, decap, local, routed) */
	NV_TRACE_REPLY = 1,     /* answered in place (ARP/ND) with XDP_TX */
	NV_TRACE_PASS = 2,      /* handed to the host stack */
	NV_TRACE_DROP = 3,      /* code = enum nv_drop_reason */
	NV_TRACE_EXCEPTION = 4, /* code = enum nv_exception_reason */
	NV_TRACE_FLOOD = 5,     /* replicated (head-end replication); the frame itself ends */
};

struct nv_trace {
	__u32 magic;
	__u16 kind;            /* enum nv_trace_kind */
	__u16 code;
	__u32 egress_ifindex;  /* the redirect target, when kind is FORWARD */
	__u32 vsid;            /* the VSID the frame was sent in (after routing) */
};

/* ---- Size checks ------------------------------------------------------------------- */
_Static_assert(sizeof(struct nv_lookup_key) == 24, "nv_lookup_key");
_Static_assert(sizeof(struct nv_lookup_val) == 32, "nv_lookup_val");
_Static_assert(sizeof(struct nv_record_slot) == 64, "nv_record_slot");
_Static_assert(sizeof(struct nv_record_head) == 64, "nv_record_head");
_Static_assert(sizeof(struct nv_subnet) == 36, "nv_subnet");
_Static_assert(sizeof(struct nv_port) == 48, "nv_port");
_Static_assert(sizeof(struct nv_flood_list) == 16 + 20 * NV_FLOOD_MAX_PEERS + 4 * NV_FLOOD_MAX_PORTS, "nv_flood_list");
_Static_assert(sizeof(struct nv_flood_meta) == 16, "nv_flood_meta");
_Static_assert(sizeof(struct nv_port_ca_key) == 24, "nv_port_ca_key");
_Static_assert(sizeof(struct nv_route_key) == 28, "nv_route_key");
_Static_assert(sizeof(struct nv_route_val) == 28, "nv_route_val");
_Static_assert(sizeof(struct nv_pa_key) == 20, "nv_pa_key");
_Static_assert(sizeof(struct nv_config) == 48, "nv_config");
_Static_assert(sizeof(struct nv_nexthop) == 20, "nv_nexthop");
_Static_assert(sizeof(struct nv_infra_key) == 24, "nv_infra_key");
_Static_assert(sizeof(struct nv_domain_counter_key) == 8, "nv_domain_counter_key");
_Static_assert(sizeof(struct nv_ext_addr_key) == 4, "nv_ext_addr_key");
_Static_assert(sizeof(struct nv_service_key) == 8, "nv_service_key");
_Static_assert(sizeof(struct nv_service) == 12, "nv_service");
_Static_assert(sizeof(struct nv_nat_out_key) == 20, "nv_nat_out_key");
_Static_assert(sizeof(struct nv_nat_in_key) == 16, "nv_nat_in_key");
_Static_assert(sizeof(struct nv_nat_flow) == 40, "nv_nat_flow");
_Static_assert(sizeof(struct nv_gw_prefix_key) == 12, "nv_gw_prefix_key");
_Static_assert(sizeof(struct nv_gw_routed_key) == 8, "nv_gw_routed_key");
_Static_assert(sizeof(struct nv_gw_routed) == 8, "nv_gw_routed");
_Static_assert(sizeof(struct nv_vsid_stats) == 16 * NV_CNT_MAX, "nv_vsid_stats");
_Static_assert(sizeof(struct nv_reason_stats) == 16, "nv_reason_stats");
_Static_assert(sizeof(struct nv_exception_hdr) == 24, "nv_exception_hdr");
_Static_assert(sizeof(struct nv_trace) == 16, "nv_trace");

#endif /* NVGRE_ABI_H */
