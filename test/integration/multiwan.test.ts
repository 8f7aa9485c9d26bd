/**
 * Multi-WAN with two WAN namespaces and real TCP:
 *
 *   lan (10.0.1.10, 10.0.1.11) --lan0-- gw --wan1-- isp1 (172.16.1.1; 198.51.100.1 on lo)
 *                                          \--wan2-- isp2 (172.16.2.1; 198.51.100.1 on lo)
 *
 * Both ISPs answer on 198.51.100.1:9000 with their own name, so each
 * connection shows which WAN carried it. 10.0.1.10 uses a failover group
 * (wan1 tier 1, wan2 tier 2), 10.0.1.11 a load-balancing group (wan1 weight
 * 3, wan2 weight 1). The gateway runs Patronus' firewall (masquerade on both
 * WANs) and multi-WAN with ICMP (wan1) and TCP (wan2) monitoring every 200 ms.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Lab, type Netns } from '../lib/netns.js';
import { missing } from '../lib/skip.js';
import { startServer, connectOnce, Session, type FlowServer, type FlowResult } from '../lib/flows.js';
import { Host } from '../../src/system/host.js';
import { validateDocument, type ConfigInput } from '../../src/domains.js';
import { nftSubsystem } from '../../src/nft/subsystem.js';
import { multiwanSubsystem, type MwanDesired } from '../../src/multiwan/subsystem.js';
import { formatIssue } from '../../src/config/issues.js';
import type { CompileContext } from '../../src/apply/subsystem.js';

const monitor = { method: 'icmp', intervalMs: 200, window: 10, lossPercent: 30, latencyMs: 200, upAfter: 3 };
// the configured detection bound holds on an idle machine; on a loaded 2-core CI machine the probe timers
// slip: time bounds get this much on top (the times themselves are printed), waits for conditions more
const LOAD_SLACK_MS = 3000;
const doc = (gatewaysExtra: Record<string, unknown> = {}): ConfigInput =>
  ({
    interfaces: [
      { name: 'lan0', zone: 'lan' },
      { name: 'wan1', zone: 'wan' },
      { name: 'wan2', zone: 'wan' },
    ],
    firewall: {
      zones: [{ name: 'lan', input: 'accept', forward: 'accept' }],
      outboundNat: [
        { name: 'wan1-out', interface: 'wan1' },
        { name: 'wan2-out', interface: 'wan2' },
      ],
    },
    gateways: {
      gateways: [
        { name: 'wan1', interface: 'wan1', nextHop: '172.16.1.1', monitor },
        // TCP probes to a host beyond the next hop: the whole path is checked
        { name: 'wan2', interface: 'wan2', nextHop: '172.16.2.1', monitor: { ...monitor, method: 'tcp', target: '198.51.100.1', port: 9000 } },
      ],
      groups: [
        { name: 'failover', members: [{ gateway: 'wan1', tier: 1 }, { gateway: 'wan2', tier: 2 }] },
        { name: 'lb', members: [{ gateway: 'wan1', weight: 3 }, { gateway: 'wan2', weight: 1 }] },
      ],
      policies: [
        { name: 'fo', group: 'failover', interfaces: ['lan0'], source: ['10.0.1.10'] },
        { name: 'balance', group: 'lb', interfaces: ['lan0'], source: ['10.0.1.11'] },
      ],
      // the failover group owns the main default route: what no policy matches (the gateway's own traffic) follows it
      defaultRoute: 'failover',
      ...gatewaysExtra,
    },
  }) as ConfigInput;

function context(input: ConfigInput): CompileContext {
  const v = validateDocument(input, () => '');
  assert.ok(v.validated, v.issues.map(formatIssue).join('\n'));
  return { openings: [], config: v.validated.config, aliases: v.validated.aliases, readFile: () => '' };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** p, or a failure naming `what` after ms */
async function withinMs<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, rej) => (t = setTimeout(() => rej(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms)))]);
  } finally {
    clearTimeout(t);
  }
}

describe('multi-WAN failover, load balancing and recovery', { timeout: 300_000, skip: missing('netns', { cmd: 'nft' }, { cmd: 'ping' }) }, () => {
  const lab = new Lab();
  let lan: Netns, gw: Netns, isp1: Netns, isp2: Netns;
  let host: Host;
  let stateDir: string;
  let desired: MwanDesired;
  const servers: FlowServer[] = [];
  const sessions: Session[] = [];
  const t = () => performance.now();

  before(async () => {
    stateDir = mkdtempSync(join(tmpdir(), 'pt-mwan-'));
    [lan, gw, isp1, isp2] = [await lab.ns('lan'), await lab.ns('gw'), await lab.ns('isp1'), await lab.ns('isp2')];
    await lab.veth({ ns: lan, dev: 'eth0', address: '10.0.1.10/24' }, { ns: gw, dev: 'lan0', address: '10.0.1.1/24' });
    await lan.ip('addr', 'add', '10.0.1.11/24', 'dev', 'eth0');
    await lan.ip('route', 'add', 'default', 'via', '10.0.1.1');
    await lab.veth({ ns: gw, dev: 'wan1', address: '172.16.1.2/24' }, { ns: isp1, dev: 'eth0', address: '172.16.1.1/24' });
    await lab.veth({ ns: gw, dev: 'wan2', address: '172.16.2.2/24' }, { ns: isp2, dev: 'eth0', address: '172.16.2.1/24' });
    await gw.sysctl('net.ipv4.ip_forward', '1');
    for (const [ns, name] of [[isp1, 'isp1'], [isp2, 'isp2']] as const) {
      await ns.ip('addr', 'add', '198.51.100.1/32', 'dev', 'lo');
      servers.push(await startServer(ns, 'tcp', '0.0.0.0', 9000, name));
      // bound to the service address: an unbound UDP socket would answer from 172.16.x.1
      servers.push(await startServer(ns, 'udp', '198.51.100.1', 9001, `${name}-udp`));
    }
    host = new Host({ netns: gw.name, stateDir });
    const ctx = context(doc());
    const fw = nftSubsystem.compile(ctx);
    assert.deepEqual(fw.issues, []);
    await nftSubsystem.apply(fw.desired, host);
    const mw = multiwanSubsystem.compile(ctx);
    assert.deepEqual(mw.issues, []);
    desired = mw.desired;
    assert.deepEqual(await multiwanSubsystem.validate!(desired, host), []);
    const plan = await multiwanSubsystem.plan(desired, host);
    console.log(`# plan before the first apply:\n${plan.map((c) => `#   ${c.action} ${c.object}${c.detail ? `: ${c.detail.split('\n')[0]}` : ''}`).join('\n')}`);
    assert.ok(plan.some((c) => c.action === 'start' && c.object === 'gateway monitor'));
    await multiwanSubsystem.apply(desired, host);
    for (const g of desired.gateways) console.log(`# gateway ${g.name}: ${g.monitor.method} ${g.monitor.target}${g.monitor.port ? `:${g.monitor.port}` : ""} every ${g.monitor.intervalMs} ms, window ${g.monitor.window}, loss >= ${g.monitor.lossPercent}%, latency >= ${g.monitor.latencyMs} ms: detection <= ${g.detectionMs} ms`);
  });

  after(async () => {
    await multiwanSubsystem.teardown!(host).catch((e: unknown) => console.error(`# teardown: ${(e as Error).message}`));
    for (const s of servers) s.stop();
    await lab.teardown();
    rmSync(stateDir, { recursive: true, force: true });
  });

  const via = (r: FlowResult) => r.server ?? `(${r.line})`;

  /** Connects from `src` until `want(result)` holds; returns the elapsed ms from `since`. */
  async function until(src: string, want: (r: FlowResult) => boolean, since: number, limitMs: number): Promise<{ ms: number; tries: number; last: FlowResult }> {
    let tries = 0;
    for (;;) {
      tries++;
      const r = await connectOnce(lan, 'tcp', '198.51.100.1', 9000, 250, src);
      if (want(r)) return { ms: t() - since, tries, last: r };
      if (t() - since > limitMs) assert.fail(`not within ${limitMs} ms after ${tries} tries: last ${r.line}`);
    }
  }

  it('is converged: routes, rules, marks; a second apply plans nothing', async () => {
    const rules = (await gw.nsenter('ip', ['-4', 'rule', 'show'])).stdout;
    console.log(`# ip rules:\n${rules.trim().replace(/^/gm, '#   ')}`);
    assert.match(rules, /10000:\s+from all lookup main suppress_prefixlength 0/);
    assert.match(rules, /10001:\s+from all fwmark 0x100\/0xff00 lookup 201/);
    assert.match(rules, /10002:\s+from all fwmark 0x200\/0xff00 lookup 202/);
    assert.match(rules, /from 172\.16\.1\.2 lookup 201/);
    assert.match((await gw.nsenter('ip', ['route', 'show', 'table', '202'])).stdout, /default via 172\.16\.2\.1 dev wan2/);
    assert.match((await gw.nsenter('ip', ['route', 'show', 'table', 'main', 'default'])).stdout, /^default via 172\.16\.1\.1 dev wan1 proto 248/, 'the failover group owns the main default route');
    assert.equal(via(await connectOnce(gw, 'tcp', '198.51.100.1', 9000, 1000)), 'isp1', "the gateway's own traffic follows it");
    const plan = await multiwanSubsystem.plan(desired, host);
    assert.deepEqual(plan, []);
    assert.deepEqual(await multiwanSubsystem.drift!(desired, host), []);
    // a gateway table's default route deleted by hand is drift; apply puts it back
    await gw.nsenter('ip', ['route', 'del', 'default', 'table', '202']);
    // the running monitor follows route deletions and may have put it back already; if not, it is drift
    const found = await multiwanSubsystem.drift!(desired, host);
    if (found.length) assert.deepEqual(found, [{ object: 'route table 202', reason: 'change: default via 172.16.2.1 dev wan2 (gateway wan2)' }]);
    await multiwanSubsystem.apply(desired, host);
    assert.deepEqual(await multiwanSubsystem.drift!(desired, host), []);
    assert.match((await gw.nsenter('ip', ['route', 'show', 'table', '202'])).stdout, /default via 172\.16\.2\.1 dev wan2/);
    const st = (await multiwanSubsystem.status!(host)) as { gateways: { gateway: string; state: string }[] };
    assert.deepEqual(st.gateways.map((g) => [g.gateway, g.state]), [['wan1', 'up'], ['wan2', 'up']]);
  });

  it('load balancing spreads new connections by weight (3:1), failover group uses tier 1', async () => {
    const counts: Record<string, number> = {};
    for (let i = 0; i < 12; i++) {
      const r = await connectOnce(lan, 'tcp', '198.51.100.1', 9000, 1000, '10.0.1.11');
      counts[via(r)] = (counts[via(r)] ?? 0) + 1;
    }
    console.log(`# lb 3:1 over 12 connections: ${JSON.stringify(counts)}`);
    assert.equal(counts.isp1, 9);
    assert.equal(counts.isp2, 3);
    for (let i = 0; i < 3; i++) assert.equal(via(await connectOnce(lan, 'tcp', '198.51.100.1', 9000, 1000, '10.0.1.10')), 'isp1');
    const m = await multiwanSubsystem.metrics!(host);
    console.log(`# new connections per gateway: ${m.rules!.filter((r) => r.rule.startsWith('gateway:')).map((r) => `${r.rule}=${r.packets}`).join(' ')}`);
  });

  it('cutting wan1 moves new connections to wan2 within the detection time; established wan2 flows survive; recovery moves them back', async () => {
    // a long-lived connection on the path that survives (lb sends every 4th new connection to wan2)
    let session: Session | undefined;
    for (let i = 0; i < 8 && !session; i++) {
      const s = new Session(lan, '198.51.100.1', 9000, '10.0.1.11');
      const hello = await s.next();
      if (hello?.startsWith('isp2')) session = s;
      else s.close();
    }
    assert.ok(session, 'a session through wan2');
    try {
      session.send('before');
      assert.equal(await session.next(), 'isp2 echo before');

      // a UDP flow with a fixed 5-tuple through wan1 (the failover group's tier 1)
      const udp = new Session(lan, '198.51.100.1', 9001, '10.0.1.10', 'udp');
      sessions.push(udp);
      assert.equal(await udp.next(), 'ready');
      udp.send('x');
      assert.match((await udp.next()) ?? 'nothing', /^isp1-udp peer=172\.16\.1\.2:/);

      const mon = multiwanSubsystem.monitor(host)!;
      const detection = desired.gateways[0]!.detectionMs;
      const events0 = mon.events.length;
      const cutAt = Date.now();
      const cut = t();
      await isp1.ip('link', 'set', 'eth0', 'down');
      const moved = await until('10.0.1.10', (r) => r.server === 'isp2', cut, detection + 15_000);
      const down = mon.events.slice(events0).find((e) => e.gateway === 'wan1' && e.state === 'down');
      assert.ok(down, 'wan1 marked down');
      const detected = down.at - cutAt;
      console.log(`# cut wan1: monitor marked it down after ${detected} ms (${down.reason}); first new connection via isp2 after ${moved.ms.toFixed(0)} ms (${moved.tries} tries); configured detection <= ${detection} ms`);
      assert.ok(detected <= detection + LOAD_SLACK_MS, `detected in ${detected} ms, configured ${detection} ms`);
      // new connections moved once the nft groups changed; the default route and the conntrack flush come after it
      await withinMs(mon.updatesDone(), 60_000, 'the group update after wan1 went down');
      // every new connection now leaves by wan2, from both groups
      for (const src of ['10.0.1.10', '10.0.1.11', '10.0.1.11', '10.0.1.11', '10.0.1.11']) assert.equal(via(await connectOnce(lan, 'tcp', '198.51.100.1', 9000, 1000, src)), 'isp2');
      // its conntrack entry (pinned to wan1) was flushed when wan1 went down: the same socket now leaves by wan2
      let udpReply: string | undefined;
      for (let i = 0; i < 30 && !udpReply?.startsWith('isp2'); i++) {
        udp.send('y');
        udpReply = await udp.next(300);
      }
      console.log(`# the same UDP socket after failover: ${udpReply}`);
      assert.match(udpReply ?? 'nothing', /^isp2-udp peer=172\.16\.2\.2:/);
      session.send('during');
      assert.equal(await session.next(), 'isp2 echo during', 'the established wan2 connection survives the failover');
      assert.match((await gw.nsenter('ip', ['route', 'show', 'table', 'main', 'default'])).stdout, /^default via 172\.16\.2\.1 dev wan2 proto 248/, 'the group-owned default route moved to wan2');
      assert.equal(via(await connectOnce(gw, 'tcp', '198.51.100.1', 9000, 1000)), 'isp2');

      const st = (await multiwanSubsystem.status!(host)) as { groups: { group: string; active: { gateway: string }[] }[] };
      assert.deepEqual(st.groups.map((g) => [g.group, g.active.map((a) => a.gateway)]), [['failover', ['wan2']], ['lb', ['wan2']]]);

      const events1 = mon.events.length;
      const upAt = Date.now();
      const restore = t();
      await isp1.ip('link', 'set', 'eth0', 'up');
      const back = await until('10.0.1.10', (r) => r.server === 'isp1', restore, 30_000);
      const up = mon.events.slice(events1).find((e) => e.gateway === 'wan1' && e.state === 'up');
      assert.ok(up, 'wan1 marked up');
      console.log(`# restore wan1: up after ${up.at - upAt} ms (${up.reason}); new connections back on isp1 after ${back.ms.toFixed(0)} ms`);
      // the main default route follows the nft groups in the same update: wait for all of it
      await withinMs(mon.updatesDone(), 60_000, 'the group update after wan1 came back');
      const counts: Record<string, number> = {};
      for (let i = 0; i < 8; i++) {
        const r = await connectOnce(lan, 'tcp', '198.51.100.1', 9000, 1000, '10.0.1.11');
        counts[via(r)] = (counts[via(r)] ?? 0) + 1;
      }
      console.log(`# lb after recovery over 8 connections: ${JSON.stringify(counts)}`);
      assert.equal(counts.isp1, 6);
      assert.equal(counts.isp2, 2);
      assert.match((await gw.nsenter('ip', ['route', 'show', 'table', 'main', 'default'])).stdout, /^default via 172\.16\.1\.1 dev wan1 proto 248/, 'and back to wan1');
      session.send('after');
      assert.equal(await session.next(), 'isp2 echo after', 'the established wan2 connection survives the recovery');
      const h = mon.health();
      console.log(`# probes: ${h.map((g) => `${g.gateway} ${g.state} sent=${g.probes} lost=${g.lost} loss=${g.lossPercent.toFixed(0)}% rtt=${g.rttMs?.toFixed(3) ?? '-'} ms`).join('; ')}`);
      for (const e of mon.events) console.log(`#   event +${e.at - cutAt} ms: ${e.gateway} ${e.state} (${e.reason})`);
    } finally {
      session.close();
      for (const x of sessions.splice(0)) x.close();
    }
  });

  it('TCP probes through wan2 detect its failure; balanced traffic then stays on wan1', async () => {
    const mon = multiwanSubsystem.monitor(host)!;
    const detection = desired.gateways[1]!.detectionMs;
    const before = mon.health().find((h) => h.gateway === 'wan2')!;
    assert.ok(before.probes > 10 && before.state === 'up', `wan2 TCP probes answered: ${JSON.stringify(before)}`);
    const n = mon.events.length;
    const cutAt = Date.now();
    await isp2.ip('link', 'set', 'eth0', 'down');
    try {
      while (!mon.events.slice(n).some((e) => e.gateway === 'wan2' && e.state === 'down')) {
        assert.ok(Date.now() - cutAt < detection + 15_000, 'wan2 not marked down');
        await sleep(20);
      }
      const ev = mon.events.slice(n).find((e) => e.gateway === 'wan2')!;
      console.log(`# cut wan2 (tcp probes to 198.51.100.1:9000): down after ${ev.at - cutAt} ms (${ev.reason}); configured detection <= ${detection} ms`);
      assert.ok(ev.at - cutAt <= detection + LOAD_SLACK_MS, `detected in ${ev.at - cutAt} ms, configured ${detection} ms`);
      // the event is recorded before the group update runs (nft, route, conntrack): connect once it is in the kernel
      await withinMs(mon.updatesDone(), 60_000, 'the group update after wan2 went down');
      for (let i = 0; i < 4; i++) assert.equal(via(await connectOnce(lan, 'tcp', '198.51.100.1', 9000, 1000, '10.0.1.11')), 'isp1');
    } finally {
      await isp2.ip('link', 'set', 'eth0', 'up');
    }
  });

  it('teardown removes exactly what apply made', async () => {
    // a rule of the host's own inside Patronus' preference range is not Patronus' to remove
    await gw.ip('rule', 'add', 'pref', '10005', 'from', '10.9.9.9', 'lookup', 'main');
    await multiwanSubsystem.apply(desired, host);
    assert.match((await gw.nsenter('ip', ['-4', 'rule', 'show'])).stdout, /10005:\s+from 10\.9\.9\.9 lookup main/);
    await multiwanSubsystem.teardown!(host);
    assert.match((await gw.nsenter('ip', ['-4', 'rule', 'show'])).stdout, /10005:\s+from 10\.9\.9\.9 lookup main/);
    assert.equal(multiwanSubsystem.monitor(host), undefined);
    const rules = (await gw.nsenter('ip', ['-4', 'rule', 'show'])).stdout;
    assert.doesNotMatch(rules, /lookup 20[12]|suppress_prefixlength/);
    assert.equal((await gw.nsenter('ip', ['route', 'show', 'table', 'main', 'default'])).stdout.trim(), '', 'the group-owned default route is gone');
    assert.equal((await gw.nsenter('ip', ['route', 'show', 'table', '201'], { reject: false })).stdout.trim(), '');
    const tables = (await gw.nsenter('nft', ['list', 'tables'])).stdout;
    assert.doesNotMatch(tables, /patronus_mwan/);
    assert.match(tables, /table inet patronus/);
  });
});
