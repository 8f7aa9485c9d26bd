/**
 * Pure: the `qos:` section -> the tc state each device must have.
 *
 * Handles are fixed by position so the same config always gives the same
 * kernel objects: the root qdisc is 1:, the link class 1:1, the Nth class
 * (in config order) 1:(0x10+N), and its leaf qdisc (0x100+minor):, e.g. 110: under 1:10. Ingress of an
 * interface is shaped on the egress of an IFB device (see ifbName) that a
 * mirred filter on the interface's clsact ingress hook feeds.
 */
import { createHash } from 'node:crypto';
import type { CompileContext } from '../../apply/subsystem.js';
import type { Issue, IssuePath } from '../../config/issues.js';
import { resolveNetworkRef, resolvePortRef, type PortRange } from '../../aliases/aliases.js';
import type { Prefix } from '../../net/address.js';
import { parseRate, parseSize, RATE_PERCENT, type LeafConfig, type QosDirectionConfig, type QosRuleConfig } from './schema.js';

export interface QosDesired {
  devices: DevicePlan[];
}

/** Everything one device (an interface, or the IFB of an interface's ingress) gets. */
export interface DevicePlan {
  /** device the qdisc tree lives on */
  device: string;
  /** for ingress shaping: the interface whose ingress is redirected to `device` (an IFB) */
  ingressOf?: string;
  /** document path of the direction, for messages */
  path: IssuePath;
  root: HtbRoot | TbfRoot;
  classes: HtbClass[];
  leaves: LeafQdisc[];
  /** null: no rules, every packet goes to the default class */
  classifier: ClassifierTable | null;
}

export interface HtbRoot {
  kind: 'htb';
  /** the link rate (class 1:1) */
  rate: number;
  /** minor id of the default class */
  defaultMinor: number;
}

export interface TbfRoot {
  kind: 'tbf';
  rate: number;
  burst: number;
  latencyMs: number;
}

export interface HtbClass {
  name: string;
  /** e.g. "1:10" */
  classid: string;
  /** e.g. "1:1" */
  parent: string;
  rate: number;
  ceil: number;
  prio: number;
  quantum: number;
  depth: number;
}

export interface LeafQdisc {
  /** class it hangs under, e.g. "1:10" */
  parent: string;
  /** e.g. "110:" */
  handle: string;
  kind: LeafConfig['type'];
  /** tc arguments after the kind */
  args: string[];
  /** document path, for refusing kinds the kernel lacks */
  path: IssuePath;
}

/** What the BPF classifier's maps hold (see bpf/include/qos_common.h). */
export interface ClassifierTable {
  rules: ClassifierRule[];
  /** prefix sets, by set id (1-based) */
  sets: Map<number, Prefix[]>;
}

export interface ClassifierRule {
  srcSet: number;
  dstSet: number;
  sport: PortRange;
  dport: PortRange;
  classid: number;
  proto: number;
  family: 0 | 4 | 6;
  /** index of the config rule this entry comes from (a rule with several port ranges gives several entries) */
  ruleIndex: number;
}

export const QOS_MAX_RULES = 256;
export const ROOT_HANDLE = '1:';
export const LINK_CLASS = '1:1';

/** Name of the IFB device that carries an interface's ingress. */
export function ifbName(iface: string): string {
  const candidate = `ifb${iface}`;
  if (candidate.length <= 15) return candidate;
  return `ifb${createHash('sha256').update(iface).digest('hex').slice(0, 12)}`;
}

export function compileQos(ctx: CompileContext): { desired: QosDesired; issues: Issue[] } {
  const issues: Issue[] = [];
  const devices: DevicePlan[] = [];
  const known = new Set(ctx.config.interfaces.map((i) => i.name));
  const seen = new Set<string>();
  ctx.config.qos.interfaces.forEach((q, i) => {
    const base: IssuePath = ['qos', 'interfaces', i];
    if (!known.has(q.interface)) issues.push({ path: [...base, 'interface'], message: `interface "${q.interface}" is not listed under interfaces` });
    if (seen.has(q.interface)) issues.push({ path: [...base, 'interface'], message: `interface "${q.interface}" has QoS configured twice` });
    seen.add(q.interface);
    if (!q.egress && !q.ingress) issues.push({ path: base, message: 'configure egress, ingress or both' });
    if (q.egress) {
      const d = compileDirection(q.egress, q.interface, [...base, 'egress'], ctx, issues);
      if (d) devices.push(d);
    }
    if (q.ingress) {
      const d = compileDirection(q.ingress, ifbName(q.interface), [...base, 'ingress'], ctx, issues);
      if (d) devices.push({ ...d, ingressOf: q.interface });
    }
  });
  return { desired: { devices }, issues };
}

/** `tc` spelling of a rate in bits per second. */
export function tcRate(bits: number): string {
  return `${bits}bit`;
}

function compileDirection(dir: QosDirectionConfig, device: string, path: IssuePath, ctx: CompileContext, issues: Issue[]): DevicePlan | undefined {
  const linkRate = parseRate(dir.rate)!;
  if (dir.type === 'tbf') {
    // tbf needs a bucket of at least one MTU-sized packet; 10 ms of the rate keeps it small but workable
    const burst = dir.burst !== undefined ? parseSize(dir.burst)! : Math.max(10 * 1024, Math.ceil(linkRate / 8 / 100));
    if (burst < 1600) issues.push({ path: [...path, 'burst'], message: `burst ${burst} bytes is below one full-size packet (1600 bytes): nothing would pass` });
    return { device, path, root: { kind: 'tbf', rate: linkRate, burst, latencyMs: dir.latency }, classes: [], leaves: [], classifier: null };
  }

  const n0 = issues.length;
  const byName = new Map<string, number>();
  dir.classes.forEach((c, i) => {
    if (byName.has(c.name)) issues.push({ path: [...path, 'classes', i, 'name'], message: `class "${c.name}" is defined twice` });
    else byName.set(c.name, i);
  });
  const rateOf = (v: string | number, p: IssuePath): number => {
    if (typeof v === 'string' && RATE_PERCENT.test(v)) return Math.round((linkRate * Number(RATE_PERCENT.exec(v)![1])) / 100);
    const r = parseRate(v)!;
    if (r > linkRate) issues.push({ path: p, message: `${tcRate(r)} is above the direction's rate (${tcRate(linkRate)})` });
    return r;
  };

  // parents, checked for existence and cycles
  const parentOf = new Map<number, number | undefined>();
  dir.classes.forEach((c, i) => {
    if (c.parent === undefined) return parentOf.set(i, undefined);
    const p = byName.get(c.parent);
    if (p === undefined) issues.push({ path: [...path, 'classes', i, 'parent'], message: `no class named "${c.parent}"` });
    else if (p === i) issues.push({ path: [...path, 'classes', i, 'parent'], message: 'a class cannot be its own parent' });
    parentOf.set(i, p === i ? undefined : p);
  });
  const depthOf = (i: number): number => {
    const chain = new Set<number>();
    let d = 0;
    for (let cur = parentOf.get(i); cur !== undefined; cur = parentOf.get(cur)) {
      if (chain.has(cur)) return -1;
      chain.add(cur);
      d++;
    }
    return d;
  };
  dir.classes.forEach((_, i) => {
    const d = depthOf(i);
    if (d < 0) issues.push({ path: [...path, 'classes', i, 'parent'], message: `class "${dir.classes[i]!.name}" is part of a parent cycle` });
    else if (d > 6) issues.push({ path: [...path, 'classes', i, 'parent'], message: 'HTB trees are at most 8 levels deep' });
  });
  if (issues.length > n0) return undefined;

  const minorOf = (i: number) => 0x10 + i;
  const classidOf = (i: number) => `1:${minorOf(i).toString(16)}`;
  const hasChildren = new Set([...parentOf.values()].filter((p): p is number => p !== undefined));
  const classes: HtbClass[] = [];
  const rates: number[] = [];
  const ceils: number[] = [];
  // resolve in depth order so a parent's ceiling is known before its children's default
  const order = dir.classes.map((_, i) => i).sort((a, b) => depthOf(a) - depthOf(b));
  for (const i of order) {
    const c = dir.classes[i]!;
    const p = parentOf.get(i);
    const rate = rateOf(c.rate, [...path, 'classes', i, 'rate']);
    const parentCeil = p === undefined ? linkRate : ceils[p]!;
    const ceil = c.ceil === undefined ? parentCeil : rateOf(c.ceil, [...path, 'classes', i, 'ceil']);
    if (ceil < rate) issues.push({ path: [...path, 'classes', i, 'ceil'], message: `ceiling ${tcRate(ceil)} is below the class's rate ${tcRate(rate)}` });
    if (c.ceil !== undefined && ceil > parentCeil) issues.push({ path: [...path, 'classes', i, 'ceil'], message: `ceiling ${tcRate(ceil)} is above its parent's ceiling ${tcRate(parentCeil)}` });
    rates[i] = rate;
    ceils[i] = ceil;
    classes.push({
      name: c.name,
      classid: classidOf(i),
      parent: p === undefined ? LINK_CLASS : classidOf(p),
      rate,
      ceil,
      prio: c.priority,
      // HTB shares spare bandwidth in proportion to quantum; rate/10 bytes (tc's r2q) clamped so the kernel does not warn
      quantum: Math.min(200_000, Math.max(1600, Math.round(rate / 8 / 10))),
      depth: depthOf(i),
    });
  }
  // guarantees only hold when children's rates fit in their parent's
  const sums = new Map<number | undefined, number>();
  dir.classes.forEach((_, i) => sums.set(parentOf.get(i), (sums.get(parentOf.get(i)) ?? 0) + rates[i]!));
  for (const [p, sum] of sums) {
    const cap = p === undefined ? linkRate : rates[p]!;
    if (sum > cap) {
      issues.push({
        path: p === undefined ? [...path, 'classes'] : [...path, 'classes', p],
        message: `the rates of ${p === undefined ? 'the top-level classes' : `the children of "${dir.classes[p]!.name}"`} add up to ${tcRate(sum)}, above ${p === undefined ? "the direction's rate" : 'its rate'} ${tcRate(cap)}`,
      });
    }
  }

  const leafIndex = (name: string, p: IssuePath): number | undefined => {
    const i = byName.get(name);
    if (i === undefined) issues.push({ path: p, message: `no class named "${name}"` });
    else if (hasChildren.has(i)) issues.push({ path: p, message: `class "${name}" has child classes; only leaf classes take packets` });
    else return i;
    return undefined;
  };
  const def = leafIndex(dir.defaultClass, [...path, 'defaultClass']);

  const leaves: LeafQdisc[] = [];
  dir.classes.forEach((c, i) => {
    if (hasChildren.has(i)) return;
    leaves.push({ parent: classidOf(i), handle: `${(0x100 + minorOf(i)).toString(16)}:`, kind: c.leaf.type, args: leafArgs(c.leaf), path: [...path, 'classes', i, 'leaf'] });
  });

  const rules: ClassifierRule[] = [];
  const sets = new Map<number, Prefix[]>();
  dir.rules.forEach((r, ri) => {
    const rp: IssuePath = [...path, 'rules', ri];
    const target = leafIndex(r.class, [...rp, 'class']);
    const m = compileMatch(r, rp, ctx, issues);
    if (target === undefined || !m) return;
    const srcSet = m.src ? addSet(sets, m.src) : 0;
    const dstSet = m.dst ? addSet(sets, m.dst) : 0;
    for (const sport of m.sports) for (const dport of m.dports) rules.push({ srcSet, dstSet, sport, dport, classid: minorOf(target), proto: m.proto, family: m.family, ruleIndex: ri });
  });
  if (rules.length > QOS_MAX_RULES) issues.push({ path: [...path, 'rules'], message: `the rules expand to ${rules.length} classifier entries (one per port range combination); at most ${QOS_MAX_RULES} fit` });

  return {
    device,
    path,
    root: { kind: 'htb', rate: linkRate, defaultMinor: def === undefined ? 0 : minorOf(def) },
    classes: classes.sort((a, b) => a.depth - b.depth || a.classid.localeCompare(b.classid)),
    leaves,
    classifier: rules.length ? { rules, sets } : null,
  };
}

function addSet(sets: Map<number, Prefix[]>, prefixes: Prefix[]): number {
  const id = sets.size + 1;
  sets.set(id, prefixes);
  return id;
}

const PROTO: Record<string, number> = { any: 0, tcp: 6, udp: 17, icmp: 1, icmpv6: 58 };
const ANY_PORT: PortRange = { from: 0, to: 65535 };

function compileMatch(r: QosRuleConfig, path: IssuePath, ctx: CompileContext, issues: Issue[]) {
  const n0 = issues.length;
  const proto = typeof r.protocol === 'number' ? r.protocol : PROTO[r.protocol]!;
  const networks = (field: 'source' | 'destination'): Prefix[] | undefined => {
    const v = r[field];
    if (v === undefined) return undefined;
    const out: Prefix[] = [];
    (Array.isArray(v) ? v : [v]).forEach((ref, j) => {
      const p = Array.isArray(v) ? [...path, field, j] : [...path, field];
      try {
        const n = resolveNetworkRef(ref, ctx.aliases);
        if (n.countries.length) issues.push({ path: p, message: `"${ref}" includes countries (${n.countries.join(', ')}); QoS rules match prefixes only` });
        out.push(...n.prefixes);
      } catch (e) {
        issues.push({ path: p, message: (e as Error).message });
      }
    });
    return out;
  };
  const ports = (field: 'sourcePort' | 'destinationPort'): PortRange[] => {
    const v = r[field];
    if (v === undefined) return [ANY_PORT];
    if (proto !== 6 && proto !== 17) issues.push({ path: [...path, field], message: 'ports need protocol tcp or udp' });
    const out: PortRange[] = [];
    (Array.isArray(v) ? v : [v]).forEach((ref, j) => {
      try {
        out.push(...resolvePortRef(ref, ctx.aliases));
      } catch (e) {
        issues.push({ path: Array.isArray(v) ? [...path, field, j] : [...path, field], message: (e as Error).message });
      }
    });
    return out;
  };
  const src = networks('source');
  const dst = networks('destination');
  const sports = ports('sourcePort');
  const dports = ports('destinationPort');

  let family: 0 | 4 | 6 = r.family === 'ipv4' ? 4 : r.family === 'ipv6' ? 6 : 0;
  const fams = new Set([...(src ?? []), ...(dst ?? [])].map((p) => p.family));
  if (family && [...fams].some((f) => f !== family)) issues.push({ path: [...path, 'family'], message: `family ${r.family} conflicts with the rule's ${family === 4 ? 'IPv6' : 'IPv4'} prefixes` });
  if (!family && fams.size === 1) family = [...fams][0]!;
  if (proto === 1 && family === 6) issues.push({ path: [...path, 'protocol'], message: 'icmp is IPv4; use icmpv6 for IPv6' });
  if (proto === 58 && family === 4) issues.push({ path: [...path, 'protocol'], message: 'icmpv6 is IPv6; use icmp for IPv4' });
  if (!family && proto === 1) family = 4;
  if (!family && proto === 58) family = 6;
  for (const [f, list] of [['source', src], ['destination', dst]] as const) {
    if (list && list.length === 0) issues.push({ path: [...path, f], message: 'resolves to no prefixes' });
  }
  if (issues.length > n0) return undefined;
  return { proto, family, src, dst, sports, dports };
}

function leafArgs(leaf: LeafConfig): string[] {
  switch (leaf.type) {
    case 'pfifo':
      return ['limit', String(leaf.limit)];
    case 'bfifo':
      return ['limit', String(parseSize(leaf.limit))];
    case 'fq_codel':
      return [...(leaf.limit ? ['limit', String(leaf.limit)] : []), ...(leaf.target ? ['target', leaf.target] : []), ...(leaf.interval ? ['interval', leaf.interval] : [])];
    case 'cake':
      return leaf.rtt ? ['rtt', leaf.rtt] : [];
  }
}
