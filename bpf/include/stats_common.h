/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Contract between xdp_stats.bpf.c and userspace (test/bpf/xdp_stats.test.ts
 * mirrors it). Change both together.
 */
#ifndef PATRONUS_STATS_COMMON_H
#define PATRONUS_STATS_COMMON_H

/* Index into the per-CPU "stats" array. */
enum stats_class {
	STATS_IPV4 = 0,
	STATS_IPV6 = 1,
	STATS_NON_IP = 2,
	STATS_MALFORMED = 3,
	STATS_TCP = 4,
	STATS_UDP = 5,
	STATS_ICMP = 6,
	STATS_OTHER_L4 = 7,
	STATS_FRAGMENT = 8,
	STATS_VLAN = 9,
	STATS_MAX = 10,
};

struct datarec {
	__u64 packets;
	__u64 bytes;
};

#endif
