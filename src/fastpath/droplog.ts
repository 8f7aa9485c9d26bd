/**
 * The data plane's side of drop events (bpf/include/filter_log.h): what an
 * apply writes so the program reports the right drops at the right rate,
 * and the counters read back. Kept apart from dataplane.ts, which calls in
 * at three points: before the generation flip (prepare), after it (settle),
 * and for metrics (counters).
 */
import { existsSync, readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { release } from 'node:os';
import { PerCpuMap, codecs, type BpfMap } from '../bpf/index.js';
import {
  FILTER_COUNTER_SLOTS,
  LOG_FLAGS,
  LOG_NEVER,
  LOG_SLOT_BLOCKED,
  LOG_SLOT_DEFAULT,
  LOG_STAT_SIZE,
  RULE_STAT_SIZE,
  VERDICTS,
  VERDICT_MAX,
  VERDICT_STAT_SIZE,
  decodeLogConfig,
  encodeLogConfig,
  type LogConfig,
} from './layout.js';

type RawMap = BpfMap<Buffer, Buffer>;
export interface DropLogMaps {
  log_cfg: RawMap;
  log_bucket: RawMap;
  log_stats: RawMap;
  rule_stats: RawMap;
  verdict_stats: RawMap;
}

/** Limiter slot -> what its drop counter is (rule_stats packets or limited, or a verdict counter of one direction). */
type Counter = { kind: 'rule'; slot: number; limited: boolean } | { kind: 'verdict'; index: number };

const PSEUDO: { slot: number; flag: number; verdict: string; dir: number; name: string }[] = [
  { slot: LOG_SLOT_DEFAULT, flag: LOG_FLAGS.defaultDrop, verdict: 'default_drop', dir: 0, name: 'default' },
  { slot: LOG_SLOT_DEFAULT + 1, flag: LOG_FLAGS.defaultDrop, verdict: 'default_drop', dir: 1, name: 'default' },
  { slot: LOG_SLOT_BLOCKED, flag: LOG_FLAGS.blocked, verdict: 'blocked', dir: 0, name: 'blocklist' },
  { slot: LOG_SLOT_BLOCKED + 1, flag: LOG_FLAGS.blocked, verdict: 'blocked', dir: 1, name: 'blocklist' },
];

/** A rule of a generation as the log sees it. */
export interface LogRule {
  name: string;
  slot: number;
  /** rate-limit rules: their drops are the packets over the limit */
  limited: boolean;
  logs: boolean;
}

/**
 * Before the flip: the shadow generation's log_cfg, and for every slot that
 * starts logging now, its bucket opened and its per-CPU baselines set to the
 * drops counted so far (its first event does not stand for drops from
 * before it logged).
 */
export function prepareDropLog(maps: DropLogMaps, shadow: number, log: LogConfig, rules: LogRule[], wasLogging: Set<number>): void {
  maps.log_cfg.set(u32(shadow), encodeLogConfig(log, nsPerJiffy()));
  if (log.rate === 0) return;
  const stats = perCpu(maps.log_stats, LOG_STAT_SIZE);
  for (const { slot, counter } of loggingSlots(log, rules)) {
    if (wasLogging.has(slot)) continue;
    const b = maps.log_bucket.get(u32(slot)) ?? Buffer.alloc(16);
    const opened = Buffer.from(b);
    opened.writeBigUInt64LE(0n, 8);
    maps.log_bucket.set(u32(slot), opened);
    rewriteStats(stats, slot, drops(maps, counter), (o, d) => o.writeBigUInt64LE(d, 24));
  }
}

/**
 * After the flip (and an RCU barrier, so no program run still logs by the
 * previous generation): slots in use that do not log never ask the limiter,
 * and a slot that stopped logging books the drops since its last event per
 * CPU as suppressed (they happened while it logged).
 */
export function settleDropLog(maps: DropLogMaps, log: LogConfig, rules: LogRule[], before: { gen: number; rules: LogRule[] }): void {
  const logging = new Set(log.rate ? loggingSlots(log, rules).map((s) => s.slot) : []);
  const old = decodeLogConfig(maps.log_cfg.get(u32(before.gen))!);
  if (old.rate) {
    const stats = perCpu(maps.log_stats, LOG_STAT_SIZE);
    for (const { slot, counter } of loggingSlots(old, before.rules)) {
      if (logging.has(slot)) continue;
      rewriteStats(stats, slot, drops(maps, counter), (o, d) => {
        const seen = o.readBigUInt64LE(24);
        if (d > seen) o.writeBigUInt64LE(o.readBigUInt64LE(8) + d - seen, 8);
        o.writeBigUInt64LE(d, 24);
      });
    }
  }
  for (const slot of [...rules.map((r) => r.slot), ...PSEUDO.map((p) => p.slot)]) {
    if (logging.has(slot)) continue;
    const b = maps.log_bucket.get(u32(slot));
    if (b && b.readBigUInt64LE(8) === LOG_NEVER) continue;
    const closed = Buffer.from(b ?? Buffer.alloc(16));
    closed.writeBigUInt64LE(LOG_NEVER, 8);
    maps.log_bucket.set(u32(slot), closed);
  }
}

/** The slots a generation logs (read from its log_cfg). */
export function loggingSlotsOf(maps: DropLogMaps, gen: number, rules: LogRule[]): Set<number> {
  const cfg = decodeLogConfig(maps.log_cfg.get(u32(gen))!);
  return new Set(cfg.rate ? loggingSlots(cfg, rules).map((s) => s.slot) : []);
}

export interface DropLogCounters {
  rule: string;
  /** events written to the ring */
  emitted: bigint;
  /** drops of the rule no event reported (held back by the limiter) */
  suppressed: bigint;
  /** events the ring had no room for */
  lost: bigint;
  rate: number;
}

/** Per logging rule (and pseudo rule): emitted, suppressed, lost; suppressed includes the drops since each CPU's last event. */
export function dropLogCounters(maps: DropLogMaps, gen: number, rules: LogRule[]): DropLogCounters[] {
  const cfg = decodeLogConfig(maps.log_cfg.get(u32(gen))!);
  if (!cfg.rate) return [];
  const stats = perCpu(maps.log_stats, LOG_STAT_SIZE);
  const byName = new Map<string, DropLogCounters>();
  for (const { slot, name, counter } of loggingSlots(cfg, rules)) {
    const now = drops(maps, counter);
    const c = byName.get(name) ?? { rule: name, emitted: 0n, suppressed: 0n, lost: 0n, rate: cfg.rate };
    stats.get(u32(slot))!.forEach((v, cpu) => {
      c.emitted += v.readBigUInt64LE(0);
      c.suppressed += v.readBigUInt64LE(8);
      c.lost += v.readBigUInt64LE(16);
      const seen = v.readBigUInt64LE(24);
      const d = now[cpu] ?? 0n;
      if (d > seen) c.suppressed += d - seen;
    });
    byName.set(name, c);
  }
  return [...byName.values()];
}

function loggingSlots(log: LogConfig, rules: LogRule[]): { slot: number; name: string; counter: Counter }[] {
  const out: { slot: number; name: string; counter: Counter }[] = [];
  for (const r of rules) if (r.logs && r.slot < FILTER_COUNTER_SLOTS) out.push({ slot: r.slot, name: r.name, counter: { kind: 'rule', slot: r.slot, limited: r.limited } });
  for (const p of PSEUDO) if (log.flags & p.flag) out.push({ slot: p.slot, name: p.name, counter: { kind: 'verdict', index: p.dir * VERDICT_MAX + VERDICTS.indexOf(p.verdict as never) } });
  return out;
}

/** The drop counter of a slot, per CPU. */
/** Rewrites one slot's per-CPU stats: fn edits each CPU's copy, given that CPU's drop count now. */
function rewriteStats(stats: PerCpuMap<Buffer, Buffer>, slot: number, now: readonly bigint[], fn: (stat: Buffer, drops: bigint) => void): void {
  const cur = stats.get(u32(slot))!;
  stats.set(
    u32(slot),
    cur.map((v, cpu) => {
      const o = Buffer.from(v);
      fn(o, now[cpu] ?? 0n);
      return o;
    }),
  );
}

function drops(maps: DropLogMaps, c: Counter): bigint[] {
  if (c.kind === 'rule') return perCpu(maps.rule_stats, RULE_STAT_SIZE).get(u32(c.slot))!.map((v) => v.readBigUInt64LE(c.limited ? 16 : 0));
  return perCpu(maps.verdict_stats, VERDICT_STAT_SIZE).get(u32(c.index))!.map((v) => v.readBigUInt64LE(0));
}

function perCpu(m: RawMap, size: number): PerCpuMap<Buffer, Buffer> {
  return new PerCpuMap(m.nativeHandle, m.keyCodec, codecs.bytes(size));
}

let npj: number | undefined;

/**
 * The kernel's tick in ns (1e9 / CONFIG_HZ), for the limiter's jiffies hint:
 * from the kernel config (/proc/config.gz, /boot/config-RELEASE). Unknown:
 * 0, which turns the hint off (every drop of a logging rule asks the
 * limiter: exact, only slower under a flood).
 */
export function nsPerJiffy(): number {
  if (npj !== undefined) return npj;
  npj = 0;
  for (const [file, gz] of [['/proc/config.gz', true], [`/boot/config-${release()}`, false]] as const) {
    try {
      if (!existsSync(file)) continue;
      const raw = readFileSync(file);
      const text = (gz ? gunzipSync(raw) : raw).toString('latin1');
      const m = /^CONFIG_HZ=(\d+)$/m.exec(text);
      if (m && Number(m[1]) > 0) {
        npj = 1e9 / Number(m[1]);
        break;
      }
    } catch {
      /* try the next source */
    }
  }
  return npj;
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0, 0);
  return b;
}
