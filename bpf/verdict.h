/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* verdict.h - how a program ends: counters, the exception channel, and the optional trace
 * record. Every drop and every exception goes through here, so none is uncounted.
 *
 * Two hooks end here. The uplink and a gateway's external interface run XDP; VM ports run
 * tc (sched_cls), where the skb keeps the VM's checksum and segmentation offload. Each end
 * exists once per hook (xdp_drop, tc_drop, ...), and `drop(ctx, ...)` picks by the type of
 * `ctx` at compile time, so path code reads the same in both. */
#ifndef NV_VERDICT_H
#define NV_VERDICT_H

#include <linux/pkt_cls.h>
#include "maps.h"

/* Set by the loader of a tracing instance (tests, `nvgre trace`); a live data path keeps 0
 * and the verifier removes the trace code as dead. */
const volatile __u8 nv_trace_enabled = 0;

#define NV_BY_HOOK(ctx, xdp_fn, tc_fn) _Generic((ctx), struct __sk_buff *: tc_fn, struct xdp_md *: xdp_fn)

static __always_inline __u32 xdp_frame_len(const struct xdp_md *ctx)
{
	return ctx->data_end - ctx->data;
}

/* All of the frame, also the part in fragments and, for a GSO frame, every segment. */
static __always_inline __u32 tc_frame_len(const struct __sk_buff *skb)
{
	return skb->len;
}

#define frame_len(ctx) NV_BY_HOOK(ctx, xdp_frame_len, tc_frame_len)(ctx)

/* XDP: the trace record goes into the frame's metadata, which test-run returns. */
static __always_inline int xdp_finish(struct xdp_md *ctx, int action, __u16 kind, __u16 code,
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

/* tc: the trace record goes into skb->cb (same layout as struct nv_trace), which test-run
 * returns in its context. */
static __always_inline int tc_finish(struct __sk_buff *skb, int action, __u16 kind, __u16 code,
				     __u32 egress_ifindex, __u32 vsid)
{
	if (!nv_trace_enabled)
		return action;
	skb->cb[0] = NV_TRACE_MAGIC;
	skb->cb[1] = (__u32)kind | (__u32)code << 16;
	skb->cb[2] = egress_ifindex;
	skb->cb[3] = vsid;
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

/* `n` packets of `bytes` each at once (the copies of a replicated frame). */
static __always_inline void count_vsid_n(__u32 slot, enum nv_vsid_counter counter, __u32 n, __u32 bytes)
{
	struct nv_vsid_stats *s = bpf_map_lookup_elem(&vsid_stats, &slot);
	if (s && counter < NV_CNT_MAX) { /* n is not tested: a verifier that tracks it would split */
		s->packets[counter] += n;
		s->bytes[counter] += (__u64)n * bytes;
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

static __always_inline int xdp_drop(struct xdp_md *ctx, enum nv_drop_reason reason)
{
	count_reason(&drop_stats, reason, xdp_frame_len(ctx));
	return xdp_finish(ctx, XDP_DROP, NV_TRACE_DROP, reason, 0, 0);
}

static __always_inline int tc_drop(struct __sk_buff *skb, enum nv_drop_reason reason)
{
	count_reason(&drop_stats, reason, tc_frame_len(skb));
	return tc_finish(skb, TC_ACT_SHOT, NV_TRACE_DROP, reason, 0, 0);
}

#define drop(ctx, reason) NV_BY_HOOK(ctx, xdp_drop, tc_drop)(ctx, reason)

static __always_inline int pass_to_host(struct xdp_md *ctx)
{
	return xdp_finish(ctx, XDP_PASS, NV_TRACE_PASS, 0, 0, 0);
}

static __always_inline int xdp_forward(struct xdp_md *ctx, __u32 ifindex, __u32 vsid)
{
	return xdp_finish(ctx, bpf_redirect(ifindex, 0), NV_TRACE_FORWARD, 0, ifindex, vsid);
}

/* Out of interface `ifindex` (its egress, as a transmit). */
static __always_inline int tc_forward(struct __sk_buff *skb, __u32 ifindex, __u32 vsid)
{
	return tc_finish(skb, bpf_redirect(ifindex, 0), NV_TRACE_FORWARD, 0, ifindex, vsid);
}

#define forward(ctx, ifindex, vsid) NV_BY_HOOK(ctx, xdp_forward, tc_forward)(ctx, ifindex, vsid)

/* A tc program answers by sending the rewritten frame back out of the port it came in on. */
static __always_inline int tc_reply(struct __sk_buff *skb, __u32 vsid)
{
	return tc_finish(skb, bpf_redirect(skb->ifindex, 0), NV_TRACE_REPLY, 0, skb->ifindex, vsid);
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

/* The part of handing a frame to userspace that both hooks share: the frame's shares, then
 * a ring slot with its header filled. NULL (and *why) when the frame is to be dropped. */
static __always_inline struct nv_exception *exception_slot(enum nv_exception_reason reason, __u32 ingress,
							   __u32 vsid, __u32 len, __u32 mtu, __u32 rdid,
							   int from_outside, enum nv_drop_reason *why)
{
	if (!exception_admitted(ingress, rdid, from_outside)) {
		count_domain(rdid, NV_DOM_EXC_THROTTLED, len);
		*why = NV_DROP_EXCEPTION_THROTTLED;
		return NULL;
	}
	struct nv_exception *e = bpf_ringbuf_reserve(&exceptions, sizeof(*e), 0);
	if (!e) {
		*why = NV_DROP_EXCEPTION_RING_FULL;
		return NULL;
	}
	e->hdr.reason = reason;
	e->hdr.ingress_ifindex = ingress;
	e->hdr.vsid = vsid;
	e->hdr.orig_len = len;
	e->hdr.mtu = mtu;
	return e;
}

/* How many bytes of a `len`-byte frame the slot holds. Two separate checks, kept apart so
 * the compiler cannot fuse them into one compare that the verifier cannot follow: it must
 * see 1 <= cap <= NV_EXC_SNAPLEN before the copy. */
#define EXCEPTION_COPY(load_bytes, ctx, e, len)                                               \
	({                                                                                    \
		__u64 __cap = (len) < NV_EXC_SNAPLEN ? (len) : NV_EXC_SNAPLEN;               \
		asm volatile("" : "+r"(__cap));                                               \
		if (__cap > NV_EXC_SNAPLEN)                                                   \
			__cap = 0;                                                            \
		asm volatile("" : "+r"(__cap));                                               \
		if (__cap < 1 || load_bytes(ctx, 0, (e)->data, __cap) < 0)                    \
			__cap = 0;                                                            \
		(e)->hdr.cap_len = __cap;                                                     \
	})

static __always_inline void exception_submit(struct nv_exception *e, enum nv_exception_reason reason,
					     __u32 stats_slot, __u32 len)
{
	bpf_ringbuf_submit(e, 0);
	count_reason(&exc_stats, reason, len);
	count_vsid(stats_slot, NV_CNT_EXCEPTION, len);
}

/* Copies the frame into the exception ring for userspace, then drops it here: from this
 * point userspace owns the frame. Over its routing domain's (`rdid`) share, or with the
 * ring full, the frame is a counted drop, never a silent one. What outsiders send to a
 * domain and the domain's answers on those flows (`from_outside`) have a share of their
 * own, so a flood at a tenant's service does not take the tenant's own egress either. */
static __always_inline int xdp_to_userspace_in_domain(struct xdp_md *ctx, enum nv_exception_reason reason,
						      __u32 vsid, __u32 stats_slot, __u32 mtu, __u32 rdid,
						      int from_outside)
{
	__u32 len = xdp_frame_len(ctx);
	enum nv_drop_reason why;
	struct nv_exception *e =
		exception_slot(reason, ctx->ingress_ifindex, vsid, len, mtu, rdid, from_outside, &why);
	if (!e)
		return xdp_drop(ctx, why);
	EXCEPTION_COPY(bpf_xdp_load_bytes, ctx, e, len);
	exception_submit(e, reason, stats_slot, len);
	return xdp_finish(ctx, XDP_DROP, NV_TRACE_EXCEPTION, reason, 0, vsid);
}

/* The same from a VM port. A GSO frame is copied up to the snap length as one frame. */
static __always_inline int tc_to_userspace_in_domain(struct __sk_buff *skb, enum nv_exception_reason reason,
						     __u32 vsid, __u32 stats_slot, __u32 mtu, __u32 rdid,
						     int from_outside)
{
	__u32 len = tc_frame_len(skb);
	enum nv_drop_reason why;
	struct nv_exception *e = exception_slot(reason, skb->ifindex, vsid, len, mtu, rdid, from_outside, &why);
	if (!e)
		return tc_drop(skb, why);
	EXCEPTION_COPY(bpf_skb_load_bytes, skb, e, len);
	exception_submit(e, reason, stats_slot, len);
	return tc_finish(skb, TC_ACT_SHOT, NV_TRACE_EXCEPTION, reason, 0, vsid);
}

#define to_userspace_in_domain(ctx, ...) \
	NV_BY_HOOK(ctx, xdp_to_userspace_in_domain, tc_to_userspace_in_domain)(ctx, __VA_ARGS__)

/* The same for a frame of VSID `vsid`, in its subnet's routing domain (0: none known). */
static __always_inline __u32 domain_of(__u32 vsid)
{
	struct nv_subnet *sn = bpf_map_lookup_elem(&subnets, &vsid);
	return sn ? sn->rdid : 0;
}

#define to_userspace(ctx, reason, vsid, stats_slot, mtu) \
	to_userspace_in_domain(ctx, reason, vsid, stats_slot, mtu, domain_of(vsid), 0)

#endif
