import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { validateDocument, type ConfigInput } from '../../src/domains.js';
import { compileGateways, renderMwanScript, renderGroupUpdate, groupChainRules, activeMembers, wantedRules, detectionTime, type MwanGroup } from '../../src/multiwan/compile.js';
import { HealthWindow } from '../../src/multiwan/monitor.js';
import { formatIssue } from '../../src/config/issues.js';

function compile(gateways: unknown) {
  const v = validateDocument({ interfaces: [{ name: 'wan1', zone: 'wan' }, { name: 'wan2', zone: 'wan' }, { name: 'lan0' }], aliases: [{ name: 'office', type: 'network', entries: ['10.0.1.0/24', '10.0.9.9'] }], gateways } as ConfigInput, () => '');
  if (!v.validated) return { issues: v.issues.map(formatIssue), desired: undefined };
  const r = compileGateways({ openings: [], config: v.validated.config, aliases: v.validated.aliases, readFile: () => '' });
  return { issues: r.issues.map(formatIssue), desired: r.desired };
}

const two = {
  gateways: [
    { name: 'wan1', interface: 'wan1', nextHop: '172.16.1.1', monitor: { intervalMs: 200, window: 10, lossPercent: 20 } },
    { name: 'wan2', interface: 'wan2', nextHop: '172.16.2.1', monitor: { method: 'tcp', target: '198.51.100.53', port: 53 } },
  ],
  groups: [
    { name: 'fo', members: [{ gateway: 'wan1', tier: 1 }, { gateway: 'wan2', tier: 2 }] },
    { name: 'lb', members: [{ gateway: 'wan1', weight: 3 }, { gateway: 'wan2', weight: 1 }] },
  ],
  policies: [{ name: 'office', group: 'lb', interfaces: ['lan0'], source: ['office'] }, { name: 'rest', group: 'fo' }],
};

describe('multi-WAN compiler', () => {
  it('gateways get marks, tables and a detection time', () => {
    const { issues, desired } = compile(two);
    assert.deepEqual(issues, []);
    assert.deepEqual(desired!.gateways.map((g) => [g.name, g.id, g.mark, g.table, g.monitor.target, g.detectionMs]), [
      ['wan1', 1, 0x100, 201, '172.16.1.1', 800],
      ['wan2', 2, 0x200, 202, '198.51.100.53', 2000],
    ]);
    assert.equal(detectionTime({ intervalMs: 100, window: 10, lossPercent: 30 }), 500);
    assert.equal(detectionTime({ intervalMs: 1000, window: 5, lossPercent: 1 }), 3000);
  });

  it('renders one atomic table: inbound stickiness, policies in order, mark restore', () => {
    const { desired } = compile(two);
    const s = renderMwanScript(desired!, new Map());
    assert.match(s, /^# generated[^\n]*\nadd table inet patronus_mwan\ndelete table inet patronus_mwan\ntable inet patronus_mwan \{/);
    const pre = /chain prerouting \{\n([\s\S]*?)\n\t\}/.exec(s)![1]!.split('\n').map((l) => l.trim());
    assert.deepEqual(pre, [
      'type filter hook prerouting priority mangle; policy accept;',
      'ct state new iifname "wan1" ct mark set 0x00000100 comment "patronus:inbound:wan1"',
      'ct state new iifname "wan2" ct mark set 0x00000200 comment "patronus:inbound:wan2"',
      'ct state new ct mark & 0x0000ff00 == 0 iifname "lan0" ip saddr { 10.0.1.0/24, 10.0.9.9/32 } counter jump group_lb comment "patronus:policy:office"',
      'ct state new ct mark & 0x0000ff00 == 0 meta nfproto ipv4 counter jump group_fo comment "patronus:policy:rest"',
      'ct mark & 0x0000ff00 != 0 meta mark set ct mark & 0x0000ff00',
    ]);
    assert.match(s, /chain gw_wan2 \{\n\t\tcounter ct mark set 0x00000200 comment "patronus:gateway:wan2"/);
  });

  it('groups: lowest tier with a gateway up, weights inside it, nothing when all are down', () => {
    const { desired } = compile(two);
    const [fo, lb] = desired!.groups as [MwanGroup, MwanGroup];
    const up = (a: boolean, b: boolean) => new Map([['wan1', a], ['wan2', b]]);
    assert.deepEqual(groupChainRules(fo, desired!.gateways, up(true, true)), ['counter jump gw_wan1 comment "patronus:group:fo"']);
    assert.deepEqual(groupChainRules(fo, desired!.gateways, up(false, true)), ['counter jump gw_wan2 comment "patronus:group:fo"']);
    assert.deepEqual(groupChainRules(fo, desired!.gateways, up(false, false)), ['counter comment "patronus:group:fo"']);
    assert.deepEqual(groupChainRules(lb, desired!.gateways, up(true, true)), ['counter numgen inc mod 4 vmap { 0-2 : jump gw_wan1, 3 : jump gw_wan2 } comment "patronus:group:lb"']);
    assert.deepEqual(activeMembers(lb, up(true, false)).map((m) => m.gateway), ['wan1']);
    assert.equal(
      renderGroupUpdate(desired!, up(false, true)),
      'flush chain inet patronus_mwan group_fo\nadd rule inet patronus_mwan group_fo counter jump gw_wan2 comment "patronus:group:fo"\n' +
        'flush chain inet patronus_mwan group_lb\nadd rule inet patronus_mwan group_lb counter jump gw_wan2 comment "patronus:group:lb"\n',
    );
  });

  it('ip rules: main without default first, then marks, then WAN source addresses', () => {
    const { desired } = compile(two);
    assert.deepEqual(wantedRules(desired!, new Map([['wan1', ['172.16.1.2']], ['wan2', ['172.16.2.2', '172.16.2.3']]])), [
      { pref: 10000, args: ['lookup', 'main', 'suppress_prefixlength', '0'] },
      { pref: 10001, args: ['fwmark', '0x00000100/0x0000ff00', 'lookup', '201'] },
      { pref: 10002, args: ['fwmark', '0x00000200/0x0000ff00', 'lookup', '202'] },
      { pref: 10260, args: ['from', '172.16.1.2', 'lookup', '201'] },
      { pref: 10264, args: ['from', '172.16.2.2', 'lookup', '202'] },
      { pref: 10265, args: ['from', '172.16.2.3', 'lookup', '202'] },
    ]);
    assert.deepEqual(wantedRules(compile({}).desired!, new Map()), []);
  });

  it('reports bad references with paths', () => {
    const { issues } = compile({
      gateways: [
        { name: 'wan1', interface: 'eth7', nextHop: '172.16.1.1', monitor: { method: 'tcp' } },
        { name: 'wan1', interface: 'wan1', nextHop: '172.16.1.1', monitor: { port: 80 } },
      ],
      groups: [{ name: 'g', members: [{ gateway: 'nope' }, { gateway: 'wan1' }, { gateway: 'wan1' }] }],
      policies: [{ name: 'p', group: 'h', source: ['2001:db8::/32', 'zzz'] }],
    });
    assert.deepEqual(issues, [
      'gateways.gateways[0].interface: interface "eth7" is not in interfaces:',
      'gateways.gateways[0].monitor.port: method tcp needs a port',
      'gateways.gateways[1].name: gateway "wan1" is defined twice',
      'gateways.gateways[1].monitor.port: a port is only used with method tcp',
      'gateways.groups[0].members[0].gateway: unknown gateway "nope" (gateways: wan1)',
      'gateways.groups[0].members[2].gateway: gateway "wan1" is in this group twice',
      'gateways.policies[0].group: unknown group "h"',
      'gateways.policies[0].source[0]: 2001:db8::/32: gateways are IPv4 (next hops are IPv4 addresses)',
      'gateways.policies[0].source[1]: unknown alias "zzz"',
    ]);
    assert.ok(compile({ gateways: [{ name: '1bad', interface: 'wan1', nextHop: 'x' }] }).issues.some((i) => i.startsWith('gateways.gateways[0].nextHop:')));
  });
});

describe('gateway health window', () => {
  const m = { window: 10, lossPercent: 30, latencyMs: 100, upAfter: 3 };

  it('goes down at the loss threshold, not before', () => {
    const w = new HealthWindow(m);
    for (let i = 0; i < 10; i++) assert.equal(w.push(true, 1), undefined);
    assert.equal(w.push(false), undefined);
    assert.equal(w.push(false), undefined);
    assert.deepEqual(w.push(false), { state: 'down', reason: '3 of the last 10 probes lost (threshold 30% of 10)' });
    assert.equal(w.state, 'down');
  });

  it('losses spread out over more than the window never add up', () => {
    const w = new HealthWindow(m);
    for (let i = 0; i < 100; i++) assert.equal(w.push(i % 5 !== 0, 1), undefined, `probe ${i}`);
  });

  it('goes down on latency and comes back after upAfter good probes', () => {
    const w = new HealthWindow(m);
    w.push(true, 150);
    w.push(true, 150);
    assert.match(w.push(true, 150)!.reason, /average round trip 150\.0 ms >= 100 ms/);
    assert.equal(w.push(true, 1), undefined);
    assert.equal(w.push(true, 1), undefined);
    assert.equal(w.push(true, 120), undefined, 'a slow probe restarts the count');
    w.push(true, 1);
    w.push(true, 1);
    assert.deepEqual(w.push(true, 1), { state: 'up', reason: '3 consecutive good probes' });
    // the window restarted: one loss does not take it down again
    assert.equal(w.push(false), undefined);
  });

  it('a broken path (link down, route missing) takes it down at once; probes bring it back', () => {
    const w = new HealthWindow(m);
    for (let i = 0; i < 5; i++) w.push(true, 1);
    assert.deepEqual(w.fail('link wan1 is down'), { state: 'down', reason: 'link wan1 is down' });
    assert.equal(w.fail('link wan1 is down'), undefined, 'already down');
    w.push(true, 1);
    w.push(true, 1);
    assert.equal(w.fail('again'), undefined);
    w.push(true, 1);
    w.push(true, 1);
    assert.deepEqual(w.push(true, 1), { state: 'up', reason: '3 consecutive good probes' }, 'the good run restarted at the failure');
  });
});

describe('patronus status', () => {
  it('shows each gateway’s health', async () => {
    const { statusText } = await import('../../src/cli/status.js');
    const text = statusText({ committed: null, running: null, pendingConfirmation: null, reconcile: null, subsystems: [] }, [
      { subsystem: 'gateways', status: { gateways: [{ gateway: 'isp1', state: 'down', lossPercent: 40, rttMs: null, detectionMs: 1000 }, { gateway: 'isp2', state: 'up', lossPercent: 0, rttMs: 0.53, detectionMs: 1500 }], groups: [], events: [] } },
    ]);
    assert.match(text, /gateways\s+isp1 DOWN \(loss 40 %, rtt -, detection <= 1000 ms\); isp2 up \(loss 0 %, rtt 0\.5 ms, detection <= 1500 ms\)/);
  });
});
