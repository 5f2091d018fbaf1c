/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* ablation.h - bench-only builds of the programs that leave one part of a path out, so that
 * `make bench` can show what each part costs beside the whole (TestRunBench, "where the
 * time goes"). The object an instance runs defines none: NV_ABLATE is 0 and every `#if`
 * below compiles away. Each build is nvgre-ablate-N.bpf.o (make bpf); its frames are not
 * checked as the real programs check them, so it must never run on traffic. */
#ifndef NV_ABLATION_H
#define NV_ABLATION_H

#define NV_ABLATE_DECAP_NO_LOOKUPS 1 /* decap: no subnet or record lookup, redirect back */
#define NV_ABLATE_DECAP_DST_ONLY 2   /* decap: the destination record, no subnet, source or count */
#define NV_ABLATE_ENCAP_NO_ADJUST 3  /* encap: outer headers over the frame, no bpf_skb_adjust_room */
#define NV_ABLATE_ENCAP_NONE 4       /* encap: every lookup and the next hop, sent unencapsulated */

#ifndef NV_ABLATE
#define NV_ABLATE 0
#endif

#endif
