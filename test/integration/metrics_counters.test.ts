/**
 * /metrics counters are exact with a large firewall: 1000 rules ahead of
 * the one that matches, real pings from the peer namespace, the scrape read
 * through the registry as `patronus serve` builds it (with its drift
 * monitor). Scrapes taken one after the other each read the kernel again
 * (no stale snapshot), and scrapes that overlap agree with each other.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Engine } from '../../src/apply/engine.js';
import { Store } from '../../src/store/store.js';
import { DriftMonitor } from '../../src/drift/monitor.js';
import { createMetrics, type Metrics } from '../../src/metrics/metrics.js';
import { missing } from '../lib/skip.js';
import { controlLab, type ControlLab } from '../lib/control.js';
import { domains } from '../../src/domains.js';

const value = (text: string, rule: string) => {
  const m = new RegExp(`^patronus_rule_packets_total\\{subsystem="nftables",rule="${rule}",action="[a-z]+"\\} (\\d+)$`, 'm').exec(text);
  assert.ok(m, `no series for ${rule}`);
  return Number(m[1]);
};

describe('/metrics counters with 1000 firewall rules', { timeout: 300_000, skip: missing('netns') }, () => {
  let L: ControlLab;
  let store: Store;
  let engine: Engine;
  let drift: DriftMonitor;
  let metrics: Metrics;

  before(async () => {
    L = await controlLab();
    store = Store.open(join(L.stateDir, 'patronus.db'));
    engine = new Engine({ domains, host: L.host, store });
    drift = new DriftMonitor(engine);
    metrics = createMetrics(engine, { drift, processMetrics: false });
    const filler = Array.from({ length: 1000 }, (_, i) => ({ name: `r${i}`, direction: 'input', from: 'wan', protocol: 'tcp', source: [`10.${i >> 8}.${i & 255}.1`], ports: [1000 + i], action: 'accept' }));
    const report = await engine.apply(
      { document: { interfaces: [{ name: 'wan0', zone: 'wan' }], firewall: { rules: [...filler, { name: 'allow-ping', direction: 'input', from: 'wan', protocol: 'icmp', action: 'accept' }] } } },
      { author: 'test', message: '1001 rules' },
    );
    assert.equal(report.state, 'committed', JSON.stringify(report.steps.filter((s) => s.error)));
  });
  after(async () => {
    drift?.stop();
    engine?.close();
    store?.close();
    await L?.teardown();
  });

  it('each ping counts exactly, in scrapes taken back to back and in overlapping ones', async () => {
    const first = await metrics.registry.metrics();
    assert.equal(first.split('\n').filter((l) => l.startsWith('patronus_rule_packets_total{subsystem="nftables",rule="rule:r')).length, 1000);
    const [ping0, est0] = [value(first, 'rule:allow-ping'), value(first, 'builtin:input-established')];
    await L.peer.exec('ping', ['-c', '3', '-i', '0.05', '-W', '1', '192.0.2.2']);
    const second = await metrics.registry.metrics();
    // the first echo request opens the connection through allow-ping, the others are established
    assert.equal(value(second, 'rule:allow-ping') - ping0, 1);
    assert.equal(value(second, 'builtin:input-established') - est0, 2);
    assert.equal(value(second, 'rule:r999'), 0);

    await L.peer.exec('ping', ['-c', '2', '-i', '0.05', '-W', '1', '192.0.2.2']);
    const overlapping = await Promise.all([metrics.registry.metrics(), metrics.registry.metrics(), metrics.snapshot()]);
    for (const t of overlapping.slice(0, 2) as string[]) {
      assert.equal(value(t, 'rule:allow-ping') - ping0, 2, 'a new ping: a new connection');
      assert.equal(value(t, 'builtin:input-established') - est0, 3);
    }
    const rules = (overlapping[2] as Awaited<ReturnType<Metrics['snapshot']>>).bySubsystem.find((x) => x.subsystem === 'nftables')?.metrics?.rules ?? [];
    assert.equal(Number(rules.find((r) => r.rule === 'rule:allow-ping')?.packets) - ping0, 2);
  });
});
