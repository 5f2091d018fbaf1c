/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* parsing.h - header cursor: one bounds check per header, each helper returns the header
 * or NULL when the frame is too short. */
#ifndef NV_PARSING_H
#define NV_PARSING_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/icmpv6.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "nvgre_abi.h"

/* bpf_fib_lookup's families (sys/socket.h is libc's, which a BPF build cannot use). */
#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif

#ifndef ETH_P_8021Q
#define ETH_P_8021Q 0x8100
#endif
#ifndef ETH_P_8021AD
#define ETH_P_8021AD 0x88A8
#endif

/* ARP constants (linux/if_arp.h pulls in libc headers, which a BPF build cannot use). */
#define ARPHRD_ETHER 1
#define ARPOP_REQUEST 1
#define ARPOP_REPLY 2

struct cursor {
	void *pos;
	void *end;
};

/* Returns a pointer to `len` bytes at the cursor and advances it, or NULL. */
#define CURSOR_TAKE(c, type)                                                   \
	({                                                                     \
		type *__h = (c)->pos;                                          \
		if ((void *)(__h + 1) > (c)->end)                              \
			__h = NULL;                                            \
		else                                                           \
			(c)->pos = (void *)(__h + 1);                          \
		__h;                                                           \
	})

struct vlan_tag {
	__be16 tci;
	__be16 proto;
};

struct gre_key_hdr {
	__be16 flags_version;
	__be16 protocol;
	__be32 key;
};

struct arp_eth_ipv4 {
	__be16 htype;
	__be16 ptype;
	__u8 hlen;
	__u8 plen;
	__be16 op;
	__u8 sha[ETH_ALEN];
	__u8 spa[4];
	__u8 tha[ETH_ALEN];
	__u8 tpa[4];
} __attribute__((packed));

struct nd_msg_hdr {
	__u8 type;
	__u8 code;
	__be16 checksum;
	__be32 flags; /* reserved in NS; R/S/O in NA */
	__u8 target[16];
};

struct nd_lladdr_opt {
	__u8 type;
	__u8 len; /* units of 8 bytes */
	__u8 addr[ETH_ALEN];
};

static __always_inline int is_ipv4_fragment(const struct iphdr *ip)
{
	return (ip->frag_off & bpf_htons(0x3fff)) != 0; /* MF or an offset */
}

static __always_inline int mac_equal(const __u8 *a, const __u8 *b)
{
	return ((a[0] ^ b[0]) | (a[1] ^ b[1]) | (a[2] ^ b[2]) | (a[3] ^ b[3]) |
		(a[4] ^ b[4]) | (a[5] ^ b[5])) == 0;
}

/* Compares `words` 32-bit words; BPF has no memcmp. */
static __always_inline int words_equal(const void *a, const void *b, int words)
{
	const __u32 *x = a, *y = b;
	__u32 diff = 0;
#pragma unroll
	for (int i = 0; i < words; i++)
		diff |= x[i] ^ y[i];
	return diff == 0;
}

static __always_inline void mac_copy(__u8 *dst, const __u8 *src)
{
	__builtin_memcpy(dst, src, ETH_ALEN);
}

static __always_inline int mac_is_broadcast(const __u8 *m)
{
	return (m[0] & m[1] & m[2] & m[3] & m[4] & m[5]) == 0xff;
}

static __always_inline int mac_is_multicast(const __u8 *m)
{
	return m[0] & 1;
}

/* The inner flow's addresses and ports, as parsed once for policy, hashing and checks. */
struct flow {
	__u8 family;
	__u8 proto;
	__u8 tos;     /* IPv4 TOS / IPv6 traffic class */
	__u8 ttl;     /* IPv4 TTL / IPv6 hop limit */
	__be32 src[4];
	__be32 dst[4];
	__be16 sport;
	__be16 dport;
};

static __always_inline void parse_ports(struct cursor *c, struct flow *f)
{
	if (f->proto == IPPROTO_TCP || f->proto == IPPROTO_UDP) {
		__be16 *ports = c->pos;
		if ((void *)(ports + 2) <= c->end) {
			f->sport = ports[0];
			f->dport = ports[1];
		}
	}
}

/* Parses an IPv4 or IPv6 header at the cursor into `f`; returns the header or NULL.
 * The cursor ends past the IP header (and options). */
static __always_inline struct iphdr *parse_ipv4(struct cursor *c, struct flow *f)
{
	struct iphdr *ip = CURSOR_TAKE(c, struct iphdr);
	if (!ip || ip->version != 4 || ip->ihl < 5)
		return NULL;
	__u32 opt_len = (ip->ihl - 5) * 4;
	if (c->pos + opt_len > c->end)
		return NULL;
	c->pos += opt_len;
	f->family = NV_AF_INET;
	f->proto = ip->protocol;
	f->tos = ip->tos;
	f->ttl = ip->ttl;
	f->src[0] = ip->saddr;
	f->dst[0] = ip->daddr;
	if (!is_ipv4_fragment(ip))
		parse_ports(c, f);
	return ip;
}

static __always_inline struct ipv6hdr *parse_ipv6(struct cursor *c, struct flow *f)
{
	struct ipv6hdr *ip6 = CURSOR_TAKE(c, struct ipv6hdr);
	if (!ip6 || ip6->version != 6)
		return NULL;
	f->family = NV_AF_INET6;
	f->proto = ip6->nexthdr;
	f->tos = (ip6->priority << 4) | (ip6->flow_lbl[0] >> 4);
	f->ttl = ip6->hop_limit;
	__builtin_memcpy(f->src, &ip6->saddr, 16);
	__builtin_memcpy(f->dst, &ip6->daddr, 16);
	parse_ports(c, f);
	return ip6;
}

#endif
