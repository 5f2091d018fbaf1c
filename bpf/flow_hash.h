/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* flow_hash.h - the NVGRE FlowID (RFC 7637 section 3.1): entropy from the inner flow.
 *
 * h = XOR of every 32-bit word (big-endian value) of source and destination address,
 *     XOR ((sport XOR dport) << 16) XOR protocol, then the murmur3 32-bit finalizer.
 * FlowID = XOR of the four bytes of h. IPv6 outer flow label = h & 0xfffff.
 * The hash is symmetric, so both directions of a flow carry the same FlowID. The Swift
 * wire module implements the same definition independently (FlowHash.swift). */
#ifndef NV_FLOW_HASH_H
#define NV_FLOW_HASH_H

#include "parsing.h"

static __always_inline __u32 fmix32(__u32 h)
{
	h ^= h >> 16;
	h *= 0x85ebca6b;
	h ^= h >> 13;
	h *= 0xc2b2ae35;
	h ^= h >> 16;
	return h;
}

static __always_inline __u32 flow_hash(const struct flow *f)
{
	__u32 h = 0;
	int words = f->family == NV_AF_INET6 ? 4 : 1;
#pragma unroll
	for (int i = 0; i < 4; i++) {
		if (i < words)
			h ^= bpf_ntohl(f->src[i]) ^ bpf_ntohl(f->dst[i]);
	}
	h ^= (__u32)(bpf_ntohs(f->sport) ^ bpf_ntohs(f->dport)) << 16;
	h ^= f->proto;
	return fmix32(h);
}

static __always_inline __u8 flow_id(__u32 h)
{
	return (__u8)(h ^ (h >> 8) ^ (h >> 16) ^ (h >> 24));
}

#endif
