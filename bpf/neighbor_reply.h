/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* neighbor_reply.h - ARP requests and IPv6 neighbor solicitations from a VM are answered
 * in place from policy and sent back out of the port: the subnet's gateway address gets the gateway MAC, a CA
 * with a lookup record in the port's VSID gets that record's MAC. Nothing else is answered,
 * nor is a VM's question about its own address (duplicate address detection). */
#ifndef NV_NEIGHBOR_REPLY_H
#define NV_NEIGHBOR_REPLY_H

#include "checksum.h"
#include "flood.h"
#include "policy.h"
#include "verdict.h"

/* Finds the MAC that answers for `target` in the port's subnet; returns 1 and sets
 * *is_router when found. */
static __always_inline int neighbor_mac(const struct nv_port *port, const struct nv_subnet *sn,
					__u8 family, const __be32 *target, __u8 *mac,
					int *is_router)
{
	int gw = 0;
	if (family == NV_AF_INET)
		gw = (sn->flags & NV_SUBNET_HAS_GW4) && words_equal(sn->gw4, target, 1);
	else
		gw = (sn->flags & NV_SUBNET_HAS_GW6) && words_equal(sn->gw6, target, 4);
	if (gw) {
		mac_copy(mac, sn->gw_mac);
		*is_router = 1;
		return 1;
	}
	struct nv_lookup_val *rec = find_record(port->vsid, family, target);
	if (!rec || mac_equal(rec->mac, port->mac))
		return 0;
	mac_copy(mac, rec->mac);
	*is_router = 0;
	return 1;
}

static __always_inline int answer_arp(struct __sk_buff *ctx, const struct nv_port *port,
				      const struct nv_subnet *sn)
{
	struct arp_frame {
		struct ethhdr eth;
		struct arp_eth_ipv4 arp;
	} *fr = (void *)(long)ctx->data;
	if ((void *)(fr + 1) > (void *)(long)ctx->data_end)
		return drop(ctx, NV_DROP_MALFORMED);
	struct ethhdr *eth = &fr->eth;
	struct arp_eth_ipv4 *arp = &fr->arp;
	if (arp->htype != bpf_htons(ARPHRD_ETHER) ||
	    arp->ptype != bpf_htons(ETH_P_IP) || arp->hlen != ETH_ALEN || arp->plen != 4)
		return drop(ctx, NV_DROP_MALFORMED);
	if (!mac_equal(arp->sha, port->mac))
		return drop(ctx, NV_DROP_SRC_MAC_SPOOF);

	__be32 target, sender;
	__builtin_memcpy(&target, arp->tpa, 4);
	__builtin_memcpy(&sender, arp->spa, 4);
	__u8 mac[ETH_ALEN];
	int router;
	enum nv_drop_reason unanswered;
	if (arp->op == bpf_htons(ARPOP_REQUEST)) {
		if (target != sender && neighbor_mac(port, sn, NV_AF_INET, &target, mac, &router))
			goto answer;
		unanswered = NV_DROP_ARP_UNANSWERED;
	} else if (arp->op == bpf_htons(ARPOP_REPLY) && mac_is_broadcast(eth->h_dest)) {
		unanswered = NV_DROP_ARP_NOT_REQUEST; /* a gratuitous reply */
	} else {
		return drop(ctx, NV_DROP_ARP_NOT_REQUEST);
	}
	/* Not answered from policy: a broadcast goes to the VSID, from the VM's own address
	 * (or 0.0.0.0, a probe) only, so no VM can poison another's ARP cache. */
	if (!mac_is_broadcast(eth->h_dest))
		return drop(ctx, unanswered);
	if (sender && !port_may_use(port, ctx->ifindex, NV_AF_INET, &sender))
		return drop(ctx, NV_DROP_SRC_CA_SPOOF);
	return tc_flood_from_vm(ctx, port->vsid, unanswered);

answer:
	mac_copy(eth->h_dest, port->mac);
	mac_copy(eth->h_source, mac);
	arp->op = bpf_htons(ARPOP_REPLY);
	mac_copy(arp->tha, port->mac);
	mac_copy(arp->sha, mac);
	__builtin_memcpy(arp->tpa, &sender, 4);
	__builtin_memcpy(arp->spa, &target, 4);
	return tc_reply(ctx, port->vsid);
}

/* The neighbor advertisement we send: IPv6 header, NA, target link-layer address option. */
struct na_reply {
	struct ipv6hdr ip6;
	struct nd_msg_hdr na;
	struct nd_lladdr_opt tlla;
};

#define ND_NA_FLAG_ROUTER 0x80000000u
#define ND_NA_FLAG_SOLICITED 0x40000000u
#define ND_NA_FLAG_OVERRIDE 0x20000000u

/* Fills the advertisement whose addresses and target are set (r.ip6.saddr/daddr,
 * r.na.target): `mac` answers, `router` sets the R flag; the checksum last. */
static __always_inline void complete_na(struct na_reply *r, const __u8 *mac, int router)
{
	r->ip6.version = 6;
	r->ip6.payload_len = bpf_htons(sizeof(r->na) + sizeof(r->tlla));
	r->ip6.nexthdr = IPPROTO_ICMPV6;
	r->ip6.hop_limit = 255;
	r->na.type = 136;
	r->na.flags = bpf_htonl(ND_NA_FLAG_SOLICITED | ND_NA_FLAG_OVERRIDE | (router ? ND_NA_FLAG_ROUTER : 0));
	r->tlla.type = 2;
	r->tlla.len = 1;
	mac_copy(r->tlla.addr, mac);

	/* ICMPv6 checksum: pseudo header (addresses, length, next header) + message. */
	__u32 sum = csum_add_words(0, &r->ip6.saddr, 16);
	sum += bpf_htons(sizeof(r->na) + sizeof(r->tlla)) + bpf_htons(IPPROTO_ICMPV6);
	sum = csum_add_words(sum, &r->na, (sizeof(r->na) + sizeof(r->tlla)) / 2);
	r->na.checksum = csum_fold(sum);
}

/* Starts the advertisement answering solicitation `ns` in `ip6`: to the asker, from the
 * target. Returns 0 when the asker is the unspecified address (duplicate address
 * detection, which gets no answer), else 1. */
static __always_inline int start_na(struct na_reply *r, const struct ipv6hdr *ip6, const struct nd_msg_hdr *ns)
{
	__builtin_memcpy(&r->ip6.daddr, &ip6->saddr, 16);
	__builtin_memcpy(&r->ip6.saddr, ns->target, 16);
	__builtin_memcpy(r->na.target, ns->target, 16);
	return (r->ip6.daddr.in6_u.u6_addr32[0] | r->ip6.daddr.in6_u.u6_addr32[1] | r->ip6.daddr.in6_u.u6_addr32[2] |
		r->ip6.daddr.in6_u.u6_addr32[3]) != 0;
}

/* Returns 1 when the IPv6 frame at the cursor is a neighbor solicitation (answered or
 * dropped by answer_ns), 0 when it is something else. */
static __always_inline int is_neighbor_solicitation(struct cursor c, const struct ipv6hdr *ip6)
{
	if (ip6->nexthdr != IPPROTO_ICMPV6)
		return 0;
	struct nd_msg_hdr *ns = CURSOR_TAKE(&c, struct nd_msg_hdr);
	return ns && ns->type == 135 && ns->code == 0;
}

static __always_inline int answer_ns(struct __sk_buff *ctx, const struct nv_port *port,
				     const struct nv_subnet *sn)
{
	/* Not one struct: Ethernet is 14 bytes and a struct would pad it to 16. */
	struct ipv6hdr *ip6 = (void *)(long)ctx->data + sizeof(struct ethhdr);
	struct nd_msg_hdr *ns = (void *)(ip6 + 1);
	if ((void *)(ns + 1) > (void *)(long)ctx->data_end || ip6->hop_limit != 255)
		return drop(ctx, NV_DROP_MALFORMED);

	struct na_reply r = {};
	int asked = start_na(&r, ip6, ns);
	__u8 mac[ETH_ALEN];
	int router;
	if (!asked || !neighbor_mac(port, sn, NV_AF_INET6, (const __be32 *)ns->target, mac, &router)) {
		/* To the VSID, from the VM's own address, :: or a link-local one. */
		__be32 src[4];
		__builtin_memcpy(src, &ip6->saddr, 16);
		if (!link_scoped_source(NV_AF_INET6, src) && !port_may_use(port, ctx->ifindex, NV_AF_INET6, src))
			return drop(ctx, NV_DROP_SRC_CA_SPOOF);
		struct ethhdr *eth = (void *)(long)ctx->data;
		if ((void *)(eth + 1) > (void *)(long)ctx->data_end || !mac_is_multicast(eth->h_dest))
			return drop(ctx, NV_DROP_ND_UNANSWERED);
		return tc_flood_from_vm(ctx, port->vsid, NV_DROP_ND_UNANSWERED);
	}

	complete_na(&r, mac, router);

	/* Resize to exactly Ethernet + reply, then write it. */
	__u32 reply_len = sizeof(struct ethhdr) + sizeof(r);
	if (bpf_skb_change_tail(ctx, reply_len, 0) || bpf_skb_pull_data(ctx, reply_len))
		return drop(ctx, NV_DROP_HEADROOM);
	struct ethhdr *eth = (void *)(long)ctx->data;
	struct na_reply *out = (void *)(eth + 1);
	if ((void *)(out + 1) > (void *)(long)ctx->data_end)
		return drop(ctx, NV_DROP_MALFORMED);
	mac_copy(eth->h_dest, port->mac);
	mac_copy(eth->h_source, mac);
	eth->h_proto = bpf_htons(ETH_P_IPV6);
	__builtin_memcpy(out, &r, sizeof(r));
	return tc_reply(ctx, port->vsid);
}

#endif
