/**
 * The gateway-service routes over real HTTP: the server on 127.0.0.1:0
 * applies a document with a real Kea on lan0, a real WireGuard interface
 * and a real OpenVPN server; dhclient in a client namespace takes a lease
 * that GET /dhcp/leases then lists; the WireGuard client export comes back
 * as wg-quick text and as a QR code, the .ovpn profile with the server's CA;
 * and no JSON body the API serves carries
 * the interface's or the peer's private key or the PSK.
 *
 *   cli (52:54:00:bb:00:07) --lan0-- fw (10.69.0.1) --wan0-- peer
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readFileSync, writeFileSync } from 'node:fs';
import type { FastifyInstance } from 'fastify';
import { Engine } from '../../src/apply/engine.js';
import { Store } from '../../src/store/store.js';
import { buildServer } from '../../src/api/server.js';
import { createMetrics } from '../../src/metrics/metrics.js';
import { readSecret, interfaceKeyFile, peerKeyFile, peerPskFile } from '../../src/services/wireguard/keys.js';
import { pkiDir } from '../../src/services/pki/pki.js';
import { missing } from '../lib/skip.js';
import { controlLab, type ControlLab } from '../lib/control.js';
import type { Netns } from '../lib/netns.js';
import { domains } from '../../src/domains.js';

const skip = missing('netns', { cmd: 'kea-dhcp4' }, { cmd: 'dhclient' }, { cmd: 'wg' }, { cmd: 'wireguard-go' }, { cmd: 'openvpn' }, { cmd: 'unshare' });
const MAC = '52:54:00:bb:00:07';

describe('REST API: DHCP leases, VPN exports, secret redaction', { timeout: 300_000, skip }, () => {
  let L: ControlLab;
  let cli: Netns;
  let store: Store;
  let engine: Engine;
  let app: FastifyInstance;
  let base: string;
  let token: string;
  let wg: string;
  /** every body the API served in this file, to search for secrets at the end */
  const bodies: { path: string; text: string }[] = [];

  const call = async (method: string, path: string, body?: unknown, headers: Record<string, string> = { authorization: `Bearer ${token}` }) => {
    const res = await fetch(`${base}${path}`, {
      method,
      headers: { ...headers, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    bodies.push({ path, text });
    let json: any;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: res.status, json, text, type: res.headers.get('content-type') ?? '' };
  };

  const document = () => ({
    interfaces: [
      { name: 'wan0', zone: 'wan', addresses: ['192.0.2.2/24'] },
      { name: 'lan0', zone: 'lan', addresses: ['10.69.0.1/24'] },
    ],
    dhcp: {
      enabled: true,
      validLifetime: 600,
      subnets: [{ id: 7, subnet: '10.69.0.0/24', interface: 'lan0', pools: ['10.69.0.100-10.69.0.110'], router: '10.69.0.1' }],
    },
    wireguard: {
      interfaces: [
        {
          name: wg,
          listenPort: 51820,
          addresses: ['10.79.0.1/24'],
          clientExport: { endpoint: 'vpn.example.net:51820', dns: ['10.79.0.1'] },
          peers: [
            { name: 'phone', generateKey: true, presharedKey: true, allowedIps: ['10.79.0.9/32'] },
            { name: 'laptop', generateKey: true, allowedIps: ['10.79.0.10/32'] },
          ],
        },
      ],
    },
    openvpn: { servers: [{ name: 'road', port: 1194, network: '10.88.0.0/24', remoteHost: 'vpn.example.net', clients: [{ name: 'alice' }] }] },
  });

  before(async () => {
    L = await controlLab();
    // wireguard-go's socket is /var/run/wireguard/NAME.sock: the name must be machine-wide unique
    wg = `wg${L.lab.id}`.slice(0, 15);
    cli = await L.lab.ns('cli');
    await L.lab.veth({ ns: L.fw, dev: 'lan0' }, { ns: cli, dev: 'eth0' });
    await cli.ip('link', 'set', 'eth0', 'address', MAC);
    store = Store.open(join(L.stateDir, 'patronus.db'));
    engine = new Engine({ domains, host: L.host, store });
    token = store.addToken('tester');
    app = await buildServer({ engine, store, metrics: createMetrics(engine) });
    await app.listen({ host: '127.0.0.1', port: 0 });
    base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
  });

  after(async () => {
    await app?.close();
    // stop Kea and wireguard-go (they run detached): every subsystem tears down inside the namespace
    for (const s of [...(engine?.subsystems ?? [])].reverse()) {
      try {
        await s.teardown?.(L.host);
      } catch (e) {
        console.error(`teardown ${s.name}: ${(e as Error).message}`);
      }
    }
    engine?.close();
    store?.close();
    await L?.teardown();
  });

  it('needs a token on every new route, and lists no leases before DHCP is configured', async () => {
    for (const p of ['/api/v1/dhcp/leases', `/api/v1/vpn/wireguard/wg0/peers/phone/config`, '/api/v1/vpn/openvpn/s/clients/c/profile', '/api/v1/vpn/ipsec/ca']) {
      const r = await call('GET', p, undefined, {});
      assert.equal(r.status, 401, p);
      assert.match(r.json.message, /bearer token/);
    }
    const r = await call('GET', '/api/v1/dhcp/leases');
    assert.equal(r.status, 200);
    assert.deepEqual(r.json, { enabled: false, leases: [] });
  });

  it('applies Kea + WireGuard over HTTP; a dhclient lease shows up on GET /dhcp/leases with filters', async () => {
    const a = await call('POST', '/api/v1/config/apply', { config: document(), message: 'dhcp + wg' });
    assert.equal(a.status, 200, a.text);

    const empty = await call('GET', '/api/v1/dhcp/leases');
    assert.deepEqual(empty.json, { enabled: true, leases: [] });

    // one real DHCP exchange (own lease/pid/script files: the stock script rewrites resolv.conf)
    const f = (ext: string) => join(L.stateDir, `cli.${ext}`);
    writeFileSync(f('conf'), 'timeout 20;\ninitial-interval 1;\n');
    writeFileSync(f('sh'), '#!/bin/sh\ncase "$reason" in BOUND) ip addr add "$new_ip_address/24" dev "$interface" ;; esac\nexit 0\n', { mode: 0o755 });
    await cli.nsenter('dhclient', ['-1', '-cf', f('conf'), '-lf', f('leases'), '-pf', f('pid'), '-sf', f('sh'), 'eth0'], { timeout: 30_000 });
    try {
      const r = await call('GET', '/api/v1/dhcp/leases');
      assert.equal(r.status, 200);
      assert.equal(r.json.leases.length, 1, r.text);
      const lease = r.json.leases[0];
      assert.match(lease.address, /^10\.69\.0\.(10\d|110)$/);
      assert.equal(lease.mac, MAC);
      assert.equal(lease.subnetId, 7);
      assert.equal(lease.state, 'active');
      assert.equal(lease.validLifetime, 600);

      const byNet = await call('GET', '/api/v1/dhcp/leases?subnet=10.69.0.0/24&state=active');
      assert.deepEqual(byNet.json.leases, [lease]);
      assert.deepEqual((await call('GET', '/api/v1/dhcp/leases?subnet=7')).json.leases, [lease]);
      assert.deepEqual((await call('GET', '/api/v1/dhcp/leases?subnet=10.70.0.0/16')).json.leases, []);
      assert.deepEqual((await call('GET', '/api/v1/dhcp/leases?subnet=8')).json.leases, []);
      assert.deepEqual((await call('GET', '/api/v1/dhcp/leases?state=expired')).json.leases, []);
      const bad = await call('GET', '/api/v1/dhcp/leases?state=bogus');
      assert.equal(bad.status, 400);
      assert.match(bad.json.message, /state/);
      assert.equal((await call('GET', '/api/v1/dhcp/leases?subnet=10.0.0.0/40')).status, 400);
    } finally {
      const pid = Number(readFileSync(f('pid'), 'utf8').trim());
      if (pid > 0) process.kill(pid);
    }
  });

  it('exports a WireGuard client config as text and as a QR SVG, an OpenVPN profile; unknown names give 404', async () => {
    const priv = readSecret(L.stateDir, peerKeyFile(wg, 'phone'));
    const psk = readSecret(L.stateDir, peerPskFile(wg, 'phone'));
    assert.ok(priv && psk, 'apply generated the peer key and PSK');

    const t = await call('GET', `/api/v1/vpn/wireguard/${wg}/peers/phone/config`);
    assert.equal(t.status, 200, t.text);
    assert.match(t.type, /^text\/plain/);
    assert.match(t.text, /^\[Interface\]/);
    assert.ok(t.text.includes(`PrivateKey = ${priv}`));
    assert.ok(t.text.includes(`PresharedKey = ${psk}`));
    assert.match(t.text, /^Address = 10\.79\.0\.9\/32$/m);
    assert.match(t.text, /^Endpoint = vpn\.example\.net:51820$/m);
    // the server's public key in the export is the one the live interface uses
    const { stdout } = await L.fw.exec('wg', ['show', wg, 'public-key']);
    assert.ok(t.text.includes(`PublicKey = ${stdout.trim()}`), 'server public key');

    const q = await call('GET', `/api/v1/vpn/wireguard/${wg}/peers/laptop/config?format=svg`);
    assert.equal(q.status, 200);
    assert.match(q.type, /^image\/svg\+xml/);
    assert.match(q.text, /^<svg[\s\S]*<\/svg>\s*$/);

    const noIf = await call('GET', '/api/v1/vpn/wireguard/wgnope/peers/phone/config');
    assert.equal(noIf.status, 404);
    assert.match(noIf.json.message, /wireguard interface "wgnope"/);
    const noPeer = await call('GET', `/api/v1/vpn/wireguard/${wg}/peers/tablet/config`);
    assert.equal(noPeer.status, 404);
    assert.match(noPeer.json.message, /no peer "tablet"/);
    assert.equal((await call('GET', `/api/v1/vpn/wireguard/${wg}/peers/phone/config?format=png`)).status, 400);

    const p = await call('GET', '/api/v1/vpn/openvpn/road/clients/alice/profile');
    assert.equal(p.status, 200, p.text);
    assert.match(p.type, /^application\/x-openvpn-profile/);
    assert.match(p.text, /^remote vpn\.example\.net 1194 udp$/m);
    for (const tag of ['ca', 'cert', 'key', 'tls-crypt']) assert.match(p.text, new RegExp(`<${tag}>\\n-----BEGIN [\\s\\S]+?</${tag}>`), tag);
    // the profile's CA is the one the running server was given
    const serverCa = readFileSync(join(pkiDir(L.stateDir, 'openvpn-road'), 'ca.crt'), 'utf8').trim();
    assert.ok(p.text.includes(`<ca>\n${serverCa}\n</ca>`), 'profile CA is the server CA');
    const noClient = await call('GET', '/api/v1/vpn/openvpn/road/clients/bob/profile');
    assert.equal(noClient.status, 404);
    assert.match(noClient.json.message, /no client "bob"/);
    const ovpn = await call('GET', '/api/v1/vpn/openvpn/office/clients/alice/profile');
    assert.equal(ovpn.status, 404);
    assert.match(ovpn.json.message, /openvpn server "office"/);
    const ca = await call('GET', '/api/v1/vpn/ipsec/ca');
    assert.equal(ca.status, 404);
    assert.match(ca.json.message, /no IPsec connections/);
  });

  it('no JSON body carries a private key or the PSK (status, services, config, revisions, plan)', async () => {
    const secrets = [interfaceKeyFile(wg), peerKeyFile(wg, 'phone'), peerKeyFile(wg, 'laptop'), peerPskFile(wg, 'phone')].map((f) => readSecret(L.stateDir, f)!);
    assert.equal(secrets.filter(Boolean).length, 4);
    const services = await call('GET', '/api/v1/services');
    assert.equal(services.status, 200);
    // the WireGuard status is there (so the test would see a leak in it)
    assert.ok(services.json.some((s: { subsystem: string }) => s.subsystem === 'wireguard'), services.text);
    for (const p of ['/api/v1/status', '/api/v1/config', '/api/v1/revisions', '/api/v1/revisions/1', '/api/v1/interfaces', '/api/v1/rules']) assert.equal((await call('GET', p)).status, 200, p);
    assert.equal((await call('POST', '/api/v1/config/plan', { config: document() })).status, 200);

    // and the filter itself works: a subsystem whose status carries key material in
    // the shapes daemons report it (a key field, wg-quick text, a wg dump field)
    const leakyStore = Store.open(':memory:');
    const leaky = new Engine({
      domains,
      host: L.host,
      store: leakyStore,
      lockPath: join(L.stateDir, 'leaky.lock'),
      subsystems: [{ name: 'leaky', compile: () => ({ desired: undefined, issues: [] }), steps: async () => [], plan: async () => [], apply: async () => {}, status: async () => ({ privateKey: secrets[0], config: `[Interface]\nPrivateKey = ${secrets[1]}\n`, peers: [{ preshared_key: secrets[3] }] }) }],
    });
    const leakyToken = leakyStore.addToken('tester');
    const leakyApp = await buildServer({ engine: leaky, store: leakyStore, metrics: createMetrics(leaky) });
    try {
      const r = await leakyApp.inject({ method: 'GET', url: '/api/v1/services', headers: { authorization: `Bearer ${leakyToken}` } });
      assert.equal(r.statusCode, 200);
      assert.deepEqual(JSON.parse(r.body), [{ subsystem: 'leaky', status: { privateKey: '[redacted]', config: '[Interface]\nPrivateKey = [redacted]\n', peers: [{ preshared_key: '[redacted]' }] } }]);
    } finally {
      await leakyApp.close();
      leaky.close();
      leakyStore.close();
    }

    const exports = (p: string) => /\/vpn\/wireguard\/[^/]+\/peers\/[^/]+\/config|\/vpn\/openvpn\//.test(p);
    for (const { path, text } of bodies.filter((b) => !exports(b.path))) {
      for (const s of secrets) assert.ok(!text.includes(s), `${path} leaks a secret`);
    }
  });
});
