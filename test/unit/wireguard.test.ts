import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execaSync } from 'execa';
import { wireguardSubsystem } from '../../src/services/wireguard/subsystem.js';
import { wireguardModule, parseDump, renderInterface, fullConfig, resolveSecrets, type WireguardModel } from '../../src/services/wireguard/wireguard.js';
import { generateKeyPair, publicKeyOf } from '../../src/services/wireguard/keys.js';
import { instancePaths } from '../../src/services/common/service.js';
import { redactSecrets, redactText, REDACTED } from '../../src/services/common/redact.js';
import { contextFor, issuesOf } from '../lib/vpn.js';
import { missing } from '../lib/skip.js';

const pub = generateKeyPair().publicKey;

describe('wireguard config', () => {
  it('rejects bad input with document paths', () => {
    const issues = issuesOf(wireguardSubsystem, {
      wireguard: {
        interfaces: [
          { name: 'wg0', peers: [{ name: 'x', publicKey: 'not-a-key', allowedIps: ['10.0.0.300/32'], endpoint: 'host only' }, { name: 'y', allowedIps: [] }] },
          { name: 'this-name-is-way-too-long', listenPort: 70000 },
          { name: 'wg0' },
        ],
      },
    });
    const expect = [
      /^wireguard\.interfaces\[0\]\.peers\[0\]\.publicKey: must be a WireGuard public key/,
      /^wireguard\.interfaces\[0\]\.peers\[0\]\.allowedIps\[0\]: must be an IPv4 or IPv6 prefix/,
      /^wireguard\.interfaces\[0\]\.peers\[0\]\.endpoint: must be host:port/,
      /^wireguard\.interfaces\[0\]\.peers\[1\]\.allowedIps: /,
      /^wireguard\.interfaces\[1\]\.name: must be a Linux interface name/,
      /^wireguard\.interfaces\[1\]\.listenPort: /,
    ];
    for (const re of expect) assert.ok(issues.some((i) => re.test(i)), `expected an issue matching ${re}; got:\n${issues.join('\n')}`);
  });

  it('rejects a peer without a key, duplicate names, ports and overlapping allowed IPs', () => {
    assert.deepEqual(issuesOf(wireguardSubsystem, { wireguard: { interfaces: [{ name: 'wg0', peers: [{ name: 'x', allowedIps: ['10.0.0.2/32'] }] }] } }), [
      "wireguard.interfaces[0].peers[0].publicKey: give the peer's publicKey, or set generateKey: true",
    ]);
    assert.deepEqual(issuesOf(wireguardSubsystem, { wireguard: { interfaces: [{ name: 'wg0' }, { name: 'wg1' }] } }), ['wireguard.interfaces[1].listenPort: UDP port 51820 is already used by interface "wg0"']);
    assert.deepEqual(
      issuesOf(wireguardSubsystem, {
        wireguard: { interfaces: [{ name: 'wg0', peers: [{ name: 'a', publicKey: pub, allowedIps: ['10.0.0.0/24'] }, { name: 'b', generateKey: true, allowedIps: ['10.0.0.0/24'] }] }] },
      }),
      ['wireguard.interfaces[0].peers[1].allowedIps[0]: 10.0.0.0/24 is already an allowed IP of peer "a"'],
    );
    // host bits are refused as in every other prefix field, never cleared silently
    assert.deepEqual(
      issuesOf(wireguardSubsystem, { wireguard: { interfaces: [{ name: 'wg0', peers: [{ name: 'b', generateKey: true, allowedIps: ['10.0.0.7/24'] }] }] } }),
      ['wireguard.interfaces[0].peers[0].allowedIps[0]: "10.0.0.7/24" has host bits set: write the network 10.0.0.0/24, or 10.0.0.7/32 for the one address'],
    );
  });

  it('renders wg syntax without secrets and routes only what the addresses do not cover', () => {
    const { desired } = wireguardModule.desired(
      contextFor({
        wireguard: {
          interfaces: [
            {
              name: 'wg0',
              addresses: ['10.8.0.1/24'],
              fwmark: 51820,
              peers: [
                { name: 'site', publicKey: pub, allowedIps: ['10.8.0.2/32', '192.168.50.0/24', '0.0.0.0/0'], endpoint: '[2001:db8::1]:51820', persistentKeepalive: 25 },
                { name: 'phone', generateKey: true, presharedKey: true, allowedIps: ['10.8.0.9'] },
              ],
            },
            { name: 'wg1', enabled: false, listenPort: 51821 },
          ],
        },
      }),
    );
    const model = desired as WireguardModel;
    assert.equal(model.interfaces.length, 1, 'disabled interfaces are not in the model');
    assert.deepEqual(model.interfaces[0]!.routes, ['192.168.50.0/24']);
    const text = renderInterface(model.interfaces[0]!);
    assert.doesNotMatch(text, /^(PrivateKey|PresharedKey) =/m);
    assert.match(text, /^ListenPort = 51820$/m);
    assert.match(text, /^FwMark = 51820$/m);
    assert.match(text, /^Endpoint = \[2001:db8::1\]:51820$/m);
    assert.match(text, /^AllowedIPs = 10\.8\.0\.9\/32$/m);
    assert.deepEqual(wireguardModule.openings!(contextFor({ wireguard: { interfaces: [{ name: 'wg0' }, { name: 'wg1', listenPort: 51900 }, { name: 'wg2', enabled: false, listenPort: 1 }] } }).config), [
      { service: 'wireguard', proto: 'udp', port: 51820, interfaces: [] },
      { service: 'wireguard', proto: 'udp', port: 51900, interfaces: [] },
    ]);
    assert.equal(wireguardModule.desired(contextFor({})).desired, null, 'no interfaces: nothing to run');

    const dir = mkdtempSync(path.join(os.tmpdir(), 'pt-wgu-'));
    try {
      const s = resolveSecrets(dir, model.interfaces[0]!);
      const full = fullConfig(model.interfaces[0]!, s);
      assert.match(full, new RegExp(`^PrivateKey = ${s.privateKey.replace(/[+/]/g, '\\$&')}$`, 'm'));
      assert.match(full, /^PresharedKey = \S{44}$/m);
      assert.equal(resolveSecrets(dir, model.interfaces[0]!).privateKey, s.privateKey, 'keys are made once and kept');
      assert.ok(!redactText(full).includes(s.privateKey), 'redactText hides PrivateKey lines');
      const paths = instancePaths(dir, 'wireguard');
      assert.deepEqual(
        wireguardModule.render(model, paths).map((f) => f.path),
        ['wg0.conf'],
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('derives public keys exactly like wg pubkey', { skip: missing({ cmd: 'wg' }) }, () => {
    for (let n = 0; n < 3; n++) {
      const kp = generateKeyPair();
      assert.equal(execaSync('wg', ['pubkey'], { input: kp.privateKey }).stdout.trim(), kp.publicKey);
      assert.equal(publicKeyOf(kp.privateKey), kp.publicKey);
    }
  });

  it('parses wg show dump into metrics and drops the private key', () => {
    const dump = [
      `PRIVKEY=\tSERVERPUB=\t51820\toff`,
      `PEER1=\t(none)\t192.0.2.2:51821\t10.77.0.2/32,10.78.0.0/24\t1763770000\t1234\t5678\t25`,
      `PEER2=\tPSK=\t(none)\t10.77.0.9/32\t0\t0\t0\toff`,
    ].join('\n');
    const s = parseDump(dump, 'wg0', new Map([['PEER1=', 'site-b']]));
    assert.deepEqual(s, {
      name: 'wg0',
      publicKey: 'SERVERPUB=',
      listenPort: 51820,
      peers: [
        { interface: 'wg0', peer: 'site-b', publicKey: 'PEER1=', presharedKey: false, endpoint: '192.0.2.2:51821', allowedIps: ['10.77.0.2/32', '10.78.0.0/24'], latestHandshake: 1763770000, rxBytes: 1234, txBytes: 5678, persistentKeepalive: 25 },
        { interface: 'wg0', peer: '', publicKey: 'PEER2=', presharedKey: true, allowedIps: ['10.77.0.9/32'], latestHandshake: 0, rxBytes: 0, txBytes: 0 },
      ],
    });
    assert.ok(!JSON.stringify(s).includes('PRIVKEY') && !JSON.stringify(s).includes('PSK='));
  });
});

describe('redactSecrets', () => {
  it('hides secret fields and inline secrets, keeps the rest', () => {
    const pem = '-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----';
    const out = redactSecrets({
      name: 'wg0',
      publicKey: pub,
      privateKey: 'abc',
      peers: [{ presharedKey: 'def', psk: 'ghi', generateKey: true }],
      ipsec: { secrets: [{ secret: 'x' }] },
      file: `cert\n${pem}\n`,
      conf: 'PrivateKey = abc\nListenPort = 1\n',
    });
    assert.deepEqual(out, {
      name: 'wg0',
      publicKey: pub,
      privateKey: REDACTED,
      peers: [{ presharedKey: REDACTED, psk: REDACTED, generateKey: true }],
      ipsec: { secrets: REDACTED },
      file: `cert\n${REDACTED}\n`,
      conf: `PrivateKey = ${REDACTED}\nListenPort = 1\n`,
    });
  });
});
