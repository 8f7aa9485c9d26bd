/**
 * The control plane's event loop stays free while a huge document is
 * validated (issue 11 item 12): a real `serve` in a test namespace gets a
 * 1M-prefix document to validate while /healthz is polled every 20 ms from
 * another process; the slowest /healthz answer must stay far below the
 * seconds the compile takes (it was the whole compile: ~10 s). And SIGTERM
 * during such a validation ends the process within a few seconds (it used
 * to wait for the compile).
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execa, type ResultPromise } from 'execa';
import type { Host } from '../../src/system/host.js';
import { missing } from '../lib/skip.js';
import { controlLab, type ControlLab } from '../lib/control.js';
import { ServeProcess, removeServePins, serveHost, writeConfig } from '../lib/fault.js';

const skip = missing('netns', { cmd: 'nft' });
const PREFIXES = Number(process.env.EL_PREFIXES ?? 1_000_000);
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

describe('event loop during a 1M-prefix validation', { skip, timeout: 300_000 }, () => {
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
    assert.ok(polled.max < HEALTHZ_BOUND_MS, `slowest /healthz took ${polled.max.toFixed(0)} ms during the validation`);
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
});
