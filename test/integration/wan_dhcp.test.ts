/**
 * WAN addressing by DHCP against a real Kea server in the "internet":
 *
 *   client (10.63.1.10) --lan0-- gw --wan0 (DHCP)-- isp (203.0.113.2, Kea; 198.51.100.1 on lo)
 *
 * The gateway's WAN address and default route come from the lease only;
 * LAN traffic is masqueraded to it and reaches 198.51.100.1 (beyond the ISP,
 * so only the default route gets there). Then the ISP hands out another
 * address: the gateway's address, default route and NAT follow without a
 * new revision.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Lab, type Netns } from '../lib/netns.js';
import { missing } from '../lib/skip.js';
import { startServer, connectOnce, type FlowServer } from '../lib/flows.js';
import { Host } from '../../src/system/host.js';
import { Engine } from '../../src/apply/engine.js';
import { Store } from '../../src/store/store.js';
import { formatPlan } from '../../src/apply/plan.js';
import { linksSubsystem } from '../../src/interfaces/links.js';
import { interfacesSubsystem } from '../../src/interfaces/subsystem.js';
import { routesSubsystem } from '../../src/routing/routes.js';
import { sysctlSubsystem } from '../../src/routing/sysctl.js';
import { nftSubsystem } from '../../src/nft/subsystem.js';
import { dhclientSubsystem } from '../../src/services/dhclient/dhclient.js';
import { keaSubsystem } from '../../src/services/kea/subsystem.js';
import { daemonPid } from '../../src/services/common/daemon.js';
import { domains } from '../../src/domains.js';

const GW_SUBSYSTEMS = [linksSubsystem, interfacesSubsystem, routesSubsystem, nftSubsystem, sysctlSubsystem, dhclientSubsystem];

const gwDoc = {
  interfaces: [
    { name: 'lan0', zone: 'lan', addresses: ['10.63.1.1/24'] },
    { name: 'wan0', zone: 'wan', dhcp: true },
  ],
  firewall: {
    zones: [
      { name: 'lan', input: 'accept', forward: 'accept' },
      { name: 'wan', input: 'drop', forward: 'drop' },
    ],
    outboundNat: [{ name: 'lan-out', interface: 'wan0', source: ['10.63.1.0/24'] }],
  },
};

const ispDoc = (mac: string, address: string) => ({
  interfaces: [{ name: 'eth0', zone: 'lan' }],
  dhcp: {
    enabled: true,
    validLifetime: 600,
    subnets: [{ subnet: '203.0.113.0/24', interface: 'eth0', pools: ['203.0.113.100-203.0.113.110'], router: '203.0.113.2', dnsServers: ['203.0.113.53'], reservations: [{ mac, address }] }],
  },
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('WAN address by DHCP (dhclient) from a real Kea server, then changed', { timeout: 300_000, skip: missing('netns', { cmd: 'nft' }, { cmd: 'dhclient' }, { cmd: 'kea-dhcp4' }) }, () => {
  const lab = new Lab();
  let client: Netns, gw: Netns, isp: Netns;
  let gwHost: Host, ispHost: Host;
  let dir: string;
  let gwStore: Store, ispStore: Store;
  let gwEngine: Engine, ispEngine: Engine;
  let mac: string;
  const servers: FlowServer[] = [];
  const me = { author: 'test', message: 'wan dhcp' };

  const wanAddresses = async () => ((JSON.parse((await gw.ip('-4', '-j', 'addr', 'show', 'dev', 'wan0')).stdout) as { addr_info?: { local: string; prefixlen: number }[] }[])[0]?.addr_info ?? []).map((a) => `${a.local}/${a.prefixlen}`);
  const defaults = async () => (JSON.parse((await gw.ip('-4', '-j', 'route', 'show', 'default')).stdout) as { gateway: string; dev: string; protocol: string }[]).map((r) => `${r.gateway} ${r.dev} ${r.protocol}`);
  async function leaseIs(address: string, limitMs: number): Promise<number> {
    const t0 = Date.now();
    for (;;) {
      const l = dhclientSubsystem.lease(gwHost, 'wan0');
      if (l?.address === address && (await wanAddresses()).includes(address)) return Date.now() - t0;
      if (Date.now() - t0 > limitMs) assert.fail(`no lease of ${address} within ${limitMs} ms: lease ${JSON.stringify(l)}, wan0 ${JSON.stringify(await wanAddresses())}`);
      await sleep(100);
    }
  }

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'pt-wandhcp-'));
    [client, gw, isp] = [await lab.ns('cli'), await lab.ns('gw'), await lab.ns('isp')];
    await lab.veth({ ns: client, dev: 'eth0', address: '10.63.1.10/24' }, { ns: gw, dev: 'lan0' });
    await lab.veth({ ns: gw, dev: 'wan0' }, { ns: isp, dev: 'eth0', address: '203.0.113.2/24' });
    await isp.ip('addr', 'add', '198.51.100.1/32', 'dev', 'lo');
    await client.ip('route', 'add', 'default', 'via', '10.63.1.1');
    mac = await gw.mac('wan0');
    gwHost = new Host({ netns: gw.name, stateDir: join(dir, 'gw') });
    ispHost = new Host({ netns: isp.name, stateDir: join(dir, 'isp') });
    gwStore = Store.open(join(dir, 'gw.db'));
    ispStore = Store.open(join(dir, 'isp.db'));
    gwEngine = new Engine({ domains, host: gwHost, store: gwStore, subsystems: GW_SUBSYSTEMS, lockPath: join(dir, 'gw.lock') });
    ispEngine = new Engine({ domains, host: ispHost, store: ispStore, subsystems: [keaSubsystem], lockPath: join(dir, 'isp.lock') });
    await ispEngine.apply({ document: ispDoc(mac, '203.0.113.50') }, me);
    servers.push(await startServer(isp, 'tcp', '0.0.0.0', 9000, 'isp'));
  });

  after(async () => {
    for (const s of servers) s.stop();
    await dhclientSubsystem.teardown!(gwHost).catch((e: unknown) => console.error(`# ${(e as Error).message}`));
    await keaSubsystem.teardown!(ispHost).catch(() => undefined);
    for (const e of [gwEngine, ispEngine]) e?.close();
    for (const s of [gwStore, ispStore]) s?.close();
    await lab.teardown();
    rmSync(dir, { recursive: true, force: true });
  });

  it('gets its WAN address and default route from the lease; LAN traffic is masqueraded to it and routed beyond the ISP', async () => {
    const resolv = readFileSync('/etc/resolv.conf', 'utf8');
    const plan = formatPlan(await gwEngine.plan({ document: gwDoc }));
    assert.match(plan, /▶ start dhclient on wan0/);
    await gwEngine.apply({ document: gwDoc }, me);
    const ms = await leaseIs('203.0.113.50/24', 20_000);
    assert.equal(readFileSync('/etc/resolv.conf', 'utf8'), resolv, "the host's resolv.conf is untouched (the lease named a DNS server)");
    console.log(`# lease 203.0.113.50/24 on wan0 ${ms} ms after the apply returned`);
    assert.deepEqual(await defaults(), ['203.0.113.2 wan0 dhcp']);
    const lease = dhclientSubsystem.lease(gwHost, 'wan0')!;
    assert.deepEqual(lease.routers, ['203.0.113.2']);
    assert.deepEqual(lease.dns, ['203.0.113.53']);
    const r = await connectOnce(client, 'tcp', '198.51.100.1', 9000, 3000);
    assert.ok(r.ok, r.line);
    assert.equal(r.peer, '203.0.113.50');
    const st = (await dhclientSubsystem.status!(gwHost)) as { interface: string; pid: number | null }[];
    assert.ok(st[0]?.pid, 'dhclient runs');
    assert.deepEqual((await gwEngine.plan({ document: gwDoc })).subsystems.flatMap((s) => s.changes), [], 'nothing left to do');
  });

  it('a new address from the server: address, default route and NAT follow, no new revision', async () => {
    const revisions = gwStore.list().length;
    await ispEngine.apply({ document: ispDoc(mac, '203.0.113.51') }, me);
    // the client learns it at its next contact with the server: here a restart of the client
    // (a gateway reboot, a crashed dhclient), converged again by start-up reconciliation
    const pid = daemonPid(join(dir, 'gw', 'services', 'dhclient', 'wan0', 'dhclient.pid'), 'dhclient')!;
    process.kill(pid, 'SIGKILL');
    // gone, or a zombie nobody reaps (dhclient forks away from us; PID 1 of a container may not reap): bounded
    const gone = () => {
      try {
        return /^ Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^\d+ \(.*\)/, ''));
      } catch {
        return true;
      }
    };
    for (const end = Date.now() + 30_000; !gone(); await sleep(20)) assert.ok(Date.now() < end, `dhclient (pid ${pid}) still alive 30 s after SIGKILL`);
    const rec = await gwEngine.reconcile();
    assert.equal(rec.error, undefined);
    const ms = await leaseIs('203.0.113.51/24', 30_000);
    console.log(`# new lease 203.0.113.51/24 ${ms} ms after reconciliation`);
    assert.deepEqual(await wanAddresses(), ['203.0.113.51/24'], 'the old address is gone');
    assert.deepEqual(await defaults(), ['203.0.113.2 wan0 dhcp']);
    const r = await connectOnce(client, 'tcp', '198.51.100.1', 9000, 3000);
    assert.ok(r.ok, r.line);
    assert.equal(r.peer, '203.0.113.51', 'masquerade uses the new address');
    assert.equal(gwStore.list().length, revisions, 'no new revision');
  });

  it('dropping dhcp stops the client and removes its address and route', async () => {
    await gwEngine.apply({ document: { ...gwDoc, interfaces: [gwDoc.interfaces[0]!, { name: 'wan0', zone: 'wan' }] } }, me);
    assert.deepEqual(await wanAddresses(), []);
    assert.deepEqual(await defaults(), []);
  });
});
