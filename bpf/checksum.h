/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* checksum.h - Internet checksum helpers (RFC 1071, incremental update per RFC 1624). */
#ifndef NV_CHECKSUM_H
#define NV_CHECKSUM_H

#include <linux/types.h>
#include <linux/ip.h>
#include <bpf/bpf_endian.h>

static __always_inline __u16 csum_fold(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

/* Sums `words` 16-bit words starting at p (p must be 2-byte aligned, bounds already
 * checked by the caller). */
static __always_inline __u32 csum_add_words(__u32 sum, const void *p, int words)
{
	const __u16 *w = p;
#pragma unroll
	for (int i = 0; i < words; i++)
		sum += w[i];
	return sum;
}

/* Replaces one 16-bit word covered by the checksum at *sum (all in network order). */
static __always_inline void csum_replace2(__sum16 *sum, __be16 old, __be16 new)
{
	__u32 s = (__u16)~*sum;
	s += (__u16)~old;
	s += new;
	*sum = csum_fold(s);
}

/* Replaces one 32-bit field (an IPv4 address) covered by the checksum at *sum. */
static __always_inline void csum_replace4(__sum16 *sum, __be32 old, __be32 new)
{
	__u32 s = (__u16)~*sum;
	s += (__u16)~(old & 0xffff);
	s += (__u16)~(old >> 16);
	s += new & 0xffff;
	s += new >> 16;
	*sum = csum_fold(s);
}

/* The one IPv4 TTL decrement, header checksum updated in place. TTL and protocol share one
 * checksum word; the word is built from the two bytes rather than read through a cast,
 * which the compiler may reorder around the byte store. The caller checked the bounds. */
static __always_inline void ipv4_decrement_ttl(struct iphdr *ip)
{
	__u8 ttl = ip->ttl, proto = ip->protocol;
	ip->ttl = ttl - 1;
	csum_replace2(&ip->check, bpf_htons((__u16)ttl << 8 | proto), bpf_htons((__u16)(ttl - 1) << 8 | proto));
}

#endif
