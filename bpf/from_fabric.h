/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* from_fabric.h - program attached to the uplink: NVGRE receiver checks (RFC 7637
 * section 4.2), anti-spoofing on the outer source PA, decap and redirect to the VM port.
 * Everything that is not NVGRE to one of our provider addresses belongs to the host. */
#ifndef NV_FROM_FABRIC_H
#define NV_FROM_FABRIC_H

#include "policy.h"
#include "fabric_neighbor.h"
#include "gw_egress.h"
#include "gw_route.h"
#include "moved.h"
#include "to_outside.h"
#include "verdict.h"

#define IPV6_NEXTHDR_FRAGMENT 44

struct ipv6_frag_hdr {
	__u8 nexthdr;
	__u8 reserved;
	__be16 frag_off;
	__be32 identification;
};

/* Removes the outer Ethernet, IP and GRE headers (`outer_len` bytes, 42 over IPv4 and 62
 * over IPv6 PAs): the customer frame is what remains. 0, or -1 when it cannot be done. */
static __always_inline int decap(struct xdp_md *ctx, int outer_len)
{
	if (outer_len < NV_OUTER4_LEN || outer_len > 256)
		return -1;
	return bpf_xdp_adjust_head(ctx, outer_len) ? -1 : 0;
}

SEC("xdp")
int nv_from_fabric(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	struct cursor c = { .pos = data, .end = (void *)(long)ctx->data_end };
	struct ethhdr *eth = CURSOR_TAKE(&c, struct ethhdr);
	if (!eth)
		return pass_to_host(ctx);

	struct flow outer = {};
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = parse_ipv4(&c, &outer);
		if (!ip || outer.proto != NV_IPPROTO_GRE || !is_local_pa(NV_AF_INET, outer.dst))
			return pass_to_host(ctx);
		if (is_ipv4_fragment(ip))
			return drop(ctx, NV_DROP_OUTER_FRAGMENT);
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		/* Host IPv6 traffic leaves on the next-header test, before any map lookup. */
		if (!parse_ipv6(&c, &outer))
			return pass_to_host(ctx);
		if (outer.proto == IPV6_NEXTHDR_FRAGMENT) {
			struct ipv6_frag_hdr *fh = CURSOR_TAKE(&c, struct ipv6_frag_hdr);
			if (fh && fh->nexthdr == NV_IPPROTO_GRE && is_local_pa(NV_AF_INET6, outer.dst))
				return drop(ctx, NV_DROP_OUTER_FRAGMENT);
			return pass_to_host(ctx);
		}
		if (outer.proto != NV_IPPROTO_GRE || !is_local_pa(NV_AF_INET6, outer.dst))
			return pass_to_host(ctx);
	} else {
		return pass_to_host(ctx);
	}

	struct gre_key_hdr *gre = CURSOR_TAKE(&c, struct gre_key_hdr);
	if (!gre)
		return drop(ctx, NV_DROP_MALFORMED);
	if (gre->flags_version != bpf_htons(NV_GRE_FLAGS_VERSION))
		return drop(ctx, NV_DROP_GRE_FLAGS);
	if (gre->protocol != bpf_htons(NV_ETH_P_TEB))
		return drop(ctx, NV_DROP_GRE_PROTOCOL);
	__u32 vsid = bpf_ntohl(gre->key) >> 8;
	if (vsid < NV_VSID_MIN || vsid > NV_VSID_MAX)
		return drop(ctx, NV_DROP_VSID_RESERVED);
	struct nv_subnet *sn = bpf_map_lookup_elem(&subnets, &vsid);
	if (!sn)
		return drop(ctx, NV_DROP_VSID_UNKNOWN);
	int outer_len = c.pos - data;

	struct ethhdr *inner_eth = CURSOR_TAKE(&c, struct ethhdr);
	if (!inner_eth)
		return drop(ctx, NV_DROP_MALFORMED);
	struct flow inner = {};
	if (inner_eth->h_proto == bpf_htons(ETH_P_8021Q) ||
	    inner_eth->h_proto == bpf_htons(ETH_P_8021AD))
		return drop(ctx, NV_DROP_INNER_VLAN);
	if (inner_eth->h_proto == bpf_htons(ETH_P_ARP))
		return answer_arp_from_fabric(ctx, c, eth, &outer, gre, outer_len, inner_eth, sn, vsid);
	if (inner_eth->h_proto == bpf_htons(ETH_P_IP)) {
		if (!parse_ipv4(&c, &inner))
			return drop(ctx, NV_DROP_MALFORMED);
	} else if (inner_eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = parse_ipv6(&c, &inner);
		if (!ip6)
			return drop(ctx, NV_DROP_MALFORMED);
		if (is_neighbor_solicitation(c, ip6))
			return answer_ns_from_fabric(ctx, c, eth, &outer, gre, outer_len, inner_eth, ip6, sn, vsid);
	} else {
		return drop(ctx, NV_DROP_INNER_NOT_IP);
	}
	if (mac_is_multicast(inner_eth->h_dest)) /* broadcast too: for the VSID's VMs here */
		return xdp_flood_from_fabric(ctx, &outer, outer_len, inner_eth, inner.family, inner.src, sn, vsid,
					     NV_DROP_FLOOD_OFF);

	struct nv_lookup_val *src = find_record(vsid, inner.family, inner.src);
	if (!src) /* routed to us from another subnet of the tenant? */
		src = find_record_in_domain(sn->rdid, inner.family, inner.src);
	if (!src)
		return drop(ctx, NV_DROP_INNER_SRC_UNKNOWN);
	if (!same_pa(src, &outer))
		return drop(ctx, NV_DROP_PA_SPOOF);
	__u32 slot = sn->stats_slot;
	__u32 rdid = sn->rdid;
	struct nv_lookup_val *dst = find_record(vsid, inner.family, inner.dst);
	/* On a gateway host: no record at all means outside the domain, for NAT or routing. */
	__u32 *gw_mode = dst ? NULL : bpf_map_lookup_elem(&gw_domains, &rdid);
	int to_outside = gw_mode != NULL;
	if (dst && !dst->port_ifindex && (dst->flags & NV_REC_MOVED_AWAY))
		return forward_moved(ctx, &outer, dst, outer_len, slot, vsid);
	if (!to_outside && (!dst || !dst->port_ifindex))
		return drop(ctx, NV_DROP_DST_NOT_LOCAL);
	__u32 port = dst ? dst->port_ifindex : 0;
	int hairpin = 0;
	if (to_outside) {
		enum egress e = tenant_egress(&inner, rdid, *gw_mode);
		if (e == EGRESS_INFRA) {
			count_domain(rdid, NV_DOM_TO_INFRA, frame_len(ctx));
			return drop(ctx, NV_DROP_TO_INFRASTRUCTURE);
		}
		hairpin = e == EGRESS_HAIRPIN;
	}

	if (decap(ctx, outer_len) < 0)
		return drop(ctx, NV_DROP_HEADROOM);
	count_vsid(slot, NV_CNT_DECAP, frame_len(ctx));
	if (hairpin)
		return to_userspace_in_domain(ctx, NV_EXC_NAT_OUT, vsid, slot, 0, rdid, 0);
	if (to_outside && *gw_mode == NV_GW_ROUTE)
		return route_to_outside(ctx, rdid, vsid, slot);
	if (to_outside)
		return nat_to_outside(ctx, rdid, vsid, slot);
	return forward(ctx, port, vsid);
}

#endif
