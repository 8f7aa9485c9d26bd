/**
 * An IPv6 LAN behind Patronus, with real traffic:
 *
 *   client (SLAAC) --\
 *                     lan0 (2001:db8:61::1/64) gw --wan0 (2001:db8:63::1)-- isp --eth1-- srv (2001:db8:64::10)
 *   web (2001:db8:61::80) --/
 *
 * radvd advertises the LAN prefix and a DNS server (RDNSS); the client forms
 * its own address and takes the gateway as its default router. Outbound
 * IPv6 is masqueraded (NAT66: the ISP has no route to the LAN prefix), and a
 * v6 port forward [2001:db8:63::1]:8080 -> [2001:db8:61::80]:80 answers the
 * outside. IPv6 forwarding comes from the document alone.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
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
import { linksSubsystem } from '../../src/interfaces/links.js';
import { interfacesSubsystem } from '../../src/interfaces/subsystem.js';
import { routesSubsystem } from '../../src/routing/routes.js';
import { sysctlSubsystem } from '../../src/routing/sysctl.js';
import { nftSubsystem } from '../../src/nft/subsystem.js';
import { radvdSubsystem } from '../../src/services/radvd/subsystem.js';
import { kea6Subsystem } from '../../src/services/kea6/subsystem.js';
import { leases6 } from '../../src/services/kea6/kea6.js';
import { instancePaths } from '../../src/services/common/service.js';
import { domains } from '../../src/domains.js';

const doc = {
  interfaces: [
    { name: 'lan0', zone: 'lan', addresses: ['2001:db8:61::1/64'] },
    { name: 'wan0', zone: 'wan', addresses: ['2001:db8:63::1/64'] },
  ],
  routing: { routes: [{ prefix: '::/0', via: '2001:db8:63::2' }] },
  firewall: {
    zones: [
      { name: 'lan', input: 'accept', forward: 'accept' },
      { name: 'wan', input: 'drop', forward: 'drop' },
    ],
    outboundNat: [{ name: 'lan6-out', interface: 'wan0', source: ['2001:db8:61::/64'] }],
    portForwards: [{ name: 'web6', interface: 'wan0', protocol: 'tcp', port: 8080, target: '2001:db8:61::80', targetPort: 80 }],
  },
  // M flag: addresses from DHCPv6 too (SLAAC stays on: autonomous)
  ra: { interfaces: [{ interface: 'lan0', dns: ['2001:db8:61::1'], searchDomains: ['lan.example'], maxIntervalSeconds: 4, managed: true }] },
  dhcp6: { subnets: [{ subnet: '2001:db8:61::/64', interface: 'lan0', pools: ['2001:db8:61::1000-2001:db8:61::1fff'], dnsServers: ['2001:db8:61::1'] }] },
};

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('IPv6 LAN: RA with prefix and RDNSS, SLAAC client, DHCPv6 lease, NAT66 outbound, v6 port forward', { timeout: 300_000, skip: missing('netns', { cmd: 'nft' }, { cmd: 'radvd' }, { cmd: 'tcpdump' }, { cmd: 'kea-dhcp6' }, { cmd: 'dhclient' }) }, () => {
  const lab = new Lab();
  let client: Netns, web: Netns, gw: Netns, isp: Netns, srv: Netns;
  let host: Host;
  let dir: string;
  let store: Store;
  let engine: Engine;
  const servers: FlowServer[] = [];
  const me = { author: 'test', message: 'ipv6 lan' };
  let slaac = '';

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'pt-v6lan-'));
    [client, web, gw, isp, srv] = [await lab.ns('cli'), await lab.ns('web'), await lab.ns('gw'), await lab.ns('isp'), await lab.ns('srv')];
    // a switch on the LAN side: a bridge in its own namespace joins client, web and the gateway
    const sw = await lab.ns('sw');
    await sw.ip('link', 'add', 'br0', 'type', 'bridge');
    await sw.ip('link', 'set', 'br0', 'up');
    await lab.veth({ ns: client, dev: 'eth0' }, { ns: sw, dev: 's1' });
    await lab.veth({ ns: web, dev: 'eth0', address: '2001:db8:61::80/64' }, { ns: sw, dev: 's2' });
    await lab.veth({ ns: gw, dev: 'lan0' }, { ns: sw, dev: 's3' });
    for (const p of ['s1', 's2', 's3']) await sw.ip('link', 'set', p, 'master', 'br0');
    await web.ip('-6', 'route', 'add', 'default', 'via', '2001:db8:61::1');
    await lab.veth({ ns: gw, dev: 'wan0' }, { ns: isp, dev: 'eth0', address: '2001:db8:63::2/64' });
    await lab.veth({ ns: isp, dev: 'eth1', address: '2001:db8:64::1/64' }, { ns: srv, dev: 'eth0', address: '2001:db8:64::10/64' });
    await srv.ip('-6', 'route', 'add', 'default', 'via', '2001:db8:64::1');
    await isp.sysctl('net.ipv6.conf.all.forwarding', '1');
    host = new Host({ netns: gw.name, stateDir: join(dir, 'gw') });
    store = Store.open(join(dir, 'gw.db'));
    engine = new Engine({ domains, host, store, subsystems: [linksSubsystem, interfacesSubsystem, routesSubsystem, nftSubsystem, sysctlSubsystem, kea6Subsystem, radvdSubsystem] });
    servers.push(await startServer(srv, 'tcp', '::', 9106, 'srv6'));
    servers.push(await startServer(web, 'tcp', '::', 80, 'web6'));
  });

  after(async () => {
    for (const s of servers) s.stop();
    // the client's dhclient -6 went to the background after its lease
    try {
      process.kill(Number((await import('node:fs')).readFileSync(join(dir, 'client6.pid'), 'utf8')), 'SIGKILL');
    } catch {
      /* not started or gone */
    }
    await radvdSubsystem.teardown!(host).catch(() => undefined);
    await kea6Subsystem.teardown!(host).catch(() => undefined);
    engine?.close();
    store?.close();
    await lab.teardown();
    rmSync(dir, { recursive: true, force: true });
  });

  it('plans radvd and IPv6 forwarding (implied), applies; the client gets a SLAAC address, a default router and RDNSS', async () => {
    const plan = formatPlan(await engine.plan({ document: doc }));
    console.log(`# ${plan.replace(/\n/g, '\n# ')}`);
    assert.match(plan, /▶ start radvd/);
    assert.match(plan, /sysctl net\.ipv6\.conf\.all\.forwarding.*0 -> 1/);
    // listen for one router advertisement on the client before radvd starts
    const capture = client.exec('tcpdump', ['-i', 'eth0', '-n', '-vv', '-c', '1', 'icmp6 and ip6[40] == 134'], { reject: false, timeout: 30_000 });
    await sleep(500);
    await engine.apply({ document: doc }, me);
    const ra = await capture;
    const text = `${ra.stdout}\n${ra.stderr}`;
    console.log(`# RA seen by the client:\n# ${ra.stdout.trim().split('\n').join('\n# ')}`);
    assert.match(text, /prefix info option.*\n?.*2001:db8:61::\/64/);
    assert.match(text, /rdnss option[\s\S]*?addr: 2001:db8:61::1/);
    assert.match(text, /dnssl option[\s\S]*?lan\.example/);
    const t0 = Date.now();
    let addr: string | undefined;
    for (; !addr && Date.now() - t0 < 20_000; await sleep(200)) {
      const j = JSON.parse((await client.ip('-6', '-j', 'addr', 'show', 'dev', 'eth0', 'scope', 'global')).stdout) as { addr_info?: { local?: string; tentative?: boolean }[] }[];
      addr = j[0]?.addr_info?.find((a) => a.local?.startsWith('2001:db8:61:') && !a.tentative)?.local;
    }
    assert.ok(addr, 'a SLAAC address in 2001:db8:61::/64');
    slaac = addr;
    console.log(`# client SLAAC address ${addr} after ${Date.now() - t0} ms`);
    const routes = (await client.ip('-6', 'route', 'show', 'default')).stdout;
    assert.match(routes, /default via fe80::\S+ dev eth0 proto ra/);
  });

  it('stateful DHCPv6 (M flag): the client leases an address from the pool with the DNS server', async () => {
    const ra = await client.exec('tcpdump', ['-i', 'eth0', '-n', '-vv', '-c', '1', 'icmp6 and ip6[40] == 134'], { reject: false, timeout: 20_000 });
    assert.match(ra.stdout, /Flags \[managed\]/, 'the RA sends clients to DHCPv6');
    const lf = join(dir, 'client6.leases');
    // the client's own dhclient: -1 (one try), a no-op hook, its own lease and pid files
    const r = await client.exec('dhclient', ['-6', '-1', '-v', '-lf', lf, '-pf', join(dir, 'client6.pid'), '-sf', '/bin/true', 'eth0'], { reject: false, timeout: 30_000 });
    assert.equal(r.exitCode, 0, r.stderr);
    const lease = (await import('node:fs')).readFileSync(lf, 'utf8');
    const got = /iaaddr (2001:db8:61::1[0-9a-f]{3}) /.exec(lease)?.[1];
    assert.ok(got, `an address from the pool in the client's lease:\n${lease}`);
    assert.match(lease, /option dhcp6\.name-servers 2001:db8:61::1;/);
    const server = leases6(instancePaths(host.stateDir, 'kea6'));
    console.log(`# DHCPv6 lease ${got}; Kea's leases: ${server.map((l) => l.address).join(', ')}`);
    assert.ok(server.some((l) => l.address === got), 'Kea recorded the lease');
  });

  it('the client reaches a v6 server beyond the ISP (NAT66 to the WAN address)', async () => {
    const r = await connectOnce(client, 'tcp', '2001:db8:64::10', 9106, 3000);
    assert.ok(r.ok, r.line);
    assert.equal(r.peer, '2001:db8:63::1');
  });

  it('a v6 port forward answers the outside', async () => {
    const r = await connectOnce(isp, 'tcp', '2001:db8:63::1', 8080, 3000);
    assert.ok(r.ok, r.line);
    assert.equal(r.server, 'web6');
    assert.equal(r.peer, '2001:db8:63::2');
    assert.ok((await nftSubsystem.readCounters(host)).find((c) => c.key === 'pf:web6')!.packets > 0);
  });

  it('NPTv6-style prefix translation instead of NAT66: the host bits survive, the prefix is the external one', async () => {
    const npt = { ...doc, firewall: { ...doc.firewall, outboundNat: [], prefixTranslation: [{ name: 'lan-npt', interface: 'wan0', internal: '2001:db8:61::/64', external: '2001:db8:163::/64' }] } };
    await engine.apply({ document: npt }, me);
    // the upstream routes the external prefix to the gateway
    await isp.ip('-6', 'route', 'replace', '2001:db8:163::/64', 'via', '2001:db8:63::1');
    const r = await connectOnce(client, 'tcp', '2001:db8:64::10', 9106, 3000, slaac);
    assert.ok(r.ok, r.line);
    const want = slaac.replace(/^2001:db8:61:/, '2001:db8:163:');
    console.log(`# NPT: ${slaac} left as ${r.peer}`);
    assert.equal(r.peer, want);
    assert.ok((await nftSubsystem.readCounters(host)).find((c) => c.key === 'npt:lan-npt')!.packets > 0);
    await engine.apply({ document: doc }, me);
  });

  it('overlapping RA prefixes are a path-qualified error; nothing changes', async () => {
    const revisions = store.list().length;
    const bad = { ...doc, ra: { interfaces: [{ interface: 'lan0', prefixes: ['2001:db8:61::/64'] }, { interface: 'wan0', prefixes: ['2001:db8:61::/64'] }] } };
    await assert.rejects(engine.apply({ document: bad }, me), (e: unknown) => {
      assert.ok(e instanceof ConfigError, String(e));
      const text = e.issues.map(formatIssue).join('\n');
      console.log(`# ${text}`);
      assert.match(text, /^ra\.interfaces\[1\]\.prefixes\[0\]: 2001:db8:61::\/64 overlaps 2001:db8:61::\/64 \(ra\.interfaces\[0\]\.prefixes\[0\]\)/m);
      return true;
    });
    assert.equal(store.list().length, revisions);
  });

  it('removing ra: and dhcp6: stops radvd and kea-dhcp6', async () => {
    const { ra: _ra, dhcp6: _d6, ...rest } = doc;
    await engine.apply({ document: rest }, me);
    assert.equal(((await radvdSubsystem.status!(host)) as { running: boolean }).running, false);
    assert.equal(((await kea6Subsystem.status!(host)) as { running: boolean }).running, false);
  });
});
