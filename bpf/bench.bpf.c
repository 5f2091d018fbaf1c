/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* bench.bpf.c - the live-traffic instrument of `make bench`, a separate object so that
 * instances never carry it:
 *  - nv_bench_gen runs under BPF_PROG_TEST_RUN with BPF_F_TEST_XDP_LIVE_FRAMES; its XDP_TX
 *    becomes a transmit out of the test run's ingress interface, so every repeat sends the
 *    frame into the path under test. With gen_spread set it first rewrites one 32-bit
 *    word of the frame (a destination address) to a random value in
 *    [gen_base, gen_base + gen_spread), keeping the L4 checksum valid. With
 *    gen_template_words set it first writes the frame's first words back from a copy:
 *    live frames come from a page pool whose pages keep what the path under test wrote
 *    into them (a NAT rewrite would otherwise be sent again, rewritten);
 *  - nv_bench_sink, at the end of the path, counts what arrives (per CPU) and drops it;
 *  - nv_bench_redirect_tc and nv_bench_redirect_xdp only redirect each frame to the
 *    interface redirect_to names for its ingress: the path's hops with no program work,
 *    the baseline of the encap (VM port's tc) and decap (uplink's XDP) paths. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "checksum.h"

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} sink_count SEC(".maps");

/* Set from userspace between runs (the skeleton's bss). */
__u32 gen_spread;      /* 0: send the frame unchanged */
__u32 gen_base;        /* first value of the word, host order */
__u32 gen_word_offset; /* byte offset of the big-endian word in the frame */
__u32 gen_csum_offset; /* byte offset of the checksum covering it, 0 for none */

#define GEN_MAX_OFFSET 128
#define GEN_TEMPLATE_WORDS 16 /* 128 bytes */

__u64 gen_template[GEN_TEMPLATE_WORDS];
__u32 gen_template_words; /* 0: no restore */

static __always_inline int restore_frame(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u32 n = gen_template_words;
	for (__u32 i = 0; i < GEN_TEMPLATE_WORDS; i++) {
		if (i >= n)
			break;
		__u64 *w = data + i * 8;
		if ((void *)(w + 1) > end)
			return -1;
		*w = gen_template[i];
	}
	return 0;
}

SEC("xdp")
int nv_bench_gen(struct xdp_md *ctx)
{
	if (gen_template_words && restore_frame(ctx) < 0)
		return XDP_ABORTED;
	if (!gen_spread)
		return XDP_TX;
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u32 off = gen_word_offset, coff = gen_csum_offset;
	if (off > GEN_MAX_OFFSET || coff > GEN_MAX_OFFSET)
		return XDP_ABORTED;
	void *word = data + off;
	if (word + 4 > end)
		return XDP_ABORTED;
	__be32 old, new = bpf_htonl(gen_base + bpf_get_prandom_u32() % gen_spread);
	__builtin_memcpy(&old, word, 4);
	__builtin_memcpy(word, &new, 4);
	if (coff) {
		__sum16 *sum = data + coff;
		if ((void *)(sum + 1) > end)
			return XDP_ABORTED;
		csum_replace2(sum, (__be16)old, (__be16)new);
		csum_replace2(sum, (__be16)(old >> 16), (__be16)(new >> 16));
	}
	return XDP_TX;
}

/* ingress ifindex -> egress ifindex (0: drop), for the bare redirect programs. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u32);
} redirect_to SEC(".maps");

SEC("tc")
int nv_bench_redirect_tc(struct __sk_buff *skb)
{
	__u32 in = skb->ifindex;
	__u32 *out = bpf_map_lookup_elem(&redirect_to, &in);
	return out && *out ? bpf_redirect(*out, 0) : 2 /* TC_ACT_SHOT */;
}

SEC("xdp")
int nv_bench_redirect_xdp(struct xdp_md *ctx)
{
	__u32 in = ctx->ingress_ifindex;
	__u32 *out = bpf_map_lookup_elem(&redirect_to, &in);
	return out && *out ? bpf_redirect(*out, 0) : XDP_DROP;
}

SEC("xdp")
int nv_bench_sink(struct xdp_md *ctx)
{
	__u32 zero = 0;
	__u64 *n = bpf_map_lookup_elem(&sink_count, &zero);
	if (n)
		*n += 1;
	return XDP_DROP;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
