/**
 * A keyed map's contents as sorted flat buffers: what the fast path compiles
 * for each LPM field, what it remembers having written into each generation,
 * and what it reads back from the kernel, in one form. A million prefixes
 * are then four typed arrays (sort keys, a class id per entry, the distinct
 * values), not a million objects or string keys on the main thread: no
 * garbage collection of them, transferable between threads as they are, and
 * two generations are diffed by one linear merge (mergeDiff) instead of
 * hash-map lookups.
 *
 * Sort keys are bytes compared lexicographically; for an LPM field they are
 * the address bytes then the prefix length (lpmSortKey), which is the order
 * the compiler's buildLpm emits, so a compiled field needs no sort. Values
 * are stored once per distinct content (a country's thousands of prefixes
 * share one rule vector): `values` holds them back to back, `cls[i]` says
 * which one entry i has.
 *
 * A plain object of typed arrays on purpose: structured clone and transfer
 * keep it as it is, and the engine's deepEqual compares it natively.
 */
import { Slicer, TICK_EVERY } from '../system/slices.js';
import { BITS_BYTES, LPM_FIELDS, V6_HASH_KEY_SIZE, fieldDataBytes, fieldKeySize, STRUCTS, type LpmField } from './layout.js';
import type { Dir6, FastpathDesired, LpmEntry } from './compile.js';

export interface FlatTable {
  /** entries */
  count: number;
  /** bytes of one sort key */
  keyBytes: number;
  /** count * keyBytes, strictly ascending (bytewise): sorted, no duplicates */
  keys: Uint8Array;
  /** class (index into values) of each entry */
  cls: Uint32Array;
  /** bytes of one value */
  valueBytes: number;
  /** the distinct values, valueBytes each */
  values: Uint8Array;
}

/** A diff of two tables: entry indexes of `have` to delete, of `want` to add, and of `want` whose key `have` holds with another value. */
export interface TableDiff {
  removed: Uint32Array;
  added: Uint32Array;
  changed: Uint32Array;
}

/**
 * What the data plane writes for one generation: the compiler's output
 * (FastpathDesired) with each LPM field as a sorted table. This is the fast
 * path subsystem's desired state: compiled in a worker for a large document
 * and transferred as it is, kept by the engine, planned and written without
 * rebuilding an object per entry.
 */
export type FastpathTables = Omit<FastpathDesired, 'fields' | 'dir6'> & {
  fields: Record<LpmField, FlatTable>;
  /** the IPv6 first stage with its hash entries as a table (v6HashTable) */
  dir6: { src_v6?: Dir6Table; dst_v6?: Dir6Table };
};

export type Dir6Table = Omit<Dir6, 'hash'> & { hash: FlatTable };

/** The compiler's output with its LPM fields and IPv6 hash entries as tables (one already a table is kept). */
export function fastpathTables(d: FastpathDesired | FastpathTables): FastpathTables {
  const fields = {} as Record<LpmField, FlatTable>;
  for (const f of LPM_FIELDS) {
    const x = d.fields[f] as LpmEntry[] | FlatTable;
    fields[f] = Array.isArray(x) ? lpmTable(f, x) : x;
  }
  const dir6: FastpathTables['dir6'] = {};
  for (const f of ['src_v6', 'dst_v6'] as const) {
    const x = d.dir6?.[f] as Dir6 | Dir6Table | undefined;
    if (x) dir6[f] = Array.isArray(x.hash) ? { ...x, hash: v6HashTable(x.hash) } : (x as Dir6Table);
  }
  return { ...d, fields, dir6 };
}

/** Sort key of a v6_hash entry: prefix length, then the top 64 bits big-endian; the value is the class (u32 LE). */
const V6_SORT_KEY = 9;

/** IPv6 hash entries (length, top 64 bits, class) as a table; the same (length, bits) twice is refused. */
export function v6HashTable(hash: readonly Dir6['hash'][number][]): FlatTable {
  const n = hash.length;
  const keys = new Uint8Array(n * V6_SORT_KEY);
  const kv = new DataView(keys.buffer);
  const cls = new Uint32Array(n);
  const classes = new ValueClasses(4);
  const v = new Uint8Array(4);
  const vv = new DataView(v.buffer);
  for (let i = 0; i < n; i++) {
    const h = hash[i]!;
    keys[i * V6_SORT_KEY] = h.len;
    kv.setBigUint64(i * V6_SORT_KEY + 1, h.hi, false);
    vv.setUint32(0, h.cls, true);
    cls[i] = classes.classOf(v, 0);
  }
  return sortedTable({ count: n, keyBytes: V6_SORT_KEY, keys, cls, valueBytes: 4, values: classes.values() }, 'map v6_hash');
}

const HK = STRUCTS.v6_hash_key.members;

/** Kernel keys (struct v6_hash_key) of (generation * 2 + field) gf for table entries idx[from..to) into `out`. */
export function encodeV6HashKeys(gf: number, t: FlatTable, idx: Uint32Array, from: number, to: number, out: Uint8Array): void {
  out.fill(0, 0, (to - from) * V6_HASH_KEY_SIZE);
  const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
  const kv = new DataView(t.keys.buffer, t.keys.byteOffset, t.keys.byteLength);
  for (let j = from; j < to; j++) {
    const s = idx[j]! * V6_SORT_KEY;
    const d = (j - from) * V6_HASH_KEY_SIZE;
    dv.setUint32(d + HK.tag.offset, ((gf << 8) | t.keys[s]!) >>> 0, true);
    dv.setBigUint64(d + HK.hi.offset, kv.getBigUint64(s + 1, false), true);
  }
}

/** The entries of (generation * 2 + field) gf of a v6_hash batch read as a table. */
export async function v6HashTableFromKernel(gf: number, keys: Uint8Array, values: Uint8Array, count: number, valueBytes: number, slicer = new Slicer()): Promise<FlatTable> {
  const ks = V6_HASH_KEY_SIZE;
  const dv = new DataView(keys.buffer, keys.byteOffset, keys.byteLength);
  let n = 0;
  for (let i = 0; i < count; i++) if (dv.getUint32(i * ks + HK.tag.offset, true) >>> 8 === gf) n++;
  const out = new Uint8Array(n * V6_SORT_KEY);
  const ov = new DataView(out.buffer);
  const cls = new Uint32Array(n);
  const classes = new ValueClasses(valueBytes);
  let j = 0;
  for (let i = 0; i < count; i++) {
    if (i % TICK_EVERY === 0 && slicer.due()) await slicer.pause();
    const tag = dv.getUint32(i * ks + HK.tag.offset, true);
    if (tag >>> 8 !== gf) continue;
    out[j * V6_SORT_KEY] = tag & 0xff;
    ov.setBigUint64(j * V6_SORT_KEY + 1, dv.getBigUint64(i * ks + HK.hi.offset, true), false);
    cls[j] = classes.classOf(values, i * valueBytes);
    j++;
  }
  return sortedTable({ count: n, keyBytes: V6_SORT_KEY, keys: out, cls, valueBytes, values: classes.values() }, `map v6_hash (generation and field ${gf})`);
}

export function emptyTable(keyBytes: number, valueBytes: number): FlatTable {
  return { count: 0, keyBytes, keys: new Uint8Array(0), cls: new Uint32Array(0), valueBytes, values: new Uint8Array(0) };
}

/** Sort key bytes of an LPM field: address bytes, then the prefix length. */
export function lpmSortKeyBytes(f: LpmField): number {
  return fieldDataBytes(f) + 1;
}

/**
 * The compiler's entries of one LPM field as a table. buildLpm emits them
 * sorted by address then length (no sort then: one pass); anything else is
 * sorted here. Identical vectors (the compiler shares their Buffers) become
 * one class. Two entries with the same address and length are refused.
 */
export function lpmTable(f: LpmField, entries: readonly LpmEntry[]): FlatTable {
  const db = fieldDataBytes(f);
  const kb = db + 1;
  const n = entries.length;
  const keys = new Uint8Array(n * kb);
  const cls = new Uint32Array(n);
  const classes = new ValueClasses(BITS_BYTES);
  for (let i = 0; i < n; i++) {
    const e = entries[i]!;
    const off = i * kb;
    keys.set(e.data.length > db ? e.data.subarray(0, db) : e.data, off);
    keys[off + db] = e.length;
    cls[i] = classes.classOf(e.bits, 0, e.bits);
  }
  return sortedTable({ count: n, keyBytes: kb, keys, cls, valueBytes: BITS_BYTES, values: classes.values() }, `map ${f}`);
}

/** Entry i of an LPM table as the compiler's LpmEntry (views into the table, for describing a few entries). */
export function lpmEntryAt(f: LpmField, t: FlatTable, i: number): LpmEntry {
  const db = fieldDataBytes(f);
  const off = i * t.keyBytes;
  const buf = (u: Uint8Array, a: number, b: number) => Buffer.from(u.buffer, u.byteOffset + a, b - a);
  return { data: buf(t.keys, off, off + db), length: t.keys[off + db]!, bits: valueAt(t, i) };
}

/** The value of entry i (a view). */
export function valueAt(t: FlatTable, i: number): Buffer {
  const at = t.cls[i]! * t.valueBytes;
  return Buffer.from(t.values.buffer, t.values.byteOffset + at, t.valueBytes);
}

/** The vector of an LPM table's zero-length entry (sorted first: address 0, length 0), if it has one. */
export function lpmRootBits(f: LpmField, t: FlatTable): Buffer | undefined {
  if (t.count === 0) return undefined;
  for (let b = 0; b < t.keyBytes; b++) if (t.keys[b] !== 0) return undefined;
  return valueAt(t, 0);
}

const KEY_PREFIXLEN = STRUCTS.lpm_v4_key.members.prefixlen.offset;
const KEY_GEN = STRUCTS.lpm_v4_key.members.gen.offset;
const KEY_ADDR = STRUCTS.lpm_v4_key.members.addr.offset;

/**
 * Kernel keys (struct lpm_*_key: prefixlen = 8 + length, generation byte,
 * address) of table entries `idx[from..to)` into `out`, back to back.
 */
export function encodeLpmKeys(f: LpmField, gen: number, t: FlatTable, idx: Uint32Array, from: number, to: number, out: Uint8Array): void {
  const ks = fieldKeySize(f);
  const db = fieldDataBytes(f);
  const kb = t.keyBytes;
  out.fill(0, 0, (to - from) * ks);
  const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
  const src = t.keys;
  // the address bytes one by one (4 or 16): Buffer.copy from an offset makes a Uint8Array view per call on
  // Node 20 (a million short-lived objects per million entries, collected on the server's main thread)
  for (let j = from; j < to; j++) {
    const s = idx[j]! * kb;
    const d = (j - from) * ks;
    dv.setUint32(d + KEY_PREFIXLEN, 8 + src[s + db]!, true);
    out[d + KEY_GEN] = gen;
    const a = d + KEY_ADDR;
    for (let b = 0; b < db; b++) out[a + b] = src[s + b]!;
  }
}

/** Values of table entries `idx[from..to)` into `out`, back to back. */
export function encodeValues(t: FlatTable, idx: Uint32Array, from: number, to: number, out: Uint8Array): void {
  const vb = t.valueBytes;
  const src = t.values;
  const cls = t.cls;
  // no object per entry (Buffer.copy from an offset makes a view per call on Node 20): whole u32 words
  // where both sides are aligned (a rule vector is 128 bytes), else bytes
  if (((src.byteOffset | out.byteOffset | vb) & 3) === 0) {
    const w = vb >> 2;
    const s32 = new Uint32Array(src.buffer, src.byteOffset, src.byteLength >> 2);
    const d32 = new Uint32Array(out.buffer, out.byteOffset, out.byteLength >> 2);
    for (let j = from; j < to; j++) {
      const at = cls[idx[j]!]! * w;
      const d = (j - from) * w;
      for (let k = 0; k < w; k++) d32[d + k] = s32[at + k]!;
    }
    return;
  }
  for (let j = from; j < to; j++) {
    const at = cls[idx[j]!]! * vb;
    const d = (j - from) * vb;
    for (let k = 0; k < vb; k++) out[d + k] = src[at + k]!;
  }
}

/**
 * One generation of an LPM map as read from the kernel (a batch lookup:
 * `count` keys of fieldKeySize(f) and values of `valueBytes` back to back,
 * both generations mixed, in the trie's order) as a sorted table.
 */
export async function lpmTableFromKernel(f: LpmField, gen: number, keys: Uint8Array, values: Uint8Array, count: number, valueBytes: number, slicer = new Slicer()): Promise<FlatTable> {
  const ks = fieldKeySize(f);
  const db = fieldDataBytes(f);
  const kb = db + 1;
  let n = 0;
  for (let i = 0; i < count; i++) if (keys[i * ks + KEY_GEN] === gen) n++;
  const out = new Uint8Array(n * kb);
  const cls = new Uint32Array(n);
  const classes = new ValueClasses(valueBytes);
  const dv = new DataView(keys.buffer, keys.byteOffset, keys.byteLength);
  let j = 0;
  for (let i = 0; i < count; i++) {
    if (i % TICK_EVERY === 0 && slicer.due()) await slicer.pause();
    const k = i * ks;
    if (keys[k + KEY_GEN] !== gen) continue;
    for (let b = 0; b < db; b++) out[j * kb + b] = keys[k + KEY_ADDR + b]!;
    out[j * kb + db] = dv.getUint32(k + KEY_PREFIXLEN, true) - 8;
    cls[j] = classes.classOf(values, i * valueBytes);
    j++;
  }
  return sortedTable({ count: n, keyBytes: kb, keys: out, cls, valueBytes, values: classes.values() }, `map ${f} generation ${gen}`);
}

/**
 * The diff that brings `have` to `want` by one merge of the two sorted key
 * arrays: keys only in `have` are removed, keys only in `want` added, keys in
 * both with different value bytes changed; equal entries are not written.
 * Both tables must be strictly ascending (a duplicate or out-of-order key is
 * an error naming `what`). Value bytes are compared once per pair of classes,
 * not per entry. Yields to the event loop between slices.
 */
export async function mergeDiff(have: FlatTable, want: FlatTable, slicer = new Slicer(), what = 'table'): Promise<TableDiff> {
  if (have.keyBytes !== want.keyBytes || have.valueBytes !== want.valueBytes) {
    throw new Error(`${what}: cannot diff tables of ${have.keyBytes}/${have.valueBytes}-byte and ${want.keyBytes}/${want.valueBytes}-byte keys/values`);
  }
  const kb = want.keyBytes;
  const same = classEquality(have, want);
  const removed = new Uint32Array(have.count);
  const added = new Uint32Array(want.count);
  const changed = new Uint32Array(want.count);
  let nr = 0;
  let na = 0;
  let nc = 0;
  let i = 0;
  let j = 0;
  let steps = 0;
  const A = have.keys;
  const B = want.keys;
  while (i < have.count || j < want.count) {
    if (++steps % TICK_EVERY === 0 && slicer.due()) await slicer.pause();
    let c: number;
    if (i >= have.count) c = 1;
    else if (j >= want.count) c = -1;
    else c = compareKeys(A, i * kb, B, j * kb, kb);
    if (c < 0) {
      if (i > 0 && compareKeys(A, (i - 1) * kb, A, i * kb, kb) >= 0) throw unsorted(what, 'the current contents', i);
      removed[nr++] = i++;
    } else if (c > 0) {
      if (j > 0 && compareKeys(B, (j - 1) * kb, B, j * kb, kb) >= 0) throw unsorted(what, 'the wanted contents', j);
      added[na++] = j++;
    } else {
      if (i > 0 && compareKeys(A, (i - 1) * kb, A, i * kb, kb) >= 0) throw unsorted(what, 'the current contents', i);
      if (j > 0 && compareKeys(B, (j - 1) * kb, B, j * kb, kb) >= 0) throw unsorted(what, 'the wanted contents', j);
      if (!same(have.cls[i]!, want.cls[j]!)) changed[nc++] = j;
      i++;
      j++;
    }
  }
  return { removed: removed.subarray(0, nr), added: added.subarray(0, na), changed: changed.subarray(0, nc) };
}

/** added and changed together: the entries of `want` to write. */
export function upserts(d: TableDiff): Uint32Array {
  const out = new Uint32Array(d.added.length + d.changed.length);
  out.set(d.added, 0);
  out.set(d.changed, d.added.length);
  return out;
}

/** Whether two tables hold the same entries (keys and value bytes). */
export async function sameContents(a: FlatTable, b: FlatTable, slicer = new Slicer()): Promise<boolean> {
  if (a.count !== b.count) return false;
  const d = await mergeDiff(a, b, slicer);
  return d.removed.length === 0 && d.added.length === 0 && d.changed.length === 0;
}

function unsorted(what: string, side: string, i: number): Error {
  return new Error(`${what}: ${side} hold a duplicate or out-of-order key at entry ${i} (a table must be sorted, each key once)`);
}

function compareKeys(a: Uint8Array, ai: number, b: Uint8Array, bi: number, n: number): number {
  for (let k = 0; k < n; k++) {
    const d = a[ai + k]! - b[bi + k]!;
    if (d !== 0) return d;
  }
  return 0;
}

/** (class of have, class of want) -> same value bytes: a want class maps to the have class with its content, once. */
function classEquality(have: FlatTable, want: FlatTable): (h: number, w: number) => boolean {
  const vb = want.valueBytes;
  const nh = have.values.length / vb;
  const nw = want.values.length / vb;
  if (have.values === want.values) return (h, w) => h === w;
  const byContent = new Map<string, number>();
  const str = (u: Uint8Array, c: number) => Buffer.from(u.buffer, u.byteOffset + c * vb, vb).toString('latin1');
  for (let c = 0; c < nh; c++) if (!byContent.has(str(have.values, c))) byContent.set(str(have.values, c), c);
  const map = new Int32Array(nw);
  for (let c = 0; c < nw; c++) map[c] = byContent.get(str(want.values, c)) ?? -1;
  // a have table read from the kernel has one class per distinct content; compiled ones too (ValueClasses)
  return (h, w) => map[w] === h;
}

/**
 * Sorts a table in place (by its keys, radix sort: keyBytes counting passes,
 * no comparator calls) unless it is sorted already; refuses duplicate keys.
 */
export function sortedTable(t: FlatTable, what: string): FlatTable {
  const kb = t.keyBytes;
  let sorted = true;
  for (let i = 1; i < t.count; i++) {
    const c = compareKeys(t.keys, (i - 1) * kb, t.keys, i * kb, kb);
    if (c === 0) throw duplicate(what, t, i);
    if (c > 0) {
      sorted = false;
      break;
    }
  }
  if (sorted) return t;
  const order = radixOrder(t.keys, kb, t.count);
  const keys = new Uint8Array(t.keys.length);
  const cls = new Uint32Array(t.count);
  for (let j = 0; j < t.count; j++) {
    const i = order[j]!;
    keys.set(t.keys.subarray(i * kb, (i + 1) * kb), j * kb);
    cls[j] = t.cls[i]!;
  }
  for (let i = 1; i < t.count; i++) if (compareKeys(keys, (i - 1) * kb, keys, i * kb, kb) === 0) throw duplicate(what, { ...t, keys }, i);
  return { ...t, keys, cls };
}

function duplicate(what: string, t: FlatTable, i: number): Error {
  const k = Buffer.from(t.keys.buffer, t.keys.byteOffset + i * t.keyBytes, t.keyBytes).toString('hex');
  return new Error(`${what}: key ${k} appears more than once (each key must be written once)`);
}

/** LSD radix sort of entry indexes by their key bytes (stable per pass). */
function radixOrder(keys: Uint8Array, kb: number, n: number): Uint32Array {
  let order = new Uint32Array(n);
  let next = new Uint32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  const counts = new Uint32Array(257);
  for (let b = kb - 1; b >= 0; b--) {
    counts.fill(0);
    for (let i = 0; i < n; i++) counts[keys[i * kb + b]! + 1]!++;
    for (let v = 0; v < 256; v++) counts[v + 1]! += counts[v]!;
    for (let j = 0; j < n; j++) {
      const i = order[j]!;
      next[counts[keys[i * kb + b]!]!++] = i;
    }
    [order, next] = [next, order];
  }
  return order;
}

/**
 * Distinct values by content. Compiled vectors are shared Buffers (found by
 * identity first); values read from the kernel are hashed (FNV-1a over the
 * bytes) and compared, with the previous entry's value tried first (runs of
 * equal values are the common case).
 */
class ValueClasses {
  private readonly byRef = new Map<object, number>();
  private readonly byHash = new Map<number, number[]>();
  private store: Uint8Array;
  private n = 0;
  private last = -1;

  constructor(private readonly vb: number) {
    this.store = new Uint8Array(vb * 16);
  }

  classOf(src: Uint8Array, off: number, ref?: object): number {
    if (ref) {
      const c = this.byRef.get(ref);
      if (c !== undefined) return c;
    }
    const vb = this.vb;
    if (this.last >= 0 && this.equals(this.last, src, off)) return this.remember(ref, this.last);
    let h = 0x811c9dc5;
    for (let k = 0; k < vb; k++) h = Math.imul(h ^ src[off + k]!, 0x01000193);
    const list = this.byHash.get(h);
    if (list) for (const c of list) if (this.equals(c, src, off)) return this.remember(ref, (this.last = c));
    if ((this.n + 1) * vb > this.store.length) {
      const grown = new Uint8Array(this.store.length * 2);
      grown.set(this.store);
      this.store = grown;
    }
    this.store.set(src.subarray(off, off + vb), this.n * vb);
    const c = this.n++;
    if (list) list.push(c);
    else this.byHash.set(h, [c]);
    this.last = c;
    return this.remember(ref, c);
  }

  values(): Uint8Array {
    return this.store.slice(0, this.n * this.vb);
  }

  private remember(ref: object | undefined, c: number): number {
    if (ref) this.byRef.set(ref, c);
    return c;
  }

  private equals(c: number, src: Uint8Array, off: number): boolean {
    const s = this.store;
    const at = c * this.vb;
    for (let k = 0; k < this.vb; k++) if (s[at + k] !== src[off + k]) return false;
    return true;
  }
}
