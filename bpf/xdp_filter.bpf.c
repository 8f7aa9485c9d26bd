// SPDX-License-Identifier: GPL-2.0
/*
 * xdp_filter: the Patronus fast path at XDP (ingress). The program body is
 * include/filter_prog.h; this file picks the XDP hook.
 */
#define FILTER_HOOK_XDP 1
#include "filter_prog.h"

char LICENSE[] SEC("license") = "GPL";
