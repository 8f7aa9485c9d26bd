/**
 * The scrape's snapshot (src/metrics/metrics.ts) with a fake subsystem (no
 * kernel): every scrape reads the counters again, even scrapes run back to
 * back in one chain of promises; scrapes that overlap share one read.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import type { Engine } from '../../src/apply/engine.js';
import { createMetrics } from '../../src/metrics/metrics.js';

function fakeEngine(readMs: number) {
  let reads = 0;
  const engine = Object.assign(new EventEmitter(), {
    host: {},
    store: { current: () => undefined, head: () => ({ committed: undefined, confirming: undefined, applying: false }) },
    pendingConfirmation: () => false,
    status: () => ({}),
    domains: [],
    subsystems: [
      {
        name: 'fake',
        async metrics() {
          reads++;
          await new Promise((r) => setTimeout(r, readMs));
          return { rules: [{ rule: 'rule:a', action: 'accept', packets: reads, bytes: 100 * reads }] };
        },
      },
    ],
  });
  return { engine: engine as unknown as Engine, reads: () => reads };
}

const packets = (text: string) => Number(/^patronus_rule_packets_total\{subsystem="fake",rule="rule:a",action="accept"\} (\d+)$/m.exec(text)?.[1]);

describe('metrics snapshot', () => {
  it('back-to-back scrapes each read the counters (no stale snapshot)', async () => {
    const f = fakeEngine(5);
    const m = createMetrics(f.engine, { processMetrics: false });
    const seen = [];
    for (let i = 0; i < 5; i++) seen.push(packets(await m.registry.metrics()));
    assert.deepEqual(seen, [1, 2, 3, 4, 5]);
    assert.equal(f.reads(), 5);
  });

  it('one scrape reads once for all its series; overlapping scrapes and /rules reads share one read', async () => {
    const f = fakeEngine(50);
    const m = createMetrics(f.engine, { processMetrics: false });
    const texts = await Promise.all([m.registry.metrics(), m.registry.metrics(), m.snapshot(), m.registry.metrics()]);
    assert.equal(f.reads(), 1);
    assert.deepEqual([texts[0], texts[1], texts[3]].map((t) => packets(t as string)), [1, 1, 1]);
    assert.match(texts[0] as string, /^patronus_rule_bytes_total\{subsystem="fake",rule="rule:a",action="accept"\} 100$/m);
    assert.equal(packets(await m.registry.metrics()), 2);
  });
});
