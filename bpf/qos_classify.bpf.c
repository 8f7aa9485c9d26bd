// SPDX-License-Identifier: GPL-2.0
/*
 * qos_classify: the HTB classifier. Attached as a cls_bpf filter in
 * direct-action mode on an HTB qdisc (`tc filter ... bpf object-pinned P da
 * classid MAJOR:0`): a matching rule sets skb->tc_classid to the minor class
 * id and returns TC_ACT_OK, and cls_bpf joins it with the filter's major; no
 * match returns TC_ACT_UNSPEC so HTB falls back to its default class.
 *
 * The rule list is walked with bpf_loop so the verifier checks one iteration
 * whatever the number of rules.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "parsing.h"
#include "qos_common.h"

#ifndef TC_ACT_UNSPEC
#define TC_ACT_UNSPEC (-1)
#endif

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, QOS_MAX_RULES);
	__type(key, __u32);
	__type(value, struct qos_rule);
} qos_rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct qos_meta);
} qos_meta SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, QOS_MAX_PREFIXES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct qos_prefix_key);
	__type(value, __u8);
} qos_prefixes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, QOS_MAX_RULES + 1);
	__type(key, __u32);
	__type(value, struct qos_hit);
} qos_hits SEC(".maps");

struct match_ctx {
	struct packet_info *pi;
	__s32 hit;      /* index of the first matching rule, -1 none */
	__u16 classid;
};

static __always_inline int in_set(__u32 set, __u8 family, const __u8 *addr)
{
	struct qos_prefix_key key = {};

	key.prefixlen = 32 + (family == 6 ? 128 : 32);
	key.set = (set << 1) | (family == 6 ? 1 : 0);
	__builtin_memcpy(key.addr, addr, 16);
	return bpf_map_lookup_elem(&qos_prefixes, &key) != NULL;
}

static long match_rule(__u32 i, void *data)
{
	struct match_ctx *mc = data;
	struct packet_info *pi = mc->pi;
	struct qos_rule *r = bpf_map_lookup_elem(&qos_rules, &i);

	if (!r)
		return 1;
	if (r->family && r->family != pi->family)
		return 0;
	if (r->proto && r->proto != pi->l4proto)
		return 0;
	if (pi->sport < r->sport_lo || pi->sport > r->sport_hi)
		return 0;
	if (pi->dport < r->dport_lo || pi->dport > r->dport_hi)
		return 0;
	if (r->src_set && !in_set(r->src_set, pi->family, pi->saddr))
		return 0;
	if (r->dst_set && !in_set(r->dst_set, pi->family, pi->daddr))
		return 0;
	mc->hit = i;
	mc->classid = r->classid;
	return 1;
}

static __always_inline void count(__u32 idx, __u64 bytes)
{
	struct qos_hit *h = bpf_map_lookup_elem(&qos_hits, &idx);

	if (h) {
		h->packets++;
		h->bytes += bytes;
	}
}

SEC("tc")
int qos_classify(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct packet_info pi = {};
	struct match_ctx mc = { .pi = &pi, .hit = -1 };
	__u32 zero = 0;
	struct qos_meta *meta;
	__u32 n;

	if (parse_packet(data, data_end, skb->len, &pi) != PARSE_IP)
		goto unmatched;
	meta = bpf_map_lookup_elem(&qos_meta, &zero);
	if (!meta)
		goto unmatched;
	n = meta->nrules;
	if (n > QOS_MAX_RULES)
		n = QOS_MAX_RULES;
	bpf_loop(n, match_rule, &mc, 0);
	if (mc.hit < 0)
		goto unmatched;
	count((__u32)mc.hit, skb->len);
	skb->tc_classid = mc.classid;
	return TC_ACT_OK;

unmatched:
	count(QOS_UNMATCHED, skb->len);
	return TC_ACT_UNSPEC;
}

char _license[] SEC("license") = "GPL";
