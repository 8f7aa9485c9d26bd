/**
 * Fleet commands against an etcd that serves clients over mutual TLS (one
 * member on loopback; a CA, server and client certificates made here with
 * openssl): with the CA and a client certificate it works; without the
 * client certificate, or with a CA that did not sign the server, it is
 * refused with a sentence naming the cluster.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { missing } from '../lib/skip.js';
import { EtcdCluster } from '../lib/etcd.js';

const cli = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

async function makeCa(dir: string, name: string): Promise<{ cert: string; key: string }> {
  const key = join(dir, `${name}.key`);
  const cert = join(dir, `${name}.crt`);
  await execa('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', `/CN=${name}`]);
  return { cert, key };
}

async function issue(dir: string, ca: { cert: string; key: string }, name: string, ext: string): Promise<{ cert: string; key: string }> {
  const key = join(dir, `${name}.key`);
  const csr = join(dir, `${name}.csr`);
  const cert = join(dir, `${name}.crt`);
  const extFile = join(dir, `${name}.ext`);
  writeFileSync(extFile, ext);
  await execa('openssl', ['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', csr, '-subj', `/CN=${name}`]);
  await execa('openssl', ['x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-CAcreateserial', '-out', cert, '-days', '2', '-extfile', extFile]);
  return { cert, key };
}

describe('fleet: etcd over mutual TLS', { timeout: 540_000, skip: missing({ cmd: 'etcd' }, { cmd: 'etcdctl' }, { cmd: 'openssl' }) }, () => {
  let etcd: EtcdCluster;
  let tmp: string;
  let ca: { cert: string; key: string };
  let client: { cert: string; key: string };
  let other: { cert: string; key: string };
  const fleet = async (args: string[]) => {
    const r = await execa('node', [cli, '--json', 'fleet', ...args, '--fleet', etcd.fleetUrl], { reject: false, timeout: 60_000 });
    let message = '';
    try {
      message = (JSON.parse(r.stdout) as { error?: { message: string } }).error?.message ?? '';
    } catch {
      /* not JSON */
    }
    return { code: r.exitCode, out: `${message}\n${r.stderr}` };
  };

  before(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'pt-fleet-tls-'));
    ca = await makeCa(tmp, 'fleet-ca');
    other = await makeCa(tmp, 'other-ca');
    const server = await issue(tmp, ca, 'etcd-server', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
    client = await issue(tmp, ca, 'patronus-client', 'extendedKeyUsage=clientAuth\n');
    etcd = await EtcdCluster.start({ members: 1, tls: { ca: ca.cert, cert: server.cert, key: server.key, client } });
  });
  after(async () => {
    await etcd?.stop();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('CA + client certificate work; a missing client certificate or the wrong CA is refused clearly', async () => {
    assert.match(etcd.fleetUrl, /^etcds:\/\//);
    const ok = await fleet(['status', '--fleet-ca', ca.cert, '--fleet-cert', client.cert, '--fleet-key', client.key]);
    assert.equal(ok.code, 0, ok.out);
    const noCa = await fleet(['status']);
    assert.notEqual(noCa.code, 0);
    assert.match(noCa.out, /etcds:\/\/ needs the CA that signed the etcd servers' certificates \(--fleet-ca\)/);
    const noCert = await fleet(['status', '--fleet-ca', ca.cert]);
    assert.notEqual(noCert.code, 0);
    assert.match(noCert.out, /fleet: etcd 127\.0\.0\.1:\d+ unreachable/);
    const wrongCa = await fleet(['status', '--fleet-ca', other.cert, '--fleet-cert', client.cert, '--fleet-key', client.key]);
    assert.notEqual(wrongCa.code, 0);
    assert.match(wrongCa.out, /fleet: etcd 127\.0\.0\.1:\d+ unreachable/);
    const halfPair = await fleet(['status', '--fleet-ca', ca.cert, '--fleet-cert', client.cert]);
    assert.match(halfPair.out, /a client certificate needs its key \(--fleet-cert with --fleet-key\)/);
  });
});
