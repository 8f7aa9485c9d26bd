/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Drop events of the fast-path filter (included by filter_prog.h; mirrored
 * in src/events/xdp.ts). A dropped packet whose rule logs is reported
 * through a BPF ring buffer, rate-limited per rule in the kernel so a flood
 * costs the control plane at most `rate` events per second per rule.
 *
 * Pay per feature: the program looks at any of this only when the active
 * generation sets FEAT_LOG (gen_config.features), i.e. when some rule (or
 * the default-drop policy) logs; otherwise a drop costs one bit test.
 *
 * The limiter is GCRA (a token bucket written as one "theoretical arrival
 * time" per rule): an event is due when tat - now <= tolerance, and then
 * tat advances by one interval. One compare-and-swap per event makes the
 * bound exact across CPUs: a CPU that loses the race counts the packet as
 * suppressed, never as a second event. Each event carries how many drops it
 * stands for (1 + those suppressed since the previous event of its rule).
 */
#ifndef PATRONUS_FILTER_LOG_H
#define PATRONUS_FILTER_LOG_H

/* Limiter slots: the counter slots of the rules, then two pseudo rules. */
#define LOG_SLOT_DEFAULT FILTER_COUNTER_SLOTS       /* an interface's default-drop policy */
#define LOG_SLOT_BLOCKED (FILTER_COUNTER_SLOTS + 1) /* the dynamic blocklist */
#define LOG_SLOTS (FILTER_COUNTER_SLOTS + 2)
#define LOG_RING_BYTES (256 * 1024)

enum log_flags {
	LOG_DEFAULT_DROP = 1 << 0, /* log default-policy drops */
	LOG_BLOCKED = 1 << 1,      /* log blocklist drops */
};

/* Per generation (written by userspace with the rule set). */
struct log_config {
	__u64 interval_ns;  /* 1e9 / rate */
	__u64 tolerance_ns; /* (burst - 1) * interval_ns */
	__u32 rate;         /* events per second per rule, reported as is */
	__u32 flags;        /* LOG_* */
	struct rule_bits rules; /* rules (by position) whose drops log */
};

struct log_bucket {
	__u64 tat;     /* theoretical arrival time, bpf_ktime_get_ns() */
	__u64 pending; /* drops suppressed since the last event */
};

struct log_stat {
	__u64 emitted;    /* events written to the ring */
	__u64 suppressed; /* drops the limiter did not report */
	__u64 lost;       /* events due but the ring was full (reader too slow) */
};

/* 64 bytes; addresses as in packet_info (IPv4 in the first 4 bytes). */
struct log_event {
	__u64 time_ns;  /* bpf_ktime_get_ns() */
	__u32 ifindex;
	__u32 slot;     /* rule counter slot, LOG_SLOT_DEFAULT or LOG_SLOT_BLOCKED */
	__u32 sample;   /* drops this event stands for (1 + suppressed before it) */
	__u32 rate;     /* the limiter's rate when it was emitted */
	__u8 verdict;   /* enum filter_verdict */
	__u8 dir;       /* enum filter_dir */
	__u8 family;    /* 4 or 6 */
	__u8 l4proto;
	__u16 sport;    /* host order; ICMP: 0 */
	__u16 dport;    /* host order; ICMP: type << 8 | code */
	__u8 saddr[16];
	__u8 daddr[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, LOG_RING_BYTES);
} log_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct log_config);
} log_cfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, LOG_SLOTS);
	__type(key, __u32);
	__type(value, struct log_bucket);
} log_bucket SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, LOG_SLOTS);
	__type(key, __u32);
	__type(value, struct log_stat);
} log_stats SEC(".maps");

/* rule_slot: rule position in the generation << 16 | limiter slot (the
 * pseudo rules pass FILTER_MAX_RULES; their slot alone decides); how:
 * gen | dir << 8 | verdict << 16 (BPF calls take at most five arguments).
 * Not inlined: the drop path is the cold one. */
static __noinline void log_drop(struct packet_info *pi, __u32 ifindex, __u32 rule_slot, __u32 how)
{
	__u32 rule = rule_slot >> 16, slot = rule_slot & 0xffff;
	__u32 gen = how & 1, dir = (how >> 8) & 1, verdict = (how >> 16) & 0xff;
	struct log_config *cfg;
	struct log_bucket *b;
	struct log_stat *st;
	struct log_event *ev;
	__u64 now, tat, next, pending;

	cfg = bpf_map_lookup_elem(&log_cfg, &gen);
	if (!cfg)
		return;
	if (slot == LOG_SLOT_DEFAULT) {
		if (!(cfg->flags & LOG_DEFAULT_DROP))
			return;
	} else if (slot == LOG_SLOT_BLOCKED) {
		if (!(cfg->flags & LOG_BLOCKED))
			return;
	} else {
		__u32 word = rule / 64;

		if (rule >= FILTER_MAX_RULES)
			return;
		/* keep the mask: the verifier needs the bound on the index itself */
		asm volatile("" : "+r"(word));
		word &= FILTER_WORDS - 1;
		if (!((cfg->rules.w[word] >> (rule % 64)) & 1))
			return;
	}
	if (slot >= LOG_SLOTS)
		return;
	b = bpf_map_lookup_elem(&log_bucket, &slot);
	st = bpf_map_lookup_elem(&log_stats, &slot);
	if (!b || !st)
		return;
	now = bpf_ktime_get_ns();
	tat = b->tat;
	next = tat > now ? tat : now;
	if (next - now > cfg->tolerance_ns || __sync_val_compare_and_swap(&b->tat, tat, next + cfg->interval_ns) != tat) {
		__sync_fetch_and_add(&b->pending, 1);
		st->suppressed++;
		return;
	}
	ev = bpf_ringbuf_reserve(&log_events, sizeof(*ev), 0);
	if (!ev) {
		st->lost++;
		return;
	}
	pending = b->pending;
	if (pending)
		__sync_fetch_and_add(&b->pending, -pending);
	ev->time_ns = now;
	ev->ifindex = ifindex;
	ev->slot = slot;
	ev->sample = 1 + (__u32)pending;
	ev->rate = cfg->rate;
	ev->verdict = verdict;
	ev->dir = dir;
	ev->family = pi->family;
	ev->l4proto = pi->l4proto;
	ev->sport = pi->sport;
	ev->dport = pi->dport;
	__builtin_memcpy(ev->saddr, pi->saddr, 16);
	__builtin_memcpy(ev->daddr, pi->daddr, 16);
	bpf_ringbuf_submit(ev, 0);
	st->emitted++;
}

#endif
