/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* bench.bpf.c - the live-traffic instrument of `make bench`, a separate object so that
 * instances never carry it:
 *  - nv_bench_gen runs under BPF_PROG_TEST_RUN with BPF_F_TEST_XDP_LIVE_FRAMES; its XDP_TX
 *    becomes a transmit out of the test run's ingress interface, so every repeat sends the
 *    frame into the path under test;
 *  - nv_bench_sink, at the end of the path, counts what arrives (per CPU) and drops it. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} sink_count SEC(".maps");

SEC("xdp")
int nv_bench_gen(struct xdp_md *ctx)
{
	return XDP_TX;
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
