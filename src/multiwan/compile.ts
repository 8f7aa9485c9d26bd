/**
 * Multi-WAN compiled (pure): gateways -> routing tables, ip rules and the
 * nftables table `inet patronus_mwan` that picks a gateway per connection.
 *
 * How a connection finds its gateway:
 *   1. prerouting (priority mangle), first packet of a new connection that
 *      matches a policy: jump to the policy's group chain, which sets the
 *      connection's ct mark to one gateway's mark (gateway n: n << 8, mask
 *      0xff00, see src/nft/marks.ts). A group chain holds only the lowest
 *      tier that has a gateway up; several up gateways share new connections
 *      by weight (numgen inc: an exact weighted round robin).
 *   2. every packet of a marked connection: meta mark := ct mark & 0xff00
 *      (sticky: a connection keeps its gateway for life, so failover and
 *      recovery never move an established connection off a working path).
 *   3. ip rules: `lookup main suppress_prefixlength 0` first (connected and
 *      specific routes still win: LAN traffic is never sent to a WAN), then
 *      `fwmark n<<8/0xff00 lookup tableBase+n`, whose only route is the
 *      default via gateway n.
 * Connections that arrive on a gateway's interface are marked for that
 * gateway too, so replies to port forwards leave where the request came in.
 *
 * Health changes only rewrite the group chains (one `nft -f`, atomic); the
 * rules and routes stay. See src/multiwan/monitor.ts.
 */
import type { CompileContext } from '../apply/subsystem.js';
import type { Issue, IssuePath } from '../config/issues.js';
import { resolveNetworkRef } from '../aliases/aliases.js';
import { formatPrefix } from '../net/address.js';
import { GATEWAY_MARK_MASK, gatewayMark, hex } from '../nft/marks.js';
import type { MonitorConfig } from './schema.js';

export const MWAN_FAMILY = 'inet';
export const MWAN_TABLE = 'patronus_mwan';

export interface MwanGateway {
  name: string;
  /** 1-based, list order: mark = id << 8, table = tableBase + id */
  id: number;
  interface: string;
  nextHop: string;
  mark: number;
  table: number;
  monitor: MonitorConfig & { target: string };
  /** worst-case time from a path failing to the gateway counted as down */
  detectionMs: number;
  flushStatesOnDown: boolean;
}

export interface MwanMember {
  gateway: string;
  tier: number;
  weight: number;
}

export interface MwanGroup {
  name: string;
  members: MwanMember[];
}

export interface MwanPolicy {
  name: string;
  group: string;
  /** nft match text (ingress interfaces, addresses), '' = any */
  match: string[];
}

export interface MwanDesired {
  enabled: boolean;
  gateways: MwanGateway[];
  groups: MwanGroup[];
  policies: MwanPolicy[];
  rulePriority: number;
  tableBase: number;
  /** the group that owns the main table's IPv4 default route (protocol DEFAULT_ROUTE_PROTO) */
  defaultRoute?: string;
}

/** rtnetlink protocol of the default route a gateway group owns (static routes use 249, src/routing/routes.ts). */
export const DEFAULT_ROUTE_PROTO = 248;

/** Which gateways are usable right now (by name). */
export type GatewayUp = ReadonlyMap<string, boolean>;

export function compileGateways(ctx: CompileContext): { desired: MwanDesired; issues: Issue[] } {
  const cfg = ctx.config.gateways;
  const issues: Issue[] = [];
  const base: IssuePath = ['gateways'];
  const managed = new Set(ctx.config.interfaces.map((i) => i.name));

  if (cfg.gateways.length > 255) issues.push({ path: [...base, 'gateways'], message: 'at most 255 gateways (the mark has 8 bits)' });
  const seen = new Set<string>();
  const gateways: MwanGateway[] = cfg.gateways.slice(0, 255).map((g, i) => {
    const path = [...base, 'gateways', i];
    if (seen.has(g.name)) issues.push({ path: [...path, 'name'], message: `gateway "${g.name}" is defined twice` });
    seen.add(g.name);
    if (managed.size && !managed.has(g.interface)) issues.push({ path: [...path, 'interface'], message: `interface "${g.interface}" is not in interfaces:` });
    if (g.monitor.method === 'tcp' && g.monitor.port === undefined) issues.push({ path: [...path, 'monitor', 'port'], message: 'method tcp needs a port' });
    if (g.monitor.method === 'icmp' && g.monitor.port !== undefined) issues.push({ path: [...path, 'monitor', 'port'], message: 'a port is only used with method tcp' });
    const id = i + 1;
    return {
      name: g.name,
      id,
      interface: g.interface,
      nextHop: g.nextHop,
      mark: gatewayMark(id),
      table: cfg.tableBase + id,
      monitor: { ...g.monitor, target: g.monitor.target ?? g.nextHop },
      detectionMs: detectionTime(g.monitor),
      flushStatesOnDown: g.flushStatesOnDown,
    };
  });
  const byName = new Map(gateways.map((g) => [g.name, g]));

  const groupNames = new Set<string>();
  const groups: MwanGroup[] = cfg.groups.map((grp, i) => {
    const path = [...base, 'groups', i];
    if (groupNames.has(grp.name)) issues.push({ path: [...path, 'name'], message: `group "${grp.name}" is defined twice` });
    groupNames.add(grp.name);
    const inGroup = new Set<string>();
    grp.members.forEach((m, j) => {
      if (!byName.has(m.gateway)) issues.push({ path: [...path, 'members', j, 'gateway'], message: `unknown gateway "${m.gateway}" (gateways: ${[...byName.keys()].join(', ') || 'none'})` });
      if (inGroup.has(m.gateway)) issues.push({ path: [...path, 'members', j, 'gateway'], message: `gateway "${m.gateway}" is in this group twice` });
      inGroup.add(m.gateway);
    });
    return { name: grp.name, members: grp.members.map((m) => ({ gateway: m.gateway, tier: m.tier, weight: m.weight })) };
  });

  const policies: MwanPolicy[] = cfg.policies.map((p, i) => {
    const path = [...base, 'policies', i];
    if (!groupNames.has(p.group)) issues.push({ path: [...path, 'group'], message: `unknown group "${p.group}"` });
    const match: string[] = [];
    if (p.interfaces.length) match.push(`iifname ${set(p.interfaces.map((x) => `"${x}"`))}`);
    for (const [field, dir] of [['source', 'saddr'], ['destination', 'daddr']] as const) {
      const list = p[field];
      if (!list.length) continue;
      const v4: string[] = [];
      list.forEach((ref, j) => {
        try {
          const r = resolveNetworkRef(ref, ctx.aliases);
          if (r.countries.length) issues.push({ path: [...path, field, j], message: `"${ref}" includes countries; gateway policies match prefixes only` });
          for (const pf of r.prefixes) {
            if (pf.family === 4) v4.push(formatPrefix(pf));
            else issues.push({ path: [...path, field, j], message: `${formatPrefix(pf)}: gateways are IPv4 (next hops are IPv4 addresses)` });
          }
        } catch (e) {
          issues.push({ path: [...path, field, j], message: (e as Error).message });
        }
      });
      if (v4.length) match.push(`ip ${dir} ${set(v4)}`);
    }
    if (!match.length) match.push('meta nfproto ipv4');
    return { name: p.name, group: p.group, match };
  });

  if (cfg.defaultRoute !== undefined) {
    if (!groupNames.has(cfg.defaultRoute)) issues.push({ path: [...base, 'defaultRoute'], message: `unknown group "${cfg.defaultRoute}" (groups: ${[...groupNames].join(', ') || 'none'})` });
    const clash = ctx.config.routing.routes.findIndex((r) => r.prefix.trim() === '0.0.0.0/0' && (r.metric ?? 0) === 0);
    if (clash >= 0) issues.push({ path: [...base, 'defaultRoute'], message: `routing.routes[${clash}] is the IPv4 default route already: one owner (or give that route a metric)` });
  }
  return {
    desired: { enabled: gateways.length > 0, gateways, groups, policies, rulePriority: cfg.rulePriority, tableBase: cfg.tableBase, ...(cfg.defaultRoute !== undefined ? { defaultRoute: cfg.defaultRoute } : {}) },
    issues,
  };
}

/**
 * Worst case from a path failing to the gateway being down: up to one
 * interval until the next probe leaves, the probes it takes to reach the
 * loss threshold (a probe is lost when the next one is sent unanswered), and
 * one interval of margin for scheduling (probers and the control plane share
 * the machine).
 */
export function detectionTime(m: Pick<MonitorConfig, 'intervalMs' | 'window' | 'lossPercent'>): number {
  return (lostProbesToFail(m) + 2) * m.intervalMs;
}

export function lostProbesToFail(m: Pick<MonitorConfig, 'window' | 'lossPercent'>): number {
  return Math.max(1, Math.ceil((m.window * m.lossPercent) / 100));
}

/** The members a group uses now: the lowest tier with a gateway up, its up gateways. */
export function activeMembers(group: MwanGroup, up: GatewayUp): MwanMember[] {
  const tiers = [...new Set(group.members.map((m) => m.tier))].sort((a, b) => a - b);
  for (const t of tiers) {
    const live = group.members.filter((m) => m.tier === t && up.get(m.gateway) !== false);
    if (live.length) return live;
  }
  return [];
}

/** The contents of one group chain for the current health. */
export function groupChainRules(group: MwanGroup, gateways: readonly MwanGateway[], up: GatewayUp): string[] {
  const live = activeMembers(group, up);
  const comment = `comment "patronus:group:${group.name}"`;
  if (!live.length) return [`counter ${comment}`]; // nothing up: no mark, the main table decides
  if (live.length === 1) return [`counter jump gw_${live[0]!.gateway} ${comment}`];
  const total = live.reduce((n, m) => n + m.weight, 0);
  let at = 0;
  const entries = live.map((m) => {
    const from = at;
    at += m.weight;
    return `${from === at - 1 ? from : `${from}-${at - 1}`} : jump gw_${m.gateway}`;
  });
  void gateways;
  return [`counter numgen inc mod ${total} vmap { ${entries.join(', ')} } ${comment}`];
}

/** The whole `inet patronus_mwan` table (ensure, delete, declare: atomic with nft -f). */
export function renderMwanScript(d: MwanDesired, up: GatewayUp): string {
  const head = `# generated by Patronus: replaces only table ${MWAN_FAMILY} ${MWAN_TABLE}\nadd table ${MWAN_FAMILY} ${MWAN_TABLE}\ndelete table ${MWAN_FAMILY} ${MWAN_TABLE}\n`;
  if (!d.enabled) return head;
  const mask = hex(GATEWAY_MARK_MASK);
  const chains: string[] = [];
  for (const g of d.gateways) {
    chains.push(chain(`gw_${g.name}`, [`counter ct mark set ${hex(g.mark)} comment "patronus:gateway:${g.name}"`]));
  }
  for (const grp of d.groups) chains.push(chain(`group_${grp.name}`, groupChainRules(grp, d.gateways, up)));
  const pre: string[] = ['type filter hook prerouting priority mangle; policy accept;'];
  // connections that come in through a gateway leave through it
  for (const g of d.gateways) pre.push(`ct state new iifname "${g.interface}" ct mark set ${hex(g.mark)} comment "patronus:inbound:${g.name}"`);
  for (const p of d.policies) pre.push(`ct state new ct mark & ${mask} == 0 ${p.match.join(' ')} counter jump group_${p.group} comment "patronus:policy:${p.name}"`);
  pre.push(`ct mark & ${mask} != 0 meta mark set ct mark & ${mask}`);
  chains.push(chain('prerouting', pre));
  return `${head}table ${MWAN_FAMILY} ${MWAN_TABLE} {\n${chains.join('\n\n')}\n}\n`;
}

/** Only the group chains, for a health change: flush and refill in one transaction. */
export function renderGroupUpdate(d: MwanDesired, up: GatewayUp): string {
  return d.groups
    .map((g) => `flush chain ${MWAN_FAMILY} ${MWAN_TABLE} group_${g.name}\n${groupChainRules(g, d.gateways, up).map((r) => `add rule ${MWAN_FAMILY} ${MWAN_TABLE} group_${g.name} ${r}\n`).join('')}`)
    .join('');
}

/**
 * `ip route replace` arguments for the main table's default route owned by
 * d.defaultRoute: the group's active members (a weighted multipath route
 * when several share the tier); with none up, every member of its first
 * tier (a route that may work beats none). Undefined: no group owns it.
 */
export function defaultRouteArgs(d: MwanDesired, up: GatewayUp): string[] | undefined {
  const group = d.enabled && d.defaultRoute !== undefined ? d.groups.find((g) => g.name === d.defaultRoute) : undefined;
  if (!group) return undefined;
  let members = activeMembers(group, up);
  if (!members.length) {
    const first = Math.min(...group.members.map((m) => m.tier));
    members = group.members.filter((m) => m.tier === first);
  }
  const gws = members.map((m) => ({ m, g: d.gateways.find((g) => g.name === m.gateway)! })).filter((x) => x.g);
  const head = ['-4', 'route', 'replace', 'default', 'proto', String(DEFAULT_ROUTE_PROTO)];
  if (gws.length === 1) return [...head, 'via', gws[0]!.g.nextHop, 'dev', gws[0]!.g.interface];
  return [...head, ...gws.flatMap(({ m, g }) => ['nexthop', 'via', g.nextHop, 'dev', g.interface, 'weight', String(m.weight)])];
}

/** ip rules wanted, as `ip rule add` arguments (after "add"), keyed by preference. */
export function wantedRules(d: MwanDesired, addresses: ReadonlyMap<string, string[]>): { pref: number; args: string[] }[] {
  if (!d.enabled) return [];
  const out = [{ pref: d.rulePriority, args: ['lookup', 'main', 'suppress_prefixlength', '0'] }];
  for (const g of d.gateways) {
    out.push({ pref: d.rulePriority + g.id, args: ['fwmark', `${hex(g.mark)}/${hex(GATEWAY_MARK_MASK)}`, 'lookup', String(g.table)] });
  }
  // the gateway's own traffic sourced from a WAN address (TCP probes, services bound to it) leaves by that WAN
  for (const g of d.gateways) {
    const addrs = addresses.get(g.interface) ?? [];
    addrs.forEach((a, k) => out.push({ pref: d.rulePriority + 256 + g.id * 4 + Math.min(k, 3), args: ['from', a, 'lookup', String(g.table)] }));
  }
  return out;
}

function chain(name: string, lines: string[]): string {
  return `\tchain ${name} {\n${lines.map((l) => `\t\t${l}\n`).join('')}\t}`;
}

function set(items: string[]): string {
  return items.length === 1 ? items[0]! : `{ ${items.join(', ')} }`;
}
