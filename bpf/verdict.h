/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* verdict.h - how a program ends: counters, the exception channel, and the optional trace
 * record. Every drop and every exception goes through here, so none is uncounted. */
#ifndef NV_VERDICT_H
#define NV_VERDICT_H

#include "maps.h"

/* Set by the loader of a tracing instance (tests, `nvgre trace`); a live data path keeps 0
 * and the verifier removes the trace code as dead. */
const volatile __u8 nv_trace_enabled = 0;

static __always_inline __u32 frame_len(const struct xdp_md *ctx)
{
	return ctx->data_end - ctx->data;
}

static __always_inline int finish(struct xdp_md *ctx, int action, __u16 kind, __u16 code,
				  __u32 egress_ifindex, __u32 vsid)
{
	if (!nv_trace_enabled)
		return action;
	if (bpf_xdp_adjust_meta(ctx, -(int)sizeof(struct nv_trace)))
		return action;
	void *data = (void *)(long)ctx->data;
	struct nv_trace *t = (void *)(long)ctx->data_meta;
	if ((void *)(t + 1) > data)
		return action;
	t->magic = NV_TRACE_MAGIC;
	t->kind = kind;
	t->code = code;
	t->egress_ifindex = egress_ifindex;
	t->vsid = vsid;
	return action;
}

static __always_inline void count_vsid(__u32 slot, enum nv_vsid_counter counter, __u32 bytes)
{
	struct nv_vsid_stats *s = bpf_map_lookup_elem(&vsid_stats, &slot);
	if (s && counter < NV_CNT_MAX) {
		s->packets[counter]++;
		s->bytes[counter] += bytes;
	}
}

static __always_inline void count_reason(void *map, __u32 reason, __u32 bytes)
{
	struct nv_reason_stats *s = bpf_map_lookup_elem(map, &reason);
	if (s) {
		s->packets++;
		s->bytes += bytes;
	}
}

static __always_inline void count_gw(enum nv_gw_counter counter, __u32 bytes)
{
	count_reason(&gw_stats, counter, bytes);
}

static __always_inline int drop(struct xdp_md *ctx, enum nv_drop_reason reason)
{
	count_reason(&drop_stats, reason, frame_len(ctx));
	return finish(ctx, XDP_DROP, NV_TRACE_DROP, reason, 0, 0);
}

static __always_inline int pass_to_host(struct xdp_md *ctx)
{
	return finish(ctx, XDP_PASS, NV_TRACE_PASS, 0, 0, 0);
}

static __always_inline int forward(struct xdp_md *ctx, __u32 ifindex, __u32 vsid)
{
	return finish(ctx, bpf_redirect(ifindex, 0), NV_TRACE_FORWARD, 0, ifindex, vsid);
}

static __always_inline int reply_in_place(struct xdp_md *ctx, __u32 vsid)
{
	return finish(ctx, XDP_TX, NV_TRACE_REPLY, 0, ctx->ingress_ifindex, vsid);
}

/* Counts one packet of a routing domain (domain_stats); the entry is made on first use. */
static __always_inline void count_domain(__u32 rdid, enum nv_domain_counter counter, __u32 bytes)
{
	struct nv_domain_counter_key k = { .rdid = rdid, .counter = counter };
	struct nv_reason_stats *s = bpf_map_lookup_elem(&domain_stats, &k);
	if (!s) {
		struct nv_reason_stats zero = {};
		bpf_map_update_elem(&domain_stats, &k, &zero, BPF_NOEXIST);
		s = bpf_map_lookup_elem(&domain_stats, &k);
	}
	if (s) {
		s->packets++;
		s->bytes += bytes;
	}
}

/* One share of the exception path on this CPU (GCRA): true when one more exception fits
 * bucket `share` (exc_buckets), which admits one every `interval` ns with bursts of `burst`
 * ns worth. Checked before the frame is copied, so one tenant's flood fills only its own
 * share of the ring and of the process that empties it. */
static __always_inline int exception_share_left(__u32 share, __u32 interval, __u32 burst)
{
	if (!interval)
		return 1;
	__u64 now = bpf_ktime_get_ns();
	__u64 *tat = bpf_map_lookup_elem(&exc_buckets, &share);
	if (!tat) {
		bpf_map_update_elem(&exc_buckets, &share, &now, BPF_NOEXIST);
		tat = bpf_map_lookup_elem(&exc_buckets, &share);
		if (!tat)
			return 1; /* not tracked (cannot happen with LRU): admit rather than starve */
	}
	__u64 t = *tat > now ? *tat : now;
	if (t - now > burst)
		return 0;
	*tat = t + interval;
	return 1;
}

/* The frame's shares: its VM port's (when it came from one), then its domain's. */
static __always_inline int exception_admitted(__u32 ifindex, __u32 rdid, int from_outside)
{
	__u32 zero = 0;
	struct nv_config *cfg = bpf_map_lookup_elem(&config, &zero);
	if (!cfg)
		return 1;
	if (cfg->exc_port_interval_ns && bpf_map_lookup_elem(&ports, &ifindex) &&
	    !exception_share_left(ifindex | NV_SHARE_PORT, cfg->exc_port_interval_ns, cfg->exc_port_burst_ns))
		return 0;
	return exception_share_left(from_outside ? rdid | NV_SHARE_FROM_OUTSIDE : rdid, cfg->exc_interval_ns, cfg->exc_burst_ns);
}

/* Copies the frame into the exception ring for userspace, then drops it here: from this
 * point userspace owns the frame. Over its routing domain's (`rdid`) share, or with the
 * ring full, the frame is a counted drop, never a silent one. What outsiders send to a
 * domain and the domain's answers on those flows (`from_outside`) have a share of their
 * own, so a flood at a tenant's service does not take the tenant's own egress either. */
static __always_inline int to_userspace_in_domain(struct xdp_md *ctx, enum nv_exception_reason reason,
						  __u32 vsid, __u32 stats_slot, __u32 mtu, __u32 rdid,
						  int from_outside)
{
	__u32 len = frame_len(ctx);
	__u32 ingress = ctx->ingress_ifindex;
	if (!exception_admitted(ingress, rdid, from_outside)) {
		count_domain(rdid, NV_DOM_EXC_THROTTLED, len);
		return drop(ctx, NV_DROP_EXCEPTION_THROTTLED);
	}
	struct nv_exception *e = bpf_ringbuf_reserve(&exceptions, sizeof(*e), 0);
	if (!e)
		return drop(ctx, NV_DROP_EXCEPTION_RING_FULL);

	__u64 cap = len < NV_EXC_SNAPLEN ? len : NV_EXC_SNAPLEN;
	e->hdr.reason = reason;
	e->hdr.ingress_ifindex = ingress;
	e->hdr.vsid = vsid;
	e->hdr.orig_len = len;
	e->hdr.mtu = mtu;
	/* Two separate checks, kept apart so the compiler cannot fuse them into one compare
	 * that the verifier cannot follow: it must see 1 <= cap <= NV_EXC_SNAPLEN. */
	asm volatile("" : "+r"(cap));
	if (cap > NV_EXC_SNAPLEN)
		cap = 0;
	asm volatile("" : "+r"(cap));
	if (cap < 1 || bpf_xdp_load_bytes(ctx, 0, e->data, cap) < 0)
		cap = 0;
	e->hdr.cap_len = cap;
	bpf_ringbuf_submit(e, 0);

	count_reason(&exc_stats, reason, len);
	count_vsid(stats_slot, NV_CNT_EXCEPTION, len);
	return finish(ctx, XDP_DROP, NV_TRACE_EXCEPTION, reason, 0, vsid);
}

/* The same for a frame of VSID `vsid`, in its subnet's routing domain (0: none known). */
static __always_inline int to_userspace(struct xdp_md *ctx, enum nv_exception_reason reason,
					__u32 vsid, __u32 stats_slot, __u32 mtu)
{
	struct nv_subnet *sn = bpf_map_lookup_elem(&subnets, &vsid);
	return to_userspace_in_domain(ctx, reason, vsid, stats_slot, mtu, sn ? sn->rdid : 0, 0);
}

#endif
