/**
 * ACME certificates against Debian's pebble (the ACME test server) in a
 * namespace of its own, pebble-challtestsrv as its DNS (every name ->
 * the firewall's address), the firewall in another namespace: issue with
 * an http-01 challenge, the API server and unbound's DNS over TLS switching
 * to the renewed certificate, a failing challenge (clear error, old certificate kept and
 * still served) and revocation (pebble reports the serial revoked; drift
 * asks for a new certificate).
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ResultPromise } from 'execa';
import { Lab, type Netns } from '../lib/netns.js';
import { missing } from '../lib/skip.js';
import { ensureCert } from '../../src/services/pki/pki.js';

const skip = missing('netns', { cmd: 'pebble' }, { cmd: 'pebble-challtestsrv' });
const CHILD = fileURLToPath(new URL('../lib/acme_child.js', import.meta.url));

describe('ACME certificates (pebble)', { timeout: 540_000, skip }, () => {
  const lab = new Lab();
  let dir: string;
  let ca: Netns;
  let fw: Netns;
  const daemons: ResultPromise[] = [];
  let steps: Record<string, any> = {};
  let caFile: string;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'pt-acme-'));
    ca = await lab.ns('ca');
    fw = await lab.ns('fw');
    await lab.veth({ ns: ca, dev: 'eth0', address: '10.77.0.1/24' }, { ns: fw, dev: 'eth0', address: '10.77.0.2/24' });
    // pebble's own HTTPS certificate, from our CA (the firewall trusts it through certificates.acme.directoryCaFile)
    const tls = await ensureCert(join(dir, 'pebble'), 'pebble', { name: 'pebble', commonName: 'pebble', usage: 'server', altNames: ['10.77.0.1'] });
    caFile = join(dir, 'pebble', 'keys', 'pki', 'pebble', 'ca.crt');
    writeFileSync(
      join(dir, 'pebble.json'),
      JSON.stringify({ pebble: { listenAddress: '10.77.0.1:14000', managementListenAddress: '10.77.0.1:15000', certificate: tls.certFile, privateKey: tls.keyFile, httpPort: 5002, tlsPort: 5001, ocspResponderURL: '', externalAccountBindingRequired: false } }),
    );
    daemons.push(ca.spawn('pebble-challtestsrv', ['-dns01', '10.77.0.1:8053', '-http01', '', '-https01', '', '-tlsalpn01', '', '-management', '10.77.0.1:8055', '-defaultIPv4', '10.77.0.2', '-defaultIPv6', '']));
    // no random validation delays, no nonce rejections, no reuse of valid authorizations (each order proves its challenge)
    const env = { PEBBLE_VA_NOSLEEP: '1', PEBBLE_WFE_NONCEREJECT: '0', PEBBLE_AUTHZREUSE: '0' };
    daemons.push(ca.spawn('pebble', ['-config', join(dir, 'pebble.json'), '-dnsserver', '10.77.0.1:8053'], { env: { ...(process.env as Record<string, string>), ...env } }));
    await waitFor(async () => (await fw.exec('bash', ['-c', 'exec 3<>/dev/tcp/10.77.0.1/14000'], { reject: false })).exitCode === 0, 'pebble listening');

    const acme = { directory: 'https://10.77.0.1:14000/dir', termsOfServiceAgreed: true, directoryCaFile: caFile, http01Listen: '10.77.0.2:5002', email: 'ops@fw.test' };
    const doc = (acmeOver: object) => ({
      certificates: { acme: { ...acme, ...acmeOver }, issue: [{ name: 'console', domains: ['fw.test', 'console.fw.test'] }] },
      // the resolver serves DNS over TLS with the same certificate
      dns: { enabled: true, listen: { addresses: ['10.77.0.2'], tls: { certificate: 'console' } }, dnssec: { enabled: false } },
    });
    const scenario = {
      acme,
      issue: doc({}),
      // longer than pebble's certificate life: due now
      renew: doc({ renewDaysBefore: 3650 }),
      // the responder on a port the CA does not connect to: the challenge fails
      fail: doc({ renewDaysBefore: 3650, http01Listen: '10.77.0.2:5009' }),
    };
    // the child runs inside the firewall's namespace (entered by nsenter), so its Host names none
    const run = await fw.nsenter(process.execPath, [CHILD, join(dir, 'fw'), JSON.stringify(scenario)], { reject: false, timeout: 240_000, env: { PATRONUS_REQUIRE_NETNS: '0' } });
    for (const line of run.stdout.split('\n').filter(Boolean)) {
      const o = JSON.parse(line);
      steps[o.step] = o;
    }
    if (steps.error || run.exitCode !== 0) console.error(`# acme child: exit ${run.exitCode}\n${run.stdout}\n${run.stderr}`);
  });

  after(async () => {
    for (const d of daemons) d.kill('SIGKILL');
    await lab.teardown();
    rmSync(dir, { recursive: true, force: true });
  });

  it('issues a certificate over http-01 through the engine and serves it on the API', () => {
    assert.equal(steps.error, undefined, steps.error?.error);
    assert.equal(steps.issue.state, 'committed', steps.issue.error);
    assert.deepEqual(steps.issue.cert.domains.sort(), ['console.fw.test', 'fw.test']);
    assert.match(steps.issue.cert.issuer, /Pebble/);
    assert.deepEqual(steps['drift-fresh'].drift, []);
    assert.deepEqual(steps['drift-fresh'].plan, []);
    assert.equal(steps.served.serial, steps.issue.cert.serial);
    assert.equal(steps.served.dot, steps.issue.cert.serial, 'unbound serves DNS over TLS with it');
  });

  it('renews a certificate the drift check finds due, and the API serves the new one without a restart', () => {
    assert.match(steps.renew.due[0]?.reason ?? '', /renewal due/);
    assert.notEqual(steps.renew.cert.serial, steps.issue.cert.serial);
    assert.equal(steps.renew.served, steps.renew.cert.serial);
    assert.deepEqual(steps.renew.driftAfter, []);
    // unbound: drift sees it still serving the old certificate; the repair (apply) restarts it with the new one
    assert.match(steps.renew.unboundDrift.map((d: { reason: string }) => d.reason).join(), /renewed certificate/);
    assert.equal(steps.renew.dot, steps.renew.cert.serial);
    assert.deepEqual(steps.renew.unboundDriftAfter, []);
  });

  it('a failing challenge fails the apply with a clear error and keeps the old certificate in service', () => {
    assert.equal(steps.fail.state, 'failed');
    assert.equal(steps.fail.failedStep, 'certificates');
    assert.match(steps.fail.error, /certificate console: domain (console\.)?fw\.test: the http-01 challenge failed: .+\(the certificate in service, if any, is kept\)/);
    assert.deepEqual(steps.fail.after, steps.fail.before);
    assert.equal(steps.fail.served, steps.fail.before.serial);
  });

  it('revokes: pebble reports the serial revoked, and drift asks for a new certificate', async () => {
    assert.equal(steps.revoke.revoked.revoked, true);
    assert.match(steps.revoke.drift[0]?.reason ?? '', /revoked/);
    const status = await ca.exec('curl', ['-sk', `https://10.77.0.1:15000/cert-status-by-serial/${steps.revoke.revoked.serial}`], { reject: false });
    assert.match(status.stdout, /"Status":\s*"Revoked"/i, status.stdout + status.stderr);
  });
});

async function waitFor(cond: () => Promise<boolean>, what: string, timeoutMs = 30_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}
