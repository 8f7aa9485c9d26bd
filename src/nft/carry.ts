/**
 * Counters that survive an apply. Patronus replaces its tables whole (one
 * atomic `nft -f`: ensure, delete, declare), which would zero every rule
 * counter at each apply and each control-plane restart (start-up
 * reconciliation is an apply), so every `*_total` series would fall back to
 * 0. Instead, just before the script runs, the current value of each rule's
 * counter is read and written into the new script (`counter packets N
 * bytes M`), keyed by chain and rule comment: a rule keeps its counts as
 * long as it keeps its name, whatever else about it changed.
 *
 * What is lost: packets counted between the read and the commit (the two
 * are milliseconds apart). A rule that is renamed or removed starts again
 * from 0, as a new series should.
 */
import type { Host } from '../system/host.js';

export interface CarriedCount {
  packets: number;
  bytes: number;
}

/** chain + "\0" + comment -> counts, in rule order (a queue per key: duplicates keep their order) */
export type CounterSnapshot = Map<string, CarriedCount[]>;

/** Reads every commented rule's counter of one table; empty when the table does not exist. */
export async function snapshotCounters(host: Host, family: string, table: string): Promise<CounterSnapshot> {
  const r = await host.run('nft', ['-j', 'list', 'table', family, table], { reject: false });
  if (r.exitCode !== 0) {
    if (/No such file or directory/.test(r.stderr)) return new Map();
    throw new Error(`nft -j list table ${family} ${table} failed (${host.where}): ${r.stderr.trim()}`);
  }
  return snapshotFromJson(r.stdout);
}

/** Pure: `nft -j list table` -> snapshot. */
export function snapshotFromJson(json: string): CounterSnapshot {
  const out: CounterSnapshot = new Map();
  for (const item of (JSON.parse(json) as { nftables: Record<string, any>[] }).nftables) {
    const rule = item.rule as { chain: string; comment?: string; expr: Record<string, any>[] } | undefined;
    if (!rule?.comment) continue;
    const c = rule.expr.find((e) => e.counter && typeof e.counter === 'object')?.counter as CarriedCount | undefined;
    if (!c || (!c.packets && !c.bytes)) continue;
    const key = `${rule.chain}\u0000${rule.comment}`;
    const list = out.get(key) ?? [];
    list.push({ packets: c.packets, bytes: c.bytes });
    out.set(key, list);
  }
  return out;
}

/**
 * Pure: writes the snapshot's values into a script's anonymous `counter`
 * statements. Understands both forms Patronus renders: rules inside
 * `chain NAME { ... }` blocks and `add rule FAMILY TABLE CHAIN ...` lines.
 */
export function carryInto(script: string, snapshot: CounterSnapshot): string {
  if (!snapshot.size) return script;
  const left = new Map([...snapshot].map(([k, v]) => [k, [...v]]));
  let chain: string | undefined;
  return script
    .split('\n')
    .map((line) => {
      const head = /^\s*chain (\S+) \{\s*$/.exec(line);
      if (head) {
        chain = head[1];
        return line;
      }
      const add = /^\s*add rule \S+ \S+ (\S+) /.exec(line);
      const ruleChain = add ? add[1] : chain;
      const comment = /comment "([^"]*)"\s*$/.exec(line);
      if (!ruleChain || !comment) return line;
      const queue = left.get(`${ruleChain}\u0000${comment[1]}`);
      const count = queue?.shift();
      return count ? withCount(line, count) : line;
    })
    .join('\n');
}

/** Replaces the first unquoted bare `counter` statement of a rule with one that starts at `count`. */
function withCount(line: string, count: CarriedCount): string {
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i];
    if (ch === '"') quoted = !quoted;
    if (quoted || ch !== 'c' || !line.startsWith('counter', i)) continue;
    const before = i === 0 ? ' ' : line[i - 1]!;
    const after = line.slice(i + 'counter'.length);
    if (!/\s/.test(before) || !/^(\s|$)/.test(after) || /^\s+(packets|name)\b/.test(after)) continue;
    return `${line.slice(0, i)}counter packets ${count.packets} bytes ${count.bytes}${after}`;
  }
  return line;
}

/** The script with the live counters of `family table` carried into it. */
export async function withLiveCounters(host: Host, script: string, family: string, table: string): Promise<string> {
  return carryInto(script, await snapshotCounters(host, family, table));
}
