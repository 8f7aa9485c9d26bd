/**
 * routing: section -> the FRR instance model (pure). Everything FRR would
 * reject later for reasons its dry run (`vtysh -C`) cannot see — unknown
 * references, mixed address families, host bits in prefixes, an interface in
 * two areas — is reported here, with document paths, before anything runs.
 */
import { parsePrefix, formatPrefix, hasHostBits, type Prefix, familyOf } from '../../net/address.js';
import type { Issue, IssuePath } from '../../config/issues.js';
import type { FrrConfig } from './schema.js';

export type FrrDaemon = 'zebra' | 'staticd' | 'ospfd' | 'bgpd';

export interface FrrModel {
  /** daemons this instance runs, zebra first */
  daemons: FrrDaemon[];
  /** extra modules per daemon (bgpd: rpki) */
  modules: Partial<Record<FrrDaemon, string[]>>;
  /** the section with prefixes canonical and area ids dotted */
  config: FrrConfig;
  /** prefix-list name -> address family (decides `ip` vs `ipv6 prefix-list`) */
  prefixListFamily: Record<string, 4 | 6>;
  /** zebra's `ip/ipv6 forwarding`: must agree with the kernel settings src/routing/ applies */
  forwarding: { ipv4: boolean; ipv6: boolean };
}

const BASE: IssuePath = ['routing'];

export function compileFrr(section: FrrConfig, forwarding?: { ipv4: boolean; ipv6: boolean }): { model: FrrModel | null; issues: Issue[] } {
  const issues: Issue[] = [];
  const at = (path: (string | number)[], message: string) => issues.push({ path: [...BASE, ...path], message });
  const config: FrrConfig = structuredClone(section);

  const canonical = (text: string, path: (string | number)[]): Prefix | undefined => {
    let p: Prefix;
    try {
      p = parsePrefix(text);
    } catch (e) {
      at(path, (e as Error).message);
      return undefined;
    }
    if (!text.includes('/')) {
      at(path, `"${text}" needs a prefix length (e.g. ${text}/${p.family === 4 ? 32 : 128})`);
      return undefined;
    }
    if (formatPrefix(p) !== text.trim()) {
      const [addr] = text.split('/');
      // "2001:DB8::/32" and "2001:db8::/32" are the same prefix: compare canonical forms only for host bits
      if (hasHostBits(addr!, p)) {
        at(path, `"${text}" has host bits set; did you mean ${formatPrefix(p)}?`);
        return undefined;
      }
    }
    return p;
  };

  // static routes
  config.static.forEach((r, i) => {
    const p = canonical(r.prefix, ['static', i, 'prefix']);
    if (!p) return;
    r.prefix = formatPrefix(p);
    const targets = [r.via !== undefined || r.interface !== undefined, r.blackhole].filter(Boolean).length;
    if (targets !== 1) at(['static', i], 'give a next hop (via and/or interface) or blackhole: true, not both and not neither');
    if (r.via !== undefined && familyOf(r.via) !== p.family) at(['static', i, 'via'], `next hop ${r.via} is not in the family of ${r.prefix}`);
  });

  // prefix-lists: one family each; ge/le consistent with the prefix
  const prefixListFamily: Record<string, 4 | 6> = {};
  const plNames = new Set<string>();
  config.prefixLists.forEach((pl, i) => {
    if (plNames.has(pl.name)) at(['prefixLists', i, 'name'], `prefix-list "${pl.name}" is defined twice`);
    plNames.add(pl.name);
    const seqs = new Set<number>();
    pl.entries.forEach((e, j) => {
      e.seq ??= 5 * (j + 1);
      if (seqs.has(e.seq)) at(['prefixLists', i, 'entries', j, 'seq'], `sequence ${e.seq} is used twice in prefix-list "${pl.name}"`);
      seqs.add(e.seq);
      const p = canonical(e.prefix, ['prefixLists', i, 'entries', j, 'prefix']);
      if (!p) return;
      e.prefix = formatPrefix(p);
      const fam = prefixListFamily[pl.name];
      if (fam && fam !== p.family) at(['prefixLists', i, 'entries', j, 'prefix'], `prefix-list "${pl.name}" mixes IPv4 and IPv6 entries (use one list per family)`);
      prefixListFamily[pl.name] ??= p.family;
      const max = p.family === 4 ? 32 : 128;
      if (e.ge !== undefined && (e.ge <= p.length || e.ge > max)) at(['prefixLists', i, 'entries', j, 'ge'], `ge ${e.ge} must be longer than /${p.length} and at most ${max}`);
      if (e.le !== undefined && (e.le < (e.ge ?? p.length + 1) || e.le > max || e.le <= p.length)) {
        at(['prefixLists', i, 'entries', j, 'le'], `le ${e.le} must be longer than /${p.length}, at least ge, and at most ${max}`);
      }
    });
  });

  const rmNames = new Set<string>();
  config.routeMaps.forEach((rm, i) => {
    if (rmNames.has(rm.name)) at(['routeMaps', i, 'name'], `route-map "${rm.name}" is defined twice`);
    rmNames.add(rm.name);
    const seqs = new Set<number>();
    rm.entries.forEach((e, j) => {
      if (seqs.has(e.seq)) at(['routeMaps', i, 'entries', j, 'seq'], `sequence ${e.seq} is used twice in route-map "${rm.name}"`);
      seqs.add(e.seq);
      if (e.match.prefixList !== undefined && !plNames.has(e.match.prefixList)) {
        at(['routeMaps', i, 'entries', j, 'match', 'prefixList'], `no prefix-list named "${e.match.prefixList}" (routing.prefixLists)`);
      }
    });
  });

  // OSPF
  const ospf = config.ospf;
  if (ospf) {
    const seenIf = new Map<string, string>();
    const seenArea = new Set<string>();
    ospf.areas.forEach((a, i) => {
      const id = typeof a.id === 'number' ? dotted(a.id) : a.id;
      a.id = id;
      if (seenArea.has(id)) at(['ospf', 'areas', i, 'id'], `area ${id} is listed twice`);
      seenArea.add(id);
      if (id === '0.0.0.0' && a.type !== 'normal') at(['ospf', 'areas', i, 'type'], 'the backbone area (0.0.0.0) cannot be stub or nssa');
      if (a.noSummary && a.type === 'normal') at(['ospf', 'areas', i, 'noSummary'], 'noSummary applies to stub and nssa areas only');
      a.interfaces.forEach((itf, j) => {
        const other = seenIf.get(itf.name);
        if (other !== undefined) at(['ospf', 'areas', i, 'interfaces', j, 'name'], `interface ${itf.name} is already in area ${other} (an interface belongs to one area)`);
        seenIf.set(itf.name, id);
        if (itf.deadInterval <= itf.helloInterval) at(['ospf', 'areas', i, 'interfaces', j, 'deadInterval'], `deadInterval (${itf.deadInterval}) must exceed helloInterval (${itf.helloInterval})`);
      });
    });
    const t = ospf.spfTimers;
    if (t.maxHoldMs < t.holdMs) at(['ospf', 'spfTimers', 'maxHoldMs'], `maxHoldMs (${t.maxHoldMs}) must be at least holdMs (${t.holdMs})`);
    if (ospf.redistribute.includes('bgp') && !config.bgp) at(['ospf', 'redistribute'], 'redistributes bgp but routing.bgp is not configured');
  }

  // BGP
  const bgp = config.bgp;
  if (bgp) {
    const seen = new Set<string>();
    bgp.neighbors.forEach((n, i) => {
      const key = n.address.toLowerCase();
      if (seen.has(key)) at(['bgp', 'neighbors', i, 'address'], `neighbor ${n.address} is listed twice`);
      seen.add(key);
      if ((n.keepalive === undefined) !== (n.hold === undefined)) at(['bgp', 'neighbors', i], 'keepalive and hold are set together');
      if (n.hold !== undefined && n.hold !== 0 && n.hold < 3) at(['bgp', 'neighbors', i, 'hold'], 'hold time must be 0 or 3-65535 seconds');
      if (n.hold !== undefined && n.keepalive !== undefined && n.hold !== 0 && n.keepalive > n.hold) at(['bgp', 'neighbors', i, 'keepalive'], `keepalive (${n.keepalive}) must not exceed hold (${n.hold})`);
      const fam = familyOf(n.address);
      for (const dir of ['prefixListIn', 'prefixListOut'] as const) {
        const name = n[dir];
        if (name === undefined) continue;
        if (!plNames.has(name)) at(['bgp', 'neighbors', i, dir], `no prefix-list named "${name}" (routing.prefixLists)`);
        else if (prefixListFamily[name] !== undefined && prefixListFamily[name] !== fam) at(['bgp', 'neighbors', i, dir], `prefix-list "${name}" is IPv${prefixListFamily[name]} but neighbor ${n.address} is IPv${fam}`);
      }
      for (const dir of ['routeMapIn', 'routeMapOut'] as const) {
        const name = n[dir];
        if (name !== undefined && !rmNames.has(name)) at(['bgp', 'neighbors', i, dir], `no route-map named "${name}" (routing.routeMaps)`);
      }
    });
    bgp.networks = bgp.networks.map((text, i) => {
      const p = canonical(text, ['bgp', 'networks', i]);
      return p ? formatPrefix(p) : text;
    });
    if (bgp.redistribute.includes('ospf') && !ospf) at(['bgp', 'redistribute'], 'redistributes ospf but routing.ospf is not configured');
  }

  if (issues.length) return { model: null, issues };
  if (!config.enabled || (!config.static.length && !ospf && !bgp)) return { model: null, issues };

  const daemons: FrrDaemon[] = ['zebra'];
  if (config.static.length) daemons.push('staticd');
  if (ospf) daemons.push('ospfd');
  if (bgp) daemons.push('bgpd');
  const modules: FrrModel['modules'] = bgp?.rpki ? { bgpd: ['rpki'] } : {};
  const f = section.forwarding;
  const fwd = forwarding ?? { ipv4: (typeof f === 'boolean' ? f : f?.ipv4) ?? true, ipv6: (typeof f === 'boolean' ? f : f?.ipv6) ?? true };
  return { model: { daemons, modules, config, prefixListFamily, forwarding: fwd }, issues };
}

export function dotted(n: number): string {
  return [24, 16, 8, 0].map((s) => (n >>> s) & 0xff).join('.');
}
