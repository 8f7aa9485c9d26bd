/**
 * The workload every path sees: a rule set of N source prefixes to drop
 * (one family per run) and a table of prepared frames, one per source
 * address, a given share of them inside the dropped prefixes. Deterministic
 * (seeded), so every path and every repetition gets the same packets.
 *
 * Prefixes are spaced with gaps (every other /24 for IPv4, every other /48 for
 * IPv6) and the non-matching sources are drawn from those gaps: a miss is a
 * near miss for an LPM trie and an interval set, not a trivially disjoint
 * address.
 */
import { frame } from '../lib/packets.js';

export type Family = 4 | 6;

export interface RuleSet {
  family: Family;
  /** "a.b.c.0/24" or "2a00:x:y::/48", each one rule "drop from this source prefix" */
  prefixes: string[];
}

export interface FrameTable {
  family: Family;
  /** frames of `len` bytes back to back, the generator's input file */
  data: Buffer;
  len: number;
  count: number;
  /** how many of the frames come from inside the rule set's prefixes */
  matching: number;
  /** one matching and one non-matching frame (for the in-kernel classifier timing) */
  sampleMatch?: Buffer;
  sampleMiss: Buffer;
}

export interface Endpoints {
  srcMac: string;
  dstMac: string;
  dst4: string;
  dst6: string;
}

/** Frame length for both families: the IPv6 UDP minimum plus 2 bytes; IPv4 pads its payload to match. */
export const FRAME_LEN = 64;

/** n prefixes; `offset` shifts them (a disjoint second set for swaps). */
export function ruleSet(family: Family, n: number, offset = 0): RuleSet {
  const prefixes: string[] = [];
  for (let i = 0; i < n; i++) prefixes.push(prefixAt(family, 2 * (i + offset)));
  return { family, prefixes };
}

/**
 * `count` frames, `share` (0..1) of them matching; matching and non-matching
 * frames are interleaved evenly so every generator batch carries the mix.
 */
export function frameTable(rules: RuleSet, count: number, share: number, ep: Endpoints, seed = 1): FrameTable {
  const rnd = mulberry32(seed * 7919 + rules.family * 104729 + rules.prefixes.length);
  const n = rules.prefixes.length;
  const frames: Buffer[] = [];
  let matching = 0;
  let sampleMatch: Buffer | undefined;
  let sampleMiss: Buffer | undefined;
  for (let i = 0; i < count; i++) {
    const match = n > 0 && Math.floor((i + 1) * share) > Math.floor(i * share);
    // a matching source sits in one of the rule prefixes, a miss in a gap between them
    const slot = 2 * Math.floor(rnd() * Math.max(n, 1)) + (match ? 0 : 1);
    const src = hostIn(rules.family, slot, rnd);
    const f = frame({
      src,
      dst: rules.family === 4 ? ep.dst4 : ep.dst6,
      proto: 'udp',
      sport: 1024 + Math.floor(rnd() * 60000),
      dport: 9,
      srcMac: ep.srcMac,
      dstMac: ep.dstMac,
      payload: rules.family === 4 ? FRAME_LEN - 42 : FRAME_LEN - 62,
    });
    if (f.length !== FRAME_LEN) throw new Error(`bench frame is ${f.length} bytes, expected ${FRAME_LEN}`);
    frames.push(f);
    if (match) {
      matching++;
      sampleMatch ??= f;
    } else {
      sampleMiss ??= f;
    }
  }
  if (!sampleMiss) {
    sampleMiss = frame({
      src: hostIn(rules.family, 1, rnd),
      dst: rules.family === 4 ? ep.dst4 : ep.dst6,
      srcMac: ep.srcMac,
      dstMac: ep.dstMac,
      payload: rules.family === 4 ? FRAME_LEN - 42 : FRAME_LEN - 62,
    });
  }
  return { family: rules.family, data: Buffer.concat(frames), len: FRAME_LEN, count, matching, ...(sampleMatch ? { sampleMatch } : {}), sampleMiss };
}

/** Prefix number `slot`: IPv4 /24s from 16.0.0.0, IPv6 /48s from 2a00::. */
export function prefixAt(family: Family, slot: number): string {
  if (family === 4) {
    const base = (16 << 24) + slot * 256;
    return `${(base >>> 24) & 255}.${(base >>> 16) & 255}.${(base >>> 8) & 255}.0/24`;
  }
  return `2a00:${((slot >>> 16) & 0xffff).toString(16)}:${(slot & 0xffff).toString(16)}::/48`;
}

function hostIn(family: Family, slot: number, rnd: () => number): string {
  if (family === 4) {
    const base = (16 << 24) + slot * 256 + 1 + Math.floor(rnd() * 254);
    return `${(base >>> 24) & 255}.${(base >>> 16) & 255}.${(base >>> 8) & 255}.${base & 255}`;
  }
  const h = () => Math.floor(rnd() * 0x10000).toString(16);
  return `2a00:${((slot >>> 16) & 0xffff).toString(16)}:${(slot & 0xffff).toString(16)}:${h()}:${h()}:${h()}:${h()}:${h()}`;
}

function mulberry32(a: number): () => number {
  return () => {
    a |= 0;
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
