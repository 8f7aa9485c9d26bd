// SPDX-License-Identifier: GPL-2.0
/*
 * Small programs for the addon's own tests: one the verifier must reject,
 * one that echoes/edits the frame so output data can be checked, and a
 * hash map for batch-operation tests, and a second hash map of the same
 * shape (test_other) for the tests that a batch never lands in the wrong map.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u64);
} test_hash SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u64);
} test_other SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u64);
} test_percpu SEC(".maps");

struct lpm_v4_key {
	__u32 prefixlen;
	__u8 addr[4];
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 256);
	__type(key, struct lpm_v4_key);
	__type(value, __u32);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} test_lpm SEC(".maps");

/* Rewrites the first byte of the destination MAC to 0xee and returns
 * XDP_TX; returns XDP_ABORTED for frames shorter than 14 bytes. */
SEC("xdp")
int xdp_mark(struct xdp_md *ctx)
{
	__u8 *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 key = 1;
	__u64 *v;

	if ((void *)(data + 14) > data_end)
		return XDP_ABORTED;
	data[0] = 0xee;
	v = bpf_map_lookup_elem(&test_percpu, &key);
	if (v)
		(*v)++;
	return XDP_TX;
}

char LICENSE[] SEC("license") = "GPL";
