/**
 * The fast path as a Subsystem: compile (pure, src/fastpath/compile.ts),
 * validate (kernel probes, interfaces exist), plan (map entries added,
 * removed, changed against the active generation), apply (adopt or load,
 * write the shadow generation, switch, attach), teardown, status.
 */
import { probes, queryTc, queryXdp } from '../bpf/index.js';
import { defineSubsystem, type Change, type CompileContext, type DriftFinding, type Subsystem } from '../apply/subsystem.js';
import type { Issue } from '../config/issues.js';
import type { Host } from '../system/host.js';
import { compileFastpath, type FastpathCapacity } from './compile.js';
import { FastpathDataPlane, IncompatibleDataPlaneError, TC_HANDLE, TC_PRIORITY, type FastpathView } from './dataplane.js';
import { GeoIpDatabase } from './geoip.js';
import { FEAT, LPM_FIELDS, bitList, type LpmField } from './layout.js';
import type { FastpathConfig } from './schema.js';
import { formatPrefix, prefixFromBytes } from '../net/address.js';
import { packFastpath, unpackFastpath, type PackedFastpath } from './wire.js';
import { Slicer } from '../system/slices.js';
import { trace } from '../system/trace.js';
import { fastpathTables, lpmEntryAt, mergeDiff, type FastpathTables, type FlatTable } from './table.js';

/** Where a host's fast path is pinned. */
export function fastpathPinDir(host: Host): string {
  return `${host.bpfRoot}/fastpath`;
}

/**
 * The host's data plane, for apply-side work (teardown; tests that drive
 * apply directly). Observers and other domains use observeFastpath.
 */
export async function openFastpath(host: Host, opts: { config?: FastpathConfig } = {}): Promise<FastpathDataPlane> {
  return FastpathDataPlane.open({ pinDir: fastpathPinDir(host), inNetns: (fn) => host.inNetns(fn), ...(opts.config ? { capacity: opts.config.capacity } : {}) });
}

/**
 * The host's running data plane as a view (read it, drive the IDS
 * blocklist): never loads, pins or upgrades anything, so status, metrics,
 * plan and drift are safe outside the apply lock. Throws when none is pinned.
 */
export function observeFastpath(host: Host): FastpathView {
  return FastpathDataPlane.observe({ pinDir: fastpathPinDir(host), inNetns: (fn) => host.inNetns(fn) });
}

/** Compiles with the GeoIP database the section names (read here: it is a file the config names). */
export function compileFastpathSection(fastpath: FastpathConfig, ctx: Pick<CompileContext, 'aliases'>): { desired: FastpathTables; issues: Issue[] } {
  let geoip: GeoIpDatabase | undefined;
  if (fastpath.geoip.database) {
    try {
      geoip = GeoIpDatabase.open(fastpath.geoip.database);
    } catch (e) {
      return {
        desired: emptyDesired(fastpath),
        issues: [{ path: ['fastpath', 'geoip', 'database'], message: `cannot read GeoIP database "${fastpath.geoip.database}": ${(e as Error).message}` }],
      };
    }
  }
  const { desired, issues } = compileFastpath({ fastpath, aliases: ctx.aliases, ...(geoip ? { geoip } : {}) });
  // LPM fields as sorted flat tables (table.ts): transferred from a compile worker as they are, diffed by a merge
  return { desired: fastpathTables(desired), issues };
}

export const fastpathSubsystem: Subsystem<FastpathTables> = defineSubsystem<FastpathTables>({
  name: 'fastpath',

  compile(ctx) {
    return compileFastpathSection(ctx.config.fastpath, ctx);
  },

  /**
   * One step: the new rule set goes into shadow maps and one write flips the generation, so the whole plan is one
   * transaction. No step when the plan finds nothing to change (maps, classifier, rules, attachments, sizes): apply
   * runs exactly what plan printed, and an unchanged fast path is not rewritten when another section changes.
   */
  async steps(desired, host) {
    const changes = await planFastpath(desired, host);
    return changes.length ? [{ changes, run: () => applyFastpath(desired, host) }] : [];
  },

  async validate(desired, host) {
    const issues: Issue[] = [];
    if (desired.interfaces.length === 0) return issues;
    const needs: [boolean, string][] = [
      [probes.hasProgType('xdp'), 'XDP programs'],
      [probes.hasProgType('sched_cls'), 'tc (sched_cls) programs'],
      [probes.hasMapType('lpm_trie'), 'LPM trie maps'],
      [probes.hasMapType('lru_hash'), 'LRU hash maps'],
      [probes.hasMapType('array_of_maps'), 'array-of-maps (used as the update barrier)'],
      [probes.bpffsMounted(), 'a mounted bpffs (/sys/fs/bpf) for pinning'],
    ];
    for (const [ok, what] of needs) if (!ok) issues.push({ path: ['fastpath'], message: `this kernel/host lacks ${what}, which the fast path needs` });
    for (const [i, iface] of desired.interfaces.entries()) {
      try {
        await host.ifindex(iface.name);
      } catch {
        issues.push({ path: ['fastpath', 'interfaces', i, 'name'], message: `interface ${iface.name} does not exist (${host.where})` });
      }
    }
    return issues;
  },

  async teardown(host) {
    forgetKept(fastpathPinDir(host));
    if (!FastpathDataPlane.isPinned(fastpathPinDir(host))) return;
    (await openFastpath(host)).destroy();
  },

  /** Live per-rule and per-verdict counters and map occupancy, read from the per-CPU maps (for /metrics, REST, CLI). */
  async metrics(host) {
    if (!FastpathDataPlane.isPinned(fastpathPinDir(host))) return {};
    using dp = observeFastpath(host);
    const verdicts = dp.verdictCounters();
    return {
      rules: dp.ruleCounters().map((r) => ({ rule: r.name, action: r.action, packets: r.packets, bytes: r.bytes, ...(r.action === 'rate-limit' || r.limited > 0n ? { limited: r.limited } : {}) })),
      verdicts: (['ingress', 'egress'] as const).flatMap((direction) =>
        Object.entries(verdicts[direction]).map(([verdict, c]) => ({ verdict, direction, packets: c.packets, bytes: c.bytes })),
      ),
      maps: dp.occupancy().map((o) => ({ map: o.map, entries: o.entries, capacity: o.capacity })),
      logEvents: dp.logCounters(),
    };
  },

  /**
   * JSON-safe (counters as numbers: exact below 2^53): what runs, per
   * interface by name, with program ids, modes, map fill and counters.
   */
  async status(host) {
    if (!FastpathDataPlane.isPinned(fastpathPinDir(host))) return { running: false };
    using dp = observeFastpath(host);
    const names = await linkNames(host);
    const verdicts = dp.verdictCounters();
    const num = (c: Record<string, { packets: bigint; bytes: bigint }>) => Object.fromEntries(Object.entries(c).map(([k, v]) => [k, { packets: Number(v.packets), bytes: Number(v.bytes) }]));
    return {
      running: true,
      pinDir: dp.pinDir,
      xdpProgramId: dp.xdp.info.id,
      tcProgramId: dp.tc.info.id,
      generation: dp.generation,
      lookups: dp.lookups(),
      interfaces: dp.interfaces().map((i) => ({ ...i, name: names.get(i.ifindex) ?? null })),
      rules: dp.ruleCounters().map((r) => ({ ...r, packets: Number(r.packets), bytes: Number(r.bytes), limited: Number(r.limited) })),
      verdicts: { ingress: num(verdicts.ingress), egress: num(verdicts.egress) },
      occupancy: dp.occupancy(),
      blocked: dp.listBlocked(),
    };
  },

  /**
   * Per configured interface: the pinned xdp_filter attached (by program id)
   * on the interface's current ifindex, which the active ifaces map holds
   * with the configured policy (an interface deleted and recreated has a new
   * ifindex: apply follows it); tc egress likewise; the active rule set by
   * name and order. A data plane left pinned while not configured is drift too.
   */
  async drift(desired, host) {
    const pinDir = fastpathPinDir(host);
    const pinned = FastpathDataPlane.isPinned(pinDir);
    if (desired.interfaces.length === 0 && desired.rules.length === 0) return pinned ? [{ object: `data plane ${pinDir}`, reason: 'pinned, but the fast path is not configured' }] : [];
    if (!pinned) return [{ object: `data plane ${pinDir}`, reason: 'not loaded (no pinned xdp_filter)' }];
    using dp = observeFastpath(host);
    const out: DriftFinding[] = [];
    const configured = new Map(dp.interfaces().map((i) => [i.ifindex, i]));
    const xdpId = dp.xdp.info.id;
    for (const i of desired.interfaces) {
      // if_nametoindex in the namespace: no `ip` process per check
      const idx = await host.ifindex(i.name).catch(() => undefined);
      if (idx === undefined) {
        out.push({ object: `xdp ${i.name}`, reason: `interface does not exist (${host.where})`, repairable: false });
        continue;
      }
      const q = host.inNetns(() => queryXdp(idx));
      if (q.progId !== xdpId) out.push({ object: `xdp ${i.name}`, reason: q.progId ? `runs XDP program id ${q.progId}, not the pinned xdp_filter (id ${xdpId})` : `no XDP program attached (ifindex ${idx}; xdp_filter is id ${xdpId})` });
      const cfg = configured.get(idx);
      if (!cfg) out.push({ object: `policy ${i.name}`, reason: `ifindex ${idx} is not in the active ifaces map (it holds ${[...configured.keys()].join(', ') || 'none'}): the interface was recreated?` });
      else if (cfg.ingress.defaultPolicy !== i.ingress.defaultPolicy) out.push({ object: `policy ${i.name}`, reason: `ingress default ${cfg.ingress.defaultPolicy}, the revision says ${i.ingress.defaultPolicy}` });
      if (i.egress) {
        const tcId = host.inNetns(() => queryTc(idx, 'egress', TC_PRIORITY, TC_HANDLE));
        if (tcId !== dp.tc.info.id) out.push({ object: `tc egress ${i.name}`, reason: tcId ? `runs program id ${tcId}, not tc_filter (id ${dp.tc.info.id})` : `tc_filter not attached (ifindex ${idx})` });
      }
    }
    const running = dp.activeRuleNames();
    const want = desired.rules.map((r) => r.name);
    if (running.join('\0') !== want.join('\0')) out.push({ object: 'rules', reason: `active rule set is [${running.join(', ')}], the revision says [${want.join(', ')}]` });
    return out;
  },

  configured(desired) {
    return desired.interfaces.length > 0 || desired.rules.length > 0;
  },

  // a million prefixes: flat transferred tables, not a million cloned objects (src/fastpath/wire.ts)
  wire: { pack: packFastpath, unpack: (v) => unpackFastpath(v as PackedFastpath) },
});

async function planFastpath(desired: FastpathTables, host: Host): Promise<Change[]> {
  const changes: Change[] = [];
  const pinDir = fastpathPinDir(host);
  if (!FastpathDataPlane.isPinned(pinDir)) {
    if (desired.interfaces.length === 0) return changes;
    changes.push({ action: 'add', object: `data plane ${pinDir}`, detail: 'load and pin xdp_filter and tc_filter' });
    for (const f of LPM_FIELDS) if (desired.fields[f].count > 1) changes.push({ action: 'add', object: `map ${f}`, detail: `${desired.fields[f].count} entries` });
    if (desired.genConfig.features & FEAT.crossproduct) changes.push({ action: 'add', object: 'classifier', detail: desired.classifier });
    for (const r of desired.rules) changes.push({ action: 'add', object: `rule ${r.name}`, detail: `#${r.index} ${r.action}` });
    for (const i of desired.interfaces) changes.push({ action: 'add', object: `xdp ${i.name}`, detail: `mode ${i.mode}, default ${i.ingress.defaultPolicy}${i.egress ? `; tc egress, default ${i.egressPolicy.defaultPolicy}` : ''}` });
    return changes;
  }
  // the instance this process applied last: it knows the active generation it wrote (when nobody wrote since)
  const mine = keptFor(pinDir);
  if (mine) return planAgainst(mine, desired, host);
  let dp: FastpathView;
  try {
    dp = observeFastpath(host);
  } catch (e) {
    if (!(e instanceof IncompatibleDataPlaneError)) throw e;
    return [{ action: 'change', object: `data plane ${pinDir}`, detail: `replace the pinned data plane of another Patronus version (${e.message}); its counters and block list start empty` }];
  }
  using _dp = dp;
  // awaited here: the data plane (its map fds) must stay open until the plan has read it
  return await planAgainst(dp, desired, host);
}

/**
 * The data plane this process last applied, kept open between applies
 * (pin directory -> instance): what it wrote is remembered, so the next
 * apply writes only what differs without reading 10^5 map entries and
 * 65536-entry tables back first, and adopting ~20 pinned maps again. Used
 * only while the pins are still its programs and maps; its memory of the
 * maps only while nobody wrote them since (the writer token in gen_meta,
 * see GenerationWriter.claimForWriting in writer.ts).
 */
const kept = new Map<string, FastpathDataPlane>();

/** The kept instance for pinDir if it still runs there, else undefined (a stale one is closed). */
function keptFor(pinDir: string): FastpathDataPlane | undefined {
  const dp = kept.get(pinDir);
  if (!dp) return undefined;
  if (dp.matchesPins()) return dp;
  forgetKept(pinDir);
  return undefined;
}

/** Closes and forgets the kept instance of pinDir (teardown, replacement, a failed apply). */
function forgetKept(pinDir: string): void {
  kept.get(pinDir)?.close();
  kept.delete(pinDir);
}

async function applyFastpath(desired: FastpathTables, host: Host): Promise<void> {
  const pinDir = fastpathPinDir(host);
  if (desired.interfaces.length === 0 && desired.rules.length === 0) {
    forgetKept(pinDir);
    if (FastpathDataPlane.isPinned(pinDir)) (await openFastpath(host)).destroy();
    return;
  }
  let dp = keptFor(pinDir) ?? (await FastpathDataPlane.open({ pinDir, capacity: desired.capacity, inNetns: (fn) => host.inNetns(fn), upgrade: true }));
  kept.delete(pinDir);
  try {
    const previous = dp.configuredIfindexes();
    // if_nametoindex in the namespace (no process; an `ip` spawn was ~50-100 ms here)
    const ifindexOf = (n: string) => host.ifindex(n);
    const resize = capacityChanges(dp.capacity, desired.capacity);
    if (resize.length) dp = await dp.replaceWith(desired.capacity, desired, ifindexOf); // hitless: atomic program replacement
    else await dp.apply(desired, ifindexOf);
    trace('fastpath: generation written');
    await dp.attach(desired.interfaces, ifindexOf, previous);
    trace('fastpath: attached');
    dp.retireSuperseded();
  } catch (e) {
    dp.close();
    throw e;
  }
  kept.set(pinDir, dp);
}

/** name -> ifindex of every link in the host's namespace (one `ip -j link show`). */
async function linkIndexes(host: Host): Promise<Map<string, number>> {
  const r = await host.run('ip', ['-j', 'link', 'show']);
  return new Map((JSON.parse(r.stdout) as { ifindex: number; ifname: string }[]).map((l) => [l.ifname, l.ifindex]));
}

export async function linkNames(host: Host): Promise<Map<number, string>> {
  return new Map([...(await linkIndexes(host))].map(([n, i]) => [i, n]));
}

/** The diff between what runs (active generation) and desired, readable. */
export async function planAgainst(dp: FastpathView, desired: FastpathTables, host: Host): Promise<Change[]> {
  const changes: Change[] = [];
  const resize = capacityChanges(dp.capacity, desired.capacity);
  if (resize.length) changes.push({ action: 'restart', object: 'data plane', detail: `map sizes change (${resize.join(', ')}): a new data plane is loaded and swapped in atomically` });
  const running = new Map(dp.ruleCounters().map((r) => [r.name, r]));
  const want = new Set(desired.rules.map((r) => r.name));
  for (const r of desired.rules) {
    const cur = running.get(r.name);
    if (!cur) changes.push({ action: 'add', object: `rule ${r.name}`, detail: `#${r.index} ${r.action}` });
    else if (cur.index !== r.index || cur.action !== r.action) changes.push({ action: 'change', object: `rule ${r.name}`, detail: `#${cur.index} ${cur.action} -> #${r.index} ${r.action}` });
  }
  for (const name of running.keys()) if (!want.has(name)) changes.push({ action: 'remove', object: `rule ${name}` });

  // read once: each read of dp.generation is a map lookup (a syscall), and this loop runs per entry (was 15 s for 1M)
  const gen = dp.generation;
  // a map entry names the rules it allows (by name, not only by bit: "-> rules drop-chargen (#1)")
  const ruleNames = new Map(desired.rules.map((r) => [r.index, r.name]));
  // the classifier variant of large rule sets (crossproduct tables or bit vectors), when it changes
  if (dp.lookups(gen).includes('crossproduct') !== ((desired.genConfig.features & FEAT.crossproduct) !== 0)) changes.push({ action: 'change', object: 'classifier', detail: desired.classifier });
  for (const f of LPM_FIELDS) {
    // one merge of two sorted tables (table.ts): no key strings, no per-entry objects
    const cur = await dp.generationTable(f, gen);
    const want = desired.fields[f];
    const d = await mergeDiff(cur, want, new Slicer(), `plan of map ${f}`);
    // entries, described only when printed (a plan of 100k prefixes prints five of them)
    const of = (t: FlatTable) => (i: number) => {
      const e = lpmEntryAt(f, t, i);
      return describeEntry(f, e.data, e.length, e.bits, ruleNames);
    };
    pushSummarised(changes, 'add', f, d.added, of(want));
    pushSummarised(changes, 'change', f, d.changed, of(want));
    pushSummarised(changes, 'remove', f, d.removed, (i) => {
      const e = lpmEntryAt(f, cur, i);
      return describeEntry(f, e.data, e.length);
    });
  }

  const attached = new Map(dp.interfaces().map((i) => [i.ifindex, i]));
  for (const i of desired.interfaces) {
    let idx: number;
    try {
      idx = await host.ifindex(i.name);
    } catch {
      changes.push({ action: 'add', object: `xdp ${i.name}`, detail: 'interface does not exist yet' });
      continue;
    }
    const cur = attached.get(idx);
    attached.delete(idx);
    if (!cur || !cur.ingress.attached) changes.push({ action: 'add', object: `xdp ${i.name}`, detail: `mode ${i.mode}, default ${i.ingress.defaultPolicy}` });
    else if (cur.ingress.defaultPolicy !== i.ingress.defaultPolicy) changes.push({ action: 'change', object: `default policy ${i.name} ingress`, detail: `${cur.ingress.defaultPolicy} -> ${i.ingress.defaultPolicy}` });
    if (i.egress && !cur?.egress.attached) changes.push({ action: 'add', object: `tc egress ${i.name}`, detail: `default ${i.egressPolicy.defaultPolicy}` });
    if (!i.egress && cur?.egress.attached) changes.push({ action: 'remove', object: `tc egress ${i.name}` });
  }
  for (const cur of attached.values()) if (cur.ingress.attached) changes.push({ action: 'remove', object: `xdp ifindex ${cur.ifindex}` });
  return changes;
}

/** Map sizes that differ between a loaded data plane and a desired one ("prefixes 1024 -> 4096"). */
export function capacityChanges(have: FastpathCapacity, want: FastpathCapacity): string[] {
  return (['prefixes', 'portPrefixes', 'rateLimitSources', 'blocklist'] as const).filter((k) => have[k] !== want[k]).map((k) => `${k} ${have[k]} -> ${want[k]}`);
}

/** "10.0.0.0/8 -> rules web (#0), ssh (#3)", "udp port 19 -> rules drop-chargen (#1)", "tcp port 8000/11 -> ..." (a port prefix) */
function describeEntry(f: LpmField, data: Buffer, length: number, bits?: Buffer, names?: ReadonlyMap<number, string>): string {
  let what: string;
  if (f.endsWith('v4') || f.endsWith('v6')) what = formatPrefix(prefixFromBytes(data.subarray(0, f.endsWith('v4') ? 4 : 16), length));
  else {
    const proto = PROTOCOL_NAMES[data[0]!] ?? `protocol ${data[0]}`;
    what = length === 0 ? 'any protocol' : length === 8 ? `${proto} any port` : `${proto} port ${data.readUInt16BE(1)}${length === 24 ? '' : `/${length - 8}`}`;
  }
  if (!bits) return what;
  // an entry may allow hundreds of rules: the first few by name, then how many more
  const all = bitList(bits);
  const rules = all.slice(0, 8).map((b) => (names?.has(b) ? `${names.get(b)} (#${b})` : `#${b}`));
  return `${what} -> rules ${rules.join(', ') || 'none'}${all.length > 8 ? ` and ${all.length - 8} more` : ''}`;
}

const PROTOCOL_NAMES: Record<number, string> = { 1: 'icmp', 6: 'tcp', 17: 'udp', 47: 'gre', 50: 'esp', 51: 'ah', 58: 'icmpv6', 132: 'sctp' };

function pushSummarised(changes: Change[], action: 'add' | 'remove' | 'change', f: LpmField, list: Uint32Array, describe: (i: number) => string): void {
  if (list.length === 0) return;
  if (list.length <= 20) for (const i of list) changes.push({ action, object: `map ${f} entry`, detail: describe(i) });
  else changes.push({ action, object: `map ${f}`, detail: `${list.length} entries (first: ${[...list.subarray(0, 5)].map(describe).join('; ')})` });
}

function emptyDesired(fastpath: FastpathConfig): FastpathTables {
  return fastpathTables(compileFastpath({ fastpath: { ...fastpath, rules: [], interfaces: [] }, aliases: new Map() }).desired);
}
