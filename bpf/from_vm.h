/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* from_vm.h - program attached to the host end of every VM port. */
#ifndef NV_FROM_VM_H
#define NV_FROM_VM_H

#include "forward.h"
#include "neighbor_reply.h"

/* Removes one 802.1Q/802.1ad tag: customer frames enter the overlay untagged (RFC 7637).
 * Returns -1 when the frame is malformed, NV_DROP_DOUBLE_VLAN for stacked tags, else 0. */
static __always_inline int strip_vlan(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		return -1;
	if (eth->h_proto != bpf_htons(ETH_P_8021Q) && eth->h_proto != bpf_htons(ETH_P_8021AD))
		return 0;
	struct vlan_tag *tag = (void *)(eth + 1);
	if ((void *)(tag + 1) > end)
		return -1;
	if (tag->proto == bpf_htons(ETH_P_8021Q) || tag->proto == bpf_htons(ETH_P_8021AD))
		return NV_DROP_DOUBLE_VLAN;
	struct ethhdr untagged;
	__builtin_memcpy(&untagged, eth, 2 * ETH_ALEN);
	untagged.h_proto = tag->proto;
	if (bpf_xdp_adjust_head(ctx, (int)sizeof(*tag)))
		return -1;
	data = (void *)(long)ctx->data;
	eth = data;
	if ((void *)(eth + 1) > (void *)(long)ctx->data_end)
		return -1;
	__builtin_memcpy(eth, &untagged, sizeof(untagged));
	return 0;
}

SEC("xdp")
int nv_from_vm(struct xdp_md *ctx)
{
	__u32 ifindex = ctx->ingress_ifindex;
	struct nv_port *port = bpf_map_lookup_elem(&ports, &ifindex);
	if (!port)
		return drop(ctx, NV_DROP_PORT_UNKNOWN);
	__u32 vsid = port->vsid;
	struct nv_subnet *sn = bpf_map_lookup_elem(&subnets, &vsid);
	if (!sn)
		return drop(ctx, NV_DROP_SUBNET_UNKNOWN);

	int tag = strip_vlan(ctx);
	if (tag)
		return drop(ctx, tag < 0 ? NV_DROP_MALFORMED : NV_DROP_DOUBLE_VLAN);

	struct cursor c = { .pos = (void *)(long)ctx->data, .end = (void *)(long)ctx->data_end };
	struct ethhdr *eth = CURSOR_TAKE(&c, struct ethhdr);
	if (!eth)
		return drop(ctx, NV_DROP_MALFORMED);
	if (!mac_equal(eth->h_source, port->mac))
		return drop(ctx, NV_DROP_SRC_MAC_SPOOF);

	if (eth->h_proto == bpf_htons(ETH_P_ARP))
		return answer_arp(ctx, port, sn);

	struct flow f = {};
	void *l3 = c.pos;
	if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = parse_ipv6(&c, &f);
		if (!ip6)
			return drop(ctx, NV_DROP_MALFORMED);
		if (is_neighbor_solicitation(c, ip6))
			return answer_ns(ctx, port, sn);
	} else if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		if (!parse_ipv4(&c, &f))
			return drop(ctx, NV_DROP_MALFORMED);
	}

	if (mac_is_broadcast(eth->h_dest))
		return to_userspace(ctx, NV_EXC_BROADCAST, vsid, sn->stats_slot, 0);
	if (mac_is_multicast(eth->h_dest))
		return to_userspace(ctx, NV_EXC_MULTICAST, vsid, sn->stats_slot, 0);
	if (!f.family)
		return drop(ctx, NV_DROP_NOT_IP);
	if (!port_may_use(ifindex, f.family, f.src))
		return drop(ctx, NV_DROP_SRC_CA_SPOOF);

	if (mac_equal(eth->h_dest, sn->gw_mac))
		return route(ctx, eth, l3, &f, sn, vsid);

	struct nv_lookup_val *rec = find_record(vsid, f.family, f.dst);
	if (!rec)
		return to_userspace(ctx, NV_EXC_NO_LOOKUP, vsid, sn->stats_slot, 0);
	if (rec->type == NV_REC_GATEWAY)
		return to_userspace(ctx, NV_EXC_GATEWAY, vsid, sn->stats_slot, 0);
	return deliver(ctx, &f, rec, vsid, sn->stats_slot);
}

#endif
