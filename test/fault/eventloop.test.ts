/**
 * The control plane's event loop stays free while a huge document is
 * validated (issue 11 item 12): a real `serve` in a test namespace gets a
 * 1M-prefix document to validate while /healthz is polled every 20 ms from
 * another process; the slowest /healthz answer must stay far below the
 * seconds the compile takes (it was the whole compile: ~10 s). And SIGTERM
 * during such a validation ends the process within a few seconds (it used
 * to wait for the compile).
 *
 * Plan and apply of a fast-path rule with a million prefixes
 * (EL_APPLY_PREFIXES, default 1M /24s) keep /healthz answering the same way:
 * the document is parsed and compiled in worker threads, the prefix maps
 * cross as transferred buffers, and the main thread's loops over map entries
 * yield every few milliseconds. Besides /healthz round trips (which include
 * the poller's own scheduling on a loaded machine), the server's own
 * event-loop delay per phase is read from its /metrics
 * (nodejs_eventloop_lag_*: prom-client resets them at each scrape).
 *
 * SIGTERM in the middle of a large apply (EL_SIGTERM_PREFIXES, default 50k)
 * ends the process with the kernel and the store on one committed revision
 * (the apply finishes its transaction first; nothing is left "applying").
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
const APPLY_PREFIXES = Number(process.env.EL_APPLY_PREFIXES ?? 1_000_000);
const SIGTERM_PREFIXES = Number(process.env.EL_SIGTERM_PREFIXES ?? 50_000);
/**
 * The longest the server's event loop may be held during a 1M-prefix
 * validate, plan or apply. The target is 100 ms; on this shared 2-core
 * machine (load 14-28) single garbage-collector pauses of a heap holding a
 * million map entries and process spawns stretch beyond that, and every
 * burst of CPU on the main thread takes as many times longer as there are
 * runnable threads per core (the idle server's loop was seen held 516 ms).
 * So the test bounds what would mean the work is back on the loop (a
 * compile stage or an unsliced loop over a million entries holds it 6-15 s
 * unloaded): the larger of this (4 s: a 1M apply was seen holding it 3.6 s
 * once at load ~15, against 0.6-1.3 s when calmer) and 8 times the idle
 * server's longest delay measured at the start, and prints the p99 and max
 * (docs/reliability.md has the figures).
 */
const LOOP_BLOCK_BOUND_MS = Number(process.env.EL_LOOP_BOUND_MS ?? 4000);
/** what the idle server showed at the start of the file (see the first test), for bounds that follow the machine's load */
const idle = { loopMax: 0, healthzP99: 0 };
const loopBound = () => Math.max(LOOP_BLOCK_BOUND_MS, 8 * idle.loopMax);
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

/** The server's event-loop delay since the last call (prom-client resets it at each scrape), ms. */
async function loopDelay(s: ServeProcess): Promise<{ max: number; p99: number; p50: number }> {
  const text = await (await fetch(`${s.base}/metrics`, { headers: { authorization: `Bearer ${s.token}` } })).text();
  const read = (name: string) => {
    const m = new RegExp(`^${name} ([0-9.e+-]+)`, 'm').exec(text);
    assert.ok(m, `${name} missing from /metrics`);
    return Number(m[1]) * 1000;
  };
  return { max: read('nodejs_eventloop_lag_max_seconds'), p99: read('nodejs_eventloop_lag_p99_seconds'), p50: read('nodejs_eventloop_lag_p50_seconds') };
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
    await loopDelay(s);
    const idlePoller = pollHealthz(s.base);
    await new Promise((r) => setTimeout(r, 3000));
    idlePoller.stdin!.end('stop\n');
    const baseline = JSON.parse((await idlePoller).stdout as string) as { n: number; max: number; p99: number };
    const idleLoop = await loopDelay(s);
    idle.loopMax = idleLoop.max;
    idle.healthzP99 = baseline.p99;
    console.log(`# /healthz idle: ${baseline.n} answers, max ${baseline.max.toFixed(0)} ms, p99 ${baseline.p99.toFixed(0)} ms; server event-loop delay max ${idleLoop.max.toFixed(0)} ms, p99 ${idleLoop.p99.toFixed(0)} ms`);
    const poller = pollHealthz(s.base);
    await new Promise((r) => setTimeout(r, 500));
    await loopDelay(s);
    const t0 = performance.now();
    const res = await validate(s);
    const ms = performance.now() - t0;
    const answer = (await res.json()) as { error?: { issues?: { path: string; message: string }[] } } & Record<string, unknown>;
    const loop = await loopDelay(s);
    poller.stdin!.end('stop\n');
    const polled = JSON.parse((await poller).stdout as string) as { n: number; max: number; p99: number; bad: number };
    console.log(`# validate of ${body.length} bytes (${PREFIXES} prefixes) took ${ms.toFixed(0)} ms; /healthz during it: ${polled.n} answers, max ${polled.max.toFixed(0)} ms, p99 ${polled.p99.toFixed(0)} ms; server event-loop delay max ${loop.max.toFixed(0)} ms, p99 ${loop.p99.toFixed(0)} ms, p50 ${loop.p50.toFixed(0)} ms`);
    assert.ok(loop.max < loopBound(), `the server's event loop was held ${loop.max.toFixed(0)} ms during the validation (idle: ${idle.loopMax.toFixed(0)} ms)`);
    assert.equal(res.status, 400, JSON.stringify(answer).slice(0, 500));
    assert.match(JSON.stringify(answer), /fastpath\.capacity\.prefixes.*1000001 map entries/);
    assert.equal(polled.bad, 0, 'a /healthz call failed');
    assert.ok(polled.n > 20, `only ${polled.n} /healthz answers`);
    // without the worker /healthz waits for the whole validation; on a loaded machine single answers
    // still stall for a scheduler's while, so: p99 within the bound, no stall near the validation's length
    assert.ok(polled.p99 < Math.max(HEALTHZ_BOUND_MS, 4 * idle.healthzP99), `p99 of /healthz ${polled.p99.toFixed(0)} ms during the validation (idle: ${idle.healthzP99.toFixed(0)} ms)`);
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
  it('/healthz answers quickly while a 1M-prefix fast-path rule is planned and applied', { timeout: 900_000 }, async () => {
    const s = await ServeProcess.start({ netns: L.fw, stateDir: L.stateDir, config: writeConfig(L.stateDir, 'seed.json', seed) });
    serves.push(s);
    const config = bigFastpathDocument(APPLY_PREFIXES);
    const post = async (what: 'plan' | 'apply') => {
      const poller = pollHealthz(s.base);
      await new Promise((r) => setTimeout(r, 500));
      const body = JSON.stringify({ config, ...(what === 'apply' ? { message: `${APPLY_PREFIXES} prefixes` } : {}) });
      await loopDelay(s);
      const t0 = performance.now();
      const res = await fetch(`${s.base}/api/v1/config/${what}`, { method: 'POST', headers: { authorization: `Bearer ${s.token}`, 'content-type': 'application/json' }, body });
      const answer = (await res.json()) as Record<string, unknown>;
      const ms = performance.now() - t0;
      const loop = await loopDelay(s);
      poller.stdin!.end('stop\n');
      const polled = JSON.parse((await poller).stdout as string) as { n: number; max: number; p99: number; bad: number };
      console.log(`# ${what} of ${APPLY_PREFIXES} prefixes took ${ms.toFixed(0)} ms; /healthz during it: ${polled.n} answers, max ${polled.max.toFixed(0)} ms, p99 ${polled.p99.toFixed(0)} ms; server event-loop delay max ${loop.max.toFixed(0)} ms, p99 ${loop.p99.toFixed(0)} ms, p50 ${loop.p50.toFixed(0)} ms`);
      assert.equal(res.status, 200, JSON.stringify(answer).slice(0, 500));
      assert.equal(polled.bad, 0, 'a /healthz call failed');
      assert.ok(loop.max < loopBound(), `the server's event loop was held ${loop.max.toFixed(0)} ms during the ${what} (${ms.toFixed(0)} ms; idle: ${idle.loopMax.toFixed(0)} ms)`);
      // the point: the event loop is never held for a large part of the operation (parse and compile run in
      // workers, the main thread's loops over entries yield, the data plane's batch map calls run off it, the
      // drift check reuses the apply's compile). With the compile on the main thread the slowest answer was
      // 74 % of a 1M plan (8.6 of 11.7 s); now 3-7 % of a plan, 6-15 % of an apply (docs/reliability.md).
      // /healthz also waits for a drift check in flight (child processes), so: a quarter of the operation.
      const bound = Math.max(HEALTHZ_BOUND_MS, ms * 0.25);
      assert.ok(polled.max < bound, `slowest /healthz took ${polled.max.toFixed(0)} ms during the ${what} (${ms.toFixed(0)} ms)`);
      return answer;
    };
    const plan = (await post('plan')) as { summary: Record<string, number> };
    assert.ok(plan.summary.add! > 0, JSON.stringify(plan.summary));
    const report = (await post('apply')) as { state: string };
    assert.equal(report.state, 'committed');
    // back to the small seed (the data plane is removed as a whole, no million deletes): the next server
    // here starts by reconciling with the committed revision, which must not be the million prefixes
    const back = await s.call('POST', '/api/v1/config/apply', { config: seed, message: 'seed again' });
    assert.equal(back.status, 200, JSON.stringify(back.json).slice(0, 500));
    await s.stop();
  });

  it('SIGTERM in the middle of a large apply ends the process on one committed revision', async () => {
    const s = await ServeProcess.start({ netns: L.fw, stateDir: L.stateDir });
    serves.push(s);
    const before = (await s.call('GET', '/api/v1/status')).json as { committed: { id: number } | null };
    const pending = fetch(`${s.base}/api/v1/config/apply`, { method: 'POST', headers: { authorization: `Bearer ${s.token}`, 'content-type': 'application/json' }, body: JSON.stringify({ config: bigFastpathDocument(SIGTERM_PREFIXES, 1) }) }).then(
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
    console.log(`# SIGTERM during a ${SIGTERM_PREFIXES}-prefix apply: exited ${r.exitCode ?? r.signal} after ${ms.toFixed(0)} ms; the request got ${await pending}`);
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
