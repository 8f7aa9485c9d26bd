/**
 * The event log's pure parts: the hub's ring and filters, the NFLOG prefix
 * Patronus writes and reads back, what fastpath.log compiles to, the CLI's
 * line format.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { EventHub, eventFilterSchema, type NewEvent } from '../../src/events/hub.js';
import { parseNflogPrefix } from '../../src/events/nflog.js';
import { nflogPrefix } from '../../src/nft/compile.js';
import { compileLog } from '../../src/fastpath/compile.js';
import { FEAT, LOG_FLAGS, bitList } from '../../src/fastpath/layout.js';
import { fastpathSchema } from '../../src/fastpath/schema.js';
import { eventLine } from '../../src/cli/log.js';

const ev = (over: Partial<NewEvent> = {}): NewEvent => ({
  time: '2026-11-30T12:00:00.000Z',
  source: 'xdp',
  rule: 'r1',
  verdict: 'rule_drop',
  iface: 'wan0',
  direction: 'ingress',
  src: '192.0.2.1',
  dst: '192.0.2.2',
  proto: 'udp',
  sport: 4000,
  dport: 9,
  sampleRate: 1,
  ...over,
});

describe('event hub', () => {
  it('keeps the newest events in a bounded ring, oldest first, with ids to resume after', () => {
    const hub = new EventHub(5);
    for (let i = 0; i < 8; i++) hub.publish(ev({ sport: i }));
    assert.deepEqual(hub.recent().map((e) => e.sport), [3, 4, 5, 6, 7]);
    assert.deepEqual(hub.recent({}, 2).map((e) => e.sport), [6, 7]);
    assert.deepEqual(hub.recent({}, 100, 6).map((e) => e.id), [7, 8]);
    assert.equal(hub.lastId, 8);
    assert.equal(hub.counters.published.xdp, 8);
  });

  it('filters by rule, source prefix (v4 and v6), interface and source', () => {
    const hub = new EventHub();
    hub.publish(ev());
    hub.publish(ev({ rule: 'r2', src: '198.51.100.7', iface: 'lan0' }));
    hub.publish(ev({ source: 'nft', rule: 'n1', src: '2001:db8::5', verdict: 'drop' }));
    const rules = (f: object) => hub.recent(eventFilterSchema.parse(f)).map((e) => e.rule);
    assert.deepEqual(rules({ rule: 'r2' }), ['r2']);
    assert.deepEqual(rules({ src: '198.51.100.0/24' }), ['r2']);
    assert.deepEqual(rules({ src: '192.0.2.1' }), ['r1']);
    assert.deepEqual(rules({ src: '2001:db8::/32' }), ['n1']);
    assert.deepEqual(rules({ iface: 'wan0', source: 'xdp' }), ['r1']);
    assert.equal(eventFilterSchema.safeParse({ src: '10.0.0.0/33' }).success, false);
    assert.equal(eventFilterSchema.safeParse({ src: 'lan' }).success, false);
  });

  it('followers see every event published after they start, until they stop', () => {
    const hub = new EventHub();
    hub.publish(ev());
    const seen: number[] = [];
    const stop = hub.follow((e) => seen.push(e.id));
    hub.publish(ev());
    stop();
    hub.publish(ev());
    assert.deepEqual(seen, [2]);
    assert.equal(hub.followerCount, 0);
  });
});

describe('NFLOG prefix', () => {
  it('round-trips verdict, kind and name; foreign prefixes are not parsed', () => {
    assert.deepEqual(parseNflogPrefix(nflogPrefix('drop', 'rule', 'nft-drop-7777', 'nftdrop')), { verdict: 'drop', kind: 'rule', name: 'nft-drop-7777', prefix: 'nftdrop' });
    assert.deepEqual(parseNflogPrefix(nflogPrefix('reject', 'policy', 'input:wan', 'wan in')), { verdict: 'reject', kind: 'policy', name: 'input:wan', prefix: 'wan in' });
    assert.equal(parseNflogPrefix('IN=wan0 something'), undefined);
    assert.ok(nflogPrefix('accept', 'rule', 'x'.repeat(48), 'y'.repeat(24)).length < 128, 'fits NFLOG\'s 128-byte prefix');
  });
});

describe('fastpath.log compiles to what the program reads', () => {
  const rules = [
    { name: 'd1', source: '10.0.0.0/8', action: 'drop' },
    { name: 'd2', source: '10.1.0.0/16', action: 'drop', log: false },
    { name: 'p1', action: 'pass' },
    { name: 'rl', protocol: 'tcp', destinationPorts: 22, action: 'rate-limit', rateLimit: { packetsPerSecond: 5 } },
  ];
  it('nothing logs by default: rate 0, no flags', () => {
    const c = compileLog(fastpathSchema.parse({ rules }));
    assert.equal(c.rate, 0);
    assert.deepEqual(bitList(c.rules), []);
    assert.equal(FEAT.log, 1 << 11);
  });
  it('drops: true logs drop and rate-limit rules unless log: false, and the pseudo rules', () => {
    const c = compileLog(fastpathSchema.parse({ rules, log: { drops: true, rate: 50 } }));
    assert.deepEqual(bitList(c.rules), [0, 3]);
    assert.equal(c.flags, LOG_FLAGS.defaultDrop | LOG_FLAGS.blocked);
    assert.deepEqual([c.rate, c.burst], [50, 50]);
  });
  it('a rule can log on its own; log: true on a pass rule is refused with its path', () => {
    const c = compileLog(fastpathSchema.parse({ rules: [rules[0], { ...rules[1], log: true }], log: { rate: 10, burst: 3 } }));
    assert.deepEqual(bitList(c.rules), [1]);
    assert.deepEqual([c.rate, c.burst, c.flags], [10, 3, 0]);
    const bad = fastpathSchema.safeParse({ rules: [{ name: 'p', action: 'pass', log: true }] });
    assert.equal(bad.success, false);
    assert.deepEqual(bad.error!.issues[0]!.path, ['rules', 0, 'log']);
  });
});

describe('patronus log lines', () => {
  it('flow, verdict, rule and the sample rate when an event stands for more than itself', () => {
    assert.equal(eventLine({ id: 1, ...ev({ sampleRate: 7 }) }), '2026-11-30 12:00:00.000 xdp rule_drop    r1 wan0 192.0.2.1:4000 -> 192.0.2.2:9 udp (1 of 7)');
    assert.equal(eventLine({ id: 2, ...ev({ proto: 'icmp', sport: 0, dport: 8 << 8 }) }), '2026-11-30 12:00:00.000 xdp rule_drop    r1 wan0 192.0.2.1 -> 192.0.2.2 icmp type 8 code 0');
    assert.match(eventLine({ id: 3, ...ev({ src: '2001:db8::1', dst: '2001:db8::2', dport: 443 }) }), /\[2001:db8::1\]:4000 -> \[2001:db8::2\]:443 udp$/);
  });
});
