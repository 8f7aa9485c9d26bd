/**
 * Static routes in the kernel, no routing daemon (`routing.routes`).
 *
 * Every route Patronus installs carries routing protocol 249 ("patronus"),
 * and only routes with that protocol are ever replaced or removed, so a
 * route added by the host, DHCP, FRR (zebra reads these as "kernel"
 * routes) or an operator is never touched. A wanted route whose prefix and
 * metric are already taken by someone else's route is a validation error
 * rather than a silent replacement.
 *
 * Gateways are checked before anything changes: a `via` must lie on a
 * network connected to the gateway (present now, or an address the same
 * document puts on an interface), on the named interface when one is given.
 */
import { defineSubsystem, type Change, type CompileContext, type Subsystem } from '../apply/subsystem.js';
import type { Host } from '../system/host.js';
import type { Issue, IssuePath } from '../config/issues.js';
import { contains, parsePrefix, formatPrefix, hasHostBits, type Prefix, familyOf } from '../net/address.js';

/** rtnetlink protocol number of Patronus' static routes (RTPROT_* above 200 are free for local use). */
export const ROUTE_PROTO = 249;

export interface RouteSpec {
  family: 4 | 6;
  /** canonical prefix, e.g. 0.0.0.0/0, 10.0.0.0/8, 2001:db8::/32 */
  dst: string;
  type: 'unicast' | 'blackhole';
  via?: string;
  dev?: string;
  /** kernel metric: IPv4 default 0, IPv6 default 1024 */
  metric: number;
  path: IssuePath;
}

export interface RoutesDesired {
  routes: RouteSpec[];
  /** networks the document puts on interfaces (gateway reachability before they exist) */
  connected: { dev: string; prefix: string }[];
}

export function compileRoutes(ctx: Pick<CompileContext, 'config'>): { desired: RoutesDesired; issues: Issue[] } {
  const issues: Issue[] = [];
  const routes: RouteSpec[] = [];
  const seen = new Map<string, number>();
  ctx.config.routing.routes.forEach((r, i) => {
    const path: IssuePath = ['routing', 'routes', i];
    let p: Prefix;
    try {
      p = parsePrefix(r.prefix);
    } catch (e) {
      issues.push({ path: [...path, 'prefix'], message: (e as Error).message });
      return;
    }
    if (!r.prefix.includes('/')) {
      issues.push({ path: [...path, 'prefix'], message: `"${r.prefix}" needs a prefix length (e.g. ${r.prefix}/${p.family === 4 ? 32 : 128})` });
      return;
    }
    const dst = formatPrefix(p);
    if (hasHostBits(r.prefix.split('/')[0]!, p)) {
      issues.push({ path: [...path, 'prefix'], message: `"${r.prefix}" has host bits set; did you mean ${dst}?` });
      return;
    }
    const targets = [r.via !== undefined || r.interface !== undefined, r.blackhole].filter(Boolean).length;
    if (targets !== 1) issues.push({ path, message: 'give a gateway (via and/or interface) or blackhole: true, not both and not neither' });
    if (r.via !== undefined && familyOf(r.via) !== p.family) issues.push({ path: [...path, 'via'], message: `gateway ${r.via} is not in the family of ${dst}` });
    if (r.via !== undefined && p.family === 6 && /^fe80:/i.test(r.via) && !r.interface) issues.push({ path: [...path, 'interface'], message: `a link-local gateway (${r.via}) needs an interface` });
    const metric = r.metric ?? (p.family === 4 ? 0 : 1024);
    const key = `${dst}|${metric}`;
    if (seen.has(key)) issues.push({ path: [...path, 'prefix'], message: `${dst} metric ${metric} is already routing.routes[${seen.get(key)}] (give another metric for a backup route)` });
    seen.set(key, i);
    routes.push({
      family: p.family,
      dst,
      type: r.blackhole ? 'blackhole' : 'unicast',
      ...(r.via !== undefined ? { via: r.via.toLowerCase() } : {}),
      ...(r.interface !== undefined ? { dev: r.interface } : {}),
      metric,
      path,
    });
  });
  const connected = ctx.config.interfaces.flatMap((i) => (i.addresses ?? []).map((a) => ({ dev: i.name, prefix: a })));
  return { desired: { routes, connected }, issues };
}

export const routesSubsystem: Subsystem<RoutesDesired> = defineSubsystem<RoutesDesired>({
  name: 'routes',

  compile(ctx) {
    return compileRoutes(ctx);
  },

  /** One step carrying the plan's changes (not yet split into a step per route). */
  async steps(desired, host) {
    return [{ changes: await planRoutes(desired, host), run: () => applyRoutes(desired, host) }];
  },

  async validate(desired, host) {
    if (!desired.routes.length) return [];
    const issues: Issue[] = [];
    const links = await readAddresses(host);
    const connected = [...desired.connected, ...links.flatMap((l) => l.prefixes.map((prefix) => ({ dev: l.dev, prefix })))];
    const all = await readRoutes(host, false);
    for (const r of desired.routes) {
      if (r.dev && !links.some((l) => l.dev === r.dev) && !desired.connected.some((c) => c.dev === r.dev)) {
        issues.push({ path: [...r.path, 'interface'], message: `interface "${r.dev}" does not exist (${host.where})` });
        continue;
      }
      if (r.via && !/^fe80:/.test(r.via)) {
        const on = connected.filter((c) => (!r.dev || c.dev === r.dev) && contains(c.prefix, r.via!));
        if (!on.length) {
          issues.push({
            path: [...r.path, 'via'],
            message: `gateway ${r.via} is unreachable: it is on no network connected to ${r.dev ? `interface ${r.dev}` : 'any interface'} (${host.where}); a gateway must be on a directly connected network`,
          });
        }
      }
      const taken = all.find((o) => o.family === r.family && o.dst === r.dst && o.metric === r.metric && o.proto !== String(ROUTE_PROTO));
      if (taken) {
        issues.push({ path: [...r.path, 'prefix'], message: `a route to ${r.dst} with metric ${r.metric} already exists and is not Patronus' (protocol ${taken.proto}) (${host.where}): give this one another metric` });
      }
    }
    return issues;
  },

  async teardown(host) {
    await applyRoutes({ routes: [], connected: [] }, host);
  },

  /** Drift: what apply would change now (Patronus' routes read back; cheap reads only). */
  async drift(desired, host) {
    return (await steps(desired, host)).map((s) => ({ object: s.change.object, reason: `${s.change.action}${s.change.detail ? `: ${s.change.detail}` : ''}` }));
  },

  async status(host) {
    return { routes: (await readRoutes(host, true)).map((r) => describe(r)) };
  },
});

async function planRoutes(desired: RoutesDesired, host: Host): Promise<Change[]> {
  return (await steps(desired, host)).map((s) => s.change);
}

async function applyRoutes(desired: RoutesDesired, host: Host): Promise<void> {
  for (const s of await steps(desired, host)) {
    const r = await host.run('ip', s.args, { reject: false });
    if (r.exitCode !== 0 && !(s.change.action === 'remove' && /No such process/.test(r.stderr))) {
      throw new Error(`routes: ${s.change.action} ${s.change.object} (${host.where}): ${r.stderr.trim()}`);
    }
  }
}

// --- internals

interface Observed {
  family: 4 | 6;
  dst: string;
  type: 'unicast' | 'blackhole' | string;
  via?: string;
  dev?: string;
  metric: number;
  proto: string;
}

interface Step {
  change: Change;
  args: string[];
}

async function steps(desired: RoutesDesired, host: Host): Promise<Step[]> {
  const have = await readRoutes(host, true);
  const out: Step[] = [];
  const key = (r: { family: number; dst: string; metric: number }) => `${r.family}|${r.dst}|${r.metric}`;
  const haveByKey = new Map(have.map((h) => [key(h), h]));
  for (const r of desired.routes) {
    const h = haveByKey.get(key(r));
    if (h && h.type === r.type && h.via === r.via && (r.dev === undefined || h.dev === r.dev)) continue;
    out.push({
      change: { action: h ? 'change' : 'add', object: `route ${r.dst}${r.metric !== (r.family === 4 ? 0 : 1024) ? ` metric ${r.metric}` : ''}`, detail: h ? `${describe(h)} -> ${describe(r)}` : describe(r) },
      args: [`-${r.family}`, 'route', 'replace', ...(r.type === 'blackhole' ? ['blackhole'] : []), r.dst, ...(r.via ? ['via', r.via] : []), ...(r.dev ? ['dev', r.dev] : []), 'metric', String(r.metric), 'proto', String(ROUTE_PROTO)],
    });
  }
  const want = new Set(desired.routes.map(key));
  for (const h of have) {
    if (want.has(key(h))) continue;
    out.push({
      change: { action: 'remove', object: `route ${h.dst}${h.metric !== (h.family === 4 ? 0 : 1024) ? ` metric ${h.metric}` : ''}`, detail: describe(h) },
      args: [`-${h.family}`, 'route', 'del', ...(h.type === 'blackhole' ? ['blackhole'] : []), h.dst, 'metric', String(h.metric), 'proto', String(ROUTE_PROTO)],
    });
  }
  return out;
}

function describe(r: { type: string; via?: string; dev?: string; metric: number; dst: string }): string {
  return [r.type === 'unicast' ? '' : r.type, r.dst, r.via ? `via ${r.via}` : '', r.dev ? `dev ${r.dev}` : '', `metric ${r.metric}`].filter(Boolean).join(' ');
}

interface RouteJson {
  type?: string;
  dst: string;
  gateway?: string;
  dev?: string;
  metric?: number;
  protocol?: string;
}

/** Routes of the main table, both families (only Patronus' with `mine`). */
async function readRoutes(host: Host, mine: boolean): Promise<Observed[]> {
  const out: Observed[] = [];
  for (const family of [4, 6] as const) {
    const r = await host.run('ip', [`-${family}`, '-j', 'route', 'show', 'table', 'main', ...(mine ? ['proto', String(ROUTE_PROTO)] : [])], { reject: false });
    if (r.exitCode !== 0) throw new Error(`routes: ip -${family} route show failed (${host.where}): ${r.stderr.trim()}`);
    for (const j of JSON.parse(r.stdout || '[]') as RouteJson[]) {
      out.push({
        family,
        dst: canonicalDst(j.dst, family),
        type: j.type ?? 'unicast',
        ...(j.gateway ? { via: j.gateway.toLowerCase() } : {}),
        ...(j.dev ? { dev: j.dev } : {}),
        metric: j.metric ?? 0,
        proto: mine ? String(ROUTE_PROTO) : (j.protocol ?? 'boot'),
      });
    }
  }
  return out;
}

function canonicalDst(dst: string, family: 4 | 6): string {
  if (dst === 'default') return family === 4 ? '0.0.0.0/0' : '::/0';
  return formatPrefix(parsePrefix(dst.includes('/') ? dst : `${dst}/${family === 4 ? 32 : 128}`));
}

async function readAddresses(host: Host): Promise<{ dev: string; prefixes: string[] }[]> {
  const r = await host.run('ip', ['-j', 'addr', 'show']);
  return (JSON.parse(r.stdout) as { ifname: string; addr_info?: { local: string; prefixlen: number }[] }[]).map((l) => ({
    dev: l.ifname,
    prefixes: (l.addr_info ?? []).map((a) => `${a.local}/${a.prefixlen}`),
  }));
}

