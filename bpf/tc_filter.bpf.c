// SPDX-License-Identifier: GPL-2.0
/*
 * tc_filter: the Patronus fast path at tc clsact egress, where XDP cannot
 * act. Same body (include/filter_prog.h) and the same maps as xdp_filter
 * (userspace reuses the XDP object's pinned maps).
 */
#define FILTER_HOOK_TC 1
#include "filter_prog.h"

char LICENSE[] SEC("license") = "GPL";
