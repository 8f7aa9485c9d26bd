/**
 * The drift monitor's own logic with fake subsystems (no kernel): the
 * compiled revision is cached by id (no document read per check), one check
 * in flight, results reused for maxAgeMs, repairs only from the loop and only
 * with reconcile auto, backoff between repairs of a subsystem that keeps
 * drifting; and jsonSafe, which keeps /api/v1/services from answering 500.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Engine } from '../../src/apply/engine.js';
import { defineSubsystem, type DriftFinding, type Subsystem } from '../../src/apply/subsystem.js';
import { Store } from '../../src/store/store.js';
import { Host } from '../../src/system/host.js';
import { DriftMonitor } from '../../src/drift/monitor.js';
import { jsonSafe } from '../../src/api/json.js';
import { buildServer } from '../../src/api/server.js';
import { createMetrics } from '../../src/metrics/metrics.js';
import { domains } from '../../src/domains.js';

/** A subsystem whose drift is whatever `broken` says, and whose apply fixes it (or not, with `stuck`). */
function fake() {
  const s = {
    broken: false,
    stuck: false,
    slowMs: 0,
    checks: 0,
    applies: 0,
    compiles: 0,
    /** while set, every drift check waits for it (a check in flight, like one waiting for its ip/nft spawns) */
    gate: undefined as Promise<void> | undefined,
    /** while set, the validate probe waits for it (a request's compile in progress, before its kernel phase) */
    probeGate: undefined as Promise<void> | undefined,
    probes: 0,
    subsystem: undefined as unknown as Subsystem<string>,
  };
  s.subsystem = defineSubsystem<string>({
    name: 'fake',
    compile: (ctx) => {
      s.compiles++;
      return { desired: ctx.config.interfaces[0]?.description ?? '', issues: [] };
    },
    steps: async () => [
      {
        changes: [],
        async run() {
          s.applies++;
          if (s.slowMs) await new Promise((r) => setTimeout(r, s.slowMs));
          if (!s.stuck) s.broken = false;
        },
      },
    ],
    validate: async () => {
      s.probes++;
      if (s.probeGate) await s.probeGate;
      return [];
    },
    drift: async (): Promise<DriftFinding[]> => {
      s.checks++;
      await new Promise((r) => setTimeout(r, 20));
      if (s.gate) await s.gate;
      return s.broken ? [{ object: 'thing', reason: 'broken by hand' }] : [];
    },
  });

  return s;
}

describe('drift monitor', () => {
  let dir: string;
  let store: Store;
  let engine: Engine;
  let f: ReturnType<typeof fake>;
  const doc = (reconcile: 'auto' | 'report' | 'off', description = 'x') => ({ interfaces: [{ name: 'eth9', zone: 'lan', description }], firewall: { enabled: false }, drift: { reconcile, maxBackoffSeconds: 1 } });

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'pt-drift-'));
    store = Store.open(join(dir, 'patronus.db'));
    f = fake();
    engine = new Engine({ domains, host: new Host({ netns: 'pt-none', stateDir: dir }), store, subsystems: [f.subsystem] });
  });
  after(() => {
    engine.close();
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('reports nothing before a revision is committed, then checks against it', async () => {
    const m = new DriftMonitor(engine);
    assert.equal((await m.check()).state, 'ok');
    assert.equal(f.checks, 0, 'nothing committed: nothing to compare with');
    await engine.apply({ document: doc('auto') }, { author: 't', message: '' });
    f.broken = true;
    const r = await m.check({ maxAgeMs: 0 });
    assert.equal(r.state, 'drift');
    assert.equal(r.revision, 1);
    assert.deepEqual(r.items, [{ subsystem: 'fake', object: 'thing', reason: 'broken by hand' }]);
    assert.equal(f.applies, 1, 'check() never repairs (only the apply itself ran)');
  });

  it('compiles each revision once, never reads the document per check, shares one check in flight, reuses a fresh result', async () => {
    const m = new DriftMonitor(engine);
    const get = store.get.bind(store);
    const current = store.current.bind(store);
    let reads = 0;
    store.get = (id) => (reads++, get(id));
    store.current = () => (reads++, current());
    try {
      const compiles = f.compiles;
      const checks = f.checks;
      await Promise.all(Array.from({ length: 20 }, () => m.check({ maxAgeMs: 0 })));
      assert.equal(f.checks - checks, 1, 'twenty concurrent callers, one check');
      for (let i = 0; i < 50; i++) await m.check({ maxAgeMs: 60_000 });
      assert.equal(f.checks - checks, 1, 'results younger than maxAgeMs are reused');
      for (let i = 0; i < 5; i++) await m.check({ maxAgeMs: 0 });
      assert.equal(f.checks - checks, 6);
      // the revision this engine applied: the compile of that apply is reused (Engine.compiledFor)
      assert.equal(f.compiles - compiles, 0, 'no compile for the revision the engine applied');
      assert.equal(reads, 0, 'no document read for the revision the engine applied');
      // another engine on the same store (a server that did not apply it): one compile, one read
      const other = new Engine({ domains, host: engine.host, store, subsystems: [f.subsystem] });
      try {
        const m2 = new DriftMonitor(other);
        for (let i = 0; i < 5; i++) await m2.check({ maxAgeMs: 0 });
        assert.equal(f.compiles - compiles, 1, 'one compile for the revision');
        assert.equal(reads, 1, 'one document read for the revision');
      } finally {
        other.close();
      }
    } finally {
      store.get = get;
      store.current = current;
    }
  });

  it('repairs in the loop (reconcile auto) with growing waits while the subsystem keeps drifting', async () => {
    const m = new DriftMonitor(engine, { backoffBaseMs: 200 });
    f.broken = true;
    f.stuck = true;
    const before = f.applies;
    const r1 = await m.checkAndRepair();
    assert.equal(f.applies - before, 1);
    assert.equal(r1.repairs[0]!.ok, false);
    assert.match(r1.repairs[0]!.error!, /still drifting: thing: broken by hand/);
    assert.ok(r1.nextRepair.fake, 'the next repair waits');
    await m.checkAndRepair();
    assert.equal(f.applies - before, 1, 'within the 200 ms backoff: no repair');
    await new Promise((r) => setTimeout(r, 250));
    const r3 = await m.checkAndRepair();
    assert.equal(f.applies - before, 2);
    assert.equal(r3.repairs[0]!.attempt, 2);
    await new Promise((r) => setTimeout(r, 250));
    await m.checkAndRepair();
    assert.equal(f.applies - before, 2, 'the second wait is 400 ms');
    f.stuck = false;
    await new Promise((r) => setTimeout(r, 250));
    const r5 = await m.checkAndRepair();
    assert.equal(r5.state, 'ok');
    assert.equal(r5.repairs[0]!.ok, true);
  });

  it('reconcile report: never repairs; off: never checks', async () => {
    await engine.apply({ document: doc('report', 'y') }, { author: 't', message: '' });
    const m = new DriftMonitor(engine);
    f.broken = true;
    const applies = f.applies;
    const r = await m.checkAndRepair();
    assert.equal(r.state, 'drift');
    assert.equal(r.mode, 'report');
    assert.equal(f.applies, applies);
    await engine.apply({ document: doc('off', 'z') }, { author: 't', message: '' });
    f.broken = true;
    const checks = f.checks;
    assert.equal((await m.checkAndRepair()).state, 'off');
    assert.equal(f.checks, checks);
  });

  it('an apply that arrives during a repair waits for it (no 409)', async () => {
    await engine.apply({ document: doc('auto', 'before-repair') }, { author: 't', message: '' });
    const m = new DriftMonitor(engine);
    f.broken = true;
    f.slowMs = 300;
    try {
      const repairing = m.checkAndRepair();
      await new Promise((r) => setTimeout(r, 100)); // the repair holds the lock now
      const applies = f.applies;
      const report = await engine.apply({ document: doc('auto', 'during-repair') }, { author: 't', message: '' });
      assert.equal(report.state, 'committed');
      assert.equal(f.applies - applies, 1, 'the apply ran after the repair released the lock');
      assert.equal((await repairing).repairs[0]?.ok, true);
    } finally {
      f.slowMs = 0;
    }
  });

  it('a store that cannot be read makes the check drift, not an exception', async () => {
    const head = store.head.bind(store);
    store.head = () => {
      throw new Error('SQLITE_IOERR: disk I/O error');
    };
    try {
      const r = await new DriftMonitor(engine).check();
      assert.equal(r.state, 'drift');
      assert.match(r.items[0]!.reason, /cannot read the revision to compare with: SQLITE_IOERR/);
    } finally {
      store.head = head;
    }
  });

  it('a check that throws is drift (an unverified state is not ok)', async () => {
    await engine.apply({ document: doc('auto', 'w') }, { author: 't', message: '' });
    const drift = f.subsystem.drift;
    f.subsystem.drift = async () => {
      throw new Error('cannot read the thing');
    };
    try {
      const r = await new DriftMonitor(engine).check();
      assert.equal(r.state, 'drift');
      assert.match(r.items[0]!.reason, /drift check failed: cannot read the thing/);
    } finally {
      f.subsystem.drift = drift;
    }
  });
});

describe('status and /healthz follow another process', () => {
  it('a revision applied by a second engine on the same store (a --direct CLI) shows as running once verified; /healthz 503 while it drifts', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pt-drift2-'));
    const f = fake();
    const host = new Host({ netns: 'pt-none', stateDir: dir });
    const storeA = Store.open(join(dir, 'patronus.db'));
    const storeB = Store.open(join(dir, 'patronus.db'));
    const a = new Engine({ domains, host, store: storeA, subsystems: [f.subsystem] });
    const b = new Engine({ domains, host, store: storeB, subsystems: [f.subsystem] });
    const app = await buildServer({ engine: a, store: storeA, metrics: createMetrics(a, { processMetrics: false }) });
    try {
      const token = storeA.addToken('t');
      const get = async (url: string) => {
        const r = await app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${token}` } });
        return { status: r.statusCode, json: r.json() };
      };
      await a.apply({ document: { interfaces: [{ name: 'eth9', zone: 'lan', description: 'a' }], firewall: { enabled: false } } }, { author: 't', message: '' });
      assert.equal((await get('/api/v1/status')).json.running, 1);
      await b.apply({ document: { interfaces: [{ name: 'eth9', zone: 'lan', description: 'b' }], firewall: { enabled: false } } }, { author: 'cli', message: '' });
      const s = await get('/api/v1/status');
      assert.equal(s.json.running, 2, 'the other process applied revision 2 and the check verified it');
      assert.equal(s.json.drift.revision, 2);
      f.broken = true;
      await new Promise((r) => setTimeout(r, 1100)); // /healthz reuses a check younger than 1 s
      const h = await get('/healthz');
      assert.equal(h.status, 503);
      assert.deepEqual(h.json.drift, [{ subsystem: 'fake', object: 'thing', reason: 'broken by hand' }]);
      assert.equal((await get('/api/v1/status')).json.running, null, 'not verified while it differs');
    } finally {
      await app.close();
      a.close();
      b.close();
      storeA.close();
      storeB.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

/** One fake subsystem behind an engine, a drift monitor and (server: true) the API: the /healthz tests' rig. */
async function rig(prefix: string, opts: ConstructorParameters<typeof DriftMonitor>[1] = {}) {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const f = fake();
  const store = Store.open(join(dir, 'patronus.db'));
  const engine = new Engine({ domains, host: new Host({ netns: 'pt-none', stateDir: dir }), store, subsystems: [f.subsystem] });
  const drift = new DriftMonitor(engine, opts);
  const app = await buildServer({ engine, store, metrics: createMetrics(engine, { processMetrics: false }), drift });
  const healthz = async () => {
    const r = await app.inject({ method: 'GET', url: '/healthz' });
    return { status: r.statusCode, json: r.json() };
  };
  const doc = (description: string) => ({ interfaces: [{ name: 'eth9', zone: 'lan', description }], firewall: { enabled: false } });
  const close = async () => {
    drift.stop();
    await app.close();
    engine.close();
    store.close();
    rmSync(dir, { recursive: true, force: true });
  };
  return { f, store, engine, drift, app, healthz, doc, close };
}

describe('/healthz while a check is in flight', () => {
  it('answers from the last verified result (its age and checking: true), a verified drift stays 503, a new revision waits', { timeout: 60_000 }, async () => {
    const { f, engine, drift, healthz, doc, close } = await rig('pt-drift3-');
    let open = () => {};
    const hold = () => (f.gate = new Promise<void>((r) => (open = r)));
    const release = () => {
      f.gate = undefined;
      open();
    };
    try {
      await engine.apply({ document: doc('a') }, { author: 't', message: '' });
      const first = await healthz();
      assert.equal(first.status, 200);
      assert.equal(first.json.status, 'ok');
      assert.equal(first.json.checking, false);

      // a check in flight (held): /healthz does not wait for it, it answers the last verified result
      f.broken = true;
      hold();
      const checks = f.checks;
      const inflight = drift.check({ maxAgeMs: 0 });
      await waitUntil(() => f.checks > checks);
      const during = await healthz();
      assert.equal(during.status, 200, 'the last verified result: ok');
      assert.equal(during.json.checking, true);
      assert.equal(during.json.checkedAt, first.json.checkedAt, 'the same verification, not a new one');
      assert.equal(typeof during.json.ageMs, 'number');
      assert.ok(during.json.ageMs >= 0);
      release();
      assert.equal((await inflight).state, 'drift');
      const after = await healthz();
      assert.equal(after.status, 503, 'the verified drift answers at once');
      assert.equal(after.json.checking, false);

      // a verified drift stays 503 while the next check runs
      hold();
      const inflight2 = drift.check({ maxAgeMs: 0 });
      await waitUntil(() => drift.checking);
      const during2 = await healthz();
      assert.equal(during2.status, 503);
      assert.deepEqual(during2.json.drift, [{ subsystem: 'fake', object: 'thing', reason: 'broken by hand' }]);
      assert.equal(during2.json.checking, true);
      f.broken = false;
      release();
      assert.equal((await inflight2).state, 'ok');
      assert.equal((await healthz()).status, 200, 'repaired by hand, verified: ok again');

      // a new revision is not answered from the old one's result: /healthz waits for its check
      await engine.apply({ document: doc('b') }, { author: 't', message: '' });
      hold();
      const inflight3 = drift.check({ maxAgeMs: 0 });
      await waitUntil(() => drift.checking);
      let answered = false;
      const pending = healthz().then((r) => ((answered = true), r));
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(answered, false, 'waits for the check of revision 2');
      release();
      await inflight3;
      const r2 = await pending;
      assert.equal(r2.status, 200);
      assert.equal(r2.json.revision, 2);
    } finally {
      release();
      await close();
    }
  });
});

describe('drift checks while a request is validated, planned or applied', () => {
  it('start no check before the kernel phase: /healthz answers the last verified result (deferred), a verified drift stays 503, the new revision gets its own check', { timeout: 60_000 }, async () => {
    // the periodic loop too (every 20 ms): it must skip its ticks while a request's work is in progress
    const { f, engine, drift, healthz, doc, close } = await rig('pt-drift4-', { intervalMs: 20, mode: 'report' });
    let open = () => {};
    const holdProbe = () => (f.probeGate = new Promise<void>((r) => (open = r)));
    const releaseProbe = () => {
      f.probeGate = undefined;
      open();
    };
    try {
      await engine.apply({ document: doc('a') }, { author: 't', message: '' });
      drift.start();
      await waitUntil(() => drift.lastReport?.revision === 1 && drift.lastReport.state === 'ok');
      const first = await healthz();
      assert.equal(first.status, 200);
      assert.equal(first.json.deferred, false);

      // a verified drift, then an apply held in its compile (the validate probe)
      f.broken = true;
      const found = await drift.check({ maxAgeMs: 0 });
      assert.equal(found.state, 'drift');
      holdProbe();
      const probes = f.probes;
      const applying = engine.apply({ document: doc('b') }, { author: 't', message: '' });
      await waitUntil(() => f.probes > probes);
      assert.ok(engine.workInProgress(), 'the apply is in progress');
      assert.equal(engine.applying, false, 'not in its kernel phase yet');
      // a check the loop started before the apply began may still end (it finds the same drift)
      await waitUntil(() => !drift.checking);
      const verified = drift.lastReport!;
      assert.equal(verified.state, 'drift');
      const checks = f.checks;
      const during: { status: number; json: Record<string, unknown> }[] = [];
      for (let i = 0; i < 5; i++) {
        during.push(await healthz());
        await drift.check({ maxAgeMs: 0 }); // another reader (status, a scrape): no check either
        await new Promise((r) => setTimeout(r, 50)); // the loop's ticks (20 ms) pass meanwhile
      }
      assert.equal(f.checks, checks, 'no drift check started while the apply was compiled');
      for (const d of during) {
        assert.equal(d.status, 503, 'the verified drift stays 503 during the apply');
        assert.equal(d.json.status, 'drift');
        assert.equal(d.json.deferred, true);
        assert.equal(d.json.revision, 1);
        assert.equal(d.json.checkedAt, verified.checkedAt, 'the last verified result, not a new one');
        assert.deepEqual(d.json.drift, [{ subsystem: 'fake', object: 'thing', reason: 'broken by hand' }]);
      }
      assert.ok((during.at(-1)!.json.ageMs as number) >= (during[0]!.json.ageMs as number));

      // the apply goes on (it fixes the fake) and commits revision 2: that revision gets its own check
      releaseProbe();
      const report = await applying;
      assert.equal(report.revision, 2);
      assert.equal(engine.workInProgress(), undefined);
      const after = await healthz();
      assert.equal(after.json.revision, 2);
      assert.equal(after.status, 200, JSON.stringify(after.json));
      assert.equal(after.json.deferred, false);
      assert.ok(f.checks > checks, 'revision 2 was checked');
      assert.notEqual(after.json.checkedAt, verified.checkedAt);

      // a plan and a validation held the same way: no check either, and /healthz says ok (verified) meanwhile
      await waitUntil(() => drift.lastReport?.revision === 2 && drift.lastReport.state === 'ok');
      for (const what of ['plan', 'validate'] as const) {
        holdProbe();
        const p0 = f.probes;
        const pending = what === 'plan' ? engine.plan({ document: doc('c') }) : engine.validate({ document: doc('c') });
        await waitUntil(() => f.probes > p0);
        await waitUntil(() => !drift.checking);
        const c0 = f.checks;
        const h = await healthz();
        await new Promise((r) => setTimeout(r, 100));
        assert.equal(f.checks, c0, `no drift check started during the ${what}`);
        assert.equal(h.status, 200);
        assert.equal(h.json.deferred, true);
        assert.equal(h.json.revision, 2);
        releaseProbe();
        await pending;
        assert.equal(engine.workInProgress(), undefined);
        await waitUntil(() => f.checks > c0); // the loop checks again once the request is done
      }
    } finally {
      releaseProbe();
      await close();
    }
  });

  it('a result older than maxDeferMs is checked again even while a request is in progress', { timeout: 30_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pt-drift5-'));
    const f = fake();
    const store = Store.open(join(dir, 'patronus.db'));
    const engine = new Engine({ domains, host: new Host({ netns: 'pt-none', stateDir: dir }), store, subsystems: [f.subsystem] });
    const drift = new DriftMonitor(engine, { maxDeferMs: 100 });
    try {
      await engine.apply({ document: { interfaces: [{ name: 'eth9', zone: 'lan', description: 'a' }], firewall: { enabled: false } } }, { author: 't', message: '' });
      const first = await drift.check({ maxAgeMs: 0 });
      const end = engine.beginWork('request');
      try {
        const c0 = f.checks;
        assert.equal(await drift.check({ maxAgeMs: 0 }), first, 'deferred: the same result');
        assert.equal(drift.deferring, true);
        await new Promise((r) => setTimeout(r, 150));
        assert.equal(drift.deferring, false, 'too old to stand in');
        const again = await drift.check({ maxAgeMs: 0 });
        assert.notEqual(again, first);
        assert.equal(f.checks, c0 + 1);
      } finally {
        end();
      }
      assert.equal(drift.deferring, false);
    } finally {
      drift.stop();
      engine.close();
      store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

/** Polls cond until true; fails after 20 s. */
async function waitUntil(cond: () => boolean): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met within 20 s');
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('jsonSafe', () => {
  it('turns what JSON.stringify refuses or mangles into plain JSON', () => {
    const v = jsonSafe({ a: 5n, big: 2n ** 64n, m: new Map([['x', 1n]]), s: new Set([1]), b: Buffer.from([1, 255]), d: new Date(0), f: () => 1, nested: [{ c: 3n }, undefined] });
    assert.deepEqual(v, { a: 5, big: '18446744073709551616', m: { x: 1 }, s: [1], b: '01ff', d: '1970-01-01T00:00:00.000Z', nested: [{ c: 3 }, null] });
    assert.doesNotThrow(() => JSON.stringify(v));
    const loop: Record<string, unknown> = {};
    loop.self = loop;
    assert.deepEqual(jsonSafe(loop), { self: '[circular]' });
  });
});
