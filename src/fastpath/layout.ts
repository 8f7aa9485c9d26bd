
/**
 * Codecs and constants of the fast path's maps, built on
 * generated/filter.ts: that file is generated at build time from the BTF
 * of bpf/build/xdp_filter.bpf.o (scripts/gen-bpf-contract.mjs, after
 * cilium/ebpf's bpf2go), so no size, offset or constant here is copied by
 * hand from bpf/include/filter_common.h. The data plane checks every map of
 * a pinned data plane against the same table when it adopts one.
 */
import { ENUMS, MAPS, MAP_NAMES as GENERATED_MAP_NAMES, STRUCTS, type MapName as GeneratedMapName } from './generated/filter.js';

export { MAPS, STRUCTS };
const L = ENUMS.filter_limits;

/** FILTER_WORDS: 64-bit words per rule bit vector (compile-time in the BPF object). */
export const FILTER_WORDS: number = L.FILTER_LIMIT_WORDS;
export const FILTER_MAX_RULES: number = L.FILTER_LIMIT_MAX_RULES;
export const FILTER_COUNTER_SLOTS: number = L.FILTER_LIMIT_COUNTER_SLOTS;
export const FILTER_NAME_LEN: number = L.FILTER_LIMIT_NAME_LEN;
export const FILTER_FLAGS_UNKNOWN: number = L.FILTER_LIMIT_FLAGS_UNKNOWN;
export const FILTER_FLAGS_PER_GEN: number = L.FILTER_LIMIT_FLAGS_PER_GEN;
/** Default sizes of the maps userspace sizes before load (filter_common.h FILTER_DEFAULT_*). */
export const FILTER_DEFAULT_RATE_STATE: number = L.FILTER_LIMIT_DEFAULT_RATE_STATE;
export const BITS_BYTES: number = STRUCTS.rule_bits.size;

export const ACTION = {
  pass: ENUMS.filter_action.FILTER_ACT_PASS,
  drop: ENUMS.filter_action.FILTER_ACT_DROP,
  'rate-limit': ENUMS.filter_action.FILTER_ACT_RATE_LIMIT,
  count: ENUMS.filter_action.FILTER_ACT_COUNT,
} as const;
export type RuleActionName = keyof typeof ACTION;

export const DIR = { ingress: ENUMS.filter_dir.FILTER_DIR_INGRESS, egress: ENUMS.filter_dir.FILTER_DIR_EGRESS } as const;
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
export const VERDICT_MAX: number = ENUMS.filter_verdict.VERDICT_MAX;
VERDICTS.forEach((v, i) => {
  if ((ENUMS.filter_verdict as Record<string, number>)[`VERDICT_${v.toUpperCase()}`] !== i) throw new Error(`fastpath: verdict ${v} is not number ${i} in the BPF object's enum filter_verdict`);
});

/** Key sizes (bytes) of the classification maps. */
export const KEY = {
  v4: STRUCTS.lpm_v4_key.size,
  v6: STRUCTS.lpm_v6_key.size,
  port: STRUCTS.lpm_port_key.size,
} as const;

/** Interfaces: slot arrays instead of a hash on the hot path (see filter_common.h). */
export const FILTER_MAX_IFACES: number = L.FILTER_LIMIT_MAX_IFACES;
export const FILTER_IFINDEX_DIRECT: number = L.FILTER_LIMIT_IFINDEX_DIRECT;
export const FILTER_IFACE_ENTRIES: number = L.FILTER_LIMIT_IFACE_ENTRIES;

/** gen_config.features: which field lookups a generation needs (enum filter_feature). */
const F = ENUMS.filter_feature;
export const FEAT = {
  src_v4: F.FEAT_SRC_V4,
  dst_v4: F.FEAT_DST_V4,
  src_v6: F.FEAT_SRC_V6,
  dst_v6: F.FEAT_DST_V6,
  sport: F.FEAT_SPORT,
  dport: F.FEAT_DPORT,
  flags: F.FEAT_FLAGS,
  src_v4_dir: F.FEAT_SRC_V4_DIR,
  dst_v4_dir: F.FEAT_DST_V4_DIR,
  sport_arr: F.FEAT_SPORT_ARR,
  dport_arr: F.FEAT_DPORT_ARR,
  log: F.FEAT_LOG,
  src_v6_dir: F.FEAT_SRC_V6_DIR,
  dst_v6_dir: F.FEAT_DST_V6_DIR,
  count: F.FEAT_COUNT,
  crossproduct: F.FEAT_XP,
} as const satisfies Record<LpmField | 'flags' | 'src_v4_dir' | 'dst_v4_dir' | 'sport_arr' | 'dport_arr' | 'log' | 'src_v6_dir' | 'dst_v6_dir' | 'count' | 'crossproduct', number>;

/** Crossproduct tables (filter_common.h, src/fastpath/crossproduct.ts). */
export const XP_CELLS: number = L.FILTER_LIMIT_XP_CELLS;
export const XP_NONE: number = L.FILTER_LIMIT_XP_NONE;
export const XP_FALLBACK: number = L.FILTER_LIMIT_XP_FALLBACK;
export const XP_MAX_STATE: number = L.FILTER_LIMIT_XP_MAX_STATE;
export const XP_SETTLED: number = L.FILTER_LIMIT_XP_SETTLED;
export const XP_FLAGS_CELLS: number = L.FILTER_LIMIT_XP_FLAGS_CELLS;
/** u64 words of one settle bitmap (struct xp_chain.settle_bits): classes below 64 × this */
export const XP_SETTLE_WORDS: number = L.FILTER_LIMIT_XP_SETTLE_WORDS;
/** enum xp_field, in order */
export const XP_FIELDS = ['src', 'dst', 'sport', 'dport', 'flags'] as const;
export type XpField = (typeof XP_FIELDS)[number];
XP_FIELDS.forEach((f, i) => {
  if ((ENUMS.xp_field as Record<string, number>)[`XP_${f.toUpperCase()}`] !== i) throw new Error(`fastpath: crossproduct field ${f} is not number ${i} in the BPF object's enum xp_field`);
});

/** One protocol's crossproduct chain (struct xp_chain). */
export interface XpChain {
  /** bit f (XP_FIELDS index): a step of the left group */
  left: number;
  right: number;
  /** bit f: first in a group of one start class, its class is the state (no table) */
  direct: number;
  /** bit f (direct): cell soff[f] + class nonzero when the class settles its group */
  settle: number;
  soff: number[];
  /** [left, right]: the classes of the group's direct field that settle it (what the program reads: settle_bits) */
  settleClasses?: [number[], number[]];
  /** per field: row length (class count) and first cell of its table */
  n: number[];
  off: number[];
  finalOff: number;
  rightStates: number;
}

/** Drop events (bpf/include/filter_log.h): limiter slots, flags, sizes. */
const LL = ENUMS.filter_log_limits;
export const LOG_SLOT_DEFAULT: number = LL.FILTER_LOG_SLOT_DEFAULT;
export const LOG_SLOT_BLOCKED: number = LL.FILTER_LOG_SLOT_BLOCKED;
export const LOG_SLOTS: number = LL.FILTER_LOG_SLOTS;
export const LOG_RING_BYTES: number = LL.FILTER_LOG_RING_BYTES;
export const LOG_FLAGS = { defaultDrop: ENUMS.log_flags.LOG_DEFAULT_DROP, blocked: ENUMS.log_flags.LOG_BLOCKED } as const;
export const LOG_CONFIG_SIZE: number = STRUCTS.log_config.size;
export const LOG_BUCKET_SIZE: number = STRUCTS.log_bucket.size;
export const LOG_STAT_SIZE: number = STRUCTS.log_stat.size;
export const LOG_EVENT_SIZE: number = STRUCTS.log_event.size;
/** log_bucket.open_jiffies of a slot that does not log: never ask the limiter. */
export const LOG_NEVER = 0xffffffffffffffffn;

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

const LC = STRUCTS.log_config.members;

/** struct log_config; nsPerJiffy is the kernel's tick (1e9 / CONFIG_HZ), 0 for none. */
export function encodeLogConfig(c: LogConfig, nsPerJiffy: number): Buffer {
  const b = Buffer.alloc(LOG_CONFIG_SIZE);
  const interval = c.rate > 0 ? BigInt(Math.round(1e9 / c.rate)) : 0n;
  b.writeBigUInt64LE(interval, LC.interval_ns.offset);
  b.writeBigUInt64LE(interval * BigInt(Math.max(0, c.burst - 1)), LC.tolerance_ns.offset);
  b.writeBigUInt64LE(BigInt(Math.round(nsPerJiffy)), LC.ns_per_jiffy.offset);
  b.writeUInt32LE(c.rate, LC.rate.offset);
  b.writeUInt32LE(c.flags, LC.flags.offset);
  c.rules.copy(b, LC.rules.offset);
  return b;
}

export function decodeLogConfig(b: Buffer): LogConfig {
  return { rate: b.readUInt32LE(LC.rate.offset), burst: 0, flags: b.readUInt32LE(LC.flags.offset), rules: Buffer.from(b.subarray(LC.rules.offset, LC.rules.offset + BITS_BYTES)) };
}

/** gen_config.constrained: one vector per match field, in enum filter_field order. */
export const MATCH_FIELDS = ['src_v4', 'dst_v4', 'src_v6', 'dst_v6', 'sport', 'dport', 'flags'] as const;
export type MatchField = (typeof MATCH_FIELDS)[number];
MATCH_FIELDS.forEach((f, i) => {
  if ((ENUMS.filter_field as Record<string, number>)[`FIELD_${f.toUpperCase()}`] !== i) throw new Error(`fastpath: field ${f} is not number ${i} in the BPF object's enum filter_field`);
});

/** TCP/UDP ports by array (filter_common.h): classes per (generation, field). */
export const PORT_CLASSES: number = L.FILTER_LIMIT_PORT_CLASSES;

/** DIR-16-8 for IPv4 (filter_common.h): entry encodings and sizes per (generation, field). */
export const DIR_CHUNK: number = ENUMS.filter_dir_entry.FILTER_DIR_ENTRY_CHUNK;
export const DIR_TRIE: number = ENUMS.filter_dir_entry.FILTER_DIR_ENTRY_TRIE;
export const DIR_BITMAP: number = ENUMS.filter_dir_entry.FILTER_DIR_ENTRY_BITMAP;
export const DIR4_CHUNKS: number = L.FILTER_LIMIT_DIR4_CHUNKS;
export const DIR4_CLASSES: number = L.FILTER_LIMIT_DIR4_CLASSES;

/** IPv6 first stage (filter_common.h): /16 table, per-length hash, classes per (generation, field). */
export const V6_HASH: number = ENUMS.filter_dir_entry.FILTER_DIR_ENTRY_V6_HASH;
export const V6_LENGTHS: number = L.FILTER_LIMIT_V6_LENGTHS;
export const V6_CLASSES: number = L.FILTER_LIMIT_V6_CLASSES;
export const V6_HASH_KEY_SIZE: number = STRUCTS.v6_hash_key.size;
const HK = STRUCTS.v6_hash_key.members;

/** v6_hash key of (generation * 2 + field, prefix length, top 64 bits already masked, host-order bigint). */
export function encodeV6HashKey(gf: number, len: number, hi: bigint): Buffer {
  const k = Buffer.alloc(V6_HASH_KEY_SIZE);
  k.writeUInt32LE(((gf << 8) | len) >>> 0, HK.tag.offset);
  k.writeBigUInt64LE(hi, HK.hi.offset);
  return k;
}

/** The (generation * 2 + field) a v6_hash key belongs to. */
export function v6HashKeyGf(k: Buffer): number {
  return k.readUInt32LE(HK.tag.offset) >>> 8;
}

export const RULE_ACTION_SIZE: number = STRUCTS.rule_action.size;
export const IFACE_VALUE_SIZE: number = STRUCTS.iface_value.size;
export const GEN_CONFIG_SIZE: number = STRUCTS.gen_config.size;
export const DIR4_BITMAP_SIZE: number = STRUCTS.dir4_bitmap.size;
export const RULE_STAT_SIZE: number = STRUCTS.rule_stat.size;
export const GEN_META_SIZE: number = STRUCTS.gen_meta.size;
/**
 * gen_meta's `pad` (userspace only; the programs never read gen_meta): the
 * token of the write that last wrote a generation or claimed the data plane
 * for writing (GenerationWriter in writer.ts). Old writers leave 0 there.
 */
export const GEN_META_WRITER_OFFSET: number = STRUCTS.gen_meta.members.pad.offset;
export const VERDICT_STAT_SIZE: number = STRUCTS.verdict_stat.size;
export const RATE_KEY_SIZE: number = STRUCTS.rate_key.size;

/** Maps and their roles; the LPM maps hold both generations (gen byte at key offset 4). */
export const LPM_FIELDS = ['src_v4', 'dst_v4', 'src_v6', 'dst_v6', 'sport', 'dport'] as const;
export type LpmField = (typeof LPM_FIELDS)[number];
/** Every map of the object, from its BTF (also maps this build does not write itself). */
export const MAP_NAMES: readonly GeneratedMapName[] = GENERATED_MAP_NAMES;
export type MapName = GeneratedMapName;

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
  k.writeUInt32LE(8 + len, STRUCTS.lpm_v4_key.members.prefixlen.offset);
  k[STRUCTS.lpm_v4_key.members.gen.offset] = gen;
  data.copy(k, STRUCTS.lpm_v4_key.members.addr.offset, 0, fieldDataBytes(f));
  return k;
}

/**
 * lpmKey as a latin1 string (the key of the data plane's per-generation
 * contents), written into `scratch` (fieldKeySize(f) bytes) instead of a new
 * Buffer: a million-prefix apply builds a million of them.
 */
export function lpmKeyString(f: LpmField, gen: number, data: Buffer, len: number, scratch: Buffer): string {
  scratch.fill(0);
  scratch.writeUInt32LE(8 + len, STRUCTS.lpm_v4_key.members.prefixlen.offset);
  scratch[STRUCTS.lpm_v4_key.members.gen.offset] = gen;
  data.copy(scratch, STRUCTS.lpm_v4_key.members.addr.offset, 0, fieldDataBytes(f));
  return scratch.toString('latin1', 0, fieldKeySize(f));
}

/** iface_cfg index of (generation, direction, slot). */
export function ifaceIndex(gen: number, dir: number, slot: number): number {
  return (gen * 2 + dir) * FILTER_MAX_IFACES + slot;
}

const IV = STRUCTS.iface_value.members;

/**
 * An interface's entry for one generation and direction: `bits` (the rules
 * that apply there) ANDed with the generation's base vector of each family
 * (GenConfig.base), so the program ANDs one vector less per packet.
 */
export function encodeIfaceValue(bits: Buffer, base: readonly [Buffer, Buffer], defaultAction: number, ifindex: number, xpClass = 0): Buffer {
  const v = Buffer.alloc(IFACE_VALUE_SIZE);
  for (let fam = 0; fam < 2; fam++) {
    const at = IV.bits.offset + fam * BITS_BYTES;
    for (let i = 0; i < BITS_BYTES; i++) v[at + i] = bits[i]! & base[fam]![i]!;
  }
  v.writeUInt32LE(defaultAction, IV.default_action.offset);
  v.writeUInt32LE(ifindex, IV.ifindex.offset);
  v.writeUInt32LE(xpClass, IV.xp_class.offset);
  return v;
}

export function decodeIfaceValue(b: Buffer): { defaultAction: number; ifindex: number } {
  return { defaultAction: b.readUInt32LE(IV.default_action.offset), ifindex: b.readUInt32LE(IV.ifindex.offset) };
}

export interface GenConfig {
  features: number;
  words: number;
  /** [IPv4, IPv6]: AND of the vectors of the fields the program does not look up */
  base: [Buffer, Buffer];
  count: Buffer;
  /**
   * Per match field (MATCH_FIELDS order), the rules that constrain it: the
   * program skips a field's lookup once no candidate rule is among them.
   * Absent: every rule counts as constraining every field (no lookup skipped).
   */
  constrained?: Buffer[];
  /** [source, destination]: the IPv6 first stage's prefix lengths in (16, 64], longest first (absent: none) */
  v6Len?: [number[], number[]];
  /** [TCP, UDP] crossproduct chains (FEAT.crossproduct; absent: none) */
  xp?: [XpChain, XpChain];
}

const XC = STRUCTS.xp_chain.members;
const XP_CHAIN_SIZE: number = STRUCTS.xp_chain.size;

function encodeXpChain(c: XpChain, b: Buffer, at: number): void {
  b.writeUInt32LE(c.left, at + XC.left.offset);
  b.writeUInt32LE(c.right, at + XC.right.offset);
  b.writeUInt32LE(c.direct, at + XC.direct.offset);
  b.writeUInt32LE(c.settle, at + XC.settle.offset);
  for (let f = 0; f < XP_FIELDS.length; f++) b.writeUInt32LE(c.soff[f] ?? 0, at + XC.soff.offset + 4 * f);
  for (let f = 0; f < XP_FIELDS.length; f++) {
    b.writeUInt32LE(c.n[f] ?? 0, at + XC.n.offset + 4 * f);
    b.writeUInt32LE(c.off[f] ?? 0, at + XC.off.offset + 4 * f);
  }
  b.writeUInt32LE(c.finalOff, at + XC.final_off.offset);
  b.writeUInt32LE(c.rightStates, at + XC.right_states.offset);
  c.settleClasses?.forEach((classes, g) => {
    for (const k of classes) {
      if (!Number.isInteger(k) || k < 0 || k >= XP_SETTLE_WORDS * 64) throw new Error(`fastpath: crossproduct settle class ${k} out of range (0-${XP_SETTLE_WORDS * 64 - 1})`);
      const byte = at + XC.settle_bits.offset + g * XP_SETTLE_WORDS * 8 + (k >> 3);
      b[byte] = b[byte]! | (1 << (k & 7));
    }
  });
}

function decodeXpChain(b: Buffer, at: number): XpChain {
  const arr = (o: number) => XP_FIELDS.map((_, f) => b.readUInt32LE(at + o + 4 * f));
  return {
    left: b.readUInt32LE(at + XC.left.offset),
    right: b.readUInt32LE(at + XC.right.offset),
    direct: b.readUInt32LE(at + XC.direct.offset),
    settle: b.readUInt32LE(at + XC.settle.offset),
    soff: arr(XC.soff.offset),
    n: arr(XC.n.offset),
    off: arr(XC.off.offset),
    finalOff: b.readUInt32LE(at + XC.final_off.offset),
    rightStates: b.readUInt32LE(at + XC.right_states.offset),
    settleClasses: [0, 1].map((g) => {
      const out: number[] = [];
      const from = at + XC.settle_bits.offset + g * XP_SETTLE_WORDS * 8;
      for (let k = 0; k < XP_SETTLE_WORDS * 64; k++) if (b[from + (k >> 3)]! & (1 << (k & 7))) out.push(k);
      return out;
    }) as [number[], number[]],
  };
}

const GC = STRUCTS.gen_config.members;

export function encodeGenConfig(c: GenConfig): Buffer {
  const b = Buffer.alloc(GEN_CONFIG_SIZE);
  b.writeUInt32LE(c.features, GC.features.offset);
  b.writeUInt32LE(c.words, GC.words.offset);
  c.base[0].copy(b, GC.base.offset);
  c.base[1].copy(b, GC.base.offset + BITS_BYTES);
  c.count.copy(b, GC.count.offset);
  for (let i = 0; i < MATCH_FIELDS.length; i++) {
    const at = GC.constrained.offset + i * BITS_BYTES;
    const v = c.constrained?.[i];
    if (v) v.copy(b, at);
    else b.fill(0xff, at, at + BITS_BYTES);
  }
  c.v6Len?.forEach((lens, field) => lens.forEach((len, i) => (b[GC.v6_len.offset + field * V6_LENGTHS + i] = len)));
  c.xp?.forEach((chain, p) => encodeXpChain(chain, b, GC.xp.offset + p * XP_CHAIN_SIZE));
  return b;
}

export function decodeGenConfig(b: Buffer): GenConfig {
  const vec = (at: number) => Buffer.from(b.subarray(at, at + BITS_BYTES));
  return {
    features: b.readUInt32LE(GC.features.offset),
    words: b.readUInt32LE(GC.words.offset),
    base: [vec(GC.base.offset), vec(GC.base.offset + BITS_BYTES)],
    count: vec(GC.count.offset),
    constrained: MATCH_FIELDS.map((_, i) => vec(GC.constrained.offset + i * BITS_BYTES)),
    v6Len: [0, 1].map((field) => [...b.subarray(GC.v6_len.offset + field * V6_LENGTHS, GC.v6_len.offset + (field + 1) * V6_LENGTHS)].filter((x) => x > 0)) as [number[], number[]],
    xp: [decodeXpChain(b, GC.xp.offset), decodeXpChain(b, GC.xp.offset + XP_CHAIN_SIZE)],
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

const RA = STRUCTS.rule_action.members;

export function encodeAction(a: RuleActionValue): Buffer {
  const b = Buffer.alloc(RULE_ACTION_SIZE);
  b.writeUInt32LE(a.action, RA.action.offset);
  b.writeUInt32LE(a.slot, RA.counter_slot.offset);
  b.writeBigUInt64LE(a.pps, RA.pps.offset);
  b.writeBigUInt64LE(a.pktBurst, RA.pkt_burst.offset);
  b.writeBigUInt64LE(a.bps, RA.bps.offset);
  b.writeBigUInt64LE(a.byteBurst, RA.byte_burst.offset);
  return b;
}

export function decodeAction(b: Buffer): RuleActionValue {
  return {
    action: b.readUInt32LE(RA.action.offset),
    slot: b.readUInt32LE(RA.counter_slot.offset),
    pps: b.readBigUInt64LE(RA.pps.offset),
    pktBurst: b.readBigUInt64LE(RA.pkt_burst.offset),
    bps: b.readBigUInt64LE(RA.bps.offset),
    byteBurst: b.readBigUInt64LE(RA.byte_burst.offset),
  };
}

const BM = STRUCTS.dir4_bitmap.members;

/** A DIR-16-8 bitmap chunk (filter_common.h struct dir4_bitmap): third byte b has cls[bit b]. */
export function encodeDir4Bitmap(bits: Uint8Array, cls: [number, number]): Buffer {
  const b = Buffer.alloc(DIR4_BITMAP_SIZE);
  Buffer.from(bits.buffer, bits.byteOffset, 32).copy(b, BM.bits.offset);
  b.writeUInt32LE(cls[0] >>> 0, BM.cls.offset);
  b.writeUInt32LE(cls[1] >>> 0, BM.cls.offset + 4);
  return b;
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
