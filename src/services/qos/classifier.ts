/**
 * The BPF side of QoS classification (bpf/qos_classify.bpf.c): encoding a
 * ClassifierTable into the program's maps, reading them back for plans, and
 * loading/pinning one program instance per shaped device.
 *
 * Each device gets its own object with maps pinned under
 * <bpfRoot>/qos/<device>/, so a restarted control plane finds (and a plan can
 * read) what the kernel classifies with, and tc attaches the pinned program
 * (`bpf object-pinned .../prog`).
 */
import { existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { BpfMap, BpfObject, PerCpuMap, codecs, sumPerCpu, unpin } from '../../bpf/index.js';
import { openPinnedMap } from '../../bpf/map.js';
import { prefixBytes, prefixFromBytes, type Prefix } from '../../net/address.js';
import type { ClassifierRule, ClassifierTable } from './compile.js';

export const QOS_OBJECT = 'qos_classify';
export const QOS_PROGRAM = 'qos_classify';
const QOS_MAX_RULES = 256;
const MAPS = ['qos_rules', 'qos_meta', 'qos_prefixes', 'qos_hits'] as const;

export const ruleCodec = codecs.struct({
  src_set: codecs.u32,
  dst_set: codecs.u32,
  sport_lo: codecs.u16,
  sport_hi: codecs.u16,
  dport_lo: codecs.u16,
  dport_hi: codecs.u16,
  classid: codecs.u16,
  proto: codecs.u8,
  family: codecs.u8,
});
type RuleValue = ReturnType<typeof ruleCodec.decode>;

export interface SetEntry {
  set: number;
  prefix: Prefix;
}

export const prefixKeyCodec: codecs.Codec<SetEntry> = {
  size: 24,
  align: 4,
  encode(v, into = Buffer.alloc(24), o = 0) {
    into.fill(0, o, o + 24);
    into.writeUInt32LE(32 + v.prefix.length, o);
    into.writeUInt32LE(((v.set << 1) | (v.prefix.family === 6 ? 1 : 0)) >>> 0, o + 4);
    prefixBytes(v.prefix).copy(into, o + 8);
    return into;
  },
  decode(b, o = 0) {
    const s = b.readUInt32LE(o + 4);
    return { set: s >>> 1, prefix: prefixFromBytes(b.subarray(o + 8, o + 8 + (s & 1 ? 16 : 4)), b.readUInt32LE(o) - 32) };
  },
};

const hitCodec = codecs.struct({ packets: codecs.u64, bytes: codecs.u64 });

export function pinDir(bpfRoot: string, device: string): string {
  return path.join(bpfRoot, 'qos', device);
}

export function programPin(bpfRoot: string, device: string): string {
  return path.join(pinDir(bpfRoot, device), 'prog');
}

/** The map contents a table means, in a canonical order (for comparing). */
export function encodeTable(t: ClassifierTable): { rules: RuleValue[]; prefixes: SetEntry[] } {
  const rules = t.rules.map((r: ClassifierRule) => ({
    src_set: r.srcSet,
    dst_set: r.dstSet,
    sport_lo: r.sport.from,
    sport_hi: r.sport.to,
    dport_lo: r.dport.from,
    dport_hi: r.dport.to,
    classid: r.classid,
    proto: r.proto,
    family: r.family,
  }));
  const prefixes: SetEntry[] = [];
  for (const [set, list] of t.sets) for (const prefix of list) prefixes.push({ set, prefix });
  return { rules, prefixes: sortEntries(prefixes) };
}

const entryKey = (e: SetEntry) => `${e.set} ${e.prefix.address}/${e.prefix.length}`;
function sortEntries(list: SetEntry[]): SetEntry[] {
  const m = new Map(list.map((e) => [entryKey(e), e]));
  return [...m.keys()].sort().map((k) => m.get(k)!);
}

/** Opened pinned maps of one device's classifier. */
export class ClassifierMaps implements Disposable {
  private constructor(
    readonly rules: BpfMap<number, RuleValue>,
    readonly meta: BpfMap<number, number>,
    readonly prefixes: BpfMap<SetEntry, number>,
    readonly hits: PerCpuMap<number, { packets: bigint; bytes: bigint }>,
  ) {}

  /** undefined when nothing is pinned for the device. */
  static open(bpfRoot: string, device: string): ClassifierMaps | undefined {
    const dir = pinDir(bpfRoot, device);
    if (!MAPS.every((m) => existsSync(path.join(dir, m)))) return undefined;
    return new ClassifierMaps(
      BpfMap.openPinned(path.join(dir, 'qos_rules'), codecs.u32, ruleCodec),
      BpfMap.openPinned(path.join(dir, 'qos_meta'), codecs.u32, codecs.u32),
      BpfMap.openPinned(path.join(dir, 'qos_prefixes'), prefixKeyCodec, codecs.u8),
      new PerCpuMap(openPinnedMap(path.join(dir, 'qos_hits')), codecs.u32, hitCodec),
    );
  }

  async read(): Promise<{ rules: RuleValue[]; prefixes: SetEntry[] }> {
    const n = Math.min(this.meta.get(0) ?? 0, QOS_MAX_RULES);
    const rules: RuleValue[] = [];
    for (let i = 0; i < n; i++) rules.push(this.rules.get(i)!);
    const prefixes = [...this.prefixes.keys()];
    return { rules, prefixes: sortEntries(prefixes) };
  }

  /**
   * Writes a table. Order keeps a running classifier sane: new prefixes
   * first, then the rules, then the rule count, then stale prefixes go.
   * (A packet classified mid-update may still land in an old class: harmless
   * for shaping.)
   */
  async write(t: ClassifierTable): Promise<void> {
    const want = encodeTable(t);
    if (want.rules.length > QOS_MAX_RULES) throw new RangeError(`${want.rules.length} classifier entries, at most ${QOS_MAX_RULES}`);
    const have = new Set((await this.read()).prefixes.map(entryKey));
    const keep = new Set(want.prefixes.map(entryKey));
    for (const e of want.prefixes) if (!have.has(entryKey(e))) this.prefixes.set(e, 1);
    want.rules.forEach((r, i) => this.rules.set(i, r));
    this.meta.set(0, want.rules.length);
    for (const e of [...this.prefixes.keys()]) if (!keep.has(entryKey(e))) this.prefixes.delete(e);
  }

  /** Packets and bytes per classifier entry, and those no rule matched. */
  hitCounts(n: number): { entries: { packets: bigint; bytes: bigint }[]; unmatched: { packets: bigint; bytes: bigint } } {
    const entries = [];
    for (let i = 0; i < n; i++) entries.push(sumPerCpu(this.hits.get(i)!));
    return { entries, unmatched: sumPerCpu(this.hits.get(QOS_MAX_RULES)!) };
  }

  close(): void {
    this.rules.close();
    this.meta.close();
    this.prefixes.close();
    this.hits.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

export function sameTable(a: { rules: RuleValue[]; prefixes: SetEntry[] }, b: { rules: RuleValue[]; prefixes: SetEntry[] }): boolean {
  return JSON.stringify(a.rules) === JSON.stringify(b.rules) && JSON.stringify(a.prefixes.map(entryKey)) === JSON.stringify(b.prefixes.map(entryKey));
}

/**
 * Loads a fresh classifier for a device and pins its maps and program
 * (maps already pinned there are reused by libbpf, so counters survive).
 * Returns the program's pin path for `tc ... bpf object-pinned`.
 */
export async function loadClassifier(bpfRoot: string, device: string): Promise<string> {
  const dir = pinDir(bpfRoot, device);
  mkdirSync(dir, { recursive: true });
  const obj = BpfObject.open(QOS_OBJECT);
  try {
    for (const m of MAPS) obj.setMapPinPath(m, path.join(dir, m));
    await obj.load();
    const prog = obj.program(QOS_PROGRAM);
    try {
      const pin = programPin(bpfRoot, device);
      if (existsSync(pin)) unpin(pin);
      prog.pin(pin);
      return pin;
    } finally {
      prog.close();
    }
  } finally {
    obj.close();
  }
}

/** Removes a device's pins (the tc filter holding the program must be gone or going). */
export function unpinClassifier(bpfRoot: string, device: string): void {
  const dir = pinDir(bpfRoot, device);
  if (!existsSync(dir)) return;
  for (const f of readdirSync(dir)) unpin(path.join(dir, f));
  rmSync(dir, { recursive: true, force: true });
}
