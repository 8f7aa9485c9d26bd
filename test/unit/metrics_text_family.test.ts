/**
 * TextFamily (src/metrics/text-family.ts) writes what prom-client writes for
 * the same series (HELP/TYPE, label escaping, number format, duplicates
 * summed), and a scrape after the series changed (renamed, re-labelled,
 * fewer, more) shows exactly the new ones: nothing kept from the last
 * scrape leaks into the next.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Counter, Registry } from 'prom-client';
import { TextFamily, TextRegistry } from '../../src/metrics/text-family.js';

type Row = [string, string, string, number | bigint];

/** The same rows through prom-client's Counter and through a TextFamily. */
async function both(rows: Row[], family?: { registry: TextRegistry; set: (r: Row[]) => void }): Promise<[string, string]> {
  const ref = new Registry();
  const c = new Counter({ name: 'x_rule_packets_total', help: 'Packets \\ that "matched"\na rule', labelNames: ['subsystem', 'rule', 'action'], registers: [ref] });
  for (const [subsystem, rule, action, v] of rows) c.inc({ subsystem, rule, action }, Number(v));
  family!.set(rows);
  return [await ref.metrics(), await family!.registry.metrics()];
}

function textRegistry(): { registry: TextRegistry; set: (r: Row[]) => void } {
  let current: Row[] = [];
  const registry = new TextRegistry();
  registry.registerFamily(
    new TextFamily('x_rule_packets_total', 'Packets \\ that "matched"\na rule', 'counter', ['subsystem', 'rule', 'action'], async (emit) => {
      for (const [s, r, a, v] of current) emit([s, r, a], v);
    }),
  );
  return { registry, set: (r) => (current = r) };
}

describe('TextFamily', () => {
  it('writes what prom-client writes, also after the series change', async () => {
    const f = textRegistry();
    const scrapes: Row[][] = [
      [],
      [['nftables', 'rule:a', 'accept', 1], ['nftables', 'rule:b "quoted" \\ back\nslash', 'drop', 2n], ['fastpath', 'a', 'drop', 12345678901234]],
      [['nftables', 'rule:a', 'accept', 3], ['nftables', 'rule:b "quoted" \\ back\nslash', 'drop', 4n], ['fastpath', 'a', 'drop', 0]],
      // renamed, re-labelled, one gone, one more
      [['nftables', 'rule:a2', 'accept', 5], ['nftables', 'rule:b "quoted" \\ back\nslash', 'reject', 6], ['fastpath', 'a', 'drop', 7], ['fastpath', 'c', 'pass', 8]],
      // the same labels twice: summed, as Counter.inc sums them
      [['nftables', 'rule:a2', 'accept', 5], ['nftables', 'rule:a2', 'accept', 6], ['fastpath', 'a', 'drop', 7]],
      [['fastpath', 'a', 'drop', 9]],
    ];
    for (const rows of scrapes) {
      const [ref, ours] = await both(rows, f);
      assert.equal(ours, ref, JSON.stringify(rows, (_k, v) => (typeof v === "bigint" ? `${v}n` : v)));
    }
  });

  it('gives prom-client readers the same metric object (getMetricsAsJSON)', async () => {
    const f = textRegistry();
    const rows: Row[] = [['nftables', 'rule:a', 'accept', 1], ['nftables', 'rule:a', 'accept', 2], ['fastpath', 'b', 'drop', 3]];
    f.set(rows);
    const [json] = await f.registry.getMetricsAsJSON();
    assert.deepEqual(json!.values, [{ value: 3, labels: { subsystem: 'nftables', rule: 'rule:a', action: 'accept' } }, { value: 3, labels: { subsystem: 'fastpath', rule: 'b', action: 'drop' } }]);
  });
});
