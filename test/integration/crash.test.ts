/**
 * kill -9 during an apply: the store stays readable, the last committed
 * revision intact, and the next start converges the kernel back to it.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { Engine } from '../../src/apply/engine.js';
import { interfacesSubsystem } from '../../src/interfaces/subsystem.js';
import { Store } from '../../src/store/store.js';
import { missing } from '../lib/skip.js';
import { controlLab, addresses, faultSubsystem, doc, type ControlLab } from '../lib/control.js';

const skip = missing('netns');
const child = fileURLToPath(new URL('../lib/apply_child.js', import.meta.url));
const REV1 = ['10.1.0.1/24', '192.0.2.2/24'];

describe('crash safety', { skip }, () => {
  let L: ControlLab;
  const dbPath = () => join(L.stateDir, 'patronus.db');
  const subsystems = [interfacesSubsystem, faultSubsystem()];

  before(async () => {
    L = await controlLab();
    using store = Store.open(dbPath());
    const engine = new Engine({ host: L.host, store, subsystems });
    await engine.apply({ document: doc(['10.1.0.1/24']) }, { author: 'test', message: 'baseline' });
    engine.close();
  });
  after(async () => L?.teardown());

  /** starts the child and SIGKILLs it when `when` returns true for an output line */
  async function killDuring(document: unknown, when: (line: string, ms: number) => boolean, delayMs = 0): Promise<string[]> {
    const p = execa('node', [child, L.stateDir, L.fw.name, JSON.stringify(document)], { reject: false, buffer: false });
    const seen: string[] = [];
    const t0 = Date.now();
    await new Promise<void>((resolve) => {
      let killed = false;
      const kill = () => {
        if (killed) return;
        killed = true;
        setTimeout(() => {
          p.kill('SIGKILL');
          resolve();
        }, delayMs);
      };
      p.stdout!.setEncoding('utf8');
      p.stdout!.on('data', (chunk: string) => {
        for (const line of chunk.split('\n').filter(Boolean)) {
          seen.push(line);
          if (when(line, Date.now() - t0)) kill();
        }
      });
      p.on('exit', () => resolve());
    });
    await p;
    return seen;
  }

  /** `expected`: committed revision message -> the addresses it puts on wan0 */
  async function restartAndCheck(expected: Record<string, string[]> = { baseline: REV1 }): Promise<void> {
    using store = Store.open(dbPath());
    assert.equal(store.integrityCheck(), 'ok');
    const committed = store.current()!.message;
    assert.ok(committed in expected, `committed revision is "${committed}"`);
    const engine = new Engine({ host: L.host, store, subsystems });
    try {
      const out = await engine.reconcile();
      assert.equal(out.error, undefined);
      assert.equal(out.revision, store.current()!.id);
    } finally {
      engine.close();
    }
    assert.deepEqual(store.unfinished(), []);
    assert.deepEqual(await addresses(L.fw, 'wan0'), expected[committed]);
  }

  it('kill -9 after the kernel changed, mid-transaction: restart ends in the last committed revision', async () => {
    const seen = await killDuring(doc(['10.2.0.1/24', '10.2.1.1/24'], { description: 'stall' }), (l) => l === 'step fault', 100);
    assert.ok(seen.includes('step fault'), `child output: ${seen.join(', ')}`);
    // the kernel holds the half-applied revision now
    assert.deepEqual(await addresses(L.fw, 'wan0'), ['10.2.0.1/24', '10.2.1.1/24', '192.0.2.2/24']);
    await restartAndCheck();
    using store = Store.open(dbPath());
    assert.equal(store.list({ limit: 1 })[0]!.state, 'interrupted');
  });

  for (const delay of [0, 15, 40, 80]) {
    it(`kill -9 ${delay} ms after start: store readable, committed revision intact`, async () => {
      await killDuring(doc(['10.3.0.1/24']), (l) => l === 'ready', delay);
      // the apply may have committed before the kill landed: either revision is right, half of one is not
      await restartAndCheck({ baseline: REV1, 'crash me': ['10.3.0.1/24', '192.0.2.2/24'] });
    });
  }
});
