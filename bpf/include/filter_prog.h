/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The fast-path filter, written once and compiled per attach point (after
 * xdp-tools' xdpfilt_prog.h): the including file defines exactly one of
 *   FILTER_HOOK_XDP  -> SEC("xdp") xdp_filter, ingress
 *   FILTER_HOOK_TC   -> SEC("tc")  tc_filter, clsact egress
 * Both objects declare the same maps; userspace loads the XDP object first
 * (creating and pinning the maps) and hands its maps to the tc object, so
 * one rule set and one set of counters serve both directions.
 *
 * Per packet:
 *   parse (parsing.h) -> malformed / non-IP verdicts
 *   interface entry for (ifindex, direction) -> unmanaged verdict
 *   dynamic blocklist (source on ingress, destination on egress), only
 *     while the family's blocklist is not empty
 *   AND of the field bit vectors -> first terminal rule, count rules before it;
 *     only the fields some rule constrains are looked up (gen_config)
 *   action: pass, drop, rate-limit (per-source token bucket)
 *   no rule -> the interface's default policy
 */
#ifndef PATRONUS_FILTER_PROG_H
#define PATRONUS_FILTER_PROG_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "parsing.h"
#include "filter_common.h"

#if defined(FILTER_HOOK_XDP) == defined(FILTER_HOOK_TC)
#error "define exactly one of FILTER_HOOK_XDP and FILTER_HOOK_TC"
#endif

#define NSEC 1000000000ULL

/* ---- maps (identical in both objects; pinned by userspace) ---- */

struct active_map {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32); /* the generation packets are classified against */
};
struct active_map active SEC(".maps");

/* Never read by the program: an update of a map-in-map from the bpf()
 * syscall returns only after an RCU grace period, i.e. after every program
 * run that could still see the previous generation has finished. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);
	__type(key, __u32);
	__array(values, struct active_map);
} rcu_barrier SEC(".maps");

#define LPM_MAP(NAME, KEY, N)                          \
	struct {                                       \
		__uint(type, BPF_MAP_TYPE_LPM_TRIE);   \
		__uint(max_entries, N);                \
		__uint(map_flags, BPF_F_NO_PREALLOC);  \
		__type(key, KEY);                      \
		__type(value, struct rule_bits);       \
	} NAME SEC(".maps")

LPM_MAP(src_v4, struct lpm_v4_key, FILTER_DEFAULT_PREFIXES);
LPM_MAP(dst_v4, struct lpm_v4_key, FILTER_DEFAULT_PREFIXES);
LPM_MAP(src_v6, struct lpm_v6_key, FILTER_DEFAULT_PREFIXES);
LPM_MAP(dst_v6, struct lpm_v6_key, FILTER_DEFAULT_PREFIXES);
LPM_MAP(sport, struct lpm_port_key, FILTER_DEFAULT_PORT_PREFIXES);
LPM_MAP(dport, struct lpm_port_key, FILTER_DEFAULT_PORT_PREFIXES);

/* DIR-16-8 for IPv4 (filter_common.h); index (gen * 2 + field) * size + i */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4 * 65536);
	__type(key, __u32);
	__type(value, __u32);
} v4_dir16 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4 * FILTER_DIR4_CHUNKS * 256);
	__type(key, __u32);
	__type(value, __u32);
} v4_dir8 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4 * FILTER_DIR4_CHUNKS);
	__type(key, __u32);
	__type(value, struct dir4_bitmap);
} v4_bitmap SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4 * FILTER_DIR4_CLASSES);
	__type(key, __u32);
	__type(value, struct rule_bits);
} v4_class SEC(".maps");

/* IPv6 first stage (filter_common.h); index (gen * 2 + field) * size + i */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4 * 65536);
	__type(key, __u32);
	__type(value, __u32);
} v6_dir16 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4 * FILTER_DEFAULT_PREFIXES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct v6_hash_key);
	__type(value, __u32);
} v6_hash SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4 * FILTER_V6_CLASSES);
	__type(key, __u32);
	__type(value, struct rule_bits);
} v6_class SEC(".maps");

/* TCP/UDP ports by array (filter_common.h) */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 8 * 65536);
	__type(key, __u32);
	__type(value, __u32);
} port_class SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4 * FILTER_PORT_CLASSES);
	__type(key, __u32);
	__type(value, struct rule_bits);
} port_bits SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * FILTER_FLAGS_PER_GEN); /* gen * 257 + flags */
	__type(key, __u32);
	__type(value, struct rule_bits);
} tcp_flags SEC(".maps");

/* Crossproduct tables (filter_common.h): u16 cells, four per element;
 * index gen * FILTER_XP_CELLS / 4 + cell / 4 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * FILTER_XP_CELLS / 4);
	__type(key, __u32);
	__type(value, struct xp_cells);
} xp_table SEC(".maps");

/* ifindex -> slot + 1 (0: none); see filter_common.h */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, FILTER_IFINDEX_DIRECT);
	__type(key, __u32);
	__type(value, __u32);
} iface_slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FILTER_MAX_IFACES);
	__type(key, __u32);
	__type(value, __u32);
} iface_slots_big SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, FILTER_IFACE_ENTRIES);
	__type(key, __u32);
	__type(value, struct iface_value);
} iface_cfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct gen_config);
} gen_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2); /* [0] IPv4, [1] IPv6 */
	__type(key, __u32);
	__type(value, __u32);
} block_active SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * FILTER_MAX_RULES); /* gen * MAX_RULES + rule */
	__type(key, __u32);
	__type(value, struct rule_action);
} actions SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct gen_meta);
} gen_meta SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, FILTER_COUNTER_SLOTS);
	__type(key, __u32);
	__type(value, struct rule_stat);
} rule_stats SEC(".maps");

/* Names of the rules owning counter slots; written by userspace only, so a
 * restarted control plane can read counters back by rule name. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, FILTER_COUNTER_SLOTS);
	__type(key, __u32);
	__type(value, char[FILTER_NAME_LEN]);
} rule_names SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2 * VERDICT_MAX); /* dir * VERDICT_MAX + verdict */
	__type(key, __u32);
	__type(value, struct verdict_stat);
} verdict_stats SEC(".maps");

/* Per-CPU LRU lists (BPF_F_NO_COMMON_LRU): a flood of new sources on
 * several CPUs does not serialise on one LRU lock. The table is shared; each
 * CPU recycles only its own max_entries / CPUs entries, so userspace sizes it
 * as rateLimitSources * possible CPUs. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(map_flags, BPF_F_NO_COMMON_LRU);
	__uint(max_entries, FILTER_DEFAULT_RATE_STATE);
	__type(key, struct rate_key);
	__type(value, struct rate_state);
} rate_state SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, FILTER_DEFAULT_BLOCKLIST);
	__type(key, __u32); /* IPv4 address, network order */
	__type(value, struct block_value);
} block_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, FILTER_DEFAULT_BLOCKLIST);
	__type(key, struct in6_addr);
	__type(value, struct block_value);
} block_v6 SEC(".maps");

#include "filter_log.h"

/* The drop-event constants as enumerators, for the generated TypeScript side. */
enum filter_log_limits {
	FILTER_LOG_SLOT_DEFAULT = LOG_SLOT_DEFAULT,
	FILTER_LOG_SLOT_BLOCKED = LOG_SLOT_BLOCKED,
	FILTER_LOG_SLOTS = LOG_SLOTS,
	FILTER_LOG_RING_BYTES = LOG_RING_BYTES,
};

/* BTF anchor of the contract's enums and of the structs no map holds
 * (filter_common.h, filter_log.h); never read by the program. */
struct filter_contract_all {
	struct filter_contract common;
	enum filter_log_limits log_limits;
	enum log_flags log_flags;
	struct log_event log_event;
};
const volatile struct filter_contract_all filter_contract __attribute__((used)) = {};

/* ---- helpers ---- */

enum filter_result {
	FILTER_PASS = 0,
	FILTER_DROP = 1,
};

static __always_inline void count_verdict(__u32 dir, __u32 verdict, __u64 bytes)
{
	__u32 idx = dir * VERDICT_MAX + verdict;
	struct verdict_stat *s = bpf_map_lookup_elem(&verdict_stats, &idx);

	if (s) {
		s->packets++;
		s->bytes += bytes;
	}
}

static __always_inline struct rule_stat *count_rule(__u32 slot, __u64 bytes)
{
	struct rule_stat *s = bpf_map_lookup_elem(&rule_stats, &slot);

	if (s) {
		s->packets++;
		s->bytes += bytes;
	}
	return s;
}

/* Index of the lowest set bit; x != 0. BPF has no count-trailing-zeros;
 * a de Bruijn multiply keeps this branch-free, which matters: branches
 * here would multiply the verifier's states per bit-vector word. */
static const volatile __u8 debruijn64[64] = {
	0,  1,  48, 2,  57, 49, 28, 3,  61, 58, 50, 42, 38, 29, 17, 4,
	62, 55, 59, 36, 53, 51, 43, 22, 45, 39, 33, 30, 24, 18, 12, 5,
	63, 47, 56, 27, 60, 41, 37, 16, 54, 35, 52, 21, 44, 32, 23, 11,
	46, 26, 40, 15, 34, 20, 31, 10, 25, 14, 19, 9,  13, 8,  7,  6,
};

static __always_inline __u32 lowest_bit(__u64 x)
{
	__u64 i = ((x & -x) * 0x03f79d71b4cb0a89ULL) >> 58;

	return debruijn64[i & 63];
}

/* Returns 1 when the packet exceeds the bucket(s) of this rule and source. */
static __always_inline int rate_exceeded(struct rule_action *a, struct packet_info *pi, __u64 len)
{
	struct rate_key key = { .counter_slot = a->counter_slot, .family = pi->family };
	struct rate_state *st;
	__u64 now = bpf_ktime_get_ns();
	__u64 elapsed, t, pkt_cap, byte_cap, byte_cost, pkt, byt;
	int over = 0;

	__builtin_memcpy(key.addr, pi->saddr, 16);
	pkt_cap = a->pkt_burst * NSEC;
	byte_cap = a->byte_burst * NSEC;
	byte_cost = len * NSEC;
	st = bpf_map_lookup_elem(&rate_state, &key);
	if (!st) {
		struct rate_state fresh = {};

		fresh.pkt_tokens = pkt_cap;
		fresh.byte_tokens = byte_cap;
		fresh.last_ns = now;
		bpf_map_update_elem(&rate_state, &key, &fresh, BPF_NOEXIST);
		st = bpf_map_lookup_elem(&rate_state, &key);
		if (!st)
			return 1; /* no state to account against: fail closed */
	}
	/* No lock: the kernel refuses bpf_spin_lock in LRU maps. One source's
	 * packets normally arrive on one CPU (RSS hashes the flow); when two
	 * CPUs race on one bucket a few packets more may pass. */
	elapsed = now > st->last_ns ? now - st->last_ns : 0;
	st->last_ns = now;
	/* Cap elapsed so elapsed * rate cannot overflow: one second refills
	 * any bucket whose depth is at most its rate; deeper buckets refill
	 * over several packets. */
	if (elapsed > NSEC)
		elapsed = NSEC;
	pkt = st->pkt_tokens;
	byt = st->byte_tokens;
	if (a->pps) {
		t = pkt + elapsed * a->pps;
		pkt = t > pkt_cap ? pkt_cap : t;
		if (pkt < NSEC)
			over = 1;
	}
	if (a->bps) {
		t = byt + elapsed * a->bps;
		byt = t > byte_cap ? byte_cap : t;
		if (byt < byte_cost)
			over = 1;
	}
	if (!over) {
		if (a->pps)
			pkt -= NSEC;
		if (a->bps)
			byt -= byte_cost;
	}
	st->pkt_tokens = pkt;
	st->byte_tokens = byt;
	return over;
}

/* Dynamic blocklist: 1 when addr is listed and not expired; expired
 * entries are removed on sight. */
static __always_inline int blocked(struct packet_info *pi, __u8 *addr)
{
	struct block_value *b;
	__u64 now;

	if (pi->family == 4) {
		__u32 k;

		__builtin_memcpy(&k, addr, 4);
		b = bpf_map_lookup_elem(&block_v4, &k);
		if (!b)
			return 0;
		now = bpf_ktime_get_ns();
		if (b->expires_ns > now)
			return 1;
		bpf_map_delete_elem(&block_v4, &k);
		return 0;
	}
	{
		struct in6_addr k;

		__builtin_memcpy(&k, addr, 16);
		b = bpf_map_lookup_elem(&block_v6, &k);
		if (!b)
			return 0;
		now = bpf_ktime_get_ns();
		if (b->expires_ns > now)
			return 1;
		bpf_map_delete_elem(&block_v6, &k);
		return 0;
	}
}

/* After a trie lookup: keeps the compiler from sinking it and an array
 * lookup with the same continuation into one call on a map chosen at run
 * time, which the verifier cannot inline (an indirect call per packet). */
#define NO_MERGE() asm volatile("" ::: "memory")

static __always_inline struct rule_bits *lookup_v4(void *map, __u32 gen, __u8 *addr)
{
	struct lpm_v4_key k = { .prefixlen = 8 + 32, .gen = gen };
	struct rule_bits *v;

	__builtin_memcpy(k.addr, addr, 4);
	v = bpf_map_lookup_elem(map, &k);
	NO_MERGE();
	return v;
}

/* The DIR-16-8 class of an IPv4 address (gf = gen * 2 + field), or
 * FILTER_DIR_TRIE where the trie answers; FILTER_DIR_TRIE - 1 on a failed
 * lookup (never, for arrays indexed in bounds). */
static __always_inline __u32 dir4_class(__u32 gf, __u8 *addr)
{
	__u32 idx = (gf << 16) | ((__u32)addr[0] << 8) | addr[1];
	__u32 *e = bpf_map_lookup_elem(&v4_dir16, &idx);
	__u32 c;

	if (!e)
		return FILTER_DIR_TRIE - 1;
	c = *e;
	if (c == FILTER_DIR_TRIE) {
		/* the trie */
	} else if (c & FILTER_DIR_CHUNK) {
		idx = ((gf * FILTER_DIR4_CHUNKS + (c & (FILTER_DIR4_CHUNKS - 1))) << 8) | addr[2];
		e = bpf_map_lookup_elem(&v4_dir8, &idx);
		if (!e)
			return FILTER_DIR_TRIE - 1;
		c = *e;
	} else if (c & FILTER_DIR_BITMAP) {
		struct dir4_bitmap *b;
		__u32 third = addr[2];

		idx = gf * FILTER_DIR4_CHUNKS + (c & (FILTER_DIR4_CHUNKS - 1));
		b = bpf_map_lookup_elem(&v4_bitmap, &idx);
		if (!b)
			return FILTER_DIR_TRIE - 1;
		c = b->cls[(b->bits[(third >> 6) & 3] >> (third & 63)) & 1];
	}
	return c;
}

/* The IPv4 LPM result through DIR-16-8; the trie only where the table
 * says so. gf = gen * 2 + field. */
static __always_inline struct rule_bits *lookup_v4_dir(void *trie, __u32 gen, __u32 gf, __u8 *addr)
{
	__u32 c = dir4_class(gf, addr), idx;

	if (c == FILTER_DIR_TRIE)
		return lookup_v4(trie, gen, addr);
	if (c == FILTER_DIR_TRIE - 1)
		return NULL;
	idx = gf * FILTER_DIR4_CLASSES + c;
	return bpf_map_lookup_elem(&v4_class, &idx);
}

static __always_inline struct rule_bits *lookup_v6(void *map, __u32 gen, __u8 *addr)
{
	struct lpm_v6_key k = { .prefixlen = 8 + 128, .gen = gen };
	struct rule_bits *v;

	__builtin_memcpy(k.addr, addr, 16);
	v = bpf_map_lookup_elem(map, &k);
	NO_MERGE();
	return v;
}

/* The IPv6 LPM result through v6_dir16 and the per-length hash; the trie
 * only where an entry says so. gf = gen * 2 + field. */
static __always_inline struct rule_bits *lookup_v6_dir(void *trie, struct gen_config *gc, __u32 gen, __u32 field,
						       __u8 *addr)
{
	__u32 gf = gen * 2 + field;
	__u32 idx = (gf << 16) | ((__u32)addr[0] << 8) | addr[1];
	__u32 *e = bpf_map_lookup_elem(&v6_dir16, &idx);
	__u32 c, m, i;

	if (!e)
		return NULL;
	c = *e;
	if (c & FILTER_V6_HASH) {
		struct v6_hash_key k = { .pad = 0 };
		__u64 hi;
		__u32 len, *h;

		__builtin_memcpy(&hi, addr, 8);
		hi = bpf_be64_to_cpu(hi);
		m = (c >> 16) & 0xff;
		c &= FILTER_V6_CLASS_MASK;
#pragma unroll
		for (i = 0; i < FILTER_V6_LENGTHS; i++) {
			if (!(m & (1u << i)))
				continue;
			len = gc->v6_len[field & 1][i];
			if (len == 0 || len > 64)
				break;
			k.tag = gf << 8 | len;
			k.hi = len == 64 ? hi : hi & ~(~0ULL >> len);
			h = bpf_map_lookup_elem(&v6_hash, &k);
			if (h) {
				c = *h;
				break;
			}
		}
	}
	if (c == FILTER_DIR_TRIE)
		return lookup_v6(trie, gen, addr);
	idx = gf * FILTER_V6_CLASSES + (c & (FILTER_V6_CLASSES - 1));
	return bpf_map_lookup_elem(&v6_class, &idx);
}

static __always_inline struct rule_bits *lookup_port(void *map, __u32 gen, struct packet_info *pi, __u16 port)
{
	struct lpm_port_key k = { .prefixlen = 32, .gen = gen, .proto = pi->l4proto };
	struct rule_bits *v;

	/* A non-first fragment has no ports: only rules that do not match on
	 * ports can match it (proto-only prefix). */
	if (pi->fragment == 2)
		k.prefixlen = 16;
	k.port[0] = port >> 8;
	k.port[1] = port & 0xff;
	v = bpf_map_lookup_elem(map, &k);
	NO_MERGE();
	return v;
}

/* The port LPM result through the arrays for TCP and UDP (first fragments
 * and unfragmented), the trie otherwise. field: 0 source, 1 destination. */
static __always_inline struct rule_bits *lookup_port_arr(void *trie, __u32 gen, __u32 field, struct packet_info *pi, __u16 port)
{
	__u32 idx, *c;

	if (pi->fragment == 2 || (pi->l4proto != IPPROTO_TCP && pi->l4proto != IPPROTO_UDP))
		return lookup_port(trie, gen, pi, port);
	idx = ((((gen * 2 + field) * 2) + (pi->l4proto == IPPROTO_UDP)) << 16) | port;
	c = bpf_map_lookup_elem(&port_class, &idx);
	if (!c)
		return NULL;
	idx = (gen * 2 + field) * FILTER_PORT_CLASSES + *c;
	return bpf_map_lookup_elem(&port_bits, &idx);
}

/* Whether a lookup can still change acc: some candidate constrains the field. */
static __always_inline int needed(struct rule_bits *acc, struct rule_bits *constrained, __u32 nwords)
{
	__u32 i;

	/* Not unrolled (16 words per field would overflow the stack with
	 * spills); usually the first word answers. */
#pragma clang loop unroll(disable)
	for (i = 0; i < FILTER_WORDS; i++) {
		if (i >= nwords)
			break;
		if (acc->w[i] & constrained->w[i])
			return 1;
	}
	return 0;
}

/* acc &= v over the words in use. */
static __always_inline void and_into(struct rule_bits *acc, struct rule_bits *v, __u32 nwords)
{
	__u32 i;

	for (i = 0; i < FILTER_WORDS; i++) {
		if (i >= nwords)
			break;
		acc->w[i] &= v->w[i];
	}
}

struct count_ctx {
	struct rule_bits m; /* matching count rules not yet counted */
	__u32 gen;
	__u32 rule;         /* the winning terminal rule (FILTER_MAX_RULES: none) */
	__u32 nw;           /* words of m that are set (the rest is not written) */
	__u64 len;
};

/* bpf_loop callback: counts the next matching count rule ahead of the
 * winner; one rule per call keeps the verifier's work linear. */
static long count_one(__u64 index, void *data)
{
	struct count_ctx *c = data;
	struct rule_action *act;
	__u32 i, r = FILTER_MAX_RULES, idx;

#pragma unroll
	for (i = 0; i < FILTER_WORDS; i++) {
		__u64 w;

		if (i >= c->nw)
			break;
		w = c->m.w[i];
		if (w) {
			r = i * 64 + lowest_bit(w);
			c->m.w[i] = w & (w - 1);
			break;
		}
	}
	if (r >= c->rule)
		return 1; /* none left before the winner: stop */
	idx = c->gen * FILTER_MAX_RULES + r;
	act = bpf_map_lookup_elem(&actions, &idx);
	if (act)
		count_rule(act->counter_slot, c->len);
	return 0;
}

/*
 * AND of the field vectors, accumulated in cc->m over the first `words`
 * words (a compile-time constant at each call, so the loops unroll). A field
 * no rule constrains is not looked up: its vector is in base. Returns the
 * first rule that is not a count rule (FILTER_MAX_RULES: none, also when a
 * lookup finds nothing); the count rules ahead of it stay in cc->m.
 */
static __always_inline __u32 classify(struct packet_info *pi, struct gen_config *gc, struct iface_value *ifv,
				      __u32 gen, __u32 fam, struct count_ctx *cc, const __u32 words, __u64 *any_count)
{
	struct rule_bits *v, *ifvb = fam ? &ifv->bits[1] : &ifv->bits[0];
	__u32 feat = gc->features, fidx, i, rule = FILTER_MAX_RULES;
	__u64 any = 0;

	/* only the words in use: nothing reads beyond them (the last loop here
	 * and count_one stop at `words`), and a one-word rule set would store
	 * fifteen zeros per packet */
	for (i = 0; i < words; i++)
		cc->m.w[i] = ifvb->w[i];
	if (!fam) {
		if ((feat & FEAT_SRC_V4) && needed(&cc->m, &gc->constrained[FIELD_SRC_V4], words)) {
			if (feat & FEAT_SRC_V4_DIR)
				v = lookup_v4_dir(&src_v4, gen, gen * 2, pi->saddr);
			else
				v = lookup_v4(&src_v4, gen, pi->saddr);
			if (!v)
				return FILTER_MAX_RULES;
			and_into(&cc->m, v, words);
		}
		if ((feat & FEAT_DST_V4) && needed(&cc->m, &gc->constrained[FIELD_DST_V4], words)) {
			if (feat & FEAT_DST_V4_DIR)
				v = lookup_v4_dir(&dst_v4, gen, gen * 2 + 1, pi->daddr);
			else
				v = lookup_v4(&dst_v4, gen, pi->daddr);
			if (!v)
				return FILTER_MAX_RULES;
			and_into(&cc->m, v, words);
		}
	} else {
		if ((feat & FEAT_SRC_V6) && needed(&cc->m, &gc->constrained[FIELD_SRC_V6], words)) {
			if (feat & FEAT_SRC_V6_DIR)
				v = lookup_v6_dir(&src_v6, gc, gen, 0, pi->saddr);
			else
				v = lookup_v6(&src_v6, gen, pi->saddr);
			if (!v)
				return FILTER_MAX_RULES;
			and_into(&cc->m, v, words);
		}
		if ((feat & FEAT_DST_V6) && needed(&cc->m, &gc->constrained[FIELD_DST_V6], words)) {
			if (feat & FEAT_DST_V6_DIR)
				v = lookup_v6_dir(&dst_v6, gc, gen, 1, pi->daddr);
			else
				v = lookup_v6(&dst_v6, gen, pi->daddr);
			if (!v)
				return FILTER_MAX_RULES;
			and_into(&cc->m, v, words);
		}
	}
	if ((feat & FEAT_SPORT) && needed(&cc->m, &gc->constrained[FIELD_SPORT], words)) {
		if (feat & FEAT_SPORT_ARR)
			v = lookup_port_arr(&sport, gen, 0, pi, pi->sport);
		else
			v = lookup_port(&sport, gen, pi, pi->sport);
		if (!v)
			return FILTER_MAX_RULES;
		and_into(&cc->m, v, words);
	}
	if ((feat & FEAT_DPORT) && needed(&cc->m, &gc->constrained[FIELD_DPORT], words)) {
		if (feat & FEAT_DPORT_ARR)
			v = lookup_port_arr(&dport, gen, 1, pi, pi->dport);
		else
			v = lookup_port(&dport, gen, pi, pi->dport);
		if (!v)
			return FILTER_MAX_RULES;
		and_into(&cc->m, v, words);
	}
	if ((feat & FEAT_FLAGS) && needed(&cc->m, &gc->constrained[FIELD_FLAGS], words)) {
		fidx = gen * FILTER_FLAGS_PER_GEN +
		       (pi->l4proto == IPPROTO_TCP && pi->fragment != 2 ? pi->tcp_flags : FILTER_FLAGS_UNKNOWN);
		v = bpf_map_lookup_elem(&tcp_flags, &fidx);
		if (!v)
			return FILTER_MAX_RULES;
		and_into(&cc->m, v, words);
	}

	for (i = 0; i < words; i++) {
		__u64 w = cc->m.w[i], c;

		c = w & gc->count.w[i];
		cc->m.w[i] = c;
		any |= c;
		w &= ~c;
		if (w && rule == FILTER_MAX_RULES)
			rule = i * 64 + lowest_bit(w);
	}
	*any_count = any;
	return rule;
}

/* acc = x & y & z (one load of each, one store per word). Every word:
 * a bound read from the generation would fork the verifier's state at each
 * word, and words beyond the rules are 0 in the interface's vector anyway. */
static __always_inline void and3_into(struct rule_bits *acc, struct rule_bits *x, struct rule_bits *y,
				      struct rule_bits *z)
{
	__u32 i;

#pragma unroll
	for (i = 0; i < FILTER_WORDS; i++)
		acc->w[i] = x->w[i] & y->w[i] & z->w[i];
}

/*
 * Rule sets beyond one word, in two passes instead of one per field: the
 * address lookups, then acc = base & interface & source & destination in one
 * pass; the port and flag lookups, then one pass that ANDs those vectors
 * into acc word by word in registers and stops at the first word holding a
 * terminal rule (words after the winner's are not touched). The field-major
 * AND (classify) loads and stores the running vector once per field. Two
 * passes rather than one: with every pointer live across one loop the
 * verifier explores each combination of lookup outcomes through it (E2BIG).
 * No lookup is skipped here (the skip check is a pass of its own); a field
 * the generation does not look up contributes `base`, already in the AND.
 */
/* One word of the last pass: count rules kept for count_one, stop at the first terminal rule. */
#define WIDE_WORD(EXPR)                                          \
	{                                                        \
		__u64 w = (EXPR), c = w & gc->count.w[i];        \
		cc->m.w[i] = c;                                  \
		any |= c;                                        \
		w &= ~c;                                         \
		if (w) {                                         \
			rule = i * 64 + lowest_bit(w);           \
			cc->nw = i + 1;                          \
			break;                                   \
		}                                                \
	}

#define WIDE_WORD_NO_COUNT(EXPR)                                 \
	{                                                        \
		__u64 w = (EXPR);                                \
		if (w) {                                         \
			rule = i * 64 + lowest_bit(w);           \
			break;                                   \
		}                                                \
	}

static __always_inline __u32 classify_wide(struct packet_info *pi, struct gen_config *gc, struct iface_value *ifv,
					   __u32 gen, __u32 fam, struct count_ctx *cc, __u64 *any_count)
{
	struct rule_bits *base = fam ? &gc->base[1] : &gc->base[0];
	struct rule_bits *a = base, *b = base, *p = base, *q = base, *fl = base;
	__u32 feat = gc->features, fidx, i, rule = FILTER_MAX_RULES;
	__u64 any = 0;

	if (!fam) {
		if (feat & FEAT_SRC_V4) {
			if (feat & FEAT_SRC_V4_DIR)
				a = lookup_v4_dir(&src_v4, gen, gen * 2, pi->saddr);
			else
				a = lookup_v4(&src_v4, gen, pi->saddr);
			if (!a)
				return FILTER_MAX_RULES;
		}
		if (feat & FEAT_DST_V4) {
			if (feat & FEAT_DST_V4_DIR)
				b = lookup_v4_dir(&dst_v4, gen, gen * 2 + 1, pi->daddr);
			else
				b = lookup_v4(&dst_v4, gen, pi->daddr);
			if (!b)
				return FILTER_MAX_RULES;
		}
	} else {
		if (feat & FEAT_SRC_V6) {
			if (feat & FEAT_SRC_V6_DIR)
				a = lookup_v6_dir(&src_v6, gc, gen, 0, pi->saddr);
			else
				a = lookup_v6(&src_v6, gen, pi->saddr);
			if (!a)
				return FILTER_MAX_RULES;
		}
		if (feat & FEAT_DST_V6) {
			if (feat & FEAT_DST_V6_DIR)
				b = lookup_v6_dir(&dst_v6, gc, gen, 1, pi->daddr);
			else
				b = lookup_v6(&dst_v6, gen, pi->daddr);
			if (!b)
				return FILTER_MAX_RULES;
		}
	}
	and3_into(&cc->m, fam ? &ifv->bits[1] : &ifv->bits[0], a, b);

	if (feat & FEAT_SPORT) {
		if (feat & FEAT_SPORT_ARR)
			p = lookup_port_arr(&sport, gen, 0, pi, pi->sport);
		else
			p = lookup_port(&sport, gen, pi, pi->sport);
		if (!p)
			return FILTER_MAX_RULES;
	}
	if (feat & FEAT_DPORT) {
		if (feat & FEAT_DPORT_ARR)
			q = lookup_port_arr(&dport, gen, 1, pi, pi->dport);
		else
			q = lookup_port(&dport, gen, pi, pi->dport);
		if (!q)
			return FILTER_MAX_RULES;
	}
	if (feat & FEAT_FLAGS) {
		fidx = gen * FILTER_FLAGS_PER_GEN +
		       (pi->l4proto == IPPROTO_TCP && pi->fragment != 2 ? pi->tcp_flags : FILTER_FLAGS_UNKNOWN);
		fl = bpf_map_lookup_elem(&tcp_flags, &fidx);
		if (!fl)
			return FILTER_MAX_RULES;
	}

	/* Without count rules nothing is kept for count_one: a load and a store
	 * less per word. (A variant without the flags vector as well, base when
	 * flags are not looked up, took the tc program past the verifier's limit.) */
	cc->nw = FILTER_WORDS;
	if (feat & FEAT_COUNT) {
		for (i = 0; i < FILTER_WORDS; i++)
			WIDE_WORD(cc->m.w[i] & p->w[i] & q->w[i] & fl->w[i]);
	} else {
		for (i = 0; i < FILTER_WORDS; i++)
			WIDE_WORD_NO_COUNT(cc->m.w[i] & p->w[i] & q->w[i] & fl->w[i]);
	}
	*any_count = any;
	return rule;
}

/* ---- crossproduct (filter_common.h) ---- */

/* Both address fields (enum xp_field) */
#define XP_ADDRS ((1u << XP_SRC) | (1u << XP_DST))

/* Returned by classify_xp when the bit vectors have to decide. */
#define XP_NO (FILTER_MAX_RULES + 1)

static __always_inline __u32 xp_cell(__u32 gen, __u32 cell)
{
	struct xp_cells *v;
	__u32 idx;

	/* No bound of its own: the array's bound keeps the load in the map, and
	 * valid states never leave the generation's tables. */
	idx = gen * (FILTER_XP_CELLS / 4) + (cell >> 2);
	v = bpf_map_lookup_elem(&xp_table, &idx);
	if (!v)
		return FILTER_XP_FALLBACK;
	return v->c[cell & 3];
}

/* Whether class c of the group's direct field settles the group (settle_bits). */
static __always_inline int xp_settles(struct xp_chain *x, __u32 left, __u32 c)
{
	__u64 w = c >> 6;

	/* the mask in the program text: the compiler may know c < 2048 where the
	 * verifier, after a spill, does not */
	asm volatile("%0 &= %1" : "+r"(w) : "i"(FILTER_XP_SETTLE_WORDS - 1));
	return (x->settle_bits[left ? 0 : 1][w] >> (c & 63)) & 1;
}

/* One field of the chain: the state of its group becomes the cell of (state,
 * class). A field's bit in `todo` says it still has to be looked up; a
 * settled state (a settle cell, or FILTER_XP_SETTLED in a state cell: no
 * later field of the group can change it) clears the group's bits, so their
 * lookups are skipped. The settled flag only decides (predictably) what is
 * skipped: the final load's index depends on the field lookups and tables
 * alone. One mask in a register instead of a settled flag per group and a
 * test of both per field: the chain's glue was most of what a 1024-rule UDP
 * packet cost over a one-rule set (docs/benchmarks.md). */
#define XP_STEP(F, CLS)                                                           \
	do {                                                                      \
		__u32 c_ = (CLS), inl_ = lb & (1u << (F));                        \
		if (x->direct & (1u << (F))) {                                    \
			if ((x->settle & (1u << (F))) && xp_settles(x, inl_, c_)) \
				todo &= inl_ ? ~lb : ~rb;                         \
		} else {                                                          \
			c_ = xp_cell(gen, x->off[F] + (inl_ ? l : r) * x->n[F] + c_); \
			if (c_ & FILTER_XP_SETTLED)                               \
				todo &= inl_ ? ~lb : ~rb;                         \
			c_ &= ~FILTER_XP_SETTLED;                                 \
		}                                                                 \
		if (inl_)                                                         \
			l = c_;                                                   \
		else                                                              \
			r = c_;                                                   \
	} while (0)

/*
 * The first matching rule of an IPv4 TCP/UDP packet through the
 * crossproduct tables: one class per field, one table load per field, one
 * for the final pair. FILTER_MAX_RULES: no rule; XP_NO: the bit vectors
 * decide (another protocol, a later fragment, an address the trie answers,
 * count rules ahead of the winner).
 */
static __always_inline __u32 classify_xp(struct packet_info *pi, struct gen_config *gc, struct iface_value *ifv,
					 __u32 gen)
{
	struct xp_chain *x;
	__u32 l, r = 0, c, todo, lb, rb, idx, udp, *pc;

	if (pi->family != 4 || pi->fragment == 2)
		return XP_NO;
	if (pi->l4proto == IPPROTO_TCP)
		udp = 0;
	else if (pi->l4proto == IPPROTO_UDP)
		udp = 1;
	else
		return XP_NO;
	x = &gc->xp[udp];
	lb = x->left;
	rb = x->right;
	/* Both addresses first in their groups (direct): their two DIR classes
	 * are the two states, and a group with a second field (settle) is done
	 * when the class settles it, as it does for a packet outside the rules
	 * that pair an address with a port. The bench's UDP chain, (destination,
	 * source port)(source, destination port), is such a chain. Two lookups
	 * and the final load, without the per-field steps; a group the class
	 * does not settle takes the steps below (the address lookups again). */
	if ((x->direct & XP_ADDRS) == XP_ADDRS) {
		__u32 cs = dir4_class(gen * 2, pi->saddr), cd = dir4_class(gen * 2 + 1, pi->daddr), sl = lb & 1;

		if (cs >= FILTER_DIR4_CLASSES || cd >= FILTER_DIR4_CLASSES)
			return XP_NO;
		if (((x->settle & (1u << XP_SRC)) && !xp_settles(x, sl, cs)) ||
		    ((x->settle & (1u << XP_DST)) && !xp_settles(x, !sl, cd)))
			goto steps;
		l = sl ? cs : cd;
		r = sl ? cd : cs;
		goto final;
	}
steps:
	todo = lb | rb;
	l = ifv->xp_class;
	if (todo & (1u << XP_SRC)) {
		c = dir4_class(gen * 2, pi->saddr);
		if (c >= FILTER_DIR4_CLASSES)
			return XP_NO;
		XP_STEP(XP_SRC, c);
	}
	if (todo & (1u << XP_DST)) {
		c = dir4_class(gen * 2 + 1, pi->daddr);
		if (c >= FILTER_DIR4_CLASSES)
			return XP_NO;
		XP_STEP(XP_DST, c);
	}
	if (todo & (1u << XP_SPORT)) {
		idx = (((gen * 2) * 2 + udp) << 16) | pi->sport;
		pc = bpf_map_lookup_elem(&port_class, &idx);
		if (!pc)
			return XP_NO;
		XP_STEP(XP_SPORT, *pc);
	}
	if (todo & (1u << XP_DPORT)) {
		idx = (((gen * 2 + 1) * 2 + udp) << 16) | pi->dport;
		pc = bpf_map_lookup_elem(&port_class, &idx);
		if (!pc)
			return XP_NO;
		XP_STEP(XP_DPORT, *pc);
	}
	if (todo & (1u << XP_FLAGS))
		XP_STEP(XP_FLAGS, xp_cell(gen, pi->tcp_flags));
final:
	if (l >= FILTER_XP_MAX_STATE || r >= FILTER_XP_MAX_STATE)
		return XP_NO;
	c = xp_cell(gen, x->final_off + l * x->right_states + r);
	if (c == FILTER_XP_NONE)
		return FILTER_MAX_RULES;
	if (c >= FILTER_MAX_RULES)
		return XP_NO;
	return c;
}

/* ---- the filter ---- */

/* The interface's entry for this generation and direction, or NULL when
 * the interface is not managed (two array loads; a hash only for ifindexes
 * beyond FILTER_IFINDEX_DIRECT). */
static __noinline __u32 big_iface_slot(__u32 ifindex)
{
	__u32 *p = bpf_map_lookup_elem(&iface_slots_big, &ifindex);

	return p ? *p : 0;
}

static __always_inline struct iface_value *iface_entry(__u32 ifindex, __u32 gen, __u32 dir)
{
	struct iface_value *v;
	__u32 *p, slot = 0, idx;

	/* Two separate calls on purpose: with one call site and the map
	 * chosen at run time, the verifier could not inline the array lookup
	 * (an indirect call instead of two loads). */
	if (ifindex < FILTER_IFINDEX_DIRECT) {
		p = bpf_map_lookup_elem(&iface_slots, &ifindex);
		if (p)
			slot = *p;
	} else {
		slot = big_iface_slot(ifindex);
	}
	if (!slot || slot > FILTER_MAX_IFACES)
		return NULL;
	idx = (gen * 2 + dir) * FILTER_MAX_IFACES + slot - 1;
	v = bpf_map_lookup_elem(&iface_cfg, &idx);
	if (!v || v->ifindex != ifindex)
		return NULL;
	return v;
}

/* Drop events only when this generation logs (gc: the generation's config,
 * NULL on the default path when it could not be read), and only when the
 * rule's bucket may be open (filter_log.h): during a flood a suppressed drop
 * costs one array load and a jiffies read. */
#define LOG_DROP(RULE, SLOT, VERDICT)                                                            \
	do {                                                                                     \
		if (gc && (gc->features & FEAT_LOG)) {                                           \
			__u32 s_ = (SLOT);                                                       \
			struct log_bucket *b_ = bpf_map_lookup_elem(&log_bucket, &s_);           \
			if (b_ && b_->open_jiffies <= bpf_jiffies64())                           \
				log_drop(&pi, ifindex, (RULE) << 16 | s_, gen | dir << 8 | (VERDICT) << 16); \
		}                                                                                \
	} while (0)

static __always_inline enum filter_result filter_packet(void *data, void *data_end, __u64 len,
							__u32 ifindex, __u32 dir)
{
	struct packet_info pi = {};
	struct count_ctx cc;
	struct iface_value *ifv;
	struct gen_config *gc = NULL;
	struct rule_action *act;
	enum parse_result res;
	__u32 zero = 0, gen, rule, idx, fam;
	__u64 any_count = 0;
	__u32 *genp, *bs;

	res = parse_packet(data, data_end, len, &pi);
	if (res == PARSE_MALFORMED) {
		count_verdict(dir, VERDICT_MALFORMED, len);
#ifdef FILTER_HOOK_XDP
		return FILTER_DROP;
#else
		return FILTER_PASS; /* the local stack built it: let it judge */
#endif
	}
	if (res == PARSE_NON_IP) {
		count_verdict(dir, VERDICT_NON_IP, len);
		return FILTER_PASS;
	}

	genp = bpf_map_lookup_elem(&active, &zero);
	gen = genp ? (*genp & 1) : 0;

	ifv = iface_entry(ifindex, gen, dir);
	if (!ifv) {
		count_verdict(dir, VERDICT_UNMANAGED, len);
		return FILTER_PASS;
	}
	gc = bpf_map_lookup_elem(&gen_config, &gen);
	if (!gc)
		goto deflt;

	if (pi.fragment == 2)
		count_verdict(dir, VERDICT_FRAGMENT, len);

	fam = pi.family == 4 ? 0 : 1;
	bs = bpf_map_lookup_elem(&block_active, &fam);
	if (bs && *bs && blocked(&pi, dir == FILTER_DIR_INGRESS ? pi.saddr : pi.daddr)) {
		count_verdict(dir, VERDICT_BLOCKED, len);
		LOG_DROP(FILTER_MAX_RULES, LOG_SLOT_BLOCKED + dir, VERDICT_BLOCKED);
		return FILTER_DROP;
	}

	/* Crossproduct tables when the generation has them (large rule sets):
	 * a fixed number of array loads instead of the AND. */
	if (gc->features & FEAT_XP) {
		rule = classify_xp(&pi, gc, ifv, gen);
		if (rule <= FILTER_MAX_RULES)
			goto decided;
	}

	/* A rule set of up to 64 rules (one word) gets its own copy of the
	 * classifier with every loop folded to one iteration. */
	if (gc->words <= 1) {
		rule = classify(&pi, gc, ifv, gen, fam, &cc, 1, &any_count);
		cc.nw = 1;
	} else {
		rule = classify_wide(&pi, gc, ifv, gen, fam, &cc, &any_count);
	}

	/* Count rules ahead of the winner see the packet and let it go on. */
	if (any_count) {
		cc.gen = gen;
		cc.rule = rule;
		cc.len = len;
		bpf_loop(FILTER_MAX_COUNT_HITS, count_one, &cc, 0);
	}

decided:
	if (rule >= FILTER_MAX_RULES)
		goto deflt;
	idx = gen * FILTER_MAX_RULES + rule;
	act = bpf_map_lookup_elem(&actions, &idx);
	if (!act)
		goto deflt;

	switch (act->action) {
	case FILTER_ACT_DROP:
		count_rule(act->counter_slot, len);
		count_verdict(dir, VERDICT_RULE_DROP, len);
		LOG_DROP(rule, act->counter_slot, VERDICT_RULE_DROP);
		return FILTER_DROP;
	case FILTER_ACT_RATE_LIMIT: {
		struct rule_stat *s = count_rule(act->counter_slot, len);

		if (rate_exceeded(act, &pi, len)) {
			if (s)
				s->limited++;
			count_verdict(dir, VERDICT_RATE_DROP, len);
			LOG_DROP(rule, act->counter_slot, VERDICT_RATE_DROP);
			return FILTER_DROP;
		}
		count_verdict(dir, VERDICT_RATE_PASS, len);
		return FILTER_PASS;
	}
	default:
		count_rule(act->counter_slot, len);
		count_verdict(dir, VERDICT_RULE_PASS, len);
		return FILTER_PASS;
	}

deflt:
	if (ifv->default_action == FILTER_ACT_DROP) {
		count_verdict(dir, VERDICT_DEFAULT_DROP, len);
		LOG_DROP(FILTER_MAX_RULES, LOG_SLOT_DEFAULT + dir, VERDICT_DEFAULT_DROP);
		return FILTER_DROP;
	}
	count_verdict(dir, VERDICT_DEFAULT_PASS, len);
	return FILTER_PASS;
}

#ifdef FILTER_HOOK_XDP
SEC("xdp")
int xdp_filter(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;

	return filter_packet(data, data_end, data_end - data, ctx->ingress_ifindex,
			     FILTER_DIR_INGRESS) == FILTER_DROP ? XDP_DROP : XDP_PASS;
}
#endif

#ifdef FILTER_HOOK_TC
/* Headers of locally built packets may sit in paged data: pull them into
 * the linear area the parser reads. A subprogram of its own, so the
 * compiler cannot fold the context reads after it into pointer arithmetic
 * the verifier refuses. */
static __noinline int pull_headers(struct __sk_buff *skb)
{
	__u32 want = skb->len < 256 ? skb->len : 256;

	if (skb->data_end - skb->data < want)
		return bpf_skb_pull_data(skb, want);
	return 0;
}

SEC("tc")
int tc_filter(struct __sk_buff *skb)
{
	void *data, *data_end;

	pull_headers(skb);
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	return filter_packet(data, data_end, skb->len, skb->ifindex, FILTER_DIR_EGRESS) == FILTER_DROP
		       ? TC_ACT_SHOT
		       : TC_ACT_OK;
}
#endif

#endif /* PATRONUS_FILTER_PROG_H */
