/**
 * Multi-WAN when a WAN link goes down and up on the gateway itself
 * (`ip link set wan1 down; sleep 2; ip link set wan1 up`): the kernel drops
 * the gateway's default route from its routing table and does not put it
 * back. The monitor follows link and route events: wan1 is reported down
 * while its link is, new connections move to wan2, the route is restored
 * when the link returns, and traffic is back on wan1 within the detection
 * budget.
 *
 *   lan (10.0.1.10) --lan0-- gw --wan1-- isp1 (172.16.1.1; 198.51.100.1 on lo)
 *                              \--wan2-- isp2 (172.16.2.1; 198.51.100.1 on lo)
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Lab, type Netns } from '../lib/netns.js';
import { missing } from '../lib/skip.js';
import { startServer, connectOnce, Session, type FlowServer } from '../lib/flows.js';
import { Host } from '../../src/system/host.js';
import { validateDocument, type ConfigInput } from '../../src/domains.js';
import { nftSubsystem } from '../../src/nft/subsystem.js';
import { multiwanSubsystem, type MwanDesired } from '../../src/multiwan/subsystem.js';
import { formatIssue } from '../../src/config/issues.js';

// the probe target is the next hop, on the link: exactly the case where a probe bound to the interface
// still gets answers after the table lost its route
const monitor = { method: 'icmp', intervalMs: 200, window: 10, lossPercent: 30, latencyMs: 200, upAfter: 3 };
const doc = {
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
      { name: 'wan2', interface: 'wan2', nextHop: '172.16.2.1', monitor },
    ],
    groups: [{ name: 'failover', members: [{ gateway: 'wan1', tier: 1 }, { gateway: 'wan2', tier: 2 }] }],
    policies: [{ name: 'fo', group: 'failover', interfaces: ['lan0'] }],
  },
} as ConfigInput;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** waits for a condition (generously: a loaded machine), failing with what was awaited */
async function eventually(what: string, cond: () => Promise<boolean>, ms = 30_000): Promise<void> {
  for (const end = Date.now() + ms; !(await cond()); await sleep(100)) if (Date.now() > end) assert.fail(`timed out after ${ms} ms waiting for ${what}`);
}

describe('multi-WAN: a WAN link that goes down and up', { timeout: 300_000, skip: missing('netns', { cmd: 'nft' }, { cmd: 'ping' }) }, () => {
  const lab = new Lab();
  let lan: Netns, gw: Netns, isp1: Netns, isp2: Netns;
  let host: Host;
  let stateDir: string;
  let desired: MwanDesired;
  const servers: FlowServer[] = [];

  before(async () => {
    stateDir = mkdtempSync(join(tmpdir(), 'pt-mwanlink-'));
    [lan, gw, isp1, isp2] = [await lab.ns('llan'), await lab.ns('lgw'), await lab.ns('lisp1'), await lab.ns('lisp2')];
    await lab.veth({ ns: lan, dev: 'eth0', address: '10.0.1.10/24' }, { ns: gw, dev: 'lan0', address: '10.0.1.1/24' });
    await lan.ip('route', 'add', 'default', 'via', '10.0.1.1');
    await lab.veth({ ns: gw, dev: 'wan1', address: '172.16.1.2/24' }, { ns: isp1, dev: 'eth0', address: '172.16.1.1/24' });
    await lab.veth({ ns: gw, dev: 'wan2', address: '172.16.2.2/24' }, { ns: isp2, dev: 'eth0', address: '172.16.2.1/24' });
    await gw.sysctl('net.ipv4.ip_forward', '1');
    for (const [ns, name] of [[isp1, 'isp1'], [isp2, 'isp2']] as const) {
      await ns.ip('addr', 'add', '198.51.100.1/32', 'dev', 'lo');
      servers.push(await startServer(ns, 'tcp', '0.0.0.0', 9000, name));
      servers.push(await startServer(ns, 'udp', '198.51.100.1', 9001, `${name}-udp`));
    }
    host = new Host({ netns: gw.name, stateDir });
    const v = validateDocument(doc, () => '');
    assert.ok(v.validated, v.issues.map(formatIssue).join('\n'));
    const ctx = { openings: [], config: v.validated.config, aliases: v.validated.aliases, readFile: () => '' };
    await nftSubsystem.apply(nftSubsystem.compile(ctx).desired, host);
    const mw = multiwanSubsystem.compile(ctx);
    assert.deepEqual(mw.issues, []);
    desired = mw.desired;
    await multiwanSubsystem.apply(desired, host);
  });

  after(async () => {
    await multiwanSubsystem.teardown!(host).catch((e: unknown) => console.error(`# teardown: ${(e as Error).message}`));
    await nftSubsystem.teardown?.(host).catch((e: unknown) => console.error(`# teardown nft: ${(e as Error).message}`));
    for (const s of servers) s.stop();
    await lab.teardown();
    rmSync(stateDir, { recursive: true, force: true });
  });

  // which ISP answers a new connection; 2 s (was 300 ms: a loaded machine answered later and a working
  // path read as 'none'); a working path answers in milliseconds, so the sampling below stays dense
  const via = async () => (await connectOnce(lan, 'tcp', '198.51.100.1', 9000, 2000)).server ?? 'none';
  const gatewayUp = async () => (await multiwanSubsystem.metrics!(host)).services!.find((s) => s.service === 'gateway:wan1')!.up;

  it('wan1 is reported down while its link is, its route comes back, traffic returns within the detection budget', async () => {
    const mon = multiwanSubsystem.monitor(host)!;
    const detection = desired.gateways[0]!.detectionMs;
    await eventually('new connections via isp1 with gateway:wan1 up', async () => (await via()) === 'isp1' && (await gatewayUp()));
    const n = mon.events.length;

    const downAt = Date.now();
    await gw.ip('link', 'set', 'wan1', 'down');
    // while the link is down: reported down, traffic on wan2. Sampled until the report and 2 s (at least
    // 3 samples) after it: a loaded machine may report later than a fixed 2 s window (the bound is below)
    // The group update runs after the report is recorded: samples count from when it is in the kernel.
    const samples: { t: number; up: boolean; via: string }[] = [];
    const findDown = () => mon.events.slice(n).find((e) => e.gateway === 'wan1' && e.state === 'down');
    let updatedAt: number | undefined;
    const updated = (async () => {
      for (const end = downAt + detection + 30_000; !findDown() && Date.now() < end; ) await sleep(20);
      await mon.updatesDone();
      updatedAt = Date.now() - downAt;
    })();
    for (const end = downAt + detection + 30_000; Date.now() < end; await sleep(100)) {
      samples.push({ t: Date.now() - downAt, up: await gatewayUp(), via: await via() });
      if (updatedAt !== undefined && Date.now() - downAt - updatedAt >= 2000 && samples.filter((x) => x.t > updatedAt!).length >= 3) break;
    }
    await updated;
    const down = findDown();
    assert.ok(down, 'wan1 reported down');
    console.log(`# link down: wan1 reported down after ${down.at - downAt} ms (${down.reason}; cause ${down.cause}), groups updated after ${updatedAt} ms; detection budget ${detection} ms`);
    assert.ok(down.at - downAt <= detection + 3000, `down after ${down.at - downAt} ms`);
    // samples begun once the report's group update was in the kernel (and after the detection budget, or
    // 300 ms): down, on wan2. In practice the link event decides within tens of ms; a fixed 300 ms from the
    // link going down read a report or update late on a loaded machine as a failure.
    const late = samples.filter((x) => x.t > Math.max(updatedAt!, Math.min(detection, 300)));
    assert.ok(late.length >= 2 && late.every((x) => !x.up), `gateway:wan1 up while its link was down: ${JSON.stringify(late)}`);
    assert.ok(late.every((x) => x.via === 'isp2'), `traffic on wan2 while wan1 was down: ${JSON.stringify(late.map((x) => x.via))}`);

    const upAt = Date.now();
    await gw.ip('link', 'set', 'wan1', 'up');
    let back = -1;
    while (Date.now() - upAt < detection + 30_000) {
      if ((await via()) === 'isp1') {
        back = Date.now() - upAt;
        break;
      }
      await sleep(20);
    }
    const up = mon.events.slice(n).find((e) => e.gateway === 'wan1' && e.state === 'up');
    console.log(`# link up: traffic back on wan1 after ${back} ms, reported up after ${up ? up.at - upAt : '-'} ms; route repairs: ${JSON.stringify(mon.repairs.map((r) => `+${r.at - upAt} ms ${r.action}`))}`);
    assert.match((await gw.nsenter('ip', ['route', 'show', 'table', '201'])).stdout, /default via 172\.16\.1\.1 dev wan1/, 'the route the kernel removed is back');
    assert.ok(back >= 0, 'traffic never came back to wan1');
    // slack for a loaded 2-core machine (1.6 s seen at load 18 with a 1 s budget); the time is printed above
    assert.ok(back <= detection + 1000 + 3000, `traffic back after ${back} ms; detection budget ${detection} ms`);
    await eventually('gateway:wan1 reported up again', gatewayUp);
    // and it stays there
    await sleep(1500);
    for (let i = 0; i < 3; i++) assert.equal(await via(), 'isp1');
  });

  it('only the monitor target fails (link fine): working TCP connections on wan1 survive, UDP flows move (flushStatesOnDown)', async () => {
    // wan1 probes a host behind isp1 that can disappear while the link and the path stay fine
    await isp1.ip('addr', 'add', '198.51.100.9/32', 'dev', 'lo');
    const d = structuredClone(doc) as any;
    d.gateways.gateways[0].monitor = { ...monitor, target: '198.51.100.9' };
    const v = validateDocument(d, () => '');
    assert.ok(v.validated, v.issues.map(formatIssue).join('\n'));
    await multiwanSubsystem.apply(multiwanSubsystem.compile({ openings: [], config: v.validated.config, aliases: v.validated.aliases, readFile: () => '' }).desired, host);
    const mon = multiwanSubsystem.monitor(host)!;
    await eventually('new connections via isp1 under the new monitor', async () => (await via()) === 'isp1' && (await gatewayUp()));
    const tcp = new Session(lan, '198.51.100.1', 9000);
    const udp = new Session(lan, '198.51.100.1', 9001, undefined, 'udp');
    try {
      assert.match((await tcp.next()) ?? 'nothing', /^isp1 /);
      assert.equal(await udp.next(), 'ready');
      udp.send('x');
      assert.match((await udp.next()) ?? 'nothing', /^isp1-udp /);
      const n = mon.events.length;
      const t0 = Date.now();
      await isp1.ip('addr', 'del', '198.51.100.9/32', 'dev', 'lo');
      while (!mon.events.slice(n).some((e) => e.gateway === 'wan1' && e.state === 'down')) {
        // generous: the time it took is printed below; a loaded machine delays the probes
        assert.ok(Date.now() - t0 < desired.gateways[0]!.detectionMs + 15_000, 'wan1 not marked down');
        await sleep(20);
      }
      const ev = mon.events.slice(n).find((e) => e.gateway === 'wan1')!;
      assert.equal(ev.cause, 'probes');
      assert.equal(mon.pathProblem('wan1'), undefined, 'the path itself is fine');
      // the UDP flow's entry was flushed: the same socket now leaves by wan2
      let reply: string | undefined;
      // the group update and the flush run after the event is recorded (a few nft and conntrack calls)
      for (const until = Date.now() + 15_000; Date.now() < until && !reply?.startsWith('isp2'); ) {
        udp.send('y');
        reply = await udp.next(300);
      }
      assert.match(reply ?? 'nothing', /^isp2-udp /, `the UDP flow moved to wan2 (last reply: ${reply})`);
      assert.equal(await via(), 'isp2', 'new connections avoid wan1');
      // after the flush (the UDP flow moved): the TCP connection pinned to wan1 still works, its entry was kept
      tcp.send('after');
      assert.equal(await tcp.next(), 'isp1 echo after', 'a working TCP connection survives a monitor-only failure');
      console.log(`# monitor-only failure: wan1 down after ${ev.at - t0} ms (${ev.reason}); the TCP connection on wan1 kept working, the UDP flow moved to wan2`);
    } finally {
      tcp.close();
      udp.close();
    }
  });
});
