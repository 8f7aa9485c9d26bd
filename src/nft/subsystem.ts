/**
 * nftables subsystem: compile (pure, src/nft/compile.ts), validate with
 * `nft -c -f -`, plan as a readable diff of `table inet patronus` (what the
 * kernel has now vs. what the rendered script would give), apply with one
 * `nft -f -` (atomic: the whole script is one transaction, a failure leaves
 * the running rule set as it was), teardown deletes only Patronus' table.
 *
 * Counters for metrics/REST: `readCounters(host)` (below) reads
 * `nft -j list table inet patronus` and sums every rule's counter by its
 * comment key, so one configuration object that compiles to several
 * nftables rules (IPv4 + IPv6, DNAT + filter + hairpin) reads as one entry,
 * with the per-rule breakdown kept.
 */
import { writeFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { createHash, randomBytes } from 'node:crypto';
import { defineSubsystem, type Subsystem, type Change, type CompileContext, type DriftFinding } from '../apply/subsystem.js';
import type { Host } from '../system/host.js';
import type { Issue } from '../config/issues.js';
import { dumpRuleCounts, dumpRules, dumpSetElements, NftNetlinkError, ruleCounters, rulesetGeneration, type CountedRule, type RuleCounts } from './netlink.js';
import { carryInto, type CounterSnapshot } from './carry.js';
import { diffElements, dumpedElements, jsonElements, KEY_BYTES, type ElementDiff, type SetElements } from './elements.js';
import { addonAvailable } from '../bpf/addon.js';
import { trace } from '../system/trace.js';
import { compileFirewall, counterKey, NFT_FAMILY, NFT_TABLE, type NftDesired, type CounterKind } from './compile.js';

export { compileFirewall, type NftDesired } from './compile.js';

/** nft refused a script or command; `message` carries nft's own error lines (file:line:column, caret). */
export class NftError extends Error {
  constructor(
    readonly operation: string,
    readonly stderr: string,
    readonly where: string,
  ) {
    super(`nft ${operation} failed (${where}):\n${stderr.trim()}`);
    this.name = 'NftError';
  }
}

/** One nftables rule's counter. */
export interface NftRuleCounter {
  chain: string;
  handle: number;
  comment: string;
  /** what the rule does: accept, drop, reject, dnat, snat, masquerade, jump, log... (its last statement) */
  action: string;
  packets: number;
  bytes: number;
}

/** A configuration object's counters: the sum over its rules. */
export interface NftCounter {
  /** "<kind>:<name>", e.g. "rule:allow-web", "pf:web", "policy:forward:wan", "builtin:forward-invalid" */
  key: string;
  kind: CounterKind;
  name: string;
  /** what it does: its translation if it has one (dnat, snat, masquerade), else its first rule's action (accept, drop, reject...) */
  action: string;
  packets: number;
  bytes: number;
  rules: NftRuleCounter[];
}

export const nftSubsystem: Subsystem<NftDesired> & {
  readCounters(host: Host): Promise<NftCounter[]>;
} = defineSubsystem<NftDesired, {
  readCounters(host: Host): Promise<NftCounter[]>;
}>({
  name: 'nftables',

  compile(ctx: CompileContext) {
    return compileFirewall(ctx);
  },

  /**
   * One step, the table replaced in one `nft -f` transaction, carrying every
   * rule and set the plan lists; none when the live table already is the
   * wanted one.
   */
  async steps(desired, host) {
    const changes = await planNft(desired, host);
    return changes.length ? [{ changes, run: () => applyNft(desired, host) }] : [];
  },

  async validate(desired, host) {
    const r = await host.run('nft', ['-c', '-f', '-'], { input: desired.script, reject: false });
    if (r.exitCode === 0) return [];
    return [{ path: ['firewall'], message: `nft rejected the generated rule set (${host.where}):\n${(r.stderr || r.stdout).trim()}` }] satisfies Issue[];
  },

  async teardown(host) {
    await runScript(host, `add table ${NFT_FAMILY} ${NFT_TABLE}\ndelete table ${NFT_FAMILY} ${NFT_TABLE}\n`, 'teardown');
  },

  async status(host) {
    const text = await listTable(host, NFT_FAMILY, NFT_TABLE, true);
    if (text === undefined) return { table: `${NFT_FAMILY} ${NFT_TABLE}`, present: false };
    const counters = await readCounters(host);
    return { table: `${NFT_FAMILY} ${NFT_TABLE}`, present: true, rules: counters.reduce((n, c) => n + c.rules.length, 0), counters };
  },

  /**
   * The live table against what the revision's script gives (nft's own
   * canonical listing, counters stripped; computed once per script in a
   * scratch namespace and cached): one finding per set or chain that
   * differs, naming the rules missing and unexpected. A table present while
   * the firewall is disabled is drift too.
   */
  async drift(desired, host) {
    const object = `table ${NFT_FAMILY} ${NFT_TABLE}`;
    const live = await liveTable(host, NFT_FAMILY, NFT_TABLE, true);
    if (!desired.enabled) return live === undefined ? [] : [{ object, reason: 'present, but the firewall is disabled' }];
    if (live === undefined) return [{ object, reason: 'missing' }];
    const wanted = await expectedTable(desired.skeleton, host);
    const elements = await elementDiffs(desired, host, live);
    // the same two listings and element comparison as last time (all from caches while nothing changed): the same findings
    if (lastDiff && lastDiff.live === live && lastDiff.wanted === wanted && lastDiff.elements === elements) return lastDiff.findings.map((f) => ({ ...f }));
    const findings = [...diffTables(live, wanted).flatMap(driftFindings), ...elementFindings(elements)];
    lastDiff = { live, wanted, elements, findings };
    return findings.map((f) => ({ ...f }));
  },

  configured(desired) {
    return desired.enabled;
  },

  /**
   * Per configuration object: rule = "<kind>:<name>" (e.g. "rule:allow-web", "pf:web"), action = what its
   * first rule does (accept, drop, reject, dnat, masquerade...); verdicts = filter decisions summed
   * (accept, drop, reject, invalid = conntrack-invalid and mid-stream TCP).
   */
  async metrics(host) {
    // the rule dump's numbers into sums prepared once per ruleset (no object per rule, ~10^4 at 10k rules); nft when netlink cannot be read
    if (addonAvailable()) {
      try {
        const counts = await dumpRuleCounts((fn) => host.inNetns(fn), NFT_FAMILY, NFT_TABLE, `${host.where}\0${host.stateDir}\0${NFT_FAMILY} ${NFT_TABLE}`);
        return counts === null ? { rules: [], verdicts: [] } : metricsFromCounts(counts);
      } catch (e) {
        if (!(e instanceof NftNetlinkError)) throw e;
      }
    }
    return metricsFromCounters(await readCounters(host));
  },

  readCounters,
});

/** What nftables.metrics() reports. */
export interface NftMetrics {
  rules: { rule: string; action: string; packets: number; bytes: number }[];
  verdicts: { verdict: string; direction: 'ingress'; packets: number; bytes: number }[];
}

/**
 * Pure: counters by configuration object -> per-object series and the
 * verdicts: what the filter chains decided, summed over every rule (the
 * stateful head included). The definition of both; metricsFromCounts
 * computes the same from a rule dump's numbers.
 */
export function metricsFromCounters(counters: readonly NftCounter[]): NftMetrics {
  const verdicts = new Map<string, { packets: number; bytes: number }>();
  for (const c of counters) {
    for (const r of c.rules) {
      if (r.chain !== 'input' && r.chain !== 'forward') continue;
      const v = verdictOf(c.key, r.action);
      const t = verdicts.get(v) ?? { packets: 0, bytes: 0 };
      t.packets += r.packets;
      t.bytes += r.bytes;
      verdicts.set(v, t);
    }
  }
  return {
    rules: counters.map((c) => ({ rule: c.key, action: c.action, packets: c.packets, bytes: c.bytes })),
    verdicts: [...verdicts].map(([verdict, t]) => ({ verdict, direction: 'ingress' as const, ...t })),
  };
}

function verdictOf(key: string, action: string): string {
  return key.endsWith('-invalid') || key.endsWith('-new-not-syn') ? 'invalid' : action;
}

/** metricsFromCounts' sums, laid out once per dumped ruleset (by its counted-rules array). */
interface SumPlan {
  /** per object, in groupCounters' order: key, action, and its rules (indexes into the dump's counted rules) members[start[k]..start[k+1]) */
  keys: string[];
  actions: string[];
  start: Int32Array;
  members: Int32Array;
  /** per counted rule: its verdict (index into verdicts) or -1 (not a filter chain, or not an object's) */
  verdict: Int32Array;
  verdicts: string[];
}

const sumPlans = new WeakMap<readonly CountedRule[], SumPlan>();

/**
 * Pure: the rule dump's numbers -> what metricsFromCounters(groupCounters(...))
 * gives for them (same objects, order, actions, and sums added in the same
 * order, so the same doubles), through a plan made once per ruleset.
 */
export function metricsFromCounts(c: RuleCounts): NftMetrics {
  let plan = sumPlans.get(c.rules);
  if (!plan) sumPlans.set(c.rules, (plan = sumPlanOf(c.rules)));
  const { keys, actions, start, members, verdict, verdicts } = plan;
  const vp = new Float64Array(verdicts.length);
  const vb = new Float64Array(verdicts.length);
  const rules: NftMetrics['rules'] = new Array(keys.length);
  for (let k = 0; k < keys.length; k++) {
    let packets = 0;
    let bytes = 0;
    for (let j = start[k]!; j < start[k + 1]!; j++) {
      const i = members[j]!;
      packets += c.packets[i]!;
      bytes += c.bytes[i]!;
      const v = verdict[i]!;
      if (v >= 0) {
        vp[v] = vp[v]! + c.packets[i]!;
        vb[v] = vb[v]! + c.bytes[i]!;
      }
    }
    rules[k] = { rule: keys[k]!, action: actions[k]!, packets, bytes };
  }
  return { rules, verdicts: verdicts.map((verdict, v) => ({ verdict, direction: 'ingress' as const, packets: vp[v]!, bytes: vb[v]! })) };
}

function sumPlanOf(rules: readonly CountedRule[]): SumPlan {
  // groupCounters' grouping, without the numbers
  const groups = groupCounters(rules.map((r, i) => ({ chain: r.chain, handle: i, comment: r.comment, action: r.action, packets: 0, bytes: 0 })));
  const start = new Int32Array(groups.length + 1);
  const members: number[] = [];
  const verdict = new Int32Array(rules.length).fill(-1);
  const verdicts: string[] = [];
  groups.forEach((g, k) => {
    start[k] = members.length;
    for (const r of g.rules) {
      const i = r.handle; // the counted rule's index, carried through groupCounters as its handle
      members.push(i);
      if (r.chain !== 'input' && r.chain !== 'forward') continue;
      const v = verdictOf(g.key, r.action);
      let at = verdicts.indexOf(v);
      if (at < 0) at = verdicts.push(v) - 1;
      verdict[i] = at;
    }
  });
  start[groups.length] = members.length;
  return { keys: groups.map((g) => g.key), actions: groups.map((g) => g.action), start, members: Int32Array.from(members), verdict, verdicts };
}

/**
 * The table's rules, chains and set declarations as nft lists them (terse:
 * without set elements), then each named set's elements compared as numbers
 * (src/nft/elements.ts): nft never prints set contents here.
 */
async function planNft(desired: NftDesired, host: Host): Promise<Change[]> {
  const current = await liveTable(host, NFT_FAMILY, NFT_TABLE, true);
  trace('nftables: live table listed (terse)');
  const wanted = desired.enabled ? await canonicalTable(desired.skeleton, host) : undefined;
  trace('nftables: wanted table canonicalised (sets empty)');
  const changes = diffTables(current, wanted);
  if (!desired.enabled) return changes;
  const object = `table ${NFT_FAMILY} ${NFT_TABLE}`;
  if (current === undefined) {
    const n = desired.sets.reduce((k, s) => k + s.count, 0);
    if (n && changes[0]) changes[0].detail = `${changes[0].detail ?? ''}, ${n} set elements`;
    return changes;
  }
  const diffs = await elementDiffs(desired, host, current);
  for (const set of desired.sets) {
    const name = `${object} set ${set.name}`;
    const d = diffs.get(set.name);
    const c = changes.find((x) => x.object === name);
    if (d === undefined) {
      // a new set (or a changed declaration: replaced with its elements)
      if (c && set.count) c.detail = `${c.detail ? `${c.detail}\n` : ''}+${set.count} elements`;
      continue;
    }
    if (d === null) continue;
    const detail = elementDetail(d);
    if (c) c.detail = `${c.detail ? `${c.detail}\n` : ''}${detail}`;
    else changes.push({ action: 'change', object: name, detail });
  }
  return changes;
}

/** "+N −M elements" and the first few of each. */
function elementDetail(d: ElementDiff): string {
  const lines = [`+${d.missing} -${d.unexpected} elements`];
  for (const e of d.missingExamples) lines.push(`+ element ${e}`);
  if (d.missing > d.missingExamples.length) lines.push(`+ ... ${d.missing - d.missingExamples.length} more`);
  for (const e of d.unexpectedExamples) lines.push(`- element ${e}`);
  if (d.unexpected > d.unexpectedExamples.length) lines.push(`- ... ${d.unexpected - d.unexpectedExamples.length} more`);
  return lines.join('\n');
}

/** Drift findings for sets whose elements differ: counts and examples. */
function elementFindings(diffs: Map<string, ElementDiff | null>): DriftFinding[] {
  const out: DriftFinding[] = [];
  for (const [set, d] of diffs) {
    if (!d) continue;
    const object = `table ${NFT_FAMILY} ${NFT_TABLE} set ${set}`;
    if (d.missing) out.push({ object, reason: `${d.missing} elements missing (${d.missingExamples.join(', ')}${d.missing > d.missingExamples.length ? ', ...' : ''})` });
    if (d.unexpected) out.push({ object, reason: `${d.unexpected} unexpected elements (${d.unexpectedExamples.join(', ')}${d.unexpected > d.unexpectedExamples.length ? ', ...' : ''})` });
  }
  return out;
}

/**
 * What is known of the kernel's sets per host and table, at one ruleset
 * generation: each set's elements as read (a dump) or as written (our own
 * transaction), and the last comparison made against them.
 */
interface KnownSets {
  generation: number;
  kernel: Map<string, SetElements>;
  last?: { sets: readonly SetElements[]; diffs: Map<string, ElementDiff | null> };
}
const elementCache = new Map<string, KnownSets>();

/**
 * Per wanted set that the live (terse) listing declares: null when the
 * kernel holds exactly the wanted elements, else what differs; sets the
 * listing lacks are left out (the table diff reports them). The kernel's
 * elements are known without reading them while the ruleset generation has
 * not moved since they were read or written by our own transaction
 * (elements change only by a transaction: Patronus' sets are not filled by
 * the packet path); else they are read with an NFT_MSG_GETSETELEM dump
 * (quadratic in the kernel: ~1.6 s at 100k /24s, 1-2 min at 1M). The same
 * wanted sets at the same generation get the same answer (same Map).
 */
export async function elementDiffs(desired: NftDesired, host: Host, live: string): Promise<Map<string, ElementDiff | null>> {
  const declared = new Set([...blocks(live).keys()].filter((k) => k.startsWith('set ')).map((k) => k.slice(4)));
  const key = elementKey(host, desired);
  const inNs = <T>(fn: () => T) => host.inNetns(fn);
  let generation: number | undefined;
  if (addonAvailable()) {
    try {
      generation = await rulesetGeneration(inNs);
    } catch (e) {
      if (!(e instanceof NftNetlinkError)) throw e;
    }
  }
  const kept = elementCache.get(key);
  const known: KnownSets = generation !== undefined && kept?.generation === generation ? kept : { generation: generation ?? -1, kernel: new Map() };
  if (known.last && sameSets(known.last.sets, desired.sets) && [...known.last.diffs.keys()].every((n) => declared.has(n))) {
    trace(`nftables: set elements compared already at generation ${generation}`);
    return known.last.diffs;
  }
  const diffs = new Map<string, ElementDiff | null>();
  for (const set of desired.sets) {
    if (!declared.has(set.name)) continue;
    let have = known.kernel.get(set.name);
    if (have && (have.type !== set.type || have.interval !== set.interval)) have = undefined;
    if (!have) {
      have = await kernelElements(host, desired, set, generation !== undefined);
      trace(`nftables: set ${set.name} read (${have?.count ?? 0} elements, generation ${generation})`);
      if (!have) continue;
      known.kernel.set(set.name, have);
    }
    diffs.set(set.name, diffElements(set, have));
  }
  known.last = { sets: desired.sets, diffs };
  const after = generation === undefined ? undefined : await rulesetGeneration(inNs).catch(() => undefined);
  if (generation !== undefined && after === generation) remember(key, known);
  else elementCache.delete(key);
  return diffs;
}

/** Digests of compiled sets (by array): a revision compiled twice (drift monitor, plan) has equal sets, not the same arrays. */
const setDigests = new WeakMap<readonly SetElements[], string>();

function digestOf(sets: readonly SetElements[]): string {
  let d = setDigests.get(sets);
  if (d === undefined) {
    const h = createHash('sha256');
    for (const s of sets) {
      h.update(`${s.name}\0${s.type}\0${s.interval}\0${s.count}\0`);
      h.update(new Uint8Array(s.words.buffer, s.words.byteOffset, s.words.byteLength));
    }
    setDigests.set(sets, (d = h.digest('hex')));
  }
  return d;
}

function sameSets(a: readonly SetElements[], b: readonly SetElements[]): boolean {
  return a === b || (a.length === b.length && digestOf(a) === digestOf(b));
}

function elementKey(host: Host, desired: NftDesired): string {
  return `${host.where}\0${host.stateDir}\0${desired.family} ${desired.table}`;
}

function remember(key: string, entry: KnownSets): void {
  if (elementCache.size >= 16 && !elementCache.has(key)) elementCache.delete(elementCache.keys().next().value!);
  elementCache.set(key, entry);
}

async function kernelElements(host: Host, desired: NftDesired, set: SetElements, netlink: boolean): Promise<SetElements | undefined> {
  if (netlink) {
    try {
      const d = await dumpSetElements((fn) => host.inNetns(fn), desired.family, desired.table, set.name, KEY_BYTES[set.type]);
      return d ? dumpedElements(set.name, set.type, set.interval, d) : undefined;
    } catch (e) {
      if (!(e instanceof NftNetlinkError)) throw e;
    }
  }
  // no netlink: nft lists the one set (slow for big interval sets, but only without the addon)
  const r = await host.run('nft', ['-j', 'list', 'set', desired.family, desired.table, set.name], { reject: false, timeout: 600_000 });
  if (r.exitCode !== 0) {
    if (/No such file or directory/.test(r.stderr)) return undefined;
    throw new NftError(`-j list set ${desired.family} ${desired.table} ${set.name}`, r.stderr, host.where);
  }
  const doc = JSON.parse(r.stdout) as { nftables: { set?: { elem?: unknown[] } }[] };
  return jsonElements(set.name, set.type, set.interval, doc.nftables.find((x) => x.set)?.set?.elem ?? []);
}

async function applyNft(desired: NftDesired, host: Host): Promise<void> {
  if (!desired.enabled) return runScript(host, desired.script, 'apply');
  // counters keep their values across the table's replacement (src/nft/carry.ts)
  const script = carryInto(desired.script, await liveCounters(host));
  const inNs = <T>(fn: () => T) => host.inNetns(fn);
  const before = addonAvailable() ? await rulesetGeneration(inNs).catch(() => undefined) : undefined;
  await runScript(host, script, 'apply');
  // our script was the only transaction in between (one nft -f is one transaction, the generation moved by one):
  // the kernel holds exactly the compiled elements, so the drift check and the next plan need not dump them
  // (a dump of a 1M-interval set is quadratic in the kernel's rbtree walk: about a minute here)
  const after = before === undefined ? undefined : await rulesetGeneration(inNs).catch(() => undefined);
  trace(`nftables: applied, generation ${before} -> ${after}`);
  if (before !== undefined && after === ((before + 1) >>> 0)) {
    remember(elementKey(host, desired), {
      generation: after,
      kernel: new Map(desired.sets.map((s) => [s.name, s])),
      last: { sets: desired.sets, diffs: new Map(desired.sets.map((s) => [s.name, null])) },
    });
  }
}

/** Every commented rule's counter of Patronus' table, read over netlink (nft's JSON would print every set element). */
async function liveCounters(host: Host): Promise<CounterSnapshot> {
  const rules = await readCounters(host);
  const out: CounterSnapshot = new Map();
  for (const c of rules)
    for (const r of c.rules) {
      if (!r.packets && !r.bytes) continue;
      const k = `${r.chain}\u0000${r.comment}`;
      const list = out.get(k) ?? [];
      list.push({ packets: r.packets, bytes: r.bytes });
      out.set(k, list);
    }
  return out;
}

/** The drift check's last comparison: its two listings (compared by identity: 10k-rule texts), the element comparison, and what it found. */
let lastDiff: { live: string; wanted: string; elements: Map<string, ElementDiff | null>; findings: DriftFinding[] } | undefined;

/** canonicalTable() results by host, table and script hash (the drift check lists the live table only). */
const expectedTables = new Map<string, string>();

/** canonicalTable(), cached by script: what a drift check compares the live table with. */
export async function expectedTable(script: string, host: Host, family: string = NFT_FAMILY, table: string = NFT_TABLE): Promise<string> {
  const key = `${host.where}\0${host.stateDir}\0${family} ${table}\0${createHash('sha256').update(script).digest('hex')}`;
  let t = expectedTables.get(key);
  if (t === undefined) {
    t = await canonicalTable(script, host, family, table);
    if (expectedTables.size >= 16) expectedTables.delete(expectedTables.keys().next().value!);
    expectedTables.set(key, t);
  }
  return t;
}

/** One finding per rule or element line of a diffTables change (current = live, wanted = the revision): "missing: <rule>", "unexpected: <rule>". */
export function driftFindings(c: Change): DriftFinding[] {
  if (c.action === 'add') return [{ object: c.object, reason: 'missing' }];
  if (c.action === 'remove') return [{ object: c.object, reason: 'not in the revision' }];
  return (c.detail ?? '')
    .split('\n')
    .filter(Boolean)
    .map((l) => ({ object: c.object, reason: l.startsWith('+ ') ? `missing: ${l.slice(2)}` : l.startsWith('- ') ? `unexpected: ${l.slice(2)}` : l }));
}

/** Runs a script with `nft -f -` (one transaction). Throws NftError with nft's message. */
export async function runScript(host: Host, script: string, operation: string): Promise<void> {
  const r = await host.run('nft', ['-f', '-'], { input: script, reject: false });
  if (r.exitCode !== 0) throw new NftError(operation, r.stderr || r.stdout, host.where);
}

/**
 * Every Patronus counter in `table inet patronus`, summed per configuration
 * object (comment key). Empty when the table does not exist.
 */
export async function readCounters(host: Host, family: 'inet' = NFT_FAMILY, table: string = NFT_TABLE): Promise<NftCounter[]> {
  // the kernel's rule list over netlink (no nft process, no JSON of the whole table: ~0.4 s at 10k rules); nft when that cannot be read
  if (addonAvailable()) {
    try {
      // the dump's layout is kept per namespace and table: an unchanged ruleset is read as numbers only
      const rules = await dumpRules((fn) => host.inNetns(fn), family, table, `${host.where}\0${host.stateDir}\0${family} ${table}`);
      return groupCounters(rules === null ? [] : ruleCounters(rules));
    } catch (e) {
      if (!(e instanceof NftNetlinkError)) throw e;
    }
  }
  const r = await host.run('nft', ['-j', 'list', 'table', family, table], { reject: false });
  if (r.exitCode !== 0) {
    if (/No such file or directory/.test(r.stderr)) return [];
    throw new NftError(`-j list table ${family} ${table}`, r.stderr, host.where);
  }
  return countersFromJson(r.stdout);
}

/** Pure: `nft -j list table` output -> counters by key. */
export function countersFromJson(json: string): NftCounter[] {
  const doc = JSON.parse(json) as { nftables: Record<string, any>[] };
  const rules: NftRuleCounter[] = [];
  for (const item of doc.nftables) {
    const rule = item.rule as { chain: string; handle: number; comment?: string; expr: Record<string, any>[] } | undefined;
    if (!rule?.comment) continue;
    const c = rule.expr.find((e) => e.counter)?.counter as { packets: number; bytes: number } | undefined;
    if (!c) continue;
    rules.push({ chain: rule.chain, handle: rule.handle, comment: rule.comment, action: ruleAction(rule.expr), packets: c.packets, bytes: c.bytes });
  }
  return groupCounters(rules);
}

/** Pure: per-rule counters (from nft's JSON or the netlink dump) -> counters by configuration object (comment key). */
export function groupCounters(rules: readonly NftRuleCounter[]): NftCounter[] {
  const byKey = new Map<string, NftCounter>();
  for (const rule of rules) {
    const key = counterKey(rule.comment);
    if (!key) continue;
    const c = rule;
    const action = rule.action;
    let entry = byKey.get(key);
    if (!entry) {
      const [kind, ...rest] = key.split(':');
      entry = { key, kind: kind as CounterKind, name: rest.join(':'), action, packets: 0, bytes: 0, rules: [] };
      byKey.set(key, entry);
    }
    // a NAT object (port forward, 1:1) is named by its translation, not by its filter rule
    if (NAT_ACTIONS.includes(action) && !NAT_ACTIONS.includes(entry.action)) entry.action = action;
    entry.packets += c.packets;
    entry.bytes += c.bytes;
    entry.rules.push({ chain: rule.chain, handle: rule.handle, comment: rule.comment, action, packets: c.packets, bytes: c.bytes });
  }
  return [...byKey.values()];
}

const NAT_ACTIONS = ['dnat', 'snat', 'masquerade', 'redirect'];
const ACTIONS = ['accept', 'drop', 'reject', 'dnat', 'snat', 'masquerade', 'redirect', 'jump', 'goto', 'vmap', 'return', 'mangle', 'log'];

/** The last statement of a rule that says what it does (nft JSON). */
function ruleAction(expr: Record<string, unknown>[]): string {
  for (let i = expr.length - 1; i >= 0; i--) {
    const k = Object.keys(expr[i]!)[0];
    if (k && ACTIONS.includes(k)) return k === 'mangle' ? 'mark' : k;
  }
  return 'continue';
}

/** The last listing of a table whose ruleset generation did not change while nft listed it, by host, state dir and table. */
const listings = new Map<string, { generation: number; text: string | undefined }>();

/**
 * listTable(), for the drift check: listed again only when the kernel's
 * ruleset generation (read over netlink on every call; every committed
 * nftables transaction in the namespace changes it) differs from the one of
 * the last listing. The listing is reused only when the generation was the
 * same before and after it was taken, so it is what the kernel runs now:
 * a scrape at 10k rules no longer runs nft (~0.4 s) to find nothing changed.
 * Counter values are stripped from listings, and the table has no sets the
 * packet path fills, so nothing else in it changes without a transaction.
 */
export async function liveTable(host: Host, family: string = NFT_FAMILY, table: string = NFT_TABLE, terse = false): Promise<string | undefined> {
  if (!addonAvailable()) return listTable(host, family, table, terse);
  const key = `${host.where}\0${host.stateDir}\0${family} ${table}${terse ? '\0terse' : ''}`;
  const inNs = <T>(fn: () => T) => host.inNetns(fn);
  let before: number;
  try {
    before = await rulesetGeneration(inNs);
  } catch (e) {
    if (!(e instanceof NftNetlinkError)) throw e;
    return listTable(host, family, table, terse);
  }
  const known = listings.get(key);
  if (known && known.generation === before) return known.text;
  const text = await listTable(host, family, table, terse);
  const after = await rulesetGeneration(inNs).catch(() => undefined);
  if (after === before) listings.set(key, { generation: before, text });
  else listings.delete(key);
  return text;
}

/**
 * `nft list table FAMILY TABLE` with counter values stripped; undefined when
 * absent. terse: without named sets' elements, from `nft -t list ruleset`
 * (nft 1.0.6 still fetches every element for `-t list table`: 0.7 s at 100k
 * /24s; `-t list ruleset` does not: milliseconds; anonymous sets in rules
 * are printed either way).
 */
export async function listTable(host: Host, family: string = NFT_FAMILY, table: string = NFT_TABLE, terse = false): Promise<string | undefined> {
  if (terse) {
    const r = await host.run('nft', ['-t', 'list', 'ruleset'], { reject: false });
    if (r.exitCode !== 0) throw new NftError('-t list ruleset', r.stderr, host.where);
    const block = tableBlock(r.stdout, family, table);
    return block === undefined ? undefined : normalize(block);
  }
  const r = await host.run('nft', ['list', 'table', family, table], { reject: false });
  if (r.exitCode !== 0) {
    if (/No such file or directory/.test(r.stderr)) return undefined;
    throw new NftError(`list table ${family} ${table}`, r.stderr, host.where);
  }
  return normalize(r.stdout);
}

/**
 * What the kernel would list after applying `script`, without applying it:
 * the script is loaded into a throwaway network namespace (unshare -n) and
 * listed there, so both sides of the plan diff are in nft's own canonical
 * form.
 */
export async function canonicalTable(script: string, host: Host, family: string = NFT_FAMILY, table: string = NFT_TABLE): Promise<string> {
  // the system's temp dir, not the state dir: the drift check must keep working when the store's disk is full
  const file = join(tmpdir(), `patronus-plan-${process.pid}-${randomBytes(4).toString('hex')}.nft`);
  writeFileSync(file, script, { mode: 0o600 });
  try {
    // nft -i runs each line as its own transaction: load, then list the committed table
    const r = await host.run('unshare', ['-n', '--', 'nft', '-i'], { input: `include "${file}"\nlist table ${family} ${table}\n`, reject: false, timeout: 120_000 });
    if (r.exitCode !== 0 || /Error:/.test(r.stderr)) throw new NftError('plan (load into a scratch namespace)', r.stderr || r.stdout, host.where);
    return normalize(r.stdout);
  } finally {
    rmSync(file, { force: true });
  }
}

/** Pure: one table's block out of a ruleset listing (its head line to its closing brace at column 0). */
export function tableBlock(ruleset: string, family: string, table: string): string | undefined {
  const head = `table ${family} ${table} {\n`;
  let at = ruleset.startsWith(head) ? 0 : ruleset.indexOf(`\n${head}`);
  if (at < 0) return undefined;
  if (at > 0) at++;
  const end = ruleset.indexOf('\n}', at);
  return ruleset.slice(at, end < 0 ? undefined : end + 2);
}

function normalize(text: string): string {
  return text
    .replace(/counter packets \d+ bytes \d+/g, 'counter')
    .trim();
}

/**
 * Pure: a readable diff of two `nft list table` texts, one Change per set or
 * chain that differs, its detail the added (+) and removed (-) lines.
 */
export function diffTables(current: string | undefined, wanted: string | undefined, object = `table ${NFT_FAMILY} ${NFT_TABLE}`): Change[] {
  if (current === undefined && wanted === undefined) return [];
  if (current === undefined) {
    const b = blocks(wanted!);
    const rules = [...b].filter(([k]) => k.startsWith('chain ')).reduce((n, [, l]) => n + l.filter((x) => !x.startsWith('type ')).length, 0);
    return [{ action: 'add', object, detail: `${[...b.keys()].filter((k) => k.startsWith('set ')).length} sets, ${[...b.keys()].filter((k) => k.startsWith('chain ')).length} chains, ${rules} rules` }];
  }
  if (wanted === undefined) return [{ action: 'remove', object }];
  const a = blocks(current);
  const b = blocks(wanted);
  const out: Change[] = [];
  for (const [name, lines] of b) {
    const old = a.get(name);
    if (!old) out.push({ action: 'add', object: `${object} ${name}`, detail: lines.map((l) => `+ ${l}`).join('\n') });
    else {
      const d = lineDiff(old, lines);
      if (d.length) out.push({ action: 'change', object: `${object} ${name}`, detail: d.join('\n') });
    }
  }
  for (const name of a.keys()) if (!b.has(name)) out.push({ action: 'remove', object: `${object} ${name}` });
  return out;
}

/** "set x" / "chain y" -> its inner lines (nft's element wrapping joined back). */
function blocks(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let cur: string[] | undefined;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    const head = /^(set|map|chain) (\S+) \{$/.exec(line);
    if (head) {
      cur = [];
      out.set(`${head[1]} ${head[2]}`, cur);
      continue;
    }
    if (!cur || !line) continue;
    if (line === '}') {
      cur = undefined;
      continue;
    }
    const last = cur[cur.length - 1];
    // nft wraps long element lists: continuation lines follow a line ending in ","
    if (last !== undefined && last.endsWith(',')) cur[cur.length - 1] = `${last} ${line}`;
    else cur.push(line);
  }
  return out;
}

/**
 * Minimal line diff (LCS); returns "+ line" / "- line" entries in order.
 * The common head and tail are skipped first, so equal or nearly equal
 * chains (every drift check of an unchanged table) cost O(lines), not an
 * O(n·m) table (10k rules: 100M cells, seconds and ~800 MB).
 */
export function lineDiff(a: readonly string[], b: readonly string[]): string[] {
  let head = 0;
  while (head < a.length && head < b.length && a[head] === b[head]) head++;
  let tail = 0;
  while (tail < a.length - head && tail < b.length - head && a[a.length - 1 - tail] === b[b.length - 1 - tail]) tail++;
  if (head === 0 && tail === 0) return lcsDiff(a, b);
  return lcsDiff(a.slice(head, a.length - tail), b.slice(head, b.length - tail));
}

function lcsDiff(a: readonly string[], b: readonly string[]): string[] {
  const n = a.length;
  const m = b.length;
  const L: number[][] = Array.from({ length: n + 1 }, () => new Array<number>(m + 1).fill(0));
  for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--) L[i]![j] = a[i] === b[j] ? L[i + 1]![j + 1]! + 1 : Math.max(L[i + 1]![j]!, L[i]![j + 1]!);
  const out: string[] = [];
  let i = 0;
  let j = 0;
  while (i < n && j < m) {
    if (a[i] === b[j]) {
      i++;
      j++;
    } else if (L[i + 1]![j]! >= L[i]![j + 1]!) out.push(`- ${a[i++]}`);
    else out.push(`+ ${b[j++]}`);
  }
  while (i < n) out.push(`- ${a[i++]}`);
  while (j < m) out.push(`+ ${b[j++]}`);
  return out;
}
