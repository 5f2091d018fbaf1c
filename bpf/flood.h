/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* flood.h - broadcast and multicast that policy does not answer: Hyper-V's router and DHCP
 * guards on what a VM sends, then head-end replication (RFC 7637 section 4.3).
 *
 * From a VM (tc on its port): after the port's anti-spoofing and its share of replication,
 * one clone to each other port of the VSID on this host, then one clone encapsulated to
 * each other PA of the VSID (flood_lists, derived from the lookup records at apply time).
 * tc because it can clone: an XDP devmap broadcast sends one frame unchanged to every
 * port of a map, where each PA needs its own outer header.
 *
 * From the fabric (XDP on the uplink): a broadcast whose sender the VSID's policy vouches
 * for is decapsulated in XDP and passed up with nv_flood_meta; the uplink's tc program
 * (nv_fabric_flood) clones it to the VSID's ports here. Nothing reaches a port of another
 * VSID: every list is the VSID's own. */
#ifndef NV_FLOOD_H
#define NV_FLOOD_H

#include "encap.h"
#include "policy.h"
#include "verdict.h"

#define NV_IPV6_HOP_BY_HOP 0
#define NV_IPV6_ROUTING 43
#define NV_IPV6_FRAGMENT 44
#define NV_IPV6_DEST_OPTIONS 60
#define NV_ICMPV6_ROUTER_ADVERTISEMENT 134

/* The ICMPv6 type of an IPv6 packet whose first next header is `nexthdr`, the cursor at
 * it, past up to three extension headers (an advertisement behind them is still one, RFC
 * 7113); -1 when it is not ICMPv6, is cut short, or is a later fragment. */
static __always_inline int icmp6_type(struct cursor c, __u8 nexthdr)
{
	for (int i = 0; i < 4; i++) {
		__u8 *h = c.pos;
		if (nexthdr == IPPROTO_ICMPV6)
			return (void *)(h + 1) <= c.end ? *h : -1;
		if ((void *)(h + 8) > c.end)
			return -1;
		if (nexthdr == NV_IPV6_FRAGMENT) {
			if ((((__u16)h[2] << 8) | h[3]) & 0xfff8)
				return -1; /* not the first fragment: its type was checked in that one */
			c.pos += 8;
		} else if (nexthdr == NV_IPV6_HOP_BY_HOP || nexthdr == NV_IPV6_ROUTING ||
			   nexthdr == NV_IPV6_DEST_OPTIONS) {
			c.pos += ((__u32)h[1] + 1) * 8;
		} else {
			return -1;
		}
		nexthdr = h[0];
	}
	return -1;
}

/* Hyper-V's guards: the drop reason for a router advertisement or a DHCP/DHCPv6 server
 * message from a VM whose port does not allow it, else 0. `c` is at the transport header. */
static __always_inline int guard_violation(const struct nv_port *port, const struct flow *f, struct cursor c)
{
	if (f->proto == IPPROTO_UDP && !(port->flags & NV_PORT_ALLOW_DHCP_SERVER) &&
	    f->sport == bpf_htons(f->family == NV_AF_INET ? 67 : 547))
		return NV_DROP_DHCP_GUARD;
	if (f->family == NV_AF_INET6 && !(port->flags & NV_PORT_ALLOW_RA) &&
	    icmp6_type(c, f->proto) == NV_ICMPV6_ROUTER_ADVERTISEMENT)
		return NV_DROP_ROUTER_GUARD;
	return 0;
}

/* Addresses a VM may broadcast from without owning them: they never leave the link.
 * 0.0.0.0 (a DHCP client), :: (duplicate address detection) and fe80::/10. */
static __always_inline int link_scoped_source(__u8 family, const __be32 *src)
{
	if (family == NV_AF_INET)
		return src[0] == 0;
	if ((bpf_ntohl(src[0]) & 0xffc00000) == 0xfe800000)
		return 1;
	return (src[0] | src[1] | src[2] | src[3]) == 0;
}

/* Sends a clone of the frame out of `ifindex`. Under tracing (tests, `nvgre trace`, which
 * run on a live host's maps) the copy is counted but not sent. 1 when it went. */
static __always_inline int flood_clone(struct __sk_buff *skb, __u32 ifindex)
{
	if (nv_trace_enabled)
		return 1;
	return bpf_clone_redirect(skb, ifindex, 0) == 0 ? 1 : 0;
}

/* ---- From a VM ---- */

/* Sends one clone of the frame, encapsulated, to peer `i` of VSID `vsid`'s flood list (the
 * room for the outer headers, IPv6-sized with `v6`, is in front of the inner Ethernet header
 * already). A peer the underlay cannot reach yet (no neighbor, too big) gets no copy; the
 * agent resolves every PA of the policy. 1 when a copy went. A global function, checked
 * once: inlined, each of the 64 turns of the loops below would be checked anew. */
__noinline int tc_flood_copy_to_peer(struct __sk_buff *skb, __u32 vsid, __u32 i, __u32 inner_len, int v6)
{
	struct nv_flood_list *list = bpf_map_lookup_elem(&flood_lists, &vsid);
	if (!list || i >= NV_FLOOD_MAX_PEERS)
		return 0;
	/* The mask repeats the bound where the verifier sees it (NV_FLOOD_MAX_PEERS is 2^n);
	 * the barrier keeps the compiler from dropping it as redundant. */
	__u32 idx = i;
	asm volatile("" : "+r"(idx));
	const struct nv_flood_peer *peer = &list->peers[idx & (NV_FLOOD_MAX_PEERS - 1)];
	if ((peer->family == NV_AF_INET6) != (v6 != 0))
		return 0;
	struct nv_lookup_val rec = {};
	__builtin_memcpy(rec.pa, peer->pa, 16);
	rec.pa_family = peer->family;
	struct nv_config *cfg;
	struct bpf_fib_lookup fib = {};
	__u32 code = 0;
	if (underlay_route(skb, &rec, inner_len, &cfg, &fib, &code) != ENCAP_GO || !cfg)
		return 0;
	/* Floods carry FlowID 0: they are no flow, and every endpoint takes 0. */
	if (write_outer((void *)(long)skb->data, (void *)(long)skb->data_end, fib.dmac, fib.smac, v6,
			v6 ? (const void *)cfg->pa6 : (const void *)cfg->pa4, peer->pa, 0, 0, bpf_htonl(vsid << 8),
			inner_len))
		return 0;
	return flood_clone(skb, fib.ifindex);
}

/* Replicates a broadcast or multicast frame of VSID `vsid` from the VM on `skb->ifindex`,
 * which passed the port's checks; `off` is the drop reason when its subnet does not flood.
 * A global function: the verifier walks its loops once, not once per caller. */
__noinline int tc_flood_from_vm(struct __sk_buff *skb, __u32 vsid, __u32 off)
{
	struct nv_subnet *sn = bpf_map_lookup_elem(&subnets, &vsid);
	if (!sn)
		return tc_drop(skb, NV_DROP_SUBNET_UNKNOWN);
	if (sn->flags & NV_SUBNET_NO_FLOOD)
		return tc_drop(skb, off);
	__u32 ingress = skb->ifindex;
	struct nv_flood_list *list = bpf_map_lookup_elem(&flood_lists, &vsid);
	if (list && !exception_share_left(ingress | NV_SHARE_FLOOD, list->interval_ns, list->burst_ns))
		return tc_drop(skb, NV_DROP_FLOOD_THROTTLED);
	if (skb->gso_size)
		return tc_drop(skb, NV_DROP_GSO_UNSUPPORTED);
	__u32 slot = sn->stats_slot;
	__u32 len = skb->len;
	count_vsid(slot, NV_CNT_FLOOD, len);
	__u32 copies = 0; /* never branched on, so the verifier need not tell its values apart */
	if (!list)
		goto done;
	for (__u32 i = 0; i < NV_FLOOD_MAX_PORTS; i++) {
		if (i >= list->n_ports)
			break;
		__u32 port = list->ports[i];
		if (port != ingress)
			copies += flood_clone(skb, port);
	}
	/* Outer headers go in front of the frame (bpf_skb_adjust_room would refuse an ARP
	 * frame): IPv4 PAs first, then 20 bytes more for the IPv6 ones. */
	if (!list->n_peers || bpf_skb_change_head(skb, NV_OUTER4_LEN, 0))
		goto done;
	__u32 n_peers = list->n_peers;
	for (__u32 i = 0; i < NV_FLOOD_MAX_PEERS && i < n_peers; i++)
		copies += tc_flood_copy_to_peer(skb, vsid, i, len, 0);
	if (bpf_skb_change_head(skb, NV_OUTER6_LEN - NV_OUTER4_LEN, 0))
		goto done;
	for (__u32 i = 0; i < NV_FLOOD_MAX_PEERS && i < n_peers; i++)
		copies += tc_flood_copy_to_peer(skb, vsid, i, len, 1);
done:
	count_vsid_n(slot, NV_CNT_FLOOD_COPY, copies, len);
	return tc_finish(skb, TC_ACT_SHOT, NV_TRACE_FLOOD, copies, 0, vsid);
}

/* ---- From the fabric ---- */

static __always_inline int flood_list_has_peer(const struct nv_flood_list *list, const struct flow *outer)
{
	for (__u32 i = 0; i < NV_FLOOD_MAX_PEERS; i++) {
		if (i >= list->n_peers)
			break;
		const struct nv_flood_peer *p = &list->peers[i];
		if (p->family == outer->family && words_equal(p->pa, outer->src, outer->family == NV_AF_INET6 ? 4 : 1))
			return 1;
	}
	return 0;
}

/* Whether a broadcast from the fabric may enter VSID `vsid` here: this host has ports in
 * it, the outer source is a PA that hosts the VSID, and a source CA with a lookup record
 * is that record's (PA and MAC); a source without one must be link-scoped. 0 and *why. */
static __always_inline int flood_vouched(__u32 vsid, const struct flow *outer, const struct ethhdr *inner_eth,
					 __u8 family, const __be32 *src, enum nv_drop_reason *why)
{
	struct nv_flood_list *list = bpf_map_lookup_elem(&flood_lists, &vsid);
	if (!list || !list->n_ports) {
		*why = NV_DROP_DST_NOT_LOCAL;
		return 0;
	}
	if (!flood_list_has_peer(list, outer)) {
		*why = NV_DROP_PA_SPOOF;
		return 0;
	}
	struct nv_lookup_val *rec = find_record(vsid, family, src);
	if (!rec && !link_scoped_source(family, src)) {
		*why = NV_DROP_INNER_SRC_UNKNOWN;
		return 0;
	}
	if (rec && !same_pa(rec, outer)) {
		*why = NV_DROP_PA_SPOOF;
		return 0;
	}
	if (rec && !mac_equal(rec->mac, inner_eth->h_source)) {
		*why = NV_DROP_SRC_MAC_SPOOF;
		return 0;
	}
	return 1;
}

/* A broadcast or multicast from the fabric for VSID `vsid` (its source `family`/`src`, its
 * outer headers `outer_len` bytes): when its subnet floods and flood_vouched lets it in, it
 * is decapsulated and handed to nv_fabric_flood (XDP_PASS with nv_flood_meta, its
 * destination MAC parked until then); else dropped, `off` when the subnet does not flood. */
static __always_inline int xdp_flood_from_fabric(struct xdp_md *ctx, const struct flow *outer, int outer_len,
						 const struct ethhdr *inner_eth, __u8 family, const __be32 *src,
						 const struct nv_subnet *sn, __u32 vsid, enum nv_drop_reason off)
{
	if (sn->flags & NV_SUBNET_NO_FLOOD)
		return xdp_drop(ctx, off);
	enum nv_drop_reason why;
	if (!flood_vouched(vsid, outer, inner_eth, family, src, &why))
		return xdp_drop(ctx, why);
	__u32 slot = sn->stats_slot;
	if (outer_len < NV_OUTER4_LEN || outer_len > 256 || bpf_xdp_adjust_head(ctx, outer_len))
		return xdp_drop(ctx, NV_DROP_HEADROOM);
	if (bpf_xdp_adjust_meta(ctx, -(int)sizeof(struct nv_flood_meta)))
		return xdp_drop(ctx, NV_DROP_HEADROOM);
	void *data = (void *)(long)ctx->data;
	struct nv_flood_meta *m = (void *)(long)ctx->data_meta;
	struct ethhdr *eth = data;
	if ((void *)(m + 1) > data || (void *)(eth + 1) > (void *)(long)ctx->data_end)
		return xdp_drop(ctx, NV_DROP_MALFORMED);
	m->magic = NV_FLOOD_META_MAGIC;
	m->vsid = vsid;
	mac_copy(m->dst_mac, eth->h_dest);
	const __u8 parked[ETH_ALEN] = NV_FLOOD_PARKED_MAC;
	mac_copy(eth->h_dest, parked);
	count_vsid(slot, NV_CNT_FLOOD, xdp_frame_len(ctx));
	return xdp_finish(ctx, XDP_PASS, NV_TRACE_FLOOD, 0, 0, vsid);
}

/* The uplink's tc program: a frame nv_from_fabric passed up for replication goes to the
 * VSID's ports; everything else is the host's, untouched. */
SEC("tc")
int nv_fabric_flood(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	struct nv_flood_meta *m = (void *)(long)skb->data_meta;
	if ((void *)(m + 1) > data || m->magic != NV_FLOOD_META_MAGIC)
		return TC_ACT_OK;
	__u32 vsid = m->vsid;
	__u8 dst[ETH_ALEN];
	mac_copy(dst, m->dst_mac);
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > (void *)(long)skb->data_end)
		return tc_drop(skb, NV_DROP_MALFORMED);
	mac_copy(eth->h_dest, dst);
	struct nv_subnet *sn = bpf_map_lookup_elem(&subnets, &vsid);
	struct nv_flood_list *list = bpf_map_lookup_elem(&flood_lists, &vsid);
	if (!sn || !list)
		return tc_drop(skb, NV_DROP_DST_NOT_LOCAL); /* the policy changed in between */
	__u32 copies = 0;
	for (__u32 i = 0; i < NV_FLOOD_MAX_PORTS; i++) {
		if (i >= list->n_ports)
			break;
		copies += flood_clone(skb, list->ports[i]);
	}
	count_vsid_n(sn->stats_slot, NV_CNT_FLOOD_COPY, copies, skb->len);
	return tc_finish(skb, TC_ACT_SHOT, NV_TRACE_FLOOD, copies, 0, vsid);
}

#endif
