/**
 * A running fast-path data plane, read-only: what observers (status,
 * metrics, plan, drift) and the IDS blocklist may do with it. A view is made
 * by observe(), which opens the pins and nothing else: this module has no
 * code that loads, pins, renames, upgrades, attaches or writes a generation
 * (those are FastpathDataPlane's, dataplane.ts, under the apply lock). The
 * blocklist is the one thing a view writes: it is shared state of the
 * running programs, not part of a generation.
 */
import { addressBytes } from '../net/address.js';
import { PerCpuMap, codecs, probes, queryXdp, queryTc, type BpfProgram, type XdpMode } from '../bpf/index.js';
import { currentNetnsInode } from '../system/host.js';
import { dropLogCounters, type DropLogCounters, type LogRule } from './droplog.js';
import type { FastpathCapacity } from './compile.js';
import { ACTION, DIR, FEAT, FILTER_COUNTER_SLOTS, FILTER_MAX_IFACES, FILTER_MAX_RULES, LPM_FIELDS, RULE_STAT_SIZE, VERDICTS, VERDICT_MAX, VERDICT_STAT_SIZE, decodeAction, decodeGenConfig, decodeIfaceValue, decodeLogConfig, ifaceIndex, type LpmField, type MapName, type Verdict } from './layout.js';
import { lpmTableFromKernel, type FlatTable } from './table.js';
import { ForeignDataPlaneError, foreignOwner, isPinned, openPins, pinOwner, tryOr, u32, type RawMap } from './pins.js';

/** tc filter identity of the egress program (clsact egress, this priority/handle). */
export const TC_PRIORITY = 0xfa;
export const TC_HANDLE = 0xfa;
const NEVER = 0xffffffffffffffffn;

type RawPerCpu = PerCpuMap<Buffer, Buffer>;

export interface RuleCounter {
  name: string;
  /** position in the active rule set */
  index: number;
  action: keyof typeof ACTION;
  packets: bigint;
  bytes: bigint;
  /** rate-limit rules: packets over the limit, dropped */
  limited: bigint;
}

export type VerdictCounters = Record<Verdict, { packets: bigint; bytes: bigint }>;

export interface MapOccupancy {
  map: MapName;
  /** entries of the active generation (two-generation maps) or in use */
  entries: number;
  /** usable per generation for two-generation maps */
  capacity: number;
}

export interface AttachedInterface {
  ifindex: number;
  name?: string;
  ingress: { defaultPolicy: 'pass' | 'drop'; xdpMode: XdpMode | 'none' | 'multi'; attached: boolean };
  egress: { enabled: boolean; defaultPolicy: 'pass' | 'drop'; attached: boolean };
}

export interface BlockedAddress {
  address: string;
  /** undefined: never expires */
  expiresInSeconds?: number;
}

export class FastpathView implements Disposable {
  protected readonly maps: Record<MapName, RawMap>;

  protected constructor(
    readonly pinDir: string,
    readonly xdp: BpfProgram,
    readonly tc: BpfProgram,
    maps: Record<MapName, RawMap>,
    /** true when this instance took over an already running data plane */
    readonly adopted: boolean,
    protected readonly inNs: <T>(fn: () => T) => T,
  ) {
    this.maps = maps;
  }

  /**
   * The data plane pinned at pinDir, for observers (status, metrics, plan,
   * drift) and the IDS blocklist: adopts the pins and nothing else. Unlike
   * open() it never loads or pins a data plane, never finishes an
   * interrupted upgrade (renames) and never marks ownership: those belong to
   * apply, under the apply lock. Throws when nothing (or something of
   * another build or namespace) is pinned there.
   */
  static observe(opts: { pinDir: string; inNetns?: <T>(fn: () => T) => T }): FastpathView {
    const inNs = opts.inNetns ?? (<T>(fn: () => T) => fn());
    if (!isPinned(opts.pinDir)) throw new Error(`fastpath: no data plane is pinned at ${opts.pinDir}; apply a configuration with fastpath interfaces first`);
    const here = inNs(currentNetnsInode);
    const owner = pinOwner(opts.pinDir);
    if (owner !== undefined && owner !== here) throw foreignOwner(opts.pinDir, owner, here);
    const { maps, xdp, tc } = openPins(opts.pinDir);
    const dp = new FastpathView(opts.pinDir, xdp, tc, maps, true, inNs);
    if (owner === undefined) {
      try {
        dp.checkInterfacesHere(here);
      } catch (e) {
        dp.close();
        throw e;
      }
    }
    return dp;
  }

  /** The generation packets are classified against now (0 or 1). */
  get generation(): number {
    return this.maps.active.get(u32(0))!.readUInt32LE(0) & 1;
  }

  /** Map sizes of this data plane (per generation where maps hold two). */
  get capacity(): FastpathCapacity {
    const me = (n: MapName) => this.maps[n].info.maxEntries;
    return { rules: FILTER_MAX_RULES, prefixes: me('src_v4') / 2, portPrefixes: me('sport') / 2, rateLimitSources: me('rate_state') / probes.possibleCpus(), blocklist: me('block_v4') };
  }

  /** The per-packet lookups a generation makes (pay per feature; see filter_common.h). */
  lookups(gen = this.generation): Exclude<keyof typeof FEAT, 'count'>[] {
    const { features } = decodeGenConfig(this.maps.gen_config.get(u32(gen))!);
    // FEAT.count only chooses the classifier's variant: not a lookup
    return (Object.keys(FEAT) as (keyof typeof FEAT)[]).filter((k): k is Exclude<keyof typeof FEAT, 'count'> => k !== 'count' && (features & FEAT[k]) !== 0);
  }

  /** Whether the program looks the blocklist of each family up (false while it is empty). */
  blocklistChecked(): { v4: boolean; v6: boolean } {
    const get = (i: number) => this.maps.block_active.get(u32(i))!.readUInt32LE(0) !== 0;
    return { v4: get(0), v6: get(1) };
  }

  /** What a generation holds, as the apply that wrote it recorded. */
  meta(gen: number): { rules: number; lpmEntries: number[] } {
    const b = this.maps.gen_meta.get(u32(gen))!;
    return { rules: b.readUInt32LE(0), lpmEntries: LPM_FIELDS.map((_, i) => b.readUInt32LE(4 + 4 * i)) };
  }

  /** ifindexes configured in either generation. */
  configuredIfindexes(): number[] {
    return [...new Set([...this.ifaceSlots(0).keys(), ...this.ifaceSlots(1).keys()])];
  }

  /** ifindex -> slot of the interfaces a generation configures. */
  ifaceSlots(gen: number): Map<number, number> {
    return ifaceSlotsOf(this.ifaceCfg(gen));
  }

  /**
   * The iface_cfg values of one generation, index dir * FILTER_MAX_IFACES +
   * slot (what the data plane that wrote them may answer from memory: dataplane.ts).
   */
  ifaceCfg(gen: number): Buffer[] {
    return this.readIfaceCfg(gen);
  }

  /** The iface_cfg values of one generation as the map holds them (FILTER_MAX_IFACES lookups per direction). */
  readIfaceCfg(gen: number): Buffer[] {
    const out: Buffer[] = [];
    for (const dir of [DIR.ingress, DIR.egress]) for (let slot = 0; slot < FILTER_MAX_IFACES; slot++) out.push(this.maps.iface_cfg.get(u32(ifaceIndex(gen, dir, slot)))!);
    return out;
  }

  /**
   * Pins without an owner mark (from a Patronus before the mark existed):
   * adopt them only when one of their configured interfaces runs their
   * program in this namespace (or none is configured), so a data plane of
   * another namespace sharing the pin root is never taken over.
   */
  protected checkInterfacesHere(here: number): void {
    const configured = this.configuredIfindexes();
    if (configured.length === 0) return;
    const ours = configured.some((idx) =>
      this.inNs(() => tryOr(() => queryXdp(idx).progId, 0) === this.xdp.info.id || tryOr(() => queryTc(idx, 'egress', TC_PRIORITY, TC_HANDLE), null) === this.tc.info.id),
    );
    if (!ours) {
      throw new ForeignDataPlaneError(
        `fastpath: refusing to adopt the data plane pinned at ${this.pinDir}: it runs on interfaces (ifindex ${configured.join(', ')}) that are not in this network namespace (net:[${here}]); ` +
          'another Patronus instance shares this pin root. Give each namespace its own (--netns, or a default pin root per namespace since this version), or remove the pins if that instance is gone',
      );
    }
  }

  /** Rule name -> counter slot for the rules of a generation. */
  activeRuleSlots(gen: number): Map<string, number> {
    const out = new Map<string, number>();
    const n = this.meta(gen).rules;
    for (let i = 0; i < n; i++) {
      const a = decodeAction(this.maps.actions.get(u32(gen * FILTER_MAX_RULES + i))!);
      if (a.slot >= FILTER_COUNTER_SLOTS) continue;
      const name = this.slotName(a.slot);
      if (name) out.set(name, a.slot);
    }
    return out;
  }

  protected slotName(slot: number): string {
    const raw = this.maps.rule_names.get(u32(slot))!;
    const end = raw.indexOf(0);
    return raw.subarray(0, end < 0 ? raw.length : end).toString('utf8');
  }

  protected perCpu(name: 'rule_stats' | 'verdict_stats'): RawPerCpu {
    const m = this.maps[name];
    return new PerCpuMap(m.nativeHandle, m.keyCodec, codecs.bytes(name === 'rule_stats' ? RULE_STAT_SIZE : VERDICT_STAT_SIZE));
  }

  // ---------- observation API (metrics, REST) ----------

  /** Per-rule counters of the active rule set, summed over CPUs, in rule order. */
  ruleCounters(): RuleCounter[] {
    const gen = this.generation;
    const stats = this.perCpu('rule_stats');
    const out: RuleCounter[] = [];
    const n = this.meta(gen).rules;
    for (let i = 0; i < n; i++) {
      const a = decodeAction(this.maps.actions.get(u32(gen * FILTER_MAX_RULES + i))!);
      if (a.slot >= FILTER_COUNTER_SLOTS) continue;
      const name = this.slotName(a.slot);
      if (!name) continue;
      let packets = 0n;
      let bytes = 0n;
      let limited = 0n;
      for (const v of stats.get(u32(a.slot))!) {
        packets += v.readBigUInt64LE(0);
        bytes += v.readBigUInt64LE(8);
        limited += v.readBigUInt64LE(16);
      }
      const action = (Object.keys(ACTION) as (keyof typeof ACTION)[]).find((k) => ACTION[k] === a.action) ?? 'pass';
      out.push({ name, index: i, action, packets, bytes, limited });
    }
    return out;
  }

  /**
   * Drop-event counters (filter_log.h) of every rule of the active rule set
   * that logs, and of the default-drop and blocklist pseudo rules when they
   * log: emitted, suppressed by the per-rule limiter, lost on a full ring.
   */
  logCounters(): DropLogCounters[] {
    const gen = this.generation;
    return dropLogCounters(this.maps, gen, this.logRules(gen));
  }

  /** The rules of a generation with their counter slots and whether their drops log. */
  logRules(gen: number): LogRule[] {
    const bits = decodeLogConfig(this.maps.log_cfg.get(u32(gen))!).rules;
    const out: LogRule[] = [];
    const n = this.meta(gen).rules;
    for (let i = 0; i < n; i++) {
      const a = decodeAction(this.maps.actions.get(u32(gen * FILTER_MAX_RULES + i))!);
      if (a.slot >= FILTER_COUNTER_SLOTS) continue;
      out.push({ name: this.slotName(a.slot) ?? `slot ${a.slot}`, slot: a.slot, limited: a.action === ACTION['rate-limit'], logs: (bits[i >> 3]! & (1 << (i & 7))) !== 0 });
    }
    return out;
  }

  /** Per-verdict counters by direction, summed over CPUs. */
  verdictCounters(): { ingress: VerdictCounters; egress: VerdictCounters } {
    const stats = this.perCpu('verdict_stats');
    const read = (dir: number) => {
      const out = {} as VerdictCounters;
      VERDICTS.forEach((v, i) => {
        let packets = 0n;
        let bytes = 0n;
        for (const c of stats.get(u32(dir * VERDICT_MAX + i))!) {
          packets += c.readBigUInt64LE(0);
          bytes += c.readBigUInt64LE(8);
        }
        out[v] = { packets, bytes };
      });
      return out;
    };
    return { ingress: read(DIR.ingress), egress: read(DIR.egress) };
  }

  /** Entries in use against capacity for every sized map. */
  occupancy(): MapOccupancy[] {
    const gen = this.generation;
    const out: MapOccupancy[] = [];
    const meta = this.meta(gen);
    LPM_FIELDS.forEach((f, i) => out.push({ map: f, entries: meta.lpmEntries[i]!, capacity: this.maps[f].info.maxEntries / 2 }));
    out.push({ map: 'actions', entries: meta.rules, capacity: FILTER_MAX_RULES });
    for (const m of ['rate_state', 'block_v4', 'block_v6'] as const) {
      let n = 0;
      for (const _ of this.maps[m].keys()) n++;
      out.push({ map: m, entries: n, capacity: this.maps[m].info.maxEntries });
    }
    return out;
  }

  /** Interfaces of the active configuration and what is attached there. */
  interfaces(): AttachedInterface[] {
    const cfg = this.ifaceCfg(this.generation);
    const byIdx = new Map<number, AttachedInterface>();
    for (const dir of [DIR.ingress, DIR.egress]) {
      for (let slot = 0; slot < FILTER_MAX_IFACES; slot++) {
        const v = decodeIfaceValue(cfg[dir * FILTER_MAX_IFACES + slot]!);
        const idx = v.ifindex;
        if (!idx) continue;
        const policy = v.defaultAction === ACTION.drop ? 'drop' : 'pass';
        let e = byIdx.get(idx);
        if (!e) {
          // an interface that is gone reports nothing attached
          const q = this.inNs(() => tryOr(() => queryXdp(idx), { progId: 0, mode: 'none' as const, nativeProgId: 0, genericProgId: 0, offloadProgId: 0 }));
          const tcId = this.inNs(() => tryOr(() => queryTc(idx, 'egress', TC_PRIORITY, TC_HANDLE), null));
          e = {
            ifindex: idx,
            ingress: { defaultPolicy: 'pass', xdpMode: q.progId === this.xdp.info.id ? q.mode : 'none', attached: q.progId === this.xdp.info.id },
            egress: { enabled: false, defaultPolicy: 'pass', attached: tcId === this.tc.info.id },
          };
          byIdx.set(idx, e);
        }
        if (dir === DIR.ingress) e.ingress.defaultPolicy = policy;
        else e.egress = { ...e.egress, enabled: true, defaultPolicy: policy };
      }
    }
    return [...byIdx.values()];
  }

  /** The active generation of one LPM map as a sorted table (for plan). */
  async activeTable(f: LpmField): Promise<FlatTable> {
    return this.generationTable(f, this.generation);
  }

  /** Generation `gen` of one LPM map as a sorted table (plan reads the generation number once). */
  async generationTable(f: LpmField, gen: number): Promise<FlatTable> {
    // one batch read off the JS thread (a lookup per key blocked the event loop ~1 s per 100k entries); no object per entry
    const raw = await this.maps[f].rawEntries();
    return lpmTableFromKernel(f, gen, raw.keys, raw.values, raw.count, this.maps[f].info.valueBytes);
  }

  activeRuleNames(): string[] {
    return this.ruleCounters().map((r) => r.name);
  }

  // ---------- dynamic blocklist (IDS) ----------

  /**
   * Drops everything from `address` (and, at egress, to it) until the TTL
   * runs out; ttlSeconds 0 or Infinity never expires. Checked before the
   * rules on every managed interface. Re-blocking extends/replaces the TTL.
   */
  block(address: string, ttlSeconds: number): void {
    if (!(ttlSeconds >= 0)) throw new RangeError(`block ${address}: ttlSeconds must be >= 0 (0 = never expires)`);
    const { map, key } = this.blockKey(address);
    const v = Buffer.alloc(8);
    v.writeBigUInt64LE(ttlSeconds === 0 || ttlSeconds === Infinity ? NEVER : monotonicNs() + BigInt(Math.round(ttlSeconds * 1e9)));
    map.set(key, v);
    // after the insert: a concurrent clear (syncBlockActive) either sees the entry or is overwritten here
    this.maps.block_active.set(u32(map === this.maps.block_v4 ? 0 : 1), u32(1));
  }

  /** Removes an address from the blocklist; false when it was not listed. */
  unblock(address: string): boolean {
    const { map, key } = this.blockKey(address);
    const had = map.delete(key);
    this.syncBlockActive();
    return had;
  }

  /**
   * Lets the program skip the blocklist lookup of a family whose list is
   * empty: flag cleared, then the map read again, so an entry another
   * process inserted meanwhile (it sets the flag after inserting) is never
   * left unchecked.
   */
  protected syncBlockActive(): void {
    for (const [i, map] of [this.maps.block_v4, this.maps.block_v6].entries()) {
      const empty = () => map.keys().next().done === true;
      if (!empty()) {
        this.maps.block_active.set(u32(i), u32(1));
        continue;
      }
      this.maps.block_active.set(u32(i), u32(0));
      if (!empty()) this.maps.block_active.set(u32(i), u32(1));
    }
  }

  /** Addresses blocked now (expired entries are removed on the way). */
  listBlocked(): BlockedAddress[] {
    const now = monotonicNs();
    const out: BlockedAddress[] = [];
    for (const [map, v6] of [
      [this.maps.block_v4, false],
      [this.maps.block_v6, true],
    ] as const) {
      for (const k of [...map.keys()]) {
        const v = map.get(k);
        if (!v) continue;
        const exp = v.readBigUInt64LE(0);
        if (exp <= now) {
          map.delete(k);
          continue;
        }
        const address = v6 ? codecs.ipv6.decode(k) : codecs.ipv4.decode(k);
        out.push(exp === NEVER ? { address } : { address, expiresInSeconds: Number(exp - now) / 1e9 });
      }
    }
    this.syncBlockActive();
    return out;
  }

  private blockKey(address: string): { map: RawMap; key: Buffer } {
    const key = addressBytes(address);
    return { map: key.length === 4 ? this.maps.block_v4 : this.maps.block_v6, key };
  }

  // ---------- lifecycle ----------

  /** Closes handles; the pinned data plane keeps running. */
  close(): void {
    for (const m of Object.values(this.maps)) m.close();
    this.xdp.close();
    this.tc.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** CLOCK_MONOTONIC in ns: the clock bpf_ktime_get_ns() reads (libuv's hrtime uses it). */
export function monotonicNs(): bigint {
  return process.hrtime.bigint();
}

/** ifindex -> slot of a generation's iface_cfg values (used by the view and by the writer's own copy of them). */
export function ifaceSlotsOf(cfg: readonly Buffer[]): Map<number, number> {
  const out = new Map<number, number>();
  for (const dir of [DIR.ingress, DIR.egress]) {
    for (let slot = 0; slot < FILTER_MAX_IFACES; slot++) {
      const { ifindex } = decodeIfaceValue(cfg[dir * FILTER_MAX_IFACES + slot]!);
      if (ifindex) out.set(ifindex, slot);
    }
  }
  return out;
}
