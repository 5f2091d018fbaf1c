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
#include "ablation.h"

#define IPV6_NEXTHDR_FRAGMENT 44

struct ipv6_frag_hdr {
	__u8 nexthdr;
	__u8 reserved;
	__be16 frag_off;
	__be32 identification;
};

/* A drop before the frame's subnet is known: an unknown VSID is what the frame is dropped for. */
static __always_inline int drop_in_vsid(struct xdp_md *ctx, __u32 vsid, enum nv_drop_reason reason)
{
	return drop(ctx, subnet_of(vsid) ? reason : NV_DROP_VSID_UNKNOWN);
}

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
	int outer_len = c.pos - data;

	/* The subnet is looked up only where it is needed (ARP, ND, floods, a source in another
	 * subnet, a destination that is not a VM here): a frame for a VM on this host is counted
	 * in the slot its destination record carries. A drop before that lookup still names an
	 * unknown VSID first (drop_in_vsid), as when the subnet was looked up here. */
	struct ethhdr *inner_eth = CURSOR_TAKE(&c, struct ethhdr);
	if (!inner_eth)
		return drop_in_vsid(ctx, vsid, NV_DROP_MALFORMED);
	struct flow inner = {};
	struct nv_subnet *sn = NULL;
	if (inner_eth->h_proto == bpf_htons(ETH_P_8021Q) ||
	    inner_eth->h_proto == bpf_htons(ETH_P_8021AD))
		return drop_in_vsid(ctx, vsid, NV_DROP_INNER_VLAN);
	if (inner_eth->h_proto == bpf_htons(ETH_P_ARP)) {
		sn = subnet_of(vsid);
		if (!sn)
			return drop(ctx, NV_DROP_VSID_UNKNOWN);
		return answer_arp_from_fabric(ctx, c, eth, &outer, gre, outer_len, inner_eth, sn, vsid);
	}
	if (inner_eth->h_proto == bpf_htons(ETH_P_IP)) {
		if (!parse_ipv4(&c, &inner))
			return drop_in_vsid(ctx, vsid, NV_DROP_MALFORMED);
	} else if (inner_eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = parse_ipv6(&c, &inner);
		if (!ip6)
			return drop_in_vsid(ctx, vsid, NV_DROP_MALFORMED);
		if (is_neighbor_solicitation(c, ip6)) {
			sn = subnet_of(vsid);
			if (!sn)
				return drop(ctx, NV_DROP_VSID_UNKNOWN);
			return answer_ns_from_fabric(ctx, c, eth, &outer, gre, outer_len, inner_eth, ip6, sn, vsid);
		}
	} else {
		return drop_in_vsid(ctx, vsid, NV_DROP_INNER_NOT_IP);
	}
	if (mac_is_multicast(inner_eth->h_dest)) { /* broadcast too: for the VSID's VMs here */
		sn = subnet_of(vsid);
		if (!sn)
			return drop(ctx, NV_DROP_VSID_UNKNOWN);
		return xdp_flood_from_fabric(ctx, &outer, outer_len, inner_eth, inner.family, inner.src, sn, vsid,
					     NV_DROP_FLOOD_OFF);
	}

#if NV_ABLATE == NV_ABLATE_DECAP_NO_LOOKUPS
	if (decap(ctx, outer_len) < 0)
		return drop(ctx, NV_DROP_HEADROOM);
	return forward(ctx, ctx->ingress_ifindex, vsid);
#elif NV_ABLATE == NV_ABLATE_DECAP_DST_ONLY
	struct nv_lookup_val *dst_only = find_record(vsid, inner.family, inner.dst);
	if (!dst_only || decap(ctx, outer_len) < 0)
		return drop(ctx, NV_DROP_DST_NOT_LOCAL);
	return forward(ctx, dst_only->port_ifindex, vsid);
#endif
	struct nv_lookup_val *src = find_record(vsid, inner.family, inner.src);
	if (!src) { /* routed to us from another subnet of the tenant? */
		sn = subnet_of(vsid);
		if (!sn)
			return drop(ctx, NV_DROP_VSID_UNKNOWN);
		src = find_record_in_domain(sn->rdid, inner.family, inner.src);
	}
	if (!src)
		return drop(ctx, NV_DROP_INNER_SRC_UNKNOWN);
	if (!same_pa(src, &outer))
		return drop(ctx, NV_DROP_PA_SPOOF);
	struct nv_lookup_val *dst = find_record(vsid, inner.family, inner.dst);
	if (dst && dst->port_ifindex) { /* a VM on this host: the common case */
		__u32 port = dst->port_ifindex, slot = nv_record_slot_of(dst);
		if (decap(ctx, outer_len) < 0)
			return drop(ctx, NV_DROP_HEADROOM);
		count_vsid(slot, NV_CNT_DECAP, frame_len(ctx));
		return forward(ctx, port, vsid);
	}

	if (!sn)
		sn = subnet_of(vsid);
	if (!sn)
		return drop(ctx, NV_DROP_VSID_UNKNOWN);
	__u32 slot = sn->stats_slot;
	__u32 rdid = sn->rdid;
	/* On a gateway host: no record at all means outside the domain, for NAT or routing. */
	__u32 *gw_mode = dst ? NULL : bpf_map_lookup_elem(&gw_domains, &rdid);
	if (dst && (nv_record_flags_of(dst) & NV_REC_MOVED_AWAY))
		return forward_moved(ctx, &outer, dst, outer_len, slot, vsid);
	if (!gw_mode)
		return drop(ctx, NV_DROP_DST_NOT_LOCAL);
	enum egress e = tenant_egress(&inner, rdid, *gw_mode);
	if (e == EGRESS_INFRA) {
		count_domain(rdid, NV_DOM_TO_INFRA, frame_len(ctx));
		return drop(ctx, NV_DROP_TO_INFRASTRUCTURE);
	}

	if (decap(ctx, outer_len) < 0)
		return drop(ctx, NV_DROP_HEADROOM);
	count_vsid(slot, NV_CNT_DECAP, frame_len(ctx));
	if (e == EGRESS_HAIRPIN)
		return to_userspace_in_domain(ctx, NV_EXC_NAT_OUT, vsid, slot, 0, rdid, 0);
	if (*gw_mode == NV_GW_ROUTE)
		return route_to_outside(ctx, rdid, vsid, slot);
	return nat_to_outside(ctx, rdid, vsid, slot);
}

#endif
