/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* from_vm.h - the tc program attached to the host end of every VM port. */
#ifndef NV_FROM_VM_H
#define NV_FROM_VM_H

#include "forward.h"
#include "neighbor_reply.h"

/* Headers the program reads and may rewrite (Ethernet, one tag, IPv6, the longest TCP
 * header) are pulled into the skb's linear part before anything is read. */
#define NV_VM_PULL_LEN 128

/* Removes one 802.1Q/802.1ad tag: customer frames enter the overlay untagged (RFC 7637).
 * The kernel has usually moved the VM's tag into skb->vlan_tci already (it still is in the
 * frame under test-run). Returns -1 when the frame is malformed, NV_DROP_DOUBLE_VLAN for
 * stacked tags, else 0. Invalidates packet pointers. */
static __always_inline int strip_vlan(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		return -1;
	int tag_in_frame = eth->h_proto == bpf_htons(ETH_P_8021Q) || eth->h_proto == bpf_htons(ETH_P_8021AD);
	if (!skb->vlan_present && !tag_in_frame)
		return 0;
	if (skb->vlan_present && tag_in_frame)
		return NV_DROP_DOUBLE_VLAN;
	if (tag_in_frame) {
		struct vlan_tag *tag = (void *)(eth + 1);
		if ((void *)(tag + 1) > end)
			return -1;
		if (tag->proto == bpf_htons(ETH_P_8021Q) || tag->proto == bpf_htons(ETH_P_8021AD))
			return NV_DROP_DOUBLE_VLAN;
	}
	return bpf_skb_vlan_pop(skb) ? -1 : 0;
}

/* The longest inner frame that will leave: for a GSO frame, headers and one segment's
 * payload (gso_size); `l4` points at the transport header. */
static __always_inline __u32 wire_length(struct __sk_buff *skb, const struct flow *f, void *l4, void *end)
{
	if (!skb->gso_size)
		return skb->len;
	__u32 l4_hdr = 60; /* the longest TCP header, for what is not parsed below */
	if (f->proto == IPPROTO_UDP) {
		l4_hdr = 8;
	} else if (f->proto == IPPROTO_TCP && l4 + 13 <= end) {
		l4_hdr = (*(__u8 *)(l4 + 12) >> 4) * 4;
	}
	__u32 len = (__u32)(l4 - (void *)(long)skb->data) + l4_hdr + skb->gso_size;
	return len < skb->len ? len : skb->len;
}

/* The program on every VM port: tc, not XDP, so the VM keeps its offloads (an XDP program
 * on a veth makes its peer refuse TSO, and XDP sees neither a GSO frame nor a partial
 * checksum). Every frame from the VM takes this path: policy, answers, switch, route, encap. */
SEC("tc")
int nv_from_vm(struct __sk_buff *skb)
{
	__u32 ifindex = skb->ifindex;
	struct nv_port *port = bpf_map_lookup_elem(&ports, &ifindex);
	if (!port)
		return drop(skb, NV_DROP_PORT_UNKNOWN);
	__u32 vsid = port->vsid;
	/* The subnet's fields a unicast frame needs, from the port's entry when the compiler
	 * copied them there; ARP, ND and broadcasts read the whole subnet (subnet_of). */
	__u32 rdid, slot;
	const __u8 *gw_mac;
	if (port->flags & NV_PORT_SUBNET_INLINE) {
		rdid = port->rdid;
		slot = port->stats_slot;
		gw_mac = port->gw_mac;
	} else {
		struct nv_subnet *sn = bpf_map_lookup_elem(&subnets, &vsid);
		if (!sn)
			return drop(skb, NV_DROP_SUBNET_UNKNOWN);
		rdid = sn->rdid;
		slot = sn->stats_slot;
		gw_mac = sn->gw_mac;
	}

	/* The linear part usually holds the headers already; writing to it needs no pull (for a
	 * program that writes, the kernel unclones the head before it runs). */
	__u32 pull = skb->len < NV_VM_PULL_LEN ? skb->len : NV_VM_PULL_LEN;
	if ((void *)(long)skb->data + pull > (void *)(long)skb->data_end && bpf_skb_pull_data(skb, pull))
		return drop(skb, NV_DROP_MALFORMED);
	int tag = strip_vlan(skb);
	if (tag)
		return drop(skb, tag < 0 ? NV_DROP_MALFORMED : NV_DROP_DOUBLE_VLAN);

	struct cursor c = { .pos = (void *)(long)skb->data, .end = (void *)(long)skb->data_end };
	struct ethhdr *eth = CURSOR_TAKE(&c, struct ethhdr);
	if (!eth)
		return drop(skb, NV_DROP_MALFORMED);
	if (!mac_equal(eth->h_source, port->mac))
		return drop(skb, NV_DROP_SRC_MAC_SPOOF);

	if (eth->h_proto == bpf_htons(ETH_P_ARP)) {
		const struct nv_subnet *sn = subnet_of(vsid);
		return sn ? answer_arp(skb, port, sn) : drop(skb, NV_DROP_SUBNET_UNKNOWN);
	}

	struct flow f = {};
	void *l3 = c.pos;
	if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = parse_ipv6(&c, &f);
		if (!ip6)
			return drop(skb, NV_DROP_MALFORMED);
		if (is_neighbor_solicitation(c, ip6)) {
			const struct nv_subnet *sn = subnet_of(vsid);
			return sn ? answer_ns(skb, port, sn) : drop(skb, NV_DROP_SUBNET_UNKNOWN);
		}
	} else if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		if (!parse_ipv4(&c, &f))
			return drop(skb, NV_DROP_MALFORMED);
	}

	if (!f.family)
		return drop(skb, NV_DROP_NOT_IP);
	int guard = guard_violation(port, &f, c);
	if (guard)
		return drop(skb, guard);
	if (mac_is_multicast(eth->h_dest)) { /* broadcast too */
		if (!link_scoped_source(f.family, f.src) && !port_may_use(port, ifindex, f.family, f.src))
			return drop(skb, NV_DROP_SRC_CA_SPOOF);
		return tc_flood_from_vm(skb, vsid, NV_DROP_FLOOD_OFF);
	}
	if (!port_may_use(port, ifindex, f.family, f.src))
		return drop(skb, NV_DROP_SRC_CA_SPOOF);

	__u32 wire_len = wire_length(skb, &f, c.pos, c.end);
	if (mac_equal(eth->h_dest, gw_mac))
		return tc_route(skb, eth, l3, &f, rdid, slot, vsid, wire_len);

	struct nv_lookup_val *rec = find_record(vsid, f.family, f.dst);
	if (!rec)
		return to_userspace(skb, NV_EXC_NO_LOOKUP, vsid, slot, 0);
	if (rec->type == NV_REC_GATEWAY)
		return to_userspace(skb, NV_EXC_GATEWAY, vsid, slot, 0);
	return tc_deliver(skb, &f, rec, vsid, slot, wire_len);
}

#endif
