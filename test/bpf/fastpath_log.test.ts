/**
 * Fast-path drop events (bpf/include/filter_log.h) under bpf_prog_test_run:
 * the event's fields, the per-rule limiter under a flood (at most
 * rate x time + burst events, the rest counted as suppressed, nothing
 * unaccounted), no loss below the rate, and no ring-buffer work when no rule
 * logs (FEAT_LOG off). The events are read through the real ring buffer
 * reader (native thread) and XdpEventSource, as the server reads them.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { XDP, probes } from '../../src/bpf/index.js';
import { compileFastpath } from '../../src/fastpath/compile.js';
import { FastpathDataPlane, removePins } from '../../src/fastpath/dataplane.js';
import { fastpathSchema } from '../../src/fastpath/schema.js';
import { EventHub, type FirewallEvent } from '../../src/events/hub.js';
import { XdpEventSource } from '../../src/events/xdp.js';
import { frame } from '../lib/packets.js';
import { missing } from '../lib/skip.js';

const RATE = 50;
const BURST = 10;

function config(log: Record<string, unknown> | undefined, ruleLog?: boolean) {
  return fastpathSchema.parse({
    interfaces: [{ name: 'lo', defaultPolicy: 'drop' }],
    rules: [
      { name: 'drop-net', source: '198.51.100.0/24', action: 'drop', ...(ruleLog !== undefined ? { log: ruleLog } : {}) },
      { name: 'drop-quiet', source: '203.0.113.0/24', action: 'drop', log: false },
      { name: 'pass-rest', source: '10.0.0.0/8', action: 'pass' },
    ],
    ...(log ? { log } : {}),
    capacity: { prefixes: 1024, portPrefixes: 1024, rateLimitSources: 1024, blocklist: 1024 },
  });
}

async function waitFor<T>(what: string, fn: () => T | undefined | false, ms = 20_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('fast-path drop events (ring buffer, per-rule limiter)', { timeout: 300_000, skip: missing('root') }, () => {
  let pinDir: string;
  let dp: FastpathDataPlane;
  let hub: EventHub;
  let src: XdpEventSource;
  const got: FirewallEvent[] = [];
  const ifindexOf = (n: string) => (n === 'lo' ? 1 : 424242);
  const counters = (rule: string) => dp.logCounters().find((c) => c.rule === rule);
  const apply = async (c: ReturnType<typeof config>) => {
    const { desired, issues } = compileFastpath({ fastpath: c, aliases: new Map() });
    assert.deepEqual(issues, []);
    await dp.apply(desired, ifindexOf);
  };

  before(async () => {
    pinDir = mkdtempSync('/sys/fs/bpf/pt-fplog-');
    dp = await FastpathDataPlane.open({ pinDir, capacity: config(undefined).capacity });
    await apply(config({ drops: true, rate: RATE, burst: BURST }));
    hub = new EventHub();
    hub.follow((e) => got.push(e));
    src = new XdpEventSource(hub, { pinDir, linkNames: async () => new Map([[1, 'lo']]) });
    await src.start();
    assert.ok(src.reading, 'the reader found the pinned ring');
  });
  after(() => {
    src?.close();
    dp?.close();
    if (pinDir) removePins(pinDir);
  });

  it('a dropped packet produces one event with its fields', async () => {
    got.length = 0;
    const r = await dp.xdp.testRun({ data: frame({ src: '198.51.100.9', dst: '192.0.2.77', proto: 'tcp', sport: 40000, dport: 443 }) });
    assert.equal(r.retval, XDP.DROP);
    const e = await waitFor('the event', () => got.find((x) => x.rule === 'drop-net'));
    assert.deepEqual(
      { source: e.source, rule: e.rule, verdict: e.verdict, iface: e.iface, direction: e.direction, src: e.src, dst: e.dst, proto: e.proto, sport: e.sport, dport: e.dport, sampleRate: e.sampleRate },
      { source: 'xdp', rule: 'drop-net', verdict: 'rule_drop', iface: 'lo', direction: 'ingress', src: '198.51.100.9', dst: '192.0.2.77', proto: 'tcp', sport: 40000, dport: 443, sampleRate: 1 },
    );
    assert.ok(Math.abs(Date.parse(e.time) - Date.now()) < 60_000, `time ${e.time} is now`);
  });

  it('default-drop policy and IPv6 events; a rule with log: false and passed packets report nothing', async () => {
    got.length = 0;
    await dp.xdp.testRun({ data: frame({ src: '203.0.113.1' }) }); // drop-quiet: log false
    await dp.xdp.testRun({ data: frame({ src: '10.1.1.1' }) }); // passed
    await dp.xdp.testRun({ data: frame({ src: '2001:db8::1', dst: '2001:db8::2', proto: 'udp', sport: 5000, dport: 53 }) }); // default drop
    const e = await waitFor('the default-drop event', () => got.find((x) => x.rule === 'default'));
    assert.equal(e.verdict, 'default_drop');
    assert.equal(e.src, '2001:db8::1');
    assert.equal(e.proto, 'udp');
    assert.equal(e.dport, 53);
    await src.settled();
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(got.map((x) => x.rule), ['default']);
    assert.equal(counters('drop-quiet'), undefined);
  });

  it('a flood produces at most rate x time + burst events per rule; the limiter counts the rest', async () => {
    await apply(config({ drops: true, rate: RATE, burst: BURST })); // same rule set: buckets go on
    const before = counters('drop-net')!;
    got.length = 0;
    const packets = 1_000_000;
    const t0 = process.hrtime.bigint();
    await dp.xdp.testRun({ data: frame({ src: '198.51.100.1', proto: 'udp', dport: 9 }), repeat: packets });
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const after = counters('drop-net')!;
    const emitted = Number(after.emitted - before.emitted);
    const suppressed = Number(after.suppressed - before.suppressed);
    const lost = Number(after.lost - before.lost);
    assert.equal(emitted + suppressed + lost, packets, 'every dropped packet is an event, suppressed or lost');
    assert.ok(emitted <= Math.ceil(RATE * seconds) + BURST, `${emitted} events in ${seconds.toFixed(2)} s exceed rate ${RATE}/s + burst ${BURST}`);
    assert.ok(emitted >= 1, 'the flood reported itself');
    assert.equal(lost, 0);
    const events = await waitFor('the flood events', () => got.filter((x) => x.rule === 'drop-net').length >= emitted && got.filter((x) => x.rule === 'drop-net'));
    assert.equal(events.length, emitted);
    // together the events stand for every packet of the flood (the last suppressed ones wait for the next event)
    const represented = events.reduce((n, e) => n + e.sampleRate, 0);
    assert.ok(represented <= packets + 1 && represented >= packets - suppressed, `events stand for ${represented} packets`);
    assert.ok(events.some((e) => e.sampleRate > 1), 'events report the sampling');
  });

  it('below the rate no event is lost', async () => {
    await new Promise((r) => setTimeout(r, (1000 * BURST) / RATE + 100)); // the bucket refills after the flood
    got.length = 0;
    const before = counters('drop-net')!;
    const n = 40;
    for (let i = 0; i < n; i++) {
      await dp.xdp.testRun({ data: frame({ src: `198.51.100.${10 + i}`, proto: 'tcp', dport: 22 }) });
      await new Promise((r) => setTimeout(r, 2000 / RATE)); // half the rate (slower under load is fine)
    }
    const events = await waitFor('every event', () => got.filter((x) => x.rule === 'drop-net').length >= n && got.filter((x) => x.rule === 'drop-net'));
    const after = counters('drop-net')!;
    assert.equal(Number(after.suppressed - before.suppressed), 0);
    assert.equal(events.length, n);
    // the first event on each CPU may carry the flood's last drops on that CPU; the rest stand for themselves
    assert.ok(events.filter((e) => e.sampleRate > 1).length <= probes.possibleCpus(), `sample rates ${events.map((e) => e.sampleRate).join(' ')}`);
    assert.deepEqual(events.map((e) => e.src), Array.from({ length: n }, (_, i) => `198.51.100.${10 + i}`));
  });

  it('no rule logs: FEAT_LOG off, no events, no counters', async () => {
    await apply(config(undefined));
    assert.ok(!dp.lookups().includes('log'));
    got.length = 0;
    await dp.xdp.testRun({ data: frame({ src: '198.51.100.9' }), repeat: 1000 });
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(got.length, 0);
    assert.deepEqual(dp.logCounters(), []);
    // a rule can log on its own, without log.drops
    await apply(config(undefined, true));
    assert.ok(dp.lookups().includes('log'));
    await dp.xdp.testRun({ data: frame({ src: '198.51.100.9' }) });
    await dp.xdp.testRun({ data: frame({ src: '10.1.1.1', dst: '10.2.2.2' }) }); // passed
    await dp.xdp.testRun({ data: frame({ src: '192.0.2.1' }) }); // default drop: not logged without drops
    await waitFor('the rule event', () => got.find((x) => x.rule === 'drop-net'));
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(got.map((x) => x.rule), ['drop-net']);
    assert.deepEqual(dp.logCounters().map((c) => c.rule), ['drop-net']);
  });
});
