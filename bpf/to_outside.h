/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* to_outside.h - on a gateway host, a decapsulated frame of a served routing domain that is
 * for no VM here: with an offloaded NAT flow, translate it and send it out of the external
 * interface; otherwise the gateway process decides (new flow, not yet established, no
 * next hop resolved, anything NAT cannot handle). */
#ifndef NV_TO_OUTSIDE_H
#define NV_TO_OUTSIDE_H

#include "external_fib.h"
#include "nat.h"

static __always_inline int nat_to_outside(struct xdp_md *ctx, __u32 rdid, __u32 vsid, __u32 slot)
{
	struct nat_packet p = {};
	if (nat_parse(ctx, &p, 1) < 0)
		return to_userspace(ctx, NV_EXC_NAT_OUT, vsid, slot, 0);
	struct nv_nat_out_key k = {};
	k.rdid = rdid;
	k.proto = p.ip->protocol;
	k.ca_port = *p.inside;
	__builtin_memcpy(k.ca, &p.ip->saddr, 4);
	__builtin_memcpy(k.remote, &p.ip->daddr, 4);
	k.remote_port = p.outside ? *p.outside : 0;
	struct nv_nat_flow *fl = bpf_map_lookup_elem(&nat_out, &k);
	if (!fl)
		return to_userspace(ctx, NV_EXC_NAT_OUT, vsid, slot, 0);
	/* A service flow's answers belong with what outsiders send to the domain (their own
	 * share): a flood at a service must not take the tenant's own egress. */
	int for_outsider = (fl->flags & NV_NAT_SERVICE) != 0;
	if (!(fl->flags & NV_NAT_OFFLOADED) || p.ip->ttl <= 1)
		return to_userspace_in_domain(ctx, NV_EXC_NAT_OUT, vsid, slot, 0, rdid, for_outsider);
	struct bpf_fib_lookup fib;
	__be32 ext;
	__builtin_memcpy(&ext, fl->ext, 4);
	if (external_next_hop(ctx, p.ip, ext, &fib) != EXTERNAL_HOP_OK) /* the kernel resolves it */
		return to_userspace_in_domain(ctx, NV_EXC_NAT_OUT, vsid, slot, 0, rdid, for_outsider);

	nat_set_addr(&p, &p.ip->saddr, ext);
	nat_set_inside_port(&p, fl->ext_port);
	ipv4_decrement_ttl(p.ip);
	mac_copy(p.eth->h_dest, fib.dmac);
	mac_copy(p.eth->h_source, fib.smac);
	nat_seen(fl, &p);
	count_gw(NV_GW_OFFLOADED_OUT, frame_len(ctx));
	return forward(ctx, fib.ifindex, vsid);
}

#endif
