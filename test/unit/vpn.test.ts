/**
 * OpenVPN, IPsec and the VPN CA without daemons: schemas, renderers, status
 * parsers, openings, certificates.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { X509Certificate as Cert, createPrivateKey } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { openvpnSubsystem } from '../../src/services/openvpn/subsystem.js';
import { openvpnModule, parseClientList, generateTlsCryptKey, type OpenvpnModel } from '../../src/services/openvpn/openvpn.js';
import { ipsecSubsystem } from '../../src/services/ipsec/subsystem.js';
import { ipsecModule, parseListSas, type IpsecModel } from '../../src/services/ipsec/ipsec.js';
import { ensureCa, ensureCert } from '../../src/services/pki/pki.js';
import { instancePaths } from '../../src/services/common/service.js';
import { contextFor, issuesOf } from '../lib/vpn.js';

const paths = instancePaths('/var/lib/patronus', 'x');

describe('openvpn config', () => {
  it('rejects bad input with document paths', () => {
    const issues = issuesOf(openvpnSubsystem, {
      openvpn: {
        servers: [
          { name: 'a', network: '10.8.0.0/24', clients: [{ name: 'c1', address: '10.9.0.5' }, { name: 'c2', address: '10.8.0.1' }, { name: 'c3', address: '10.8.0.7' }, { name: 'c4', address: '10.8.0.7' }] },
          { name: 'b', network: '10.8.1.0/24', port: 1194, dataCiphers: ['BF-CBC'] },
        ],
        clients: [{ name: 'c', remote: 'vpn.example.net' }],
      },
    });
    const expect = [
      /^openvpn\.servers\[1\]\.dataCiphers\[0\]: /,
      /^openvpn\.clients\[0\]\.caFile: required when no profile is given/,
      /^openvpn\.clients\[0\]\.keyFile: required when no profile is given/,
    ];
    for (const re of expect) assert.ok(issues.some((i) => re.test(i)), `expected ${re}; got:\n${issues.join('\n')}`);
    assert.deepEqual(issuesOf(openvpnSubsystem, { openvpn: { servers: [{ name: 'a', network: '10.8.0.0/24', clients: [{ name: 'c1', address: '10.9.0.5' }, { name: 'c2', address: '10.8.0.1' }, { name: 'c3', address: '10.8.0.7' }, { name: 'c4', address: '10.8.0.7' }] }, { name: 'b', network: '10.8.1.0/24' }] } }), [
      'openvpn.servers[1].port: udp/1194 is already used by servers[0]',
    ]);
    assert.deepEqual(issuesOf(openvpnSubsystem, { openvpn: { servers: [{ name: 'a', network: '10.8.0.0/24', clients: [{ name: 'c1', address: '10.9.0.5' }, { name: 'c2', address: '10.8.0.1' }, { name: 'c3', address: '10.8.0.7' }, { name: 'c4', address: '10.8.0.7' }] }] } }), [
      'openvpn.servers[0].clients[0].address: 10.9.0.5 is outside the server network 10.8.0.0/24',
      "openvpn.servers[0].clients[1].address: 10.8.0.1 is the server's own address",
      'openvpn.servers[0].clients[3].address: 10.8.0.7 is already the address of client "c3"',
    ]);
    assert.deepEqual(issuesOf(openvpnSubsystem, { openvpn: { servers: [{ name: 'a-very-long-server-name', network: '10.8.2.0/24' }] } }), [
      'openvpn.servers[0].device: default device name "ovpn-a-very-long-server-name" is longer than 15 characters: set device',
    ]);
    assert.deepEqual(issuesOf(openvpnSubsystem, { openvpn: { clients: [{ name: 'c', profile: '/nonexistent/c.ovpn' }] } }), [
      "openvpn.clients[0].profile: cannot read /nonexistent/c.ovpn: ENOENT: no such file or directory, open '/nonexistent/c.ovpn'",
    ]);
  });

  it('renders a TLS server with tls-crypt, AEAD ciphers, no DCO and exclusive client files', () => {
    const { desired } = openvpnModule.desired(
      contextFor({
        openvpn: {
          servers: [{ name: 'road', network: '10.8.0.0/24', pushRoutes: ['192.168.1.0/24'], dns: ['10.8.0.1', '2001:db8::53'], clients: [{ name: 'alice', address: '10.8.0.9', routes: ['192.168.9.0/24'] }] }],
          clients: [{ name: 'up', profile: '/etc/hostname', device: 'tun-up' }],
        },
      }),
    );
    const files = openvpnModule.render(desired as OpenvpnModel, paths);
    assert.deepEqual(files.map((f) => f.path), ['server-road.conf', 'ccd-road/alice', 'server-road.clients', 'client-up.conf']);
    const server = files[0]!.content.split('\n');
    for (const line of [
      'mode server',
      'dev ovpn-road',
      'dev-type tun',
      'topology subnet',
      'server 10.8.0.0 255.255.255.0',
      'data-ciphers AES-256-GCM:AES-128-GCM',
      'disable-dco',
      'remote-cert-tls client',
      'ccd-exclusive',
      'push "route 192.168.1.0 255.255.255.0"',
      'push "dhcp-option DNS 10.8.0.1"',
      'push "dhcp-option DNS6 2001:db8::53"',
      'explicit-exit-notify 1',
      'tls-crypt /var/lib/patronus/keys/openvpn/road.tlscrypt',
      'key /var/lib/patronus/keys/pki/openvpn-road/server.key',
      `management ${paths.runDir}/server-road.sock unix`,
    ]) {
      assert.ok(server.includes(line), `server config has "${line}"`);
    }
    assert.equal(files[1]!.content, '# client alice of road (ccd-exclusive: this file lets it connect)\nifconfig-push 10.8.0.9 255.255.255.0\niroute 192.168.9.0 255.255.255.0\n');
    // nothing about single clients in the server's own file: a changed client list needs no restart
    assert.ok(!files[0]!.content.includes('alice') && !files[0]!.content.includes('192.168.9.0'), 'no per-client data in the server config');
    const client = files[3]!.content.split('\n');
    assert.equal(client[1], 'config /etc/hostname', 'the profile comes first so Patronus lines override it');
    assert.ok(client.includes('dev tun-up') && client.includes('disable-dco') && !client.some((l) => l.startsWith('remote ')));
    assert.deepEqual(openvpnModule.openings!(contextFor({ openvpn: { servers: [{ name: 'a', network: '10.8.0.0/24' }, { name: 'b', proto: 'tcp', port: 443, network: '10.9.0.0/24' }, { name: 'c', enabled: false, network: '10.10.0.0/24', port: 1 }] } }).config), [
      { service: 'openvpn', proto: 'udp', port: 1194, interfaces: [] },
      { service: 'openvpn', proto: 'tcp', port: 443, interfaces: [] },
    ]);
  });

  it('parses the management status of connected clients', () => {
    const lines = [
      'TITLE\tOpenVPN 2.6.14',
      'HEADER\tCLIENT_LIST\tCommon Name\tReal Address\tVirtual Address\tVirtual IPv6 Address\tBytes Received\tBytes Sent\tConnected Since\tConnected Since (time_t)\tUsername\tClient ID\tPeer ID\tData Channel Cipher',
      'CLIENT_LIST\talice\t192.0.2.2:51672\t10.8.0.9\t\t4242\t5151\t2026-11-22 00:12:27\t1763770347\tUNDEF\t0\t0\tAES-256-GCM',
      'HEADER\tROUTING_TABLE\tVirtual Address\tCommon Name',
      'ROUTING_TABLE\t10.8.0.9\talice',
    ];
    assert.deepEqual(parseClientList(lines, 'road'), [
      { server: 'road', commonName: 'alice', realAddress: '192.0.2.2:51672', virtualAddress: '10.8.0.9', virtualAddress6: '', rxBytes: 4242, txBytes: 5151, connectedSince: 1763770347, cipher: 'AES-256-GCM' },
    ]);
  });

  it('makes tls-crypt keys in OpenVPN static key format', () => {
    const k = generateTlsCryptKey();
    assert.match(k, /^-----BEGIN OpenVPN Static key V1-----\n([0-9a-f]{32}\n){16}-----END OpenVPN Static key V1-----\n$/);
    assert.notEqual(k, generateTlsCryptKey());
  });
});

describe('ipsec config', () => {
  it('rejects bad input with document paths', () => {
    const issues = issuesOf(ipsecSubsystem, {
      ipsec: {
        connections: [
          { name: 'a', auth: 'psk', children: [{ name: 'c' }] },
          { name: 'b', auth: 'cert', pools: ['nope'], children: [{ name: 'c', remoteTs: ['10.0.0.0/33'] }] },
          { name: 'c', auth: 'cert', localId: 'bad"id', children: [] },
        ],
      },
    });
    const expect = [
      /^ipsec\.connections\[0\]\.pskFile: required with auth: psk/,
      /^ipsec\.connections\[1\]\.localId: required with auth: cert/,
      /^ipsec\.connections\[1\]\.pools\[0\]: no pool named "nope"/,
      /^ipsec\.connections\[1\]\.children\[0\]\.remoteTs\[0\]: /,
      /^ipsec\.connections\[2\]\.localId: must be an IKE identity/,
      /^ipsec\.connections\[2\]\.children: /,
    ];
    for (const re of expect) assert.ok(issues.some((i) => re.test(i)), `expected ${re}; got:\n${issues.join('\n')}`);
  });

  it('renders swanctl.conf: PSK as base64, identities from lone addresses, pools, libipsec-safe encap', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'pt-ipu-'));
    try {
      writeFileSync(path.join(dir, 'psk'), 'a "quoted" secret with } braces\n');
      const ctx = contextFor({
        ipsec: {
          pools: [{ name: 'rw', addresses: '10.99.0.0/24', dns: ['10.99.0.1'] }],
          connections: [
            { name: 's2s', auth: 'psk', pskFile: path.join(dir, 'psk'), localAddresses: ['192.0.2.1'], remoteAddresses: ['192.0.2.2'], children: [{ name: 'net', localTs: ['10.1.0.0/24'], remoteTs: ['10.2.0.0/24'] }] },
            { name: 'rw', auth: 'cert', localId: 'vpn.example.net', pools: ['rw'], children: [{ name: 'net', localTs: ['10.1.0.0/24'] }] },
          ],
        },
      });
      const { desired, issues } = ipsecModule.desired(ctx);
      assert.deepEqual(issues, []);
      const files = ipsecModule.render(desired as IpsecModel, paths);
      const swanctl = files.find((f) => f.path === 'swanctl.conf')!;
      assert.equal(swanctl.mode, 0o600);
      const text = swanctl.content;
      assert.ok(!text.includes('quoted'), 'the key is not in clear text');
      assert.match(text, new RegExp(`secret = 0s${Buffer.from('a "quoted" secret with } braces').toString('base64').replace(/[+/]/g, '\\$&')}`));
      assert.match(text, /id-1 = "192\.0\.2\.1"\n\s+id-2 = "192\.0\.2\.2"/);
      assert.match(text, /s2s \{[\s\S]*?encap = yes[\s\S]*?start_action = start/);
      assert.match(text, /rw \{[\s\S]*?remote_addrs = %any[\s\S]*?pools = rw[\s\S]*?certs = \/var\/lib\/patronus\/keys\/pki\/ipsec\/conn-rw\.crt[\s\S]*?cacerts = \/var\/lib\/patronus\/keys\/pki\/ipsec\/ca\.crt[\s\S]*?start_action = none/);
      assert.match(text, /pools \{\n  rw \{\n    addrs = 10\.99\.0\.0\/24\n    dns = 10\.99\.0\.1/);
      const ss = files.find((f) => f.path === 'strongswan.conf')!.content;
      assert.match(ss, /charon-systemd \{/);
      assert.match(ss, new RegExp(`socket = unix://${paths.runDir}/charon.vici`));
      assert.doesNotMatch(ss, /stroke|resolve/);
      assert.deepEqual(ipsecModule.openings!(ctx.config), [
        { service: 'ipsec', proto: 'udp', port: 500, interfaces: [] },
        { service: 'ipsec', proto: 'udp', port: 4500, interfaces: [] },
        { service: 'ipsec', proto: 'esp', interfaces: [] },
      ]);
      assert.deepEqual(ipsecModule.openings!(contextFor({}).config), []);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('parses swanctl --list-sas --pretty into SA metrics', () => {
    const text = `list-sa event {
  s2s {
    uniqueid = 1
    version = 2
    state = ESTABLISHED
    local-host = 192.0.2.1
    local-port = 4500
    local-id = 192.0.2.1
    remote-host = 192.0.2.2
    remote-port = 4500
    remote-id = 192.0.2.2
    initiator = yes
    encr-alg = AES_GCM_16
    encr-keysize = 256
    established = 12
    local-vips = [
      10.99.0.1
    ]
    child-sas {
      net-2 {
        name = net
        uniqueid = 2
        state = INSTALLED
        mode = TUNNEL
        protocol = ESP
        encap = yes
        encr-alg = AES_GCM_16
        encr-keysize = 256
        bytes-in = 252
        packets-in = 3
        bytes-out = 336
        packets-out = 4
        install-time = 11
        local-ts = [
          10.1.0.0/24
        ]
        remote-ts = [
          10.2.0.0/24
          10.3.0.0/24
        ]
      }
    }
  }
}
list-sas reply {
}
`;
    assert.deepEqual(parseListSas(text), [
      {
        connection: 's2s',
        uniqueId: 1,
        state: 'ESTABLISHED',
        localHost: '192.0.2.1',
        localPort: 4500,
        remoteHost: '192.0.2.2',
        remotePort: 4500,
        localId: '192.0.2.1',
        remoteId: '192.0.2.2',
        initiator: true,
        encryption: 'AES_GCM_16-256',
        established: 12,
        localVips: ['10.99.0.1'],
        remoteVips: [],
        children: [
          { name: 'net', uniqueId: 2, state: 'INSTALLED', mode: 'TUNNEL', protocol: 'ESP', encap: true, encryption: 'AES_GCM_16-256', bytesIn: 252, bytesOut: 336, packetsIn: 3, packetsOut: 4, installed: 11, localTs: ['10.1.0.0/24'], remoteTs: ['10.2.0.0/24', '10.3.0.0/24'] },
        ],
      },
    ]);
    assert.deepEqual(parseListSas('list-sas reply {\n}\n'), []);
  });
});

describe('VPN certificate authority', () => {
  it('issues server, client and IPsec certificates with the right key usage, and re-issues only on change', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'pt-pki-'));
    try {
      const ca = await ensureCa(dir, 't');
      const caCert = new Cert(ca.cert);
      assert.ok(caCert.ca);
      const server = await ensureCert(dir, 't', { name: 'server', commonName: 'vpn.example.net', usage: 'server', altNames: ['vpn.example.net', '192.0.2.1', '2001:db8::1'] });
      const s = new Cert(server.cert);
      assert.ok(s.checkIssued(caCert) && s.verify(caCert.publicKey));
      assert.deepEqual(s.keyUsage, ['1.3.6.1.5.5.7.3.1'], 'serverAuth');
      assert.match(s.subjectAltName!, /DNS:vpn\.example\.net, IP Address:192\.0\.2\.1, IP Address:2001:DB8:0:0:0:0:0:1/);
      assert.ok(s.checkPrivateKey(createPrivateKey(server.key)));
      const client = new Cert((await ensureCert(dir, 't', { name: 'c', commonName: 'alice', usage: 'client' })).cert);
      assert.deepEqual(client.keyUsage, ['1.3.6.1.5.5.7.3.2'], 'clientAuth');
      const ike = new Cert((await ensureCert(dir, 't', { name: 'i', commonName: 'gw.example.net', usage: 'ipsec', altNames: ['gw.example.net'] })).cert);
      assert.deepEqual(ike.keyUsage!.sort(), ['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2', '1.3.6.1.5.5.8.2.2']);

      // same request: same certificate; changed SAN: new certificate, same key
      assert.equal((await ensureCert(dir, 't', { name: 'server', commonName: 'vpn.example.net', usage: 'server', altNames: ['vpn.example.net', '192.0.2.1', '2001:db8::1'] })).cert, server.cert);
      const changed = await ensureCert(dir, 't', { name: 'server', commonName: 'vpn.example.net', usage: 'server', altNames: ['vpn2.example.net'] });
      assert.notEqual(changed.cert, server.cert);
      assert.equal(changed.key, server.key);
      await assert.rejects(ensureCert(dir, 't', { name: '../x', commonName: 'x', usage: 'client' }), /not a safe file name/);
      // ECDSA P-256 by default; RSA on request; a CA signs with its own key type
      assert.equal(createPrivateKey(server.key).asymmetricKeyDetails?.namedCurve, 'prime256v1');
      assert.equal(caCert.publicKey.asymmetricKeyType, 'ec');
      const rsa = await ensureCert(dir, 't', { name: 'legacy', commonName: 'old-peer', usage: 'client', keyType: 'rsa-2048' });
      assert.equal(createPrivateKey(rsa.key).asymmetricKeyType, 'rsa');
      assert.ok(new Cert(rsa.cert).verify(caCert.publicKey));
      // openssl agrees the chain verifies (its own parser, not node's)
      const { execaSync } = await import('execa');
      writeFileSync(path.join(dir, 'server.pem'), server.cert);
      const v = execaSync('openssl', ['verify', '-CAfile', ca.certFile, '-purpose', 'sslserver', path.join(dir, 'server.pem')], { reject: false });
      assert.equal(v.exitCode, 0, v.stderr);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});


describe('ACME certificates on VPN servers (config)', () => {
  const acme = { directory: 'https://acme.example.org/dir', termsOfServiceAgreed: true };
  it('every consumer names a certificate of certificates.issue; an IPsec identity must be one of its domains', async () => {
    const { certificatesSubsystem } = await import('../../src/certificates/subsystem.js');
    const doc = {
      certificates: { acme, issue: [{ name: 'vpn', domains: ['vpn.example.org'] }] },
      openvpn: { servers: [{ name: 'road', network: '10.8.0.0/24', certificate: 'nope' }] },
      ipsec: {
        connections: [
          { name: 'rw', auth: 'cert', certificate: 'vpn', localId: 'other.example.org', children: [{ name: 'c' }] },
          { name: 'gone', auth: 'cert', certificate: 'missing', children: [{ name: 'c' }] },
          { name: 'psk', auth: 'psk', pskFile: '/dev/null', certificate: 'vpn', children: [{ name: 'c' }] },
        ],
      },
    };
    assert.deepEqual(issuesOf(certificatesSubsystem, doc), ['ipsec.connections[2].certificate: only used with auth: cert']);
    delete (doc.ipsec.connections as unknown[])[2];
    doc.ipsec.connections = doc.ipsec.connections.filter(Boolean);
    assert.deepEqual(issuesOf(certificatesSubsystem, doc), [
      'openvpn.servers[0].certificate: no certificate "nope" in certificates.issue',
      'ipsec.connections[0].localId: "other.example.org" is not a domain of certificate vpn (vpn.example.org): the peer could not match it',
      'ipsec.connections[1].certificate: no certificate "missing" in certificates.issue',
    ]);
  });

  it('renders the ACME copy as the server certificate, the CA for clients, and the IPsec identity from its first domain', () => {
    const doc = {
      certificates: { acme, issue: [{ name: 'vpn', domains: ['vpn.example.org', 'alt.example.org'] }] },
      openvpn: { servers: [{ name: 'road', network: '10.8.0.0/24', certificate: 'vpn' }] },
      ipsec: { connections: [{ name: 'rw', auth: 'cert', certificate: 'vpn', children: [{ name: 'c' }] }] },
    };
    const ctx = contextFor(doc);
    const ov = openvpnModule.desired(ctx).desired!;
    const conf = openvpnModule.render(ov, paths).find((f) => f.path === 'server-road.conf')!.content;
    assert.match(conf, /^cert \/var\/lib\/patronus\/services\/x\/tls\/server-road\.pem$/m);
    assert.match(conf, /^key \/var\/lib\/patronus\/services\/x\/tls\/server-road\.key$/m);
    assert.match(conf, /^ca \/var\/lib\/patronus\/keys\/pki\/openvpn-road\/ca\.crt$/m);
    assert.deepEqual(openvpnModule.certificates!(ov), [{ name: 'vpn', file: 'tls/server-road' }]);
    const ip = ipsecModule.desired(ctx).desired!;
    const swanctl = ipsecModule.render(ip, paths).find((f) => f.path === 'swanctl.conf')!.content;
    assert.match(swanctl, /id = "vpn\.example\.org"/);
    assert.match(swanctl, /certs = \/var\/lib\/patronus\/services\/x\/acme\/vpn\.pem/);
    assert.deepEqual(ipsecModule.certificates!(ip), [{ name: 'vpn', file: 'acme/vpn' }]);
  });

  it('plan before the certificate is issued shows its copy as a file to add (apply copies it after the certificates step)', async () => {
    const { Host } = await import('../../src/system/host.js');
    const dir = mkdtempSync(path.join(os.tmpdir(), 'pt-acmeplan-'));
    try {
      const host = new Host({ netns: 'pt-none', stateDir: dir });
      const doc = { certificates: { acme, issue: [{ name: 'vpn', domains: ['vpn.example.org'] }] }, openvpn: { servers: [{ name: 'road', network: '10.8.0.0/24', certificate: 'vpn' }] } };
      const { desired } = openvpnSubsystem.compile(contextFor(doc));
      const plan = (await openvpnSubsystem.plan(desired, host)).map((c) => `${c.action} ${c.object}`);
      assert.ok(plan.includes('add openvpn file tls/server-road.pem') && plan.includes('add openvpn file tls/server-road.key'), plan.join('\n'));
      assert.deepEqual(await openvpnSubsystem.drift!(desired, host), [{ object: 'openvpn', reason: `not running (no live process for ${dir}/services/openvpn/run/openvpn.pid; log: ${dir}/services/openvpn/openvpn.log)` }]);
      // applied while it is still missing (the certificates step failed): a clear error, no daemon started
      await assert.rejects(openvpnSubsystem.apply(desired, host), /openvpn: certificate "vpn" is not in service \(the certificates step orders it; see its error\)/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
