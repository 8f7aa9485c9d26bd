/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Drop events of the fast-path filter (included by filter_prog.h; mirrored
 * in src/fastpath/layout.ts and decoded by src/events/xdp.ts). A dropped
 * packet whose rule logs is reported through a BPF ring buffer,
 * rate-limited per rule in the kernel, so a flood costs the control plane at
 * most `rate` events per second per rule (plus the burst).
 *
 * Pay per feature: nothing here runs unless the active generation sets
 * FEAT_LOG (gen_config.features), i.e. some rule or policy logs.
 *
 * The limiter is GCRA (a token bucket written as one "theoretical arrival
 * time" per rule): an event is due when tat - now <= tolerance, and then
 * tat advances by one interval. One compare-and-swap per event makes the
 * bound exact across CPUs: a CPU that loses the race does not report.
 *
 * A flood must not pay for the limiter per packet: the bucket also holds
 * open_jiffies, a hint written with every decision, "do not ask before
 * jiffies reaches this". The drop path compares it with bpf_jiffies64() (a
 * plain load; clock reads cost ~15-20 ns here) and calls log_drop() only
 * when an event may be due. The hint rounds up to the next tick, so while
 * a rule's bucket is empty (a flood) its next event may come up to one tick
 * (1/CONFIG_HZ) after it was due; the drops in between are in that event's
 * sample. A bucket that is not empty (traffic below the rate, burst >= 2)
 * leaves the hint at 0: such drops always reach the limiter. Userspace sets
 * the hint to ~0 for slots that do not log.
 *
 * No per-packet counter either: what an event stands for comes from the
 * counters the filter keeps anyway (rule_stats, verdict_stats), per CPU:
 * sample = drops now - drops at this CPU's previous event of the slot.
 * So emitted + suppressed + lost accounts for every drop of a logging rule
 * (userspace adds the drops since each CPU's last event to suppressed).
 */
#ifndef PATRONUS_FILTER_LOG_H
#define PATRONUS_FILTER_LOG_H

/* Limiter slots: the counter slots of the rules, then pseudo rules per direction. */
#define LOG_SLOT_DEFAULT FILTER_COUNTER_SLOTS       /* + dir: an interface's default-drop policy */
#define LOG_SLOT_BLOCKED (FILTER_COUNTER_SLOTS + 2) /* + dir: the dynamic blocklist */
#define LOG_SLOTS (FILTER_COUNTER_SLOTS + 4)
#define LOG_RING_BYTES (256 * 1024)

enum log_flags {
	LOG_DEFAULT_DROP = 1 << 0, /* log default-policy drops */
	LOG_BLOCKED = 1 << 1,      /* log blocklist drops */
};

/* Per generation (written by userspace with the rule set). */
struct log_config {
	__u64 interval_ns;  /* 1e9 / rate */
	__u64 tolerance_ns; /* (burst - 1) * interval_ns */
	__u64 ns_per_jiffy; /* 1e9 / CONFIG_HZ (0: no hint, every drop asks the limiter) */
	__u32 rate;         /* events per second per rule, reported as is */
	__u32 flags;        /* LOG_* */
	struct rule_bits rules; /* rules (by position) whose drops log */
};

struct log_bucket {
	__u64 tat;          /* theoretical arrival time, bpf_ktime_get_ns() */
	__u64 open_jiffies; /* hint: no event is due before jiffies reaches this */
};

/* Per CPU and slot. */
struct log_stat {
	__u64 emitted;    /* events written to the ring */
	__u64 suppressed; /* drops reported by no event, up to this CPU's last event */
	__u64 lost;       /* events due but the ring was full (reader too slow) */
	__u64 seen;       /* the slot's drop counter on this CPU at its last event */
};

/* 64 bytes; addresses as in packet_info (IPv4 in the first 4 bytes). */
struct log_event {
	__u64 time_ns;  /* bpf_ktime_get_ns() */
	__u32 ifindex;
	__u32 slot;     /* rule counter slot, LOG_SLOT_DEFAULT + dir or LOG_SLOT_BLOCKED + dir */
	__u32 sample;   /* drops this event stands for (itself and those suppressed before it on this CPU) */
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

/* The drops of a slot so far on this CPU (the counters the filter keeps anyway). */
static __always_inline __u64 log_drops_so_far(__u32 slot, __u32 verdict, __u32 dir)
{
	if (slot < FILTER_COUNTER_SLOTS) {
		struct rule_stat *r = bpf_map_lookup_elem(&rule_stats, &slot);

		if (!r)
			return 0;
		return verdict == VERDICT_RATE_DROP ? r->limited : r->packets;
	} else {
		__u32 idx = dir * VERDICT_MAX + verdict;
		struct verdict_stat *v = bpf_map_lookup_elem(&verdict_stats, &idx);

		return v ? v->packets : 0;
	}
}

/* The jiffies value from which to ask the limiter again for an event due at
 * time `at` (rounded up: at most one tick late, see above). */
static __always_inline __u64 log_open_jiffies(__u64 at, __u64 now, __u64 now_j, __u64 npj)
{
	if (!npj || at <= now)
		return 0;
	return now_j + (at - now + npj - 1) / npj;
}

/* rule_slot: rule position in the generation << 16 | limiter slot (the
 * pseudo rules pass FILTER_MAX_RULES; their slot alone decides); how:
 * gen | dir << 8 | verdict << 16 (BPF calls take at most five arguments).
 * Not inlined: only drops that may be reported get here. */
static __noinline void log_drop(struct packet_info *pi, __u32 ifindex, __u32 rule_slot, __u32 how)
{
	__u32 rule = rule_slot >> 16, slot = rule_slot & 0xffff;
	__u32 gen = how & 1, dir = (how >> 8) & 1, verdict = (how >> 16) & 0xff;
	struct log_config *cfg;
	struct log_bucket *b;
	struct log_stat *st;
	struct log_event *ev;
	__u64 now, now_j, tat, next, drops, sample;

	cfg = bpf_map_lookup_elem(&log_cfg, &gen);
	if (!cfg)
		return;
	if (slot >= LOG_SLOT_BLOCKED) {
		if (!(cfg->flags & LOG_BLOCKED))
			return;
	} else if (slot >= LOG_SLOT_DEFAULT) {
		if (!(cfg->flags & LOG_DEFAULT_DROP))
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
	now_j = bpf_jiffies64();
	tat = b->tat;
	next = tat > now ? tat : now;
	if (next - now > cfg->tolerance_ns) {
		b->open_jiffies = log_open_jiffies(tat - cfg->tolerance_ns, now, now_j, cfg->ns_per_jiffy);
		return;
	}
	if (__sync_val_compare_and_swap(&b->tat, tat, next + cfg->interval_ns) != tat)
		return; /* another CPU took this event */
	b->open_jiffies = log_open_jiffies(next + cfg->interval_ns - cfg->tolerance_ns, now, now_j, cfg->ns_per_jiffy);

	drops = log_drops_so_far(slot, verdict, dir);
	sample = drops > st->seen ? drops - st->seen : 1;
	st->seen = drops;
	st->suppressed += sample - 1;
	ev = bpf_ringbuf_reserve(&log_events, sizeof(*ev), 0);
	if (!ev) {
		st->lost++;
		return;
	}
	ev->time_ns = now;
	ev->ifindex = ifindex;
	ev->slot = slot;
	ev->sample = sample > 0xffffffff ? 0xffffffff : (__u32)sample;
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
