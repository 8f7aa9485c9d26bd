// SPDX-License-Identifier: GPL-2.0
/*
 * PROTOTYPE (issue 13, not part of the product): Patronus' ingress filter
 * for a small rule set whose rules are load-time constants. The rule set is
 * a `const volatile` struct in .rodata, written through libbpf before load
 * (bpf_map__set_initial_value) and frozen by libbpf, so the verifier knows
 * every field: branches on absent fields and atoms past `natoms` are
 * removed from the program before JIT. Per packet: parse (parsing.h, the
 * product's parser), interface check against constants, the blocklist flag
 * (and the blocklist while it is not empty), a compare per atom, the rule's
 * per-CPU counter and the verdict counter. No lookup for the rule set.
 *
 * An atom is one combination of a rule's fields (one source prefix, one
 * destination prefix, one protocol, one port range per port field, TCP
 * flags): a rule with lists becomes several atoms with the same rule index
 * and counter slot (bench/harness/constfilter.ts expands them; more than
 * CONST_MAX_ATOMS: the rule set is not for this program). Semantics follow
 * filter_prog.h's for the rules it takes (pass, drop, count; no rate
 * limits, no drop events): first terminal match wins, count rules matched
 * ahead of it are counted once each, no match: the interface's default.
 *
 * Maps: the counters and the blocklist of the product's data plane, same
 * names and layouts (filter_common.h), so a loader can hand it the pinned
 * ones (bpf_map__reuse_fd) and swap it for the generation program on the
 * interface without losing counters.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "parsing.h"
#include "filter_common.h"

#define CONST_MAX_ATOMS 8
#define CONST_MAX_IFACES 4

enum const_field {
	CF_PROTO = 1 << 0,
	CF_SRC = 1 << 1,
	CF_DST = 1 << 2,
	CF_SPORT = 1 << 3,
	CF_DPORT = 1 << 4,
	CF_FLAGS = 1 << 5,
};

struct const_atom {
	__u8 family;       /* 0: both (no address field), 4 or 6 */
	__u8 proto;        /* CF_PROTO */
	__u8 action;       /* FILTER_ACT_PASS, _DROP or _COUNT */
	__u8 fields;       /* enum const_field */
	__u8 ifaces;       /* bit i: applies on ifindex[i] */
	__u8 flags_value;  /* CF_FLAGS: (tcp_flags & flags_mask) == flags_value */
	__u8 flags_mask;
	__u8 pad;
	__u16 rule;        /* rule index (atoms of one rule are adjacent) */
	__u16 counter_slot;
	__u16 sport_lo, sport_hi, dport_lo, dport_hi;
	/* addresses and masks as the bytes of the packet (network order);
	 * IPv4 in the first 4 bytes of [0] */
	__u64 src[2], src_mask[2], dst[2], dst_mask[2];
};

struct const_config {
	__u32 natoms;
	__u32 nifaces;
	__u32 ifindex[CONST_MAX_IFACES];
	__u32 default_action[CONST_MAX_IFACES];
	struct const_atom atom[CONST_MAX_ATOMS];
};

const volatile struct const_config cfg = {};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2); /* [0] IPv4, [1] IPv6 */
	__type(key, __u32);
	__type(value, __u32);
} block_active SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, FILTER_DEFAULT_BLOCKLIST);
	__type(key, __u32);
	__type(value, struct block_value);
} block_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, FILTER_DEFAULT_BLOCKLIST);
	__type(key, struct in6_addr);
	__type(value, struct block_value);
} block_v6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, FILTER_COUNTER_SLOTS);
	__type(key, __u32);
	__type(value, struct rule_stat);
} rule_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2 * VERDICT_MAX);
	__type(key, __u32);
	__type(value, struct verdict_stat);
} verdict_stats SEC(".maps");

/* Budget knobs for throwaway builds (clang -DCONST_BUDGET_NO_COUNTERS ...):
 * what the counters and the blocklist flag cost; the verdicts stay, the
 * counters are then wrong. Never set in the build. */
static __always_inline void count_verdict(__u32 verdict, __u64 bytes)
{
#ifdef CONST_BUDGET_NO_COUNTERS
	return;
#endif
	__u32 idx = FILTER_DIR_INGRESS * VERDICT_MAX + verdict;
	struct verdict_stat *s = bpf_map_lookup_elem(&verdict_stats, &idx);

	if (s) {
		s->packets++;
		s->bytes += bytes;
	}
}

static __always_inline void count_rule(__u32 slot, __u64 bytes)
{
#ifdef CONST_BUDGET_NO_COUNTERS
	return;
#endif
	struct rule_stat *s = bpf_map_lookup_elem(&rule_stats, &slot);

	if (s) {
		s->packets++;
		s->bytes += bytes;
	}
}

static __always_inline int blocked(struct packet_info *pi)
{
	struct block_value *b;

	if (pi->family == 4) {
		__u32 k;

		__builtin_memcpy(&k, pi->saddr, 4);
		b = bpf_map_lookup_elem(&block_v4, &k);
		if (!b)
			return 0;
		if (b->expires_ns > bpf_ktime_get_ns())
			return 1;
		bpf_map_delete_elem(&block_v4, &k);
		return 0;
	}
	{
		struct in6_addr k;

		__builtin_memcpy(&k, pi->saddr, 16);
		b = bpf_map_lookup_elem(&block_v6, &k);
		if (!b)
			return 0;
		if (b->expires_ns > bpf_ktime_get_ns())
			return 1;
		bpf_map_delete_elem(&block_v6, &k);
		return 0;
	}
}

static __always_inline int addr_match(__u8 *addr, __u32 family, const volatile __u64 *want, const volatile __u64 *mask)
{
	__u64 a0, a1;

	if (family == 4) {
		__u32 a, m = (__u32)mask[0];

		__builtin_memcpy(&a, addr, 4);
		return (a & m) == (__u32)want[0];
	}
	__builtin_memcpy(&a0, addr, 8);
	__builtin_memcpy(&a1, addr + 8, 8);
	return (a0 & mask[0]) == want[0] && (a1 & mask[1]) == want[1];
}

SEC("xdp")
int xdp_const(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u64 len = data_end - data;
	struct packet_info pi = {};
	enum parse_result res;
	__u32 ifindex = ctx->ingress_ifindex, slot = CONST_MAX_IFACES, i, fam, last = ~0u, *bs;

	res = parse_packet(data, data_end, len, &pi);
	if (res == PARSE_MALFORMED) {
		count_verdict(VERDICT_MALFORMED, len);
		return XDP_DROP;
	}
	if (res == PARSE_NON_IP) {
		count_verdict(VERDICT_NON_IP, len);
		return XDP_PASS;
	}
#pragma unroll
	for (i = 0; i < CONST_MAX_IFACES; i++) {
		if (i >= cfg.nifaces)
			break;
		if (cfg.ifindex[i] == ifindex) {
			slot = i;
			break;
		}
	}
	if (slot >= CONST_MAX_IFACES) {
		count_verdict(VERDICT_UNMANAGED, len);
		return XDP_PASS;
	}
	if (pi.fragment == 2)
		count_verdict(VERDICT_FRAGMENT, len);
	fam = pi.family == 4 ? 0 : 1;
#ifdef CONST_BUDGET_NO_BLOCKLIST
	bs = NULL;
	(void)fam;
#else
	bs = bpf_map_lookup_elem(&block_active, &fam);
#endif
	if (bs && *bs && blocked(&pi)) {
		count_verdict(VERDICT_BLOCKED, len);
		return XDP_DROP;
	}

#pragma unroll
	for (i = 0; i < CONST_MAX_ATOMS; i++) {
		const volatile struct const_atom *a = &cfg.atom[i];
		__u32 f;

		if (i >= cfg.natoms)
			break;
		if (!(a->ifaces & (1u << slot)))
			continue;
		if (a->family && a->family != pi.family)
			continue;
		f = a->fields;
		if ((f & CF_PROTO) && a->proto != pi.l4proto)
			continue;
		if ((f & CF_SRC) && !addr_match(pi.saddr, a->family, a->src, a->src_mask))
			continue;
		if ((f & CF_DST) && !addr_match(pi.daddr, a->family, a->dst, a->dst_mask))
			continue;
		/* a later fragment has no ports and no flags: only atoms without them match it */
		if ((f & (CF_SPORT | CF_DPORT | CF_FLAGS)) && pi.fragment == 2)
			continue;
		if ((f & CF_SPORT) && (pi.sport < a->sport_lo || pi.sport > a->sport_hi))
			continue;
		if ((f & CF_DPORT) && (pi.dport < a->dport_lo || pi.dport > a->dport_hi))
			continue;
		if ((f & CF_FLAGS) && (pi.l4proto != IPPROTO_TCP || (pi.tcp_flags & a->flags_mask) != a->flags_value))
			continue;
		if (a->action == FILTER_ACT_COUNT) {
			if (a->rule != last)
				count_rule(a->counter_slot, len);
			last = a->rule;
			continue;
		}
		count_rule(a->counter_slot, len);
		if (a->action == FILTER_ACT_DROP) {
			count_verdict(VERDICT_RULE_DROP, len);
			return XDP_DROP;
		}
		count_verdict(VERDICT_RULE_PASS, len);
		return XDP_PASS;
	}
	if (cfg.default_action[slot & (CONST_MAX_IFACES - 1)] == FILTER_ACT_DROP) {
		count_verdict(VERDICT_DEFAULT_DROP, len);
		return XDP_DROP;
	}
	count_verdict(VERDICT_DEFAULT_PASS, len);
	return XDP_PASS;
}

/* The floor: what any program pays for being run on a frame and reading its
 * Ethernet header (no parse, no map): for the bench's budget only. */
SEC("xdp")
int xdp_floor(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > data_end)
		return XDP_PASS;
	return eth->h_proto == bpf_htons(ETH_P_IP) ? XDP_DROP : XDP_PASS;
}

char _license[] SEC("license") = "GPL";
