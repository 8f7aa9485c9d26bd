/**
 * Validation and compilation in a worker thread (src/apply/check-worker.ts):
 * large documents go there, small ones stay on the calling thread, both give
 * the same issues and the same compiled state (the fast path's prefix maps
 * cross as transferred flat buffers), a worker that fails is an error naming
 * what failed with nothing recorded, and stopping the workers (server
 * shutdown) ends a validation at once. The serve-level behaviour (/healthz latency, SIGTERM) is in
 * test/fault/eventloop.test.ts.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { getPriority, tmpdir } from 'node:os';
import { Worker } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import { workerNiceIncrement } from '../../src/system/priority.js';
import { join } from 'node:path';
import { Engine, heavyToCompile } from '../../src/apply/engine.js';
import { ValidationStopped } from '../../src/apply/check-worker.js';
import { Store } from '../../src/store/store.js';
import { Host } from '../../src/system/host.js';
import { domains } from '../../src/domains.js';
import { parseConfigText } from '../../src/config/load.js';
import { reviveBuffers, Slicer } from '../../src/system/slices.js';
import { LARGE_JSON_BODY, keepSpareParseWorker, parseJsonBodyInWorker } from '../../src/config/parse-worker.js';

const prefixes = (n: number) => Array.from({ length: n }, (_, i) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`);

describe('validation off the main thread', () => {
  let dir: string;
  let store: Store;
  let engine: Engine;
  let here: Engine;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'pt-checkworker-'));
    store = Store.open(':memory:');
    // the registered subsystems (worker-capable); no namespace is needed: these documents fail before any probe
    engine = new Engine({ domains, host: new Host({ netns: 'pt-none', stateDir: dir }), store });
    here = new Engine({ domains, host: new Host({ netns: 'pt-none', stateDir: dir }), store, inThread: true });
  });
  after(() => {
    engine.close();
    here.close();
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('sends only large documents, alias files and GeoIP to a worker', () => {
    assert.equal(heavyToCompile({ document: { interfaces: [{ name: 'wan0', zone: 'wan' }], aliases: [{ name: 'a', type: 'network', entries: prefixes(100) }] } }), false);
    assert.equal(heavyToCompile({ document: { aliases: [{ name: 'a', type: 'network', entries: prefixes(20_000) }] } }), true);
    assert.equal(heavyToCompile({ document: { aliases: [{ name: 'a', type: 'network', files: ['/etc/blocklist.txt'] }] } }), true);
    assert.equal(heavyToCompile({ document: { aliases: [{ name: 'a', type: 'network', entries: ['10.0.0.0/8'], files: [] }] } }), false);
    assert.equal(heavyToCompile({ document: { fastpath: { geoip: { database: '/x.mmdb' } } } }), true);
    assert.equal(heavyToCompile({ text: 'interfaces: []\n' }), false);
    assert.equal(heavyToCompile({ text: JSON.stringify({ aliases: [{ name: 'a', type: 'network', entries: prefixes(30_000) }] }) }), true);
  });

  it('a worker finds the same issues as the main thread', async () => {
    const entries = prefixes(30_000);
    entries[12_345] = '10.0.0.300';
    const document = {
      interfaces: [{ name: 'wan0', zone: 'wan' }],
      aliases: [{ name: 'big', type: 'network', entries }],
      fastpath: { interfaces: [{ name: 'wan0' }], capacity: { prefixes: 1000 }, rules: [{ name: 'r', source: 'big', action: 'drop' }] },
    };
    assert.equal(heavyToCompile({ document }), true);
    const inWorker = await engine.validate({ document });
    const compiledInWorker = await engine.check({ document });
    const onThisThread = (await here.check({ document })).issues;
    assert.ok(inWorker.length > 0);
    assert.match(JSON.stringify(inWorker), /entries.*12345/);
    assert.deepEqual(inWorker, onThisThread);
    assert.equal(compiledInWorker.compiled, undefined);
    assert.deepEqual(compiledInWorker.issues, onThisThread);
  });

  it("every subsystem's compiled state crosses threads intact (examples, and 200k prefixes in a fast-path rule)", async () => {
    const docs: [string, unknown][] = ['office-gateway.yaml', 'vpn/wireguard.yaml', 'vpn/openvpn.yaml', 'dhcp/multi-lan.yaml', 'dns/recursive.yaml'].map((f) => {
      const p = parseConfigText(readFileSync(join('examples', f), 'utf8'), 'yaml');
      assert.deepEqual(p.issues, [], f);
      return [f, p.value];
    });
    const n = 200_000;
    docs.push(['200k prefixes', {
      interfaces: [{ name: 'wan0', zone: 'wan' }],
      aliases: [{ name: 'big', type: 'network', entries: Array.from({ length: n }, (_, i) => `${10 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}.0/24`) }],
      fastpath: { interfaces: [{ name: 'wan0' }], capacity: { prefixes: 2 * n }, rules: [{ name: 'drop-big', source: 'big', action: 'drop' }, { name: 'ssh', protocol: 'tcp', destinationPorts: [22, '8000-8100'], action: 'pass' }] },
    }]);
    for (const [name, document] of docs) {
      const { compiled, issues } = here.compileDocument(document);
      assert.deepEqual(issues, [], name);
      for (const s of here.subsystems) {
        const want = compiled!.desired.of(s);
        // what the worker does (postMessage with the packed buffers transferred) and the main thread undoes
        let got: unknown;
        if (s.wire) {
          // pack transfers the state's own buffers (no copy): compare with a copy taken before
          const p = s.wire.pack(copyDeep(want));
          got = await s.wire.unpack(structuredClone(p.value, { transfer: p.transfer }));
        } else got = await reviveBuffers(structuredClone(want), new Slicer());
        assert.deepEqual(got, want, `${name}: subsystem ${s.name}`);
      }
    }
  });

  it('a compile worker that fails is an error naming what failed, before anything is recorded', async () => {
    const document = { interfaces: [{ name: 'wan0', zone: 'wan' }], aliases: [{ name: 'big', type: 'network', entries: prefixes(300_000) }], fastpath: { interfaces: [{ name: 'wan0' }], capacity: { prefixes: 1 << 20 }, rules: [{ name: 'r', source: 'big', action: 'drop' }] } };
    process.env.PATRONUS_COMPILE_WORKER_HEAP_MB = '24';
    try {
      await assert.rejects(engine.plan({ document }), /compile worker failed: it ran out of memory/);
      await assert.rejects(engine.apply({ document }, { author: 't', message: 'too big for the worker' }), /compile worker failed: it ran out of memory/);
    } finally {
      delete process.env.PATRONUS_COMPILE_WORKER_HEAP_MB;
    }
    assert.deepEqual(store.list({}), [], 'a revision was recorded');
  });

  it('a large JSON request body is parsed in a worker: the document comes back as text, duplicate keys are refused', async () => {
    const document = { interfaces: [{ name: 'wan0', zone: 'wan' }], aliases: [{ name: 'big', type: 'network', entries: prefixes(100_000) }] };
    const text = JSON.stringify({ config: document, message: 'big', confirmWithin: 60 });
    assert.ok(text.length > LARGE_JSON_BODY);
    const parsed = await parseJsonBodyInWorker(text);
    assert.ok('body' in parsed);
    assert.deepEqual({ ...parsed.body, config: JSON.parse(parsed.body.config as string) }, { config: document, format: 'json', message: 'big', confirmWithin: 60 });
    // a trailing duplicate would silently win with JSON.parse
    const dup = await parseJsonBodyInWorker(`${text.slice(0, -1)}, "config": {"firewall": {"enabled": false}}}`);
    assert.ok('issues' in dup);
    assert.match(JSON.stringify(dup.issues), /duplicate/i);
  });

  it('a spare worker: none before the first large document, then one started ahead that answers the same; close stops it', async () => {
    const entries = prefixes(30_000);
    entries[777] = '10.0.0.300';
    const document = { interfaces: [{ name: 'wan0', zone: 'wan' }], aliases: [{ name: 'big', type: 'network', entries }] };
    const e = new Engine({ domains, host: new Host({ netns: 'pt-none', stateDir: dir }), store });
    try {
      e.keepSpareWorker();
      assert.equal(e.hasSpareWorker, false, 'no idle worker before a large document came');
      const first = await e.validate({ document });
      assert.match(JSON.stringify(first), /entries.*777/);
      const deadline = Date.now() + 60_000;
      while (!e.hasSpareWorker && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      assert.equal(e.hasSpareWorker, true, 'a spare was started after the first large document');
      // the spare takes the next job: same answer
      assert.deepEqual(await e.validate({ document }), first);
    } finally {
      e.close();
    }
    assert.equal(e.hasSpareWorker, false, 'close stops the spare');
    // the JSON body parser's spare (module-wide; unref'd): the same answer from a spare as from a fresh worker
    keepSpareParseWorker();
    const text = JSON.stringify({ config: document, message: 'big' });
    const a = await parseJsonBodyInWorker(text);
    await new Promise((r) => setTimeout(r, 1500));
    assert.deepEqual(await parseJsonBodyInWorker(text), a);
  });

  it('a spare nobody uses is stopped after its idle time (spareRetired); the next large document still compiles', { timeout: 180_000 }, async () => {
    const entries = prefixes(30_000);
    entries[5] = '10.0.0.300';
    const document = { interfaces: [{ name: 'wan0', zone: 'wan' }], aliases: [{ name: 'big', type: 'network', entries }] };
    const e = new Engine({ domains, host: new Host({ netns: 'pt-none', stateDir: dir }), store });
    try {
      e.keepSpareWorker({ idleMs: 300 });
      const retired = new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error('no spareRetired within 120 s')), 120_000);
        e.once('spareRetired', () => {
          clearTimeout(t);
          resolve();
        });
      });
      const first = await e.validate({ document });
      await retired;
      assert.equal(e.hasSpareWorker, false, 'the idle spare is gone');
      // a fresh worker takes the next one: same answer
      assert.deepEqual(await e.validate({ document }), first);
    } finally {
      e.close();
    }
  });

  it("the compile and parse workers run at a lower priority than the server's main thread (per-thread nice)", { skip: process.platform !== 'linux' && 'per-thread nice is Linux', timeout: 120_000 }, async () => {
    const base = getPriority(process.pid);
    const want = Math.min(19, base + workerNiceIncrement());
    /** this process's threads with the workers' nice (not the main thread) */
    const niced = () =>
      readdirSync('/proc/self/task').filter((tid) => {
        try {
          // nice is field 19; fields after the command name (which may hold spaces) start at ") "
          const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
          return Number(stat.slice(stat.lastIndexOf(') ') + 2).split(' ')[16]) === want;
        } catch {
          return false; // the thread ended
        }
      });
    assert.notEqual(want, base, 'PATRONUS_WORKER_NICE is not 0 in this test');
    /** waits for a thread at the workers' nice that was not there before */
    const newNiced = async (before: string[]) => {
      const deadline = Date.now() + 60_000;
      for (;;) {
        const fresh = niced().filter((t) => !before.includes(t));
        if (fresh.length || Date.now() > deadline) return fresh;
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    // (spares of the tests above may be idle at that nice already)
    const document = { interfaces: [{ name: 'wan0', zone: 'wan' }], aliases: [{ name: 'big', type: 'network', entries: prefixes(400_000) }], firewall: { rules: [{ name: 'x', direction: 'input', from: 'wan', action: 'drop', source: ['big'] }] } };
    let before = niced();
    const running = engine.validate({ document });
    running.catch(() => undefined);
    let compileThread: string | undefined;
    try {
      const tids = await newNiced(before);
      compileThread = tids[0];
      assert.equal(tids.length, 1, `the compile worker's thread at nice ${want} while the validation runs`);
      assert.notEqual(tids[0], String(process.pid), 'never the main thread');
      assert.equal(getPriority(process.pid), base, "the main thread's priority is unchanged");
    } finally {
      engine.stopValidations();
      await running.catch(() => undefined);
    }
    // the stopped compile worker's thread may still be ending, and start threads (libuv's pool, inheriting its
    // nice) until it does: the parse worker's is counted only once it is gone
    for (const deadline = Date.now() + 60_000; compileThread && existsSync(`/proc/self/task/${compileThread}`) && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 20));
    // a parse worker (a large JSON body's) waiting for its body
    before = niced();
    const w = new Worker(fileURLToPath(new URL('../../src/config/parse-worker.js', import.meta.url)), { workerData: { patronusParseWorker: true } });
    try {
      assert.equal((await newNiced(before)).length, 1, `the parse worker's thread at nice ${want}`);
    } finally {
      await w.terminate();
    }
    assert.equal(getPriority(process.pid), base);
  });

  it('stopValidations ends a running validation at once', async () => {
    const document = { interfaces: [{ name: 'wan0', zone: 'wan' }], aliases: [{ name: 'big', type: 'network', entries: prefixes(400_000) }], firewall: { rules: [{ name: 'x', direction: 'input', from: 'wan', action: 'drop', source: ['big'] }] } };
    const running = engine.validate({ document });
    // the worker is loading or compiling (either takes longer than this)
    await new Promise((r) => setTimeout(r, 200));
    const t0 = performance.now();
    engine.stopValidations();
    await assert.rejects(running, ValidationStopped);
    const ms = performance.now() - t0;
    console.log(`# validation stopped ${ms.toFixed(0)} ms after stopValidations()`);
    assert.ok(ms < 2000, `${ms.toFixed(0)} ms`);
  });
});

/** A deep copy that keeps Buffers Buffers and typed arrays their type (own memory each). */
function copyDeep<T>(v: T): T {
  if (Buffer.isBuffer(v)) return Buffer.from(v) as T;
  if (ArrayBuffer.isView(v) && !(v instanceof DataView)) return new (v.constructor as new (a: unknown) => T)(v);
  if (Array.isArray(v)) return v.map(copyDeep) as T;
  if (v instanceof Map) return new Map([...v].map(([k, x]) => [k, copyDeep(x)])) as T;
  if (v && typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, copyDeep(x)])) as T;
  return v;
}
