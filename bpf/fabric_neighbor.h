/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* fabric_neighbor.h - ARP requests that arrive inside NVGRE, as endpoints that are not ours
 * send them (Open vSwitch, hardware: L2 endpoints that flood a VM's ARP into the VSID), are
 * answered from policy in XDP and sent back, encapsulated, to the asking PA (XDP_TX). Only a
 * request the sender's lookup record vouches for (its CA, MAC and the outer source PA) gets
 * an answer, and only for a CA of the VSID on this host, or for the subnet's gateway address
 * on a gateway host that serves the subnet's routing domain. */
#ifndef NV_FABRIC_NEIGHBOR_H
#define NV_FABRIC_NEIGHBOR_H

#include "encap.h"
#include "policy.h"
#include "verdict.h"

struct arp_frame {
	struct ethhdr eth;
	struct arp_eth_ipv4 arp;
} __attribute__((packed));

/* The MAC that answers for `target` from the fabric, or NULL. */
static __always_inline const __u8 *fabric_arp_answer(const struct nv_subnet *sn, __u32 vsid, __be32 target)
{
	struct nv_lookup_val *rec = find_record(vsid, NV_AF_INET, &target);
	if (rec && rec->port_ifindex && rec->type != NV_REC_GATEWAY)
		return rec->mac;
	__u32 rdid = sn->rdid;
	if ((sn->flags & NV_SUBNET_HAS_GW4) && words_equal(sn->gw4, &target, 1) &&
	    bpf_map_lookup_elem(&gw_domains, &rdid))
		return sn->gw_mac;
	return NULL;
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

/* `c` is at the inner frame's ARP header; `outer_eth`, `outer` (the outer addresses) and
 * `gre` describe the outer headers, `outer_len` bytes (Ethernet, IP with any options, GRE). */
static __always_inline int answer_arp_from_fabric(struct xdp_md *ctx, struct cursor c, const struct ethhdr *outer_eth,
						  const struct flow *outer, const struct gre_key_hdr *gre,
						  int outer_len, const struct nv_subnet *sn, __u32 vsid)
{
	struct arp_eth_ipv4 *arp = CURSOR_TAKE(&c, struct arp_eth_ipv4);
	if (!arp)
		return drop(ctx, NV_DROP_MALFORMED);
	if (arp->htype != bpf_htons(ARPHRD_ETHER) || arp->ptype != bpf_htons(ETH_P_IP) || arp->hlen != ETH_ALEN ||
	    arp->plen != 4)
		return drop(ctx, NV_DROP_MALFORMED);
	if (arp->op != bpf_htons(ARPOP_REQUEST))
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
	const __u8 *mac = asker == target ? NULL : fabric_arp_answer(sn, vsid, target);
	if (!mac)
		return drop(ctx, NV_DROP_ARP_UNANSWERED);

	/* Everything the reply needs, before the frame is resized. */
	__u8 answer_mac[ETH_ALEN], asker_mac[ETH_ALEN], peer_mac[ETH_ALEN], our_mac[ETH_ALEN];
	mac_copy(answer_mac, mac);
	mac_copy(asker_mac, sender->mac);
	mac_copy(peer_mac, outer_eth->h_source);
	mac_copy(our_mac, outer_eth->h_dest);
	__be32 key = gre->key;
	int v6 = outer->family == NV_AF_INET6;
	int std_outer = v6 ? NV_OUTER6_LEN : NV_OUTER4_LEN;
	__u32 reply_len = std_outer + sizeof(struct arp_frame);

	/* Outer IPv4 options are not echoed: drop them from the front, then fit the tail. */
	if (outer_len > std_outer && bpf_xdp_adjust_head(ctx, outer_len - std_outer))
		return drop(ctx, NV_DROP_HEADROOM);
	__u32 now_len = frame_len(ctx);
	asm volatile("" : "+r"(now_len)); /* a length, not arithmetic on the packet's end */
	if (bpf_xdp_adjust_tail(ctx, (int)reply_len - (int)now_len))
		return drop(ctx, NV_DROP_HEADROOM);
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	if (write_outer(data, end, peer_mac, our_mac, v6, outer->dst, outer->src, 0, 0, key, sizeof(struct arp_frame)))
		return drop(ctx, NV_DROP_HEADROOM);
	int bad = v6 ? write_arp_reply(data, end, NV_OUTER6_LEN, answer_mac, target, asker_mac, asker)
		     : write_arp_reply(data, end, NV_OUTER4_LEN, answer_mac, target, asker_mac, asker);
	if (bad)
		return drop(ctx, NV_DROP_HEADROOM);
	return xdp_finish(ctx, XDP_TX, NV_TRACE_REPLY, 0, ctx->ingress_ifindex, vsid);
}

#endif
