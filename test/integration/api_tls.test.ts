/**
 * HTTPS when given a certificate and key (self-signed here, made with
 * openssl): the API answers over TLS with the same auth; plain HTTP to the
 * TLS port gets nothing useful.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import type { FastifyInstance } from 'fastify';
import { Engine } from '../../src/apply/engine.js';
import { Store } from '../../src/store/store.js';
import { Host } from '../../src/system/host.js';
import { buildServer } from '../../src/api/server.js';
import { createMetrics } from '../../src/metrics/metrics.js';
import { missing } from '../lib/skip.js';
import { domains } from '../../src/domains.js';

const skip = missing({ cmd: 'openssl' });

describe('REST API over TLS', { timeout: 300_000, skip }, () => {
  let dir: string;
  let store: Store;
  let engine: Engine;
  let app: FastifyInstance;
  let port: number;
  let token: string;
  let cert: Buffer;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'pt-tls-'));
    await execa('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')]);
    cert = readFileSync(join(dir, 'cert.pem'));
    store = Store.open(join(dir, 'patronus.db'));
    // no subsystems: this test is about the transport, nothing is applied
    engine = new Engine({ domains, host: new Host({ netns: 'pt-000000-unused', stateDir: dir }), store, subsystems: [] });
    token = store.addToken('tls');
    app = await buildServer({ engine, store, metrics: createMetrics(engine, { processMetrics: false }), https: { cert, key: readFileSync(join(dir, 'key.pem')) } });
    await app.listen({ host: '127.0.0.1', port: 0 });
    port = (app.server.address() as { port: number }).port;
  });
  after(async () => {
    await app?.close();
    engine?.close();
    store?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const get = (path: string, headers: Record<string, string> = {}, method = 'GET', payload?: string) =>
    new Promise<{ status: number; body: string; setCookie: string[] }>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, path, ca: cert, headers, method }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode!, body, setCookie: res.headers['set-cookie'] ?? [] }));
      });
      req.on('error', reject);
      req.end(payload);
    });

  it('serves HTTPS with the given certificate, with the same auth', async () => {
    assert.equal((await get('/healthz')).status, 200);
    assert.equal((await get('/api/v1/status')).status, 401);
    const ok = await get('/api/v1/status', { authorization: `Bearer ${token}` });
    assert.equal(ok.status, 200);
    assert.equal(JSON.parse(ok.body).committed, null);
  });

  it('the console session cookie is Secure under TLS', async () => {
    const r = await get('/api/v1/session', { 'content-type': 'application/json' }, 'POST', JSON.stringify({ token }));
    assert.equal(r.status, 200, r.body);
    const attrs = r.setCookie[0]!.split(';').map((x) => x.trim());
    for (const a of ['Secure', 'HttpOnly', 'SameSite=Strict']) assert.ok(attrs.includes(a), `${a} in ${r.setCookie[0]}`);
    const who = await get('/api/v1/whoami', { cookie: attrs[0]! });
    assert.equal(JSON.parse(who.body).kind, 'session');
  });

  it('serves the web console and its live stream over the same TLS port', async () => {
    const page = await get('/console/');
    assert.equal(page.status, 200, page.body);
    assert.match(page.body, /<div id="app">/);
    const frame = await get('/api/v1/stream/dashboard', { authorization: `Bearer ${token}`, accept: 'application/json' });
    assert.equal(frame.status, 200, frame.body);
    assert.equal(typeof JSON.parse(frame.body).time, 'number');
  });

  it('refuses plain HTTP on the TLS port', async () => {
    const r = await fetch(`http://127.0.0.1:${port}/healthz`).then(
      (res) => res.status,
      () => 'refused',
    );
    assert.notEqual(r, 200);
  });
});
