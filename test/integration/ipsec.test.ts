/**
 * strongSwan IKEv2 between two lab namespaces, driven through the
 * Subsystem: site-to-site with a pre-shared key, then a road warrior with
 * certificates from each side's Patronus CA and a virtual IP from a pool.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, readlinkSync, statSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Lab, type Netns } from '../lib/netns.js';
import { missing } from '../lib/skip.js';
import { compileFor, issuesOf, ping } from '../lib/vpn.js';
import { Host } from '../../src/system/host.js';
import { ipsecSubsystem } from '../../src/services/ipsec/subsystem.js';
import { ipsecCaCertificate, kernelHasEsp, listSas, parseListSas, type IpsecStatus } from '../../src/services/ipsec/ipsec.js';
import { instancePaths } from '../../src/services/common/service.js';
import { pkiDir } from '../../src/services/pki/pki.js';
import { DaemonError, waitFor } from '../../src/services/common/daemon.js';
import { execa } from 'execa';
import { existsSync } from 'node:fs';

const OPENSSL_PLUGIN = '/usr/lib/ipsec/plugins/libstrongswan-openssl.so';

/** The plugin file is there and every library it links against resolves (what charon needs to load it). */
async function assertOpensslPlugin(): Promise<void> {
  const fix = 'install Debian libstrongswan-standard-plugins (scripts/setup.sh does)';
  if (!existsSync(OPENSSL_PLUGIN)) throw new Error(`strongSwan's openssl plugin ${OPENSSL_PLUGIN} is missing: ${fix}`);
  const ldd = await execa('ldd', [OPENSSL_PLUGIN], { reject: false });
  const unresolved = String(ldd.stdout).split('\n').filter((l) => /not found/.test(l));
  if (ldd.exitCode !== 0 || unresolved.length) throw new Error(`strongSwan's openssl plugin ${OPENSSL_PLUGIN} cannot be loaded (${unresolved.join('; ') || String(ldd.stderr).trim()}): ${fix}`);
}

const skip = missing('netns', { cmd: 'charon-systemd' }, { cmd: 'swanctl' }, { cmd: 'unshare' }, { cmd: 'ping' });

describe('ipsec (strongSwan) between two namespaces', { timeout: 300_000, skip }, () => {
  const lab = new Lab();
  let a: Netns, b: Netns;
  let dirA: string, dirB: string, shared: string;
  let hostA: Host, hostB: Host;

  before(async () => {
    // certificate connections need strongSwan's openssl plugin (Debian libstrongswan-standard-plugins): fail here, clearly, not at the third test
    await assertOpensslPlugin();
    a = await lab.ns('ipa');
    b = await lab.ns('ipb');
    await lab.veth({ ns: a, dev: 'veth0', address: '192.0.2.1/24' }, { ns: b, dev: 'veth0', address: '192.0.2.2/24' });
    await a.ip('addr', 'add', '10.1.0.1/24', 'dev', 'lo');
    await b.ip('addr', 'add', '10.2.0.1/24', 'dev', 'lo');
    dirA = mkdtempSync(path.join(os.tmpdir(), 'pt-ipa-'));
    dirB = mkdtempSync(path.join(os.tmpdir(), 'pt-ipb-'));
    shared = mkdtempSync(path.join(os.tmpdir(), 'pt-ipk-'));
    writeFileSync(path.join(shared, 'psk'), 'correct horse battery staple 42\n', { mode: 0o600 });
    hostA = new Host({ netns: a.name, stateDir: dirA });
    hostB = new Host({ netns: b.name, stateDir: dirB });
  });
  after(async () => {
    for (const h of [hostA, hostB]) if (h) await ipsecSubsystem.teardown!(h).catch((e) => console.error(`# teardown ${h.where}: ${e}`));
    await lab.teardown();
    for (const d of [dirA, dirB, shared]) if (d) rmSync(d, { recursive: true, force: true });
  });

  const psk = (local: string, remote: string, localNet: string, remoteNet: string, startAction?: 'none') => ({
    ipsec: {
      connections: [
        {
          name: 's2s',
          auth: 'psk',
          pskFile: path.join(shared, 'psk'),
          localAddresses: [local],
          remoteAddresses: [remote],
          children: [{ name: 'net', localTs: [localNet], remoteTs: [remoteNet], ...(startAction ? { startAction } : {}) }],
        },
      ],
    },
  });

  it('site-to-site with a pre-shared key carries traffic', async () => {
    const esp = await kernelHasEsp();
    console.log(`# ipsec backend here: ${esp ? 'kernel' : 'libipsec (the kernel has XFRM without ESP)'}`);
    const dB = compileFor(ipsecSubsystem, psk('192.0.2.2', '192.0.2.1', '10.2.0.0/24', '10.1.0.0/24', 'none'));
    assert.deepEqual(await ipsecSubsystem.validate!(dB, hostB), [], 'strongSwan accepts the responder config');
    await ipsecSubsystem.apply(dB, hostB);
    const dA = compileFor(ipsecSubsystem, psk('192.0.2.1', '192.0.2.2', '10.1.0.0/24', '10.2.0.0/24'));
    assert.deepEqual(await ipsecSubsystem.validate!(dA, hostA), [], 'strongSwan accepts the initiator config');
    await ipsecSubsystem.apply(dA, hostA);

    await waitFor(async () => installed(await status(hostA), 's2s'), 30_000, 'the CHILD_SA').catch((e) => {
      for (const d of [dirA, dirB]) console.log(readFileSync(path.join(d, 'services/ipsec/ipsec.log'), 'utf8').split('\n').slice(-25).map((l) => `# ${l}`).join('\n'));
      throw e;
    });
    assert.ok(await ping(a, '10.2.0.1', 3, '10.1.0.1'), 'a reaches the network behind b through the tunnel');
    assert.ok(await ping(b, '10.1.0.1', 2, '10.2.0.1'), 'b reaches the network behind a through the tunnel');

    const st = await status(hostA);
    assert.equal(st.backend, esp ? 'kernel' : 'libipsec');
    const sa = st.sas.find((s) => s.connection === 's2s')!;
    assert.equal(sa.state, 'ESTABLISHED');
    assert.equal(sa.remoteHost, '192.0.2.2');
    assert.equal(sa.initiator, true);
    const child = sa.children[0]!;
    assert.equal(child.state, 'INSTALLED');
    assert.deepEqual(child.localTs, ['10.1.0.0/24']);
    assert.deepEqual(child.remoteTs, ['10.2.0.0/24']);
    assert.ok(child.packetsIn >= 3 && child.packetsOut >= 3 && child.bytesIn > 0, 'ESP counters count the pings');
    assert.equal(child.encap, !esp, 'libipsec runs ESP in UDP');
    assert.ok(!JSON.stringify(st).includes('horse'), 'the PSK never shows in status');
    // status came over the vici socket (our codec); swanctl's own text reading of the same SAs agrees
    const paths = instancePaths(hostA.stateDir, 'ipsec');
    const viaVici = await listSas(paths);
    const pretty = await hostA.run('swanctl', ['--list-sas', '--pretty', '--uri', `unix://${paths.runDir}/charon.vici`], { env: { ...(process.env as Record<string, string>), STRONGSWAN_CONF: paths.file('strongswan.conf') } });
    const strip = (sas: IpsecStatus['sas']) => sas.map((x) => ({ ...x, established: 0, children: x.children.map((c) => ({ ...c, bytesIn: 0, bytesOut: 0, packetsIn: 0, packetsOut: 0, installed: 0 })) }));
    assert.deepEqual(strip(viaVici), strip(parseListSas(pretty.stdout)));
    const m = await ipsecSubsystem.metrics!(hostA);
    assert.deepEqual(m.services, [{ service: 'ipsec', up: true }]);
    assert.deepEqual(m.vpnTunnels!.map((t) => [t.tunnel, t.peer, t.up, t.rxBytes > 0]), [['s2s/net', '192.0.2.2', true, true]]);
    assert.equal(statSync(path.join(dirA, 'services/ipsec/swanctl.conf')).mode & 0o777, 0o600);
    assert.deepEqual(await ipsecSubsystem.plan(dA, hostA), [], 'idempotent');
  });

  it('road warrior with certificates gets a pool address and carries traffic', async () => {
    // each side trusts the other's Patronus CA
    const caA = path.join(pkiDir(dirA, 'ipsec'), 'ca.crt');
    const caB = path.join(pkiDir(dirB, 'ipsec'), 'ca.crt');
    await ipsecCaCertificate(dirA);
    await ipsecCaCertificate(dirB);
    const server = {
      ipsec: {
        pools: [{ name: 'rw', addresses: '10.99.0.0/24' }],
        connections: [
          { name: 'rw', auth: 'cert', localId: 'vpn-a.example.net', remoteCaFile: caB, pools: ['rw'], children: [{ name: 'net', localTs: ['10.1.0.0/24'] }] },
        ],
      },
    };
    const client = {
      ipsec: {
        connections: [
          {
            name: 'home',
            auth: 'cert',
            localId: 'laptop-b.example.net',
            remoteId: 'vpn-a.example.net',
            remoteCaFile: caA,
            remoteAddresses: ['192.0.2.1'],
            requestVirtualIp: true,
            children: [{ name: 'net', remoteTs: ['10.1.0.0/24'] }],
          },
        ],
      },
    };
    const dA = compileFor(ipsecSubsystem, server);
    assert.deepEqual(await ipsecSubsystem.validate!(dA, hostA), []);
    const planA = await ipsecSubsystem.plan(dA, hostA);
    assert.deepEqual(planA.map((c) => `${c.action} ${c.object}`), ['change ipsec file swanctl.conf', 'reload ipsec']);
    await ipsecSubsystem.apply(dA, hostA);
    const dB = compileFor(ipsecSubsystem, client);
    assert.deepEqual(await ipsecSubsystem.validate!(dB, hostB), []);
    await ipsecSubsystem.apply(dB, hostB);

    await waitFor(async () => installed(await status(hostB), 'home'), 30_000, 'the road-warrior CHILD_SA');
    const sa = (await status(hostB)).sas.find((s) => s.connection === 'home')!;
    assert.equal(sa.remoteId, 'vpn-a.example.net');
    assert.equal(sa.localVips.length, 1);
    assert.match(sa.localVips[0]!, /^10\.99\.0\.\d+$/, 'virtual IP from the pool');
    assert.ok(await ping(b, '10.1.0.1', 3, sa.localVips[0]), 'the road warrior reaches the network behind the gateway');
    const rw = (await status(hostA)).sas.find((s) => s.connection === 'rw')!;
    assert.equal(rw.remoteId, 'laptop-b.example.net');
    assert.deepEqual(rw.remoteVips, sa.localVips);
    // the private key is linked from the key store, not copied
    assert.equal(readlinkSync(path.join(dirA, 'services/ipsec/private/conn-rw.key')), path.join(pkiDir(dirA, 'ipsec'), 'conn-rw.key'));
  });

  it('rejects config strongSwan does not accept before anything runs, and apply throws with its error', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'pt-ipf-'));
    const c = lab.namespaces.length;
    const ns = await lab.ns(`ipf${c}`);
    const h = new Host({ netns: ns.name, stateDir: dir });
    const bad = compileFor(ipsecSubsystem, {
      ipsec: { connections: [{ name: 'x', auth: 'psk', pskFile: path.join(shared, 'psk'), remoteAddresses: ['192.0.2.9'], proposals: ['aes999-sha1-modp1'], children: [{ name: 'c', remoteTs: ['10.5.0.0/24'] }] }] },
    });
    try {
      const issues = await ipsecSubsystem.validate!(bad, h);
      assert.equal(issues.length, 1);
      assert.deepEqual(issues[0]!.path, ['ipsec']);
      assert.match(issues[0]!.message, /strongSwan rejects the rendered configuration: .*proposal/i);
      assert.equal(await ipsecSubsystem.status!(h).then((s) => (s as { running: boolean }).running), false, 'validation started nothing');
      await assert.rejects(ipsecSubsystem.apply(bad, h), (e: unknown) => e instanceof DaemonError && /swanctl --load-all failed/.test(e.message) && /proposal/i.test(e.message));
    } finally {
      await ipsecSubsystem.teardown!(h);
      rmSync(dir, { recursive: true, force: true });
    }
    assert.deepEqual(issuesOf(ipsecSubsystem, { ipsec: { connections: [{ name: 'x', auth: 'psk', pskFile: '/nonexistent/psk', children: [{ name: 'c' }] }] } }), [
      'ipsec.connections[0].pskFile: cannot read /nonexistent/psk: ENOENT: no such file or directory, open \'/nonexistent/psk\'',
    ]);
  });
});

async function status(h: Host): Promise<IpsecStatus> {
  return ((await ipsecSubsystem.status!(h)) as { detail: IpsecStatus }).detail;
}

function installed(st: IpsecStatus, conn: string): boolean {
  return st.sas.some((s) => s.connection === conn && s.state === 'ESTABLISHED' && s.children.some((c) => c.state === 'INSTALLED'));
}
