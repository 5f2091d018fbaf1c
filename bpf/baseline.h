/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* baseline.h - the bare programs that measurements compare against, and the program that
 * VM-side veth ends need so that frames redirected into a veth are received (a veth drops
 * XDP frames whose peer has no XDP program). */
#ifndef NV_BASELINE_H
#define NV_BASELINE_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int nv_bare_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

/* The same for the tc hook that VM ports run. */
SEC("tc")
int nv_bare_tc_pass(struct __sk_buff *skb)
{
	return TC_ACT_OK;
}

/* Reflects the frame back out of the interface it came in on, MACs swapped. */
SEC("xdp")
int nv_bare_tx(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > (void *)(long)ctx->data_end)
		return XDP_DROP;
	__u8 tmp[ETH_ALEN];
	__builtin_memcpy(tmp, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, tmp, ETH_ALEN);
	return XDP_TX;
}

#endif
