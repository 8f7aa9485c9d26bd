/**
 * Equivalence-class crossproducting for IPv4 TCP/UDP (RFC: Gupta &
 * McKeown, "Packet Classification on Multiple Fields", SIGCOMM 1999; the
 * layout is in bpf/include/filter_common.h). Pure: the compiler's class
 * tables (DIR-16-8 classes per address field, port classes per port field,
 * the 257 TCP-flag vectors, the interface vectors) in, u16 cells and one
 * chain description per protocol out.
 *
 * Per protocol the fields some rule constrains split into a left and a right
 * group. A group's state is a class of rule sets: it starts as the interface
 * class (left) or one class (right), and each field of the group combines
 * (state, field class) into the class of their AND through a table. A final
 * table maps (left, right) to the first matching rule. Two reductions keep
 * the classes few:
 *   - per protocol, a field whose vectors are all equal there (say TCP ports
 *     when only UDP rules name ports) is no step at all: its vector is ANDed
 *     into the protocol's start vector, as are, per field, the rules some
 *     value of it allows (a rule no TCP port allows never matches TCP);
 *   - once a state holds a terminal rule that no field still to come
 *     constrains, that rule wins whatever comes: the rules after it are
 *     dropped from the state, so states that differ only behind their
 *     certain winner are one class.
 * The grouping puts fields that rules constrain together into one group (a
 * rule split across groups makes the final table a product of both groups'
 * variety); the tables are capped at XP_CELLS cells per generation, and a
 * rule set that exceeds the cap keeps the bit vectors.
 */
import type { Dir4, PortArrays } from './compile.js';
import { FEAT, FILTER_FLAGS_UNKNOWN, XP_CELLS, XP_FALLBACK, XP_FIELDS, XP_FLAGS_CELLS, XP_MAX_STATE, XP_NONE, XP_SETTLED, type XpChain } from './layout.js';

export interface XpInput {
  rules: number;
  features: number;
  /** genConfig.base[0]: the AND of the IPv4 fields the program does not look up */
  base4: Buffer;
  count: Buffer;
  dir4: { src_v4?: Dir4; dst_v4?: Dir4 };
  ports: { sport?: PortArrays; dport?: PortArrays };
  tcpFlags: Buffer[];
  /** the rule vector of every interface entry the generation writes (ingress, and egress where enabled) */
  ifaceBits: Buffer[];
}

export interface Crossproduct {
  /** the generation's cells (flags classes first, then the tables), at most XP_CELLS */
  cells: Uint16Array;
  /** [TCP, UDP] */
  chains: [XpChain, XpChain];
  /** the xp_class of each input.ifaceBits entry */
  ifaceClass: number[];
  /** tables' cells and the states of each protocol's groups, for plan/status and the bench */
  stats: { cells: number; tcp: { left: string[]; right: string[] }; udp: { left: string[]; right: string[] } };
}

/** A field of one protocol's chain: its class vectors (undefined: the class never occurs for that protocol). */
interface XpFieldVectors {
  id: number; // XP_FIELDS index
  n: number;
  vec: (Uint32Array | undefined)[];
}

class Failed extends Error {}

/**
 * The crossproduct tables of a generation, or why it keeps the bit vectors
 * (a field the arrays do not cover, or tables beyond `cap` cells).
 */
export function buildCrossproduct(input: XpInput, cap = XP_CELLS, budgetMs = 4000): Crossproduct | { reason: string } {
  const W = Math.max(1, Math.ceil(input.rules / 32));
  const words = (b: Buffer): Uint32Array => {
    const w = new Uint32Array(W);
    for (let j = 0; j < W; j++) w[j] = b.readUInt32LE(4 * j);
    return w;
  };
  const feat = input.features;
  const count = words(input.count);
  const base = words(input.base4);
  const deadline = performance.now() + budgetMs;

  // field vectors common to both protocols
  const addr = (f: 'src_v4' | 'dst_v4'): Uint32Array[] | undefined => {
    if (!(feat & FEAT[f])) return undefined;
    const d = input.dir4[f];
    if (!d) throw new Failed(`${f === 'src_v4' ? 'source' : 'destination'} IPv4 uses its trie (more distinct vectors than DIR-16-8 holds)`);
    return d.classes.map(words);
  };
  let src: Uint32Array[] | undefined, dst: Uint32Array[] | undefined;
  try {
    src = addr('src_v4');
    dst = addr('dst_v4');
    for (const f of ['sport', 'dport'] as const) if (feat & FEAT[f] && !input.ports[f]) throw new Failed(`${f === 'sport' ? 'source' : 'destination'} ports use their trie`);
  } catch (e) {
    if (e instanceof Failed) return { reason: e.message };
    throw e;
  }
  const portVecs = (f: 'sport' | 'dport') => input.ports[f]?.classes.map(words);
  const sportAll = portVecs('sport');
  const dportAll = portVecs('dport');
  // TCP flag classes (cells [0, 256))
  const flagClass = new Uint16Array(XP_FLAGS_CELLS);
  const flagVecs: Uint32Array[] = [];
  if (feat & FEAT.flags) {
    const seen = new Interner(W);
    for (let i = 0; i < 256; i++) {
      const v = words(input.tcpFlags[i]!);
      const id = seen.intern(v);
      flagClass[i] = id;
      if (id === flagVecs.length) flagVecs.push(v);
    }
  }

  // interface classes: distinct (interface vector & base)
  const ifaces = new Interner(W);
  const ifaceClass = input.ifaceBits.map((b) => {
    const v = words(b);
    and(v, base);
    return ifaces.intern(v);
  });
  if (ifaces.size === 0) ifaces.intern(base.slice());
  const ifaceVecs = ifaces.all();

  const cells = new Uint16Array(cap);
  let used = feat & FEAT.flags ? XP_FLAGS_CELLS : 0;
  cells.set(flagClass.subarray(0, used));
  const alloc = (n: number): number => {
    if (used + n > cap) throw new Failed(`its crossproduct tables need more than ${cap} cells`);
    const at = used;
    used += n;
    return at;
  };

  const chains: XpChain[] = [];
  const stats = { cells: 0, tcp: { left: [] as string[], right: [] as string[] }, udp: { left: [] as string[], right: [] as string[] } };
  try {
    for (const proto of ['tcp', 'udp'] as const) {
      const fields: XpFieldVectors[] = [];
      const start = base.slice();
      const all = (vs: Uint32Array[] | undefined, id: number) => {
        if (vs) fields.push({ id, n: vs.length, vec: vs });
      };
      all(src, 0);
      all(dst, 1);
      for (const [id, f, vs] of [[2, 'sport', sportAll], [3, 'dport', dportAll]] as const) {
        if (!vs) continue;
        const arr = input.ports[f]![proto];
        const vec: (Uint32Array | undefined)[] = new Array(vs.length);
        for (let p = 0; p < 65536; p++) vec[arr[p]!] = vs[arr[p]!];
        fields.push({ id, n: vs.length, vec });
      }
      if (feat & FEAT.flags) {
        if (proto === 'tcp') fields.push({ id: 4, n: flagVecs.length, vec: flagVecs });
        else and(start, words(input.tcpFlags[FILTER_FLAGS_UNKNOWN]!));
      }
      // fold fields with one class here into the start vector, and keep only rules some value of each field allows
      const live = reduceFields(fields, start, W);
      const chain = buildChain(live, start, ifaceVecs, count, W, cells, alloc, deadline);
      chains.push(chain.chain);
      stats[proto] = { left: chain.left, right: chain.right };
    }
  } catch (e) {
    if (e instanceof Failed) return { reason: e.message };
    throw e;
  }
  stats.cells = used;
  return { cells: cells.slice(0, used), chains: chains as [XpChain, XpChain], ifaceClass, stats };
}

/** Folds single-class fields into `start` and masks every field's vectors with it, until nothing changes. */
function reduceFields(fields: XpFieldVectors[], start: Uint32Array, W: number): XpFieldVectors[] {
  let live = fields;
  for (let round = 0; round < 4; round++) {
    let changed = false;
    const next: XpFieldVectors[] = [];
    for (const f of live) {
      const any = new Uint32Array(W);
      const seen = new Interner(W);
      let first: Uint32Array | undefined;
      for (const v of f.vec) {
        if (!v) continue;
        const m = v.slice();
        and(m, start);
        seen.intern(m);
        first ??= m;
        or(any, v);
      }
      if (!first) throw new Failed('a field without classes');
      if (seen.size === 1) {
        if (!equal(andOf(start, first), start)) and(start, first);
        changed = true;
        continue;
      }
      if (!equal(andOf(start, any), start)) {
        and(start, any);
        changed = true;
      }
      next.push(f);
    }
    live = next;
    if (!changed) break;
  }
  return live;
}

/** The rules each field constrains (in some but not every vector, within start), per rule as a field bit mask. */
function ruleMasks(fields: XpFieldVectors[], start: Uint32Array, W: number): Map<number, number> {
  const masks = new Map<number, number>();
  fields.forEach((f, k) => {
    const any = new Uint32Array(W);
    const every = new Uint32Array(W).fill(0xffffffff);
    for (const v of f.vec) {
      if (!v) continue;
      or(any, v);
      and(every, v);
    }
    for (let j = 0; j < W; j++) {
      let x = any[j]! & ~every[j]! & start[j]!;
      while (x) {
        const b = 31 - Math.clz32(x & -x);
        x &= x - 1;
        const r = j * 32 + b;
        masks.set(r, (masks.get(r) ?? 0) | (1 << k));
      }
    }
  });
  return masks;
}

/** Every rule of a is in b. */
function subset(a: Uint32Array, b: Uint32Array): boolean {
  for (let j = 0; j < a.length; j++) if (a[j]! & ~b[j]!) return false;
  return true;
}

function universal(f: XpFieldVectors, W: number): Uint32Array {
  const every = new Uint32Array(W).fill(0xffffffff);
  for (const v of f.vec) if (v) and(every, v);
  return every;
}

/**
 * One protocol's chain: the grouping with the fewest rules split across the
 * groups (ties: the smaller estimate) that fits the cells left.
 */
function buildChain(fields: XpFieldVectors[], start: Uint32Array, ifaceVecs: Uint32Array[], count: Uint32Array, W: number, cells: Uint16Array, alloc: (n: number) => number, deadline: number): { chain: XpChain; left: string[]; right: string[] } {
  const k = fields.length;
  const masks = ruleMasks(fields, start, W);
  const byMask = new Map<number, number>();
  for (const m of masks.values()) byMask.set(m, (byMask.get(m) ?? 0) + 1);
  const distinct = fields.map((f) => new Set(f.vec.filter((v) => v).map((v) => key(andOf(v!, start)))).size);
  const candidates: { left: number; split: number; est: number }[] = [];
  for (let left = 0; left < 1 << k; left++) {
    let split = 0;
    for (const [m, n] of byMask) if (m & left && m & ~left) split += n;
    const grp = (sel: number, seed: number) => {
      let states = seed;
      let cellsN = 0;
      for (let i = 0; i < k; i++) {
        if (!(sel & (1 << i))) continue;
        cellsN += states * fields[i]!.n;
        states = Math.min(states * distinct[i]!, 65536);
      }
      return { states, cellsN };
    };
    const l = grp(left, ifaceVecs.length);
    const r = grp(((1 << k) - 1) & ~left, 1);
    candidates.push({ left, split, est: l.cellsN + r.cellsN + Math.min(l.states * r.states, 1e9) });
  }
  candidates.sort((a, b) => a.split - b.split || a.est - b.est);

  const U = fields.map((f) => universal(f, W));
  const ifaceU = new Uint32Array(W).fill(0xffffffff);
  for (const v of ifaceVecs) and(ifaceU, v);
  let lastErr: Failed | undefined;
  for (const cand of candidates.slice(0, 4)) {
    if (performance.now() > deadline) break;
    const mark = { cells: 0 };
    try {
      const chain: XpChain = { left: 0, right: 0, direct: 0, settle: 0, soff: [0, 0, 0, 0, 0], n: [0, 0, 0, 0, 0], off: [0, 0, 0, 0, 0], finalOff: 0, rightStates: 0 };
      const leftIdx = [...Array(k).keys()].filter((i) => cand.left & (1 << i));
      const rightIdx = [...Array(k).keys()].filter((i) => !(cand.left & (1 << i)));
      const sureAfter = (group: number[], pos: number, other: number[], right: boolean) => {
        const s = start.slice();
        for (const i of group.slice(pos + 1)) and(s, U[i]!);
        for (const i of other) and(s, U[i]!);
        if (right) and(s, ifaceU);
        return s;
      };
      const run = (group: number[], other: number[], init: Uint32Array[], right: boolean): Uint32Array[] => {
        let states = init;
        // cells whose state no later field of the group changes: patched to the group's last state | XP_SETTLED
        const settled: { at: number; v: Uint32Array }[] = [];
        let last: Interner | undefined;
        group.forEach((i, pos) => {
          const f = fields[i]!;
          chain.n[f.id] = f.n;
          if (right) chain.right |= 1 << f.id;
          else chain.left |= 1 << f.id;
          const sure = sureAfter(group, pos, other, right);
          if (group.length === 2 && states.length === 1) {
            if (pos === 0) return; // both fields at once, below
            // two fields, one start class: the first field's class is the state; a settle cell per class
            // says whether the second matters, and settled classes are rows of the final table themselves
            const f1 = fields[group[0]!]!;
            chain.direct |= 1 << f1.id;
            chain.settle |= 1 << f1.id;
            const sure1 = sureAfter(group, 0, other, right);
            const s0 = states[0]!;
            const first = f1.vec.map((fv) => {
              const v = new Uint32Array(W);
              if (fv) for (let j = 0; j < W; j++) v[j] = s0[j]! & fv[j]!;
              truncate(v, sure1, count, W);
              return v;
            });
            const soff = alloc(f1.n);
            mark.cells += f1.n;
            chain.soff[f1.id] = soff;
            const settles = first.map((v, c) => f1.vec[c] !== undefined && subset(v, U[i]!));
            settles.forEach((x, c) => (cells[soff + c] = x ? 1 : 0));
            // what the program reads: a bitmap in the chain (no table load per group)
            (chain.settleClasses ??= [[], []])[right ? 1 : 0] = settles.flatMap((x, c) => (x ? [c] : []));
            const off = alloc(f1.n * f.n);
            mark.cells += f1.n * f.n;
            chain.off[f.id] = off;
            const next = new Interner(W);
            const v = new Uint32Array(W);
            first.forEach((s, c1) => {
              if (performance.now() > deadline) throw new Failed('building its crossproduct tables took too long');
              if (!f1.vec[c1] || settles[c1]) return;
              for (let c = 0; c < f.n; c++) {
                const fv = f.vec[c];
                if (!fv) continue;
                for (let j = 0; j < W; j++) v[j] = s[j]! & fv[j]!;
                truncate(v, sure, count, W);
                const id = f1.n + next.intern(v);
                if (id >= XP_MAX_STATE) throw new Failed(`its crossproduct has more than ${XP_MAX_STATE} classes in one step`);
                cells[off + c1 * f.n + c] = id;
              }
            });
            // final-table rows: the first field's classes (read only for settled ones), then the pairs' states
            states = [
              ...first.map((x) => {
                const w = x.slice();
                truncate(w, sure, count, W);
                return w;
              }),
              ...next.all(),
            ];
            return;
          }
          if (group.length === 1 && states.length === 1) {
            // a group of one field and one start class: the field's own class is the state, no table
            chain.direct |= 1 << f.id;
            const s0 = states[0]!;
            states = f.vec.map((fv) => {
              const v = new Uint32Array(W);
              if (fv) for (let j = 0; j < W; j++) v[j] = s0[j]! & fv[j]!;
              truncate(v, sure, count, W);
              return v;
            });
            return;
          }
          const off = alloc(states.length * f.n);
          mark.cells += states.length * f.n;
          chain.off[f.id] = off;
          const next = new Interner(W);
          const v = new Uint32Array(W);
          // equal states have equal rows: computed once, copied
          const rows = new Interner(W);
          const firstRow: number[] = [];
          states.forEach((s, si) => {
            if (performance.now() > deadline) throw new Failed('building its crossproduct tables took too long');
            const seen = rows.intern(s);
            if (seen < firstRow.length) {
              const from = off + firstRow[seen]! * f.n;
              cells.copyWithin(off + si * f.n, from, from + f.n);
              return;
            }
            firstRow.push(si);
            for (let c = 0; c < f.n; c++) {
              const fv = f.vec[c];
              if (!fv) continue;
              for (let j = 0; j < W; j++) v[j] = s[j]! & fv[j]!;
              truncate(v, sure, count, W);
              const id = next.intern(v);
              if (id >= XP_MAX_STATE) throw new Failed(`its crossproduct has more than ${XP_MAX_STATE} classes in one step`);
              cells[off + si * f.n + c] = id;
            }
          });
          const rowsN = states.length;
          states = next.all();
          if (pos === group.length - 1) {
            last = next;
            return;
          }
          // a state every later field of the group allows all of (its rules are in every vector of those
          // fields) stays what it is through them, up to the truncation at the group's last step
          const rest = group.slice(pos + 1);
          const isSettled = states.map((st) => rest.every((g) => subset(st, U[g]!)));
          if (!isSettled.some((x) => x)) return;
          const sureLast = sureAfter(group, group.length - 1, other, right);
          const finalOf = states.map((st) => {
            const w = st.slice();
            truncate(w, sureLast, count, W);
            return w;
          });
          for (let at = off; at < off + rowsN * f.n; at++) {
            if (!f.vec[(at - off) % f.n]) continue;
            const id = cells[at]!;
            if (isSettled[id]) settled.push({ at, v: finalOf[id]! });
          }
        });
        if (last) {
          for (const { at, v } of settled) {
            const id = last.intern(v);
            if (id >= XP_MAX_STATE) throw new Failed(`its crossproduct has more than ${XP_MAX_STATE} classes in one step`);
            cells[at] = id | XP_SETTLED;
          }
          states = last.all();
        }
        return states;
      };
      const leftInit = ifaceVecs.map((v) => andOf(v, start));
      const L = run(leftIdx, rightIdx, leftInit, false);
      const R = run(rightIdx, leftIdx, [start.slice()], true);
      const finalOff = alloc(L.length * R.length);
      mark.cells += L.length * R.length;
      // results over distinct states only (a direct step leaves equal ones), then spread
      const v = new Uint32Array(W);
      const li = new Interner(W);
      const ri = new Interner(W);
      const lid = L.map((x) => li.intern(x));
      const rid = R.map((x) => ri.intern(x));
      const Ld = li.all();
      const Rd = ri.all();
      const res = new Uint16Array(Ld.length * Rd.length);
      Ld.forEach((l, a) => {
        if (performance.now() > deadline) throw new Failed('building its crossproduct tables took too long');
        Rd.forEach((r, b) => {
          for (let j = 0; j < W; j++) v[j] = l[j]! & r[j]!;
          res[a * Rd.length + b] = result(v, count, W);
        });
      });
      for (let a = 0; a < L.length; a++) {
        const row = lid[a]! * Rd.length;
        const at = finalOff + a * R.length;
        for (let b = 0; b < R.length; b++) cells[at + b] = res[row + rid[b]!]!;
      }
      chain.finalOff = finalOff;
      chain.rightStates = R.length;
      return { chain, left: leftIdx.map((i) => XP_FIELDS[fields[i]!.id]!), right: rightIdx.map((i) => XP_FIELDS[fields[i]!.id]!) };
    } catch (e) {
      if (!(e instanceof Failed)) throw e;
      lastErr = e;
      alloc(-mark.cells); // give the cells of the failed attempt back
    }
  }
  throw lastErr ?? new Failed('building its crossproduct tables took too long');
}

/** Drops the rules after the first terminal rule of v that is sure to stay (in `sure`). */
function truncate(v: Uint32Array, sure: Uint32Array, count: Uint32Array, W: number): void {
  for (let j = 0; j < W; j++) {
    const x = v[j]! & sure[j]! & ~count[j]!;
    if (!x) continue;
    const low = x & -x;
    v[j] = v[j]! & (low | (low - 1)); // the winner and the rules before it in this word
    for (let i = j + 1; i < W; i++) v[i] = 0;
    return;
  }
}

/** The cell of a final class: the first terminal rule, XP_NONE, or XP_FALLBACK when count rules come first. */
export function result(v: Uint32Array, count: Uint32Array, W = v.length): number {
  for (let j = 0; j < W; j++) {
    const term = v[j]! & ~count[j]!;
    const cnt = v[j]! & count[j]!;
    if (term) {
      const low = term & -term;
      if (cnt & (low - 1 >>> 0)) return XP_FALLBACK;
      return j * 32 + 31 - Math.clz32(low);
    }
    if (cnt) return XP_FALLBACK;
  }
  return XP_NONE;
}

/** Distinct vectors -> dense ids (FNV hash, buckets compared word by word). */
class Interner {
  private store: Uint32Array;
  private n = 0;
  private readonly byHash = new Map<number, number | number[]>();
  constructor(private readonly W: number) {
    this.store = new Uint32Array(W * 64);
  }
  get size(): number {
    return this.n;
  }
  intern(v: Uint32Array): number {
    const W = this.W;
    let h = 0x811c9dc5;
    for (let j = 0; j < W; j++) h = Math.imul(h ^ v[j]!, 16777619);
    const hit = this.byHash.get(h);
    if (hit !== undefined) {
      if (typeof hit === 'number') {
        if (this.same(hit, v)) return hit;
      } else {
        for (let i = 0; i < hit.length; i++) if (this.same(hit[i]!, v)) return hit[i]!;
      }
    }
    const id = this.n++;
    if (this.n * W > this.store.length) {
      const grown = new Uint32Array(this.store.length * 2);
      grown.set(this.store);
      this.store = grown;
    }
    this.store.set(v.subarray(0, W), id * W);
    if (hit === undefined) this.byHash.set(h, id);
    else if (typeof hit === 'number') this.byHash.set(h, [hit, id]);
    else hit.push(id);
    return id;
  }
  private same(id: number, v: Uint32Array): boolean {
    const W = this.W;
    const st = this.store;
    const at = id * W;
    for (let j = 0; j < W; j++) if (st[at + j] !== v[j]) return false;
    return true;
  }
  all(): Uint32Array[] {
    return Array.from({ length: this.n }, (_, i) => this.store.subarray(i * this.W, (i + 1) * this.W));
  }
}

function and(dst: Uint32Array, v: Uint32Array): void {
  for (let j = 0; j < dst.length; j++) dst[j] = dst[j]! & v[j]!;
}
function or(dst: Uint32Array, v: Uint32Array): void {
  for (let j = 0; j < dst.length; j++) dst[j] = dst[j]! | v[j]!;
}
function andOf(a: Uint32Array, b: Uint32Array): Uint32Array {
  const o = a.slice();
  and(o, b);
  return o;
}
function equal(a: Uint32Array, b: Uint32Array): boolean {
  for (let j = 0; j < a.length; j++) if (a[j] !== b[j]) return false;
  return true;
}
function key(v: Uint32Array): string {
  return Array.from(v).join(',');
}
