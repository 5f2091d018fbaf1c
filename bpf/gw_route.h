/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* gw_route.h - on a gateway host, a routing domain in route mode: its subnets and the
 * physical prefixes configured for it reach each other without NAT. Going out, a frame to
 * one of those prefixes is routed to the external interface's next hop (too big: an
 * oversize exception, answered to the VM); to anything else, or to a prefix the FIB does
 * not route out of the external interface, it is a no-route exception (answered with
 * ICMP unreachable). Coming in, a packet to one
 * of the domain's subnets from one of its prefixes is encapsulated toward the VM. */
#ifndef NV_GW_ROUTE_H
#define NV_GW_ROUTE_H

#include "external_fib.h"
#include "forward.h"

static __always_inline int gw_prefix_covers(__u32 rdid, __be32 addr)
{
	struct nv_gw_prefix_key k = {};
	k.prefixlen = NV_GW_PREFIX_KEY_BITS + 32;
	k.rdid_be = bpf_htonl(rdid);
	__builtin_memcpy(k.addr, &addr, 4);
	return bpf_map_lookup_elem(&gw_prefixes, &k) != NULL;
}

static __always_inline struct nv_gw_routed *gw_routed_subnet(__be32 addr)
{
	struct nv_gw_routed_key k = {};
	k.prefixlen = 32;
	__builtin_memcpy(k.addr, &addr, 4);
	return bpf_map_lookup_elem(&gw_routed, &k);
}

/* A decapsulated frame of route-mode domain `rdid` that is for no VM here. */
static __always_inline int route_to_outside(struct xdp_md *ctx, __u32 rdid, __u32 vsid, __u32 slot)
{
	struct cursor c = { .pos = (void *)(long)ctx->data, .end = (void *)(long)ctx->data_end };
	struct ethhdr *eth = CURSOR_TAKE(&c, struct ethhdr);
	if (!eth || eth->h_proto != bpf_htons(ETH_P_IP))
		return to_userspace(ctx, NV_EXC_NO_ROUTE, vsid, slot, 0); /* IPv4 prefixes only */
	struct flow f = {};
	struct iphdr *ip = parse_ipv4(&c, &f);
	if (!ip)
		return drop(ctx, NV_DROP_MALFORMED);
	if (!gw_prefix_covers(rdid, ip->daddr))
		return to_userspace(ctx, NV_EXC_NO_ROUTE, vsid, slot, 0);
	if (ip->ttl <= 1)
		return to_userspace(ctx, NV_EXC_ROUTE_OUT, vsid, slot, 0);
	struct bpf_fib_lookup fib;
	switch (external_next_hop(ctx, ip, ip->saddr, &fib)) {
	case EXTERNAL_HOP_OK:
		break;
	case EXTERNAL_HOP_UNRESOLVED:
		return to_userspace(ctx, NV_EXC_ROUTE_OUT, vsid, slot, 0); /* the kernel resolves it */
	case EXTERNAL_HOP_TOO_BIG:
		return to_userspace(ctx, NV_EXC_OVERSIZE, vsid, slot, fib.mtu_result);
	default:
		return to_userspace(ctx, NV_EXC_NO_ROUTE, vsid, slot, 0);
	}

	mac_copy(eth->h_dest, fib.dmac);
	mac_copy(eth->h_source, fib.smac);
	decrement_ttl(ip, c.end, NV_AF_INET);
	count_gw(NV_GW_ROUTED_OUT, frame_len(ctx));
	return forward(ctx, fib.ifindex, vsid);
}

/* An IPv4 packet from the external interface to a subnet of a route-mode domain. */
static __always_inline int route_from_outside(struct xdp_md *ctx, struct ethhdr *eth,
					      struct iphdr *ip, const struct flow *f,
					      const struct nv_gw_routed *to)
{
	if (!gw_prefix_covers(to->rdid, ip->saddr))
		return drop(ctx, NV_DROP_EXTERNAL_SPOOF);
	__u32 vsid = to->vsid;
	struct nv_subnet *sn = bpf_map_lookup_elem(&subnets, &vsid);
	struct nv_lookup_val *rec = find_record(vsid, NV_AF_INET, &ip->daddr);
	if (!sn || !rec || rec->type != NV_REC_STATIC)
		return drop(ctx, NV_DROP_EXTERNAL_NO_RECORD);
	if (ip->ttl <= 1)
		return drop(ctx, NV_DROP_EXTERNAL_TTL);

	mac_copy(eth->h_source, sn->gw_mac);
	mac_copy(eth->h_dest, rec->mac);
	decrement_ttl(ip, (void *)(long)ctx->data_end, NV_AF_INET);
	count_gw(NV_GW_ROUTED_IN, frame_len(ctx));
	return xdp_deliver(ctx, f, rec, vsid, sn->stats_slot);
}

#endif
