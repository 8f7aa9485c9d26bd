/**
 * Kea for real: a gateway namespace serves two LANs with the kea-dhcp4
 * Patronus renders; dhclient in client namespaces (own lease, pid and
 * script files: the stock script would rewrite the host's resolv.conf)
 * gets a reserved address with its options, or one from the pool.
 *
 *   c1 (52:54:00:aa:00:01) --lan0-- gw (10.67.0.1 | 10.68.0.1) --lan1-- c2
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, readFileSync, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Lab, type Netns } from '../lib/netns.js';
import { missing } from '../lib/skip.js';
import { compileWith, mustCompile, readFile } from '../lib/services.js';
import { Host } from '../../src/system/host.js';
import { DaemonError } from '../../src/services/common/daemon.js';
import { instancePaths } from '../../src/services/common/service.js';
import { validateDocument } from '../../src/domains.js';
import { formatIssue } from '../../src/config/issues.js';
import { createMetrics } from '../../src/metrics/metrics.js';
import { keaSubsystem } from '../../src/services/kea/subsystem.js';
import { dhcpLeases, keaCommand, keaLeaseFiles, type KeaStatus } from '../../src/services/kea/kea.js';
import { domain as dhcpDomain } from '../../src/services/kea/domain.js';

const skip = missing('netns', { cmd: 'kea-dhcp4' }, { cmd: 'dhclient' });
const MAC1 = '52:54:00:aa:00:01';

describe('kea (dhcp:) with real daemons', { timeout: 300_000, skip }, () => {
  const lab = new Lab();
  let gw: Netns, c1: Netns, c2: Netns;
  let dir: string;
  let host: Host;

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'pt-kea-'));
    gw = await lab.ns('gw');
    c1 = await lab.ns('c1');
    c2 = await lab.ns('c2');
    await lab.veth({ ns: gw, dev: 'lan0', address: '10.67.0.1/24' }, { ns: c1, dev: 'eth0' });
    await lab.veth({ ns: gw, dev: 'lan1', address: '10.68.0.1/24' }, { ns: c2, dev: 'eth0' });
    await c1.ip('link', 'set', 'eth0', 'address', MAC1);
    host = new Host({ netns: gw.name, stateDir: path.join(dir, 'state') });
  });

  after(async () => {
    try {
      await keaSubsystem.teardown?.(host);
    } finally {
      await lab.teardown();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  const doc = (dhcp: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) => ({
    interfaces: [{ name: 'lan0' }, { name: 'lan1' }],
    dhcp: {
      enabled: true,
      validLifetime: 600,
      domainName: 'lan.example',
      subnets: [
        {
          subnet: '10.67.0.0/24',
          interface: 'lan0',
          pools: ['10.67.0.100-10.67.0.150'],
          router: '10.67.0.1',
          dnsServers: ['10.67.0.1', '10.67.0.2'],
          reservations: [{ mac: MAC1, address: '10.67.0.50', hostname: 'nas' }],
        },
        { subnet: '10.68.0.0/24', interface: 'lan1', pools: ['10.68.0.100-10.68.0.110'], router: '10.68.0.1', dnsServers: ['10.68.0.1'] },
      ],
      ...dhcp,
    },
    ...extra,
  });

  /** dhclient once, in the foreground until bound; returns what its script saw. */
  const dhclient = async (ns: Netns, tag: string, release = false): Promise<Record<string, string>> => {
    const f = (ext: string) => path.join(dir, `${tag}.${ext}`);
    writeFileSync(f('conf'), 'timeout 20;\ninitial-interval 1;\nrequest subnet-mask, broadcast-address, routers, domain-name, domain-name-servers, host-name;\n');
    writeFileSync(
      f('sh'),
      [
        '#!/bin/sh',
        `env | grep -E '^(reason|interface|new_[a-z_]+)=' | sort > "${f('env')}.$reason"`,
        'case "$reason" in',
        '  BOUND|RENEW|REBIND|REBOOT) ip addr flush dev "$interface"; ip addr add "$new_ip_address/$new_subnet_mask" dev "$interface" ;;',
        'esac',
        'exit 0',
        '',
      ].join('\n'),
      { mode: 0o755 },
    );
    const args = ['-cf', f('conf'), '-lf', f('leases'), '-pf', f('pid'), '-sf', f('sh'), 'eth0'];
    if (release) {
      await ns.nsenter('dhclient', ['-r', ...args], { timeout: 20_000 });
      rmSync(f('leases'), { force: true });
    }
    await ns.nsenter('dhclient', ['-1', ...args], { timeout: 30_000 });
    const env: Record<string, string> = {};
    for (const line of readFileSync(`${f('env')}.BOUND`, 'utf8').split('\n')) {
      const m = /^([a-z_]+)=(.*)$/.exec(line);
      if (m) env[m[1]!] = m[2]!.replace(/^'(.*)'$/, '$1');
    }
    return env;
  };

  it('a client gets its reservation with options, another one a pool address', async () => {
    const desired = mustCompile(keaSubsystem, doc());
    assert.deepEqual((await keaSubsystem.validate!(desired, host)).map(formatIssue), []);
    await keaSubsystem.apply(desired, host);

    const e1 = await dhclient(c1, 'c1');
    assert.equal(e1.new_ip_address, '10.67.0.50');
    assert.equal(e1.new_host_name, 'nas');
    assert.equal(e1.new_routers, '10.67.0.1');
    assert.equal(e1.new_domain_name_servers, '10.67.0.1 10.67.0.2');
    assert.equal(e1.new_domain_name, 'lan.example');
    assert.equal(e1.new_subnet_mask, '255.255.255.0');
    // the lease is usable: the client reaches the gateway from its new address
    await c1.exec('ping', ['-c3', '-i0.2', '-W2', '10.67.0.1']);

    const e2 = await dhclient(c2, 'c2');
    assert.match(e2.new_ip_address!, /^10\.68\.0\.(1[01]\d|10\d)$/);
    const n = Number(e2.new_ip_address!.split('.')[3]);
    assert.ok(n >= 100 && n <= 110, e2.new_ip_address);
    assert.equal(e2.new_routers, '10.68.0.1');

    // leases as structured data, for the API
    const status = (await keaSubsystem.status!(host)) as { running: boolean; detail: KeaStatus };
    assert.equal(status.running, true);
    const mac2 = await c2.mac('eth0');
    const leases = (await dhcpLeases(host)).map(({ address, mac, hostname, subnetId, state, validLifetime }) => ({ address, mac, hostname, subnetId, state, validLifetime }));
    assert.deepEqual(leases, [
      { address: '10.67.0.50', mac: MAC1, hostname: 'nas', subnetId: 1, state: 'active', validLifetime: 600 },
      { address: e2.new_ip_address, mac: mac2, hostname: undefined, subnetId: 2, state: 'active', validLifetime: 600 },
    ]);
    assert.deepEqual(status.detail.leases.map((l) => l.address), leases.map((l) => l.address));
    // the leases came from the daemon (lease_cmds hook over the control socket); the files, bounded by
    // lease file cleanup, say the same (the fallback while the daemon is down)
    const paths = instancePaths(host.stateDir, 'kea');
    const conf = JSON.parse(readFileSync(paths.file('kea-dhcp4.conf'), 'utf8')) as { Dhcp4: { 'lease-database': { 'lfc-interval': number }; 'hooks-libraries': { library: string }[] } };
    assert.ok(conf.Dhcp4['lease-database']['lfc-interval'] > 0);
    assert.match(conf.Dhcp4['hooks-libraries'][0]!.library, /libdhcp_lease_cmds\.so$/);
    const viaSocket = await keaCommand(paths, 'lease4-get-all');
    assert.equal(viaSocket.result, 0, viaSocket.text);
    assert.deepEqual(keaLeaseFiles(paths).map((l) => [l.address, l.mac, l.expires]), (await dhcpLeases(host)).map((l) => [l.address, l.mac, l.expires]));
    assert.deepEqual(await keaSubsystem.plan(desired, host), []);
    const metrics = createMetrics({ domains: [dhcpDomain], subsystems: [keaSubsystem], host, on: () => undefined } as never, { processMetrics: false });
    const text = await metrics.registry.getSingleMetricAsString('patronus_dhcp_leases');
    assert.match(text, /^patronus_dhcp_leases\{subnet="1",state="active"\} 1$/m);
    assert.match(text, /^patronus_dhcp_leases\{subnet="2",state="active"\} 1$/m);
  });

  it('reloads a changed configuration through the control socket', async () => {
    const { detail } = (await keaSubsystem.status!(host)) as { detail: KeaStatus };
    const mac2 = await c2.mac('eth0');
    const input = doc();
    (input.dhcp.subnets as { reservations?: unknown[] }[])[1]!.reservations = [{ mac: mac2, address: '10.68.0.7', hostname: 'printer' }];
    const desired = mustCompile(keaSubsystem, input);
    assert.ok((await keaSubsystem.plan(desired, host)).some((c) => c.action === 'reload'));
    await keaSubsystem.apply(desired, host);
    assert.equal(((await keaSubsystem.status!(host)) as { detail: KeaStatus }).detail.pid, detail.pid, 'reloaded in place');
    // released and asked again: the new reservation
    const e2 = await dhclient(c2, 'c2', true);
    assert.equal(e2.new_ip_address, '10.68.0.7');
    assert.equal(e2.new_host_name, 'printer');
    const addrs = (await dhcpLeases(host)).map((l) => l.address);
    assert.ok(addrs.includes('10.68.0.7'), JSON.stringify(addrs));
    assert.ok(!addrs.some((a) => /^10\.68\.0\.1\d\d$/.test(a)), `the released pool lease is gone: ${JSON.stringify(addrs)}`);
  });

  it('openings are DHCP on the served interfaces only', () => {
    const { validated } = validateDocument(doc(), readFile);
    assert.deepEqual(keaSubsystem.openings!(validated!.config), [{ service: 'kea', proto: 'udp', port: 67, interfaces: ['lan0', 'lan1'] }]);
    const off = validateDocument(doc({ enabled: false }), readFile);
    assert.deepEqual(keaSubsystem.openings!(off.validated!.config), []);
  });

  it('rejects invalid config with path-qualified issues before touching the daemon', async () => {
    const paths = instancePaths(host.stateDir, 'kea');
    const pidBefore = ((await keaSubsystem.status!(host)) as { detail: KeaStatus }).detail.pid;
    const confBefore = readFileSync(paths.file('kea-dhcp4.conf'), 'utf8');
    const bad = doc({
      subnets: [
        { subnet: '10.67.0.0/24', interface: 'lan0', pools: ['10.67.0.100-10.67.0.150', '10.67.0.140-10.67.0.160', '10.67.1.1-10.67.1.9'], router: '10.9.9.9', reservations: [{ mac: MAC1, address: '10.67.1.5' }, { mac: MAC1, address: '10.67.0.6' }] },
        { subnet: '10.67.0.128/25', interface: 'lan1' },
        { subnet: '10.69.0.1/24', interface: 'lan1', reservations: [{ mac: 'zz', address: '10.69.0.5' }] },
      ],
    });
    // every problem at once
    assert.deepEqual(compileWith(keaSubsystem, bad).issues.map(formatIssue), [
      'dhcp.subnets[2].reservations[0].mac: must be a MAC address such as 52:54:00:12:34:56',
      'dhcp.subnets[0].pools[1]: "10.67.0.140-10.67.0.160" overlaps another pool',
      'dhcp.subnets[0].pools[2]: "10.67.1.1-10.67.1.9" is not inside 10.67.0.0/24',
      'dhcp.subnets[0].router: router 10.9.9.9 is not inside 10.67.0.0/24',
      'dhcp.subnets[0].reservations[0].address: 10.67.1.5 is not inside 10.67.0.0/24',
      'dhcp.subnets[0].reservations[1].mac: 52:54:00:aa:00:01 is already reserved at subnets[0].reservations[0]',
      'dhcp.subnets[1].subnet: overlaps subnets[0]',
      'dhcp.subnets[2].subnet: "10.69.0.1/24" has host bits set (network is 10.69.0.0/24)',
    ]);
    assert.deepEqual(compileWith(keaSubsystem, doc({ subnets: [{ subnet: '10.70.0.0/24', interface: 'eth7' }] })).issues.map(formatIssue), [
      'dhcp.subnets[0].interface: "eth7" is not a managed interface (add it under interfaces:)',
    ]);
    // what only the checker knows: the interface does not exist in this namespace
    const ghost = mustCompile(keaSubsystem, doc({ subnets: [{ subnet: '10.70.0.0/24', interface: 'ghost0' }] }, { interfaces: [{ name: 'ghost0' }] }));
    const checked = await keaSubsystem.validate!(ghost, host);
    assert.equal(checked.length, 1, JSON.stringify(checked));
    assert.deepEqual(checked[0]!.path, ['dhcp']);
    assert.match(checked[0]!.message, /kea-dhcp4 -t rejected.*ghost0/s);
    // nothing running changed
    assert.equal(((await keaSubsystem.status!(host)) as { detail: KeaStatus }).detail.pid, pidBefore);
    assert.equal(readFileSync(paths.file('kea-dhcp4.conf'), 'utf8'), confBefore);
  });

  it('a daemon that cannot start makes apply throw with its log', async () => {
    await keaSubsystem.teardown!(host);
    const paths = instancePaths(host.stateDir, 'kea');
    assert.equal(existsSync(paths.dir), false);
    // passes the checker, but the lease file cannot be opened (a directory sits at its path)
    const desired = mustCompile(keaSubsystem, doc());
    assert.deepEqual(await keaSubsystem.validate!(desired, host), []);
    const { mkdirSync } = await import('node:fs');
    mkdirSync(paths.file('leases4.csv'), { recursive: true });
    await assert.rejects(keaSubsystem.apply(desired, host), (e: unknown) => {
      assert.ok(e instanceof DaemonError, String(e));
      assert.match(e.message, /kea-dhcp4/);
      assert.match(e.log, /leases4\.csv/);
      return true;
    });
    assert.equal(((await keaSubsystem.status!(host)) as { running: boolean }).running, false);
  });
});
