/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Contract between the fast-path filter (xdp_filter.bpf.c, tc_filter.bpf.c,
 * include/filter_prog.h) and userspace (src/fastpath/generated/filter.ts is generated from the
 * object's BTF at build time; src/fastpath/layout.ts builds its codecs on it).
 *
 * Classification is the linear bit-vector search of bpf-iptables/Polycube:
 * every match field has its own map whose value is the bit vector of the
 * rules that field value allows; the program ANDs the vectors and the
 * lowest set bit is the winning rule (rule order = priority).
 *
 * Hitless updates: every classification map holds two generations of the
 * rule set, told apart by a generation byte in the key (or the index;
 * gen_config and iface_cfg too).
 * Userspace writes the inactive generation, flips `active`, and waits one
 * RCU grace period (an update of the `rcu_barrier` map-in-map makes the
 * syscall wait for running programs) before it touches the old generation.
 */
#ifndef PATRONUS_FILTER_COMMON_H
#define PATRONUS_FILTER_COMMON_H

/* Rule capacity: FILTER_WORDS * 64 rules. Change with -DFILTER_WORDS=N. */
#ifndef FILTER_WORDS
#define FILTER_WORDS 16
#endif
#define FILTER_MAX_RULES (FILTER_WORDS * 64)
/* Counter slots outlive rule positions (a rule keeps its counters when rules
 * before it change); both generations may hold distinct rules at once. */
#define FILTER_COUNTER_SLOTS (2 * FILTER_MAX_RULES)
#define FILTER_NAME_LEN 64
/* Index into tcp_flags for packets whose flags are unknown (non-TCP and
 * non-first fragments): only rules without a TCP-flags match are set there. */
#define FILTER_FLAGS_UNKNOWN 256
#define FILTER_FLAGS_PER_GEN 257
/* Bound on non-terminal "count" rules one packet can pass through. */
#define FILTER_MAX_COUNT_HITS 32

/* Default map sizes (userspace resizes them before load). */
#define FILTER_DEFAULT_PREFIXES 262144
#define FILTER_DEFAULT_PORT_PREFIXES 65536
#define FILTER_DEFAULT_RATE_STATE 65536
#define FILTER_DEFAULT_BLOCKLIST 65536

struct rule_bits {
	__u64 w[FILTER_WORDS];
};

/* LPM keys: prefixlen counts the generation byte (8 bits) too. */
struct lpm_v4_key {
	__u32 prefixlen;
	__u8 gen;
	__u8 addr[4];
	__u8 pad[3];
};

struct lpm_v6_key {
	__u32 prefixlen;
	__u8 gen;
	__u8 addr[16];
	__u8 pad[3];
};

/* gen(8) proto(8) port(16, network order): a port range is a few prefixes;
 * prefixlen 16 (gen+proto) is "this protocol, any port". For ICMP the
 * "port" is type << 8 | code (destination field). */
struct lpm_port_key {
	__u32 prefixlen;
	__u8 gen;
	__u8 proto;
	__u8 port[2];
};

enum filter_dir {
	FILTER_DIR_INGRESS = 0,
	FILTER_DIR_EGRESS = 1,
};

/* Interfaces: ifindex -> slot through an array (iface_slots, ifindex below
 * FILTER_IFINDEX_DIRECT) or, for larger ifindexes, a small hash
 * (iface_slots_big); the value is slot + 1, 0 = no slot. A slot is stable
 * across generations; iface_cfg holds one entry per (generation, direction,
 * slot). Arrays on the hot path: a hash lookup costs ~20 ns per packet. */
#define FILTER_MAX_IFACES 256
#define FILTER_IFINDEX_DIRECT 65536
#define FILTER_IFACE_ENTRIES (2 * 2 * FILTER_MAX_IFACES) /* (gen * 2 + dir) * MAX_IFACES + slot */

enum filter_action {
	FILTER_ACT_PASS = 0,
	FILTER_ACT_DROP = 1,
	FILTER_ACT_RATE_LIMIT = 2,
	FILTER_ACT_COUNT = 3, /* count and go on to the next matching rule */
};

struct iface_value {
	/* The scalars first: with the first words of bits[0] they share one
	 * cache line, which is all a small IPv4 rule set reads of the entry. */
	__u32 default_action;    /* FILTER_ACT_PASS or FILTER_ACT_DROP */
	__u32 ifindex;           /* the interface this entry configures; 0: unmanaged */
	__u32 xp_class;          /* IPv4 crossproduct (below): this entry's class, the first left state */
	__u32 xp_pad;
	/* [0] IPv4, [1] IPv6: the rules that apply on this interface and
	 * direction, ANDed with the generation's base for that family (the
	 * vectors of the fields it does not look up): one vector less per packet */
	struct rule_bits bits[2];
};

/*
 * Pay per feature: a lookup runs only when some rule of the generation
 * constrains its field (FEAT_* set in gen_config.features). A field no rule
 * constrains holds only its zero-length entry; its vector is folded into
 * base[family] instead, which every packet ANDs anyway. Per generation, so a
 * rule set that starts using a field switches its lookup on in the same
 * atomic flip that brings the rule.
 */
enum filter_feature {
	FEAT_SRC_V4 = 1 << 0,
	FEAT_DST_V4 = 1 << 1,
	FEAT_SRC_V6 = 1 << 2,
	FEAT_DST_V6 = 1 << 3,
	FEAT_SPORT = 1 << 4,
	FEAT_DPORT = 1 << 5,
	FEAT_FLAGS = 1 << 6,
	FEAT_SRC_V4_DIR = 1 << 7, /* source IPv4 through v4_dir16/v4_dir8 (below), not the trie */
	FEAT_DST_V4_DIR = 1 << 8,
	FEAT_SPORT_ARR = 1 << 9, /* TCP/UDP source port through port_class/port_bits, not the trie */
	FEAT_DPORT_ARR = 1 << 10,
	FEAT_LOG = 1 << 11, /* some drop of this generation logs (filter_log.h) */
	FEAT_SRC_V6_DIR = 1 << 12, /* source IPv6 through v6_dir16/v6_hash (below), not the trie */
	FEAT_DST_V6_DIR = 1 << 13,
	FEAT_COUNT = 1 << 14, /* some rule of this generation is a count rule */
	FEAT_XP = 1 << 15, /* IPv4 TCP/UDP through the crossproduct tables (gen_config.xp), not the AND */
};

/*
 * TCP and UDP ports without a trie walk: per (generation, field, TCP|UDP) a
 * 65536-entry array gives the class (id of the LPM result's bit vector, in
 * port_bits) of every port. Other protocols (ICMP type/code, GRE, ...) and
 * later fragments use the trie. index ((gen * 2 + field) * 2 + udp) << 16 | port.
 */
#define FILTER_PORT_CLASSES 4096 /* per (generation, field) */

/*
 * IPv4 without a trie walk (DIR-16-8, after DPDK's rte_lpm DIR-24-8): per
 * (generation, field) a 65536-entry table indexed by the top 16 address bits
 * holds either a class (the id of the LPM result's bit vector, in v4_class)
 * or FILTER_DIR_CHUNK | chunk, a 256-entry table indexed by the third byte
 * holding a class. FILTER_DIR_TRIE where prefixes longer than /24 live (or
 * chunks ran out): the trie, which always holds every prefix, answers.
 * Two or three array loads per address instead of a walk of ~20 trie nodes.
 * field: 0 source, 1 destination.
 */
#define FILTER_DIR_CHUNK 0x80000000u
#define FILTER_DIR_TRIE 0xffffffffu
#define FILTER_DIR4_CHUNKS 1024  /* per (generation, field) */
#define FILTER_DIR4_CLASSES 2048 /* per (generation, field) */

/*
 * A /16 whose 256 /24s hold at most two classes (a large address list: "in
 * the list" or not) is a 256-bit bitmap and its two classes instead of a
 * chunk: 40 bytes instead of 2 KB of dir8, so 100k /24s stay in cache.
 * dir16 entry FILTER_DIR_BITMAP | k, k indexing v4_bitmap like a chunk.
 */
#define FILTER_DIR_BITMAP 0x40000000u

/*
 * IPv6 without a trie walk for prefixes up to /64: per (generation, field)
 * a 65536-entry table indexed by the top 16 address bits (v6_dir16) holds
 * either the class of the /16 (prefixes of /16 and shorter painted in) or,
 * where longer prefixes start, FILTER_V6_HASH | mask << 16 | class: mask
 * says which of the generation's few distinct lengths in (16, 64]
 * (gen_config.v6_len, longest first) occur below this /16. Those lengths are
 * looked up in v6_hash (key: generation, field, length, the top 64 bits
 * masked to the length; value: class), longest first; the first hit is the
 * longest match, no hit leaves the /16's class. A prefix longer than /64
 * marks its /64 FILTER_DIR_TRIE there (64 is then one of the lengths): the
 * trie, which always holds every prefix, answers. More than
 * FILTER_V6_LENGTHS distinct lengths or FILTER_V6_CLASSES vectors: the trie
 * alone (FEAT_*_V6_DIR off). A /16 slot costs one array load; below it one
 * hash lookup per length present, instead of a walk of up to 136 trie levels.
 */
#define FILTER_V6_HASH 0x40000000u
#define FILTER_V6_LENGTHS 8
#define FILTER_V6_CLASSES 4096 /* per (generation, field) */
#define FILTER_V6_CLASS_MASK 0xffffu

struct v6_hash_key {
	__u32 tag; /* (generation * 2 + field) << 8 | prefix length */
	__u32 pad;
	__u64 hi;  /* top 64 address bits, host order, masked to the length */
};

struct dir4_bitmap {
	__u64 bits[4]; /* bit b: the /24 with third byte b has cls[1] */
	__u32 cls[2];
};

/* Match fields in lookup order (gen_config.constrained). */
enum filter_field {
	FIELD_SRC_V4 = 0,
	FIELD_DST_V4 = 1,
	FIELD_SRC_V6 = 2,
	FIELD_DST_V6 = 3,
	FIELD_SPORT = 4,
	FIELD_DPORT = 5,
	FIELD_FLAGS = 6,
	FILTER_FIELDS = 7,
};

/*
 * Equivalence-class crossproducting (RFC, Gupta & McKeown, "Packet
 * Classification on Multiple Fields", 1999), for IPv4 TCP and UDP packets
 * that are not later fragments: each field lookup yields a class id (the
 * DIR-16-8 class of each address, the port_class of each port, the TCP flags
 * byte's class), and precomputed tables combine them into ever fewer
 * classes: per protocol, the fields split into a left and a right group; a
 * group's state starts as the interface entry's xp_class (left) or 0 (right)
 * and each field of the group in field order replaces it by
 * cell[off[f] + state * n[f] + class] (the first field of a group of one
 * field that starts with one class: by the class itself, `direct`); a cell
 * marked FILTER_XP_SETTLED ends its group early (the lookups of the group's
 * later fields are skipped: a packet that misses the rules naming those
 * fields together pays for fewer lookups; in a group of two fields of one
 * start class the first field's class is the state, and a settle cell per
 * class says whether the second field is looked up: a settled class is a row
 * of the final table itself, so the final load depends on the field lookup
 * alone); the final table gives
 * cell[final_off + left * right_states + right] = the first matching rule, or
 * FILTER_XP_NONE (no rule: the default policy), or FILTER_XP_FALLBACK
 * (count rules ahead of it: the bit vectors decide and count). A fixed
 * number of array loads whatever the rule count. Cells are u16, four per
 * xp_table element, FILTER_XP_CELLS per generation: the compiler caps the
 * tables there, and a rule set whose tables would not fit keeps the bit
 * vectors (FEAT_XP off). IPv6, other protocols, later fragments and
 * addresses whose DIR entry says "trie" take the bit vectors too.
 */
enum xp_field {
	XP_SRC = 0,
	XP_DST = 1,
	XP_SPORT = 2,
	XP_DPORT = 3,
	XP_FLAGS = 4,
	XP_FIELDS = 5,
};
#define FILTER_XP_CELLS (1 << 21) /* u16 cells per generation (4 MB) */
#define FILTER_XP_NONE 0xffff
#define FILTER_XP_FALLBACK 0xfffe
#define FILTER_XP_MAX_STATE 0x7ff0 /* class ids stay below */
/* In a state cell: no later field of the group changes this state (the
 * low bits are the group's last state); their lookups are skipped. */
#define FILTER_XP_SETTLED 0x8000
/* cells [0, 256) of a generation: TCP flags byte -> class */
#define FILTER_XP_FLAGS_CELLS 256

struct xp_cells {
	__u16 c[4];
};

/* Settle bitmaps: one bit per class of a group's direct first field (port
 * classes are the most numerous: FILTER_PORT_CLASSES). */
#define FILTER_XP_SETTLE_WORDS (FILTER_PORT_CLASSES / 64)

struct xp_chain {
	__u32 left;              /* bit f (enum xp_field): f is a step of the left group */
	__u32 right;             /* bit f: f is a step of the right group */
	__u32 direct;            /* bit f: f comes first in its group of one start class: its class is the state (no table) */
	__u32 settle;            /* bit f (direct): the class settles its group when its bit in settle_bits is set
	                          * (cell[soff[f] + class] nonzero says the same; the program reads the bits) */
	__u32 soff[XP_FIELDS];
	__u32 n[XP_FIELDS];      /* row length of f's table: the field's class count */
	__u32 off[XP_FIELDS];    /* f's table: first cell */
	__u32 final_off;         /* the final table: first cell */
	__u32 right_states;      /* row length of the final table */
	/* [0] the left group's, [1] the right group's direct field: bit c set when
	 * class c settles the group. In the chain itself (the generation's config,
	 * already at hand) instead of a table cell: no map lookup per group. */
	__u64 settle_bits[2][FILTER_XP_SETTLE_WORDS];
};

struct gen_config {
	__u32 features;          /* FEAT_* */
	__u32 words;             /* bit-vector words in use by this generation's rules */
	/* count and constrained before base (read by the wide AND only): a
	 * one-word rule set reads features and count.w[0] from the entry's first
	 * cache line and constrained[f].w[0] of the fields it looks up, the
	 * source's from the third: two lines instead of three */
	struct rule_bits count;  /* rules whose action is count */
	/* Per field, the rules that constrain it (not in its zero-length
	 * entry). Every vector of a field holds the rules that do not, so once
	 * no candidate left is in constrained[f] the lookup of f cannot change
	 * the AND and is skipped: in a large rule set the fields looked up
	 * first usually leave no candidate that constrains the rest. */
	struct rule_bits constrained[FILTER_FIELDS];
	struct rule_bits base[2]; /* [0] IPv4, [1] IPv6: AND of the vectors of skipped fields */
	/* [field] distinct IPv6 prefix lengths in (16, 64] of v6_hash, longest first, 0: unused */
	__u8 v6_len[2][FILTER_V6_LENGTHS];
	struct xp_chain xp[2];   /* [0] TCP, [1] UDP (FEAT_XP) */
};

/*
 * The constants userspace needs, as enumerators: BTF carries enums, not
 * #defines, and the TypeScript side is generated from the object's BTF
 * (scripts/gen-bpf-contract.mjs -> src/fastpath/generated/filter.ts).
 */
enum filter_limits {
	FILTER_LIMIT_WORDS = FILTER_WORDS,
	FILTER_LIMIT_MAX_RULES = FILTER_MAX_RULES,
	FILTER_LIMIT_COUNTER_SLOTS = FILTER_COUNTER_SLOTS,
	FILTER_LIMIT_NAME_LEN = FILTER_NAME_LEN,
	FILTER_LIMIT_FLAGS_UNKNOWN = FILTER_FLAGS_UNKNOWN,
	FILTER_LIMIT_FLAGS_PER_GEN = FILTER_FLAGS_PER_GEN,
	FILTER_LIMIT_MAX_COUNT_HITS = FILTER_MAX_COUNT_HITS,
	FILTER_LIMIT_DEFAULT_PREFIXES = FILTER_DEFAULT_PREFIXES,
	FILTER_LIMIT_DEFAULT_PORT_PREFIXES = FILTER_DEFAULT_PORT_PREFIXES,
	FILTER_LIMIT_DEFAULT_RATE_STATE = FILTER_DEFAULT_RATE_STATE,
	FILTER_LIMIT_DEFAULT_BLOCKLIST = FILTER_DEFAULT_BLOCKLIST,
	FILTER_LIMIT_MAX_IFACES = FILTER_MAX_IFACES,
	FILTER_LIMIT_IFINDEX_DIRECT = FILTER_IFINDEX_DIRECT,
	FILTER_LIMIT_IFACE_ENTRIES = FILTER_IFACE_ENTRIES,
	FILTER_LIMIT_PORT_CLASSES = FILTER_PORT_CLASSES,
	FILTER_LIMIT_DIR4_CHUNKS = FILTER_DIR4_CHUNKS,
	FILTER_LIMIT_DIR4_CLASSES = FILTER_DIR4_CLASSES,
	FILTER_LIMIT_FIELDS = FILTER_FIELDS,
	FILTER_LIMIT_V6_LENGTHS = FILTER_V6_LENGTHS,
	FILTER_LIMIT_V6_CLASSES = FILTER_V6_CLASSES,
	FILTER_LIMIT_XP_CELLS = FILTER_XP_CELLS,
	FILTER_LIMIT_XP_NONE = FILTER_XP_NONE,
	FILTER_LIMIT_XP_FALLBACK = FILTER_XP_FALLBACK,
	FILTER_LIMIT_XP_MAX_STATE = FILTER_XP_MAX_STATE,
	FILTER_LIMIT_XP_SETTLED = FILTER_XP_SETTLED,
	FILTER_LIMIT_XP_FLAGS_CELLS = FILTER_XP_FLAGS_CELLS,
	FILTER_LIMIT_XP_SETTLE_WORDS = FILTER_XP_SETTLE_WORDS,
};

enum filter_dir_entry {
	FILTER_DIR_ENTRY_CHUNK = FILTER_DIR_CHUNK,
	FILTER_DIR_ENTRY_TRIE = FILTER_DIR_TRIE,
	FILTER_DIR_ENTRY_BITMAP = FILTER_DIR_BITMAP,
	FILTER_DIR_ENTRY_V6_HASH = FILTER_V6_HASH,
};

/* Token buckets in nano-units: tokens * 1e9, refilled by elapsed_ns * rate. */
struct rule_action {
	__u32 action;
	__u32 counter_slot;
	__u64 pps;          /* 0: no packet limit */
	__u64 pkt_burst;    /* bucket depth, packets */
	__u64 bps;          /* bytes per second; 0: no byte limit */
	__u64 byte_burst;   /* bucket depth, bytes */
};

/* Written by userspace only: what each generation holds, so a control plane
 * can report occupancy without walking the tries. */
struct gen_meta {
	__u32 rules;
	__u32 lpm_entries[6]; /* src_v4, dst_v4, src_v6, dst_v6, sport, dport */
	__u32 pad;
};

struct rule_stat {
	__u64 packets;
	__u64 bytes;
	__u64 limited; /* rate-limit rules: packets over the limit (dropped) */
};

enum filter_verdict {
	VERDICT_RULE_PASS = 0,
	VERDICT_RULE_DROP = 1,
	VERDICT_RATE_PASS = 2,
	VERDICT_RATE_DROP = 3,
	VERDICT_DEFAULT_PASS = 4,
	VERDICT_DEFAULT_DROP = 5,
	VERDICT_BLOCKED = 6,
	VERDICT_MALFORMED = 7,
	VERDICT_NON_IP = 8,
	VERDICT_UNMANAGED = 9, /* interface without a configuration: passed */
	VERDICT_FRAGMENT = 10, /* non-first fragments seen (also counted by their verdict) */
	VERDICT_MAX = 11,
};

struct verdict_stat {
	__u64 packets;
	__u64 bytes;
};

struct rate_key {
	__u32 counter_slot;
	__u8 family;
	__u8 pad[3];
	__u8 addr[16];
};

struct rate_state {
	__u64 pkt_tokens;
	__u64 byte_tokens;
	__u64 last_ns;
};

/* Blocklist value: absolute expiry in bpf_ktime_get_ns() (CLOCK_MONOTONIC)
 * nanoseconds; ~0 never expires. */
struct block_value {
	__u64 expires_ns;
};

/* Never read by a program: one object of this type makes BTF carry the
 * enums above (clang emits only the types some object uses). */
struct filter_contract {
	enum filter_limits limits;
	enum filter_dir_entry dir_entry;
	enum filter_feature feature;
	enum filter_action action;
	enum filter_verdict verdict;
	enum filter_dir dir;
	enum filter_field field;
	enum xp_field xp_field;
	struct gen_meta meta;
	struct rate_key rate_key;
	struct rule_stat rule_stat;
	struct v6_hash_key v6_hash_key;
};

/* block_active[0] (IPv4) and [1] (IPv6): nonzero while that family's
 * blocklist may hold entries; the program skips the LRU lookup while it is 0.
 * Userspace sets it after an insert and clears it (then checks the map again)
 * when the map is empty; a stale 1 only costs a lookup. */

#endif
