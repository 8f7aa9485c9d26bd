/**
 * ACME certificates on the VPN servers, against Debian's pebble: pebble
 * (and pebble-challtestsrv as its DNS, every name -> the firewall) in a
 * namespace of its own, the firewall in another, a VPN client in a third.
 * The firewall orders certificate "vpn" (vpn.fw.test) over http-01 (a child
 * process in its namespace, test/lib/acme_issue_child.ts), then:
 *   - an OpenVPN server presents it; a client with the exported profile
 *     (pebble's root, verify-x509-name) connects and carries traffic; a
 *     renewal restarts the server with the new certificate (OpenVPN reads it
 *     only at start) and the client is back within seconds;
 *   - a strongSwan gateway authenticates with it to a road warrior that
 *     trusts pebble's root; a renewal loads the new certificate into the
 *     running charon: the established IKE_SA stays up, a new one gets the
 *     new certificate.
 * Every daemon (pebble, openvpn, charon) is stopped in after/finally.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ResultPromise } from 'execa';
import { Lab, type Netns } from '../lib/netns.js';
import { missing } from '../lib/skip.js';
import { compileFor, contextFor, ping, pingWithin } from '../lib/vpn.js';
import { Host } from '../../src/system/host.js';
import { ensureCert, pkiDir } from '../../src/services/pki/pki.js';
import { certificateFiles, readCertificate, type CertificateState } from '../../src/certificates/acme.js';
import { openvpnSubsystem } from '../../src/services/openvpn/subsystem.js';
import { exportProfile } from '../../src/services/openvpn/openvpn.js';
import { ipsecSubsystem } from '../../src/services/ipsec/subsystem.js';
import { ipsecCaCertificate, type IpsecStatus } from '../../src/services/ipsec/ipsec.js';
import { instancePaths } from '../../src/services/common/service.js';
import { daemonPid, waitFor } from '../../src/services/common/daemon.js';

const skip = missing('netns', { cmd: 'pebble' }, { cmd: 'pebble-challtestsrv' }, { cmd: 'openvpn' }, { cmd: 'charon-systemd' }, { cmd: 'swanctl' }, { cmd: 'unshare' }, { cmd: 'curl' }, { cmd: 'ping' });
const CHILD = fileURLToPath(new URL('../lib/acme_issue_child.js', import.meta.url));

describe('ACME certificates on the OpenVPN and IPsec servers (pebble)', { skip }, () => {
  const lab = new Lab();
  const daemons: ResultPromise[] = [];
  let dir: string, dirFw: string, dirCl: string;
  let ca: Netns, fw: Netns, cl: Netns;
  let hostFw: Host, hostCl: Host;
  let rootFile: string;
  let first: CertificateState;

  /** the certificates section; renew: due at once (longer than pebble's certificate life) */
  const certificates = (renew = false) => ({
    acme: { directory: 'https://10.78.0.1:14000/dir', termsOfServiceAgreed: true, directoryCaFile: join(dir, 'pebble', 'keys', 'pki', 'pebble', 'ca.crt'), rootCaFile: rootFile, http01Listen: '10.78.0.2:5002', ...(renew ? { renewDaysBefore: 3650 } : {}) },
    issue: [{ name: 'vpn', domains: ['vpn.fw.test'] }],
  });

  /** orders (renew: renews) certificate "vpn" from inside the firewall's namespace */
  async function issue(renew = false): Promise<CertificateState> {
    const r = await fw.nsenter(process.execPath, [CHILD, dirFw, JSON.stringify({ certificates: certificates(renew) })], { reject: false, timeout: 120_000, env: { PATRONUS_REQUIRE_NETNS: '0' } });
    const out = JSON.parse(r.stdout.trim().split('\n').at(-1) || '{}') as { certs?: CertificateState[]; error?: string };
    if (out.error || !out.certs?.[0] || r.exitCode !== 0) throw new Error(`ACME order failed (exit ${r.exitCode}${r.timedOut ? ', timed out' : ''}): ${out.error ?? ''} ${r.stderr}`);
    return out.certs[0];
  }

  before(
    async () => {
      dir = mkdtempSync(join(tmpdir(), 'pt-acmevpn-'));
      dirFw = join(dir, 'fw');
      dirCl = join(dir, 'cl');
      ca = await lab.ns('avca');
      fw = await lab.ns('avfw');
      cl = await lab.ns('avcl');
      await lab.veth({ ns: ca, dev: 'eth0', address: '10.78.0.1/24' }, { ns: fw, dev: 'eth0', address: '10.78.0.2/24' });
      await lab.veth({ ns: fw, dev: 'veth0', address: '192.0.2.1/24' }, { ns: cl, dev: 'veth0', address: '192.0.2.2/24' });
      await fw.ip('addr', 'add', '10.1.0.1/24', 'dev', 'lo');
      hostFw = new Host({ netns: fw.name, stateDir: dirFw });
      hostCl = new Host({ netns: cl.name, stateDir: dirCl });

      // pebble's own HTTPS certificate from a throwaway CA (directoryCaFile); its DNS says every name is the firewall
      const tls = await ensureCert(join(dir, 'pebble'), 'pebble', { name: 'pebble', commonName: 'pebble', usage: 'server', altNames: ['10.78.0.1'] });
      writeFileSync(
        join(dir, 'pebble.json'),
        JSON.stringify({ pebble: { listenAddress: '10.78.0.1:14000', managementListenAddress: '10.78.0.1:15000', certificate: tls.certFile, privateKey: tls.keyFile, httpPort: 5002, tlsPort: 5001, ocspResponderURL: '', externalAccountBindingRequired: false } }),
      );
      daemons.push(ca.spawn('pebble-challtestsrv', ['-dns01', '10.78.0.1:8053', '-http01', '', '-https01', '', '-tlsalpn01', '', '-management', '10.78.0.1:8055', '-defaultIPv4', '10.78.0.2', '-defaultIPv6', '']));
      const env = { ...(process.env as Record<string, string>), PEBBLE_VA_NOSLEEP: '1', PEBBLE_WFE_NONCEREJECT: '0', PEBBLE_AUTHZREUSE: '0' };
      daemons.push(ca.spawn('pebble', ['-config', join(dir, 'pebble.json'), '-dnsserver', '10.78.0.1:8053'], { env }));
      await waitFor(async () => (await fw.exec('bash', ['-c', 'exec 3<>/dev/tcp/10.78.0.1/15000'], { reject: false, timeout: 5000 })).exitCode === 0, 30_000, 'pebble listening');
      // the root pebble signs with (made at its start): what VPN clients trust
      const root = await ca.exec('curl', ['-sk', '--max-time', '10', 'https://10.78.0.1:15000/roots/0'], { reject: false, timeout: 15_000 });
      assert.match(root.stdout, /^-----BEGIN CERTIFICATE-----/, `pebble's root: ${root.stderr}`);
      rootFile = join(dir, 'pebble-root.pem');
      writeFileSync(rootFile, root.stdout);
      first = await issue();
    },
    { timeout: 180_000 },
  );

  after(async () => {
    for (const [sub, h] of [[openvpnSubsystem, hostCl], [openvpnSubsystem, hostFw], [ipsecSubsystem, hostCl], [ipsecSubsystem, hostFw]] as const) {
      if (h) await sub.teardown!(h).catch((e: Error) => console.error(`# teardown ${sub.name} ${h.where}: ${e.message}`));
    }
    for (const d of daemons) d.kill('SIGKILL');
    await Promise.allSettled(daemons);
    await lab.teardown();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('OpenVPN: the server presents the ACME certificate, a client verifies it by the exported profile; a renewal restarts the server and the client is back', { timeout: 150_000 }, async () => {
    const doc = {
      certificates: certificates(),
      openvpn: { servers: [{ name: 'road', port: 1194, network: '10.88.0.0/24', remoteHost: '192.0.2.1', certificate: 'vpn', keepalive: { interval: 2, timeout: 10 }, clients: [{ name: 'laptop', address: '10.88.0.50' }] }] },
    };
    const d = compileFor(openvpnSubsystem, doc);
    assert.deepEqual(await openvpnSubsystem.validate!(d, hostFw), [], 'openvpn accepts the server config with the ACME certificate');
    await openvpnSubsystem.apply(d, hostFw);
    const paths = instancePaths(dirFw, 'openvpn');
    const conf = readFileSync(paths.file('server-road.conf'), 'utf8');
    assert.match(conf, new RegExp(`^cert ${paths.file('tls/server-road.pem')}$`, 'm'));
    assert.match(conf, new RegExp(`^ca ${pkiDir(dirFw, 'openvpn-road')}/ca\\.crt$`, 'm'), 'clients are still verified by the server CA');
    assert.equal(readFileSync(paths.file('tls/server-road.pem'), 'utf8'), readFileSync(certificateFiles(dirFw, 'vpn').fullchain, 'utf8'));

    const server = contextFor(doc).config.openvpn.servers[0]!;
    const profile = exportProfile(dirFw, server, 'laptop', { rootCaFile: rootFile });
    assert.ok(profile.includes(readFileSync(rootFile, 'utf8').trim()), "the profile carries pebble's root");
    assert.match(profile, /^verify-x509-name vpn\.fw\.test name$/m);
    assert.throws(() => exportProfile(dirFw, server, 'laptop'), /certificate vpn: the root CA that issued .* is in neither .*set certificates\.acme\.rootCaFile/);
    const profileFile = join(dir, 'laptop.ovpn');
    writeFileSync(profileFile, profile, { mode: 0o600 });
    const dc = compileFor(openvpnSubsystem, { openvpn: { clients: [{ name: 'lt', profile: profileFile }] } });
    await openvpnSubsystem.apply(dc, hostCl);
    const clientLog = join(dirCl, 'services/openvpn/client-lt.log');
    const verified = () => (readFileSync(clientLog, 'utf8').match(/VERIFY OK: depth=0, CN=vpn\.fw\.test/g) ?? []).length;
    assert.ok(await pingWithin(cl, '10.88.0.1', 20_000), `the client reaches the server through the tunnel: ${readFileSync(clientLog, 'utf8').split('\n').slice(-8).join(' | ')}`);
    assert.equal(verified(), 1, 'the client verified the ACME certificate');

    // renewal: a new certificate in service, then the server restarts with it
    const renewed = await issue(true);
    assert.notEqual(renewed.serial, first.serial);
    const drift = await openvpnSubsystem.drift!(d, hostFw);
    assert.ok(drift.some((f) => /renewed certificate is in service/.test(f.reason)), JSON.stringify(drift));
    assert.deepEqual((await openvpnSubsystem.plan(d, hostFw)).map((c) => `${c.action} ${c.object}`), ['change openvpn file tls/server-road.pem', 'change openvpn file tls/server-road.key', 'reload openvpn']);
    const pidFile = join(paths.runDir, 'server-road.pid');
    const pid = daemonPid(pidFile, 'openvpn');
    const t0 = Date.now();
    await openvpnSubsystem.apply(d, hostFw);
    assert.notEqual(daemonPid(pidFile, 'openvpn'), pid, 'the server restarted to read the new certificate');
    assert.ok(await pingWithin(cl, '10.88.0.1', 30_000), 'the client is back through the tunnel');
    console.log(`# openvpn renewal: the client was back ${Date.now() - t0} ms after the apply began`);
    await waitFor(() => verified() === 2, 30_000, 'the client to verify the renewed certificate');
    assert.equal(readFileSync(paths.file('tls/server-road.pem'), 'utf8'), readFileSync(certificateFiles(dirFw, 'vpn').fullchain, 'utf8'));
    assert.deepEqual(await openvpnSubsystem.drift!(d, hostFw), []);
    await openvpnSubsystem.teardown!(hostCl);
    await openvpnSubsystem.teardown!(hostFw);
  });

  it('IPsec: the gateway authenticates with the ACME certificate; a renewal keeps the established SA and serves new ones the new certificate', { timeout: 150_000 }, async () => {
    const clientCa = join(pkiDir(dirCl, 'ipsec'), 'ca.crt');
    await ipsecCaCertificate(dirCl);
    const doc = {
      certificates: certificates(true),
      ipsec: {
        pools: [{ name: 'rw', addresses: '10.99.0.0/24' }],
        connections: [{ name: 'rw', auth: 'cert', certificate: 'vpn', remoteCaFile: clientCa, pools: ['rw'], children: [{ name: 'net', localTs: ['10.1.0.0/24'] }] }],
      },
    };
    const d = compileFor(ipsecSubsystem, doc);
    assert.deepEqual(await ipsecSubsystem.validate!(d, hostFw), [], 'strongSwan accepts the gateway config with the ACME certificate');
    await ipsecSubsystem.apply(d, hostFw);
    const client = {
      ipsec: {
        connections: [
          { name: 'home', auth: 'cert', localId: 'laptop.cl.test', remoteId: 'vpn.fw.test', remoteCaFile: rootFile, remoteAddresses: ['192.0.2.1'], requestVirtualIp: true, children: [{ name: 'net', remoteTs: ['10.1.0.0/24'] }] },
        ],
      },
    };
    const dc = compileFor(ipsecSubsystem, client);
    await ipsecSubsystem.apply(dc, hostCl);
    const clientLog = join(dirCl, 'services/ipsec/ipsec.log');
    await waitFor(async () => installed(await status(hostCl), 'home'), 20_000, 'the road-warrior CHILD_SA').catch((e: Error) => {
      throw new Error(`${e.message}: ${readFileSync(clientLog, 'utf8').split('\n').slice(-12).join(' | ')}`);
    });
    const sa = (await status(hostCl)).sas.find((s) => s.connection === 'home')!;
    assert.equal(sa.remoteId, 'vpn.fw.test');
    assert.ok(await ping(cl, '10.1.0.1', 2, sa.localVips[0]), 'the road warrior reaches the network behind the gateway');
    const served = readCertificate(dirFw, 'vpn')!.serial;
    const env = { ...(process.env as Record<string, string>), STRONGSWAN_CONF: instancePaths(dirCl, 'ipsec').file('strongswan.conf') };
    const uri = ['--uri', `unix://${instancePaths(dirCl, 'ipsec').runDir}/charon.vici`];
    // the gateway certificates the client's charon received (its certificate cache), by serial
    const seen = async () => gatewaySerials((await hostCl.run('swanctl', ['--list-certs', ...uri], { env, reject: false, timeout: 20_000 })).stdout);
    assert.deepEqual(await seen(), [serialHex(served)], 'the gateway presented the ACME certificate in service');

    // renewal: the new certificate goes into the running charon; nothing restarts, nothing drops
    const renewed = await issue(true);
    const plan = (await ipsecSubsystem.plan(d, hostFw)).map((c) => `${c.action} ${c.object}`);
    assert.deepEqual(plan, ['change ipsec file acme/vpn.pem', 'change ipsec file acme/vpn.key', 'reload ipsec']);
    const paths = instancePaths(dirFw, 'ipsec');
    const charon = daemonPid(paths.pidFile, 'charon-systemd');
    await ipsecSubsystem.apply(d, hostFw);
    assert.equal(daemonPid(paths.pidFile, 'charon-systemd'), charon, 'charon was not restarted');
    const after = (await status(hostCl)).sas.find((s) => s.connection === 'home');
    assert.equal(after?.uniqueId, sa.uniqueId, 'the established IKE_SA stays');
    assert.equal(after?.state, 'ESTABLISHED');
    assert.ok(await ping(cl, '10.1.0.1', 2, sa.localVips[0]), 'traffic still flows through it');
    assert.deepEqual(await ipsecSubsystem.drift!(d, hostFw), []);

    // a new IKE_SA: the gateway presents the renewed certificate
    await hostCl.run('swanctl', ['--terminate', '--ike', 'home', '--timeout', '10', ...uri], { env, reject: false, timeout: 20_000 });
    const init = await hostCl.run('swanctl', ['--initiate', '--child', 'net', '--ike', 'home', '--timeout', '15', ...uri], { env, reject: false, timeout: 25_000 });
    assert.equal(init.exitCode, 0, `${init.stdout}\n${init.stderr}`);
    const again = (await status(hostCl)).sas.find((s) => s.connection === 'home');
    assert.notEqual(again?.uniqueId, sa.uniqueId);
    assert.ok(installed(await status(hostCl), 'home'));
    assert.deepEqual((await seen()).sort(), [serialHex(served), serialHex(renewed.serial)].sort(), 'the new IKE_SA got the renewed certificate');
    assert.ok(await ping(cl, '10.1.0.1', 2, again!.localVips[0]), 'and carries traffic');
  });
});

async function status(h: Host): Promise<IpsecStatus> {
  return ((await ipsecSubsystem.status!(h)) as { detail: IpsecStatus }).detail;
}

function installed(st: IpsecStatus, conn: string): boolean {
  return st.sas.some((s) => s.connection === conn && s.state === 'ESTABLISHED' && s.children.some((c) => c.state === 'INSTALLED'));
}

/** serials of the CN=vpn.fw.test certificates in `swanctl --list-certs` output */
function gatewaySerials(text: string): string[] {
  return text
    .split(/\n\s*\n/)
    .filter((block) => /subject:\s+"CN=vpn\.fw\.test"/.test(block))
    .map((block) => serialHex(/serial:\s+([0-9a-fA-F:]+)/.exec(block)?.[1] ?? ''));
}

/** a serial as bare lower-case hex without leading zeros (node and strongSwan write them differently) */
function serialHex(s: string): string {
  return s.replace(/:/g, '').toLowerCase().replace(/^0+/, '');
}
