/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* forward.h - where a customer frame goes once policy knows its destination: a port on
 * this host (switch), another host (encap), or, from a VM, first through the distributed
 * router when it was sent to the subnet's gateway MAC. VM ports run tc (tc_deliver,
 * tc_route); a gateway delivers what comes from outside in XDP (xdp_deliver). */
#ifndef NV_FORWARD_H
#define NV_FORWARD_H

#include "encap.h"

static __always_inline int xdp_deliver(struct xdp_md *ctx, const struct flow *f,
				       const struct nv_lookup_val *rec, __u32 vsid, __u32 stats_slot)
{
	if (rec->port_ifindex) {
		count_vsid(stats_slot, NV_CNT_LOCAL, frame_len(ctx));
		return forward(ctx, rec->port_ifindex, vsid);
	}
	return xdp_encap_and_send(ctx, f, rec, vsid, stats_slot);
}

/* A GSO frame switched to a local port stays one frame: the VM on that port takes it whole,
 * as from a bridge. `wire_len` as in tc_encap_and_send. */
static __always_inline int tc_deliver(struct __sk_buff *skb, const struct flow *f,
				      const struct nv_lookup_val *rec, __u32 vsid, __u32 stats_slot,
				      __u32 wire_len)
{
	if (rec->port_ifindex) {
		count_vsid(stats_slot, NV_CNT_LOCAL, frame_len(skb));
		return forward(skb, rec->port_ifindex, vsid);
	}
	return tc_encap_and_send(skb, f, rec, vsid, stats_slot, wire_len);
}

/* Decrements TTL / hop limit in place (IPv4 checksum updated incrementally). */
static __always_inline void decrement_ttl(void *l3, void *end, __u8 family)
{
	if (family == NV_AF_INET) {
		struct iphdr *ip = l3;
		if ((void *)(ip + 1) > end)
			return;
		ipv4_decrement_ttl(ip);
	} else {
		struct ipv6hdr *ip6 = l3;
		if ((void *)(ip6 + 1) > end)
			return;
		ip6->hop_limit--;
	}
}

/* The distributed router: longest prefix match in the source's routing domain, then the
 * lookup record of the destination (a subnet route) or of the next hop (a customer route,
 * usually toward a gateway host); rewrite MACs and TTL, switch VSID. */
static __always_inline int tc_route(struct __sk_buff *ctx, struct ethhdr *eth, void *l3,
				    const struct flow *f, __u32 src_rdid, __u32 src_slot,
				    __u32 src_vsid, __u32 wire_len)
{
	struct nv_route_val *r = find_route(src_rdid, f->family, f->dst);
	if (!r)
		return to_userspace(ctx, NV_EXC_NO_ROUTE, src_vsid, src_slot, 0);
	__u32 dst_vsid = r->vsid;
	struct nv_subnet *dst_sn = bpf_map_lookup_elem(&subnets, &dst_vsid);
	if (!dst_sn)
		return to_userspace(ctx, NV_EXC_NO_ROUTE, src_vsid, src_slot, 0);
	struct nv_lookup_val *rec;
	if (r->kind == NV_ROUTE_SUBNET) {
		rec = find_record(dst_vsid, f->family, f->dst);
		if (!rec || rec->type == NV_REC_L2_ONLY)
			return to_userspace(ctx, NV_EXC_NO_LOOKUP, src_vsid, src_slot, 0);
		if (rec->type == NV_REC_GATEWAY)
			return to_userspace(ctx, NV_EXC_GATEWAY, src_vsid, src_slot, 0);
	} else {
		rec = find_record(dst_vsid, r->nh_family, (const __be32 *)r->nh);
		if (!rec || rec->type == NV_REC_L2_ONLY)
			return to_userspace(ctx, NV_EXC_CUSTOMER_ROUTE, src_vsid, src_slot, 0);
	}
	if (f->ttl <= 1)
		return to_userspace(ctx, NV_EXC_TTL_EXPIRED, src_vsid, src_slot, 0);

	mac_copy(eth->h_source, dst_sn->gw_mac);
	mac_copy(eth->h_dest, rec->mac);
	decrement_ttl(l3, (void *)(long)ctx->data_end, f->family);
	count_vsid(src_slot, NV_CNT_ROUTE, frame_len(ctx));
	return tc_deliver(ctx, f, rec, dst_vsid, dst_sn->stats_slot, wire_len);
}

#endif
