/**
 * Validation in a worker thread (src/apply/check-worker.ts): large documents
 * go there, small ones stay on the calling thread, both give the same
 * issues, and stopping the workers (server shutdown) ends a validation at
 * once. The serve-level behaviour (/healthz latency, SIGTERM) is in
 * test/fault/eventloop.test.ts.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Engine, heavyToCompile } from '../../src/apply/engine.js';
import { ValidationStopped } from '../../src/apply/check-worker.js';
import { Store } from '../../src/store/store.js';
import { Host } from '../../src/system/host.js';
import { domains } from '../../src/domains.js';

const prefixes = (n: number) => Array.from({ length: n }, (_, i) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`);

describe('validation off the main thread', () => {
  let dir: string;
  let store: Store;
  let engine: Engine;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'pt-checkworker-'));
    store = Store.open(':memory:');
    // the registered subsystems (worker-capable); no namespace is needed: these documents fail before any probe
    engine = new Engine({ domains, host: new Host({ netns: 'pt-none', stateDir: dir }), store });
  });
  after(() => {
    engine.close();
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
    const here = (await engine.check({ document })).issues;
    assert.ok(inWorker.length > 0);
    assert.match(JSON.stringify(inWorker), /entries.*12345/);
    assert.deepEqual(inWorker, here);
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
