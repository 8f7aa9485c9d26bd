/**
 * Engine.status() is polled (GET /api/v1/status, `patronus status`): it must
 * not read or parse any stored document, which can be megabytes (issue 11
 * item 10). Asserted by making every document-reading store call throw.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Engine } from '../../src/apply/engine.js';
import { defineSubsystem, type Subsystem } from '../../src/apply/subsystem.js';
import { Store } from '../../src/store/store.js';
import { Host } from '../../src/system/host.js';
import { domains } from '../../src/domains.js';

const noop: Subsystem<string> = defineSubsystem<string>({
  name: 'noop',
  compile: (ctx) => ({ desired: ctx.config.interfaces[0]?.description ?? '', issues: [] }),
  steps: async () => [],
});

describe('engine status', () => {
  let dir: string;
  let store: Store;
  let engine: Engine;
  const doc = (description: string) => ({ interfaces: [{ name: 'eth9', zone: 'lan', description }], firewall: { enabled: false } });

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'pt-status-'));
    store = Store.open(join(dir, 'patronus.db'));
    engine = new Engine({ domains, host: new Host({ netns: 'pt-none', stateDir: dir }), store, subsystems: [noop] });
  });
  after(() => {
    engine.close();
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('reports committed, pending and running revisions without reading a document', async () => {
    assert.deepEqual({ ...engine.status(), store: undefined, reconcile: undefined }, { running: null, store: undefined, committed: null, pendingConfirmation: null, applying: false, reconcile: undefined, subsystems: ['noop'] });
    const first = await engine.apply({ document: doc('a') }, { author: 'alice', message: 'first' });
    const second = await engine.apply({ document: doc('b') }, { author: 'bob', message: 'second', confirmWithin: 600 });
    const committed = store.get(first.revision)!;
    const pending = store.get(second.revision)!;

    const readers = ['get', 'current', 'unfinished', 'list', 'committedBefore'] as const;
    const saved = readers.map((k) => [k, store[k]] as const);
    for (const k of readers) (store as any)[k] = () => assert.fail(`status() called store.${k}(), which reads documents`);
    let s;
    try {
      s = engine.status();
    } finally {
      for (const [k, f] of saved) (store as any)[k] = f;
    }
    assert.equal(s.running, second.revision);
    assert.deepEqual(s.committed, { id: committed.id, author: 'alice', message: 'first', createdAt: committed.createdAt });
    assert.deepEqual(s.pendingConfirmation, { id: pending.id, deadline: pending.confirmDeadline });
    assert.equal(s.applying, false);
    assert.equal(s.store.ok, true);
    assert.deepEqual(s.subsystems, ['noop']);
    await engine.rollback({ author: 'alice' });
  });

  it('stays fast with a large committed document', async () => {
    const entries = Array.from({ length: 200_000 }, (_, i) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`);
    await engine.apply({ document: { ...doc('big'), aliases: [{ name: 'big', type: 'network', entries }] } }, { author: 'alice', message: 'big' });
    const t0 = performance.now();
    for (let i = 0; i < 100; i++) engine.status();
    const per = (performance.now() - t0) / 100;
    // reading and parsing the ~3 MB document took tens of ms per call; metadata alone is well under one
    console.log(`status() with a 200k-entry committed document: ${per.toFixed(3)} ms per call`);
    assert.ok(per < 5, `${per.toFixed(2)} ms per status() call`);
  });
});
