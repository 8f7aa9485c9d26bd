/**
 * A long apply over REST streams its progress (Accept: application/x-ndjson):
 * a line per step, heartbeats while a step runs, then the report; the CLI's
 * client prints the steps and returns the report, and an invalid document
 * ends the stream with the error body (status and issues) the CLI turns into
 * exit code 2. A real server on loopback; the subsystem is a stand-in that
 * takes its time (the point is the transport, not a daemon).
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { Engine, type ProgressEvent } from '../../src/apply/engine.js';
import { defineSubsystem, step, type Subsystem } from '../../src/apply/subsystem.js';
import { Store } from '../../src/store/store.js';
import { Host } from '../../src/system/host.js';
import { buildServer } from '../../src/api/server.js';
import { createMetrics } from '../../src/metrics/metrics.js';
import { RemoteError, RestClient, requestFailure } from '../../src/cli/client.js';
import { exitCodeFor } from '../../src/cli/errors.js';
import { domains } from '../../src/domains.js';
import { freePort } from '../../bench/lib/ports.js';

const slow: Subsystem<{ ms: number }> = defineSubsystem<{ ms: number }>({
  name: 'slow',
  compile: () => ({ desired: { ms: 1200 }, issues: [] }),
  steps: async (d) => [step({ action: 'change', object: 'slow' }, () => new Promise<void>((r) => setTimeout(r, d.ms)))],
});

describe('apply streamed over REST (application/x-ndjson)', { timeout: 300_000 }, () => {
  let dir: string;
  let store: Store;
  let engine: Engine;
  let app: FastifyInstance;
  let base: string;
  let token: string;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'pt-stream-'));
    store = Store.open(join(dir, 'patronus.db'));
    engine = new Engine({ domains, host: new Host({ netns: 'pt-000000-unused', stateDir: dir }), store, subsystems: [slow] });
    token = store.addToken('stream');
    app = await buildServer({ engine, store, metrics: createMetrics(engine, { processMetrics: false }), streamHeartbeatMs: 200 });
    await app.listen({ host: '127.0.0.1', port: 0 });
    base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
  });
  after(async () => {
    await app?.close();
    engine?.close();
    store?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('answers 200 at once, then progress, heartbeats while the step runs, and the report last', async () => {
    const res = await fetch(`${base}/api/v1/config/apply`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: 'application/x-ndjson' },
      body: JSON.stringify({ config: { version: 1, drift: { intervalSeconds: 20 } }, message: 'streamed' }),
    });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^application\/x-ndjson/);
    const lines = (await res.text()).trim().split('\n').map((l) => JSON.parse(l) as Record<string, any>);
    const kinds = lines.map((l) => Object.keys(l)[0]);
    assert.ok(lines.some((l) => l.progress?.phase === 'apply' && l.progress.subsystem === 'slow'), JSON.stringify(lines));
    assert.ok(kinds.includes('heartbeat'), 'heartbeats while the step runs');
    assert.equal(kinds.at(-1), 'report');
    assert.equal(lines.at(-1)!.report.state, 'committed');
  });

  it("the CLI's client reports each step and returns the report", async () => {
    const seen: ProgressEvent[] = [];
    const r = await new RestClient(base, token).apply({ document: { version: 1, drift: { intervalSeconds: 30 } } }, { message: 'cli', onProgress: (e) => seen.push(e) });
    assert.equal(r.state, 'committed');
    assert.deepEqual(seen.filter((e) => e.phase === 'step-done').map((e) => (e as { subsystem: string }).subsystem), ['slow']);
  });

  it('an invalid document ends the stream with the error body: status 400, issues, exit code 2', async () => {
    const e = await new RestClient(base, token).apply({ document: { version: 1, nosuchsection: true } }, { message: 'bad' }).catch((x: unknown) => x);
    assert.ok(e instanceof RemoteError, String(e));
    assert.equal(e.statusCode, 400);
    assert.ok(e.body.issues?.some((i) => /nosuchsection/.test(`${i.path} ${i.message}`)), JSON.stringify(e.body));
    assert.equal(exitCodeFor(e), 2);
  });

  it('a rollback streams the same way: steps, then the report of the revision gone back to', async () => {
    const before = store.head().committed!;
    const seen: ProgressEvent[] = [];
    const r = await new RestClient(base, token).rollback(undefined, { onProgress: (e) => seen.push(e) });
    assert.equal(r.state, 'committed');
    assert.ok(r.revision > before, `a new revision (${r.revision}) going back to an earlier document`);
    assert.deepEqual(seen.filter((e) => e.phase === 'step-done').map((e) => (e as { subsystem: string }).subsystem), ['slow']);
    // a plain request still gets the plain report
    const plain = await fetch(`${base}/api/v1/config/rollback`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify({ to: before }) });
    assert.equal(plain.status, 200);
    assert.match(plain.headers.get('content-type') ?? '', /^application\/json/);
    assert.equal(((await plain.json()) as { state: string }).state, 'committed');
  });

  it('a request the server took but did not answer in time is not reported as "cannot reach"', async () => {
    const timedOut = requestFailure(Object.assign(new TypeError('fetch failed'), { cause: { code: 'UND_ERR_HEADERS_TIMEOUT' } }), base, 'POST /api/v1/config/plan');
    assert.match(timedOut.message, /^POST \/api\/v1\/config\/plan: the Patronus server at http:\/\/127\.0\.0\.1:\d+ took the request but did not answer in time \(UND_ERR_HEADERS_TIMEOUT\); it may still be working on it/);
    // nothing listening (a port just free; port 1 is on fetch's blocked list and fails before connecting)
    const closed = `http://127.0.0.1:${await freePort()}`;
    const refused = await new RestClient(closed, token).rollback().catch((e: Error) => e);
    assert.ok(String((refused as Error).message).startsWith(`cannot reach the Patronus server at ${closed} (ECONNREFUSED)`), String(refused));
  });
});
