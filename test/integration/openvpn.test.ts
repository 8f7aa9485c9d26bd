/**
 * OpenVPN server and client, both run by Patronus in two lab namespaces;
 * the client uses the .ovpn profile the server exports.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, statSync, existsSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Lab, type Netns } from '../lib/netns.js';
import { missing } from '../lib/skip.js';
import { compileFor, contextFor, holdUdpPort, ping, pingWithin } from '../lib/vpn.js';
import { Host } from '../../src/system/host.js';
import { openvpnSubsystem } from '../../src/services/openvpn/subsystem.js';
import { exportProfile, type OpenvpnStatus } from '../../src/services/openvpn/openvpn.js';
import { pkiDir } from '../../src/services/pki/pki.js';
import { DaemonError, daemonPid, waitFor } from '../../src/services/common/daemon.js';
import { startPing } from '../lib/pingloss.js';

const skip = missing('netns', { cmd: 'openvpn' }, { cmd: 'unshare' }, { cmd: 'ping' });

// a step that never ends fails its own test after this long (the file goes on and says which)
const timeout = 150_000;

describe('openvpn between two namespaces', { skip }, () => {
  const lab = new Lab();
  let a: Netns, b: Netns;
  let dirA: string, dirB: string;
  let hostA: Host, hostB: Host;

  const serverDoc = (clients = [{ name: 'branch', address: '10.88.0.50', routes: ['10.89.0.0/24'] }]) => ({
    openvpn: {
      servers: [{ name: 'road', port: 1194, network: '10.88.0.0/24', remoteHost: '192.0.2.1', pushRoutes: ['10.90.0.0/24'], dns: ['10.88.0.1'], keepalive: { interval: 2, timeout: 10 }, clients }],
    },
  });

  before(async () => {
    a = await lab.ns('ova');
    b = await lab.ns('ovb');
    await lab.veth({ ns: a, dev: 'veth0', address: '192.0.2.1/24' }, { ns: b, dev: 'veth0', address: '192.0.2.2/24' });
    dirA = mkdtempSync(path.join(os.tmpdir(), 'pt-ova-'));
    dirB = mkdtempSync(path.join(os.tmpdir(), 'pt-ovb-'));
    hostA = new Host({ netns: a.name, stateDir: dirA });
    hostB = new Host({ netns: b.name, stateDir: dirB });
  }, { timeout });
  after(async () => {
    for (const h of [hostB, hostA]) if (h) await openvpnSubsystem.teardown!(h).catch((e) => console.error(`# teardown ${h.where}: ${e}`));
    await lab.teardown();
    for (const d of [dirA, dirB]) if (d) rmSync(d, { recursive: true, force: true });
  }, { timeout });

  it('a client using the exported profile gets a tunnel that carries traffic', { timeout }, async () => {
    const dA = compileFor(openvpnSubsystem, serverDoc());
    assert.deepEqual(await openvpnSubsystem.validate!(dA, hostA), [], 'the server config passes openvpn itself');
    assert.equal(existsSync(path.join(dirA, 'keys')), false, 'validation made no keys in the real store');
    await openvpnSubsystem.apply(dA, hostA);

    const pki = pkiDir(dirA, 'openvpn-road');
    assert.equal(statSync(path.join(pki, 'ca.key')).mode & 0o777, 0o600);
    assert.equal(statSync(path.join(dirA, 'keys/openvpn/road.tlscrypt')).mode & 0o777, 0o600);

    const profile = exportProfile(dirA, contextFor(serverDoc()).config.openvpn.servers[0]!, 'branch');
    for (const tag of ['ca', 'cert', 'key', 'tls-crypt']) assert.match(profile, new RegExp(`<${tag}>\\n-----BEGIN [^\\n]+\\n[\\s\\S]+\\n</${tag}>`));
    const profileFile = path.join(dirB, 'branch.ovpn');
    writeFileSync(profileFile, profile, { mode: 0o600 });

    // the client side sets up the network behind it that the server routes to (iroute)
    await b.ip('addr', 'add', '10.89.0.1/24', 'dev', 'lo');
    const dB = compileFor(openvpnSubsystem, { openvpn: { clients: [{ name: 'hq', profile: profileFile }] } });
    assert.deepEqual(await openvpnSubsystem.validate!(dB, hostB), [], 'the client config passes openvpn itself');
    await openvpnSubsystem.apply(dB, hostB);

    assert.ok(await pingWithin(b, '10.88.0.1', 30_000), 'client reaches the server through the tunnel');
    assert.ok(await ping(a, '10.88.0.50'), 'server reaches the client at its fixed address');
    assert.ok(await ping(a, '10.89.0.1'), 'server reaches the network behind the client (route + iroute)');
    const routes = await b.nsenter('ip', ['-j', 'route', 'show', '10.90.0.0/24']);
    assert.match(routes.stdout, /ovpn-hq/, 'pushed route installed on the client');

    const st = (await openvpnSubsystem.status!(hostA)) as { running: boolean; detail: OpenvpnStatus };
    assert.equal(st.running, true);
    const server = st.detail.instances.find((i) => i.id === 'server-road')!;
    assert.equal(server.state, 'CONNECTED');
    const client = server.clients!.find((c) => c.commonName === 'branch')!;
    assert.equal(client.virtualAddress, '10.88.0.50');
    assert.match(client.realAddress, /192\.0\.2\.2/);
    assert.ok(client.rxBytes > 0 && client.txBytes > 0);
    assert.match(client.cipher, /AES-256-GCM/);
    const stB = (await openvpnSubsystem.status!(hostB)) as { detail: OpenvpnStatus };
    assert.equal(stB.detail.instances[0]!.state, 'CONNECTED');
    assert.equal(stB.detail.instances[0]!.localAddress, '10.88.0.50');
    assert.ok(!JSON.stringify(st).includes('PRIVATE KEY'));
    const m = await openvpnSubsystem.metrics!(hostA);
    assert.deepEqual(m.services, [{ service: 'openvpn', up: true }]);
    assert.ok(m.vpnTunnels!.some((t) => t.tunnel === 'road' && t.peer === 'branch' && t.up && t.rxBytes > 0));
    assert.ok((await openvpnSubsystem.metrics!(hostB)).vpnTunnels!.some((t) => t.tunnel === 'hq' && t.up && t.rxBytes > 0));
  });

  it('the certificate-files client form passes openvpn; a broken file is caught before anything runs', { timeout }, async () => {
    const pki = pkiDir(dirA, 'openvpn-road');
    const files = { caFile: path.join(pki, 'ca.crt'), certFile: path.join(pki, 'client-branch.crt'), keyFile: path.join(pki, 'client-branch.key'), tlsCryptFile: path.join(dirA, 'keys/openvpn/road.tlscrypt') };
    const good = compileFor(openvpnSubsystem, { openvpn: { clients: [{ name: 'files', remote: '192.0.2.1', ...files }] } });
    assert.deepEqual(await openvpnSubsystem.validate!(good, hostB), []);
    const bad = compileFor(openvpnSubsystem, { openvpn: { clients: [{ name: 'files', remote: '192.0.2.1', ...files, caFile: files.tlsCryptFile }] } });
    const issues = await openvpnSubsystem.validate!(bad, hostB);
    assert.equal(issues.length, 1);
    assert.deepEqual(issues[0]!.path, ['openvpn', 'clients', 0]);
    assert.match(issues[0]!.message, /openvpn rejects the rendered configuration: .*(certificate|CA)/i);
  });

  it('adding and removing clients touches no other client: no restart, the removed one is cut off', { timeout }, async () => {
    const branch = { name: 'branch', address: '10.88.0.50', routes: ['10.89.0.0/24'] };
    const laptop = { name: 'laptop', address: '10.88.0.60', routes: ['10.92.0.0/24'] };
    assert.deepEqual(await openvpnSubsystem.plan(compileFor(openvpnSubsystem, serverDoc()), hostA), [], 'idempotent');
    const pidFile = path.join(dirA, 'services/openvpn/run/server-road.pid');
    const pid = daemonPid(pidFile, 'openvpn');
    assert.ok(pid);

    // add a client while branch pings the server every 10 ms
    const both = compileFor(openvpnSubsystem, serverDoc([branch, laptop]));
    assert.deepEqual((await openvpnSubsystem.plan(both, hostA)).map((c) => `${c.action} ${c.object}`), ['add openvpn file ccd-road/laptop', 'change openvpn file server-road.clients', 'reload openvpn']);
    let stream = await startPing(b, '10.88.0.1');
    let t0 = Date.now();
    await openvpnSubsystem.apply(both, hostA);
    const addMs = Date.now() - t0;
    await new Promise((r) => setTimeout(r, 300));
    const whileAdding = await stream.stop();
    console.log(`# adding a client: apply ${addMs} ms; branch's ping at 10 ms: ${whileAdding.sent} sent, ${whileAdding.lost} lost`);
    assert.ok(whileAdding.lost <= 1, `branch lost ${whileAdding.lost} pings while a client was added`);
    assert.equal(daemonPid(pidFile, 'openvpn'), pid, 'the server was not restarted');

    // the new client connects from a third namespace with its exported profile
    const c = await lab.ns('ovc');
    await lab.veth({ ns: a, dev: 'veth1', address: '192.0.3.1/24' }, { ns: c, dev: 'veth0', address: '192.0.3.2/24' });
    await c.ip('addr', 'add', '10.92.0.1/24', 'dev', 'lo');
    const dirC = mkdtempSync(path.join(os.tmpdir(), 'pt-ovc-'));
    const hostC = new Host({ netns: c.name, stateDir: dirC });
    try {
      const profileFile = path.join(dirC, 'laptop.ovpn');
      writeFileSync(profileFile, exportProfile(dirA, contextFor(serverDoc([branch, laptop])).config.openvpn.servers[0]!, 'laptop'), { mode: 0o600 });
      await openvpnSubsystem.apply(compileFor(openvpnSubsystem, { openvpn: { clients: [{ name: 'lt', profile: profileFile, remote: '192.0.3.1' }] } }), hostC);
      assert.ok(await pingWithin(c, '10.88.0.1', 30_000), 'the added client connects');
      assert.ok(await ping(a, '10.92.0.1'), 'the server routes to the network behind the added client');

      // remove branch while laptop pings
      stream = await startPing(c, '10.88.0.1');
      t0 = Date.now();
      await openvpnSubsystem.apply(compileFor(openvpnSubsystem, serverDoc([laptop])), hostA);
      const removeMs = Date.now() - t0;
      assert.equal(await ping(b, '10.88.0.1', 1), false, 'the removed client is cut off at once');
      const whileRemoving = await stream.stop();
      console.log(`# removing a client: apply ${removeMs} ms; laptop's ping at 10 ms: ${whileRemoving.sent} sent, ${whileRemoving.lost} lost`);
      assert.ok(whileRemoving.lost <= 1, `laptop lost ${whileRemoving.lost} pings while another client was removed`);
      assert.equal(daemonPid(pidFile, 'openvpn'), pid, 'the server was not restarted');
      const st = (await openvpnSubsystem.status!(hostA)) as { detail: OpenvpnStatus };
      assert.deepEqual(st.detail.instances[0]!.clients!.map((x) => x.commonName), ['laptop']);
      const routes = JSON.parse((await a.ip('-j', 'route', 'show', 'dev', 'ovpn-road', 'proto', 'static')).stdout) as { dst: string }[];
      assert.deepEqual(routes.map((r) => r.dst), ['10.92.0.0/24'], "the removed client's route is gone");
      // its reconnection is turned away (ccd-exclusive)
      const logFile = path.join(dirA, 'services/openvpn/server-road.log');
      await waitFor(() => /client-config-dir authentication failed for common name 'branch'/.test(readFileSync(logFile, 'utf8')), 15_000, 'the server to turn the removed client away');
      assert.equal(await ping(b, '10.88.0.1', 1), false, 'a removed client gets no tunnel');
      assert.ok(await ping(c, '10.88.0.1', 3), 'the remaining client is still connected'); // one answer of three (one echo's 1 s can run out under load)
    } finally {
      await openvpnSubsystem.teardown!(hostC).catch((e) => console.error(`# teardown ${hostC.where}: ${e}`));
      rmSync(dirC, { recursive: true, force: true });
    }
  });

  it('a server that cannot start makes apply throw with its error', { timeout, skip: missing({ cmd: 'python3' }) }, async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'pt-ovf-'));
    const h = new Host({ netns: a.name, stateDir: dir });
    const release = await holdUdpPort(a, 1195);
    const d = compileFor(openvpnSubsystem, { openvpn: { servers: [{ name: 'clash', port: 1195, network: '10.91.0.0/24' }] } });
    try {
      await assert.rejects(openvpnSubsystem.apply(d, h), (e: unknown) => e instanceof DaemonError && /openvpn server clash/.test(e.message) && /Address already in use/.test(e.log));
    } finally {
      release();
      await openvpnSubsystem.teardown!(h);
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
