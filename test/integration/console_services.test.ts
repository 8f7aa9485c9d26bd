/**
 * The console's Services page in a real browser (Debian's chromium, playwright-core)
 * against a real `patronus serve` that runs the gateway's daemons in a test namespace:
 * Kea (a dhclient in a client namespace takes a lease), Unbound (the client's
 * queries, one of them for a blocklisted name), WireGuard (wireguard-go, one
 * generated peer), OpenVPN (one client), keepalived (one VRRP instance, alone:
 * it becomes master) and FRR (a BGP neighbour that never answers). The page
 * shows each of them; an admin sees the peer's client configuration (QR code,
 * .conf) and the OpenVPN client's .ovpn, and a viewer does not (nor may it
 * fetch them: 403). The answers the page reads are validated against
 * /openapi.json. The IDS card is the exception: Suricata has no package here,
 * so its answers are fixtures (checked against /openapi.json) served by the
 * browser's request routing; the real unblock route is tested in ids.test.ts
 * and its role and CSRF checks in api_roles.test.ts. axe-core on the page; its screenshot goes to
 * dist/test-output/console/services.png (docs/console.md shows a copy).
 *
 *   cli (52:54:00:bb:00:15) --eth0/lan0-- fw (10.69.0.1; wan0 192.0.2.2) --wan0/eth0-- peer (192.0.2.1)
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { missing, hasCommand } from '../lib/skip.js';
import { controlLab, type ControlLab } from '../lib/control.js';
import type { Netns } from '../lib/netns.js';
import { ServeProcess, removeServePins, serveHost, writeConfig, CLI } from '../lib/fault.js';
import { CHROMIUM, CONSOLE_OUT, assertAccessible, launchChromium } from '../lib/browser.js';
import { subsystems } from '../../src/domains.js';

const ADS = fileURLToPath(new URL('../../../examples/dns/blocklists/ads.txt', import.meta.url));
const MAC = '52:54:00:bb:00:15';
const ADMIN = 'services-admin';
const PASSWORD = 'correct horse battery staple';

const skip =
  missing('netns', { cmd: 'nft' }, { cmd: 'kea-dhcp4' }, { cmd: 'dhclient' }, { cmd: 'unbound' }, { cmd: 'dig' }, { cmd: 'wg' }, { cmd: 'wireguard-go' }, { cmd: 'openvpn' }, { cmd: 'keepalived' }, { cmd: 'vtysh' }, { cmd: 'unshare' }) ??
  (process.env.CI !== 'true' && !hasCommand(CHROMIUM) ? `needs ${CHROMIUM} (Debian package chromium)` : undefined);

describe('web console: the Services page with real daemons', { skip, timeout: 300_000 }, () => {
  let L: ControlLab;
  let cli: Netns;
  let serve: ServeProcess | undefined;
  let browser: Browser;
  let dhclientPid: number | undefined;
  // wireguard-go's socket is /var/run/wireguard/NAME.sock: the name must be unique on the machine
  let wg: string;
  const file = (ext: string) => join(L.stateDir, `cli.${ext}`);

  const document = () => ({
    interfaces: [
      { name: 'wan0', zone: 'wan', addresses: ['192.0.2.2/24'] },
      { name: 'lan0', zone: 'lan', addresses: ['10.69.0.1/24'] },
    ],
    dhcp: { enabled: true, validLifetime: 600, subnets: [{ id: 7, subnet: '10.69.0.0/24', interface: 'lan0', pools: ['10.69.0.100-10.69.0.110'], router: '10.69.0.1', dnsServers: ['10.69.0.1'] }] },
    dns: {
      enabled: true,
      mode: 'forward',
      upstreams: [{ address: '192.0.2.1' }],
      listen: { interfaces: ['lan0'] },
      dnssec: { enabled: false },
      records: [{ type: 'A', name: 'gw.office.example', address: '10.69.0.1' }],
      blocklists: [{ name: 'ads', file: ADS, format: 'domains', answer: 'nxdomain' }],
    },
    wireguard: {
      interfaces: [{ name: wg, listenPort: 51820, addresses: ['10.79.0.1/24'], clientExport: { endpoint: 'vpn.example.net:51820' }, peers: [{ name: 'phone', generateKey: true, allowedIps: ['10.79.0.9/32'] }] }],
    },
    openvpn: { servers: [{ name: 'road', port: 1194, network: '10.88.0.0/24', remoteHost: 'vpn.example.net', clients: [{ name: 'alice' }] }] },
    ha: { role: 'primary', instances: [{ name: 'LAN', interface: 'lan0', virtualRouterId: 57, advertInterval: 0.5, virtualAddresses: ['10.69.0.254/24'] }] },
    routing: { bgp: { asn: 65001, neighbors: [{ address: '192.0.2.1', remoteAs: 65002, description: 'upstream' }] } },
    drift: { intervalSeconds: 3600 },
  });

  async function signIn(context: BrowserContext, how: { user: string; password: string } | { token: string }): Promise<Page> {
    const page = await context.newPage();
    page.setDefaultTimeout(30_000);
    await page.goto(`${serve!.base}/console/`);
    await page.getByRole('heading', { name: 'Sign in to Patronus' }).waitFor();
    if ('token' in how) {
      await page.getByRole('button', { name: 'API token' }).click();
      await page.getByLabel('API token').fill(how.token);
    } else {
      await page.getByLabel('User', { exact: true }).fill(how.user);
      await page.getByLabel('Password').fill(how.password);
    }
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    await page.getByRole('heading', { level: 1, name: 'Dashboard' }).waitFor();
    await page.goto(`${serve!.base}/console/#/services`);
    await page.getByRole('heading', { level: 1, name: 'Services' }).waitFor();
    return page;
  }
  /** A card of the page, by its heading. */
  const card = (page: Page, name: string) => page.locator('section.card', { has: page.getByRole('heading', { level: 2, name, exact: true }) });
  /** The row of a table in a card whose text has all of `texts`. */
  const row = (page: Page, name: string, ...texts: (string | RegExp)[]) => {
    let r = card(page, name).locator('tr');
    for (const t of texts) r = r.filter({ hasText: t });
    return r.first();
  };

  /** Asserts that `body` is what /openapi.json declares for the 200 answer of `method path` (ajv, JSON Schema 2020-12 as OpenAPI 3.1). */
  let ajv: Ajv2020 | undefined;
  async function matchesOpenapi(method: string, path: string, body: unknown): Promise<void> {
    if (!ajv) {
      const r = await fetch(`${serve!.base}/openapi.json`, { headers: { authorization: `Bearer ${serve!.token}` }, signal: AbortSignal.timeout(60_000) });
      assert.equal(r.status, 200);
      ajv = new Ajv2020({ allErrors: true, strict: false });
      addFormats.default(ajv);
      // $refs resolve inside the document (its components)
      ajv.addSchema((await r.json()) as object, 'openapi.json');
    }
    const pointer = `openapi.json#/paths/${path.replace(/~/g, '~0').replace(/\//g, '~1')}/${method.toLowerCase()}/responses/200/content/application~1json/schema`;
    const validate = ajv.compile({ $ref: pointer });
    assert.ok(validate(body), `${method} ${path}: ${ajv.errorsText(validate.errors)}\n${JSON.stringify(body).slice(0, 500)}`);
  }

  /** Kea lists the lease the client took (the lease_cmds answer follows the exchange closely, not at once). */
  const waitForLease = async () => {
    const end = Date.now() + 60_000;
    for (;;) {
      const r = await fetch(`${serve!.base}/api/v1/dhcp/leases`, { headers: { authorization: `Bearer ${serve!.token}` }, signal: AbortSignal.timeout(60_000) });
      const body = (await r.json()) as { leases?: { mac: string }[] };
      if (body.leases?.some((l) => l.mac === MAC)) return;
      if (Date.now() > end) throw new Error(`timed out waiting for the lease of ${MAC} on GET /api/v1/dhcp/leases: ${JSON.stringify(body)}`);
      await new Promise((r) => setTimeout(r, 250));
    }
  };

  before(async () => {
    mkdirSync(CONSOLE_OUT, { recursive: true });
    L = await controlLab();
    wg = `wgc${L.lab.id}`.slice(0, 15);
    cli = await L.lab.ns('cli');
    await L.lab.veth({ ns: L.fw, dev: 'lan0' }, { ns: cli, dev: 'eth0' });
    await cli.ip('link', 'set', 'eth0', 'address', MAC);
    serve = await ServeProcess.start({ netns: L.fw, stateDir: L.stateDir, config: writeConfig(L.stateDir, 'services.json', document()), timeoutMs: 180_000 });
    const user = await execa(process.execPath, [CLI, '--state-dir', L.stateDir, 'user', 'add', ADMIN, '--role', 'admin'], { input: `${PASSWORD}\n`, reject: false, timeout: 60_000 });
    assert.equal(user.exitCode, 0, user.stderr);
    browser = await launchChromium();
  });

  after(async () => {
    await browser?.close().catch(() => undefined);
    if (dhclientPid) {
      try {
        process.kill(dhclientPid);
      } catch {}
    }
    await serve?.stop().catch(() => undefined);
    if (L) {
      // serve leaves the daemons running (the data plane outlives the control plane): stop them in the namespace
      const host = serveHost(L.fw, L.stateDir);
      for (const s of [...subsystems].reverse()) await s.teardown?.(host).catch((e: Error) => console.error(`# teardown ${s.name}: ${e.message}`));
      removeServePins(host);
      await L.teardown();
    }
  });

  it('the daemons run: a DHCP lease, DNS answers (a blocklisted name: NXDOMAIN)', async () => {
    // one real DHCP exchange (own lease/pid/script files: the stock script rewrites resolv.conf)
    writeFileSync(file('conf'), 'timeout 30;\ninitial-interval 1;\n');
    writeFileSync(file('sh'), '#!/bin/sh\ncase "$reason" in BOUND) ip addr add "$new_ip_address/24" dev "$interface" ;; esac\nexit 0\n', { mode: 0o755 });
    await cli.nsenter('dhclient', ['-1', '-cf', file('conf'), '-lf', file('leases'), '-pf', file('pid'), '-sf', file('sh'), 'eth0'], { timeout: 60_000 });
    dhclientPid = Number(readFileSync(file('pid'), 'utf8').trim()) || undefined;
    const dig = (name: string) => cli.exec('dig', ['+short', '+tries=3', '+time=3', '@10.69.0.1', name], { timeout: 30_000 });
    assert.equal((await dig('gw.office.example')).stdout.trim(), '10.69.0.1');
    const blocked = await cli.exec('dig', ['+tries=3', '+time=3', '@10.69.0.1', 'ads.example.net'], { timeout: 30_000 });
    assert.match(blocked.stdout, /status: NXDOMAIN/);
  });

  it('the answers the page reads match their schemas in /openapi.json (ajv; the console\'s types are generated from them)', async () => {
    const api = async (path: string) => {
      const r = await fetch(`${serve!.base}${path}`, { headers: { authorization: `Bearer ${serve!.token}` }, signal: AbortSignal.timeout(60_000) });
      assert.equal(r.status, 200, `${path}: ${r.status}`);
      return r.json() as Promise<unknown>;
    };
    await waitForLease();
    for (const path of ['/api/v1/dhcp/leases', '/api/v1/ids/alerts', '/api/v1/config', '/api/v1/services', '/api/v1/events']) await matchesOpenapi('GET', path, await api(path));
    const leases = (await api('/api/v1/dhcp/leases')) as { leases: { mac: string }[] };
    assert.deepEqual(leases.leases.map((l) => l.mac), [MAC]);
  });

  it('an admin sees the lease, DNS statistics and blocklist, the WireGuard peer with its QR code and .conf, the .ovpn, VRRP and the BGP neighbour', async () => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, bypassCSP: true });
    try {
      const page = await signIn(context, { user: ADMIN, password: PASSWORD });
      // the page reloads its lists every 5 s and the gateway panel comes with each dashboard frame: wait, generously
      const wait = { timeout: 60_000 };
      await row(page, 'DHCP leases', MAC, /10\.69\.0\.1(0\d|10)/, 'active').waitFor(wait);
      await card(page, 'DNS').getByText(/^Queries: [1-9]/).waitFor(wait);
      await row(page, 'DNS', /^ads\d+$/).waitFor(wait);
      await row(page, 'VPN tunnels', wg, 'phone').waitFor(wait);
      await row(page, 'Routing and VRRP', 'LAN', 'master').waitFor(wait);
      await row(page, 'Routing and VRRP', '192.0.2.1').waitFor(wait);
      // the peer's client configuration: a QR code on the page (an SVG the server draws)
      const exports = page.getByTestId('exports');
      await exports.getByText(`WireGuard ${wg} / phone`).waitFor();
      await exports.getByRole('button', { name: 'QR code' }).click();
      const qr = exports.getByRole('img', { name: `WireGuard configuration of ${wg}/phone as a QR code` });
      await qr.waitFor();
      assert.ok(await qr.evaluate((img) => (img as unknown as { complete: boolean; naturalWidth: number }).complete && (img as unknown as { naturalWidth: number }).naturalWidth > 0), 'the QR code image loaded');
      // and the .conf download holds the peer's private key
      const [download] = await Promise.all([page.waitForEvent('download'), exports.getByRole('button', { name: 'Download .conf' }).click()]);
      assert.equal(download.suggestedFilename(), `phone-${wg}.conf`);
      const conf = readFileSync((await download.path())!, 'utf8');
      assert.match(conf, /^PrivateKey = \S+=$/m);
      assert.match(conf, /^Endpoint = vpn\.example\.net:51820$/m);
      // the OpenVPN client's .ovpn profile, with its key
      await exports.getByText('OpenVPN road / alice').waitFor();
      const [profile] = await Promise.all([page.waitForEvent('download'), exports.getByRole('button', { name: 'Download .ovpn' }).click()]);
      assert.equal(profile.suggestedFilename(), 'alice-road.ovpn');
      const ovpn = readFileSync((await profile.path())!, 'utf8');
      assert.match(ovpn, /^remote vpn\.example\.net 1194 udp$/m);
      assert.match(ovpn, /<key>\n-----BEGIN [\s\S]+?<\/key>/);
      await assertAccessible(page, 'services (admin, with daemons)');
      await page.screenshot({ path: join(CONSOLE_OUT, 'services.png'), fullPage: true });
    } finally {
      await context.close();
    }
  });

  it('the IDS card: alerts, blocked sources, and Unblock sends the DELETE with the session\'s CSRF token (Suricata is not packaged here: the answers are fixtures checked against /openapi.json)', async () => {
    const blockedUntil = new Date(Date.now() + 3600_000).toISOString();
    let blocked = [{ address: '198.51.100.66', expiresAt: blockedUntil }];
    const alerts = () => ({
      ingesting: true,
      alerts: [{ timestamp: new Date().toISOString(), srcIp: '198.51.100.66', srcPort: 40000, destIp: '10.69.0.1', destPort: 22, proto: 'TCP', action: 'allowed', gid: 1, signatureId: 2001219, rev: 20, signature: 'ET SCAN Potential SSH Scan', category: 'Attempted Information Leak', severity: 2 }],
      summary: { alerts: 1, bySeverity: { 2: 1 }, signatures: [{ signatureId: 2001219, signature: 'ET SCAN Potential SSH Scan', severity: 2, count: 1 }], malformedLines: 0, autoBlock: { enabled: true, blocks: 1, current: blocked, errors: 0, recent: [] } },
    });
    await matchesOpenapi('GET', '/api/v1/ids/alerts', alerts());
    const unblocked = { address: '198.51.100.66', removed: true };
    await matchesOpenapi('DELETE', '/api/v1/ids/blocks/{address}', unblocked);
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, bypassCSP: true });
    try {
      const deletes: { url: string; csrf: string | undefined }[] = [];
      await context.route('**/api/v1/ids/alerts*', (route) => route.fulfill({ json: alerts() }));
      await context.route('**/api/v1/ids/blocks/*', (route) => {
        if (route.request().method() !== 'DELETE') return route.continue();
        deletes.push({ url: route.request().url(), csrf: route.request().headers()['x-csrf-token'] });
        blocked = [];
        return route.fulfill({ json: unblocked });
      });
      const page = await signIn(context, { user: ADMIN, password: PASSWORD });
      await row(page, 'IDS', 'ET SCAN Potential SSH Scan', '198.51.100.66').waitFor();
      const ids = card(page, 'IDS');
      await ids.getByTestId('ids-blocks').getByText(/198\.51\.100\.66 blocked until/).waitFor();
      await assertAccessible(page, 'services (IDS card)');
      await ids.getByRole('button', { name: 'Unblock 198.51.100.66' }).click();
      await ids.getByTestId('unblock-status').filter({ hasText: '198.51.100.66 unblocked.' }).waitFor();
      await ids.getByText('No source is blocked now.').waitFor();
      assert.equal(deletes.length, 1);
      assert.match(deletes[0]!.url, /\/api\/v1\/ids\/blocks\/198\.51\.100\.66$/);
      assert.match(deletes[0]!.csrf ?? '', /^\S{16,}$/, 'the CSRF token goes with the DELETE');
    } finally {
      await context.close();
    }
  });

  it('a viewer sees the same services, but no client configuration export (and the API refuses it: 403); the page fits a phone', async () => {
    const add = await execa(process.execPath, [CLI, '--state-dir', L.stateDir, 'token', 'add', 'services-viewer', '--role', 'viewer'], { reject: false, timeout: 60_000 });
    assert.equal(add.exitCode, 0, add.stderr);
    const token = add.stdout.trim().split(/\s+/).pop()!;
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    try {
      const page = await signIn(context, { token });
      await row(page, 'DHCP leases', MAC).waitFor({ timeout: 60_000 });
      await row(page, 'VPN tunnels', wg, 'phone').waitFor({ timeout: 60_000 });
      await page.getByText('Exports hold private keys: administrators only.').waitFor();
      assert.equal(await page.getByTestId('exports').count(), 0);
      assert.equal(await page.getByRole('button', { name: /QR code|Download/ }).count(), 0);
      // with its tables full, the page still fits a phone (wide tables scroll inside their card)
      await page.setViewportSize({ width: 390, height: 844 });
      await page.waitForFunction('document.documentElement.scrollWidth - window.innerWidth <= 1', undefined, { timeout: 10_000 }).catch(() => undefined);
      const overflow = Number(await page.evaluate('document.documentElement.scrollWidth - window.innerWidth'));
      assert.ok(overflow <= 1, `Services at 390 px scrolls sideways by ${overflow} px`);
      for (const path of [`/api/v1/vpn/wireguard/${wg}/peers/phone/config?format=text`, `/api/v1/vpn/wireguard/${wg}/peers/phone/config?format=svg`, '/api/v1/vpn/openvpn/road/clients/alice/profile']) {
        const refused = await fetch(`${serve!.base}${path}`, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(60_000) });
        assert.equal(refused.status, 403, path);
      }
    } finally {
      await context.close();
    }
  });
});
