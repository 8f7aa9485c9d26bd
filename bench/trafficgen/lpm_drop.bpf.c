/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The bench's own baseline filter: one LPM trie per family keyed by source
 * address; a hit drops, a miss passes. With 0.0.0.0/0 and ::/0 loaded it
 * drops everything, which is how the harness measures the generator's limit
 * independently of Patronus' fast path. Counts every verdict per CPU.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD

struct lpm_v4 {
	__u32 prefixlen;
	__u8 addr[4];
};

struct lpm_v6 {
	__u32 prefixlen;
	__u8 addr[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1); /* resized by the loader */
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm_v4);
	__type(value, __u32);
} src_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm_v6);
	__type(value, __u32);
} src_v6 SEC(".maps");

enum { V_PASS, V_DROP, V_OTHER, V_MAX };

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, V_MAX);
	__type(key, __u32);
	__type(value, __u64);
} verdicts SEC(".maps");

static __always_inline int count(__u32 v, int action)
{
	__u64 *c = bpf_map_lookup_elem(&verdicts, &v);

	if (c)
		*c += 1;
	return action;
}

SEC("xdp")
int xdp_lpm_drop(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > data_end)
		return count(V_OTHER, XDP_PASS);
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);
		struct lpm_v4 key = { .prefixlen = 32 };

		if ((void *)(ip + 1) > data_end)
			return count(V_OTHER, XDP_PASS);
		__builtin_memcpy(key.addr, &ip->saddr, 4);
		if (bpf_map_lookup_elem(&src_v4, &key))
			return count(V_DROP, XDP_DROP);
		return count(V_PASS, XDP_PASS);
	}
	if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		struct lpm_v6 key = { .prefixlen = 128 };

		if ((void *)(ip6 + 1) > data_end)
			return count(V_OTHER, XDP_PASS);
		__builtin_memcpy(key.addr, &ip6->saddr, 16);
		if (bpf_map_lookup_elem(&src_v6, &key))
			return count(V_DROP, XDP_DROP);
		return count(V_PASS, XDP_PASS);
	}
	return count(V_OTHER, XDP_PASS);
}

char _license[] SEC("license") = "GPL";
