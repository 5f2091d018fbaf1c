/* CNvgre.h - what Swift imports from C: libbpf, the shared ABI, the generated skeleton,
 * and a few helpers for calls Swift cannot make directly. */
#ifndef CNVGRE_H
#define CNVGRE_H

#include <bpf/libbpf.h>
#include <bpf/bpf.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <sys/vfs.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/if_packet.h> /* sockaddr_ll: labs send raw frames */
#include <linux/filter.h>    /* sock_filter: the userspace path's classic BPF socket filters */
#include <linux/pkt_cls.h>   /* TC_ACT_*: what a tc program returns */
#include <spawn.h>
#include "../../../bpf/nvgre_abi.h"
#include "../../../bpf/ablation.h" /* the bench-only builds (TestRunBench) */
#include "../generated/nvgre.skel.h"
#include "../generated/bench.skel.h"

/* Ordered access to a word that other processes and the programs read concurrently (the
 * lookup records' slot states, their writer's turn): Swift has no atomics on memory it
 * did not allocate. */
static inline void nv_store_release_u32(__u32 *p, __u32 v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
static inline __u32 nv_load_acquire_u32(const __u32 *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline int nv_cas_u32(__u32 *p, __u32 expected, __u32 desired)
{
	return __atomic_compare_exchange_n(p, &expected, desired, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}

/* Opens another build of the nvgre object (an ELF image in memory, kept alive by the caller
 * until the skeleton is destroyed) through the embedded object's skeleton: the same maps
 * and programs, other code or constants. NULL with errno set when it does not fit. */
struct nvgre *nv_open_other_object(const void *elf, size_t size, const struct bpf_object_open_opts *opts);

/* setns(fd, CLONE_NEWNET) on the calling thread; returns 0 or -errno. */
int nv_setns_net(int fd);

/* The names of the object's maps as bpf/maps.h declares them (libbpf's internal maps
 * left out), from the generated skeleton's table, without opening the object. Writes at
 * most `max` pointers to static strings; returns how many, or -errno. */
int nv_map_names(const char **names, int max);

/* Creates tap `name` in the calling thread's network namespace, as a hypervisor opens a
 * VM's NIC: virtio-net header on (IFF_VNET_HDR), checksum and TSO offload on. Returns the
 * descriptor (the tap lives while it is open) or -errno. */
int nv_tap_open(const char *name);

/* The MTU and MAC of interface `ifindex` in the network namespace of socket `sock` (any
 * AF_INET datagram socket opened there). 0, or -errno. */
int nv_interface_mtu_mac(int sock, unsigned int ifindex, int *mtu, unsigned char mac[6]);
/* Generic receive offload of an interface: *was gets its state; with on >= 0 it is set to on.
 * 0 or -errno. */
int nv_interface_gro(int sock, unsigned int ifindex, int on, int *was);
/* A link's peer (a veth's other end): its ifindex (0: none) and the id this namespace gives
 * the namespace it is in (-1: this one); whether the link itself has an XDP program in driver
 * mode (a generic one gives a veth no NAPI), and
 * whether it is a veth. 0 or -errno. */
int nv_link_peer(unsigned int ifindex, int *peer, int *peer_nsid, int *xdp_attached, int *is_veth);
/* The id this namespace gives the network namespace of descriptor nsfd (as IFLA_LINK_NETNSID
 * names it; -1: none assigned), or -errno. */
int nv_netns_id(int nsfd);

/* Names the calling thread (up to 15 bytes shown): 0 or -errno. */
int nv_name_thread(const char *name);

/* Pins the calling thread to one CPU (0, or -errno). */
int nv_pin_thread_to_cpu(int cpu);

/* libbpf messages (warnings and the verifier log) are collected into a buffer instead of
 * being printed, so that errors can quote them. */
void nv_libbpf_capture_start(void);
/* Returns the collected text (NUL terminated, owned by the library) and clears it. */
const char *nv_libbpf_capture_text(void);

/* The size libbpf's *_opts structs expect in .sz (LIBBPF_OPTS does not import into Swift). */
static inline size_t nv_sizeof_test_run_opts(void) { return sizeof(struct bpf_test_run_opts); }
static inline size_t nv_sizeof_open_opts(void) { return sizeof(struct bpf_object_open_opts); }
static inline size_t nv_sizeof_link_create_opts(void) { return sizeof(struct bpf_link_create_opts); }
static inline size_t nv_sizeof_batch_opts(void) { return sizeof(struct bpf_map_batch_opts); }
static inline size_t nv_sizeof_xdp_query_opts(void) { return sizeof(struct bpf_xdp_query_opts); }

#endif
