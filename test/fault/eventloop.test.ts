/**
 * The control plane's event loop stays free while a huge document is
 * validated (issue 11 item 12): a real `serve` in a test namespace gets a
 * 1M-prefix document to validate while /healthz is polled every 20 ms from
 * another process; the slowest /healthz answer must stay far below the
 * seconds the compile takes (it was the whole compile: ~10 s). And SIGTERM
 * during such a validation ends the process within a few seconds (it used
 * to wait for the compile).
 *
 * Plan and apply of a large fast-path rule (EL_APPLY_PREFIXES, default 50k
 * /24s; bench/control/cli.ts measures 1M) keep /healthz answering the same
 * way, and SIGTERM in the middle of such an apply ends the process with the
 * kernel and the store on one committed revision (the apply finishes its
 * transaction first; nothing is left "applying").
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execa, type ResultPromise } from 'execa';
import type { Host } from '../../src/system/host.js';
import { missing } from '../lib/skip.js';
import { controlLab, type ControlLab } from '../lib/control.js';
import { ServeProcess, removeServePins, serveHost, waitUntil, writeConfig } from '../lib/fault.js';
import { Store } from '../../src/store/store.js';
import { join } from 'node:path';

const skip = missing('netns', { cmd: 'nft' });
const PREFIXES = Number(process.env.EL_PREFIXES ?? 1_000_000);
const APPLY_PREFIXES = Number(process.env.EL_APPLY_PREFIXES ?? 50_000);
/**
 * Generous for a loaded 2-core machine (seen here: idle max ~120 ms; during
 * the validation max 320-540 ms, from parsing the 17 MB body and handing it
 * to the worker on the main thread, and drift checks' child processes
 * competing with the worker for CPU). Without the worker /healthz waited for
 * the whole compile: 10 s and more.
 */
const HEALTHZ_BOUND_MS = 1000;

const seed = { interfaces: [{ name: 'wan0', zone: 'wan' }], api: { bodyLimit: 64 << 20 } };

function hugeDocument(): string {
  const entries = Array.from({ length: PREFIXES }, (_, i) => `${10 + ((i >> 16) & 63)}.${(i >> 8) & 255}.${i & 255}.0/24`);
  return JSON.stringify({
    config: {
      ...seed,
      aliases: [{ name: 'big', type: 'network', entries }],
      firewall: { rules: [{ name: 'drop-big', direction: 'input', from: 'wan', source: ['big'], action: 'drop' }] },
      // more than the fast path's default capacity (262144): validation must find it, at its path
      fastpath: { interfaces: [{ name: 'wan0' }], rules: [{ name: 'drop-big', source: 'big', action: 'drop' }] },
    },
  });
}

/** A fast-path rule dropping n /24s (every other one from `offset`), the data plane sized for them. */
function bigFastpathDocument(n: number, offset = 0): Record<string, unknown> {
  const entries = Array.from({ length: n }, (_, j) => {
    const i = j * 2 + offset;
    return `${10 + ((i >> 16) & 63)}.${(i >> 8) & 255}.${i & 255}.0/24`;
  });
  return {
    ...seed,
    aliases: [{ name: 'big', type: 'network', entries }],
    fastpath: { interfaces: [{ name: 'wan0' }], capacity: { prefixes: Math.max(262_144, n * 2) }, rules: [{ name: 'drop-big', source: 'big', action: 'drop' }] },
  };
}

/** Polls GET /healthz every 20 ms in its own process (this one is busy sending) until told to stop on stdin. */
function pollHealthz(base: string): ResultPromise<{ reject: false; stdin: 'pipe' }> {
  const script = `
    const lat = []; let stop = false, bad = 0;
    process.stdin.on('data', () => (stop = true));
    (async () => {
      while (!stop) {
        const t0 = performance.now();
        try { const r = await fetch(${JSON.stringify(`${base}/healthz`)}); await r.text(); if (r.status >= 500 && r.status !== 503) bad++; }
        catch { bad++; }
        lat.push(performance.now() - t0);
        await new Promise((r) => setTimeout(r, 20));
      }
      process.stdout.write(JSON.stringify({ n: lat.length, max: Math.max(...lat), p99: lat.sort((a, b) => a - b)[Math.floor(lat.length * 0.99)], bad }));
      process.exit(0);
    })();`;
  return execa(process.execPath, ['-e', script], { reject: false, stdin: 'pipe' });
}

describe('event loop during a 1M-prefix validation and large plans and applies', { skip, timeout: 540_000 }, () => {
  let L: ControlLab;
  let host: Host;
  let body: string;
  const serves: ServeProcess[] = [];

  before(async () => {
    L = await controlLab();
    host = serveHost(L.fw, L.stateDir);
    body = hugeDocument();
  });
  after(async () => {
    for (const s of serves) await s.kill9().catch(() => {});
    if (host) removeServePins(host);
    await L?.teardown();
  });

  const validate = (s: ServeProcess) =>
    fetch(`${s.base}/api/v1/config/validate`, { method: 'POST', headers: { authorization: `Bearer ${s.token}`, 'content-type': 'application/json' }, body });

  it('/healthz answers quickly while the document is validated', async () => {
    const s = await ServeProcess.start({ netns: L.fw, stateDir: L.stateDir, config: writeConfig(L.stateDir, 'seed.json', seed) });
    serves.push(s);
    // the same polling with nothing else going on: what this (loaded) machine gives anyway
    const idle = pollHealthz(s.base);
    await new Promise((r) => setTimeout(r, 3000));
    idle.stdin!.end('stop\n');
    const baseline = JSON.parse((await idle).stdout as string) as { n: number; max: number; p99: number };
    console.log(`# /healthz idle: ${baseline.n} answers, max ${baseline.max.toFixed(0)} ms, p99 ${baseline.p99.toFixed(0)} ms`);
    const poller = pollHealthz(s.base);
    await new Promise((r) => setTimeout(r, 500));
    const t0 = performance.now();
    const res = await validate(s);
    const ms = performance.now() - t0;
    const answer = (await res.json()) as { error?: { issues?: { path: string; message: string }[] } } & Record<string, unknown>;
    poller.stdin!.end('stop\n');
    const polled = JSON.parse((await poller).stdout as string) as { n: number; max: number; p99: number; bad: number };
    console.log(`# validate of ${body.length} bytes (${PREFIXES} prefixes) took ${ms.toFixed(0)} ms; /healthz during it: ${polled.n} answers, max ${polled.max.toFixed(0)} ms, p99 ${polled.p99.toFixed(0)} ms`);
    assert.equal(res.status, 400, JSON.stringify(answer).slice(0, 500));
    assert.match(JSON.stringify(answer), /fastpath\.capacity\.prefixes.*1000001 map entries/);
    assert.equal(polled.bad, 0, 'a /healthz call failed');
    assert.ok(polled.n > 20, `only ${polled.n} /healthz answers`);
    // without the worker /healthz waits for the whole validation; on a loaded machine single answers
    // still stall for a scheduler's while, so: p99 within the bound, no stall near the validation's length
    assert.ok(polled.p99 < HEALTHZ_BOUND_MS, `p99 of /healthz ${polled.p99.toFixed(0)} ms during the validation`);
    assert.ok(polled.max < Math.max(HEALTHZ_BOUND_MS, ms / 10), `slowest /healthz took ${polled.max.toFixed(0)} ms during a ${ms.toFixed(0)} ms validation`);
    await s.stop();
  });

  it('SIGTERM during a long validation ends the process within a few seconds', async () => {
    const s = await ServeProcess.start({ netns: L.fw, stateDir: L.stateDir });
    serves.push(s);
    const pending = validate(s).then(
      (r) => r.status,
      (e: Error) => e.message,
    );
    // the request is sent and the compile under way
    await new Promise((r) => setTimeout(r, 2500));
    const t0 = performance.now();
    s.child.kill('SIGTERM');
    const r = await s.child;
    const ms = performance.now() - t0;
    console.log(s.lines.map((l) => `#   ${l}`).join("\n"));
    console.log(`# SIGTERM during validation: exited ${r.exitCode ?? r.signal} after ${ms.toFixed(0)} ms; the request got ${await pending}`);
    assert.ok(ms < 5000, `exit took ${ms.toFixed(0)} ms`);
    assert.equal(r.exitCode, 0, s.lines.join('\n'));
  });

  it('SIGTERM during a long plan ends the process within a few seconds', async () => {
    // plan compiles on the main thread (it needs the result); the event loop runs between stages, each ~1 s here
    const s = await ServeProcess.start({ netns: L.fw, stateDir: L.stateDir });
    serves.push(s);
    const entries = Array.from({ length: 300_000 }, (_, i) => `${10 + ((i >> 16) & 63)}.${(i >> 8) & 255}.${i & 255}.0/24`);
    const plan = JSON.stringify({ config: { ...seed, aliases: [{ name: 'big', type: 'network', entries }], firewall: { rules: [{ name: 'drop-big', direction: 'input', from: 'wan', source: ['big'], action: 'drop' }] } } });
    const pending = fetch(`${s.base}/api/v1/config/plan`, { method: 'POST', headers: { authorization: `Bearer ${s.token}`, 'content-type': 'application/json' }, body: plan }).then(
      (r) => r.status,
      (e: Error) => e.message,
    );
    await new Promise((r) => setTimeout(r, 1000));
    const t0 = performance.now();
    s.child.kill('SIGTERM');
    const r = await s.child;
    const ms = performance.now() - t0;
    console.log(`# SIGTERM during a 300k-prefix plan: exited ${r.exitCode ?? r.signal} after ${ms.toFixed(0)} ms; the request got ${await pending}`);
    assert.ok(ms < 5000, `exit took ${ms.toFixed(0)} ms`);
    assert.equal(r.exitCode, 0, s.lines.join('\n'));
  });
  it('/healthz answers quickly while a large fast-path rule is planned and applied', async () => {
    const s = await ServeProcess.start({ netns: L.fw, stateDir: L.stateDir, config: writeConfig(L.stateDir, 'seed.json', seed) });
    serves.push(s);
    const config = bigFastpathDocument(APPLY_PREFIXES);
    const post = async (what: 'plan' | 'apply') => {
      const poller = pollHealthz(s.base);
      await new Promise((r) => setTimeout(r, 500));
      const t0 = performance.now();
      const body = JSON.stringify({ config, ...(what === 'apply' ? { message: `${APPLY_PREFIXES} prefixes` } : {}) });
      const res = await fetch(`${s.base}/api/v1/config/${what}`, { method: 'POST', headers: { authorization: `Bearer ${s.token}`, 'content-type': 'application/json' }, body });
      const answer = (await res.json()) as Record<string, unknown>;
      const ms = performance.now() - t0;
      poller.stdin!.end('stop\n');
      const polled = JSON.parse((await poller).stdout as string) as { n: number; max: number; p99: number; bad: number };
      console.log(`# ${what} of ${APPLY_PREFIXES} prefixes took ${ms.toFixed(0)} ms; /healthz during it: ${polled.n} answers, max ${polled.max.toFixed(0)} ms, p99 ${polled.p99.toFixed(0)} ms`);
      assert.equal(res.status, 200, JSON.stringify(answer).slice(0, 500));
      assert.equal(polled.bad, 0, 'a /healthz call failed');
      // the point: the event loop is never held for the whole operation (it runs between compile stages, the
      // data plane's batch map calls run off it, the drift check reuses the apply's compile). On this shared
      // 2-core machine at load 20+ single stages and GC pauses stretched to 1.5 s of a 2.7 s plan of 50k
      // prefixes (in one process, unloaded: ~0.4 s of 1.2 s), so the bound is three quarters of the
      // operation's own duration when that is longer than HEALTHZ_BOUND_MS.
      const bound = Math.max(HEALTHZ_BOUND_MS, ms * 0.75);
      assert.ok(polled.max < bound, `slowest /healthz took ${polled.max.toFixed(0)} ms during the ${what} (${ms.toFixed(0)} ms)`);
      return answer;
    };
    const plan = (await post('plan')) as { summary: Record<string, number> };
    assert.ok(plan.summary.add! > 0, JSON.stringify(plan.summary));
    const report = (await post('apply')) as { state: string };
    assert.equal(report.state, 'committed');
    await s.stop();
  });

  it('SIGTERM in the middle of a large apply ends the process on one committed revision', async () => {
    const s = await ServeProcess.start({ netns: L.fw, stateDir: L.stateDir });
    serves.push(s);
    const before = (await s.call('GET', '/api/v1/status')).json as { committed: { id: number } | null };
    const pending = fetch(`${s.base}/api/v1/config/apply`, { method: 'POST', headers: { authorization: `Bearer ${s.token}`, 'content-type': 'application/json' }, body: JSON.stringify({ config: bigFastpathDocument(APPLY_PREFIXES, 1) }) }).then(
      (r) => r.status,
      (e: Error) => e.message,
    );
    // the transaction has begun: the engine holds the apply lock
    await waitUntil(async () => ((await (await fetch(`${s.base}/healthz`)).json()) as { status: string }).status === 'applying', 120_000, 'the apply to begin', 20);
    const t0 = performance.now();
    // process.kill, not execa's kill: that one sends SIGKILL 5 s later, and the apply may need longer here
    process.kill(s.child.pid!, 'SIGTERM');
    const r = await s.child;
    const ms = performance.now() - t0;
    console.log(`# SIGTERM during a ${APPLY_PREFIXES}-prefix apply: exited ${r.exitCode ?? r.signal} after ${ms.toFixed(0)} ms; the request got ${await pending}`);
    assert.equal(r.exitCode, 0, s.lines.join('\n'));
    let head: ReturnType<Store['head']>;
    {
      using store = Store.open(join(L.stateDir, 'patronus.db'));
      assert.deepEqual(store.unfinished().map((x) => `${x.id} ${x.state}`), [], 'a revision was left unfinished');
      head = store.head();
      assert.ok(head.committed !== undefined && head.committed !== before.committed?.id, `the apply did not commit (committed ${head.committed}, before ${before.committed?.id})`);
      assert.equal(store.running(), head.committed, 'the store says the kernel runs another revision than the committed one');
    }
    // and the kernel runs it: a fresh server finds no drift from it
    const again = await ServeProcess.start({ netns: L.fw, stateDir: L.stateDir });
    serves.push(again);
    const h = (await fetch(`${again.base}/healthz`).then((x) => x.json())) as { status: string; revision: number; drift: unknown[] };
    assert.equal(h.revision, head.committed);
    assert.equal(h.status, 'ok', JSON.stringify(h.drift));
    await again.stop();
  });
});
