/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* encap.h - NVGRE encapsulation toward a remote provider address (RFC 7637 section 4):
 * outer Ethernet from the underlay FIB, outer IPv4 (DF, TTL 64, checksum) or IPv6, GRE
 * 0x2000/0x6558 with key VSID<<8 | FlowID, then redirect to the FIB's egress. The FIB is
 * asked first, so a frame that cannot go (no neighbor yet, too big) leaves untouched. */
#ifndef NV_ENCAP_H
#define NV_ENCAP_H

#include <linux/if_ether.h>
#include "checksum.h"
#include "flow_hash.h"
#include "policy.h"
#include "verdict.h"


static __always_inline int encap_and_send(struct xdp_md *ctx, const struct flow *f,
					  const struct nv_lookup_val *rec, __u32 vsid,
					  __u32 stats_slot)
{
	struct nv_config *cfg = host_config();
	if (!cfg)
		return drop(ctx, NV_DROP_NO_LOCAL_PA);
	int v6 = rec->pa_family == NV_AF_INET6;
	if (!(cfg->flags & (v6 ? NV_CFG_HAS_PA6 : NV_CFG_HAS_PA4)))
		return drop(ctx, NV_DROP_NO_LOCAL_PA);

	__u32 inner_len = frame_len(ctx);
	__u32 l3_len = (v6 ? sizeof(struct ipv6hdr) : sizeof(struct iphdr)) + NV_GRE_LEN;
	int outer_len = v6 ? NV_OUTER6_LEN : NV_OUTER4_LEN;

	struct bpf_fib_lookup fib = {};
	fib.ifindex = cfg->uplink_ifindex;
	fib.l4_protocol = NV_IPPROTO_GRE;
	if (v6) {
		fib.family = AF_INET6;
		__builtin_memcpy(fib.ipv6_src, cfg->pa6, 16);
		__builtin_memcpy(fib.ipv6_dst, rec->pa, 16);
	} else {
		fib.family = AF_INET;
		__builtin_memcpy(&fib.ipv4_src, cfg->pa4, 4);
		__builtin_memcpy(&fib.ipv4_dst, rec->pa, 4);
	}
	/* The inner Ethernet header is kept, so the outer L3 length is l3_len + inner_len. */
	fib.tot_len = l3_len + inner_len;

	__u32 fib_flags = (cfg->flags & NV_CFG_FIB_USE_RULES) ? 0 : BPF_FIB_LOOKUP_DIRECT;
	switch (bpf_fib_lookup(ctx, &fib, sizeof(fib), fib_flags)) {
	case BPF_FIB_LKUP_RET_SUCCESS:
		break;
	case BPF_FIB_LKUP_RET_FRAG_NEEDED:
		return to_userspace(ctx, NV_EXC_OVERSIZE, vsid, stats_slot, fib.mtu_result);
	case BPF_FIB_LKUP_RET_NO_NEIGH:
		return to_userspace(ctx, NV_EXC_NO_NEIGH, vsid, stats_slot, 0);
	case BPF_FIB_LKUP_RET_FWD_DISABLED:
		return drop(ctx, NV_DROP_FIB_FWD_DISABLED);
	default:
		return drop(ctx, NV_DROP_FIB_UNREACHABLE);
	}

	__u32 h = flow_hash(f);
	__u8 tos = f->tos;
	__u32 egress = fib.ifindex;

	if (bpf_xdp_adjust_head(ctx, -outer_len))
		return drop(ctx, NV_DROP_HEADROOM);
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		return drop(ctx, NV_DROP_HEADROOM);
	mac_copy(eth->h_dest, fib.dmac);
	mac_copy(eth->h_source, fib.smac);

	struct gre_key_hdr *gre;
	if (v6) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		gre = (void *)(ip6 + 1);
		if ((void *)(gre + 1) > end)
			return drop(ctx, NV_DROP_HEADROOM);
		eth->h_proto = bpf_htons(ETH_P_IPV6);
		*(__be32 *)ip6 = bpf_htonl((6u << 28) | ((__u32)tos << 20) | (h & 0xfffff));
		ip6->payload_len = bpf_htons(NV_GRE_LEN + inner_len);
		ip6->nexthdr = NV_IPPROTO_GRE;
		ip6->hop_limit = NV_OUTER_TTL;
		__builtin_memcpy(&ip6->saddr, cfg->pa6, 16);
		__builtin_memcpy(&ip6->daddr, rec->pa, 16);
	} else {
		struct iphdr *ip = (void *)(eth + 1);
		gre = (void *)(ip + 1);
		if ((void *)(gre + 1) > end)
			return drop(ctx, NV_DROP_HEADROOM);
		eth->h_proto = bpf_htons(ETH_P_IP);
		ip->version = 4;
		ip->ihl = 5;
		ip->tos = tos;
		ip->tot_len = bpf_htons(l3_len + inner_len);
		ip->id = 0; /* atomic datagram (DF set), RFC 6864 */
		ip->frag_off = bpf_htons(0x4000);
		ip->ttl = NV_OUTER_TTL;
		ip->protocol = NV_IPPROTO_GRE;
		ip->check = 0;
		__builtin_memcpy(&ip->saddr, cfg->pa4, 4);
		__builtin_memcpy(&ip->daddr, rec->pa, 4);
		ip->check = csum_fold(csum_add_words(0, ip, sizeof(*ip) / 2));
	}
	gre->flags_version = bpf_htons(NV_GRE_FLAGS_VERSION);
	gre->protocol = bpf_htons(NV_ETH_P_TEB);
	gre->key = bpf_htonl((vsid << 8) | flow_id(h));

	count_vsid(stats_slot, NV_CNT_ENCAP, inner_len);
	return forward(ctx, egress, vsid);
}

#endif
