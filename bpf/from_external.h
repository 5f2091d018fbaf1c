/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* from_external.h - program attached to a gateway's external interface. Frames to a subnet
 * of a routing domain in route mode are routed to the VM (gw_route.h). Frames to one of
 * the gateway's external addresses belong to NAT: an offloaded flow is translated back to
 * the tenant's CA and port and encapsulated toward the VM's host; a flow not offloaded yet
 * and a new connection to a published service go to the gateway process; anything else
 * is dropped and counted; an ICMP error about a NAT flow goes to the gateway process,
 * which translates it for the VM. Everything else (ARP, the host's own traffic, pings to
 * the gateway itself) belongs to the host. */
#ifndef NV_FROM_EXTERNAL_H
#define NV_FROM_EXTERNAL_H

#include "forward.h"
#include "gw_egress.h"
#include "gw_route.h"
#include "nat.h"

static __always_inline struct nv_service *published(const struct nat_packet *p)
{
	return p->outside ? find_service(p->ip->protocol, p->ip->daddr, *p->inside) : NULL;
}

static __always_inline int is_icmp_error(__u8 type)
{
	return type == ICMP_DEST_UNREACH || type == ICMP_TIME_EXCEEDED || type == ICMP_PARAMETERPROB;
}

/* An ICMP error quotes the packet it is about, here as NAT sent it: from the external
 * address and port to the remote. True when that is a NAT flow's (the gateway process
 * translates the error back for the VM, RFC 5508). `c` is past the ICMP header. */
static __always_inline struct nv_nat_flow *error_about_nat_flow(struct cursor *c)
{
	struct iphdr *q = CURSOR_TAKE(c, struct iphdr);
	__be16 *l4 = (__be16 *)c->pos; /* the quote's first 8 bytes: ports, or ICMP type, code, sum, id */
	if (!q || q->ihl != 5 || (void *)(l4 + 4) > c->end)
		return NULL;
	struct nv_nat_in_key k = {};
	k.proto = q->protocol;
	__builtin_memcpy(k.ext, &q->saddr, 4);
	__builtin_memcpy(k.remote, &q->daddr, 4);
	if (q->protocol == IPPROTO_TCP || q->protocol == IPPROTO_UDP) {
		k.ext_port = l4[0];
		k.remote_port = l4[1];
	} else if (q->protocol == IPPROTO_ICMP) {
		k.ext_port = l4[2]; /* the echo identifier */
	} else {
		return NULL;
	}
	return bpf_map_lookup_elem(&nat_in, &k);
}

SEC("xdp")
int nv_from_external(struct xdp_md *ctx)
{
	struct cursor c = { .pos = (void *)(long)ctx->data, .end = (void *)(long)ctx->data_end };
	struct ethhdr *eth = CURSOR_TAKE(&c, struct ethhdr);
	if (!eth || eth->h_proto != bpf_htons(ETH_P_IP))
		return pass_to_host(ctx);
	struct flow f = {};
	struct iphdr *ip = parse_ipv4(&c, &f);
	if (!ip)
		return pass_to_host(ctx);
	if (!is_external_address(ip->daddr)) {
		struct nv_gw_routed *to = gw_routed_subnet(ip->daddr);
		if (!to)
			return pass_to_host(ctx);
		if (infra_covers(NV_AF_INET, &ip->saddr))
			return drop(ctx, NV_DROP_EXTERNAL_FROM_INFRA);
		return route_from_outside(ctx, eth, ip, &f, to);
	}
	/* Nothing for a tenant comes from an infrastructure address (a tenant could never
	 * answer it: gw_egress.h): such a source on the external side is forged. */
	int from_infra = infra_covers(NV_AF_INET, &ip->saddr);
	if (f.proto == IPPROTO_ICMP && !is_ipv4_fragment(ip)) {
		struct icmp_echo_hdr *icmp = CURSOR_TAKE(&c, struct icmp_echo_hdr);
		if (icmp && icmp->type == ICMP_ECHO)
			return pass_to_host(ctx); /* a ping to the gateway itself */
		if (icmp && is_icmp_error(icmp->type)) {
			struct nv_nat_flow *about = error_about_nat_flow(&c);
			if (!about)
				return pass_to_host(ctx); /* about the host's own traffic */
			if (from_infra)
				return drop(ctx, NV_DROP_EXTERNAL_FROM_INFRA);
			return to_userspace_in_domain(ctx, NV_EXC_NAT_IN, 0, NV_NO_STATS_SLOT, 0, about->rdid,
						      about->flags & NV_NAT_SERVICE);
		}
	}
	if (from_infra)
		return drop(ctx, NV_DROP_EXTERNAL_FROM_INFRA);

	struct nat_packet p = {};
	if (nat_parse(ctx, &p, 0) < 0)
		return drop(ctx, NV_DROP_EXTERNAL_UNKNOWN);
	struct nv_nat_in_key k = {};
	k.proto = p.ip->protocol;
	k.ext_port = *p.inside;
	__builtin_memcpy(k.ext, &p.ip->daddr, 4);
	__builtin_memcpy(k.remote, &p.ip->saddr, 4);
	k.remote_port = p.outside ? *p.outside : 0;
	struct nv_nat_flow *fl = bpf_map_lookup_elem(&nat_in, &k);
	if (!fl) {
		/* A new connection to a service: in its domain's share, so that a flood at one
		 * tenant's service leaves the others' services and egress their shares. */
		struct nv_service *svc = published(&p);
		if (svc)
			return to_userspace_in_domain(ctx, NV_EXC_NAT_IN, 0, NV_NO_STATS_SLOT, 0, svc->rdid, 1);
		return drop(ctx, NV_DROP_EXTERNAL_UNKNOWN);
	}
	__u32 vsid = fl->vsid;
	struct nv_subnet *sn = bpf_map_lookup_elem(&subnets, &vsid);
	struct nv_lookup_val *rec = find_record(vsid, NV_AF_INET, (const __be32 *)fl->ca);
	if (!(fl->flags & NV_NAT_OFFLOADED) || p.ip->ttl <= 1 || !sn || !rec)
		return to_userspace_in_domain(ctx, NV_EXC_NAT_IN, vsid, NV_NO_STATS_SLOT, 0, fl->rdid,
					      fl->flags & NV_NAT_SERVICE); /* a reply to the tenant: its own share */

	__be32 ca;
	__builtin_memcpy(&ca, fl->ca, 4);
	nat_set_addr(&p, &p.ip->daddr, ca);
	nat_set_inside_port(&p, fl->ca_port);
	ipv4_decrement_ttl(p.ip);
	mac_copy(p.eth->h_source, sn->gw_mac);
	mac_copy(p.eth->h_dest, rec->mac);
	nat_seen(fl, &p);
	count_gw(NV_GW_OFFLOADED_IN, frame_len(ctx));

	/* The flow as the VM sees it, for the NVGRE FlowID. */
	f.dst[0] = ca;
	f.dport = fl->ca_port;
	return xdp_deliver(ctx, &f, rec, vsid, sn->stats_slot);
}

#endif
