/**
 * The running fast path: the XDP and tc filter programs and their maps,
 * pinned under `<bpfRoot>/fastpath/`. A control plane that starts while a
 * data plane is pinned adopts it (same program ids, no reload, counters and
 * rate-limit state kept); otherwise it loads and pins a fresh one.
 *
 * Rule-set updates are hitless: FastpathDataPlane.apply writes the inactive
 * generation of every classification map, flips `active`, then waits an RCU
 * grace period, so a packet is classified entirely against the old or
 * entirely against the new rule set.
 *
 * Public API for other domains (see docs/fastpath.md):
 *   block/unblock/listBlocked  - dynamic source blocklist (IDS)
 *   ruleCounters/verdictCounters/occupancy/interfaces - metrics and REST
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, existsSync, rmSync, readdirSync, renameSync } from 'node:fs';
import { addressBytes } from '../net/address.js';
import { BpfError, BpfMap, BpfObject, BpfProgram, PerCpuMap, codecs, probes, openPinnedMap, queryXdp, queryTc, detachXdp, detachTc, unpin, type XdpMode } from '../bpf/index.js';
import { currentNetnsInode, netnsExists } from '../system/host.js';
import { dropLogCounters, loggingSlotsOf, prepareDropLog, settleDropLog, type DropLogCounters, type LogRule } from './droplog.js';
import type { CompiledInterface, FastpathCapacity, FastpathDesired, LpmEntry } from './compile.js';
import { changedIndexes, changedVectors, diffKeyed, genConfigWithConstraints, packDir4 } from './generation.js';
import {
  ACTION,
  DIR,
  DIR4_CHUNKS,
  DIR4_CLASSES,
  FILTER_COUNTER_SLOTS,
  FILTER_DEFAULT_RATE_STATE,
  FILTER_FLAGS_PER_GEN,
  FILTER_IFINDEX_DIRECT,
  FILTER_MAX_IFACES,
  FILTER_MAX_RULES,
  FILTER_NAME_LEN,
  GEN_META_SIZE,
  GEN_META_WRITER_OFFSET,
  IFACE_VALUE_SIZE,
  LPM_FIELDS,
  MAP_NAMES,
  PORT_CLASSES,
  RULE_STAT_SIZE,
  VERDICTS,
  VERDICT_MAX,
  VERDICT_STAT_SIZE,
  FEAT,
  decodeAction,
  decodeGenConfig,
  decodeIfaceValue,
  encodeAction,
  encodeDir4Bitmap,
  DIR4_BITMAP_SIZE,
  MAPS,
  encodeGenConfig,
  encodeIfaceValue,
  decodeLogConfig,
  ifaceIndex,
  LOG_BUCKET_SIZE,
  LOG_CONFIG_SIZE,
  LOG_RING_BYTES,
  LOG_SLOT_DEFAULT,
  LOG_SLOTS,
  LOG_STAT_SIZE,
  lpmKeyString,
  type LpmField,
  type MapName,
  type Verdict,
} from './layout.js';

/** tc filter identity of the egress program (clsact egress, this priority/handle). */
export const TC_PRIORITY = 0xfa;
export const TC_HANDLE = 0xfa;
const UNUSED_SLOT = 0xffffffff;
const NEVER = 0xffffffffffffffffn;

type RawMap = BpfMap<Buffer, Buffer>;
type RawPerCpu = PerCpuMap<Buffer, Buffer>;

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
 * What observers may do with a running data plane: read it, and drive the
 * IDS blocklist. No load, apply, attach, upgrade or destroy (FastpathDataPlane.observe).
 */
export type FastpathView = Pick<
  FastpathDataPlane,
  | 'pinDir'
  | 'xdp'
  | 'tc'
  | 'adopted'
  | 'generation'
  | 'capacity'
  | 'lookups'
  | 'blocklistChecked'
  | 'meta'
  | 'configuredIfindexes'
  | 'ruleCounters'
  | 'logCounters'
  | 'verdictCounters'
  | 'occupancy'
  | 'interfaces'
  | 'activeEntries'
  | 'generationEntries'
  | 'activeRuleNames'
  | 'block'
  | 'unblock'
  | 'listBlocked'
  | 'close'
  | typeof Symbol.dispose
>;

/** The pinned data plane belongs to another network namespace (another Patronus instance). */
export class ForeignDataPlaneError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ForeignDataPlaneError';
  }
}

/** The pinned data plane was built with another layout than this build's. */
export class IncompatibleDataPlaneError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'IncompatibleDataPlaneError';
  }
}

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

export interface ApplyStats {
  generation: number;
  written: Record<string, number>;
  removed: Record<string, number>;
  durationMs: number;
}

/** LPM generations up to this many entries are remembered between applies (writeLpm); larger ones are read again. */
const KEEP_CONTENTS_MAX = 250_000;

export class FastpathDataPlane implements Disposable {
  private readonly maps: Record<MapName, RawMap>;
  /** "field:gen" -> key (latin1) -> bit vector, as last written by this process */
  private readonly contents = new Map<string, Map<string, Buffer>>();
  /** "map:first index" -> u32 values last written there by this process (DIR and port tables) */
  private readonly arrays = new Map<string, Uint32Array>();
  /** "map:first index" -> class vectors last written there by this process */
  private readonly vectors = new Map<string, Buffer[]>();
  /**
   * The token this instance wrote into gen_meta with its last complete
   * apply. The caches above hold only while the active generation's meta
   * still carries it: every apply (of any process, instance or version)
   * overwrites it before it writes anything, so a mismatch means someone
   * else wrote since, and the caches are dropped (the maps are read again).
   */
  private writerToken: number | undefined;

  private constructor(
    readonly pinDir: string,
    readonly xdp: BpfProgram,
    readonly tc: BpfProgram,
    maps: Record<MapName, RawMap>,
    /** true when this instance took over an already running data plane */
    readonly adopted: boolean,
    private readonly inNs: <T>(fn: () => T) => T,
  ) {
    this.maps = maps;
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

  /**
   * The data plane pinned at pinDir, for observers (status, metrics, plan,
   * drift) and the IDS blocklist: adopts the pins and nothing else. Unlike
   * open() it never loads or pins a data plane, never finishes an
   * interrupted upgrade (renames) and never marks ownership: those belong to
   * apply, under the apply lock. Throws when nothing (or something of
   * another build or namespace) is pinned there.
   */
  static observe(opts: Pick<DataPlaneOptions, 'pinDir' | 'inNetns'>): FastpathView {
    const inNs = opts.inNetns ?? (<T>(fn: () => T) => fn());
    if (!FastpathDataPlane.isPinned(opts.pinDir)) throw new Error(`fastpath: no data plane is pinned at ${opts.pinDir}; apply a configuration with fastpath interfaces first`);
    const here = inNs(currentNetnsInode);
    const owner = pinOwner(opts.pinDir);
    if (owner !== undefined && owner !== here) throw foreignOwner(opts.pinDir, owner, here);
    const dp = FastpathDataPlane.adopt(opts.pinDir, inNs);
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

  /** Program ids of a superseded data plane that attach() may replace. */
  private superseded = new Set<number>();

  /** Removes the pins of a superseded data plane once nothing runs it. */
  retireSuperseded(): void {
    if (this.superseded.size === 0) return;
    removePins(`${this.pinDir}_old`);
    this.superseded.clear();
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

  /** True when a data plane is pinned at pinDir. */
  static isPinned(pinDir: string): boolean {
    return existsSync(`${pinDir}/xdp_filter`);
  }

  private static adopt(pinDir: string, inNs: <T>(fn: () => T) => T): FastpathDataPlane {
    const maps = {} as Record<MapName, RawMap>;
    const opened: { close(): void }[] = [];
    try {
      for (const name of MAP_NAMES) {
        const path = `${pinDir}/${name}`;
        if (!existsSync(path)) throw new IncompatibleDataPlaneError(`fastpath: pinned data plane at ${pinDir} lacks map ${name} (it is from another Patronus version; an apply replaces it)`);
        const m = openRaw(path);
        opened.push(m);
        maps[name] = m;
      }
      checkLayout(maps, pinDir, true);
      const xdp = BpfProgram.openPinned(`${pinDir}/xdp_filter`);
      opened.push(xdp);
      const tc = BpfProgram.openPinned(`${pinDir}/tc_filter`);
      return new FastpathDataPlane(pinDir, xdp, tc, maps, true, inNs);
    } catch (e) {
      for (const o of opened) o.close();
      throw e;
    }
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
    for (const f of LPM_FIELDS) for (const g of [0, 1]) dp.contents.set(`${f}:${g}`, new Map()); // fresh maps are empty
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
  async replaceWith(capacity: Partial<FastpathCapacity>, desired: FastpathDesired, ifindexOf: (name: string) => number | Promise<number>): Promise<FastpathDataPlane> {
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
    return FastpathDataPlane.adopt(this.pinDir, this.inNs);
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

  /** The generation packets are classified against now (0 or 1). */
  get generation(): number {
    return this.maps.active.get(u32(0))!.readUInt32LE(0) & 1;
  }

  /** Map sizes of this data plane (per generation where maps hold two). */
  get capacity(): FastpathCapacity {
    const me = (n: MapName) => this.maps[n].info.maxEntries;
    return { rules: FILTER_MAX_RULES, prefixes: me('src_v4') / 2, portPrefixes: me('sport') / 2, rateLimitSources: me('rate_state') / probes.possibleCpus(), blocklist: me('block_v4') };
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
   * Writes `desired` into the inactive generation and switches to it.
   * ifindexOf resolves interface names in the data plane's namespace.
   */
  async apply(desired: FastpathDesired, ifindexOf: (name: string) => number | Promise<number>): Promise<ApplyStats> {
    const t0 = performance.now();
    const cap = this.capacity;
    if (desired.rules.length > FILTER_MAX_RULES) throw new Error(`fastpath: ${desired.rules.length} rules exceed the data plane's ${FILTER_MAX_RULES}`);
    for (const f of LPM_FIELDS) {
      const limit = f === 'sport' || f === 'dport' ? cap.portPrefixes : cap.prefixes;
      if (desired.fields[f].length > limit) throw new Error(`fastpath: map ${f} needs ${desired.fields[f].length} entries; the loaded data plane holds ${limit} per generation (a capacity change needs a reload: teardown, then apply)`);
    }
    const ifindexes = new Map<string, number>();
    for (const i of desired.interfaces) ifindexes.set(i.name, await ifindexOf(i.name));

    // nothing may still read the generation we are about to overwrite
    this.rcuBarrier();
    const active = this.generation;
    const shadow = active ^ 1;
    // claim the data plane: what this instance remembers of the maps holds only if nobody wrote since its last apply
    const claim = this.claimForWriting(active);
    const written: Record<string, number> = {};
    const removed: Record<string, number> = {};

    // counter slots: a rule keeps its slot (and counters) across updates
    const activeRuleSlots = this.activeRuleSlots(active);
    const used = new Set(activeRuleSlots.values());
    const slots: number[] = [];
    let next = 0;
    for (const r of desired.rules) {
      let s = activeRuleSlots.get(r.name);
      if (s === undefined) {
        while (used.has(next)) next++;
        s = next;
        used.add(s);
        this.resetSlot(s, r.name);
      }
      slots.push(s);
    }

    // classification maps, shadow generation
    for (const f of LPM_FIELDS) {
      const r = await this.writeLpm(f, shadow, desired.fields[f]);
      written[f] = r.written;
      removed[f] = r.removed;
    }
    // IPv4 DIR-16-8 tables of the shadow generation: classes and chunks before the top table
    for (const [fi, f] of (['src_v4', 'dst_v4'] as const).entries()) {
      const d = desired.dir4[f];
      if (!d) continue;
      const gf = shadow * 2 + fi;
      // two-class chunks as bitmaps (40 bytes instead of 2 KB: large lists stay in cache)
      const p = packDir4(d);
      await this.writeVectors('v4_class', gf * DIR4_CLASSES, d.classes);
      const chunks = d.chunks.filter((_, k) => !p.bitmaps.has(k));
      for (let k = 0; k < d.chunks.length; k += 256) {
        const part = d.chunks.slice(k, k + 256);
        const vals = new Uint32Array(part.length * 256);
        part.forEach((c, j) => {
          if (!p.bitmaps.has(k + j)) vals.set(c, j * 256);
        });
        await this.writeU32s('v4_dir8', (gf * DIR4_CHUNKS + k) * 256, vals);
      }
      const empty = Buffer.alloc(DIR4_BITMAP_SIZE);
      await this.writeVectors('v4_bitmap', gf * DIR4_CHUNKS, d.chunks.map((_, k) => {
        const b = p.bitmaps.get(k);
        return b ? encodeDir4Bitmap(b.bits, b.cls) : empty;
      }));
      await this.writeU32s('v4_dir16', gf * 65536, p.dir16);
      written[`${f}_dir`] = p.dir16.length + chunks.length * 256 + p.bitmaps.size;
    }

    // TCP/UDP port arrays of the shadow generation: classes before the port tables
    for (const [fi, f] of (['sport', 'dport'] as const).entries()) {
      const p = desired.ports[f];
      if (!p) continue;
      const gf = shadow * 2 + fi;
      await this.writeVectors('port_bits', gf * PORT_CLASSES, p.classes);
      await this.writeU32s('port_class', (gf * 2) << 16, p.tcp);
      await this.writeU32s('port_class', (gf * 2 + 1) << 16, p.udp);
      written[`${f}_arr`] = 2 * 65536;
    }

    const flagKeys = desired.tcpFlags.map((_, i) => u32(shadow * FILTER_FLAGS_PER_GEN + i));
    await this.maps.tcp_flags.setMany(flagKeys.map((k, i) => [k, desired.tcpFlags[i]!] as const));
    written.tcp_flags = flagKeys.length;

    // interfaces: a slot per interface, stable while it stays configured (the
    // active generation keeps reading it); every entry of the shadow generation rewritten
    const activeSlots = this.ifaceSlots(active);
    const slotOf = new Map<number, number>();
    const taken = new Set(activeSlots.values());
    let free = 0;
    for (const i of desired.interfaces) {
      const idx = ifindexes.get(i.name)!;
      if (slotOf.has(idx)) continue;
      let slot = activeSlots.get(idx);
      if (slot === undefined) {
        while (taken.has(free)) free++;
        if (free >= FILTER_MAX_IFACES) throw new Error(`fastpath: more than ${FILTER_MAX_IFACES} interfaces (with those the active rule set still uses)`);
        slot = free;
        taken.add(slot);
      }
      slotOf.set(idx, slot);
    }
    const cfg = new Map<number, Buffer>();
    for (const i of desired.interfaces) {
      const idx = ifindexes.get(i.name)!;
      const slot = slotOf.get(idx)!;
      cfg.set(ifaceIndex(shadow, DIR.ingress, slot), encodeIfaceValue(i.ingress.bits, policyAction(i.ingress.defaultPolicy), idx));
      if (i.egress) cfg.set(ifaceIndex(shadow, DIR.egress, slot), encodeIfaceValue(i.egressPolicy.bits, policyAction(i.egressPolicy.defaultPolicy), idx));
    }
    const cfgEntries: [Buffer, Buffer][] = [];
    for (const dir of [DIR.ingress, DIR.egress]) {
      for (let slot = 0; slot < FILTER_MAX_IFACES; slot++) {
        const at = ifaceIndex(shadow, dir, slot);
        cfgEntries.push([u32(at), cfg.get(at) ?? Buffer.alloc(IFACE_VALUE_SIZE)]);
      }
    }
    await this.maps.iface_cfg.setMany(cfgEntries);
    for (const [idx, slot] of slotOf) if (activeSlots.get(idx) !== slot) this.setIfaceSlot(idx, slot);
    written.ifaces = cfg.size;

    const actionEntries: [Buffer, Buffer][] = [];
    for (let i = 0; i < FILTER_MAX_RULES; i++) {
      const r = desired.rules[i];
      const v = r
        ? encodeAction({ action: ACTION[r.action], slot: slots[i]!, pps: r.pps, pktBurst: r.pktBurst, bps: r.bps, byteBurst: r.byteBurst })
        : encodeAction({ action: ACTION.pass, slot: UNUSED_SLOT, pps: 0n, pktBurst: 0n, bps: 0n, byteBurst: 0n });
      actionEntries.push([u32(shadow * FILTER_MAX_RULES + i), v]);
    }
    await this.maps.actions.setMany(actionEntries);
    written.actions = desired.rules.length;
    this.maps.gen_config.set(u32(shadow), encodeGenConfig(genConfigWithConstraints(desired)));
    // drop events (filter_log.h, src/fastpath/droplog.ts): read only when gen_config says FEAT_LOG
    const logRules: LogRule[] = desired.rules.map((r, i) => ({ name: r.name, slot: slots[i]!, limited: r.action === 'rate-limit', logs: (desired.log.rules[i >> 3]! & (1 << (i & 7))) !== 0 }));
    const logBefore = { gen: active, rules: this.logRules(active) };
    prepareDropLog(this.maps, shadow, desired.log, logRules, loggingSlotsOf(this.maps, active, logBefore.rules));
    const meta = Buffer.alloc(GEN_META_SIZE);
    meta.writeUInt32LE(desired.rules.length, 0);
    LPM_FIELDS.forEach((f, i) => meta.writeUInt32LE(desired.fields[f].length, 4 + 4 * i));
    meta.writeUInt32LE(claim, GEN_META_WRITER_OFFSET);
    this.maps.gen_meta.set(u32(shadow), meta);

    // the switch: one 4-byte array write
    this.maps.active.set(u32(0), u32(shadow));
    this.rcuBarrier();
    settleDropLog(this.maps, desired.log, logRules, logBefore);

    // interfaces no longer configured: nothing reads their slots now
    for (const idx of activeSlots.keys()) if (!slotOf.has(idx)) this.setIfaceSlot(idx, undefined);

    // slots the new rule set does not use are free now: clear their names
    const keep = new Set(slots);
    for (const s of activeRuleSlots.values()) if (!keep.has(s)) this.maps.rule_names.set(u32(s), Buffer.alloc(FILTER_NAME_LEN));
    this.writerToken = claim;

    return { generation: shadow, written, removed, durationMs: performance.now() - t0 };
  }

  /**
   * Before an apply writes: drops this instance's memory of the maps unless
   * the active generation still carries its own token (nobody wrote since),
   * then marks the active generation with a new token, so every other
   * instance (another process, or this one after a failed apply) reads the
   * maps again. Returns the new token, which the new generation carries.
   */
  private claimForWriting(active: number): number {
    const meta = Buffer.from(this.maps.gen_meta.get(u32(active))!);
    if (this.writerToken === undefined || meta.readUInt32LE(GEN_META_WRITER_OFFSET) !== this.writerToken) this.forgetContents();
    this.writerToken = undefined;
    let claim = 0;
    while (claim === 0) claim = randomBytes(4).readUInt32LE(0);
    meta.writeUInt32LE(claim, GEN_META_WRITER_OFFSET);
    this.maps.gen_meta.set(u32(active), meta);
    return claim;
  }

  /** Whether what this instance remembers of the maps is what they hold (nobody wrote since its last apply). */
  cachesCurrent(): boolean {
    if (this.writerToken === undefined) return false;
    return this.maps.gen_meta.get(u32(this.generation))!.readUInt32LE(GEN_META_WRITER_OFFSET) === this.writerToken;
  }

  /** Forgets what this instance remembers of the maps: the next read or write reads them from the kernel. */
  forgetContents(): void {
    this.contents.clear();
    this.arrays.clear();
    this.vectors.clear();
  }

  /** Rule name -> counter slot for the rules of a generation. */
  private activeRuleSlots(gen: number): Map<string, number> {
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

  /** The per-packet lookups a generation makes (pay per feature; see filter_common.h). */
  lookups(gen = this.generation): (keyof typeof FEAT)[] {
    const { features } = decodeGenConfig(this.maps.gen_config.get(u32(gen))!);
    return (Object.keys(FEAT) as (keyof typeof FEAT)[]).filter((k) => features & FEAT[k]);
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

  private slotName(slot: number): string {
    const raw = this.maps.rule_names.get(u32(slot))!;
    const end = raw.indexOf(0);
    return raw.subarray(0, end < 0 ? raw.length : end).toString('utf8');
  }

  private resetSlot(slot: number, name: string): void {
    (this.perCpu('rule_stats')).setAll(u32(slot), Buffer.alloc(RULE_STAT_SIZE));
    new PerCpuMap(this.maps.log_stats.nativeHandle, this.maps.log_stats.keyCodec, codecs.bytes(LOG_STAT_SIZE)).setAll(u32(slot), Buffer.alloc(LOG_STAT_SIZE));
    this.maps.log_bucket.set(u32(slot), Buffer.alloc(LOG_BUCKET_SIZE));
    const n = Buffer.alloc(FILTER_NAME_LEN);
    n.write(name.slice(0, FILTER_NAME_LEN - 1), 'utf8');
    this.maps.rule_names.set(u32(slot), n);
  }

  private perCpu(name: 'rule_stats' | 'verdict_stats'): RawPerCpu {
    const m = this.maps[name];
    return new PerCpuMap(m.nativeHandle, m.keyCodec, codecs.bytes(name === 'rule_stats' ? RULE_STAT_SIZE : VERDICT_STAT_SIZE));
  }

  /**
   * Brings one generation of an LPM map to `entries`, writing only what
   * differs. What a generation holds is remembered from the apply that wrote
   * it; after adoption it is read from the map once.
   */
  private async writeLpm(f: LpmField, gen: number, entries: LpmEntry[]): Promise<{ written: number; removed: number }> {
    const map = this.maps[f];
    const have = await this.generationContents(f, gen);
    const want = new Map<string, Buffer>();
    for (const e of entries) want.set(lpmKeyString(f, gen, e.data, e.length), e.bits);
    const diff = diffKeyed(have, want);
    // keys and values back to back, as the batch calls take them (no Buffer per entry)
    const ks = map.info.keySize;
    const vs = map.info.valueBytes;
    const stale = Buffer.alloc(diff.stale.length * ks);
    diff.stale.forEach((k, i) => stale.write(k, i * ks, ks, 'latin1'));
    // forget first: if the delete fails midway, the next apply reads the map again
    this.contents.delete(`${f}:${gen}`);
    // one batch syscall off the JS thread (a delete per key blocked the event loop for a 100k-prefix swap)
    await map.deleteManyRaw(stale);
    const keys = Buffer.alloc(diff.write.length * ks);
    const values = Buffer.alloc(diff.write.length * vs);
    diff.write.forEach(([k, bits], i) => {
      keys.write(k, i * ks, ks, 'latin1');
      bits.copy(values, i * vs, 0, vs);
    });
    // forget first: if a write fails midway, the next apply reads the map again
    this.contents.delete(`${f}:${gen}`);
    await map.setManyRaw(keys, values);
    // remembered up to a bound: a generation of 10^6 entries (every country) held ~300 MB of keys
    // in the heap for as long as the server runs; above it, the next apply reads the map again
    if (want.size <= KEEP_CONTENTS_MAX) this.contents.set(`${f}:${gen}`, want);
    return { written: diff.write.length, removed: diff.stale.length };
  }

  /**
   * Writes values[i] at index first + i of a u32 array map, only where it
   * differs from what this process last wrote there (a swap between two rule
   * sets rewrites nothing of the 65536-entry tables); everything the first
   * time, and again after a failed write.
   */
  private async writeU32s(name: 'v4_dir16' | 'v4_dir8' | 'port_class', first: number, values: Uint32Array): Promise<void> {
    const key = `${name}:${first}`;
    const prev = this.arrays.get(key);
    const changed = changedIndexes(prev, values);
    if (changed.length === 0) return;
    const keys = Buffer.alloc(4 * changed.length);
    const vals = Buffer.alloc(4 * changed.length);
    changed.forEach((i, j) => {
      keys.writeUInt32LE(first + i, 4 * j);
      vals.writeUInt32LE(values[i]!, 4 * j);
    });
    this.arrays.delete(key);
    await this.maps[name].nativeHandle.updateBatch(keys, vals);
    this.arrays.set(key, values.slice());
  }

  /** Class vectors at index first + i, written where they differ from the last write. */
  private async writeVectors(name: 'v4_class' | 'v4_bitmap' | 'port_bits', first: number, vectors: Buffer[]): Promise<void> {
    const key = `${name}:${first}`;
    const prev = this.vectors.get(key);
    const batch = changedVectors(prev, vectors).map((i) => [u32(first + i), vectors[i]!] as const);
    if (batch.length === 0) return;
    this.vectors.delete(key);
    await this.maps[name].setMany(batch);
    this.vectors.set(key, vectors);
  }

  private async generationContents(f: LpmField, gen: number): Promise<Map<string, Buffer>> {
    const known = this.contents.get(`${f}:${gen}`);
    if (known) return known;
    const out = new Map<string, Buffer>();
    // one batch read off the JS thread (a lookup per key blocked the event loop ~1 s per 100k entries)
    // raw bytes: keys straight to latin1 strings, values as views (a decoded copy per entry was ~2x the read)
    const { count, keys, values, keySize: ks, valueBytes: vs } = await this.maps[f].rawEntries();
    for (let i = 0; i < count; i++) if (keys[i * ks + 4] === gen) out.set(keys.toString('latin1', i * ks, (i + 1) * ks), values.subarray(i * vs, (i + 1) * vs));
    if (out.size <= KEEP_CONTENTS_MAX) this.contents.set(`${f}:${gen}`, out);
    return out;
  }

  /**
   * Attaches the filter where `interfaces` say (XDP on each, tc egress where
   * enabled) and detaches it from interfaces no longer listed. An interface
   * that already runs this data plane's program is left alone (no reattach).
   */
  async attach(interfaces: CompiledInterface[], ifindexOf: (name: string) => number | Promise<number>, previous: number[] = []): Promise<Map<string, XdpMode>> {
    const modes = new Map<string, XdpMode>();
    const keep = new Set<number>();
    for (const i of interfaces) {
      const idx = await ifindexOf(i.name);
      keep.add(idx);
      const q = this.inNs(() => queryXdp(idx));
      if (q.progId === this.xdp.info.id) {
        modes.set(i.name, q.mode as XdpMode);
      } else {
        const upgrade = this.superseded.has(q.progId);
        if (q.progId !== 0 && !upgrade) throw new Error(`fastpath: interface ${i.name} already runs XDP program id ${q.progId}, not Patronus' (detach it first)`);
        // an older Patronus data plane is replaced in one netlink operation: no gap
        modes.set(i.name, this.inNs(() => this.xdp.attachXdp(idx, { mode: upgrade ? (q.mode === 'generic' ? 'generic' : 'native') : i.mode, replace: upgrade })));
      }
      const tcId = this.inNs(() => queryTc(idx, 'egress', TC_PRIORITY, TC_HANDLE));
      if (i.egress && tcId !== this.tc.info.id) this.inNs(() => this.tc.attachTc(idx, 'egress', { priority: TC_PRIORITY, handle: TC_HANDLE, replace: true }));
      if (!i.egress && tcId !== null) this.inNs(() => detachTc(idx, 'egress', TC_PRIORITY, TC_HANDLE));
    }
    for (const idx of new Set([...previous, ...this.configuredIfindexes()])) if (!keep.has(idx)) this.detachFrom(idx);
    return modes;
  }

  /**
   * Pins without an owner mark (from a Patronus before the mark existed):
   * adopt them only when one of their configured interfaces runs their
   * program in this namespace (or none is configured), so a data plane of
   * another namespace sharing the pin root is never taken over.
   */
  private checkInterfacesHere(here: number): void {
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

  /** ifindexes configured in either generation. */
  configuredIfindexes(): number[] {
    return [...new Set([...this.ifaceSlots(0).keys(), ...this.ifaceSlots(1).keys()])];
  }

  /** ifindex -> slot of the interfaces a generation configures. */
  private ifaceSlots(gen: number): Map<number, number> {
    const out = new Map<number, number>();
    for (const dir of [DIR.ingress, DIR.egress]) {
      for (let slot = 0; slot < FILTER_MAX_IFACES; slot++) {
        const { ifindex } = decodeIfaceValue(this.maps.iface_cfg.get(u32(ifaceIndex(gen, dir, slot)))!);
        if (ifindex) out.set(ifindex, slot);
      }
    }
    return out;
  }

  /** Points ifindex at a slot (undefined: at none). */
  private setIfaceSlot(ifindex: number, slot: number | undefined): void {
    const v = u32(slot === undefined ? 0 : slot + 1);
    if (ifindex < FILTER_IFINDEX_DIRECT) this.maps.iface_slots.set(u32(ifindex), v);
    else if (slot === undefined) this.maps.iface_slots_big.delete(u32(ifindex));
    else this.maps.iface_slots_big.set(u32(ifindex), v);
  }

  private detachFrom(idx: number): void {
    this.inNs(() => {
      let q;
      try {
        q = queryXdp(idx);
      } catch {
        return; // interface gone
      }
      if (q.progId === this.xdp.info.id) detachXdp(idx, q.mode === 'generic' ? 'generic' : 'native', this.xdp);
      // the XDP query answers "nothing attached" for an ifindex that no longer
      // exists (an interface deleted, or deleted and recreated under a new
      // ifindex); the tc query fails with ENODEV there: nothing to detach
      if (tryOr(() => queryTc(idx, 'egress', TC_PRIORITY, TC_HANDLE), null) !== null) detachTc(idx, 'egress', TC_PRIORITY, TC_HANDLE);
    });
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
  private logRules(gen: number): LogRule[] {
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
    const gen = this.generation;
    const byIdx = new Map<number, AttachedInterface>();
    for (const dir of [DIR.ingress, DIR.egress]) {
      for (let slot = 0; slot < FILTER_MAX_IFACES; slot++) {
        const v = decodeIfaceValue(this.maps.iface_cfg.get(u32(ifaceIndex(gen, dir, slot)))!);
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

  /** Keys and bit vectors of the active generation of one LPM map (for plan). */
  activeEntries(f: LpmField): Promise<Map<string, Buffer>> {
    return this.generationContents(f, this.generation);
  }

  /** Keys and bit vectors of generation `gen` of one LPM map (plan reads the active one, its number read once). */
  generationEntries(f: LpmField, gen: number): Promise<Map<string, Buffer>> {
    if (!this.cachesCurrent()) this.forgetContents();
    return this.generationContents(f, gen);
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
  private syncBlockActive(): void {
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

  /** Detaches from every interface it is configured on and removes the pins. */
  destroy(extraIfindexes: number[] = []): void {
    for (const idx of new Set([...this.configuredIfindexes(), ...extraIfindexes])) this.detachFrom(idx);
    this.close();
    removePins(this.pinDir);
    // leftovers of an interrupted replaceWith()
    removePins(`${this.pinDir}_next`);
    removePins(`${this.pinDir}_old`);
  }
}

/**
 * Ownership mark of a pin directory: an empty bpffs directory
 * owner_netns_<INODE> naming the network namespace whose interfaces the data
 * plane serves (bpffs holds no regular files, and refuses dots in names).
 */
const OWNER_MARK = /^owner_netns_(\d+)$/;

function pinOwner(pinDir: string): number | undefined {
  for (const f of readdirSync(pinDir)) {
    const m = OWNER_MARK.exec(f);
    if (m) return Number(m[1]);
  }
  return undefined;
}

function markOwner(pinDir: string, inode: number): void {
  for (const f of readdirSync(pinDir)) if (OWNER_MARK.test(f)) rmSync(`${pinDir}/${f}`, { recursive: true, force: true });
  mkdirSync(`${pinDir}/owner_netns_${inode}`);
}

function foreignOwner(pinDir: string, owner: number, here: number): ForeignDataPlaneError {
  const gone = !netnsExists(owner);
  return new ForeignDataPlaneError(
    `fastpath: refusing to adopt the data plane pinned at ${pinDir}: it belongs to network namespace net:[${owner}] and this process is in net:[${here}]. ` +
      (gone
        ? `That namespace no longer exists: remove the pins (rm -r ${pinDir}) and apply again.`
        : 'Two Patronus instances share this pin root: give each its own (--netns NAME, or run each inside its namespace with its own --state-dir).'),
  );
}

function supersededProgIds(oldPinDir: string): Set<number> {
  const ids = new Set<number>();
  for (const name of ['xdp_filter', 'tc_filter']) {
    if (!existsSync(`${oldPinDir}/${name}`)) continue;
    try {
      using p = BpfProgram.openPinned(`${oldPinDir}/${name}`);
      ids.add(p.info.id);
    } catch {
      /* not a program we can open: nothing to replace */
    }
  }
  return ids;
}

/** Removes every pin under pinDir (maps and programs) and the directory. */
export function removePins(pinDir: string): void {
  if (!existsSync(pinDir)) return;
  for (const f of readdirSync(pinDir)) if (!OWNER_MARK.test(f)) unpin(`${pinDir}/${f}`);
  rmSync(pinDir, { recursive: true, force: true });
}

function openRaw(path: string): RawMap {
  const h = openPinnedMap(path);
  return new BpfMap(h, codecs.bytes(h.info.keySize), codecs.bytes(h.info.valueSize));
}

/** Maps whose entries userspace sizes before load (capacity): their max_entries are not fixed by the object. */
const SIZED_AT_LOAD = new Set<MapName>(['src_v4', 'dst_v4', 'src_v6', 'dst_v6', 'sport', 'dport', 'rate_state', 'block_v4', 'block_v6']);

/**
 * Every map against the layout generated from this build's BPF object
 * (generated/filter.ts): type, key and value size, flags, and entries where
 * the object fixes them; with `btf`, also the key and value types recorded
 * in the map's own BTF (a pinned map from another build can have the same
 * sizes and a different layout).
 */
function checkLayout(maps: Record<MapName, RawMap>, where: string, btf: boolean): void {
  const bad = (name: string, what: string) =>
    new IncompatibleDataPlaneError(`fastpath: map ${name} at ${where} ${what} (the pinned data plane is from another Patronus version, or the BPF object and src/fastpath/generated/filter.ts disagree: rebuild)`);
  for (const name of MAP_NAMES) {
    const want = MAPS[name] as { type: string; keySize?: number; valueSize?: number; maxEntries: number; flags: number; keyType?: string; valueType?: string };
    const info = maps[name].info;
    if (info.type !== want.type) throw bad(name, `is a ${info.type} map, this build expects ${want.type}`);
    if (info.keySize !== (want.keySize ?? 0) || info.valueSize !== (want.valueSize ?? 0)) throw bad(name, `has key/value ${info.keySize}/${info.valueSize} bytes, this build expects ${want.keySize}/${want.valueSize}`);
    if ((info.flags & want.flags) !== want.flags) throw bad(name, `has flags 0x${info.flags.toString(16)}, this build expects 0x${want.flags.toString(16)} set`);
    if (!SIZED_AT_LOAD.has(name) && info.maxEntries !== want.maxEntries) throw bad(name, `holds ${info.maxEntries} entries, this build expects ${want.maxEntries}`);
    // libbpf creates map-in-maps without BTF (an fd value has no type to record)
    // nor ring buffers (no key or value at all)
    if (!btf || want.valueType === 'map fd' || (!want.keyType && !want.valueType)) continue;
    const types = maps[name].nativeHandle.btfTypes();
    if (!types) throw bad(name, 'carries no BTF');
    if (want.keyType && types.key !== null && types.key !== want.keyType) throw bad(name, `has key type ${types.key}, this build expects ${want.keyType}`);
    if (want.valueType && types.value !== null && types.value !== want.valueType) throw bad(name, `has value type ${types.value}, this build expects ${want.valueType}`);
  }
}

function policyAction(policy: 'pass' | 'drop'): number {
  return policy === 'drop' ? ACTION.drop : ACTION.pass;
}

function tryOr<T>(fn: () => T, fallback: T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof BpfError && (e.code === 'ENODEV' || e.code === 'ENOENT')) return fallback;
    throw e;
  }
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0, 0);
  return b;
}

/** CLOCK_MONOTONIC in ns: the clock bpf_ktime_get_ns() reads (libuv's hrtime uses it). */
export function monotonicNs(): bigint {
  return process.hrtime.bigint();
}

/** Per-CPU counter values copied from a replaced data plane, by old and new slot. */
interface CopiedCounters {
  rules: { from: number; to: number; values: Buffer[] }[];
  verdicts: { from: number; to: number; values: Buffer[] }[];
}
