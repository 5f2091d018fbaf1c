/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* external_fib.h - a gateway's way out to the physical network: the kernel FIB's next hop
 * for an IPv4 packet leaving through the external interface. A destination the FIB sends
 * anywhere else (a prefix routed over the uplink, say) is no route for the gateway. */
#ifndef NV_EXTERNAL_FIB_H
#define NV_EXTERNAL_FIB_H

#include "policy.h"

enum external_hop {
	EXTERNAL_HOP_OK,         /* fib->dmac, fib->smac and fib->ifindex are set */
	EXTERNAL_HOP_UNRESOLVED, /* the next hop has no MAC yet: the kernel must resolve it */
	EXTERNAL_HOP_TOO_BIG,    /* fib->mtu_result is the MTU exceeded */
	EXTERNAL_HOP_NONE,       /* no route out of the external interface */
};

static __always_inline enum external_hop external_next_hop(struct xdp_md *ctx, const struct iphdr *ip,
							   __be32 src, struct bpf_fib_lookup *fib)
{
	struct nv_config *cfg = host_config();
	if (!cfg || !cfg->external_ifindex)
		return EXTERNAL_HOP_NONE;
	__builtin_memset(fib, 0, sizeof(*fib));
	fib->family = AF_INET;
	fib->ifindex = cfg->external_ifindex;
	fib->l4_protocol = ip->protocol;
	fib->tot_len = bpf_ntohs(ip->tot_len);
	fib->ipv4_src = src;
	fib->ipv4_dst = ip->daddr;
	int rc = bpf_fib_lookup(ctx, fib, sizeof(*fib), BPF_FIB_LOOKUP_DIRECT);
	if (rc == BPF_FIB_LKUP_RET_FRAG_NEEDED)
		return EXTERNAL_HOP_TOO_BIG;
	if (rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH)
		return EXTERNAL_HOP_NONE;
	if (fib->ifindex != cfg->external_ifindex)
		return EXTERNAL_HOP_NONE;
	return rc == BPF_FIB_LKUP_RET_SUCCESS ? EXTERNAL_HOP_OK : EXTERNAL_HOP_UNRESOLVED;
}

#endif
