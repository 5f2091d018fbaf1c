// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* nvgre.bpf.c - the one BPF object (one skeleton, one set of maps) holding:
 *   nv_from_vm      attached to each VM port      (from_vm.h)
 *   nv_from_fabric  attached to the uplink        (from_fabric.h)
 *   nv_from_external attached to a gateway's external interface (from_external.h)
 *   nv_bare_pass, nv_bare_tx                      (baseline.h)
 * A packet's way is readable from the file names: from_vm -> forward -> encap,
 * from_vm -> neighbor_reply, from_fabric -> decap (-> to_outside or gw_route on a
 * gateway), from_external -> nat or gw_route -> encap; every end goes through verdict.h. */
#include "from_vm.h"
#include "from_fabric.h"
#include "from_external.h"
#include "baseline.h"

/* Which build of the programs this object is, read by `nvgre upgrade` before it switches a
 * running instance over: the ABI of nvgre_abi.h (the maps' layout and meaning) and a build
 * number. A second build of the same code differs only here (the upgrade tests' other object). */
const volatile __u32 nv_object_abi = NV_ABI_VERSION;
const volatile __u32 nv_object_build = NV_PROGRAM_BUILD;

char LICENSE[] SEC("license") = "Dual BSD/GPL";
