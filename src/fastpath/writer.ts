/**
 * Writes one generation of the fast path's maps: the inactive (shadow)
 * generation of every classification map, interface entries, actions and
 * gen_config, then the flip of `active` and an RCU barrier. Only entries that
 * differ from what this process last wrote there (or, after adoption, what
 * the map holds) are written. What to write is decided by the pure functions
 * of generation.ts (diffs, slot assignment, packing), unit-tested without
 * maps; this class only carries their results into the maps. Used by
 * FastpathDataPlane.apply, under the apply lock.
 */
import { ifaceSlotsOf } from './view.js';
import { randomBytes } from 'node:crypto';
import { PerCpuMap, codecs } from '../bpf/index.js';
import { loggingSlotsOf, prepareDropLog, settleDropLog, type LogRule } from './droplog.js';
import type { FastpathCapacity } from './compile.js';
import { emptyTable, encodeLpmKeys, encodeV6HashKeys, encodeValues, lpmSortKeyBytes, lpmTableFromKernel, mergeDiff, upserts, v6HashTable, v6HashTableFromKernel, type FastpathTables, type FlatTable } from './table.js';
import { assignIfaceSlots, assignRuleSlots, changedIndexes, changedVectors, genConfigWithConstraints, packDir4 } from './generation.js';
import { Slicer, TICK_EVERY } from '../system/slices.js';
import {
  ACTION,
  DIR,
  DIR4_BITMAP_SIZE,
  DIR4_CHUNKS,
  DIR4_CLASSES,
  FILTER_FLAGS_PER_GEN,
  FILTER_IFINDEX_DIRECT,
  FILTER_MAX_IFACES,
  FILTER_MAX_RULES,
  FILTER_NAME_LEN,
  GEN_META_SIZE,
  GEN_META_WRITER_OFFSET,
  IFACE_VALUE_SIZE,
  LOG_BUCKET_SIZE,
  LOG_STAT_SIZE,
  LPM_FIELDS,
  PORT_CLASSES,
  RULE_STAT_SIZE,
  V6_CLASSES,
  XP_CELLS,
  encodeAction,
  encodeDir4Bitmap,
  encodeGenConfig,
  encodeIfaceValue,
  decodeIfaceValue,
  ifaceIndex,
  BITS_BYTES,
  fieldKeySize,
  type LpmField,
  type MapName,
} from './layout.js';
import { u32, type RawMap } from './pins.js';
import { trace } from '../system/trace.js';

const UNUSED_SLOT = 0xffffffff;

export interface ApplyStats {
  generation: number;
  written: Record<string, number>;
  removed: Record<string, number>;
  durationMs: number;
}

/** What the writer reads from the data plane it writes (view.ts) and the barrier it waits on. */
export interface WriterHost {
  readonly generation: number;
  readonly capacity: FastpathCapacity;
  activeRuleSlots(gen: number): Map<string, number>;
  ifaceSlots(gen: number): Map<number, number>;
  /** the iface_cfg values of a generation as the map holds them (index dir * FILTER_MAX_IFACES + slot) */
  readIfaceCfg(gen: number): Buffer[];
  logRules(gen: number): LogRule[];
  rcuBarrier(): void;
}

/** Entries per batch syscall: 64k LPM entries are ~9 MB of keys and values to encode, a few ms of the main thread. */
const BATCH_ENTRIES = 65_536;

export class GenerationWriter {
  /**
   * "field:gen" (LPM maps) and "v6_hash:gen*2+field" -> what this process
   * last wrote there, as a sorted table (table.ts): the desired state's own
   * table (nothing copied), 9 bytes per IPv4 entry plus its distinct
   * vectors, so both generations are always remembered.
   */
  private readonly tables = new Map<string, FlatTable>();
  /** "map:first index" -> u32 values last written there by this process (DIR and port tables) */
  private readonly arrays = new Map<string, Uint32Array>();
  /** "map:first index" -> class vectors last written there by this process */
  private readonly vectors = new Map<string, Buffer[]>();
  /** generation -> its iface_cfg values as this process last wrote (or read) them, index dir * FILTER_MAX_IFACES + slot */
  private readonly ifaceCfg = new Map<number, Buffer[]>();
  /**
   * The token this writer stored in gen_meta with its last complete write.
   * The caches above hold only while the active generation's meta still
   * carries it: every write (of any process, instance or version) replaces
   * it before it changes anything, so a mismatch means someone else wrote
   * since, and the caches are dropped (the maps are read again). A fresh
   * data plane (just created, empty) needs no token.
   */
  private writerToken: number | undefined;
  private freshMaps: boolean;

  /** fresh: the maps were just created (empty), so nothing needs reading back */
  constructor(
    private readonly maps: Record<MapName, RawMap>,
    private readonly dp: WriterHost,
    fresh: boolean,
  ) {
    this.freshMaps = fresh;
    if (!fresh) return;
    for (const f of LPM_FIELDS) for (const g of [0, 1]) this.tables.set(`${f}:${g}`, emptyTable(lpmSortKeyBytes(f), BITS_BYTES));
    for (let gf = 0; gf < 4; gf++) this.tables.set(`v6_hash:${gf}`, v6HashTable([]));
  }

  /**
   * Writes `desired` into the inactive generation and switches to it
   * (capacity already checked; ifindexes: interface name -> ifindex).
   */
  async write(desired: FastpathTables, ifindexes: ReadonlyMap<string, number>): Promise<ApplyStats> {
    const t0 = performance.now();
    const active = this.dp.generation;
    // nothing may still read the generation we are about to overwrite: this writer's own last write ended
    // with a barrier after its switch, so while its token still marks the active generation (nobody switched
    // since) that holds already; otherwise wait for one now (a synchronize_rcu: 10-100 ms on a busy machine)
    if (!this.ownSwitchSettled(active)) this.dp.rcuBarrier();
    const shadow = active ^ 1;
    // claim the maps: what this writer remembers of them holds only if nobody wrote since its last write
    const claim = this.claimForWriting(active);
    const written: Record<string, number> = {};
    const removed: Record<string, number> = {};

    // counter slots: a rule keeps its slot (and counters) across updates
    const activeRuleSlots = this.dp.activeRuleSlots(active);
    const { slots, fresh } = assignRuleSlots(desired.rules.map((r) => r.name), activeRuleSlots);
    for (const i of fresh) this.resetSlot(slots[i]!, desired.rules[i]!.name);

    // classification maps, shadow generation
    for (const f of LPM_FIELDS) {
      const r = await this.writeLpm(f, shadow, desired.fields[f]);
      written[f] = r.written;
      removed[f] = r.removed;
    }
    trace('writer: lpm tables written');
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

    // IPv6 first stage of the shadow generation: hash entries (stale ones removed
    // also when the field goes back to its trie), classes, then the /16 table
    for (const [fi, f] of (['src_v6', 'dst_v6'] as const).entries()) {
      const d = desired.dir6?.[f];
      const gf = shadow * 2 + fi;
      const r = await this.writeTable('v6_hash', `v6_hash:${gf}`, d?.hash ?? v6HashTable([]), {
        encodeKeys: (t, idx, from, to, out) => encodeV6HashKeys(gf, t, idx, from, to, out),
        fromKernel: (raw, vb) => v6HashTableFromKernel(gf, raw.keys, raw.values, raw.count, vb),
      });
      removed[`${f}_hash`] = r.removed;
      if (!d) continue;
      await this.writeVectors('v6_class', gf * V6_CLASSES, d.classes);
      await this.writeU32s('v6_dir16', gf * 65536, d.dir16);
      written[`${f}_dir`] = r.written + d.classes.length;
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

    // IPv4 crossproduct cells of the shadow generation (read only when its gen_config says FEAT_XP)
    if (desired.xp) written.xp_table = await this.writeXpCells(shadow, desired.xp.cells);

    const flagKeys = desired.tcpFlags.map((_, i) => u32(shadow * FILTER_FLAGS_PER_GEN + i));
    await this.maps.tcp_flags.setMany(flagKeys.map((k, i) => [k, desired.tcpFlags[i]!] as const));
    written.tcp_flags = flagKeys.length;

    // interfaces: a slot per interface, stable while it stays configured (the
    // active generation keeps reading it); every entry of the shadow generation rewritten
    const activeSlots = ifaceSlotsOf(this.ifaceCfgContents(active));
    const slotOf = assignIfaceSlots(desired.interfaces.map((i) => ifindexes.get(i.name)!), activeSlots);
    const cfg = new Map<number, Buffer>();
    for (const i of desired.interfaces) {
      const idx = ifindexes.get(i.name)!;
      const slot = slotOf.get(idx)!;
      const base = desired.genConfig.base;
      cfg.set(ifaceIndex(shadow, DIR.ingress, slot), encodeIfaceValue(i.ingress.bits, base, policyAction(i.ingress.defaultPolicy), idx, i.ingress.xpClass));
      if (i.egress) cfg.set(ifaceIndex(shadow, DIR.egress, slot), encodeIfaceValue(i.egressPolicy.bits, base, policyAction(i.egressPolicy.defaultPolicy), idx, i.egressPolicy.xpClass));
    }
    const cfgEntries: [Buffer, Buffer][] = [];
    for (const dir of [DIR.ingress, DIR.egress]) {
      for (let slot = 0; slot < FILTER_MAX_IFACES; slot++) {
        const at = ifaceIndex(shadow, dir, slot);
        cfgEntries.push([u32(at), cfg.get(at) ?? Buffer.alloc(IFACE_VALUE_SIZE)]);
      }
    }
    this.ifaceCfg.delete(shadow);
    await this.maps.iface_cfg.setMany(cfgEntries);
    this.ifaceCfg.set(shadow, cfgEntries.map(([, v]) => v));
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
    const logBefore = { gen: active, rules: this.dp.logRules(active) };
    prepareDropLog(this.maps, shadow, desired.log, logRules, loggingSlotsOf(this.maps, active, logBefore.rules));
    const meta = Buffer.alloc(GEN_META_SIZE);
    meta.writeUInt32LE(desired.rules.length, 0);
    LPM_FIELDS.forEach((f, i) => meta.writeUInt32LE(desired.fields[f].count, 4 + 4 * i));
    meta.writeUInt32LE(claim, GEN_META_WRITER_OFFSET);
    this.maps.gen_meta.set(u32(shadow), meta);

    // the switch: one 4-byte array write
    trace('writer: shadow written');
    this.maps.active.set(u32(0), u32(shadow));
    this.dp.rcuBarrier();
    trace('writer: switched, barrier passed');
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
   * Before a write: drops this writer's memory of the maps unless the active
   * generation still carries its own token (nobody wrote since), then marks
   * the active generation with a new token, so every other writer (another
   * process, or this one after a failed write) reads the maps again. The new
   * generation carries the returned token.
   */
  private claimForWriting(active: number): number {
    const meta = Buffer.from(this.maps.gen_meta.get(u32(active))!);
    const mine = this.freshMaps || (this.writerToken !== undefined && meta.readUInt32LE(GEN_META_WRITER_OFFSET) === this.writerToken);
    if (!mine) this.forgetContents();
    this.freshMaps = false;
    this.writerToken = undefined;
    let claim = 0;
    while (claim === 0) claim = randomBytes(4).readUInt32LE(0);
    meta.writeUInt32LE(claim, GEN_META_WRITER_OFFSET);
    this.maps.gen_meta.set(u32(active), meta);
    return claim;
  }

  /** Whether the active generation is the one this writer's last completed write switched to (and waited out). */
  private ownSwitchSettled(active: number): boolean {
    return this.writerToken !== undefined && this.maps.gen_meta.get(u32(active))!.readUInt32LE(GEN_META_WRITER_OFFSET) === this.writerToken;
  }

  /** Whether what this writer remembers of the maps is what they hold (nobody wrote since its last write). */
  cachesCurrent(): boolean {
    if (this.freshMaps) return true;
    if (this.writerToken === undefined) return false;
    return this.maps.gen_meta.get(u32(this.dp.generation))!.readUInt32LE(GEN_META_WRITER_OFFSET) === this.writerToken;
  }

  /**
   * Takes over what another writer of the same kernel maps (other handles:
   * the data plane adopted again after replaceWith) remembers, token
   * included: the next plan or write does not read 10^6 entries back.
   */
  inheritFrom(other: GenerationWriter): void {
    for (const [k, v] of other.tables) this.tables.set(k, v);
    for (const [k, v] of other.arrays) this.arrays.set(k, v);
    for (const [k, v] of other.vectors) this.vectors.set(k, v);
    for (const [k, v] of other.ifaceCfg) this.ifaceCfg.set(k, v);
    this.writerToken = other.writerToken;
    this.freshMaps = other.freshMaps;
  }

  /** Forgets what this writer remembers of the maps: the next read or write reads them from the kernel. */
  forgetContents(): void {
    this.tables.clear();
    this.arrays.clear();
    this.vectors.clear();
    this.ifaceCfg.clear();
  }

  /** The iface_cfg values of a generation: what this writer last wrote there, else read from the map once. */
  ifaceCfgContents(gen: number): Buffer[] {
    let cfg = this.ifaceCfg.get(gen);
    if (!cfg) this.ifaceCfg.set(gen, (cfg = this.dp.readIfaceCfg(gen)));
    return cfg;
  }

  /** One generation of an LPM map as a sorted table: what this writer last wrote there, else read from the map once. */
  lpmContents(f: LpmField, gen: number): Promise<FlatTable> {
    return this.tableContents(f, `${f}:${gen}`, (raw, vb) => lpmTableFromKernel(f, gen, raw.keys, raw.values, raw.count, vb));
  }

  private async tableContents(name: LpmField | 'v6_hash', cacheKey: string, fromKernel: FromKernel): Promise<FlatTable> {
    const known = this.tables.get(cacheKey);
    if (known) return known;
    // one batch read off the JS thread; sorted and deduplicated into a table without an object per entry
    const t = await fromKernel(await this.maps[name].rawEntries(), this.maps[name].info.valueBytes);
    this.tables.set(cacheKey, t);
    return t;
  }

  private resetSlot(slot: number, name: string): void {
    new PerCpuMap(this.maps.rule_stats.nativeHandle, this.maps.rule_stats.keyCodec, codecs.bytes(RULE_STAT_SIZE)).setAll(u32(slot), Buffer.alloc(RULE_STAT_SIZE));
    new PerCpuMap(this.maps.log_stats.nativeHandle, this.maps.log_stats.keyCodec, codecs.bytes(LOG_STAT_SIZE)).setAll(u32(slot), Buffer.alloc(LOG_STAT_SIZE));
    this.maps.log_bucket.set(u32(slot), Buffer.alloc(LOG_BUCKET_SIZE));
    const n = Buffer.alloc(FILTER_NAME_LEN);
    n.write(name.slice(0, FILTER_NAME_LEN - 1), 'utf8');
    this.maps.rule_names.set(u32(slot), n);
  }

  /** Points ifindex at a slot (undefined: at none). */
  private setIfaceSlot(ifindex: number, slot: number | undefined): void {
    const v = u32(slot === undefined ? 0 : slot + 1);
    if (ifindex < FILTER_IFINDEX_DIRECT) this.maps.iface_slots.set(u32(ifindex), v);
    else if (slot === undefined) this.maps.iface_slots_big.delete(u32(ifindex));
    else this.maps.iface_slots_big.set(u32(ifindex), v);
  }

  /** Brings one generation of an LPM map to `want` (writeTable). */
  private writeLpm(f: LpmField, gen: number, want: FlatTable): Promise<{ written: number; removed: number }> {
    return this.writeTable(f, `${f}:${gen}`, want, {
      encodeKeys: (t, idx, from, to, out) => encodeLpmKeys(f, gen, t, idx, from, to, out),
      fromKernel: (raw, vb) => lpmTableFromKernel(f, gen, raw.keys, raw.values, raw.count, vb),
    });
  }

  /**
   * Brings the part of a keyed map that one table stands for (a generation
   * of an LPM map, a generation and field of v6_hash) to `want`, writing only
   * what differs: one merge of two sorted tables (what this process wrote
   * there, or after adoption what the map holds, read once) gives the keys
   * to delete and the entries to write, encoded straight into batch buffers
   * (no key string, Buffer or object per entry) and written with one batch
   * syscall per BATCH_ENTRIES, off the JS thread.
   */
  private async writeTable(name: LpmField | 'v6_hash', cacheKey: string, want: FlatTable, codec: { encodeKeys: EncodeKeys; fromKernel: FromKernel }): Promise<{ written: number; removed: number }> {
    const map = this.maps[name];
    if (want.valueBytes !== map.info.valueBytes) throw new Error(`fastpath: map ${name} holds ${map.info.valueBytes}-byte values, the rule set has ${want.valueBytes}-byte ones`);
    const slicer = new Slicer();
    const have = await this.tableContents(name, cacheKey, codec.fromKernel);
    const diff = await mergeDiff(have, want, slicer, `map ${name} (${cacheKey})`);
    // forget first: if a batch fails midway, the next apply reads the map again
    this.tables.delete(cacheKey);
    const ks = map.info.keySize;
    const vb = want.valueBytes;
    const write = upserts(diff);
    // one pair of batch buffers for the whole table, reused by every batch (each batch call has finished with
    // them when it resolves): a buffer per batch was ~9 MB of external memory each, 16 of them for a million
    // entries, and that external memory made V8 run full collections on the server's main thread mid-apply
    const most = Math.min(BATCH_ENTRIES, Math.max(diff.removed.length, write.length));
    const keyBuf = Buffer.allocUnsafe(most * ks);
    const valueBuf = Buffer.allocUnsafe(Math.min(BATCH_ENTRIES, write.length) * vb);
    // deletes first: the map holds both generations, a nearly full one has room only after them
    for (let from = 0; from < diff.removed.length; from += BATCH_ENTRIES) {
      const to = Math.min(diff.removed.length, from + BATCH_ENTRIES);
      const keys = keyBuf.subarray(0, (to - from) * ks);
      codec.encodeKeys(have, diff.removed, from, to, keys);
      await map.deleteManyRaw(keys);
      if (slicer.due()) await slicer.pause();
    }
    for (let from = 0; from < write.length; from += BATCH_ENTRIES) {
      const to = Math.min(write.length, from + BATCH_ENTRIES);
      const keys = keyBuf.subarray(0, (to - from) * ks);
      const values = valueBuf.subarray(0, (to - from) * vb);
      codec.encodeKeys(want, write, from, to, keys);
      encodeValues(want, write, from, to, values);
      await map.setManyRaw(keys, values);
      if (slicer.due()) await slicer.pause();
    }
    this.tables.set(cacheKey, want);
    return { written: write.length, removed: diff.removed.length };
  }

  /**
   * Writes values[i] at index first + i of a u32 array map, only where it
   * differs from what this process last wrote there (a swap between two rule
   * sets rewrites nothing of the 65536-entry tables); everything the first
   * time, and again after a failed write.
   */
  private async writeU32s(name: 'v4_dir16' | 'v4_dir8' | 'port_class' | 'v6_dir16', first: number, values: Uint32Array): Promise<void> {
    const key = `${name}:${first}`;
    const prev = this.arrays.get(key);
    const changed = changedIndexes(prev, values);
    if (changed.length === 0) return;
    // u32 keys and values in host order, as the kernel reads them (typed arrays: no call per entry)
    const keys = new Uint32Array(changed.length);
    const vals = new Uint32Array(changed.length);
    for (let j = 0; j < changed.length; j++) {
      const i = changed[j]!;
      keys[j] = first + i;
      vals[j] = values[i]!;
    }
    this.arrays.delete(key);
    await this.maps[name].nativeHandle.updateBatch(Buffer.from(keys.buffer), Buffer.from(vals.buffer));
    this.arrays.set(key, values.slice());
  }

  /**
   * The crossproduct cells of one generation (u16, four per xp_table
   * element), written where they differ from what this process last wrote
   * there; cells beyond `cells` are never read (the tables' offsets say).
   */
  private async writeXpCells(gen: number, cells: Uint16Array): Promise<number> {
    const key = `xp_table:${gen}`;
    const prev = this.arrays.get(key);
    const elems = Math.ceil(cells.length / 4);
    const padded = new Uint16Array(elems * 4);
    padded.set(cells);
    const as32 = new Uint32Array(padded.buffer);
    const changed: number[] = [];
    for (let e = 0; e < elems; e++) if (!prev || prev[2 * e] !== as32[2 * e] || prev[2 * e + 1] !== as32[2 * e + 1]) changed.push(e);
    if (changed.length === 0) return 0;
    const first = gen * (XP_CELLS / 4);
    const keys = Buffer.alloc(4 * changed.length);
    const vals = Buffer.alloc(8 * changed.length);
    changed.forEach((e, j) => {
      keys.writeUInt32LE(first + e, 4 * j);
      vals.writeUInt32LE(as32[2 * e]!, 8 * j);
      vals.writeUInt32LE(as32[2 * e + 1]!, 8 * j + 4);
    });
    this.arrays.delete(key);
    await this.maps.xp_table.nativeHandle.updateBatch(keys, vals);
    this.arrays.set(key, as32);
    return changed.length;
  }

  /** Class vectors at index first + i, written where they differ from the last write. */
  private async writeVectors(name: 'v4_class' | 'v4_bitmap' | 'port_bits' | 'v6_class', first: number, vectors: Buffer[]): Promise<void> {
    const key = `${name}:${first}`;
    const prev = this.vectors.get(key);
    const batch = changedVectors(prev, vectors).map((i) => [u32(first + i), vectors[i]!] as const);
    if (batch.length === 0) return;
    this.vectors.delete(key);
    await this.maps[name].setMany(batch);
    this.vectors.set(key, vectors);
  }
}


type EncodeKeys = (t: FlatTable, idx: Uint32Array, from: number, to: number, out: Uint8Array) => void;
type FromKernel = (raw: { count: number; keys: Buffer; values: Buffer }, valueBytes: number) => Promise<FlatTable>;

function policyAction(policy: 'pass' | 'drop'): number {
  return policy === 'drop' ? ACTION.drop : ACTION.pass;
}
