/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* gw_egress.h - the one rule for every packet a tenant sends out of its virtual network
 * through this gateway, NAT or route mode, first packet or offloaded: it never reaches an
 * infrastructure address (the infra map: the provider network, this host's own addresses,
 * listed management prefixes, loopback, link-local, multicast, broadcast). The one public
 * exception is a published service at its external address and port (hairpin), which the
 * gateway process translates both ways as for an outside client. That the next hop lies on
 * the external interface is external_fib.h's part of the rule. The gateway process applies
 * the same rule (NvgreGateway/EgressRule.swift) before it sends anything. */
#ifndef NV_GW_EGRESS_H
#define NV_GW_EGRESS_H

#include "policy.h"

enum egress {
	EGRESS_OUT,     /* toward the physical network */
	EGRESS_HAIRPIN, /* to a published service on an external address: the gateway process */
	EGRESS_INFRA,   /* to an infrastructure address: dropped */
};

static __always_inline int infra_covers(__u8 family, const __be32 *addr)
{
	struct nv_infra_key k = {};
	k.prefixlen = NV_INFRA_KEY_PREFIX_BITS + (family == NV_AF_INET6 ? 128 : 32);
	k.family = family;
	addr_copy(k.addr, addr, family);
	return bpf_map_lookup_elem(&infra, &k) != NULL;
}

static __always_inline int is_external_address(__be32 addr)
{
	struct nv_ext_addr_key k;
	__builtin_memcpy(k.addr, &addr, 4);
	return bpf_map_lookup_elem(&ext_addrs, &k) != NULL;
}

/* The gateway process set up a flow of domain `rdid` for this packet (for an external
 * address, only ever a hairpin flow through a published service). */
static __always_inline int has_nat_flow(__u32 rdid, const struct flow *f)
{
	struct nv_nat_out_key k = {};
	k.rdid = rdid;
	k.proto = f->proto;
	k.ca_port = f->sport;
	__builtin_memcpy(k.ca, f->src, 4);
	__builtin_memcpy(k.remote, f->dst, 4);
	k.remote_port = f->dport;
	return bpf_map_lookup_elem(&nat_out, &k) != NULL;
}

static __always_inline struct nv_service *find_service(__u8 proto, __be32 addr, __be16 port)
{
	struct nv_service_key k = {};
	k.proto = proto;
	k.port = port;
	__builtin_memcpy(k.addr, &addr, 4);
	return bpf_map_lookup_elem(&services, &k);
}

/* `f` is the decapsulated packet of domain `rdid`, served in `mode` (enum nv_gw_mode). */
static __always_inline enum egress tenant_egress(const struct flow *f, __u32 rdid, __u32 mode)
{
	if (!infra_covers(f->family, f->dst))
		return EGRESS_OUT;
	if (mode == NV_GW_NAT && f->family == NV_AF_INET && f->dport &&
	    (f->proto == IPPROTO_TCP || f->proto == IPPROTO_UDP) && is_external_address(f->dst[0]) &&
	    (find_service(f->proto, f->dst[0], f->dport) || has_nat_flow(rdid, f)))
		return EGRESS_HAIRPIN;
	return EGRESS_INFRA;
}

#endif
