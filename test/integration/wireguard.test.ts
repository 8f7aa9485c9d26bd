/**
 * WireGuard with real wireguard-go (or the kernel module where present)
 * between two lab namespaces, driven through the Subsystem.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync, writeFileSync, existsSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { Lab, type Netns } from '../lib/netns.js';
import { missing } from '../lib/skip.js';
import { compileFor, holdUdpPort, pingWithin, ping } from '../lib/vpn.js';
import { Host } from '../../src/system/host.js';
import { wireguardSubsystem } from '../../src/services/wireguard/subsystem.js';
import { probeImplementation, type WireguardStatus } from '../../src/services/wireguard/wireguard.js';
import { interfaceKeys, keyDir, publicKeyOf } from '../../src/services/wireguard/keys.js';
import { exportClientConfig } from '../../src/services/wireguard/export.js';
import { DaemonError } from '../../src/services/common/daemon.js';
import { redactSecrets } from '../../src/services/common/redact.js';

const skip = missing('netns', { cmd: 'wg' }, { cmd: 'wireguard-go' }, { cmd: 'ping' });

describe('wireguard between two namespaces', { timeout: 300_000, skip }, () => {
  const lab = new Lab();
  let a: Netns, b: Netns;
  let dirA: string, dirB: string;
  let hostA: Host, hostB: Host;
  // interface names are machine-wide for wireguard-go (its socket is /var/run/wireguard/NAME.sock)
  const ifA = `wg${lab.id}a`;
  const ifB = `wg${lab.id}b`;

  const docA = (extra: Record<string, unknown> = {}) => ({
    wireguard: {
      interfaces: [
        {
          name: ifA,
          listenPort: 51820,
          addresses: ['10.77.0.1/24'],
          clientExport: { endpoint: 'vpn.example.net:51820', dns: ['10.77.0.1'], persistentKeepalive: 25 },
          peers: [
            { name: 'site-b', publicKey: interfaceKeys(dirB, ifB).publicKey, allowedIps: ['10.77.0.2/32', '10.78.0.0/24'], endpoint: '192.0.2.2:51821', ...extra },
            { name: 'phone', generateKey: true, presharedKey: true, allowedIps: ['10.77.0.9/32'] },
          ],
        },
      ],
    },
  });
  const docB = () => ({
    wireguard: {
      interfaces: [
        {
          name: ifB,
          listenPort: 51821,
          addresses: ['10.77.0.2/24', '10.78.0.1/24'],
          peers: [{ name: 'site-a', publicKey: interfaceKeys(dirA, ifA).publicKey, allowedIps: ['10.77.0.1/32'], endpoint: '192.0.2.1:51820', persistentKeepalive: 1 }],
        },
      ],
    },
  });

  before(async () => {
    a = await lab.ns('wga');
    b = await lab.ns('wgb');
    await lab.veth({ ns: a, dev: 'veth0', address: '192.0.2.1/24' }, { ns: b, dev: 'veth0', address: '192.0.2.2/24' });
    dirA = mkdtempSync(path.join(os.tmpdir(), 'pt-wga-'));
    dirB = mkdtempSync(path.join(os.tmpdir(), 'pt-wgb-'));
    hostA = new Host({ netns: a.name, stateDir: dirA });
    hostB = new Host({ netns: b.name, stateDir: dirB });
  });
  after(async () => {
    for (const h of [hostA, hostB]) if (h) await wireguardSubsystem.teardown!(h).catch((e) => console.error(`# teardown ${h.where}: ${e}`));
    await lab.teardown();
    for (const d of [dirA, dirB]) if (d) rmSync(d, { recursive: true, force: true });
  });

  it('probes and reports the implementation', async () => {
    const impl = await probeImplementation(hostA);
    console.log(`# wireguard implementation here: ${impl}`);
    assert.notEqual(impl, 'none');
  });

  it('carries traffic both ways, with stats and without leaking keys', async () => {
    // the responder first (NOTES: wireguard-go)
    const dB = compileFor(wireguardSubsystem, docB());
    assert.deepEqual(await wireguardSubsystem.validate!(dB, hostB), []);
    await wireguardSubsystem.apply(dB, hostB);
    const dA = compileFor(wireguardSubsystem, docA());
    assert.deepEqual(await wireguardSubsystem.validate!(dA, hostA), []);
    await wireguardSubsystem.apply(dA, hostA);

    assert.ok(await pingWithin(a, '10.77.0.2', 30_000), 'a reaches b through the tunnel');
    assert.ok(await ping(b, '10.77.0.1'), 'b reaches a through the tunnel');
    // the route for the peer's other allowed prefix goes into the tunnel
    assert.ok(await ping(a, '10.78.0.1'), 'a reaches the network behind b through the routed allowed IP');
    const routes = await a.nsenter('ip', ['-j', 'route', 'show', 'dev', ifA]);
    assert.ok((JSON.parse(routes.stdout) as { dst: string }[]).some((r) => r.dst === '10.78.0.0/24'));

    // key files are 0600 in a 0700 directory
    assert.equal(statSync(path.join(keyDir(dirA), `${ifA}.key`)).mode & 0o777, 0o600);
    assert.equal(statSync(keyDir(dirA)).mode & 0o777, 0o700);

    const status = (await wireguardSubsystem.status!(hostA)) as { running: boolean; detail: WireguardStatus };
    assert.equal(status.running, true);
    const wg = status.detail.interfaces[0]!;
    assert.ok(wg.implementation === 'wireguard-go' || wg.implementation === 'kernel');
    assert.equal(wg.publicKey, interfaceKeys(dirA, ifA).publicKey);
    const peer = wg.peers.find((p) => p.peer === 'site-b')!;
    assert.ok(peer.latestHandshake > 0, 'handshake recorded');
    assert.ok(peer.rxBytes > 0 && peer.txBytes > 0, 'transfer counted both ways');
    assert.equal(peer.endpoint, '192.0.2.2:51821');
    assert.deepEqual(wg.peers.find((p) => p.peer === 'phone')?.presharedKey, true);
    const metrics = await wireguardSubsystem.metrics!(hostA);
    assert.deepEqual(metrics.services, [{ service: 'wireguard', up: true }]);
    const t = metrics.vpnTunnels!.find((x) => x.peer === 'site-b')!;
    assert.ok(t.up && t.tunnel === ifA && t.rxBytes > 0 && t.txBytes > 0 && t.latestHandshake! > 0);
    assert.equal(metrics.vpnTunnels!.find((x) => x.peer === 'phone')!.up, false, 'a peer that never shook hands is down');
    const text = JSON.stringify(status);
    assert.ok(!text.includes(interfaceKeys(dirA, ifA).privateKey), 'status never carries the private key');
    assert.equal(JSON.stringify(redactSecrets({ privateKey: 'x', nested: [{ presharedKey: 'y' }] })), '{"privateKey":"[redacted]","nested":[{"presharedKey":"[redacted]"}]}');
  });

  it('is idempotent and reloads changes in place', async () => {
    const dA = compileFor(wireguardSubsystem, docA());
    assert.deepEqual(await wireguardSubsystem.plan(dA, hostA), [], 'nothing to do after apply');
    const pid = (await a.nsenter('cat', [path.join(dirA, 'services/wireguard/run', `${ifA}.pid`)], { reject: false })).stdout.trim();

    const changed = compileFor(wireguardSubsystem, docA({ persistentKeepalive: 7 }));
    const plan = await wireguardSubsystem.plan(changed, hostA);
    assert.deepEqual(plan.map((c) => c.action).sort(), ['change', 'reload']);
    await wireguardSubsystem.apply(changed, hostA);
    const dump = await a.nsenter('wg', ['show', ifA, 'persistent-keepalive']);
    assert.match(dump.stdout, /\t7\n?/);
    if (pid) assert.equal((await a.nsenter('cat', [path.join(dirA, 'services/wireguard/run', `${ifA}.pid`)])).stdout.trim(), pid, 'reload keeps the same process');
    assert.ok(await ping(a, '10.77.0.2'), 'tunnel still up after reload');
  });

  it('exports a client config (text and QR SVG) for a generated peer', async () => {
    const { validated } = await import('../../src/domains.js').then((m) => m.validateDocument(docA(), () => ''));
    const iface = validated!.config.wireguard.interfaces[0]!;
    const ex = await exportClientConfig(dirA, iface, 'phone');
    const priv = /^PrivateKey = (\S+)$/m.exec(ex.text)![1]!;
    const shown = await a.nsenter('wg', ['show', ifA, 'peers']);
    assert.ok(shown.stdout.split('\n').includes(publicKeyOf(priv)), 'the exported private key belongs to the peer the server knows');
    assert.match(ex.text, /^Address = 10\.77\.0\.9\/32$/m);
    assert.match(ex.text, /^Endpoint = vpn\.example\.net:51820$/m);
    assert.match(ex.text, new RegExp(`^PublicKey = ${escape(interfaceKeys(dirA, ifA).publicKey)}$`, 'm'));
    assert.match(ex.svg, /^<svg[^>]*xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
    assert.match(ex.svg, /<path[^>]+d="M/);
    // wg-quick's own parser accepts it
    const tmp = mkdtempSync(path.join(os.tmpdir(), 'pt-wgx-'));
    try {
      writeFileSync(path.join(tmp, 'wgphone.conf'), ex.text, { mode: 0o600 });
      const stripped = await execa('wg-quick', ['strip', path.join(tmp, 'wgphone.conf')]);
      assert.match(stripped.stdout, /PresharedKey = /);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
    await assert.rejects(exportClientConfig(dirA, iface, 'site-b'), /not kept by Patronus/);
  });

  it('a wireguard that cannot start makes apply throw with its error', { skip: missing({ cmd: 'python3' }) }, async () => {
    const release = await holdUdpPort(a, 51999);
    try {
      const dir = mkdtempSync(path.join(os.tmpdir(), 'pt-wgf-'));
      const h = new Host({ netns: a.name, stateDir: dir });
      const d = compileFor(wireguardSubsystem, { wireguard: { interfaces: [{ name: `wg${lab.id}f`, listenPort: 51999, addresses: ['10.79.0.1/24'] }] } });
      try {
        await assert.rejects(wireguardSubsystem.apply(d, h), (e: unknown) => e instanceof DaemonError && /wg setconf failed/.test(e.message) && /in use/i.test(e.message));
      } finally {
        await wireguardSubsystem.teardown!(h);
        rmSync(dir, { recursive: true, force: true });
      }
      assert.equal((await a.nsenter('ip', ['link', 'show', `wg${lab.id}f`], { reject: false })).exitCode, 1, 'teardown removed the failed interface');
    } finally {
      release();
    }
  });

  it('teardown stops wireguard-go and removes the interface', async () => {
    await wireguardSubsystem.teardown!(hostA);
    assert.equal((await a.nsenter('ip', ['link', 'show', ifA], { reject: false })).exitCode, 1);
    assert.equal(existsSync(`/var/run/wireguard/${ifA}.sock`), false);
    assert.equal(existsSync(path.join(keyDir(dirA), `${ifA}.key`)), true, 'keys survive teardown (the interface keeps its identity)');
    mkdirSync(dirA, { recursive: true });
  });
});

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}
