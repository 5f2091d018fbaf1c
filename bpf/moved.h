/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* moved.h - a VM moved from this host moments ago: NVGRE frames still arriving here for it
 * (from senders that have not seen the move) go on to its new host. Only the outer
 * Ethernet header, the outer destination and the TTL change: the outer source stays the
 * sender's PA, so the new host's receiver checks (the inner source's record names the
 * outer source) pass as for a frame sent to it directly. The TTL bounds a loop between
 * hosts that briefly disagree about where the VM is. */
#ifndef NV_MOVED_H
#define NV_MOVED_H

#include "checksum.h"
#include "encap.h"
#include "verdict.h"

static __always_inline int forward_moved(struct xdp_md *ctx, const struct flow *outer,
					 const struct nv_lookup_val *dst, __u32 outer_len, __u32 slot, __u32 vsid)
{
	int v6 = outer->family == NV_AF_INET6;
	if (dst->pa_family != outer->family || outer->ttl <= 1)
		return drop(ctx, NV_DROP_MOVED_UNSENT);
	if (outer_len > 256) /* never (the outer headers were parsed): a bound for the verifier */
		return drop(ctx, NV_DROP_MALFORMED);
	__u32 inner_len = xdp_frame_len(ctx) - outer_len;
	struct nv_config *cfg;
	struct bpf_fib_lookup fib = {};
	__u32 code = 0;
	if (underlay_route(ctx, dst, inner_len, &cfg, &fib, &code) != ENCAP_GO)
		return drop(ctx, NV_DROP_MOVED_UNSENT);

	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		return drop(ctx, NV_DROP_MALFORMED);
	mac_copy(eth->h_dest, fib.dmac);
	mac_copy(eth->h_source, fib.smac);
	if (v6) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		if ((void *)(ip6 + 1) > end)
			return drop(ctx, NV_DROP_MALFORMED);
		__builtin_memcpy(&ip6->daddr, dst->pa, 16);
		ip6->hop_limit--;
	} else {
		struct iphdr *ip = (void *)(eth + 1);
		if ((void *)(ip + 1) > end)
			return drop(ctx, NV_DROP_MALFORMED);
		__be32 old = ip->daddr, new;
		__builtin_memcpy(&new, dst->pa, 4);
		ip->daddr = new;
		csum_replace4(&ip->check, old, new);
		ipv4_decrement_ttl(ip);
	}
	count_vsid(slot, NV_CNT_MOVED, inner_len);
	return xdp_forward(ctx, fib.ifindex, vsid);
}

#endif
