/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* maps.h - every map of the data path. Sizes here are defaults; the loader changes them
 * (bpf_map__set_max_entries) before load. Userspace writes policy maps; the programs only
 * read them and only write counters. */
#ifndef NV_MAPS_H
#define NV_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "nvgre_abi.h"

/* The lookup records' table (nvgre_abi.h, nv_record_slot): the control plane creates each
 * table (sized to the records, growing up to the limit `nvgre up --max-lookups` sets) and
 * swaps it into slot 0 of `lookups`; this is the template every table must match. */
struct nv_record_table {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE | BPF_F_INNER_MAP);
	__uint(max_entries, 1 + NV_RECORD_MIN_SLOTS);
	/* sizes rather than types: the control plane creates the tables without BTF */
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(struct nv_record_slot));
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);
	__type(key, __u32);
	__array(values, struct nv_record_table);
} lookups SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, NV_DEFAULT_MAX_SUBNETS);
	__type(key, __u32);
	__type(value, struct nv_subnet);
} subnets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, NV_DEFAULT_MAX_PORTS);
	__type(key, __u32);
	__type(value, struct nv_port);
} ports SEC(".maps");

/* Only VSIDs with a port on this host have a list (at most one per port). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, NV_DEFAULT_MAX_PORTS);
	__type(key, __u32);
	__type(value, struct nv_flood_list);
} flood_lists SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, NV_DEFAULT_MAX_PORT_CAS);
	__type(key, struct nv_port_ca_key);
	__type(value, __u32);
} port_cas SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* required for LPM tries */
	__uint(max_entries, NV_DEFAULT_MAX_ROUTES);
	__type(key, struct nv_route_key);
	__type(value, struct nv_route_val);
} routes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, NV_DEFAULT_MAX_LOCAL_PAS);
	__type(key, struct nv_pa_key);
	__type(value, __u32);
} local_pas SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
#ifdef NV_TEST_LAYOUT_CHANGE
	/* make's nvgre-abi99.bpf.o: a build whose map layout differs, which an upgrade refuses */
	__type(value, struct { struct nv_config c; __u64 added; });
#else
	__type(value, struct nv_config);
#endif
} config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, NV_DEFAULT_MAX_NEXTHOPS);
	__type(key, struct nv_pa_key);
	__type(value, struct nv_nexthop);
} nexthops SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} nexthop_lease SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NV_DEFAULT_MAX_SUBNETS);
	__type(key, __u32);
	__type(value, struct nv_vsid_stats);
} vsid_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NV_DROP_MAX);
	__type(key, __u32);
	__type(value, struct nv_reason_stats);
} drop_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NV_EXC_MAX);
	__type(key, __u32);
	__type(value, struct nv_reason_stats);
} exc_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, NV_DEFAULT_EXC_RING_BYTES);
} exceptions SEC(".maps");

/* Each routing domain's and VM port's share of the exception path (nvgre_abi.h). LRU: a
 * bucket unused for long may go, and comes back full, rather than a full table leaving a
 * new domain no share at all. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_PERCPU_HASH);
	__uint(max_entries, NV_DEFAULT_MAX_DOMAINS);
	__type(key, __u32);
	__type(value, __u64);
} exc_buckets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, NV_DEFAULT_MAX_DOMAINS);
	__type(key, struct nv_domain_counter_key);
	__type(value, struct nv_reason_stats);
} domain_stats SEC(".maps");

/* ---- Gateway maps (empty on a host that is not a gateway) ---- */

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, NV_DEFAULT_MAX_INFRA_PREFIXES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct nv_infra_key);
	__type(value, __u32);
} infra SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, NV_DEFAULT_MAX_SUBNETS);
	__type(key, __u32);
	__type(value, __u32); /* enum nv_gw_mode */
} gw_domains SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, NV_DEFAULT_MAX_GW_PREFIXES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct nv_gw_prefix_key);
	__type(value, __u32);
} gw_prefixes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, NV_DEFAULT_MAX_GW_PREFIXES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct nv_gw_routed_key);
	__type(value, struct nv_gw_routed);
} gw_routed SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, NV_DEFAULT_MAX_EXT_ADDRS);
	__type(key, struct nv_ext_addr_key);
	__type(value, __u32);
} ext_addrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, NV_DEFAULT_MAX_SERVICES);
	__type(key, struct nv_service_key);
	__type(value, struct nv_service);
} services SEC(".maps");

/* Written by the gateway process only; XDP updates the counters and flags of an entry. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, NV_DEFAULT_MAX_NAT_FLOWS);
	__type(key, struct nv_nat_out_key);
	__type(value, struct nv_nat_flow);
} nat_out SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, NV_DEFAULT_MAX_NAT_FLOWS);
	__type(key, struct nv_nat_in_key);
	__type(value, struct nv_nat_flow);
} nat_in SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NV_GW_MAX);
	__type(key, __u32);
	__type(value, struct nv_reason_stats);
} gw_stats SEC(".maps");

#endif
