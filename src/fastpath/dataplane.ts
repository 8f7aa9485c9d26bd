/**
 * The running fast path as the apply path owns it: the XDP and tc filter
 * programs and their maps, pinned under `<bpfRoot>/fastpath/`. A control
 * plane that starts while a data plane is pinned adopts it (same program ids,
 * no reload, counters and rate-limit state kept); otherwise it loads and pins
 * a fresh one; a pinned data plane of another build is replaced without a gap
 * in filtering (upgrade). Everything here runs under the apply lock.
 *
 * The parts, one file each:
 *   pins.ts     pin directory: ownership marks, opening pins, layout check
 *   view.ts     FastpathView: read-only (observers, IDS blocklist); cannot load
 *   writer.ts   GenerationWriter: one generation into the maps, then the flip;
 *               what to write comes from the pure functions of generation.ts
 *   attach.ts   XDP/tc attachment and detachment
 *   here        FastpathDataPlane: load/adopt/upgrade, apply, attach, destroy
 *
 * Rule-set updates are hitless: apply writes the inactive generation of
 * every classification map, flips `active`, then waits an RCU grace period,
 * so a packet is classified entirely against the old or entirely against the
 * new rule set.
 */
import { existsSync, mkdirSync, renameSync } from 'node:fs';
import { BpfObject, BpfProgram, PerCpuMap, codecs, openPinnedMap, probes, queryXdp, queryTc, type XdpMode } from '../bpf/index.js';
import { currentNetnsInode } from '../system/host.js';
import type { CompiledInterface, FastpathCapacity, FastpathDesired } from './compile.js';
import { fastpathTables, type FastpathTables, type FlatTable } from './table.js';
import { attachFilter, detachFilter, type AttachTarget } from './attach.js';
import { FILTER_DEFAULT_RATE_STATE, FILTER_MAX_RULES, LOG_SLOT_DEFAULT, LOG_SLOTS, LOG_STAT_SIZE, LPM_FIELDS, MAP_NAMES, VERDICT_MAX, type LpmField, type MapName } from './layout.js';
import { IncompatibleDataPlaneError, checkLayout, foreignOwner, isPinned, markOwner, openPins, pinOwner, removePins, supersededProgIds, tryOr, u32, type RawMap } from './pins.js';
import { FastpathView, TC_HANDLE, TC_PRIORITY } from './view.js';
import { GenerationWriter, type ApplyStats } from './writer.js';

export { ForeignDataPlaneError, IncompatibleDataPlaneError, removePins } from './pins.js';
export { FastpathView, TC_HANDLE, TC_PRIORITY, monotonicNs, type AttachedInterface, type BlockedAddress, type MapOccupancy, type RuleCounter, type VerdictCounters } from './view.js';
export type { ApplyStats } from './writer.js';

export interface DataPlaneOptions {
  /** bpffs directory for this data plane's pins (e.g. `${host.bpfRoot}/fastpath`) */
  pinDir: string;
  /** map sizes for a fresh load; an adopted data plane keeps its own */
  capacity?: Partial<FastpathCapacity>;
  /** runs attach/query code inside the target network namespace */
  inNetns?: <T>(fn: () => T) => T;
  /**
   * When the pinned data plane is from an incompatible build (other map
   * layout), load a new one in its place instead of failing; attach() then
   * replaces the old programs on the interfaces atomically. Counters and the
   * block list of the old data plane are not carried over (their layout
   * differs). Only apply sets this: observers must never load programs.
   */
  upgrade?: boolean;
}

/**
 * The data plane as the apply path owns it: a FastpathView that can also
 * load or adopt (open), upgrade (replaceWith), write generations (apply,
 * writer.ts), attach (attach.ts) and destroy. Only apply, under the apply
 * lock, makes one; observers get a FastpathView (observe), which cannot.
 */
export class FastpathDataPlane extends FastpathView {
  private readonly writer: GenerationWriter;

  private constructor(pinDir: string, xdp: BpfProgram, tc: BpfProgram, maps: Record<MapName, RawMap>, adopted: boolean, inNs: <T>(fn: () => T) => T) {
    super(pinDir, xdp, tc, maps, adopted, inNs);
    // a fresh load's maps are empty: the writer need not read them back
    this.writer = new GenerationWriter(maps, this, !adopted);
  }

  /** Adopts the data plane pinned at pinDir, or loads and pins a new one. */
  static async open(opts: DataPlaneOptions): Promise<FastpathDataPlane> {
    const inNs = opts.inNetns ?? (<T>(fn: () => T) => fn());
    // a replaceWith() interrupted between its two renames: the new data plane
    // is attached already, finish moving it into place
    if (!existsSync(`${opts.pinDir}/xdp_filter`) && existsSync(`${opts.pinDir}_old`) && existsSync(`${opts.pinDir}_next/xdp_filter`)) {
      removePins(opts.pinDir);
      renameSync(`${opts.pinDir}_next`, opts.pinDir);
      removePins(`${opts.pinDir}_old`);
    }
    if (existsSync(`${opts.pinDir}/xdp_filter`)) {
      const here = inNs(currentNetnsInode);
      const owner = pinOwner(opts.pinDir);
      if (owner !== undefined && owner !== here) throw foreignOwner(opts.pinDir, owner, here);
      try {
        const dp = FastpathDataPlane.adopt(opts.pinDir, inNs);
        if (owner === undefined) {
          try {
            dp.checkInterfacesHere(here);
            if (opts.upgrade) markOwner(opts.pinDir, here);
          } catch (e) {
            dp.close();
            throw e;
          }
        }
        return dp;
      } catch (e) {
        if (!(e instanceof IncompatibleDataPlaneError) || !opts.upgrade) throw e;
        // keep the old pins (and so its programs) until the new programs replaced them
        removePins(`${opts.pinDir}_old`);
        renameSync(opts.pinDir, `${opts.pinDir}_old`);
      }
    }
    const dp = await FastpathDataPlane.load(opts, inNs);
    // an upgrade in progress (possibly interrupted earlier): the programs of
    // the superseded data plane may be attached; attach() replaces them
    dp.superseded = supersededProgIds(`${opts.pinDir}_old`);
    return dp;
  }

  /** Program ids of a superseded data plane that attach() may replace. */
  private superseded = new Set<number>();

  /** Removes the pins of a superseded data plane once nothing runs it. */
  retireSuperseded(): void {
    if (this.superseded.size === 0) return;
    removePins(`${this.pinDir}_old`);
    this.superseded.clear();
  }

  /** True when a data plane is pinned at pinDir. */
  static isPinned(pinDir: string): boolean {
    return isPinned(pinDir);
  }

  private static adopt(pinDir: string, inNs: <T>(fn: () => T) => T): FastpathDataPlane {
    const { maps, xdp, tc } = openPins(pinDir);
    return new FastpathDataPlane(pinDir, xdp, tc, maps, true, inNs);
  }

  private static async load(opts: DataPlaneOptions, inNs: <T>(fn: () => T) => T): Promise<FastpathDataPlane> {
    const cap = opts.capacity ?? {};
    // pins without xdp_filter are a load that died halfway (programs are pinned
    // last, and only then attached): nothing runs from them, start clean
    removePins(opts.pinDir);
    mkdirSync(opts.pinDir, { recursive: true });
    markOwner(opts.pinDir, inNs(currentNetnsInode));
    using xobj = BpfObject.open('xdp_filter');
    for (const name of MAP_NAMES) xobj.setMapPinPath(name, `${opts.pinDir}/${name}`);
    if (cap.prefixes) for (const f of ['src_v4', 'dst_v4', 'src_v6', 'dst_v6']) xobj.setMapMaxEntries(f, 2 * cap.prefixes);
    // the IPv6 first stage's hash: at most one entry per prefix of each (generation, field)
    if (cap.prefixes) xobj.setMapMaxEntries('v6_hash', 4 * cap.prefixes);
    if (cap.portPrefixes) for (const f of ['sport', 'dport']) xobj.setMapMaxEntries(f, 2 * cap.portPrefixes);
    // per-CPU LRU lists: each CPU recycles its share, so every CPU can track rateLimitSources
    xobj.setMapMaxEntries('rate_state', (cap.rateLimitSources ?? FILTER_DEFAULT_RATE_STATE) * probes.possibleCpus());
    if (cap.blocklist) for (const f of ['block_v4', 'block_v6']) xobj.setMapMaxEntries(f, cap.blocklist);
    await xobj.load();
    const maps = {} as Record<MapName, RawMap>;
    for (const name of MAP_NAMES) {
      const info = xobj.maps().find((m) => m.name === name)!;
      maps[name] = xobj.map(name, codecs.bytes(info.keySize), codecs.bytes(info.valueSize));
    }
    using tobj = BpfObject.open('tc_filter');
    for (const name of MAP_NAMES) tobj.reuseMap(name, maps[name]);
    await tobj.load();
    const xdp = xobj.program('xdp_filter');
    const tc = tobj.program('tc_filter');
    checkLayout(maps, opts.pinDir, false);
    // programs last: their pins mark the data plane complete for adopt()
    tc.pin(`${opts.pinDir}/tc_filter`);
    xdp.pin(`${opts.pinDir}/xdp_filter`);
    const dp = new FastpathDataPlane(opts.pinDir, xdp, tc, maps, false, inNs);
    return dp;
  }

  /**
   * Replaces this data plane by a freshly loaded one with other map sizes
   * (or a newer BPF object) without a gap in filtering: the new one is
   * loaded under `<pinDir>_next` (bpffs refuses dots in names), given the rule set, the counters (by rule
   * name) and the blocklist, then swapped in on every interface with an
   * atomic program replacement (XDP expected-program replace, tc filter
   * replace), and its pins take over pinDir. Rate-limit buckets start full.
   * Returns the new data plane; this one is closed.
   */
  async replaceWith(capacity: Partial<FastpathCapacity>, desired: FastpathDesired | FastpathTables, ifindexOf: (name: string) => number | Promise<number>): Promise<FastpathDataPlane> {
    const staging = `${this.pinDir}_next`;
    const retired = `${this.pinDir}_old`;
    removePins(staging);
    removePins(retired);
    const next = await FastpathDataPlane.load({ pinDir: staging, capacity }, this.inNs);
    try {
      await next.apply(desired, ifindexOf);
      const copied = next.copyStateFrom(this);
      for (const idx of this.configuredIfindexes()) {
        this.inNs(() => {
          const q = tryOr(() => queryXdp(idx), null);
          if (q && q.progId === this.xdp.info.id) next.xdp.attachXdp(idx, { mode: q.mode === 'generic' ? 'generic' : 'native', expected: this.xdp });
          if (tryOr(() => queryTc(idx, 'egress', TC_PRIORITY, TC_HANDLE), null) === this.tc.info.id) {
            next.tc.attachTc(idx, 'egress', { priority: TC_PRIORITY, handle: TC_HANDLE, replace: true });
          }
        });
      }
      // the old programs counted until the swap: once no run of them can be in flight, add what they
      // counted since the copy (the copy had to come first so the new counters never start from 0)
      next.rcuBarrier();
      next.addCountedSince(this, copied);
    } catch (e) {
      next.close();
      removePins(staging);
      throw e;
    }
    next.close();
    this.close();
    renameSync(this.pinDir, retired);
    renameSync(staging, this.pinDir);
    removePins(retired);
    const adopted = FastpathDataPlane.adopt(this.pinDir, this.inNs);
    // the same maps as next's: what next wrote is known (the token in gen_meta says whether it still holds)
    adopted.writer.inheritFrom(next.writer);
    return adopted;
  }

  /**
   * Counters (by rule name), verdict counters and the blocklist of another
   * data plane. Returns the per-CPU values copied (for addCountedSince).
   */
  private copyStateFrom(old: FastpathDataPlane): CopiedCounters {
    const copied: CopiedCounters = { rules: [], verdicts: [] };
    const oldStats = old.perCpu('rule_stats');
    const newStats = this.perCpu('rule_stats');
    const oldSlots = old.activeRuleSlots(old.generation);
    for (const [name, slot] of this.activeRuleSlots(this.generation)) {
      const from = oldSlots.get(name);
      if (from === undefined) continue;
      const values = oldStats.get(u32(from))!;
      newStats.set(u32(slot), values);
      copied.rules.push({ from, to: slot, values });
    }
    const ov = old.perCpu('verdict_stats');
    const nv = this.perCpu('verdict_stats');
    for (let i = 0; i < 2 * VERDICT_MAX; i++) {
      const values = ov.get(u32(i))!;
      nv.set(u32(i), values);
      copied.verdicts.push({ from: i, to: i, values });
    }
    // drop-event counters and their per-CPU baselines follow the counters they are relative to (droplog.ts)
    const logStats = (dp: FastpathDataPlane) => new PerCpuMap(dp.maps.log_stats.nativeHandle, dp.maps.log_stats.keyCodec, codecs.bytes(LOG_STAT_SIZE));
    const ol = logStats(old);
    const nl = logStats(this);
    for (const c of copied.rules) nl.set(u32(c.to), ol.get(u32(c.from))!);
    for (let s = LOG_SLOT_DEFAULT; s < LOG_SLOTS; s++) nl.set(u32(s), ol.get(u32(s))!);
    for (const m of ['block_v4', 'block_v6'] as const) {
      for (const k of old.maps[m].keys()) {
        const v = old.maps[m].get(k);
        if (v) this.maps[m].set(k, v);
      }
    }
    this.syncBlockActive();
    return copied;
  }

  /**
   * Adds what `old` counted after copyStateFrom took `copied` (the packets
   * its programs saw until they were replaced). Call after an RCU barrier.
   * The read-add-write of a live per-CPU slot can race with the new
   * program's own increment of that slot; the window is one map update.
   */
  private addCountedSince(old: FastpathDataPlane, copied: CopiedCounters): void {
    for (const [name, list] of [['rule_stats', copied.rules], ['verdict_stats', copied.verdicts]] as const) {
      const from = old.perCpu(name);
      const to = this.perCpu(name);
      for (const c of list) {
        const now = from.get(u32(c.from))!;
        if (now.every((b, cpu) => b.equals(c.values[cpu]!))) continue;
        const cur = to.get(u32(c.to))!;
        to.set(
          u32(c.to),
          cur.map((b, cpu) => {
            const out = Buffer.from(b);
            for (let off = 0; off + 8 <= out.length; off += 8) {
              out.writeBigUInt64LE(out.readBigUInt64LE(off) + now[cpu]!.readBigUInt64LE(off) - c.values[cpu]!.readBigUInt64LE(off), off);
            }
            return out;
          }),
        );
      }
    }
  }

  /**
   * Waits until no program run can still be using a generation it read
   * before now: an update of a map-in-map from userspace returns only after
   * an RCU grace period (kernel: maybe_wait_bpf_programs).
   */
  rcuBarrier(): void {
    this.maps.rcu_barrier.setRaw(u32(0), u32(this.maps.active.fd));
  }

  /**
   * Writes `desired` into the inactive generation and switches to it
   * (writer.ts). ifindexOf resolves interface names in the data plane's namespace.
   */
  async apply(compiled: FastpathDesired | FastpathTables, ifindexOf: (name: string) => number | Promise<number>): Promise<ApplyStats> {
    // the compiler's entries (tests, benches) become sorted tables here; the subsystem hands tables already
    const desired = fastpathTables(compiled);
    const cap = this.capacity;
    if (desired.rules.length > FILTER_MAX_RULES) throw new Error(`fastpath: ${desired.rules.length} rules exceed the data plane's ${FILTER_MAX_RULES}`);
    for (const f of LPM_FIELDS) {
      const limit = f === 'sport' || f === 'dport' ? cap.portPrefixes : cap.prefixes;
      if (desired.fields[f].count > limit) throw new Error(`fastpath: map ${f} needs ${desired.fields[f].count} entries; the loaded data plane holds ${limit} per generation (a capacity change needs a reload: teardown, then apply)`);
    }
    const ifindexes = new Map<string, number>();
    for (const i of desired.interfaces) ifindexes.set(i.name, await ifindexOf(i.name));
    return this.writer.write(desired, ifindexes);
  }

  /** The active generation of one LPM map as a sorted table (for plan), from what this process wrote. */
  override activeTable(f: LpmField): Promise<FlatTable> {
    return this.generationTable(f, this.generation);
  }

  /** Whether what this instance remembers of the maps is what they hold (the writer token; see writer.ts). */
  cachesCurrent(): boolean {
    return this.writer.cachesCurrent();
  }

  /** The iface_cfg values of a generation: what this instance wrote while nobody else wrote since, else read (512 lookups). */
  override ifaceCfg(gen: number): Buffer[] {
    if (!this.writer.cachesCurrent()) this.writer.forgetContents();
    return this.writer.ifaceCfgContents(gen);
  }

  /** Generation `gen` of one LPM map as a sorted table: what this instance wrote while nobody else wrote since, else read. */
  override generationTable(f: LpmField, gen: number): Promise<FlatTable> {
    if (!this.writer.cachesCurrent()) this.writer.forgetContents();
    return this.writer.lpmContents(f, gen);
  }

  /**
   * Whether the pins at pinDir are still this instance's programs and maps
   * (same kernel object ids): nothing replaced, removed or upgraded them
   * since it opened them. A few syscalls per pin, no map contents read.
   */
  matchesPins(): boolean {
    const same = (path: string, id: number, open: (p: string) => { info: { id: number }; close(): void }) => {
      if (!existsSync(path)) return false;
      const h = open(path);
      try {
        return h.info.id === id;
      } finally {
        h.close();
      }
    };
    try {
      if (!same(`${this.pinDir}/xdp_filter`, this.xdp.info.id, (p) => BpfProgram.openPinned(p))) return false;
      if (!same(`${this.pinDir}/tc_filter`, this.tc.info.id, (p) => BpfProgram.openPinned(p))) return false;
      return MAP_NAMES.every((name) => same(`${this.pinDir}/${name}`, this.maps[name].info.id, (p) => openPinnedMap(p)));
    } catch {
      return false;
    }
  }

  /**
   * Attaches the filter where `interfaces` say (XDP on each, tc egress where
   * enabled) and detaches it from interfaces no longer listed (attach.ts).
   */
  attach(interfaces: CompiledInterface[], ifindexOf: (name: string) => number | Promise<number>, previous: number[] = []): Promise<Map<string, XdpMode>> {
    return attachFilter(this.attachTarget(), interfaces, ifindexOf, previous);
  }

  private attachTarget(): AttachTarget {
    return { xdp: this.xdp, tc: this.tc, inNs: this.inNs, superseded: this.superseded, configuredIfindexes: () => this.configuredIfindexes() };
  }

  /** Detaches from every interface it is configured on and removes the pins. */
  destroy(extraIfindexes: number[] = []): void {
    for (const idx of new Set([...this.configuredIfindexes(), ...extraIfindexes])) detachFilter(this.attachTarget(), idx);
    this.close();
    removePins(this.pinDir);
    // leftovers of an interrupted replaceWith()
    removePins(`${this.pinDir}_next`);
    removePins(`${this.pinDir}_old`);
  }
}

/** Per-CPU counter values copied from a replaced data plane, by old and new slot. */
interface CopiedCounters {
  rules: { from: number; to: number; values: Buffer[] }[];
  verdicts: { from: number; to: number; values: Buffer[] }[];
}
