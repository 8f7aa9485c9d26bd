/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Contract between qos_classify.bpf.c and src/services/qos/classifier.ts.
 *
 * The QoS classifier is a first-match rule list (the operator's order), each
 * rule a conjunction of protocol, address family, source/destination prefix
 * sets and port ranges. Prefix sets live in one LPM trie whose key starts
 * with the set id, so one lookup answers "is this address in set N".
 */
#ifndef PATRONUS_QOS_COMMON_H
#define PATRONUS_QOS_COMMON_H

#define QOS_MAX_RULES 256
#define QOS_MAX_PREFIXES 16384
/* index of the "no rule matched" counter in qos_hits */
#define QOS_UNMATCHED QOS_MAX_RULES

struct qos_rule {
	__u32 src_set;  /* 0: any source; else a set id in qos_prefixes */
	__u32 dst_set;  /* 0: any destination */
	__u16 sport_lo; /* port ranges, inclusive, host order; 0-65535 = any */
	__u16 sport_hi;
	__u16 dport_lo;
	__u16 dport_hi;
	__u16 classid;  /* minor class id the filter's major is joined with */
	__u8 proto;     /* IPPROTO_*; 0: any */
	__u8 family;    /* 4 or 6; 0: any */
};

/* LPM key: set id and family, then the address. prefixlen counts from set. */
struct qos_prefix_key {
	__u32 prefixlen; /* 32 + prefix length */
	__u32 set;       /* set id << 1 | (family == 6) */
	__u8 addr[16];   /* network order; IPv4 in the first 4 bytes */
};

struct qos_meta {
	__u32 nrules;
};

struct qos_hit {
	__u64 packets;
	__u64 bytes;
};

#endif /* PATRONUS_QOS_COMMON_H */
