/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* fabric_neighbor.h - ARP requests and IPv6 neighbor solicitations that arrive inside
 * NVGRE, as endpoints that are not ours send them (Open vSwitch, hardware: L2 endpoints that
 * flood a VM's question into the VSID), are answered from policy in XDP and sent back,
 * encapsulated, to the asking PA (XDP_TX). Only a question the sender's lookup record vouches
 * for (its CA, MAC and the outer source PA) gets an answer, and only for a CA of the VSID on
 * this host, or for the subnet's gateway address on a gateway host that serves the subnet's
 * routing domain. */
#ifndef NV_FABRIC_NEIGHBOR_H
#define NV_FABRIC_NEIGHBOR_H

#include "encap.h"
#include "flood.h"
#include "neighbor_reply.h"
#include "policy.h"
#include "verdict.h"

struct arp_frame {
	struct ethhdr eth;
	struct arp_eth_ipv4 arp;
} __attribute__((packed));

/* The MAC that answers for `target` (a CA of `family`) from the fabric, or NULL; *router
 * says whether it is the subnet's gateway. */
static __always_inline const __u8 *fabric_answer(const struct nv_subnet *sn, __u32 vsid, __u8 family,
						 const __be32 *target, int *router)
{
	struct nv_lookup_val *rec = find_record(vsid, family, target);
	*router = 0;
	if (rec && rec->port_ifindex && rec->type != NV_REC_GATEWAY)
		return rec->mac;
	__u32 rdid = sn->rdid;
	int gw = family == NV_AF_INET ? (sn->flags & NV_SUBNET_HAS_GW4) && words_equal(sn->gw4, target, 1)
				      : (sn->flags & NV_SUBNET_HAS_GW6) && words_equal(sn->gw6, target, 4);
	if (gw && bpf_map_lookup_elem(&gw_domains, &rdid)) {
		*router = 1;
		return sn->gw_mac;
	}
	return NULL;
}

/* What a question's answer goes back with: the outer MACs swapped, the PAs swapped, the
 * question's GRE key. Taken before the frame is resized. */
struct way_back {
	__u8 peer_mac[ETH_ALEN]; /* where the question came from on the underlay */
	__u8 our_mac[ETH_ALEN];
	__be32 key;
	int v6;
};

static __always_inline void note_way_back(struct way_back *w, const struct ethhdr *outer_eth,
					  const struct flow *outer, const struct gre_key_hdr *gre)
{
	mac_copy(w->peer_mac, outer_eth->h_source);
	mac_copy(w->our_mac, outer_eth->h_dest);
	w->key = gre->key;
	w->v6 = outer->family == NV_AF_INET6;
}

/* Resizes the frame to standard outer headers + `inner_len` and writes the outer headers
 * back toward the asker (outer IPv4 options are not echoed). 0, or -1. */
static __always_inline int make_way_back(struct xdp_md *ctx, const struct way_back *w, const struct flow *outer,
					 int outer_len, __u32 inner_len)
{
	int std_outer = w->v6 ? NV_OUTER6_LEN : NV_OUTER4_LEN;
	if (outer_len > std_outer && bpf_xdp_adjust_head(ctx, outer_len - std_outer))
		return -1;
	__u32 now_len = frame_len(ctx);
	asm volatile("" : "+r"(now_len)); /* a length, not arithmetic on the packet's end */
	if (bpf_xdp_adjust_tail(ctx, (int)(std_outer + inner_len) - (int)now_len))
		return -1;
	return write_outer((void *)(long)ctx->data, (void *)(long)ctx->data_end, w->peer_mac, w->our_mac, w->v6,
			   outer->dst, outer->src, 0, 0, w->key, inner_len);
}

/* Writes the ARP reply at `at` (inner Ethernet + ARP, 42 bytes; `at` a constant offset). */
static __always_inline int write_arp_reply(void *data, void *end, const int at, const __u8 *mac, __be32 target,
					   const __u8 *asker_mac, __be32 asker)
{
	struct arp_frame *r = data + at;
	if ((void *)(r + 1) > end)
		return -1;
	mac_copy(r->eth.h_dest, asker_mac);
	mac_copy(r->eth.h_source, mac);
	r->eth.h_proto = bpf_htons(ETH_P_ARP);
	r->arp.htype = bpf_htons(ARPHRD_ETHER);
	r->arp.ptype = bpf_htons(ETH_P_IP);
	r->arp.hlen = ETH_ALEN;
	r->arp.plen = 4;
	r->arp.op = bpf_htons(ARPOP_REPLY);
	mac_copy(r->arp.sha, mac);
	__builtin_memcpy(r->arp.spa, &target, 4);
	mac_copy(r->arp.tha, asker_mac);
	__builtin_memcpy(r->arp.tpa, &asker, 4);
	return 0;
}

/* `c` is at the inner frame's ARP header (after `inner_eth`); `outer_eth`, `outer` (the
 * outer addresses) and `gre` describe the outer headers, `outer_len` bytes (Ethernet, IP
 * with any options, GRE). */
static __always_inline int answer_arp_from_fabric(struct xdp_md *ctx, struct cursor c, const struct ethhdr *outer_eth,
						  const struct flow *outer, const struct gre_key_hdr *gre,
						  int outer_len, const struct ethhdr *inner_eth,
						  const struct nv_subnet *sn, __u32 vsid)
{
	struct arp_eth_ipv4 *arp = CURSOR_TAKE(&c, struct arp_eth_ipv4);
	if (!arp)
		return drop(ctx, NV_DROP_MALFORMED);
	if (arp->htype != bpf_htons(ARPHRD_ETHER) || arp->ptype != bpf_htons(ETH_P_IP) || arp->hlen != ETH_ALEN ||
	    arp->plen != 4)
		return drop(ctx, NV_DROP_MALFORMED);
	int gratuitous_reply = arp->op == bpf_htons(ARPOP_REPLY) && mac_is_broadcast(inner_eth->h_dest);
	if (arp->op != bpf_htons(ARPOP_REQUEST) && !gratuitous_reply)
		return drop(ctx, NV_DROP_ARP_NOT_REQUEST);

	__be32 asker, target;
	__builtin_memcpy(&asker, arp->spa, 4);
	__builtin_memcpy(&target, arp->tpa, 4);
	struct nv_lookup_val *sender = find_record(vsid, NV_AF_INET, &asker);
	if (!sender)
		return drop(ctx, NV_DROP_INNER_SRC_UNKNOWN);
	if (!same_pa(sender, outer))
		return drop(ctx, NV_DROP_PA_SPOOF);
	if (!mac_equal(arp->sha, sender->mac))
		return drop(ctx, NV_DROP_SRC_MAC_SPOOF);
	int router;
	const __u8 *mac =
		asker == target || gratuitous_reply ? NULL : fabric_answer(sn, vsid, NV_AF_INET, &target, &router);
	if (!mac) { /* for the VSID's VMs here, when it is a broadcast */
		enum nv_drop_reason why = gratuitous_reply ? NV_DROP_ARP_NOT_REQUEST : NV_DROP_ARP_UNANSWERED;
		if (!mac_is_broadcast(inner_eth->h_dest))
			return drop(ctx, why);
		return xdp_flood_from_fabric(ctx, outer, outer_len, inner_eth, NV_AF_INET, &asker, sn, vsid, why);
	}

	__u8 answer_mac[ETH_ALEN], asker_mac[ETH_ALEN];
	mac_copy(answer_mac, mac);
	mac_copy(asker_mac, sender->mac);
	struct way_back w;
	note_way_back(&w, outer_eth, outer, gre);
	if (make_way_back(ctx, &w, outer, outer_len, sizeof(struct arp_frame)))
		return drop(ctx, NV_DROP_HEADROOM);
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	int bad = w.v6 ? write_arp_reply(data, end, NV_OUTER6_LEN, answer_mac, target, asker_mac, asker)
		       : write_arp_reply(data, end, NV_OUTER4_LEN, answer_mac, target, asker_mac, asker);
	if (bad)
		return drop(ctx, NV_DROP_HEADROOM);
	return xdp_finish(ctx, XDP_TX, NV_TRACE_REPLY, 0, ctx->ingress_ifindex, vsid);
}

/* Writes inner Ethernet (IPv6) and the advertisement at `at` (a constant offset). */
static __always_inline int write_na(void *data, void *end, const int at, const __u8 *mac, const __u8 *asker_mac,
				    const struct na_reply *r)
{
	struct ethhdr *eth = data + at;
	struct na_reply *out = (void *)(eth + 1);
	if ((void *)(out + 1) > end)
		return -1;
	mac_copy(eth->h_dest, asker_mac);
	mac_copy(eth->h_source, mac);
	eth->h_proto = bpf_htons(ETH_P_IPV6);
	__builtin_memcpy(out, r, sizeof(*r));
	return 0;
}

/* A solicitation policy does not answer here, sent to a multicast group: to the VSID's VMs. */
static __always_inline int flood_ns_from_fabric(struct xdp_md *ctx, const struct flow *outer, int outer_len,
						const struct ethhdr *inner_eth, const struct ipv6hdr *ip6,
						const struct nv_subnet *sn, __u32 vsid)
{
	__be32 src[4];
	__builtin_memcpy(src, &ip6->saddr, 16);
	if (!mac_is_multicast(inner_eth->h_dest))
		return drop(ctx, NV_DROP_ND_UNANSWERED);
	return xdp_flood_from_fabric(ctx, outer, outer_len, inner_eth, NV_AF_INET6, src, sn, vsid,
				     NV_DROP_ND_UNANSWERED);
}

/* `c` is at the solicitation (after the inner IPv6 header `ip6`), `inner_eth` its Ethernet
 * header; the rest as for answer_arp_from_fabric. */
static __always_inline int answer_ns_from_fabric(struct xdp_md *ctx, struct cursor c, const struct ethhdr *outer_eth,
						 const struct flow *outer, const struct gre_key_hdr *gre,
						 int outer_len, const struct ethhdr *inner_eth,
						 const struct ipv6hdr *ip6, const struct nv_subnet *sn, __u32 vsid)
{
	struct nd_msg_hdr *ns = CURSOR_TAKE(&c, struct nd_msg_hdr);
	if (!ns || ip6->hop_limit != 255)
		return drop(ctx, NV_DROP_MALFORMED);
	struct na_reply r = {};
	if (!start_na(&r, ip6, ns)) /* duplicate address detection: for the VSID's VMs here */
		return flood_ns_from_fabric(ctx, outer, outer_len, inner_eth, ip6, sn, vsid);

	struct nv_lookup_val *sender = find_record(vsid, NV_AF_INET6, (const __be32 *)&r.ip6.daddr);
	if (!sender)
		return drop(ctx, NV_DROP_INNER_SRC_UNKNOWN);
	if (!same_pa(sender, outer))
		return drop(ctx, NV_DROP_PA_SPOOF);
	if (!mac_equal(inner_eth->h_source, sender->mac))
		return drop(ctx, NV_DROP_SRC_MAC_SPOOF);
	int router;
	const __u8 *mac = fabric_answer(sn, vsid, NV_AF_INET6, (const __be32 *)r.na.target, &router);
	if (!mac)
		return flood_ns_from_fabric(ctx, outer, outer_len, inner_eth, ip6, sn, vsid);

	__u8 answer_mac[ETH_ALEN], asker_mac[ETH_ALEN];
	mac_copy(answer_mac, mac);
	mac_copy(asker_mac, sender->mac);
	complete_na(&r, answer_mac, router);
	struct way_back w;
	note_way_back(&w, outer_eth, outer, gre);
	if (make_way_back(ctx, &w, outer, outer_len, sizeof(struct ethhdr) + sizeof(r)))
		return drop(ctx, NV_DROP_HEADROOM);
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	int bad = w.v6 ? write_na(data, end, NV_OUTER6_LEN, answer_mac, asker_mac, &r)
		       : write_na(data, end, NV_OUTER4_LEN, answer_mac, asker_mac, &r);
	if (bad)
		return drop(ctx, NV_DROP_HEADROOM);
	return xdp_finish(ctx, XDP_TX, NV_TRACE_REPLY, 0, ctx->ingress_ifindex, vsid);
}

#endif
