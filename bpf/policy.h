/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* policy.h - typed lookups into the policy maps. Keys are built zeroed so that padding and
 * the unused 12 bytes of an IPv4 address always match what userspace wrote. */
#ifndef NV_POLICY_H
#define NV_POLICY_H

#include "maps.h"
#include "parsing.h"

static __always_inline void addr_copy(__u8 *dst16, const __be32 *src, __u8 family)
{
	__builtin_memcpy(dst16, src, 4);
	if (family == NV_AF_INET6)
		__builtin_memcpy(dst16 + 4, src + 1, 12);
}

static __always_inline struct nv_lookup_val *find_record(__u32 vsid, __u8 family,
							  const __be32 *ca)
{
	struct nv_lookup_key k = {};
	k.vsid = vsid;
	k.family = family;
	addr_copy(k.ca, ca, family);
	__u32 zero = 0;
	void *table = bpf_map_lookup_elem(&lookups, &zero);
	if (!table)
		return NULL;
	struct nv_record_slot *head = bpf_map_lookup_elem(table, &zero);
	if (!head)
		return NULL;
	__u32 mask = head->mask;
	__u32 home = nv_record_hash(&k);
	const __u64 *want = (const __u64 *)&k;
	for (__u32 i = 0; i < NV_RECORD_MAX_PROBE; i++) {
		__u32 index = 1 + ((home + i) & mask);
		struct nv_record_slot *slot = bpf_map_lookup_elem(table, &index);
		if (!slot)
			return NULL;
		__u32 state = *(volatile __u32 *)&slot->state;
		/* the key and value are read only after the state that publishes them */
		asm volatile("" ::: "memory");
		if (state == NV_SLOT_EMPTY)
			return NULL;
		const __u64 *have = (const __u64 *)&slot->key;
		if (state == NV_SLOT_USED && have[0] == want[0] && have[1] == want[1] && have[2] == want[2])
			return &slot->val;
	}
	return NULL;
}

/* Whether the VM on port `ifindex` (entry `port`) may send from `ca`: from the entry when
 * the compiler copied the port's addresses into it, else from port_cas. */
static __always_inline int port_may_use(const struct nv_port *port, __u32 ifindex, __u8 family,
					const __be32 *ca)
{
	if (port->flags & NV_PORT_CAS_INLINE) {
		if (family == NV_AF_INET)
			return (port->flags & NV_PORT_HAS_CA4) && words_equal(port->ca4, ca, 1);
		return (port->flags & NV_PORT_HAS_CA6) && words_equal(port->ca6, ca, 4);
	}
	struct nv_port_ca_key k = {};
	k.ifindex = ifindex;
	k.family = family;
	addr_copy(k.ca, ca, family);
	return bpf_map_lookup_elem(&port_cas, &k) != NULL;
}

static __always_inline struct nv_route_val *find_route(__u32 rdid, __u8 family,
							const __be32 *dst)
{
	struct nv_route_key k = {};
	k.prefixlen = NV_ROUTE_KEY_PREFIX_BITS + (family == NV_AF_INET6 ? 128 : 32);
	k.rdid_be = bpf_htonl(rdid);
	k.family = family;
	addr_copy(k.addr, dst, family);
	return bpf_map_lookup_elem(&routes, &k);
}

/* The lookup record that vouches for source CA `ca` in routing domain `rdid`: a frame the
 * distributed router sent across subnets travels in the destination's VSID while its source
 * lives in another subnet of the same tenant; a frame from outside the domain (through a
 * gateway) comes from the next hop of the customer route that covers its source. NULL when
 * nothing in the domain covers it. */
static __always_inline struct nv_lookup_val *find_record_in_domain(__u32 rdid, __u8 family,
								    const __be32 *ca)
{
	struct nv_route_val *r = find_route(rdid, family, ca);
	if (!r)
		return NULL;
	if (r->kind == NV_ROUTE_CUSTOMER)
		return find_record(r->vsid, r->nh_family, (const __be32 *)r->nh);
	return find_record(r->vsid, family, ca);
}

static __always_inline struct nv_subnet *subnet_of(__u32 vsid)
{
	return bpf_map_lookup_elem(&subnets, &vsid);
}

static __always_inline struct nv_config *host_config(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&config, &zero);
}

/* Whether `addr` is one of this host's PAs. The host's source PA of the family (config, an
 * array lookup the verifier inlines) is one, and the usual outer destination: only other
 * addresses cost a hash lookup in local_pas. */
static __always_inline int is_local_pa(__u8 family, const __be32 *addr)
{
	struct nv_config *cfg = host_config();
	if (cfg) {
		if (family == NV_AF_INET && (cfg->flags & NV_CFG_HAS_PA4) && words_equal(cfg->pa4, addr, 1))
			return 1;
		if (family == NV_AF_INET6 && (cfg->flags & NV_CFG_HAS_PA6) && words_equal(cfg->pa6, addr, 4))
			return 1;
	}
	struct nv_pa_key k = {};
	k.family = family;
	addr_copy(k.addr, addr, family);
	return bpf_map_lookup_elem(&local_pas, &k) != NULL;
}

/* The agent's next hop toward a record's PA (nexthops), NULL when there is none or the
 * agent's lease on them has run out. */
static __always_inline struct nv_nexthop *kept_nexthop(const struct nv_lookup_val *rec)
{
	__u32 zero = 0;
	__u64 *lease = bpf_map_lookup_elem(&nexthop_lease, &zero);
	if (!lease || bpf_ktime_get_coarse_ns() >= *lease)
		return NULL;
	struct nv_pa_key k = {};
	k.family = rec->pa_family;
	__builtin_memcpy(k.addr, rec->pa, 16);
	return bpf_map_lookup_elem(&nexthops, &k);
}

/* Whether the record's PA is the outer source of a frame from the fabric (anti-spoofing). */
static __always_inline int same_pa(const struct nv_lookup_val *rec, const struct flow *outer)
{
	if (rec->pa_family != outer->family)
		return 0;
	if (outer->family == NV_AF_INET)
		return words_equal(rec->pa, outer->src, 1);
	return words_equal(rec->pa, outer->src, 4);
}

#endif
