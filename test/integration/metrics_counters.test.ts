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

describe('/metrics right after an apply changes the rules (the per-rule series are kept between scrapes)', { timeout: 300_000, skip: missing('netns') }, () => {
  let L: ControlLab;
  let store: Store;
  let engine: Engine;
  let drift: DriftMonitor;
  let metrics: Metrics;
  const doc = (rules: Record<string, unknown>[]) => ({ document: { interfaces: [{ name: 'wan0', zone: 'wan' }], firewall: { rules } } });
  const filler = Array.from({ length: 100 }, (_, i) => ({ name: `r${i}`, direction: 'input', from: 'wan', protocol: 'tcp', source: [`10.9.${i}.1`], ports: [2000 + i], action: 'accept' }));

  before(async () => {
    L = await controlLab();
    store = Store.open(join(L.stateDir, 'patronus.db'));
    engine = new Engine({ domains, host: L.host, store });
    drift = new DriftMonitor(engine);
    metrics = createMetrics(engine, { drift, processMetrics: false });
  });
  after(async () => {
    drift?.stop();
    engine?.close();
    store?.close();
    await L?.teardown();
  });

  it('a new revision\'s rules, actions and counters are in the next scrape; interface counters move with packets', async () => {
    const first = await engine.apply(doc([...filler, { name: 'allow-ping', direction: 'input', from: 'wan', protocol: 'icmp', action: 'accept' }]), { author: 'test', message: 'a' });
    assert.equal(first.state, 'committed');
    await L.peer.exec('ping', ['-c', '1', '-W', '1', '192.0.2.2']);
    const a = await metrics.registry.metrics();
    assert.equal(value(a, 'rule:allow-ping'), 1);
    assert.match(a, /^patronus_rule_packets_total\{subsystem="nftables",rule="rule:r7",action="accept"\} 0$/m);
    const rx = (t: string) => Number(/^patronus_interface_receive_packets_total\{interface="wan0"\} (\d+)$/m.exec(t)?.[1] ?? NaN);
    assert.ok(rx(a) >= 1, 'wan0 received the ping');
    // same rule set, new packets: the kept series carry the new numbers
    await L.peer.exec('ping', ['-c', '2', '-i', '0.05', '-W', '1', '192.0.2.2']);
    const b = await metrics.registry.metrics();
    assert.equal(value(b, 'rule:allow-ping'), 2, 'a new ping: a new connection (its second echo request is established)');
    assert.ok(rx(b) >= rx(a) + 2, `wan0 counted the two pings (${rx(a)} -> ${rx(b)})`);

    // the next revision: allow-ping renamed, r7 now drops, r99 gone, a new rule in the middle
    const rules = [...filler.slice(0, 99).map((r) => (r.name === 'r7' ? { ...r, action: 'drop' } : r)), { name: 'new-one', direction: 'input', from: 'wan', protocol: 'udp', ports: [9], action: 'drop' }, { name: 'ping-renamed', direction: 'input', from: 'wan', protocol: 'icmp', action: 'accept' }];
    const second = await engine.apply(doc(rules), { author: 'test', message: 'b' });
    assert.equal(second.state, 'committed');
    // a new ping is a new connection: its first echo request goes through the renamed rule
    await L.peer.exec('ping', ['-c', '1', '-W', '1', '192.0.2.2']);
    const c = await metrics.registry.metrics();
    assert.doesNotMatch(c, /rule="rule:allow-ping"/);
    assert.doesNotMatch(c, /rule="rule:r99"/);
    assert.match(c, /^patronus_rule_packets_total\{subsystem="nftables",rule="rule:r7",action="drop"\} 0$/m);
    assert.match(c, /^patronus_rule_bytes_total\{subsystem="nftables",rule="rule:new-one",action="drop"\} 0$/m);
    assert.equal(value(c, 'rule:ping-renamed'), 1, 'the renamed rule counts the new ping');
    assert.equal(c.split('\n').filter((l) => l.startsWith('patronus_rule_packets_total{subsystem="nftables",rule="rule:r')).length, 99);
  });
});
