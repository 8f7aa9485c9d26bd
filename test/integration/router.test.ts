/**
 * A router out of the box, through the engine, with real traffic:
 *
 *   client (10.61.1.10) --lan0-- gw --wan0-- isp (203.0.113.2) --eth1-- srv (198.51.100.10)
 *                                                                        2001:db8:64::10
 *
 * The gateway namespace starts with ip_forward=0 and no routes beyond its
 * connected networks. Only the document turns forwarding on (implied by
 * masquerade, or `routing: {forwarding: true}` alone), installs the default
 * route (routing.routes, protocol 249, no FRR), keeps nftables counters
 * across applies and a restart, and removes the table when `firewall:` is
 * omitted. Settings and routes go back to what they were when the document
 * stops asking for them.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Lab, type Netns } from '../lib/netns.js';
import { missing } from '../lib/skip.js';
import { startServer, connectOnce, type FlowServer } from '../lib/flows.js';
import { Host } from '../../src/system/host.js';
import { Engine } from '../../src/apply/engine.js';
import { Store } from '../../src/store/store.js';
import { ConfigError, formatIssue } from '../../src/config/issues.js';
import { formatPlan } from '../../src/apply/plan.js';
import { interfacesSubsystem } from '../../src/interfaces/subsystem.js';
import { routesSubsystem, ROUTE_PROTO } from '../../src/routing/routes.js';
import { sysctlSubsystem } from '../../src/routing/sysctl.js';
import { nftSubsystem, listTable } from '../../src/nft/subsystem.js';
import { domains } from '../../src/domains.js';

const SUBSYSTEMS = [interfacesSubsystem, routesSubsystem, nftSubsystem, sysctlSubsystem];

const interfaces = [
  { name: 'lan0', zone: 'lan', addresses: ['10.61.1.1/24'] },
  { name: 'wan0', zone: 'wan', addresses: ['203.0.113.1/24', '2001:db8:63::1/64'] },
];
const firewall = (extraRules: unknown[] = []) => ({
  zones: [
    { name: 'lan', input: 'accept', forward: 'drop' },
    { name: 'wan', input: 'drop', forward: 'drop' },
  ],
  rules: [{ name: 'lan-out', from: 'lan', to: 'wan', action: 'accept' }, ...extraRules],
  outboundNat: [{ name: 'lan-masq', interface: 'wan0', source: ['10.61.1.0/24'], type: 'masquerade' }],
});
const defaultRoutes = [
  { prefix: '0.0.0.0/0', via: '203.0.113.2' },
  { prefix: '::/0', via: '2001:db8:63::2' },
];

describe('a router out of the box (forwarding, kernel routes, counters, omitted firewall)', { timeout: 300_000, skip: missing('netns', { cmd: 'nft' }, { cmd: 'sysctl' }) }, () => {
  const lab = new Lab();
  let client: Netns, gw: Netns, isp: Netns, srv: Netns;
  let host: Host;
  let stateDir: string;
  let store: Store;
  let engine: Engine;
  const servers: FlowServer[] = [];
  const me = { author: 'test', message: 'router' };
  const sysctl = async (key: string) => (await gw.nsenter('sysctl', ['-n', key])).stdout.trim();
  const patronusRoutes = async (family: 4 | 6) => JSON.parse((await gw.ip(`-${family}`, '-j', 'route', 'show', 'proto', String(ROUTE_PROTO))).stdout) as { dst: string; gateway?: string }[];

  before(async () => {
    stateDir = mkdtempSync(join(tmpdir(), 'pt-router-'));
    [client, gw, isp, srv] = [await lab.ns('cli'), await lab.ns('gw'), await lab.ns('isp'), await lab.ns('srv')];
    // the gateway's own addresses come from the document
    await lab.veth({ ns: client, dev: 'eth0', address: '10.61.1.10/24' }, { ns: gw, dev: 'lan0' });
    await lab.veth({ ns: gw, dev: 'wan0' }, { ns: isp, dev: 'eth0', address: '203.0.113.2/24' });
    await isp.ip('addr', 'add', '2001:db8:63::2/64', 'dev', 'eth0', 'nodad');
    await lab.veth({ ns: isp, dev: 'eth1', address: '198.51.100.1/24' }, { ns: srv, dev: 'eth0', address: '198.51.100.10/24' });
    await isp.ip('addr', 'add', '2001:db8:64::1/64', 'dev', 'eth1', 'nodad');
    await srv.ip('addr', 'add', '2001:db8:64::10/64', 'dev', 'eth0', 'nodad');
    await isp.sysctl('net.ipv4.ip_forward', '1');
    await isp.sysctl('net.ipv6.conf.all.forwarding', '1');
    await client.ip('route', 'add', 'default', 'via', '10.61.1.1');
    await srv.ip('route', 'add', 'default', 'via', '198.51.100.1');
    await srv.ip('-6', 'route', 'add', 'default', 'via', '2001:db8:64::1');
    // the ISP knows nothing about the LAN: only masquerade makes replies come back
    host = new Host({ netns: gw.name, stateDir });
    store = Store.open(join(stateDir, 'patronus.db'));
    engine = new Engine({ domains, host, store, subsystems: SUBSYSTEMS });
    servers.push(await startServer(isp, 'tcp', '0.0.0.0', 9000, 'isp'));
    servers.push(await startServer(srv, 'tcp', '0.0.0.0', 9100, 'srv'));
    servers.push(await startServer(srv, 'tcp', '::', 9106, 'srv6'));
  });

  after(async () => {
    for (const s of servers) s.stop();
    engine?.close();
    store?.close();
    await lab.teardown();
    rmSync(stateDir, { recursive: true, force: true });
  });

  it('masquerade alone turns IPv4 forwarding on (shown in plan); LAN -> WAN works with real traffic', async () => {
    assert.equal(await sysctl('net.ipv4.ip_forward'), '0', 'a new namespace starts without forwarding');
    const doc = { interfaces, firewall: firewall() };
    const plan = formatPlan(await engine.plan({ document: doc }));
    console.log(`# ${plan.replace(/\n/g, '\n# ')}`);
    assert.match(plan, /sysctl net\.ipv4\.ip_forward.*0 -> 1 \(implied by firewall\.outboundNat\)/);
    assert.match(plan, /sysctl net\.ipv6\.conf\.all\.forwarding.*0 -> 1/);
    await engine.apply({ document: doc }, me);
    assert.equal(await sysctl('net.ipv4.ip_forward'), '1');
    assert.equal(await sysctl('net.ipv6.conf.all.forwarding'), '1');
    const r = await connectOnce(client, 'tcp', '203.0.113.2', 9000, 3000);
    assert.ok(r.ok, r.line);
    assert.equal(r.peer, '203.0.113.1', 'the ISP sees the masqueraded WAN address');
    assert.deepEqual((await engine.plan({ document: doc })).subsystems.flatMap((s) => s.changes), [], 'nothing left to change');
  });

  it('routing: {forwarding: true} alone turns forwarding on; removing it restores the original value', async () => {
    await engine.apply({ document: {}, allowEmpty: true }, me);
    assert.equal(await sysctl('net.ipv4.ip_forward'), '0', 'restored when nothing asks for it');
    assert.equal(await sysctl('net.ipv6.conf.all.forwarding'), '0');
    const doc = { routing: { forwarding: true } };
    const plan = formatPlan(await engine.plan({ document: doc }));
    assert.match(plan, /sysctl net\.ipv4\.ip_forward.*0 -> 1 \(routing\.forwarding\)/);
    await engine.apply({ document: doc }, me);
    assert.equal(await sysctl('net.ipv4.ip_forward'), '1');
    // an explicit false wins over what the document implies
    await engine.apply({ document: { interfaces, firewall: firewall(), routing: { forwarding: { ipv4: false } } } }, me);
    assert.equal(await sysctl('net.ipv4.ip_forward'), '0');
    assert.equal((await connectOnce(client, 'tcp', '203.0.113.2', 9000, 800)).ok, false, 'no forwarding, no traffic');
    // rp_filter and bridge netfilter, restored afterwards
    const before = { rp: await sysctl('net.ipv4.conf.all.rp_filter'), bnf: await sysctl('net.bridge.bridge-nf-call-iptables') };
    await engine.apply({ document: { interfaces, routing: { rpFilter: 'loose', bridgeNetfilter: before.bnf === '1' ? false : true } } }, me);
    assert.equal(await sysctl('net.ipv4.conf.all.rp_filter'), '2');
    assert.equal(await sysctl('net.ipv4.conf.wan0.rp_filter'), '2');
    assert.notEqual(await sysctl('net.bridge.bridge-nf-call-iptables'), before.bnf);
    await engine.apply({ document: {}, allowEmpty: true }, me);
    assert.equal(await sysctl('net.ipv4.conf.all.rp_filter'), before.rp);
    assert.equal(await sysctl('net.bridge.bridge-nf-call-iptables'), before.bnf);
  });

  it('a static default route without FRR (v4 and v6, protocol 249): real traffic beyond the ISP', async () => {
    const doc = { interfaces, firewall: firewall(), routing: { routes: defaultRoutes } };
    const plan = formatPlan(await engine.plan({ document: doc }));
    assert.match(plan, /\+ route 0\.0\.0\.0\/0.*via 203\.0\.113\.2/);
    await engine.apply({ document: doc }, me);
    assert.deepEqual((await patronusRoutes(4)).map((r) => [r.dst, r.gateway]), [['default', '203.0.113.2']]);
    assert.deepEqual((await patronusRoutes(6)).map((r) => [r.dst, r.gateway]), [['default', '2001:db8:63::2']]);
    assert.ok(!existsSync(join(stateDir, 'services', 'frr')), 'no FRR instance');
    const r = await connectOnce(client, 'tcp', '198.51.100.10', 9100, 3000);
    assert.ok(r.ok, r.line);
    assert.equal(r.peer, '203.0.113.1');
    const r6 = await connectOnce(gw, 'tcp', '2001:db8:64::10', 9106, 3000);
    assert.ok(r6.ok, `the gateway itself reaches the v6 server by its v6 default route: ${r6.line}`);
    // a host route of someone else is never touched
    await gw.ip('route', 'add', '192.0.2.0/24', 'via', '203.0.113.2');
    await engine.apply({ document: { interfaces, firewall: firewall() } }, me);
    assert.deepEqual(await patronusRoutes(4), [], 'Patronus removed its own route');
    assert.ok(JSON.parse((await gw.ip('-j', 'route', 'show', '192.0.2.0/24')).stdout).length === 1, 'the host route stayed');
  });

  it('a route via an unreachable gateway is a path-qualified validation error; nothing changes', async () => {
    await engine.apply({ document: { interfaces, firewall: firewall(), routing: { routes: defaultRoutes } } }, me);
    const revisions = store.list().length;
    const routesBefore = (await gw.ip('-j', 'route', 'show')).stdout;
    const bad = { interfaces, firewall: firewall(), routing: { routes: [...defaultRoutes, { prefix: '10.99.0.0/16', via: '192.0.2.99' }] } };
    await assert.rejects(engine.apply({ document: bad }, me), (e: unknown) => {
      assert.ok(e instanceof ConfigError, String(e));
      const text = e.issues.map(formatIssue).join('\n');
      console.log(`# ${text}`);
      assert.match(text, /^routing\.routes\[2\]\.via: gateway 192\.0\.2\.99 is unreachable/m);
      return true;
    });
    assert.equal(store.list().length, revisions, 'no revision recorded');
    assert.equal((await gw.ip('-j', 'route', 'show')).stdout, routesBefore, 'routes unchanged');
  });

  it('nftables counters keep their values across a changed document (rule kept) and a restart', async () => {
    const doc = { interfaces, firewall: firewall(), routing: { routes: defaultRoutes } };
    await engine.apply({ document: doc }, me);
    for (let i = 0; i < 3; i++) assert.ok((await connectOnce(client, 'tcp', '198.51.100.10', 9100, 3000)).ok);
    const read = async () => new Map((await nftSubsystem.readCounters(host)).map((c) => [c.key, `${c.packets}/${c.bytes}`]));
    // the connections' last segments (FIN/ACK) may still be in flight: read once the rule counters stand
    // still (bounded: built-in counters also count background traffic such as ND, which need never stop)
    const settled = async () => {
      const rules = (m: Map<string, string>) => JSON.stringify([...m].filter(([k]) => k.startsWith('rule:')));
      for (let prev = await read(), end = Date.now() + 60_000; ; ) {
        await new Promise((r) => setTimeout(r, 300));
        const next = await read();
        if (rules(next) === rules(prev)) return next;
        assert.ok(Date.now() < end, `rule counters still moving after 60 s: ${rules(next)}`);
        prev = next;
      }
    };
    const before = await settled();
    assert.ok(Number(before.get('rule:lan-out')!.split('/')[0]) >= 3, `lan-out counted: ${before.get('rule:lan-out')}`);
    // a changed document: one more rule, lan-out kept
    await engine.apply({ document: { ...doc, firewall: firewall([{ name: 'extra', from: 'wan', protocol: 'tcp', ports: [22], action: 'drop' }]) } }, me);
    const afterChange = await read();
    // rule counters of this test's own traffic: exact; built-in ones also count background traffic (ND, late segments): never lower
    const kept = (from: Map<string, string>, to: Map<string, string>, when: string) => {
      for (const [k, v] of from) {
        if (Number(v.split('/')[0]) === 0) continue;
        if (k.startsWith('rule:')) assert.equal(to.get(k), v, `${k} kept its count ${when}`);
        else assert.ok(Number(to.get(k)?.split('/')[0]) >= Number(v.split('/')[0]), `${k} not reset ${when}: ${v} -> ${to.get(k)}`);
      }
    };
    kept(before, afterChange, 'across the re-apply');
    assert.equal(afterChange.get('rule:extra'), '0/0');
    // a restart: a new engine reconciles the committed revision (replacing the table once more)
    engine.close();
    engine = new Engine({ domains, host, store, subsystems: SUBSYSTEMS });
    const rec = await engine.reconcile();
    assert.equal(rec.error, undefined);
    const afterRestart = await read();
    kept(afterChange, afterRestart, 'across a restart');
    // and they keep counting from there
    assert.ok((await connectOnce(client, 'tcp', '198.51.100.10', 9100, 3000)).ok);
    assert.ok(Number((await read()).get('rule:lan-out')!.split('/')[0]) > Number(afterRestart.get('rule:lan-out')!.split('/')[0]));
  });

  it('omitting firewall: removes table inet patronus', async () => {
    assert.notEqual(await listTable(host), undefined);
    const doc = { interfaces, routing: { routes: defaultRoutes, forwarding: true } };
    const plan = formatPlan(await engine.plan({ document: doc }));
    assert.match(plan, /- table inet patronus/);
    await engine.apply({ document: doc }, me);
    assert.equal(await listTable(host), undefined);
    const { stdout } = await gw.nsenter('nft', ['list', 'tables']);
    assert.equal(stdout.trim(), '');
  });
});
