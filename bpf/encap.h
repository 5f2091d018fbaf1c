/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* encap.h - NVGRE encapsulation toward a remote provider address (RFC 7637 section 4):
 * outer Ethernet from the underlay FIB, outer IPv4 (DF, TTL 64, checksum) or IPv6, GRE
 * 0x2000/0x6558 with key VSID<<8 | FlowID, then redirect to the FIB's egress. The FIB is
 * asked first, so a frame that cannot go (no neighbor yet, too big) leaves untouched.
 *
 * XDP makes room with bpf_xdp_adjust_head. tc (VM ports) uses bpf_skb_adjust_room with the
 * encapsulation flags, so the kernel knows the inner headers: a GSO frame from the VM is
 * encapsulated once and cut into segments after encapsulation (GRE segmentation, by the NIC
 * or in software), each segment with these outer headers, and a partial inner checksum is
 * completed by the NIC or the kernel on the way out. */
#ifndef NV_ENCAP_H
#define NV_ENCAP_H

#include <linux/if_ether.h>
#include "checksum.h"
#include "flow_hash.h"
#include "policy.h"
#include "verdict.h"
#include "ablation.h"

enum encap_verdict { ENCAP_GO, ENCAP_DROP, ENCAP_EXCEPTION };

/* Asks the underlay FIB for the way to the record's PA. `wire_len` is the longest inner
 * frame that will go on the wire (one segment of a GSO frame). ENCAP_GO fills *fib and
 * *cfgp (the host config); otherwise *code is the drop or exception reason (and
 * fib->mtu_result the MTU when the frame is too big). */
static __always_inline enum encap_verdict underlay_route(void *ctx, const struct nv_lookup_val *rec,
							  __u32 wire_len, struct nv_config **cfgp,
							  struct bpf_fib_lookup *fib, __u32 *code)
{
	int v6 = rec->pa_family == NV_AF_INET6;
	struct nv_config *cfg = host_config();
	*cfgp = cfg;
	if (!cfg || !(cfg->flags & (v6 ? NV_CFG_HAS_PA6 : NV_CFG_HAS_PA4))) {
		*code = NV_DROP_NO_LOCAL_PA;
		return ENCAP_DROP;
	}
	fib->ifindex = cfg->uplink_ifindex;
	fib->l4_protocol = NV_IPPROTO_GRE;
	if (v6) {
		fib->family = AF_INET6;
		__builtin_memcpy(fib->ipv6_src, cfg->pa6, 16);
		__builtin_memcpy(fib->ipv6_dst, rec->pa, 16);
	} else {
		fib->family = AF_INET;
		__builtin_memcpy(&fib->ipv4_src, cfg->pa4, 4);
		__builtin_memcpy(&fib->ipv4_dst, rec->pa, 4);
	}
	/* The inner Ethernet header is kept, so the outer L3 length is IP + GRE + inner frame. */
	fib->tot_len = (v6 ? sizeof(struct ipv6hdr) : sizeof(struct iphdr)) + NV_GRE_LEN + wire_len;

	/* The agent's next hop while its lease runs: a hash lookup instead of a FIB walk. */
	struct nv_nexthop *nh = kept_nexthop(rec);
	if (nh && fib->tot_len <= nh->mtu) {
		fib->ifindex = nh->ifindex;
		mac_copy(fib->dmac, nh->dmac);
		mac_copy(fib->smac, nh->smac);
		return ENCAP_GO;
	}

	__u32 fib_flags = (cfg->flags & NV_CFG_FIB_USE_RULES) ? 0 : BPF_FIB_LOOKUP_DIRECT;
	switch (bpf_fib_lookup(ctx, fib, sizeof(*fib), fib_flags)) {
	case BPF_FIB_LKUP_RET_SUCCESS:
		return ENCAP_GO;
	case BPF_FIB_LKUP_RET_FRAG_NEEDED:
		*code = NV_EXC_OVERSIZE;
		return ENCAP_EXCEPTION;
	case BPF_FIB_LKUP_RET_NO_NEIGH:
		*code = NV_EXC_NO_NEIGH;
		fib->mtu_result = 0;
		return ENCAP_EXCEPTION;
	case BPF_FIB_LKUP_RET_FWD_DISABLED:
		*code = NV_DROP_FIB_FWD_DISABLED;
		return ENCAP_DROP;
	default:
		*code = NV_DROP_FIB_UNREACHABLE;
		return ENCAP_DROP;
	}
}

/* Writes outer Ethernet, IP and GRE at `data` (the room is there, the inner frame follows):
 * from `smac` and `src_pa` to `dmac` and `dst_pa` (16 bytes with `v6`, else 4), GRE `key`
 * (network order). Lengths come from `inner_len`; for a GSO frame segmentation rewrites them
 * per segment. Returns -1 when the room is not within `end`. */
static __always_inline int write_outer(void *data, void *end, const __u8 *dmac, const __u8 *smac, int v6,
				       const void *src_pa, const void *dst_pa, __u8 tos, __u32 flow_label,
				       __be32 key, __u32 inner_len)
{
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		return -1;
	mac_copy(eth->h_dest, dmac);
	mac_copy(eth->h_source, smac);

	struct gre_key_hdr *gre;
	if (v6) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		gre = (void *)(ip6 + 1);
		if ((void *)(gre + 1) > end)
			return -1;
		eth->h_proto = bpf_htons(ETH_P_IPV6);
		*(__be32 *)ip6 = bpf_htonl((6u << 28) | ((__u32)tos << 20) | (flow_label & 0xfffff));
		ip6->payload_len = bpf_htons(NV_GRE_LEN + inner_len);
		ip6->nexthdr = NV_IPPROTO_GRE;
		ip6->hop_limit = NV_OUTER_TTL;
		__builtin_memcpy(&ip6->saddr, src_pa, 16);
		__builtin_memcpy(&ip6->daddr, dst_pa, 16);
	} else {
		struct iphdr *ip = (void *)(eth + 1);
		gre = (void *)(ip + 1);
		if ((void *)(gre + 1) > end)
			return -1;
		eth->h_proto = bpf_htons(ETH_P_IP);
		ip->version = 4;
		ip->ihl = 5;
		ip->tos = tos;
		ip->tot_len = bpf_htons(sizeof(*ip) + NV_GRE_LEN + inner_len);
		ip->id = 0; /* atomic datagram (DF set), RFC 6864 */
		ip->frag_off = bpf_htons(0x4000);
		ip->ttl = NV_OUTER_TTL;
		ip->protocol = NV_IPPROTO_GRE;
		ip->check = 0;
		__builtin_memcpy(&ip->saddr, src_pa, 4);
		__builtin_memcpy(&ip->daddr, dst_pa, 4);
		ip->check = csum_fold(csum_add_words(0, ip, sizeof(*ip) / 2));
	}
	gre->flags_version = bpf_htons(NV_GRE_FLAGS_VERSION);
	gre->protocol = bpf_htons(NV_ETH_P_TEB);
	gre->key = key;
	return 0;
}

/* The outer headers toward a lookup record's PA, as the FIB found the way there. */
static __always_inline int write_outer_to(void *data, void *end, const struct bpf_fib_lookup *fib,
					  const struct nv_config *cfg, const struct nv_lookup_val *rec,
					  __u8 tos, __u32 hash, __u32 vsid, __u32 inner_len)
{
	int v6 = rec->pa_family == NV_AF_INET6;
	return write_outer(data, end, fib->dmac, fib->smac, v6, v6 ? (const void *)cfg->pa6 : (const void *)cfg->pa4,
			   rec->pa, tos, hash, bpf_htonl((vsid << 8) | (nv_record_flags_of(rec) & NV_REC_NO_FLOWID ? 0 : flow_id(hash))),
			   inner_len);
}

/* The route's verdict when it is not ENCAP_GO, the same in both hooks. */
#define ENCAP_REFUSED(ctx, verdict, code, fib, vsid, stats_slot)                                       \
	((verdict) == ENCAP_DROP ? drop(ctx, code) : to_userspace(ctx, code, vsid, stats_slot, (fib).mtu_result))

static __always_inline int xdp_encap_and_send(struct xdp_md *ctx, const struct flow *f,
					      const struct nv_lookup_val *rec, __u32 vsid, __u32 stats_slot)
{
	__u32 inner_len = xdp_frame_len(ctx);
	struct nv_config *cfg;
	struct bpf_fib_lookup fib = {};
	__u32 code = 0;
	enum encap_verdict v = underlay_route(ctx, rec, inner_len, &cfg, &fib, &code);
	if (v != ENCAP_GO)
		return ENCAP_REFUSED(ctx, v, code, fib, vsid, stats_slot);

	int outer_len = rec->pa_family == NV_AF_INET6 ? NV_OUTER6_LEN : NV_OUTER4_LEN;
	__u32 hash = flow_hash(f);
	__u8 tos = f->tos;
	__u32 egress = fib.ifindex;
	if (bpf_xdp_adjust_head(ctx, -outer_len))
		return xdp_drop(ctx, NV_DROP_HEADROOM);
	if (write_outer_to((void *)(long)ctx->data, (void *)(long)ctx->data_end, &fib, cfg, rec, tos, hash, vsid,
			   inner_len))
		return xdp_drop(ctx, NV_DROP_HEADROOM);
	count_vsid(stats_slot, NV_CNT_ENCAP, inner_len);
	return xdp_forward(ctx, egress, vsid);
}

/* Copies the Ethernet header at `data` to `data + at` (`at` a constant, for the verifier). */
static __always_inline int copy_inner_eth(void *data, void *end, const int at)
{
	if (data + at + ETH_HLEN > end)
		return -1;
	__builtin_memcpy(data + at, data, ETH_HLEN);
	return 0;
}

/* `wire_len`: the longest inner frame that leaves (a GSO frame's segment, else the frame). */
static __always_inline int tc_encap_and_send(struct __sk_buff *skb, const struct flow *f,
					     const struct nv_lookup_val *rec, __u32 vsid, __u32 stats_slot,
					     __u32 wire_len)
{
	__u32 inner_len = tc_frame_len(skb);
	struct nv_config *cfg;
	struct bpf_fib_lookup fib = {};
	__u32 code = 0;
	enum encap_verdict v = underlay_route(skb, rec, wire_len, &cfg, &fib, &code);
	if (v != ENCAP_GO)
		return ENCAP_REFUSED(skb, v, code, fib, vsid, stats_slot);

	int v6 = rec->pa_family == NV_AF_INET6;
	int outer_len = v6 ? NV_OUTER6_LEN : NV_OUTER4_LEN;
	__u32 hash = flow_hash(f);
	__u8 tos = f->tos;
	__u32 egress = fib.ifindex;
	/* The room goes between the VM's Ethernet header and its IP header; the VM's header
	 * becomes the inner one (copied to the end of the room) and its place the outer one.
	 * FIXED_GSO: segments keep the VM's size, which the FIB check above let through. */
	__u64 flags = BPF_F_ADJ_ROOM_FIXED_GSO | BPF_F_ADJ_ROOM_ENCAP_L4_GRE | BPF_F_ADJ_ROOM_ENCAP_L2_ETH |
		      BPF_F_ADJ_ROOM_ENCAP_L2(ETH_HLEN) |
		      (v6 ? BPF_F_ADJ_ROOM_ENCAP_L3_IPV6 : BPF_F_ADJ_ROOM_ENCAP_L3_IPV4);
#if NV_ABLATE == NV_ABLATE_ENCAP_NONE
	return tc_forward(skb, egress, vsid);
#endif
	if (NV_ABLATE != NV_ABLATE_ENCAP_NO_ADJUST && bpf_skb_adjust_room(skb, outer_len, BPF_ADJ_ROOM_MAC, flags))
		/* The kernel encapsulates TCP and UDP (USO) GSO frames; other kinds it refuses. */
		return tc_drop(skb, skb->gso_size ? NV_DROP_GSO_UNSUPPORTED : NV_DROP_HEADROOM);
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	if (v6 ? copy_inner_eth(data, end, NV_OUTER6_LEN) : copy_inner_eth(data, end, NV_OUTER4_LEN))
		return tc_drop(skb, NV_DROP_HEADROOM);
	if (write_outer_to(data, end, &fib, cfg, rec, tos, hash, vsid, inner_len))
		return tc_drop(skb, NV_DROP_HEADROOM);
	count_vsid(stats_slot, NV_CNT_ENCAP, inner_len);
	return tc_forward(skb, egress, vsid);
}

#endif
