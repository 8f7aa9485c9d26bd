/**
 * Multi-WAN subsystem: converges per-gateway routing tables, the ip rules
 * and `table inet patronus_mwan` (src/multiwan/compile.ts), then runs the
 * health monitor (src/multiwan/monitor.ts) whose transitions rewrite the
 * group chains atomically. Teardown stops the monitor and removes exactly
 * what apply made (tables, rules and preferences recorded in the state dir).
 *
 * For the control plane: `multiwanSubsystem.status(host)` gives each
 * gateway's health and each group's active members; `metrics(host)` gives
 * per-gateway up/down (services: "gateway:<name>") and new-connection
 * counters per gateway and policy (rules: "gateway:<name>", "policy:<name>").
 */
import { mkdirSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { defineSubsystem, type Subsystem, type Change, type CompileContext } from '../apply/subsystem.js';
import type { Host } from '../system/host.js';
import type { Issue } from '../config/issues.js';
import { GATEWAY_MARK_MASK, hex } from '../nft/marks.js';
import { withLiveCounters } from '../nft/carry.js';
import { runScript, liveTable, canonicalTable, diffTables, readCounters, expectedTable, driftFindings } from '../nft/subsystem.js';
import {
  compileGateways,
  renderMwanScript,
  renderGroupUpdate,
  wantedRules,
  activeMembers,
  defaultRouteArgs,
  DEFAULT_ROUTE_PROTO,
  MWAN_FAMILY,
  MWAN_TABLE,
  type MwanDesired,
  type GatewayUp,
} from './compile.js';
import { HealthMonitor, type GatewayState, type HealthEvent } from './monitor.js';

export { compileGateways, type MwanDesired } from './compile.js';

interface Running {
  desired: MwanDesired;
  monitor: HealthMonitor;
}

/** what flushStatesOnDown deletes: flows that keep their addresses and would stay pinned to a dead gateway */
const FLUSHED_PROTOCOLS = ['udp', 'icmp'] as const;

/** One monitor per host (namespace): apply replaces it, teardown stops it. */
const running = new Map<string, Running>();
const key = (host: Host) => host.netns ?? '';

/** What apply made, so teardown and the next apply remove exactly that. */
interface Applied {
  tables: number[];
  /** signatures of the ip rules it added (pref|table|fwmark|mask|from|suppress) */
  rules: string[];
}

export interface MultiwanStatus {
  gateways: ReturnType<HealthMonitor['health']>;
  groups: { group: string; active: { gateway: string; tier: number; weight: number }[] }[];
  events: HealthEvent[];
}

export const multiwanSubsystem: Subsystem<MwanDesired> & {
  /** the running monitor for a host (tests, REST) */
  monitor(host: Host): HealthMonitor | undefined;
} = defineSubsystem<MwanDesired, {
  /** the running monitor for a host (tests, REST) */
  monitor(host: Host): HealthMonitor | undefined;
}>({
  name: 'gateways',

  compile(ctx: CompileContext) {
    return compileGateways(ctx);
  },

  /**
   * One step carrying the plan's changes: it converges routes, the marking
   * table, rules and the monitor in one go (not yet split per object). None
   * when nothing differs, the running monitor's settings included.
   */
  async steps(desired, host) {
    const changes = await planGateways(desired, host);
    return changes.length ? [{ changes, run: () => applyGateways(desired, host) }] : [];
  },

  async validate(desired, host) {
    if (!desired.enabled) return [];
    const r = await host.run('nft', ['-c', '-f', '-'], { input: renderMwanScript(desired, new Map()), reject: false });
    const issues: Issue[] = r.exitCode === 0 ? [] : [{ path: ['gateways'], message: `nft rejected the multi-WAN table (${host.where}):\n${r.stderr.trim()}` }];
    for (const [i, g] of desired.gateways.entries()) {
      const l = await host.run('ip', ['-j', 'link', 'show', 'dev', g.interface], { reject: false });
      if (l.exitCode !== 0) issues.push({ path: ['gateways', 'gateways', i, 'interface'], message: `interface ${g.interface} does not exist (${host.where})` });
    }
    if (desired.defaultRoute !== undefined) {
      const other = (await mainDefaults(host)).find((r) => r.protocol !== String(DEFAULT_ROUTE_PROTO) && (r.metric ?? 0) === 0);
      if (other) issues.push({ path: ['gateways', 'defaultRoute'], message: `the main table has a default route that is not this group's (${other.gateway ? `via ${other.gateway}, ` : ''}protocol ${other.protocol ?? 'boot'}) (${host.where}): remove it, or give it a metric, for group "${desired.defaultRoute}" to own the default route` });
    }
    return issues;
  },

  /**
   * Drift: what apply would change now (the marking table against its
   * canonical listing, cached per script; ip rules; each gateway's default
   * route). The gateway monitor lives in the process that applied (the
   * server): not drift for another process's check (a --direct status).
   */
  async drift(desired, host) {
    return (await changesAgainst(desired, host, expectedTable))
      .filter((c) => c.object !== 'gateway monitor')
      .flatMap((c) => (c.object.startsWith('table ') ? driftFindings(c) : [{ object: c.object, reason: `${c.action}${c.detail ? `: ${c.detail}` : ''}` }]));
  },

  async teardown(host) {
    const k = key(host);
    const run = running.get(k);
    if (run) {
      await run.monitor.stop();
      running.delete(k);
    }
    await removeAll(host, run?.desired, readApplied(host));
  },

  async status(host): Promise<MultiwanStatus | { running: false }> {
    const run = running.get(key(host));
    if (!run) return { running: false };
    const up = run.monitor.up();
    return {
      gateways: run.monitor.health(),
      groups: run.desired.groups.map((g) => ({ group: g.name, active: activeMembers(g, up) })),
      events: [...run.monitor.events],
    };
  },

  async metrics(host) {
    const run = running.get(key(host));
    // over netlink (nft -j when that cannot be read); an unreadable table counts nothing, as before
    const counters = await readCounters(host, MWAN_FAMILY, MWAN_TABLE).catch(() => []);
    return {
      rules: counters.map((c) => ({ rule: c.key, action: c.action, packets: c.packets, bytes: c.bytes })),
      services: run ? run.monitor.health().map((h) => ({ service: `gateway:${h.gateway}`, up: h.state === 'up' })) : [],
    };
  },

  monitor(host) {
    return running.get(key(host))?.monitor;
  },
});

async function planGateways(desired: MwanDesired, host: Host): Promise<Change[]> {
  return changesAgainst(desired, host, canonicalTable);
}

async function applyGateways(desired: MwanDesired, host: Host): Promise<void> {
  const k = key(host);
  const previous = running.get(k);
  // keep what is known about gateways whose monitoring did not change
  const initial = new Map<string, GatewayState>();
  if (previous) {
    for (const h of previous.monitor.health()) {
      const before = previous.desired.gateways.find((g) => g.name === h.gateway);
      const now = desired.gateways.find((g) => g.name === h.gateway);
      if (before && now && JSON.stringify(before) === JSON.stringify(now)) initial.set(h.gateway, h.state);
    }
    await previous.monitor.stop();
    running.delete(k);
  }
  const applied = readApplied(host);
  if (!desired.enabled) {
    await removeAll(host, desired, applied);
    return;
  }
  // routes first, so a mark never points at an empty table
  for (const g of desired.gateways) {
    const r = await host.run('ip', ['route', 'replace', 'default', 'via', g.nextHop, 'dev', g.interface, 'table', String(g.table)], { reject: false });
    if (r.exitCode !== 0) throw new Error(`gateway ${g.name}: cannot route via ${g.nextHop} dev ${g.interface} in table ${g.table} (${host.where}): ${r.stderr.trim()}`);
  }
  const up: GatewayUp = new Map(desired.gateways.map((g) => [g.name, initial.get(g.name) !== 'down']));
  await runScript(host, await withLiveCounters(host, renderMwanScript(desired, up), MWAN_FAMILY, MWAN_TABLE), 'apply multi-WAN table');
  const rules = await convergeRules(host, desired, applied);
  await convergeDefaultRoute(host, desired, up);
  // tables no longer used
  for (const t of applied.tables) if (!desired.gateways.some((g) => g.table === t)) await host.run('ip', ['route', 'flush', 'table', String(t)], { reject: false });
  writeApplied(host, { tables: desired.gateways.map((g) => g.table), rules });

  const monitor = new HealthMonitor(
    host,
    desired.gateways,
    async (now, event) => {
      await runScript(host, await withLiveCounters(host, renderGroupUpdate(desired, now), MWAN_FAMILY, MWAN_TABLE), 'update gateway groups');
      await convergeDefaultRoute(host, desired, now);
      const g = desired.gateways.find((x) => x.name === event.gateway);
      if (g && event.state === 'down' && g.flushStatesOnDown) {
        // after the groups changed: the flows' next packets are decided afresh, onto a live gateway.
        // Never TCP: a flushed TCP connection's next packet is new-not-SYN (the firewall drops it) and
        // would leave from another address anyway, so flushing only kills connections that still work
        // when the monitor was wrong (docs/firewall.md, flushStatesOnDown)
        for (const proto of FLUSHED_PROTOCOLS) {
          const r = await host.run('conntrack', ['-D', '-p', proto, '--mark', `${hex(g.mark)}/${hex(GATEWAY_MARK_MASK)}`], { reject: false });
          if (r.exitCode !== 0 && !/0 flow entries/.test(r.stderr)) throw new Error(`gateway ${g.name}: conntrack -D -p ${proto} failed (${host.where}): ${r.stderr.trim()}`);
        }
      }
    },
    initial,
    (line) => {
      if (process.env.PATRONUS_MULTIWAN_LOG === '1') console.log(`# ${new Date().toISOString()} ${line}`);
    },
  );
  running.set(k, { desired, monitor });
  monitor.start();
}

// --- effects ---------------------------------------------------------------

function appliedFile(host: Host): string {
  return join(host.stateDir, 'multiwan', 'applied.json');
}

function readApplied(host: Host): Applied {
  try {
    const a = JSON.parse(readFileSync(appliedFile(host), 'utf8')) as Partial<Applied>;
    return { tables: a.tables ?? [], rules: a.rules ?? [] };
  } catch {
    return { tables: [], rules: [] };
  }
}

function writeApplied(host: Host, a: Applied): void {
  mkdirSync(join(host.stateDir, 'multiwan'), { recursive: true });
  writeFileSync(appliedFile(host), JSON.stringify(a));
}

/** IPv4 addresses of each gateway interface (for the `from ADDR` rules). */
async function addresses(host: Host, d: MwanDesired): Promise<Map<string, string[]>> {
  const out = new Map<string, string[]>();
  for (const g of d.enabled ? d.gateways : []) {
    const r = await host.run('ip', ['-j', '-4', 'addr', 'show', 'dev', g.interface], { reject: false });
    const list = r.exitCode === 0 && r.stdout.trim() ? (JSON.parse(r.stdout) as { addr_info?: { local: string }[] }[]) : [];
    out.set(g.interface, list.flatMap((l) => (l.addr_info ?? []).map((a) => a.local)));
  }
  return out;
}

interface RuleJson {
  priority: number;
  src?: string;
  srclen?: number;
  table?: string;
  fwmark?: string;
  fwmask?: string;
  /** iproute2's JSON spells it so */
  suppress_prefixlen?: number;
}

function sig(pref: number, args: readonly string[]): string {
  const a = new Map<string, string>();
  for (let i = 0; i < args.length; i += 2) a.set(args[i]!, args[i + 1]!);
  const mark = a.get('fwmark');
  const [fwmark, fwmask] = mark ? mark.split('/') : [];
  return [pref, a.get('lookup') ?? '', fwmark ? Number(fwmark) : '', fwmask ? Number(fwmask) : '', a.get('from') ?? 'all', a.get('suppress_prefixlength') ?? ''].join('|');
}

function sigOf(r: RuleJson): string {
  const src = r.src === undefined || r.src === 'all' ? 'all' : r.srclen !== undefined && r.srclen !== 32 ? `${r.src}/${r.srclen}` : r.src;
  return [r.priority, r.table ?? '', r.fwmark ? Number(r.fwmark) : '', r.fwmask ? Number(r.fwmask) : '', src, r.suppress_prefixlen ?? ''].join('|');
}

/** Every IPv4 rule of the host's namespace, by signature (the ones Patronus made are told apart by Applied.rules). */
async function listRules(host: Host): Promise<{ pref: number; sig: string }[]> {
  const r = await host.run('ip', ['-j', '-4', 'rule', 'show'], { reject: false });
  if (r.exitCode !== 0) throw new Error(`ip rule show failed (${host.where}): ${r.stderr.trim()}`);
  return (JSON.parse(r.stdout || '[]') as RuleJson[]).map((x) => ({ pref: x.priority, sig: sigOf(x) }));
}

/** Rules to add and to remove: only rules this subsystem made itself (recorded) are ever removed. */
async function ruleChanges(host: Host, d: MwanDesired | undefined, applied: Applied) {
  const want = d?.enabled ? wantedRules(d, await addresses(host, d)).map((w) => ({ ...w, sig: sig(w.pref, w.args) })) : [];
  const have = await listRules(host);
  const add = want.filter((w) => !have.some((h) => h.sig === w.sig));
  const remove = have.filter((h) => applied.rules.includes(h.sig) && !want.some((w) => w.sig === h.sig));
  return { want, add, remove };
}

async function convergeRules(host: Host, d: MwanDesired, applied: Applied): Promise<string[]> {
  const { want, add, remove } = await ruleChanges(host, d, applied);
  // add first, then remove: traffic is never without its rule
  for (const w of add) await host.run('ip', ['-4', 'rule', 'add', 'pref', String(w.pref), ...w.args]);
  for (const h of remove) await deleteRuleBySig(host, h);
  return want.map((w) => w.sig);
}

async function deleteRuleBySig(host: Host, h: { pref: number; sig: string }): Promise<void> {
  const [, table, fwmark, fwmask, src, suppress] = h.sig.split('|');
  const args = ['-4', 'rule', 'del', 'pref', String(h.pref)];
  if (fwmark) args.push('fwmark', `${hex(Number(fwmark))}/${hex(Number(fwmask || GATEWAY_MARK_MASK))}`);
  if (src && src !== 'all') args.push('from', src);
  if (table) args.push('lookup', table);
  if (suppress) args.push('suppress_prefixlength', suppress);
  const r = await host.run('ip', args, { reject: false });
  if (r.exitCode !== 0 && !/No such file/.test(r.stderr)) throw new Error(`cannot remove ip rule ${h.pref} (${host.where}): ${r.stderr.trim()}`);
}

interface DefaultRouteJson {
  dst: string;
  gateway?: string;
  dev?: string;
  protocol?: string;
  metric?: number;
  nexthops?: { gateway: string; dev: string; weight?: number }[];
}

async function mainDefaults(host: Host): Promise<DefaultRouteJson[]> {
  const r = await host.run('ip', ['-4', '-j', 'route', 'show', 'table', 'main', 'default'], { reject: false });
  if (r.exitCode !== 0) throw new Error(`ip route show default failed (${host.where}): ${r.stderr.trim()}`);
  return JSON.parse(r.stdout || '[]') as DefaultRouteJson[];
}

/** Whether the kernel's route already is what `args` (defaultRouteArgs) would install. */
function sameDefault(have: DefaultRouteJson | undefined, args: string[]): boolean {
  if (!have) return false;
  const hops = have.nexthops?.length ? have.nexthops.map((h) => ['nexthop', 'via', h.gateway, 'dev', h.dev, 'weight', String(h.weight ?? 1)]).flat() : ['via', have.gateway ?? '', 'dev', have.dev ?? ''];
  return hops.join(' ') === args.slice(6).join(' ');
}

/** The group-owned default route (protocol 248) as health says now; removed when no group owns it. */
async function convergeDefaultRoute(host: Host, d: MwanDesired | undefined, up: GatewayUp): Promise<void> {
  const args = d ? defaultRouteArgs(d, up) : undefined;
  const have = (await mainDefaults(host)).find((r) => r.protocol === String(DEFAULT_ROUTE_PROTO));
  if (args) {
    if (sameDefault(have, args)) return;
    const r = await host.run('ip', args, { reject: false });
    if (r.exitCode !== 0) throw new Error(`gateway group ${d!.defaultRoute}: cannot set the default route (${args.slice(6).join(' ')}) (${host.where}): ${r.stderr.trim()}`);
    return;
  }
  if (!have) return;
  const r = await host.run('ip', ['-4', 'route', 'del', 'default', 'proto', String(DEFAULT_ROUTE_PROTO)], { reject: false });
  if (r.exitCode !== 0 && !/No such process/.test(r.stderr)) throw new Error(`cannot remove the group-owned default route (${host.where}): ${r.stderr.trim()}`);
}

async function removeAll(host: Host, d: MwanDesired | undefined, applied: Applied): Promise<void> {
  await convergeDefaultRoute(host, undefined, new Map());
  await runScript(host, `add table ${MWAN_FAMILY} ${MWAN_TABLE}\ndelete table ${MWAN_FAMILY} ${MWAN_TABLE}\n`, 'remove multi-WAN table');
  for (const h of (await ruleChanges(host, undefined, applied)).remove) await deleteRuleBySig(host, h);
  const tables = new Set([...applied.tables, ...(d?.gateways.map((g) => g.table) ?? [])]);
  for (const t of tables) await host.run('ip', ['route', 'flush', 'table', String(t)], { reject: false });
  rmSync(appliedFile(host), { force: true });
}

/** What apply would change, read against the running system; `tableOf` gives the expected table listing of a script. */
async function changesAgainst(desired: MwanDesired, host: Host, tableOf: (script: string, host: Host, family: string, table: string) => Promise<string>): Promise<Change[]> {
  const changes: Change[] = [];
  const current = await liveTable(host, MWAN_FAMILY, MWAN_TABLE);
  const up = running.get(key(host))?.monitor.up() ?? new Map<string, boolean>();
  const wanted = desired.enabled ? await tableOf(renderMwanScript(desired, up), host, MWAN_FAMILY, MWAN_TABLE) : undefined;
  changes.push(...diffTables(current, wanted, `table ${MWAN_FAMILY} ${MWAN_TABLE}`));
  const rules = await ruleChanges(host, desired, readApplied(host));
  for (const w of rules.add) changes.push({ action: 'add', object: `ip rule ${w.pref}`, detail: w.args.join(' ') });
  for (const h of rules.remove) changes.push({ action: 'remove', object: `ip rule ${h.pref}`, detail: h.sig });
  for (const g of desired.enabled ? desired.gateways : []) {
    const r = await host.run('ip', ['-j', 'route', 'show', 'table', String(g.table), 'default'], { reject: false });
    const routes = r.exitCode === 0 && r.stdout.trim() ? (JSON.parse(r.stdout) as { gateway?: string; dev?: string }[]) : [];
    if (!routes.some((x) => x.gateway === g.nextHop && x.dev === g.interface)) changes.push({ action: 'change', object: `route table ${g.table}`, detail: `default via ${g.nextHop} dev ${g.interface} (gateway ${g.name})` });
  }
  const run = running.get(key(host));
  const dr = defaultRouteArgs(desired, run?.monitor.up() ?? new Map<string, boolean>());
  const haveDr = (await mainDefaults(host)).find((r) => r.protocol === String(DEFAULT_ROUTE_PROTO));
  if (dr && !sameDefault(haveDr, dr)) changes.push({ action: haveDr ? 'change' : 'add', object: 'main table default route', detail: `group ${desired.defaultRoute}: ${dr.slice(6).join(' ')}` });
  if (!dr && haveDr) changes.push({ action: 'remove', object: 'main table default route', detail: `protocol ${DEFAULT_ROUTE_PROTO}` });
  const monitoring = () => desired.gateways.map((g) => `${g.name}: ${g.monitor.method} ${g.monitor.target} every ${g.monitor.intervalMs} ms, detection <= ${g.detectionMs} ms`).join('; ');
  if (desired.enabled && !run) changes.push({ action: 'start', object: 'gateway monitor', detail: monitoring() });
  // apply starts a monitor of the new settings (its health kept for gateways whose settings did not change)
  if (desired.enabled && run && JSON.stringify(run.desired) !== JSON.stringify(desired)) changes.push({ action: 'restart', object: 'gateway monitor', detail: monitoring() });
  if (!desired.enabled && run) changes.push({ action: 'stop', object: 'gateway monitor' });
  return changes;
}
