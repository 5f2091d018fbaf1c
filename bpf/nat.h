/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* nat.h - NAT44 on the gateway: find the ports of a TCP, UDP or ICMP echo packet and
 * rewrite addresses and ports with their checksums updated in place (RFC 1624). */
#ifndef NV_NAT_H
#define NV_NAT_H

#include <linux/tcp.h>
#include <linux/udp.h>
#include "checksum.h"
#include "policy.h"
#include "verdict.h"

/* linux/icmp.h pulls in libc headers, which a BPF build cannot use. */
#define ICMP_ECHOREPLY 0
#define ICMP_DEST_UNREACH 3
#define ICMP_ECHO 8
#define ICMP_TIME_EXCEEDED 11
#define ICMP_PARAMETERPROB 12

struct icmp_echo_hdr {
	__u8 type;
	__u8 code;
	__sum16 checksum;
	__be16 id;
	__be16 sequence;
};

#define NV_TCP_FIN 0x01
#define NV_TCP_RST 0x04
/* The byte of TCP flags (CWR .. FIN): the one before the window. */
#define NV_TCP_FLAGS_OFFSET (offsetof(struct tcphdr, window) - 1)

/* An IPv4 packet right after the Ethernet header, as NAT sees it. `inside` is the port on
 * the tenant's side of the gateway (the source port going out, the destination port coming
 * in, or the ICMP echo identifier either way); `outside` the remote host's (NULL for ICMP). */
struct nat_packet {
	struct ethhdr *eth;
	struct iphdr *ip;
	__be16 *inside;
	__be16 *outside;
	__sum16 *l4_check; /* NULL: a UDP datagram without checksum */
	__u8 pseudo;       /* the L4 checksum covers the addresses (TCP, UDP) */
	__u8 is_udp;
	__u8 tcp_flags;
};

/* Returns 0, or -1 when NAT has nothing to say about the frame (not IPv4, a fragment, a
 * protocol other than TCP, UDP, ICMP echo request going out or echo reply coming in). */
static __always_inline int nat_parse(struct xdp_md *ctx, struct nat_packet *p, int outbound)
{
	struct cursor c = { .pos = (void *)(long)ctx->data, .end = (void *)(long)ctx->data_end };
	struct flow f = {};
	p->eth = CURSOR_TAKE(&c, struct ethhdr);
	if (!p->eth || p->eth->h_proto != bpf_htons(ETH_P_IP))
		return -1;
	p->ip = parse_ipv4(&c, &f);
	if (!p->ip || is_ipv4_fragment(p->ip))
		return -1;
	p->pseudo = 1;
	if (f.proto == IPPROTO_TCP) {
		struct tcphdr *t = CURSOR_TAKE(&c, struct tcphdr);
		if (!t)
			return -1;
		p->inside = outbound ? &t->source : &t->dest;
		p->outside = outbound ? &t->dest : &t->source;
		p->l4_check = &t->check;
		p->tcp_flags = ((__u8 *)t)[NV_TCP_FLAGS_OFFSET];
	} else if (f.proto == IPPROTO_UDP) {
		struct udphdr *u = CURSOR_TAKE(&c, struct udphdr);
		if (!u)
			return -1;
		p->inside = outbound ? &u->source : &u->dest;
		p->outside = outbound ? &u->dest : &u->source;
		p->l4_check = u->check ? &u->check : NULL;
		p->is_udp = 1;
	} else if (f.proto == IPPROTO_ICMP) {
		struct icmp_echo_hdr *i = CURSOR_TAKE(&c, struct icmp_echo_hdr);
		if (!i || i->type != (outbound ? ICMP_ECHO : ICMP_ECHOREPLY))
			return -1;
		p->inside = &i->id;
		p->l4_check = &i->checksum;
		p->pseudo = 0;
	} else {
		return -1;
	}
	return 0;
}

static __always_inline void nat_fix_udp_zero(struct nat_packet *p)
{
	if (p->is_udp && p->l4_check && *p->l4_check == 0)
		*p->l4_check = 0xffff; /* 0 means "no checksum" in UDP */
}

/* Rewrites the source (outbound) or destination (inbound) address. */
static __always_inline void nat_set_addr(struct nat_packet *p, __be32 *field, __be32 new)
{
	csum_replace4(&p->ip->check, *field, new);
	if (p->pseudo && p->l4_check) {
		csum_replace4(p->l4_check, *field, new);
		nat_fix_udp_zero(p);
	}
	*field = new;
}

static __always_inline void nat_set_inside_port(struct nat_packet *p, __be16 new)
{
	if (p->l4_check) {
		csum_replace2(p->l4_check, *p->inside, new);
		nat_fix_udp_zero(p);
	}
	*p->inside = new;
}

/* What XDP records in a flow entry for each packet it translates. */
static __always_inline void nat_seen(struct nv_nat_flow *fl, const struct nat_packet *p)
{
	__u64 now = bpf_ktime_get_ns();
	if (now - fl->last_seen_ns > NV_NAT_SEEN_GRANULARITY_NS)
		fl->last_seen_ns = now;
	if ((p->tcp_flags & NV_TCP_FIN) && !(fl->flags & NV_NAT_FIN))
		fl->flags |= NV_NAT_FIN;
	if ((p->tcp_flags & NV_TCP_RST) && !(fl->flags & NV_NAT_RST))
		fl->flags |= NV_NAT_RST;
}

#endif
