/**
 * The userspace mirror of bpf/include/filter_common.h: constants, struct
 * layouts and key encoders. Change both together; the data plane checks
 * map key/value sizes against these when it loads or adopts.
 */

/** FILTER_WORDS: 64-bit words per rule bit vector (compile-time in the BPF object). */
export const FILTER_WORDS = 16;
export const FILTER_MAX_RULES = FILTER_WORDS * 64;
export const FILTER_COUNTER_SLOTS = 2 * FILTER_MAX_RULES;
export const FILTER_NAME_LEN = 64;
export const FILTER_FLAGS_UNKNOWN = 256;
export const FILTER_FLAGS_PER_GEN = 257;
/** Default sizes of the maps userspace sizes before load (filter_common.h FILTER_DEFAULT_*). */
export const FILTER_DEFAULT_RATE_STATE = 65536;
export const BITS_BYTES = FILTER_WORDS * 8;

export const ACTION = { pass: 0, drop: 1, 'rate-limit': 2, count: 3 } as const;
export type RuleActionName = keyof typeof ACTION;

export const DIR = { ingress: 0, egress: 1 } as const;
export type Direction = keyof typeof DIR;

/** Per-verdict counters, in enum filter_verdict order. */
export const VERDICTS = [
  'rule_pass',
  'rule_drop',
  'rate_pass',
  'rate_drop',
  'default_pass',
  'default_drop',
  'blocked',
  'malformed',
  'non_ip',
  'unmanaged',
  'fragment',
] as const;
export type Verdict = (typeof VERDICTS)[number];
export const VERDICT_MAX = VERDICTS.length;

/** Key sizes (bytes) of the classification maps. */
export const KEY = {
  v4: 12, // u32 prefixlen, gen, addr[4], pad[3]
  v6: 24, // u32 prefixlen, gen, addr[16], pad[3]
  port: 8, // u32 prefixlen, gen, proto, port[2]
} as const;

/** Interfaces: slot arrays instead of a hash on the hot path (see filter_common.h). */
export const FILTER_MAX_IFACES = 256;
export const FILTER_IFINDEX_DIRECT = 65536;
export const FILTER_IFACE_ENTRIES = 2 * 2 * FILTER_MAX_IFACES;

/** gen_config.features: which field lookups a generation needs (enum filter_feature). */
export const FEAT = {
  src_v4: 1 << 0,
  dst_v4: 1 << 1,
  src_v6: 1 << 2,
  dst_v6: 1 << 3,
  sport: 1 << 4,
  dport: 1 << 5,
  flags: 1 << 6,
  src_v4_dir: 1 << 7,
  dst_v4_dir: 1 << 8,
  sport_arr: 1 << 9,
  dport_arr: 1 << 10,
  log: 1 << 11,
} as const satisfies Record<LpmField | 'flags' | 'src_v4_dir' | 'dst_v4_dir' | 'sport_arr' | 'dport_arr' | 'log', number>;

/** Drop events (bpf/include/filter_log.h): limiter slots, flags, sizes. */
export const LOG_SLOT_DEFAULT = FILTER_COUNTER_SLOTS;
export const LOG_SLOT_BLOCKED = LOG_SLOT_DEFAULT + 1;
export const LOG_SLOTS = LOG_SLOT_DEFAULT + 2;
export const LOG_RING_BYTES = 256 * 1024;
export const LOG_FLAGS = { defaultDrop: 1 << 0, blocked: 1 << 1 } as const;
export const LOG_CONFIG_SIZE = 24 + 16 * 8; // u64 interval_ns, u64 tolerance_ns, u32 rate, u32 flags, rule_bits
export const LOG_BUCKET_SIZE = 16;
export const LOG_STAT_SIZE = 24;
export const LOG_EVENT_SIZE = 64;

/** What a generation logs and how fast (struct log_config). */
export interface LogConfig {
  /** events per second per rule; 0 with no rule logging */
  rate: number;
  /** bucket depth in events */
  burst: number;
  flags: number;
  /** rules (by position) whose drops log */
  rules: Buffer;
}

export function encodeLogConfig(c: LogConfig): Buffer {
  const b = Buffer.alloc(LOG_CONFIG_SIZE);
  const interval = c.rate > 0 ? BigInt(Math.round(1e9 / c.rate)) : 0n;
  b.writeBigUInt64LE(interval, 0);
  b.writeBigUInt64LE(interval * BigInt(Math.max(0, c.burst - 1)), 8);
  b.writeUInt32LE(c.rate, 16);
  b.writeUInt32LE(c.flags, 20);
  c.rules.copy(b, 24);
  return b;
}

/** TCP/UDP ports by array (filter_common.h): classes per (generation, field). */
export const PORT_CLASSES = 4096;

/** DIR-16-8 for IPv4 (filter_common.h): entry encodings and sizes per (generation, field). */
export const DIR_CHUNK = 0x80000000;
export const DIR_TRIE = 0xffffffff;
export const DIR4_CHUNKS = 1024;
export const DIR4_CLASSES = 2048;

export const RULE_ACTION_SIZE = 40; // u32 action, u32 slot, u64 pps, pkt_burst, bps, byte_burst
export const IFACE_VALUE_SIZE = BITS_BYTES + 8; // bits, u32 default_action, u32 ifindex
export const GEN_CONFIG_SIZE = 8 + 3 * BITS_BYTES; // u32 features, u32 words, base[2], count
export const RULE_STAT_SIZE = 24;
export const GEN_META_SIZE = 32; // u32 rules, u32 lpm_entries[6], pad
export const VERDICT_STAT_SIZE = 16;
export const RATE_KEY_SIZE = 24;

/** Maps and their roles; the LPM maps hold both generations (gen byte at key offset 4). */
export const LPM_FIELDS = ['src_v4', 'dst_v4', 'src_v6', 'dst_v6', 'sport', 'dport'] as const;
export type LpmField = (typeof LPM_FIELDS)[number];
export const MAP_NAMES = [
  'active',
  'rcu_barrier',
  ...LPM_FIELDS,
  'v4_dir16',
  'v4_dir8',
  'v4_class',
  'port_class',
  'port_bits',
  'tcp_flags',
  'iface_slots',
  'iface_slots_big',
  'iface_cfg',
  'gen_config',
  'block_active',
  'actions',
  'gen_meta',
  'rule_stats',
  'rule_names',
  'verdict_stats',
  'rate_state',
  'block_v4',
  'block_v6',
  'log_events',
  'log_cfg',
  'log_bucket',
  'log_stats',
] as const;
export type MapName = (typeof MAP_NAMES)[number];

/** Address bytes carried in an LPM key of this field (without the gen byte). */
export function fieldDataBytes(f: LpmField): number {
  return f.endsWith('v4') ? 4 : f.endsWith('v6') ? 16 : 3;
}

export function fieldKeySize(f: LpmField): number {
  return f.endsWith('v4') ? KEY.v4 : f.endsWith('v6') ? KEY.v6 : KEY.port;
}

/** Encodes an LPM key: prefixlen (host order) = 8 + len, gen byte, data. */
export function lpmKey(f: LpmField, gen: number, data: Buffer, len: number): Buffer {
  const k = Buffer.alloc(fieldKeySize(f));
  k.writeUInt32LE(8 + len, 0);
  k[4] = gen;
  data.copy(k, 5, 0, fieldDataBytes(f));
  return k;
}

/** iface_cfg index of (generation, direction, slot). */
export function ifaceIndex(gen: number, dir: number, slot: number): number {
  return (gen * 2 + dir) * FILTER_MAX_IFACES + slot;
}

export function encodeIfaceValue(bits: Buffer, defaultAction: number, ifindex: number): Buffer {
  const v = Buffer.alloc(IFACE_VALUE_SIZE);
  bits.copy(v, 0);
  v.writeUInt32LE(defaultAction, BITS_BYTES);
  v.writeUInt32LE(ifindex, BITS_BYTES + 4);
  return v;
}

export function decodeIfaceValue(b: Buffer): { bits: Buffer; defaultAction: number; ifindex: number } {
  return { bits: b.subarray(0, BITS_BYTES), defaultAction: b.readUInt32LE(BITS_BYTES), ifindex: b.readUInt32LE(BITS_BYTES + 4) };
}

export interface GenConfig {
  features: number;
  words: number;
  /** [IPv4, IPv6]: AND of the vectors of the fields the program does not look up */
  base: [Buffer, Buffer];
  count: Buffer;
}

export function encodeGenConfig(c: GenConfig): Buffer {
  const b = Buffer.alloc(GEN_CONFIG_SIZE);
  b.writeUInt32LE(c.features, 0);
  b.writeUInt32LE(c.words, 4);
  c.base[0].copy(b, 8);
  c.base[1].copy(b, 8 + BITS_BYTES);
  c.count.copy(b, 8 + 2 * BITS_BYTES);
  return b;
}

export function decodeGenConfig(b: Buffer): GenConfig {
  return {
    features: b.readUInt32LE(0),
    words: b.readUInt32LE(4),
    base: [Buffer.from(b.subarray(8, 8 + BITS_BYTES)), Buffer.from(b.subarray(8 + BITS_BYTES, 8 + 2 * BITS_BYTES))],
    count: Buffer.from(b.subarray(8 + 2 * BITS_BYTES, 8 + 3 * BITS_BYTES)),
  };
}

export interface RuleActionValue {
  action: number;
  slot: number;
  pps: bigint;
  pktBurst: bigint;
  bps: bigint;
  byteBurst: bigint;
}

export function encodeAction(a: RuleActionValue): Buffer {
  const b = Buffer.alloc(RULE_ACTION_SIZE);
  b.writeUInt32LE(a.action, 0);
  b.writeUInt32LE(a.slot, 4);
  b.writeBigUInt64LE(a.pps, 8);
  b.writeBigUInt64LE(a.pktBurst, 16);
  b.writeBigUInt64LE(a.bps, 24);
  b.writeBigUInt64LE(a.byteBurst, 32);
  return b;
}

export function decodeAction(b: Buffer): RuleActionValue {
  return {
    action: b.readUInt32LE(0),
    slot: b.readUInt32LE(4),
    pps: b.readBigUInt64LE(8),
    pktBurst: b.readBigUInt64LE(16),
    bps: b.readBigUInt64LE(24),
    byteBurst: b.readBigUInt64LE(32),
  };
}

/** A rule bit vector: FILTER_WORDS little-endian u64, rule r at byte r>>3 bit r&7. */
export function emptyBits(): Buffer {
  return Buffer.alloc(BITS_BYTES);
}

export function setBit(bits: Buffer, rule: number): void {
  bits[rule >> 3]! |= 1 << (rule & 7);
}

export function bitList(bits: Buffer): number[] {
  const out: number[] = [];
  for (let i = 0; i < bits.length; i++) {
    const b = bits[i]!;
    if (b) for (let j = 0; j < 8; j++) if (b & (1 << j)) out.push(i * 8 + j);
  }
  return out;
}
