/**
 * kill -9 during an apply: the store stays readable, the last committed
 * revision intact, and the next start converges the kernel back to it.
 * The child applies with interfaces, fast path (XDP + maps), nftables and a
 * fault injector; after each kill and restart the kernel (addresses, nft
 * table, XDP program, every subsystem's plan) must be exactly the committed
 * revision's: at fixed moments, and at 24 random points of applies.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { Engine } from '../../src/apply/engine.js';
import { interfacesSubsystem } from '../../src/interfaces/subsystem.js';
import { fastpathSubsystem } from '../../src/fastpath/subsystem.js';
import { nftSubsystem } from '../../src/nft/subsystem.js';
import { removePins } from '../../src/fastpath/dataplane.js';
import { Store } from '../../src/store/store.js';
import { missing } from '../lib/skip.js';
import { controlLab, addresses, faultSubsystem, doc, type ControlLab } from '../lib/control.js';
import { kernelState, type KernelState } from '../lib/fault.js';
import { domains } from '../../src/domains.js';

const skip = missing('netns', { cmd: 'nft' });
const child = fileURLToPath(new URL('../lib/apply_child.js', import.meta.url));
const REV1 = ['10.1.0.1/24', '192.0.2.2/24'];
const RANDOM_POINTS = 24;

/** two revisions that differ in every subsystem the child drives */
const variant = (n: 1 | 2) => ({
  interfaces: [{ name: 'wan0', zone: 'wan', addresses: n === 1 ? ['10.4.0.1/24'] : ['10.5.0.1/24', '10.5.1.1/24'] }],
  fastpath: {
    interfaces: [{ name: 'wan0' }],
    rules: Array.from({ length: n === 1 ? 40 : 60 }, (_, i) => ({ name: `drop-${n}-${i}`, source: `198.51.${n}.${i}`, protocol: 'udp', action: 'drop' })),
  },
  firewall: { rules: Array.from({ length: n === 1 ? 30 : 50 }, (_, i) => ({ name: `allow-${n}-${i}`, direction: 'input', from: 'wan', protocol: 'tcp', ports: [1000 * n + i], action: 'accept' })) },
});

describe('crash safety', { timeout: 540_000, skip }, () => {
  let L: ControlLab;
  const dbPath = () => join(L.stateDir, 'patronus.db');
  const subsystems = () => [interfacesSubsystem, fastpathSubsystem, nftSubsystem, faultSubsystem()];

  before(async () => {
    L = await controlLab();
    using store = Store.open(dbPath());
    const engine = new Engine({ domains, host: L.host, store, subsystems: subsystems() });
    await engine.apply({ document: doc(['10.1.0.1/24']) }, { author: 'test', message: 'baseline' });
    engine.close();
  });
  after(async () => {
    if (L) {
      await fastpathSubsystem.teardown?.(L.host).catch(() => {});
      removePins(join(L.bpfRoot, 'fastpath'));
    }
    await L?.teardown();
  });

  /** starts the child and SIGKILLs it when `when` returns true for an output line; returns its output */
  async function killDuring(document: unknown, when: (line: string, ms: number) => boolean, delayMs = 0, message = 'crash me'): Promise<string[]> {
    // bounded: a child that never prints the awaited line is killed by the timeout (its exit ends the wait)
    const p = execa('node', [child, L.stateDir, L.fw.name, JSON.stringify(document), message, L.bpfRoot], { reject: false, buffer: false, timeout: 120_000 });
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

  /** restart: reconcile with the store the dead child left; returns the committed revision's message */
  async function restart(): Promise<string> {
    using store = Store.open(dbPath());
    assert.equal(store.integrityCheck(), 'ok');
    const engine = new Engine({ domains, host: L.host, store, subsystems: subsystems() });
    try {
      const out = await engine.reconcile();
      assert.equal(out.error, undefined);
      assert.equal(out.revision, store.current()!.id);
    } finally {
      engine.close();
    }
    assert.deepEqual(store.unfinished(), []);
    assert.equal(store.running(), store.current()!.id);
    return store.current()!.message;
  }

  /** `expected`: committed revision message -> the addresses it puts on wan0 */
  async function restartAndCheck(expected: Record<string, string[]> = { baseline: REV1 }): Promise<void> {
    const committed = await restart();
    assert.ok(committed in expected, `committed revision is "${committed}"`);
    assert.deepEqual(await addresses(L.fw, 'wan0'), expected[committed]);
  }

  /** the kernel equals the committed revision: addresses, table, XDP program, and no subsystem has anything left to change */
  async function assertKernelIsCommitted(reference: Map<string, KernelState>, label: string): Promise<string> {
    using store = Store.open(dbPath());
    const committed = store.current()!;
    const want = reference.get(committed.message);
    assert.ok(want, `${label}: committed revision is "${committed.message}"`);
    assert.deepEqual(await kernelState(L.host, L.fw, 'wan0'), want, `${label}: kernel = revision ${committed.id} (${committed.message})`);
    const engine = new Engine({ domains, host: L.host, store, subsystems: subsystems(), lockPath: join(L.stateDir, 'plan.lock') });
    try {
      const plan = await engine.plan({ document: committed.config });
      assert.deepEqual(plan.subsystems.flatMap((s) => s.changes.map((c) => `${s.subsystem}: ${c.action} ${c.object}`)), [], `${label}: nothing to change`);
    } finally {
      engine.close();
    }
    return committed.message;
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

  it(`kill -9 at ${RANDOM_POINTS} random points of applies (interfaces, fast path, nftables): kernel = the committed revision after each`, async () => {
    // the kernel state each revision puts there, from clean applies
    const reference = new Map<string, KernelState>();
    let applyMs = 0;
    {
      using store = Store.open(dbPath());
      const engine = new Engine({ domains, host: L.host, store, subsystems: subsystems() });
      try {
        for (const n of [1, 2] as const) {
          const r = await engine.apply({ document: variant(n) }, { author: 'test', message: `v${n}` });
          applyMs = Math.max(applyMs, r.durationMs);
          reference.set(`v${n}`, await kernelState(L.host, L.fw, 'wan0'));
        }
      } finally {
        engine.close();
      }
    }
    // calibration: how long a child takes from "ready" to "done" for this change (pins adopted, so much less than the first load)
    let readyAt = 0;
    let doneAt = 0;
    await killDuring(variant(1), (l, ms) => ((l === 'ready' ? (readyAt = ms) : l === 'done' ? (doneAt = ms) : 0), false), 0, 'v1');
    assert.ok(doneAt > readyAt, 'the calibration apply finished');
    await assertKernelIsCommitted(reference, 'calibration');
    // kill points spread over the whole apply and a little after it
    const window = Math.ceil((doneAt - readyAt) * 1.15) + 10;
    const outcomes: Record<string, number> = {};
    const atStep: Record<string, number> = {};
    let current = 'v1';
    for (let i = 0; i < RANDOM_POINTS; i++) {
      const target = current === 'v1' ? 'v2' : 'v1';
      const delay = Math.floor(Math.random() * window);
      const seen = await killDuring(variant(target === 'v1' ? 1 : 2), (l) => l === 'ready', delay, target);
      const last = seen.filter((l) => l !== 'ready').at(-1) ?? 'before the apply';
      atStep[last] = (atStep[last] ?? 0) + 1;
      const committed = await restart();
      current = await assertKernelIsCommitted(reference, `kill ${i + 1} at ${delay} ms (${last})`);
      assert.equal(current, committed);
      const outcome = committed === target ? 'committed before the kill' : 'rolled back to the previous revision';
      outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
    }
    console.log(`# ${RANDOM_POINTS} kills within ${window} ms of the child being ready (its apply takes ${doneAt - readyAt} ms; the first, loading the program, ${applyMs.toFixed(0)} ms): ${JSON.stringify(outcomes)}; last output before the kill: ${JSON.stringify(atStep)}`);
  });
});
