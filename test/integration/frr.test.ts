/**
 * FRR under Patronus in two namespaces, driven only through the routing:
 * section (compile -> validate -> apply): OSPF adjacency and a BGP session,
 * checked where it matters (the other namespace's kernel routing table),
 * then a live change, bad input, and a daemon that cannot start.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { Lab, type Netns } from '../lib/netns.js';
import { missing } from '../lib/skip.js';
import { applyDocument, compileFor } from '../lib/subsystem.js';
import { Host } from '../../src/system/host.js';
import { ConfigError } from '../../src/config/issues.js';
import { DaemonError, daemonPid, waitFor } from '../../src/services/common/daemon.js';
import { instancePaths, writeRendered } from '../../src/services/common/service.js';
import { frrSubsystem } from '../../src/services/frr/subsystem.js';
import { frrModule, frrBinDir } from '../../src/services/frr/module.js';
import type { FrrStatus } from '../../src/services/frr/status.js';
import type { ConfigInput } from '../../src/config/document.js';
import { Engine, ApplyError } from '../../src/apply/engine.js';
import { Store } from '../../src/store/store.js';
import { domains } from '../../src/domains.js';

const skip = missing('netns', { cmd: 'vtysh' }, { file: path.join(frrBinDir(), 'zebra') }, { file: path.join(frrBinDir(), 'bgpd') }, { file: path.join(frrBinDir(), 'ospfd') });

/** Router `n` (1 or 2): OSPF on the link and a passive loopback /32, BGP AS 6500n announcing two prefixes, exporting one. */
function routing(n: 1 | 2, extra: { announce?: string[] } = {}): ConfigInput {
  const peer = n === 1 ? 2 : 1;
  const announce = extra.announce ?? [`192.168.${200 + n}.0/24`, `192.168.${210 + n}.0/24`];
  return {
    interfaces: [{ name: 'eth1', zone: 'lan' }],
    routing: {
      routerId: `10.255.0.${n}`,
      static: announce.map((prefix) => ({ prefix, blackhole: true })),
      ospf: {
        areas: [
          {
            id: 0,
            interfaces: [
              { name: 'eth1', network: 'point-to-point', helloInterval: 1, deadInterval: 3 },
              { name: 'lo', passive: true },
            ],
          },
        ],
        // tight timers: a two-router lab converges in about a second
        lsaTimers: { minIntervalMs: 0, minArrivalMs: 0 },
      },
      bgp: {
        asn: 65000 + n,
        neighbors: [{ address: `10.9.0.${peer}`, remoteAs: 65000 + peer, interface: 'eth1', keepalive: 1, hold: 3, connectRetry: 1, routeMapOut: 'EXPORT' }],
        networks: announce,
      },
      // export everything but the 192.168.21x.0/24 prefixes: proves prefix-lists and route-maps act
      prefixLists: [{ name: 'NOT-21X', entries: [{ action: 'deny', prefix: '192.168.208.0/21', le: 24 }, { action: 'permit', prefix: '0.0.0.0/0', le: 32 }] }],
      routeMaps: [{ name: 'EXPORT', entries: [{ seq: 10, action: 'permit', match: { prefixList: 'NOT-21X' }, set: { metric: 42 } }] }],
    },
  };
}

function rpkiInstalled(): boolean {
  const modules = readdirSync('/usr/lib').filter((d) => existsSync(`/usr/lib/${d}/frr/modules`)).flatMap((d) => readdirSync(`/usr/lib/${d}/frr/modules`));
  return modules.some((m) => m.startsWith('bgpd_rpki'));
}

/** Adds an IPv6 session and an IPv6 prefix to router n's document. */
function withV6(n: 1 | 2, doc: ConfigInput): ConfigInput {
  const r = (doc as { routing: any }).routing;
  const peer = n === 1 ? 2 : 1;
  r.static.push({ prefix: `2001:db8:${100 + n}::/48`, blackhole: true });
  r.bgp.networks.push(`2001:db8:${100 + n}::/48`);
  r.bgp.neighbors.push({ address: `2001:db8:9::${peer}`, remoteAs: 65000 + peer, keepalive: 1, hold: 3, connectRetry: 1 });
  return doc;
}

/** Router 1's document after the live change and the IPv6 step. */
const docA = () => withV6(1, routing(1, { announce: ['192.168.201.0/24', '192.168.211.0/24', '192.168.221.0/24'] }));

interface KernelRoute {
  dst: string;
  gateway?: string;
  protocol?: string;
  metric?: number;
}

async function kernelRoutes(ns: Netns): Promise<KernelRoute[]> {
  const { stdout } = await ns.ip('-j', 'route', 'show');
  return JSON.parse(stdout) as KernelRoute[];
}

async function waitRoute(ns: Netns, dst: string, protocol: string, timeoutMs = 60_000): Promise<{ route: KernelRoute; ms: number }> {
  const t0 = Date.now();
  for (;;) {
    const route = (await kernelRoutes(ns)).find((r) => r.dst === dst && r.protocol === protocol);
    if (route) return { route, ms: Date.now() - t0 };
    if (Date.now() - t0 > timeoutMs) throw new Error(`no ${protocol} route to ${dst} in ${ns.name} after ${timeoutMs} ms:\n${JSON.stringify(await kernelRoutes(ns))}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('FRR routing in namespaces', { timeout: 300_000, skip }, () => {
  const lab = new Lab();
  let a: Netns;
  let b: Netns;
  let dir: string;
  let hostA: Host;
  let hostB: Host;

  before(async () => {
    a = await lab.ns('ra');
    b = await lab.ns('rb');
    await lab.veth({ ns: a, dev: 'eth1', address: '10.9.0.1/24' }, { ns: b, dev: 'eth1', address: '10.9.0.2/24' });
    await a.ip('addr', 'add', '2001:db8:9::1/64', 'dev', 'eth1', 'nodad');
    await b.ip('addr', 'add', '2001:db8:9::2/64', 'dev', 'eth1', 'nodad');
    await a.ip('addr', 'add', '10.255.0.1/32', 'dev', 'lo');
    await b.ip('addr', 'add', '10.255.0.2/32', 'dev', 'lo');
    dir = mkdtempSync(path.join(os.tmpdir(), 'pt-frr-'));
    hostA = new Host({ netns: a.name, stateDir: path.join(dir, 'a') });
    hostB = new Host({ netns: b.name, stateDir: path.join(dir, 'b') });
  });

  after(async () => {
    for (const h of [hostA, hostB]) await frrSubsystem.teardown?.(h).catch((e) => console.error(`# teardown ${h.where}: ${e}`));
    await lab.teardown();
    rmSync(dir, { recursive: true, force: true });
  });

  it('OSPF and BGP between two namespaces: routes land in the other kernel, policy applied', async () => {
    const t0 = Date.now();
    await Promise.all([applyDocument(frrSubsystem, hostA, routing(1)), applyDocument(frrSubsystem, hostB, routing(2))]);
    const applied = Date.now() - t0;

    const ospf = await waitRoute(b, '10.255.0.1', 'ospf');
    assert.equal(ospf.route.gateway, '10.9.0.1');
    const bgp = await waitRoute(b, '192.168.201.0/24', 'bgp');
    assert.equal(bgp.route.gateway, '10.9.0.1');
    await waitRoute(a, '192.168.202.0/24', 'bgp');
    console.log(`# apply took ${applied} ms; then OSPF route in ${ospf.ms} ms, BGP route in ${bgp.ms} ms`);
    // the route-map denied 192.168.211.0/24 on export
    assert.equal((await kernelRoutes(b)).find((r) => r.dst === '192.168.211.0/24'), undefined, 'route-map must filter 192.168.211.0/24');
    assert.equal(await b.nsenter('sysctl', ['-n', 'net.ipv4.ip_forward']).then((r) => r.stdout.trim()), '1', 'zebra turned forwarding on');

    // traffic follows the BGP route: b reaches a's loopback learned via OSPF
    await b.exec('ping', ['-c3', '-i0.2', '-W1', '10.255.0.1']);

    const st = (await frrSubsystem.status!(hostB)) as { running: boolean; detail: FrrStatus };
    assert.equal(st.running, true);
    const peer = st.detail.bgp!.peers.find((p) => p.address === '10.9.0.1')!;
    assert.equal(peer.established, true);
    assert.equal(peer.prefixesReceived, 1, 'one prefix accepted after the peer\'s export policy');
    assert.equal(st.detail.ospf!.neighbors[0]!.routerId, '10.255.0.1');
    assert.ok(st.detail.routes.ipv4.byProtocol.bgp!.fib >= 1);
    assert.ok(st.detail.routes.ipv4.byProtocol.ospf!.rib >= 1);
    assert.deepEqual(Object.keys(st.detail.daemons).sort(), ['bgpd', 'ospfd', 'staticd', 'zebra']);

    // the same as /metrics sees it
    const m = await frrSubsystem.metrics!(hostB);
    // sent: its own 192.168.202.0/24 and a's 192.168.201.0/24 back (eBGP does; a drops it for the AS loop)
    assert.deepEqual(m.bgpPeers, [{ peer: '10.9.0.1', afi: 'ipv4Unicast', established: true, prefixesReceived: 1, prefixesSent: 2 }]);
    assert.deepEqual(m.ospfNeighbors, [{ routerId: '10.255.0.1', interface: 'eth1', full: true }]);
    assert.ok(m.routes!.some((r) => r.family === 'ipv4' && r.protocol === 'bgp' && r.table === 'fib' && r.count === 1));
    assert.deepEqual(m.services!.map((x) => `${x.service}:${x.up}`), ['frr-zebra:true', 'frr-staticd:true', 'frr-ospfd:true', 'frr-bgpd:true']);
  });

  it('a change is applied live (frr-reload), without restarting daemons', async () => {
    const paths = instancePaths(hostA.stateDir, 'frr');
    const pids = ['zebra', 'ospfd', 'bgpd'].map((d) => daemonPid(path.join(paths.runDir, `${d}.pid`), d));
    const doc = routing(1, { announce: ['192.168.201.0/24', '192.168.211.0/24', '192.168.221.0/24'] });
    assert.deepEqual(
      (await frrSubsystem.plan(await compileFor(frrSubsystem, doc), hostA)).map((c) => c.action),
      ['change', 'reload'],
    );
    await applyDocument(frrSubsystem, hostA, doc);
    const { ms } = await waitRoute(b, '192.168.221.0/24', 'bgp');
    console.log(`# new BGP prefix reached the peer's kernel ${ms} ms after apply returned`);
    assert.deepEqual(['zebra', 'ospfd', 'bgpd'].map((d) => daemonPid(path.join(paths.runDir, `${d}.pid`), d)), pids);
    assert.deepEqual(await frrSubsystem.plan(await compileFor(frrSubsystem, doc), hostA), [], 'converged: nothing left to do');
  });

  it('IPv6: a BGP session over IPv6 carries an IPv6 prefix (its own address family)', async () => {
    const tApply = Date.now();
    await Promise.all([applyDocument(frrSubsystem, hostA, docA()), applyDocument(frrSubsystem, hostB, withV6(2, routing(2)))]);
    // the IPv4 session was not touched by the change: up since before it
    const v4 = ((await frrSubsystem.status!(hostB)) as { detail: FrrStatus }).detail.bgp!.peers.find((p) => p.address === '10.9.0.1')!;
    assert.equal(v4.established, true);
    assert.ok(v4.uptimeMs >= Date.now() - tApply - 1000, `IPv4 session up ${v4.uptimeMs} ms: it was reset by the change`);
    const t0 = Date.now();
    for (;;) {
      const { stdout } = await b.ip('-j', '-6', 'route', 'show', '2001:db8:101::/48');
      const r = (JSON.parse(stdout) as KernelRoute[])[0];
      if (r?.protocol === 'bgp') {
        assert.equal(r.gateway?.startsWith('fe80::') || r.gateway === '2001:db8:9::1', true, `next hop ${r.gateway}`);
        break;
      }
      if (Date.now() - t0 > 60_000) throw new Error(`no IPv6 BGP route in ${b.name}: ${stdout}`);
      await new Promise((res) => setTimeout(res, 100));
    }
    console.log(`# IPv6 prefix over the IPv6 session in ${Date.now() - t0} ms`);
    const m = await frrSubsystem.metrics!(hostB);
    assert.ok(m.bgpPeers!.some((p) => p.peer === '2001:db8:9::1' && p.afi === 'ipv6Unicast' && p.established && p.prefixesReceived === 1));
    // the IPv4 session carries no IPv6 routes and vice versa
    assert.ok(m.bgpPeers!.every((p) => (p.peer.includes(':') ? p.afi === 'ipv6Unicast' : p.afi === 'ipv4Unicast')));
  });

  it('a daemon that died is started again by the next apply, and its sessions come back', async () => {
    const paths = instancePaths(hostA.stateDir, 'frr');
    const pid = daemonPid(path.join(paths.runDir, 'bgpd.pid'), 'bgpd')!;
    await waitRoute(b, '192.168.201.0/24', 'bgp');
    process.kill(pid, 'SIGKILL');
    await waitFor(async () => (await kernelRoutes(b)).every((r) => r.dst !== '192.168.201.0/24'), 30_000, 'the peer to drop the route (hold time 3 s; 30 s for a loaded machine)');
    const doc = docA();
    assert.deepEqual((await frrSubsystem.plan(await compileFor(frrSubsystem, doc), hostA)).map((c) => `${c.action} ${c.object}`), ['start frr']);
    await applyDocument(frrSubsystem, hostA, doc);
    const { ms } = await waitRoute(b, '192.168.201.0/24', 'bgp');
    assert.notEqual(daemonPid(path.join(paths.runDir, 'bgpd.pid'), 'bgpd'), pid);
    await waitRoute(b, '192.168.221.0/24', 'bgp');
    assert.equal((await kernelRoutes(b)).find((r) => r.dst === '192.168.211.0/24'), undefined, 'the new bgpd got the route-map too');
    console.log(`# bgpd restarted by apply; route back in the peer's kernel ${ms} ms after apply returned`);
  });

  it('a route-policy edit (prefixListIn) changes the installed routes within 5 s, without resetting the session', async () => {
    // router b filters what it receives from a (which announces 192.168.201.0/24 and 192.168.221.0/24)
    const docB = (entries: { action: 'permit' | 'deny'; prefix: string; le?: number }[]) => {
      const doc = withV6(2, routing(2)) as { routing: any };
      doc.routing.prefixLists.push({ name: 'FROM-A', entries });
      doc.routing.bgp.neighbors[0].prefixListIn = 'FROM-A';
      return doc as ConfigInput;
    };
    const allowAll = { action: 'permit' as const, prefix: '0.0.0.0/0', le: 32 };
    const session = async () => ((await frrSubsystem.status!(hostB)) as { detail: FrrStatus }).detail.bgp!.peers.find((p) => p.address === '10.9.0.1')!;
    const has = async (dst: string) => (await kernelRoutes(b)).some((r) => r.dst === dst && r.protocol === 'bgp');
    await waitRoute(b, '192.168.221.0/24', 'bgp');
    await waitRoute(b, '192.168.201.0/24', 'bgp');

    const steps: { what: string; entries: Parameters<typeof docB>[0]; want: Record<string, boolean> }[] = [
      { what: 'attach a list denying 221', entries: [{ action: 'deny', prefix: '192.168.221.0/24' }, allowAll], want: { '192.168.221.0/24': false, '192.168.201.0/24': true } },
      { what: 'edit the list to allow more (221 again)', entries: [allowAll], want: { '192.168.221.0/24': true, '192.168.201.0/24': true } },
      { what: 'edit the list to allow less (201 denied)', entries: [{ action: 'deny', prefix: '192.168.201.0/24' }, allowAll], want: { '192.168.221.0/24': true, '192.168.201.0/24': false } },
    ];
    for (const step of steps) {
      const up = await session();
      assert.equal(up.established, true);
      const t0 = Date.now();
      await applyDocument(frrSubsystem, hostB, docB(step.entries));
      const applied = Date.now() - t0;
      for (;;) {
        const state = Object.fromEntries(await Promise.all(Object.keys(step.want).map(async (d) => [d, await has(d)] as const)));
        if (Object.entries(step.want).every(([d, w]) => state[d] === w)) break;
        if (Date.now() - t0 > 30_000) assert.fail(`${step.what}: installed routes still ${JSON.stringify(state)} ${Date.now() - t0} ms after the apply started, want ${JSON.stringify(step.want)}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      const ms = Date.now() - t0;
      const after = await session();
      assert.equal(after.established, true, `${step.what}: session down`);
      assert.ok(after.uptimeMs >= ms, `${step.what}: session up only ${after.uptimeMs} ms, it was reset by the change`);
      console.log(`# ${step.what}: apply ${applied} ms, routes changed ${ms} ms after it started; session up ${Math.round(after.uptimeMs / 1000)} s`);
    }
    // back to the document the later tests expect
    await applyDocument(frrSubsystem, hostB, withV6(2, routing(2)));
    await waitRoute(b, '192.168.201.0/24', 'bgp');
  });

  it('invalid config is rejected with paths before any daemon is touched', async () => {
    const paths = instancePaths(hostA.stateDir, 'frr');
    const before = await a.nsenter('vtysh', ['--vty_socket', paths.runDir, '-c', 'show running-config']);
    const doc = routing(1) as { routing: any };
    doc.routing.bgp.neighbors[0].routeMapOut = 'NOPE';
    doc.routing.static.push({ prefix: '10.1.2.3/8', blackhole: true });
    doc.routing.ospf.areas[0].interfaces.push({ name: 'eth1' });
    await assert.rejects(applyDocument(frrSubsystem, hostA, doc), (e: unknown) => {
      assert.ok(e instanceof ConfigError);
      const text = e.message;
      assert.match(text, /routing\.bgp\.neighbors\[0\]\.routeMapOut: no route-map named "NOPE"/);
      assert.match(text, /routing\.static\[2\]\.prefix: "10\.1\.2\.3\/8" has host bits set; did you mean 10\.0\.0\.0\/8\?/);
      assert.match(text, /routing\.ospf\.areas\[0\]\.interfaces\[2\]\.name: interface eth1 is already in area 0\.0\.0\.0/);
      return true;
    });
    const after = await a.nsenter('vtysh', ['--vty_socket', paths.runDir, '-c', 'show running-config']);
    assert.equal(after.stdout, before.stdout);
  });

  it("FRR's own dry run rejects a file it cannot parse (the checker behind validate)", async () => {
    const scratch = mkdtempSync(path.join(os.tmpdir(), 'pt-frr-check-'));
    try {
      const paths = instancePaths(scratch, 'frr');
      writeRendered(paths, [{ path: 'frr.conf', content: 'router ospf\n timers throttle spf banana\n' }]);
      const issues = await frrModule.check(null as never, paths, hostA);
      assert.equal(issues.length, 1);
      assert.match(issues[0]!.message, /vtysh -C exited 2.*line 2/);
    } finally {
      rmSync(scratch, { recursive: true, force: true });
    }
  });

  it('a daemon that cannot start makes apply throw with its log, and leaves nothing running', async (t) => {
    if (rpkiInstalled()) return t.skip('bgpd_rpki is installed here, so RPKI cannot be used to make bgpd fail');
    const ns = await lab.ns('rc');
    const host = new Host({ netns: ns.name, stateDir: path.join(dir, 'c') });
    const doc = routing(1) as { routing: any };
    doc.routing.bgp.rpki = { caches: [{ host: '127.0.0.1', port: 3323 }] };
    try {
      await assert.rejects(applyDocument(frrSubsystem, host, doc), (e: unknown) => {
        assert.ok(e instanceof DaemonError, String(e));
        assert.equal(e.daemon, 'frr bgpd');
        assert.match(e.log, /rpki/);
        return true;
      });
      const { stdout } = await execa('ip', ['netns', 'pids', ns.name]);
      assert.equal(stdout.trim(), '', 'zebra and ospfd were stopped again');
    } finally {
      await frrSubsystem.teardown?.(host);
    }
  });

  it('through the engine: a failed start rolls back to the committed revision, which keeps routing', async (t) => {
    if (rpkiInstalled()) return t.skip('bgpd_rpki is installed here, so RPKI cannot be used to make bgpd fail');
    const ns = await lab.ns('rd');
    const host = new Host({ netns: ns.name, stateDir: path.join(dir, 'd') });
    const store = Store.open(path.join(dir, 'd', 'patronus.db'));
    const engine = new Engine({ domains, host, store, subsystems: [frrSubsystem] });
    try {
      const good = { routing: { static: [{ prefix: '198.51.100.0/24', blackhole: true }] } };
      assert.equal((await engine.apply({ document: good }, { author: 't', message: 'static' })).state, 'committed');
      const bad = { routing: { ...good.routing, bgp: { asn: 65000, rpki: { caches: [{ host: '127.0.0.1' }] } } } };
      await assert.rejects(engine.apply({ document: bad }, { author: 't', message: 'rpki' }), (e: unknown) => {
        assert.ok(e instanceof ApplyError);
        assert.equal(e.report.failedStep, 'frr');
        assert.match(e.report.error ?? '', /frr bgpd: .*exited with status 1[\s\S]*bgpd_rpki\.so/);
        assert.equal(e.report.rolledBackTo, 1);
        return true;
      });
      assert.ok((await kernelRoutes(ns)).some((r) => r.dst === '198.51.100.0/24'), 'the committed static route is still there');
      assert.deepEqual(await engine.plan({ document: good }).then((p) => p.subsystems.flatMap((x) => x.changes)), []);
    } finally {
      engine.close();
      store.close();
      await frrSubsystem.teardown?.(host);
    }
  });

  it('disabling the section stops every daemon and removes the routes', async () => {
    await applyDocument(frrSubsystem, hostB, { routing: { ...(routing(2) as any).routing, enabled: false } });
    assert.equal((await frrSubsystem.status!(hostB) as { running: boolean }).running, false);
    const { stdout } = await execa('ip', ['netns', 'pids', b.name]);
    assert.equal(stdout.trim(), '');
    assert.equal((await kernelRoutes(b)).filter((r) => r.protocol === 'bgp' || r.protocol === 'ospf').length, 0);
  });
});
