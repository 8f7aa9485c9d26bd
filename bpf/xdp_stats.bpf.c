// SPDX-License-Identifier: GPL-2.0
/*
 * xdp_stats: the first Patronus program. Parses every frame and counts it by
 * class (IPv4/IPv6/non-IP/malformed, transport protocol, fragments, VLAN).
 * Verdict: malformed frames are dropped, everything else passes.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "parsing.h"
#include "stats_common.h"

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STATS_MAX);
	__type(key, __u32);
	__type(value, struct datarec);
} stats SEC(".maps");

static __always_inline void count(__u32 cls, __u64 bytes)
{
	struct datarec *rec = bpf_map_lookup_elem(&stats, &cls);

	if (rec) {
		rec->packets++;
		rec->bytes += bytes;
	}
}

SEC("xdp")
int xdp_stats(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u64 len = data_end - data;
	struct packet_info pi = {};
	enum parse_result res;

	res = parse_packet(data, data_end, len, &pi);
	if (pi.vlan_id)
		count(STATS_VLAN, len);
	if (res == PARSE_MALFORMED) {
		count(STATS_MALFORMED, len);
		return XDP_DROP;
	}
	if (res == PARSE_NON_IP) {
		count(STATS_NON_IP, len);
		return XDP_PASS;
	}
	count(pi.family == 4 ? STATS_IPV4 : STATS_IPV6, len);
	if (pi.fragment)
		count(STATS_FRAGMENT, len);
	switch (pi.l4proto) {
	case IPPROTO_TCP:
		count(STATS_TCP, len);
		break;
	case IPPROTO_UDP:
		count(STATS_UDP, len);
		break;
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6_:
		count(STATS_ICMP, len);
		break;
	default:
		count(STATS_OTHER_L4, len);
	}
	return XDP_PASS;
}

/* Same counters at tc: lets the control plane count egress too. */
SEC("tc")
int tc_stats(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct packet_info pi = {};
	enum parse_result res;

	res = parse_packet(data, data_end, skb->len, &pi);
	if (res == PARSE_MALFORMED) {
		count(STATS_MALFORMED, skb->len);
		return TC_ACT_OK; /* the stack makes its own judgement at tc */
	}
	if (res == PARSE_NON_IP) {
		count(STATS_NON_IP, skb->len);
		return TC_ACT_OK;
	}
	count(pi.family == 4 ? STATS_IPV4 : STATS_IPV6, skb->len);
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";
