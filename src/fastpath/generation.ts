/**
 * What one generation of the data plane holds beyond the compiler's output,
 * derived purely from it (no maps, no system): the per-field "constrained"
 * vectors that let the program skip lookups, and the compact form of the
 * IPv4 DIR-16-8 tables. The data plane writes exactly these; the unit tests
 * check them against the compiler's tables.
 */
import type { Dir4 } from './compile.js';
import { lpmRootBits, type FastpathTables } from './table.js';
import { BITS_BYTES, DIR_BITMAP, DIR_CHUNK, DIR_TRIE, DIR4_CHUNKS, FILTER_FLAGS_PER_GEN, FILTER_MAX_IFACES, MATCH_FIELDS, type GenConfig } from './layout.js';

/**
 * Per match field (MATCH_FIELDS order), the rules that constrain it: those
 * not in its zero-length entry (every vector of the field contains that
 * entry's rules, so for the others any lookup result keeps their bit). TCP
 * flags: the rules missing from some of the 257 vectors. A field whose
 * zero-length entry is missing counts every rule as constraining it (its
 * lookup can fail, which must stay a "no rule" result).
 */
export function constrainedVectors(desired: Pick<FastpathTables, 'fields' | 'tcpFlags'>): Buffer[] {
  return MATCH_FIELDS.map((f) => {
    if (f === 'flags') {
      const all = Buffer.alloc(BITS_BYTES, 0xff);
      for (let i = 0; i < FILTER_FLAGS_PER_GEN; i++) {
        const v = desired.tcpFlags[i];
        if (!v) return Buffer.alloc(BITS_BYTES, 0xff);
        for (let j = 0; j < BITS_BYTES; j++) all[j]! &= v[j]!;
      }
      return invert(all);
    }
    const root = lpmRootBits(f, desired.fields[f]);
    return root ? invert(root) : Buffer.alloc(BITS_BYTES, 0xff);
  });
}

/** The generation's gen_config with the constrained vectors filled in. */
export function genConfigWithConstraints(desired: Pick<FastpathTables, 'fields' | 'tcpFlags' | 'genConfig'>): GenConfig {
  return { ...desired.genConfig, constrained: constrainedVectors(desired) };
}

/** A chunk of two classes as a 256-bit bitmap: third byte b has cls[bit b]. */
export interface Dir4Bitmap {
  bits: Uint8Array;
  cls: [number, number];
}

/** DIR-16-8 as written: chunks of at most two classes become bitmaps (same index k). */
export interface PackedDir4 extends Dir4 {
  /** chunk index -> bitmap, for the chunks dir16 now points at as DIR_BITMAP | k */
  bitmaps: Map<number, Dir4Bitmap>;
}

/**
 * Rewrites the dir16 entries of two-class chunks to DIR_BITMAP | k (k the
 * chunk's index, so the bitmap table is indexed like the chunk table). The
 * other chunks, and the classes, stay as they are. A TRIE entry in a chunk
 * is a class like any other here: the program checks for TRIE after
 * resolving the entry.
 */
export function packDir4(d: Dir4): PackedDir4 {
  const bitmaps = new Map<number, Dir4Bitmap>();
  const dir16 = d.dir16.slice();
  for (let hi = 0; hi < 65536; hi++) {
    const e = dir16[hi]!;
    if (e === DIR_TRIE || !(e & DIR_CHUNK)) continue;
    const k = e & (DIR4_CHUNKS - 1);
    const chunk = d.chunks[k];
    if (!chunk) continue;
    const first = chunk[0]!;
    let second = first;
    let two = true;
    for (let b = 1; b < 256; b++) {
      const c = chunk[b]!;
      if (c === first || c === second) continue;
      if (second === first) second = c;
      else {
        two = false;
        break;
      }
    }
    if (!two) continue;
    const bits = new Uint8Array(32);
    for (let b = 0; b < 256; b++) if (chunk[b] !== first) bits[b >> 3]! |= 1 << (b & 7);
    bitmaps.set(k, { bits, cls: [first, second] });
    dir16[hi] = (DIR_BITMAP | k) >>> 0;
  }
  return { ...d, dir16, bitmaps };
}

/** The class an address gets through packed DIR-16-8 (what the program computes), or DIR_TRIE. */
export function resolveDir4(p: PackedDir4, addr: [number, number, number, number]): number {
  let c = p.dir16[(addr[0] << 8) | addr[1]]!;
  if (c === DIR_TRIE) return c;
  if (c & DIR_CHUNK) return p.chunks[c & (DIR4_CHUNKS - 1)]![addr[2]]!;
  if (c & DIR_BITMAP) {
    const bm = p.bitmaps.get(c & (DIR4_CHUNKS - 1))!;
    c = bm.cls[(bm.bits[addr[2] >> 3]! >> (addr[2] & 7)) & 1]!;
  }
  return c;
}

/** Positions where an array table differs from what was last written there (all of it when nothing was). */
export function changedIndexes(prev: ArrayLike<number> | undefined, values: ArrayLike<number>): Uint32Array {
  // typed: a DIR-16-8 chunk table of 10^6 entries changes whole when every prefix does (no array of numbers)
  const out = new Uint32Array(values.length);
  let n = 0;
  for (let i = 0; i < values.length; i++) if (!prev || prev[i] !== values[i]) out[n++] = i;
  return out.subarray(0, n);
}

/** Positions where a vector table differs from what was last written there. */
export function changedVectors(prev: readonly Buffer[] | undefined, vectors: readonly Buffer[]): number[] {
  const out: number[] = [];
  vectors.forEach((b, i) => {
    if (!prev?.[i]?.equals(b)) out.push(i);
  });
  return out;
}

/**
 * Counter slots of a new rule set: a rule keeps the slot (and counters) its
 * name has in the active generation; a new rule takes the lowest slot no
 * active rule holds. `fresh`: positions whose slot is new (its counters and
 * name are reset before use).
 */
export function assignRuleSlots(names: readonly string[], active: ReadonlyMap<string, number>): { slots: number[]; fresh: number[] } {
  const used = new Set(active.values());
  const slots: number[] = [];
  const fresh: number[] = [];
  let next = 0;
  names.forEach((name, i) => {
    let s = active.get(name);
    if (s === undefined) {
      while (used.has(next)) next++;
      s = next;
      used.add(s);
      fresh.push(i);
    }
    slots.push(s);
  });
  return { slots, fresh };
}

/**
 * Interface slots of a new generation (ifindex -> slot): an interface keeps
 * the slot it has in the active generation (packets classified against it
 * still read that slot); a new one takes the lowest slot the active
 * generation does not use. Throws beyond `max` slots.
 */
export function assignIfaceSlots(ifindexes: readonly number[], active: ReadonlyMap<number, number>, max = FILTER_MAX_IFACES): Map<number, number> {
  const slotOf = new Map<number, number>();
  const taken = new Set(active.values());
  let free = 0;
  for (const idx of ifindexes) {
    if (slotOf.has(idx)) continue;
    let slot = active.get(idx);
    if (slot === undefined) {
      while (taken.has(free)) free++;
      if (free >= max) throw new Error(`fastpath: more than ${max} interfaces (with those the active rule set still uses)`);
      slot = free;
      taken.add(slot);
    }
    slotOf.set(idx, slot);
  }
  return slotOf;
}

function invert(b: Buffer): Buffer {
  const out = Buffer.alloc(b.length);
  for (let i = 0; i < b.length; i++) out[i] = ~b[i]! & 0xff;
  return out;
}
