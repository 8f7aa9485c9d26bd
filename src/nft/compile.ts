/**
 * The `firewall:` section -> one nftables script (pure).
 *
 * Patronus owns exactly one table here, `table inet patronus` (filter and
 * NAT, IPv4 and IPv6). The script first makes sure the table exists, deletes
 * it, then declares it in full; `nft -f` runs the whole file as one kernel
 * transaction, so the old rule set is replaced atomically and a script that
 * fails anywhere changes nothing. No other table is named, so the host's own
 * rules (and other Patronus subsystems' tables, e.g. `inet patronus_mwan`)
 * are never touched.
 *
 * Every rule carries a comment `patronus:<kind>:<name>[:<part>]`; counters
 * read back with `nft -j` are mapped to configuration objects through it
 * (see counterKey, and the reader in src/nft/subsystem.ts).
 *
 * Layout of the table:
 *   sets      zone_<zone> (interface names), managed (every managed
 *             interface), a_<alias>_v4 / a_<alias>_v6 (interval sets of
 *             prefixes), p_<alias> (port intervals)
 *   input     (filter hook input)        traffic to the gateway itself
 *   forward   (filter hook forward)      traffic through the gateway
 *   prerouting  (nat hook prerouting)    port forwards, 1:1 inbound, hairpin
 *   postrouting (nat hook postrouting)   hairpin masquerade, 1:1 outbound, outbound NAT
 *
 * Interfaces not listed in `interfaces:` are accepted by Patronus' chains at
 * once, i.e. left to whatever else the host runs.
 */
import type { CompileContext, ServiceOpening } from '../apply/subsystem.js';
import type { Issue, IssuePath } from '../config/issues.js';
import { append, resolveNetworkRef, resolvePortRef, type PortRange } from '../aliases/aliases.js';
import { familyOf, formatPrefix, hasHostBits, minimalPrefixes, parsePrefix, type Family, type Prefix } from '../net/address.js';
import { HAIRPIN_MARK, hex } from './marks.js';
import { nameElements, portElements, prefixElements, type SetElements } from './elements.js';
import type { FirewallConfig, RuleConfig, Verdict } from './schema.js';

export const NFT_FAMILY = 'inet';
export const NFT_TABLE = 'patronus';
export const COMMENT_PREFIX = 'patronus:';

/** What a rule's counters belong to. */
export type CounterKind = 'builtin' | 'rule' | 'policy' | 'opening' | 'pf' | 'snat' | '1to1' | 'npt';

/** One configuration object whose nftables rules carry `patronus:<kind>:<name>...` comments. */
export interface CounterSource {
  /** "<kind>:<name>" (e.g. "rule:allow-web", "pf:web", "policy:input:wan", "builtin:forward-invalid") */
  key: string;
  kind: CounterKind;
  name: string;
  /** where it is in the document (absent for built-ins) */
  path?: IssuePath;
}

export interface NftDesired {
  enabled: boolean;
  family: typeof NFT_FAMILY;
  table: typeof NFT_TABLE;
  /**
   * the full script for `nft -f`: ensure, delete, declare (or only delete
   * when disabled); the named sets' elements come last, one `add element`
   * line per set, in the same transaction
   */
  script: string;
  /** the script without the named sets' elements (script starts with it): what plan and drift have nft canonicalise */
  skeleton: string;
  /** every named set's elements, compared over netlink (src/nft/elements.ts), never listed by nft */
  sets: SetElements[];
  /** every counter source the script has, in script order */
  counters: CounterSource[];
}

/** `patronus:<kind>:<name>` -> "<kind>:<name>" (drops the prefix and any `:part` suffix of a multi-rule object). */
export function counterKey(comment: string): string | undefined {
  if (!comment.startsWith(COMMENT_PREFIX)) return undefined;
  const rest = comment.slice(COMMENT_PREFIX.length);
  const hash = rest.indexOf('#');
  return hash < 0 ? rest : rest.slice(0, hash);
}

export function compileFirewall(ctx: CompileContext): { desired: NftDesired; issues: Issue[] } {
  return new Compiler(ctx).run();
}

// -------------------------------------------------------------------------

/** A resolved address match: undefined = any; otherwise per-family expressions. */
interface AddrMatch {
  v4?: string;
  v6?: string;
}

const BASE: IssuePath = ['firewall'];

class Compiler {
  private readonly issues: Issue[] = [];
  private readonly counters: CounterSource[] = [];
  /** named interval sets by name: declaration (no elements), elements as nft text and as numbers */
  private readonly sets = new Map<string, { decl: string; text: string[]; elements: SetElements }>();
  private readonly fw: FirewallConfig;
  private readonly zones = new Map<string, string[]>();
  private readonly managed: string[];
  private npt: { name: string; iface: string; internal: string; external: string }[] = [];

  constructor(private readonly ctx: CompileContext) {
    this.fw = ctx.config.firewall;
    for (const i of ctx.config.interfaces) {
      const list = this.zones.get(i.zone) ?? [];
      list.push(i.name);
      this.zones.set(i.zone, list);
    }
    this.managed = ctx.config.interfaces.map((i) => i.name);
  }

  run(): { desired: NftDesired; issues: Issue[] } {
    const head = `# generated by Patronus: replaces only table ${NFT_FAMILY} ${NFT_TABLE}\nadd table ${NFT_FAMILY} ${NFT_TABLE}\ndelete table ${NFT_FAMILY} ${NFT_TABLE}\n`;
    if (!this.fw.enabled) {
      return { desired: { enabled: false, family: NFT_FAMILY, table: NFT_TABLE, script: head, skeleton: head, sets: [], counters: [] }, issues: [] };
    }
    this.checkNames();
    this.checkZones();
    this.npt = this.nptMaps();

    const input = this.inputChain();
    const forward = this.forwardChain();
    const prerouting = this.preroutingChain();
    const postrouting = this.postroutingChain();

    const sets: string[] = [];
    const setElements: SetElements[] = [];
    const elementLines: string[] = [];
    const ifnameSet = (name: string, ifs: string[]) => {
      sets.push(`\tset ${name} {\n\t\ttype ifname\n\t}`);
      setElements.push(nameElements(name, ifs));
      if (ifs.length) elementLines.push(addElements(name, ifs.map(q)));
    };
    ifnameSet('managed', this.managed);
    for (const [zone, ifs] of [...this.zones].sort(([a], [b]) => a.localeCompare(b))) ifnameSet(`zone_${zone}`, ifs);
    for (const s of this.sets.values()) {
      sets.push(s.decl);
      setElements.push(s.elements);
      if (s.text.length) elementLines.push(addElements(s.elements.name, s.text));
    }

    const chain = (name: string, hook: string, lines: string[]) =>
      `\tchain ${name} {\n\t\t${hook}\n${lines.map((l) => `\t\t${l}\n`).join('')}\t}`;
    const body = [
      ...sets,
      chain('input', 'type filter hook input priority filter; policy accept;', input),
      chain('forward', 'type filter hook forward priority filter; policy accept;', forward),
      chain('prerouting', 'type nat hook prerouting priority dstnat; policy accept;', prerouting),
      chain('postrouting', 'type nat hook postrouting priority srcnat; policy accept;', postrouting),
    ].join('\n\n');
    const skeleton = `${head}table ${NFT_FAMILY} ${NFT_TABLE} {\n${body}\n}\n`;
    const script = skeleton + elementLines.join('');
    // a field used by two chains (port forward source) reports once
    const seen = new Set<string>();
    const issues = this.issues.filter((i) => {
      const k = `${i.path.join('\u0000')}\u0001${i.message}`;
      return seen.has(k) ? false : (seen.add(k), true);
    });
    return { desired: { enabled: true, family: NFT_FAMILY, table: NFT_TABLE, script, skeleton, sets: setElements, counters: this.counters }, issues };
  }

  // --- chains -------------------------------------------------------------

  private inputChain(): string[] {
    const out: string[] = ['iifname != @managed accept'];
    out.push(...this.statefulHead('input'));
    // IPv6 neighbour discovery is not tracked by conntrack; without it nothing IPv6 works
    out.push(`icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit, nd-router-advert } ${this.count('builtin', 'input-nd')}accept ${this.comment('builtin', 'input-nd')}`);
    this.ctx.openings.forEach((o) => out.push(...this.opening(o)));
    this.fw.rules.forEach((r, i) => {
      if (r.enabled && r.direction === 'input') out.push(...this.rule(r, [...BASE, 'rules', i]));
    });
    out.push(...this.zonePolicies('input'));
    return out;
  }

  private forwardChain(): string[] {
    const out: string[] = ['iifname != @managed accept'];
    out.push(...this.statefulHead('forward'));
    // port forwards carry their own filter rule: the DNAT alone would be dropped by a default-deny zone
    this.fw.portForwards.forEach((pf, i) => {
      const path = [...BASE, 'portForwards', i];
      const l4 = l4match(pf.protocol);
      const tport = pf.targetPort ?? firstPort(pf.port);
      const tports = typeof pf.port === 'string' ? `${tport}-${tport + portSpan(pf.port)}` : String(tport);
      const fam = familyOf(pf.target);
      const ip = fam === 4 ? 'ip' : 'ip6';
      const src = this.addrList(pf.source, [...path, 'source']);
      const srcFam = fam === 4 ? src?.v4 : src?.v6;
      if (src && !srcFam) this.issue([...path, 'source'], `this port forward is IPv${fam} (its target): source needs at least one IPv${fam} prefix`);
      if (pf.destination && familyOf(pf.destination) !== fam) this.issue([...path, 'destination'], `destination ${pf.destination} and target ${pf.target} are not of one family`);
      const s = srcFam ? `${ip} saddr ${srcFam} ` : '';
      this.add('pf', pf.name, path);
      out.push(`iifname ${q(pf.interface)} ${s}${ip} daddr ${pf.target} ${l4} th dport ${tports} ct status dnat ${this.log(pf.log, 'pf', pf.name, 'accept')}counter accept ${this.comment('pf', pf.name, 'filter')}`);
      if (pf.hairpin) {
        out.push(`meta mark & ${hex(HAIRPIN_MARK)} == ${hex(HAIRPIN_MARK)} ${ip} daddr ${pf.target} ${l4} th dport ${tports} ct status dnat counter accept ${this.comment('pf', pf.name, 'hairpin-filter')}`);
      }
    });
    this.fw.rules.forEach((r, i) => {
      if (r.enabled && r.direction === 'forward') out.push(...this.rule(r, [...BASE, 'rules', i]));
    });
    // with br_netfilter, frames bridged between a bridge's ports pass here as bridge -> bridge: a
    // bridge is one segment of its zone, so they pass like a switch would (rules above can still drop)
    for (const i of this.ctx.config.interfaces) {
      if (i.kind === 'bridge') out.push(`iifname ${q(i.name)} oifname ${q(i.name)} ${this.count('builtin', `bridge-${i.name}`)}accept ${this.comment('builtin', `bridge-${i.name}`)}`);
    }
    out.push(...this.zonePolicies('forward'));
    return out;
  }

  /** NPTv6-style prefix maps, checked once: [internal, external] canonical, or undefined. */
  private nptMaps(): { name: string; iface: string; internal: string; external: string }[] {
    const out: { name: string; iface: string; internal: string; external: string }[] = [];
    this.fw.prefixTranslation.forEach((n, i) => {
      const path = [...BASE, 'prefixTranslation', i];
      if (!this.managed.includes(n.interface)) this.issue([...path, 'interface'], `interface "${n.interface}" is not in interfaces:`);
      const parse = (field: 'internal' | 'external'): Prefix | undefined => {
        try {
          const p = parsePrefix(n[field]);
          if (p.family !== 6 || !n[field].includes('/')) throw new Error(`"${n[field]}" is not an IPv6 prefix`);
          if (hasHostBits(n[field].split('/')[0]!, p)) throw new Error(`"${n[field]}" has host bits set; did you mean ${formatPrefix(p)}?`);
          return p;
        } catch (e) {
          this.issue([...path, field], (e as Error).message);
          return undefined;
        }
      };
      const a = parse('internal');
      const b = parse('external');
      if (!a || !b) return;
      if (a.length !== b.length) return this.issue([...path, 'external'], `${formatPrefix(b)} is a /${b.length}, the internal prefix a /${a.length}: a prefix translation maps prefixes of one length`);
      this.add('npt', n.name, path);
      out.push({ name: n.name, iface: n.interface, internal: formatPrefix(a), external: formatPrefix(b) });
    });
    return out;
  }

  private preroutingChain(): string[] {
    const out: string[] = [];
    for (const m of this.npt) {
      out.push(`iifname ${q(m.iface)} ip6 daddr ${m.external} counter dnat ip6 prefix to ip6 daddr map { ${m.external} : ${m.internal} } ${this.comment('npt', m.name, 'in')}`);
    }
    this.fw.oneToOne.forEach((n, i) => {
      this.add('1to1', n.name, [...BASE, 'oneToOne', i]);
      out.push(`iifname ${q(n.interface)} ip daddr ${n.external} counter dnat ip to ${n.internal} ${this.comment('1to1', n.name, 'in')}`);
    });
    this.fw.portForwards.forEach((pf, i) => {
      const path = [...BASE, 'portForwards', i];
      const l4 = l4match(pf.protocol);
      const fam = familyOf(pf.target);
      const ip = fam === 4 ? 'ip' : 'ip6';
      // an IPv6 address with a port is written [addr]:port
      const addr = fam === 4 ? pf.target : `[${pf.target}]`;
      const to = pf.targetPort === undefined ? pf.target : `${addr}:${typeof pf.port === 'string' ? `${pf.targetPort}-${pf.targetPort + portSpan(pf.port)}` : pf.targetPort}`;
      // without a fixed external address: any address of the gateway itself (of the target's family)
      const dst = pf.destination ? `${ip} daddr ${pf.destination}` : `meta nfproto ipv${fam} fib daddr type local`;
      const src = this.addrList(pf.source, [...path, 'source']);
      const srcFam = fam === 4 ? src?.v4 : src?.v6;
      const s = srcFam ? `${ip} saddr ${srcFam} ` : '';
      out.push(`iifname ${q(pf.interface)} ${s}${dst} ${l4} th dport ${portText(pf.port)} counter dnat ${ip} to ${to} ${this.comment('pf', pf.name, 'dnat')}`);
      if (pf.hairpin) {
        out.push(
          `iifname != ${q(pf.interface)} iifname @managed ${s}${dst} ${l4} th dport ${portText(pf.port)} counter meta mark set meta mark | ${hex(HAIRPIN_MARK)} dnat ${ip} to ${to} ${this.comment('pf', pf.name, 'hairpin-dnat')}`,
        );
      }
    });
    return out;
  }

  private postroutingChain(): string[] {
    const out: string[] = [];
    if (this.fw.portForwards.some((pf) => pf.hairpin)) {
      out.push(`meta mark & ${hex(HAIRPIN_MARK)} == ${hex(HAIRPIN_MARK)} ${this.count('builtin', 'hairpin-masquerade')}masquerade ${this.comment('builtin', 'hairpin-masquerade')}`);
    }
    this.fw.oneToOne.forEach((n) => {
      out.push(`oifname ${q(n.interface)} ip saddr ${n.internal} counter snat ip to ${n.external} ${this.comment('1to1', n.name, 'out')}`);
    });
    for (const m of this.npt) {
      out.push(`oifname ${q(m.iface)} ip6 saddr ${m.internal} counter snat ip6 prefix to ip6 saddr map { ${m.internal} : ${m.external} } ${this.comment('npt', m.name, 'out')}`);
    }
    this.fw.outboundNat.forEach((n, i) => {
      const path = [...BASE, 'outboundNat', i];
      if (n.type === 'snat' && !n.address) this.issue([...path, 'address'], 'type snat needs an address');
      if (n.type !== 'snat' && n.address) this.issue([...path, 'address'], `an address is only used with type snat (this entry is ${n.type})`);
      const src = this.addrList(n.source, [...path, 'source']);
      const dst = this.addrList(n.destination, [...path, 'destination']);
      const fams = families(src, dst, n.type === 'snat' ? [4] : [4, 6]);
      if (fams === 'none') {
        this.issue(path, n.type === 'snat' ? 'source/destination have no IPv4 entries (SNAT to an IPv4 address applies to IPv4 only)' : 'source and destination have no address family in common');
        return;
      }
      this.add('snat', n.name, path);
      const action = n.type === 'masquerade' ? 'masquerade' : n.type === 'snat' ? `snat ip to ${n.address}` : 'accept';
      for (const fam of fams) {
        const m = fam === 'any' ? '' : addrExpr(fam, src, dst);
        const famMatch = fam === 'any' ? '' : m ? '' : fam === 4 ? 'meta nfproto ipv4 ' : 'meta nfproto ipv6 ';
        out.push(`oifname ${q(n.interface)} ${famMatch}${m}counter ${action} ${this.comment('snat', n.name, fam === 'any' ? '' : `v${fam}`)}`);
      }
    });
    return out;
  }

  // --- pieces -------------------------------------------------------------

  private statefulHead(chain: 'input' | 'forward'): string[] {
    return [
      `ct state established,related ${this.count('builtin', `${chain}-established`)}accept ${this.comment('builtin', `${chain}-established`)}`,
      `ct state invalid ${this.count('builtin', `${chain}-invalid`)}drop ${this.comment('builtin', `${chain}-invalid`)}`,
      // conntrack picks up mid-stream TCP (nf_conntrack_tcp_loose): a new flow that is not a SYN is as good as invalid
      `ct state new meta l4proto tcp tcp flags & (fin|syn|rst|ack) != syn ${this.count('builtin', `${chain}-new-not-syn`)}drop ${this.comment('builtin', `${chain}-new-not-syn`)}`,
    ];
  }

  private opening(o: ServiceOpening): string[] {
    const key = `${o.service}-${o.proto}${o.port !== undefined ? `-${o.port}` : ''}`.replace(/[^A-Za-z0-9_.-]/g, '_');
    const ifs = o.interfaces.length ? `iifname ${anon(o.interfaces.map(q))} ` : '';
    let match: string;
    switch (o.proto) {
      case 'tcp':
      case 'udp':
        match = `meta l4proto ${o.proto}${o.port !== undefined ? ` th dport ${o.port}` : ''}`;
        break;
      case 'esp':
        match = 'meta l4proto esp';
        break;
      case 'vrrp':
        match = 'meta l4proto vrrp';
        break;
      case 'ospf':
        match = 'meta l4proto 89';
        break;
      case 'icmp':
        match = 'meta l4proto { icmp, ipv6-icmp }';
        break;
    }
    return [`${ifs}${match} ${this.count('opening', key)}accept ${this.comment('opening', key)}`];
  }

  private zonePolicies(chain: 'input' | 'forward'): string[] {
    const out: string[] = [];
    for (const zone of [...this.zones.keys()].sort()) {
      const z = this.fw.zones.find((x) => x.name === zone);
      const verdict: Verdict = z?.[chain] ?? this.fw.defaults[chain];
      const name = `${chain}:${zone}`;
      const log = this.log(z?.log, 'policy', name, verdict);
      this.add('policy', name);
      out.push(`iifname @zone_${zone} ${verdict === 'accept' ? '' : log}counter ${verdictText(verdict, 'any')} ${this.comment('policy', name)}`);
    }
    return out;
  }

  private rule(r: RuleConfig, path: IssuePath): string[] {
    const parts: string[] = [];
    if (r.interface) {
      if (!this.managed.includes(r.interface)) this.issue([...path, 'interface'], `interface "${r.interface}" is not in interfaces: (only managed interfaces are filtered)`);
      parts.push(`iifname ${q(r.interface)}`);
    }
    if (r.from) {
      if (!this.zones.has(r.from)) this.issue([...path, 'from'], this.unknownZone(r.from));
      parts.push(`iifname @zone_${r.from}`);
    }
    if (r.to) {
      if (r.direction === 'input') this.issue([...path, 'to'], 'input rules have no egress zone (to) - use direction: forward');
      else if (!this.zones.has(r.to)) this.issue([...path, 'to'], this.unknownZone(r.to));
      parts.push(`oifname @zone_${r.to}`);
    }
    const hasPorts = r.ports.length > 0 || r.sourcePorts.length > 0;
    if (hasPorts && !['tcp', 'udp', 'tcp_udp'].includes(r.protocol)) this.issue([...path, 'protocol'], `ports need protocol tcp, udp or tcp_udp (not ${r.protocol})`);
    let l4 = '';
    if (r.protocol !== 'any') l4 = l4match(r.protocol);
    if (r.sourcePorts.length) l4 += ` th sport ${this.portList(r.sourcePorts, [...path, 'sourcePorts'])}`;
    if (r.ports.length) l4 += ` th dport ${this.portList(r.ports, [...path, 'ports'])}`;
    const before = this.issues.length;
    const src = this.addrList(r.source, [...path, 'source']);
    const dst = this.addrList(r.destination, [...path, 'destination']);
    const allowed: Family[] = r.protocol === 'icmp' ? [4] : r.protocol === 'icmpv6' ? [6] : [4, 6];
    const fams = families(src, dst, allowed);
    if (fams === 'none') {
      // an unresolvable entry already said why; the family mismatch would only be its echo
      if (this.issues.length === before) this.issue(path, `source and destination have no address family in common${r.protocol.startsWith('icmp') ? ` with protocol ${r.protocol}` : ''}`);
      return [];
    }

    this.add('rule', r.name, path);
    const log = this.log(r.log, 'rule', r.name, r.action);
    const counter = r.counter ? 'counter ' : '';
    return fams.map((fam) => {
      const addr = fam === 'any' ? '' : addrExpr(fam, src, dst);
      const words = [...parts, addr.trim(), l4.trim()].filter(Boolean).join(' ');
      return `${words}${words ? ' ' : ''}${log}${counter}${verdictText(r.action, r.protocol)} ${this.comment('rule', r.name, fam === 'any' ? '' : `v${fam}`)}`;
    });
  }

  /** Resolves a list of network refs. A single alias becomes its named sets; anything else an anonymous set. */
  private addrList(refs: readonly string[], path: IssuePath): AddrMatch | undefined {
    if (!refs.length) return undefined;
    const only = refs.length === 1 ? this.ctx.aliases.get(refs[0]!) : undefined;
    const v4: Prefix[] = [];
    const v6: Prefix[] = [];
    refs.forEach((ref, j) => {
      try {
        const r = resolveNetworkRef(ref, this.ctx.aliases);
        if (r.countries.length) {
          this.issue([...path, j], `"${ref}" includes countries (${r.countries.join(', ')}): countries are matched by the fast path (fastpath rules), not by nftables`);
        }
        for (const p of r.prefixes) (p.family === 4 ? v4 : v6).push(p);
      } catch (e) {
        this.issue([...path, j], (e as Error).message);
      }
    });
    if (only && only.type === 'network') {
      const out: AddrMatch = {};
      if (v4.length) {
        const m = minimalPrefixes(v4);
        out.v4 = `@${this.namedSet(`a_${only.name}_v4`, 'ipv4_addr', () => m.map(formatPrefix), (name) => prefixElements(name, 'ipv4_addr', m))}`;
      }
      if (v6.length) {
        const m = minimalPrefixes(v6);
        out.v6 = `@${this.namedSet(`a_${only.name}_v6`, 'ipv6_addr', () => m.map(formatPrefix), (name) => prefixElements(name, 'ipv6_addr', m))}`;
      }
      return out;
    }
    const out: AddrMatch = {};
    if (v4.length) out.v4 = anon(minimalPrefixes(v4).map(formatPrefix));
    if (v6.length) out.v6 = anon(minimalPrefixes(v6).map(formatPrefix));
    return out;
  }

  private portList(refs: readonly (string | number)[], path: IssuePath): string {
    const only = refs.length === 1 && typeof refs[0] === 'string' ? this.ctx.aliases.get(refs[0]) : undefined;
    const ranges: PortRange[] = [];
    refs.forEach((ref, j) => {
      try {
        append(ranges, resolvePortRef(ref, this.ctx.aliases));
      } catch (e) {
        this.issue([...path, j], (e as Error).message);
      }
    });
    const ranges2 = mergeRanges(ranges);
    const merged = ranges2.map((r) => (r.from === r.to ? String(r.from) : `${r.from}-${r.to}`));
    if (only && only.type === 'port') return `@${this.namedSet(`p_${only.name}`, 'inet_service', () => merged, (name) => portElements(name, ranges2))}`;
    return anon(merged);
  }

  /** Declares a named interval set once (the same alias in several rules is one set). */
  private namedSet(name: string, type: string, text: () => string[], elements: (name: string) => SetElements): string {
    if (!this.sets.has(name)) this.sets.set(name, { decl: `\tset ${name} {\n\t\ttype ${type}\n\t\tflags interval\n\t}`, text: text(), elements: elements(name) });
    return name;
  }

  private checkNames(): void {
    const lists: [string, { name: string }[]][] = [
      ['rules', this.fw.rules],
      ['portForwards', this.fw.portForwards],
      ['outboundNat', this.fw.outboundNat],
      ['oneToOne', this.fw.oneToOne],
      ['prefixTranslation', this.fw.prefixTranslation],
    ];
    for (const [key, list] of lists) {
      const seen = new Set<string>();
      list.forEach((x, i) => {
        if (seen.has(x.name)) this.issue([...BASE, key, i, 'name'], `name "${x.name}" is used twice in firewall.${key} (names key the counters)`);
        seen.add(x.name);
      });
    }
    this.fw.portForwards.forEach((pf, i) => {
      const path = [...BASE, 'portForwards', i];
      if (typeof pf.port === 'string') {
        const [a, b] = pf.port.split('-').map(Number) as [number, number];
        if (!(a >= 1 && b <= 65535 && a <= b)) this.issue([...path, 'port'], `"${pf.port}" is not a port range within 1-65535`);
        else if (pf.targetPort !== undefined && pf.targetPort + (b - a) > 65535) this.issue([...path, 'targetPort'], 'the mapped range runs past 65535');
      }
      if (!this.managed.includes(pf.interface)) this.issue([...path, 'interface'], `interface "${pf.interface}" is not in interfaces:`);
    });
    this.checkForwardOverlaps();
    this.fw.oneToOne.forEach((n, i) => {
      if (!this.managed.includes(n.interface)) this.issue([...BASE, 'oneToOne', i, 'interface'], `interface "${n.interface}" is not in interfaces:`);
    });
  }

  /**
   * Two forwards on one interface, protocol and port (ranges overlapping,
   * destination the same or absent): the second could never match, so it is
   * refused at the second's path.
   */
  private checkForwardOverlaps(): void {
    const protos = (p: string) => (p === 'tcp_udp' ? ['tcp', 'udp'] : [p]);
    const span = (p: number | string): [number, number] => (typeof p === 'number' ? [p, p] : (p.split('-').map(Number) as [number, number]));
    const list = this.fw.portForwards;
    list.forEach((b, j) => {
      const [b0, b1] = span(b.port);
      for (let i = 0; i < j; i++) {
        const a = list[i]!;
        const [a0, a1] = span(a.port);
        if (a.interface !== b.interface || a0 > b1 || b0 > a1) continue;
        if (a.destination !== undefined && b.destination !== undefined && a.destination !== b.destination) continue;
        // a first forward limited to some sources leaves the others to the second (unless both name the same sources)
        if (a.source.length && [...a.source].sort().join() !== [...b.source].sort().join()) continue;
        const proto = protos(a.protocol).find((p) => protos(b.protocol).includes(p));
        if (!proto) continue;
        const port = Math.max(a0, b0);
        this.issue([...BASE, 'portForwards', j, 'port'], `overlaps portForwards[${i}] ("${a.name}"): both forward ${proto} port ${port} arriving on ${b.interface}${a.destination ?? b.destination ? ` for ${a.destination ?? b.destination}` : ''}, so this one could never match`);
        break;
      }
    });
  }

  private checkZones(): void {
    const seen = new Set<string>();
    this.fw.zones.forEach((z, i) => {
      if (seen.has(z.name)) this.issue([...BASE, 'zones', i, 'name'], `zone "${z.name}" is listed twice`);
      seen.add(z.name);
      if (!this.zones.has(z.name)) this.issue([...BASE, 'zones', i, 'name'], this.unknownZone(z.name));
    });
  }

  private unknownZone(z: string): string {
    const known = [...this.zones.keys()];
    return `zone "${z}" has no interfaces (zones in use: ${known.length ? known.join(', ') : 'none'})`;
  }

  private add(kind: CounterKind, name: string, path?: IssuePath): void {
    const key = `${kind}:${name}`;
    if (!this.counters.some((c) => c.key === key)) this.counters.push({ key, kind, name, ...(path ? { path } : {}) });
  }

  private count(kind: CounterKind, name: string): string {
    this.add(kind, name);
    return 'counter ';
  }

  /** The stable comment: patronus:<kind>:<name>[#part] (parts of one object share its counter key). */
  private comment(kind: CounterKind, name: string, part = ''): string {
    return `comment ${q(`${COMMENT_PREFIX}${kind}:${name}${part ? `#${part}` : ''}`)}`;
  }

  /**
   * The log statement of a rule with a log prefix. To NFLOG (the default):
   * the prefix names the verdict and the rule, which is how the event log
   * (src/events/nflog.ts) reports them: "pt <verdict> <kind>:<name> <prefix>".
   * To the kernel log: the operator's prefix alone, as before.
   */
  private log(prefix: string | undefined, kind: CounterKind, name: string, verdict: string): string {
    if (!prefix) return '';
    const to = this.fw.log;
    if (to.target === 'kernel') return `log prefix ${q(`${prefix}: `)} `;
    return `log prefix ${q(nflogPrefix(verdict, kind, name, prefix))} group ${to.group} `;
  }

  private issue(path: IssuePath, message: string): void {
    this.issues.push({ path, message });
  }
}

// --- helpers ---------------------------------------------------------------

function q(s: string): string {
  // names are schema-restricted; the escape only guards against a future schema change
  return `"${s.replace(/["\\]/g, '')}"`;
}

function anon(items: string[]): string {
  return items.length === 1 ? items[0]! : `{ ${items.join(', ')} }`;
}

/** A named set's elements, added after the table's declaration in the same transaction. */
function addElements(set: string, items: string[]): string {
  return `add element ${NFT_FAMILY} ${NFT_TABLE} ${set} { ${items.join(', ')} }\n`;
}

function l4match(p: string): string {
  if (p === 'tcp_udp') return 'meta l4proto { tcp, udp }';
  if (p === 'icmpv6') return 'meta l4proto ipv6-icmp';
  return `meta l4proto ${p}`;
}

function verdictText(v: Verdict, protocol: string): string {
  if (v !== 'reject') return v;
  return protocol === 'tcp' ? 'reject with tcp reset' : 'reject';
}


function firstPort(p: number | string): number {
  return typeof p === 'number' ? p : Number(p.split('-')[0]);
}

function portSpan(range: string): number {
  const [a, b] = range.split('-').map(Number) as [number, number];
  return b - a;
}

function portText(p: number | string): string {
  return String(p);
}

/** Which families a rule needs: 'any' when no address matches at all. */
function families(src: AddrMatch | undefined, dst: AddrMatch | undefined, allowed: Family[]): ('any' | Family)[] | 'none' {
  if (!src && !dst) return allowed.length === 2 ? ['any'] : allowed;
  const fams = allowed.filter((f) => {
    const key = f === 4 ? 'v4' : 'v6';
    return (!src || src[key] !== undefined) && (!dst || dst[key] !== undefined);
  });
  return fams.length ? fams : 'none';
}

function addrExpr(fam: Family, src: AddrMatch | undefined, dst: AddrMatch | undefined): string {
  const ip = fam === 4 ? 'ip' : 'ip6';
  const key = fam === 4 ? 'v4' : 'v6';
  let out = '';
  if (src?.[key]) out += `${ip} saddr ${src[key]} `;
  if (dst?.[key]) out += `${ip} daddr ${dst[key]} `;
  return out;
}

/** The NFLOG prefix of a logging rule (parsed back by src/events/nflog.ts parseNflogPrefix). */
export function nflogPrefix(verdict: string, kind: string, name: string, prefix: string): string {
  return `pt ${verdict} ${kind}:${name} ${prefix}`;
}

export function mergeRanges(list: readonly PortRange[]): PortRange[] {
  const sorted = [...list].sort((a, b) => a.from - b.from);
  const out: PortRange[] = [];
  for (const r of sorted) {
    const last = out[out.length - 1];
    if (last && r.from <= last.to + 1) last.to = Math.max(last.to, r.to);
    else out.push({ ...r });
  }
  return out;
}
