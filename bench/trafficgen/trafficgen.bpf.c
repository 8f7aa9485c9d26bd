/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Traffic generator program, run with bpf_prog_test_run in live-frames mode
 * (BPF_F_TEST_XDP_LIVE_FRAMES) with ctx_in.ingress_ifindex set to the sending
 * veth: XDP_TX there becomes a redirect out of that veth, i.e. into its peer.
 * Each invocation overwrites the frame with the next of the prepared frames
 * (one per source address, checksums already correct), so one run carries
 * many sources without per-packet checksum work here.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#define FRAME_MAX 128

struct frame {
	__u8 data[FRAME_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1); /* resized by the loader to the frame count */
	__type(key, __u32);
	__type(value, struct frame);
} frames SEC(".maps");

/* per-CPU position in the frame table: each generator thread cycles alone */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} cursor SEC(".maps");

const volatile __u32 nframes = 1;
const volatile __u32 frame_len = 64;

SEC("xdp")
int xdp_gen(struct xdp_md *ctx)
{
	__u32 zero = 0, idx, len = frame_len;
	struct frame *f;
	__u64 *pos;

	pos = bpf_map_lookup_elem(&cursor, &zero);
	if (!pos)
		return XDP_ABORTED;
	idx = (__u32)(*pos % nframes);
	*pos += 1;
	f = bpf_map_lookup_elem(&frames, &idx);
	if (!f)
		return XDP_ABORTED;
	if (len < 14 || len > FRAME_MAX)
		return XDP_ABORTED;
	if (bpf_xdp_store_bytes(ctx, 0, f->data, len))
		return XDP_ABORTED;
	return XDP_TX;
}

/* Sends the frame it was given, unchanged: the generator's upper bound. */
SEC("xdp")
int xdp_tx_static(struct xdp_md *ctx)
{
	return XDP_TX;
}

char _license[] SEC("license") = "GPL";
