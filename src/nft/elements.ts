/**
 * Named-set elements compared without nft printing them (pure, but for the
 * kernel read in src/nft/netlink.ts dumpSetElements).
 *
 * nft's listing of an interval set is superlinear (100k /24s: 1.2 s, 300k:
 * 8.9 s, 1M: many minutes here), so plan and drift never have nft list set
 * contents: the table is listed terse (`nft -t`), and each named set's
 * elements are compared as numbers: what the compile produced (sorted,
 * non-overlapping prefixes or port ranges, interface names) against what
 * the kernel holds (an NFT_MSG_GETSETELEM dump), both as one sorted
 * Uint32Array per set.
 *
 * Layout: an element is `stride` u32 words. A plain set's element is its
 * key (the key's bytes big-endian, zero-padded to whole words: keyWords).
 * An interval set's element is [start key, end key) (end exclusive, as the
 * kernel stores it; an interval reaching the top of the key space ends at
 * all-zero words, as the kernel then has no end element).
 */
import { addressToBigInt, ipv4ToNumber, type Prefix } from '../net/address.js';
import type { SetElementDump } from './netlink.js';

export type NftSetType = 'ipv4_addr' | 'ipv6_addr' | 'inet_service' | 'ifname';

/** A named set's elements in the layout above. */
export interface SetElements {
  name: string;
  type: NftSetType;
  interval: boolean;
  /** u32 words per key */
  keyWords: number;
  /** u32 words per element: keyWords, or 2 * keyWords for an interval set */
  stride: number;
  count: number;
  /** count * stride words, sorted ascending (lexicographic by word) */
  words: Uint32Array;
}

/** The key length in bytes nft gives each set type. */
export const KEY_BYTES: Record<NftSetType, number> = { ipv4_addr: 4, ipv6_addr: 16, inet_service: 2, ifname: 16 };

function empty(name: string, type: NftSetType, interval: boolean, count: number): SetElements {
  const keyWords = (KEY_BYTES[type] + 3) >> 2;
  const stride = interval ? keyWords * 2 : keyWords;
  return { name, type, interval, keyWords, stride, count, words: new Uint32Array(count * stride) };
}

/** Interval set of address prefixes (one family; sorted, non-overlapping: minimalPrefixes' output). */
export function prefixElements(name: string, type: 'ipv4_addr' | 'ipv6_addr', prefixes: readonly Prefix[]): SetElements {
  const s = empty(name, type, true, prefixes.length);
  const w = s.words;
  if (type === 'ipv4_addr') {
    for (let i = 0; i < prefixes.length; i++) {
      const p = prefixes[i]!;
      const first = ipv4ToNumber(p.address);
      w[2 * i] = first;
      w[2 * i + 1] = (first + 2 ** (32 - p.length)) % 2 ** 32;
    }
  } else {
    const top = 1n << 128n;
    for (let i = 0; i < prefixes.length; i++) {
      const p = prefixes[i]!;
      const first = addressToBigInt(p.address);
      put128(w, i * 8, first);
      put128(w, i * 8 + 4, (first + (1n << BigInt(128 - p.length))) % top);
    }
  }
  return sorted(s);
}

/** Interval set of port ranges (inclusive). */
export function portElements(name: string, ranges: readonly { from: number; to: number }[]): SetElements {
  const s = empty(name, 'inet_service', true, ranges.length);
  ranges.forEach((r, i) => {
    s.words[2 * i] = r.from * 65536;
    s.words[2 * i + 1] = ((r.to + 1) % 65536) * 65536;
  });
  return sorted(s);
}

/** Plain set of interface names. */
export function nameElements(name: string, names: readonly string[]): SetElements {
  const s = empty(name, 'ifname', false, names.length);
  names.forEach((n, i) => {
    const b = Buffer.alloc(16);
    b.write(n, 'utf8');
    for (let k = 0; k < 4; k++) s.words[i * 4 + k] = b.readUInt32BE(k * 4);
  });
  return sorted(s);
}

/**
 * The kernel's elements (a dump) in the same layout. An interval set comes
 * back as start and end elements (end flagged, descending here; nft adds an
 * end element at key 0 when the set does not start there): they are paired
 * into [start, end) in ascending order; a start with no end after it runs
 * to the top of the key space.
 */
export function dumpedElements(name: string, type: NftSetType, interval: boolean, d: SetElementDump): SetElements {
  const kw = d.keyWords;
  if (!interval) {
    const s = empty(name, type, false, d.count);
    s.words.set(d.keys.subarray(0, d.count * kw));
    return sorted(s);
  }
  // ascending order of keys, an end before a start at the same key (the dump's order reversed, when it is descending)
  const order = ascendingOrder(d);
  const out = new Uint32Array(d.count * 2 * kw);
  let n = 0;
  for (let j = 0; j < order.length; j++) {
    const i = order[j]!;
    if (d.end[i]) continue; // an end without a start before it: nft's marker at key 0
    const o = n * 2 * kw;
    for (let k = 0; k < kw; k++) out[o + k] = d.keys[i * kw + k]!;
    const next = j + 1 < order.length ? order[j + 1]! : -1;
    if (next >= 0 && d.end[next]) {
      for (let k = 0; k < kw; k++) out[o + kw + k] = d.keys[next * kw + k]!;
      j++;
    }
    n++;
  }
  return sorted({ name, type, interval, keyWords: kw, stride: 2 * kw, count: n, words: out.subarray(0, n * 2 * kw) });
}

/** The dump's indexes in ascending key order, ends before starts at equal keys (O(n) when the dump is monotonic). */
function ascendingOrder(d: SetElementDump): Int32Array {
  const kw = d.keyWords;
  const cmp = (a: number, b: number) => {
    for (let k = 0; k < kw; k++) {
      const x = d.keys[a * kw + k]!;
      const y = d.keys[b * kw + k]!;
      if (x !== y) return x < y ? -1 : 1;
    }
    return d.end[b]! - d.end[a]!;
  };
  const desc = Int32Array.from({ length: d.count }, (_, i) => d.count - 1 - i);
  if (isSorted(desc, cmp)) return desc;
  const asc = Int32Array.from({ length: d.count }, (_, i) => i);
  if (isSorted(asc, cmp)) return asc;
  return Int32Array.from([...asc].sort(cmp));
}

function isSorted(order: Int32Array, cmp: (a: number, b: number) => number): boolean {
  for (let j = 1; j < order.length; j++) if (cmp(order[j - 1]!, order[j]!) > 0) return false;
  return true;
}

/** Compares element a of x with element b of y (same stride). */
function compareAt(x: Uint32Array, a: number, y: Uint32Array, b: number, stride: number): number {
  for (let k = 0; k < stride; k++) {
    const p = x[a * stride + k]!;
    const q = y[b * stride + k]!;
    if (p !== q) return p < q ? -1 : 1;
  }
  return 0;
}

/** The set with its elements sorted (in place when they were not already). */
function sorted(s: SetElements): SetElements {
  let ok = true;
  for (let i = 1; i < s.count && ok; i++) if (compareAt(s.words, i - 1, s.words, i, s.stride) > 0) ok = false;
  if (ok) return s;
  const idx = Array.from({ length: s.count }, (_, i) => i).sort((a, b) => compareAt(s.words, a, s.words, b, s.stride));
  const w = new Uint32Array(s.words.length);
  idx.forEach((from, to) => w.set(s.words.subarray(from * s.stride, (from + 1) * s.stride), to * s.stride));
  return { ...s, words: w };
}

/** What differs between the wanted and the kernel's elements of one set. */
export interface ElementDiff {
  /** elements wanted and not in the kernel */
  missing: number;
  /** elements in the kernel and not wanted */
  unexpected: number;
  /** the first few of each, as nft writes them */
  missingExamples: string[];
  unexpectedExamples: string[];
}

/** Pure: merge walk of two sorted element lists (O(n)); null when equal. */
export function diffElements(want: SetElements, have: SetElements, examples = 5): ElementDiff | null {
  if (want.stride !== have.stride) throw new Error(`set ${want.name}: element layouts differ (${want.stride} vs ${have.stride} words)`);
  const d: ElementDiff = { missing: 0, unexpected: 0, missingExamples: [], unexpectedExamples: [] };
  let i = 0;
  let j = 0;
  const miss = (k: number) => {
    if (d.missing++ < examples) d.missingExamples.push(formatElement(want, k));
  };
  const extra = (k: number) => {
    if (d.unexpected++ < examples) d.unexpectedExamples.push(formatElement(have, k));
  };
  while (i < want.count && j < have.count) {
    const c = compareAt(want.words, i, have.words, j, want.stride);
    if (c === 0) {
      i++;
      j++;
    } else if (c < 0) miss(i++);
    else extra(j++);
  }
  while (i < want.count) miss(i++);
  while (j < have.count) extra(j++);
  return d.missing || d.unexpected ? d : null;
}

/** One element as nft writes it: a prefix, a range "a-b", a port, an interface name. */
export function formatElement(s: SetElements, i: number): string {
  const w = s.words.subarray(i * s.stride, (i + 1) * s.stride);
  if (s.type === 'ifname') return `"${Buffer.from(Uint8Array.from([...w].flatMap((x) => [x >>> 24, (x >>> 16) & 255, (x >>> 8) & 255, x & 255]))).toString('utf8').replace(/\0+$/, '')}"`;
  if (s.type === 'inet_service') {
    const from = w[0]! >>> 16;
    const to = ((w[1]! >>> 16) + 65535) % 65536;
    return from === to ? String(from) : `${from}-${to}`;
  }
  const bits = s.type === 'ipv4_addr' ? 32 : 128;
  const start = toBig(w.subarray(0, s.keyWords));
  let end = toBig(w.subarray(s.keyWords));
  if (end === 0n) end = 1n << BigInt(bits);
  const size = end - start;
  const text = (v: bigint) => (bits === 32 ? numberText4(Number(v)) : text6(v));
  const len = size > 0n && (size & (size - 1n)) === 0n && start % size === 0n ? bits - (size.toString(2).length - 1) : -1;
  return len >= 0 ? `${text(start)}/${len}` : `${text(start)}-${text(end - 1n)}`;
}

function put128(w: Uint32Array, at: number, v: bigint): void {
  for (let k = 3; k >= 0; k--) {
    w[at + k] = Number(v & 0xffffffffn);
    v >>= 32n;
  }
}

function toBig(w: Uint32Array): bigint {
  let v = 0n;
  for (const x of w) v = (v << 32n) | BigInt(x);
  return v;
}

function numberText4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

function text6(v: bigint): string {
  const groups: string[] = [];
  for (let k = 7; k >= 0; k--) groups.push(((v >> BigInt(k * 16)) & 0xffffn).toString(16));
  // the longest run of zero groups as "::"
  let best = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== '0') {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > bestLen && j - i > 1) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (best < 0) return groups.join(':');
  return `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLen).join(':')}`;
}

/**
 * The elements of `nft -j list set` (the fallback when netlink cannot be
 * read; nft lists big interval sets slowly) in the same layout: addresses,
 * prefixes and ranges, ports and port ranges, interface names.
 */
export function jsonElements(name: string, type: NftSetType, interval: boolean, elem: readonly unknown[]): SetElements {
  if (type === 'ifname') return nameElements(name, elem.map(String));
  const bits = type === 'ipv4_addr' ? 32 : type === 'ipv6_addr' ? 128 : 16;
  const top = 1n << BigInt(bits);
  const value = (v: unknown): bigint => (type === 'inet_service' ? BigInt(Number(v)) : type === 'ipv4_addr' ? BigInt(ipv4ToNumber(String(v))) : addressToBigInt(String(v)));
  const ranges = elem.map((e): [bigint, bigint] => {
    const o = (typeof e === 'object' && e !== null && 'elem' in e ? (e as { elem: { val: unknown } }).elem.val : e) as unknown;
    if (typeof o === 'object' && o !== null && 'prefix' in o) {
      const p = (o as { prefix: { addr: string; len: number } }).prefix;
      const first = value(p.addr);
      return [first, first + (1n << BigInt(bits - p.len))];
    }
    if (typeof o === 'object' && o !== null && 'range' in o) {
      const [a, b] = (o as { range: [unknown, unknown] }).range;
      return [value(a), value(b) + 1n];
    }
    return [value(o), value(o) + 1n];
  });
  const s = empty(name, type, interval, ranges.length);
  const kw = s.keyWords;
  const put = (at: number, v: bigint) => {
    // a key's bits left-aligned in its words (ports: the high half of one word)
    let x = type === 'inet_service' ? v << 16n : v;
    for (let k = kw - 1; k >= 0; k--) {
      s.words[at + k] = Number(x & 0xffffffffn);
      x >>= 32n;
    }
  };
  ranges.forEach(([a, b], i) => {
    put(i * s.stride, a);
    if (interval) put(i * s.stride + kw, b % top);
  });
  return sorted(s);
}
