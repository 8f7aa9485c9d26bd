/**
 * Which subsystems an apply leaves alone (Engine.unchangedSubsystems): those
 * whose compiled part is the running revision's and that a drift check
 * vouched for after the kernel was last touched, or, right after an apply
 * (no check since), that this engine's own last apply converged. Never
 * without a running drift loop, never after anything else touched the
 * kernel, never for a part that changes or a subsystem without a drift check.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Engine, type CleanState } from '../../src/apply/engine.js';
import { DesiredStates, defineSubsystem, type Subsystem } from '../../src/apply/subsystem.js';
import { Store } from '../../src/store/store.js';
import { Host } from '../../src/system/host.js';
import { domains } from '../../src/domains.js';

/** a subsystem whose part is one interface's description; counts its applies */
function fake(name: string, pick: (d: string[]) => string, withDrift = true): Subsystem<string> & { runs: number } {
  const s = defineSubsystem<string>({
    name,
    compile: (ctx) => ({ desired: pick(ctx.config.interfaces.map((i) => i.description ?? '')), issues: [] }),
    steps: async () => [{ changes: [{ action: 'change', object: name }], run: async () => void s.runs++ }],
    ...(withDrift ? { drift: async () => [] } : {}),
  }) as Subsystem<string> & { runs: number };
  s.runs = 0;
  return s;
}

describe('subsystems an apply leaves alone', () => {
  let dir: string;
  let store: Store;
  let engine: Engine;
  const a = fake('a', (d) => d[0] ?? '');
  const b = fake('b', (d) => d[1] ?? '');
  const c = fake('c', (d) => d[1] ?? '', false);
  let clean: CleanState | undefined;
  const doc = (x: string, y: string) => ({ interfaces: [{ name: 'eth8', zone: 'lan', description: x }, { name: 'eth9', zone: 'lan', description: y }], firewall: { enabled: false } });
  const me = { author: 't', message: 'm' };
  const unchanged = (r: { steps: { subsystem: string; unchanged?: true }[] }) => r.steps.filter((s) => s.unchanged).map((s) => s.subsystem);

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'pt-unchanged-'));
    store = Store.open(join(dir, 'patronus.db'));
    engine = new Engine({ domains, host: new Host({ netns: 'pt-none', stateDir: dir }), store, subsystems: [a, b, c] });
    engine.cleanState = () => clean;
  });
  after(() => {
    engine.close();
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('right after an apply, its own convergence vouches for what the next one does not change', async () => {
    const first = await engine.apply({ document: doc('x', 'y') }, me);
    assert.deepEqual(unchanged(first), [], 'no drift loop has reported yet: everything converges');
    // a drift loop that runs, whose last check is older than the apply (as between an operator's applies)
    const desired = new DesiredStates().put(a, 'x').put(b, 'y').put(c, 'y');
    clean = { revision: first.revision, state: 'ok', checkedAt: new Date(Date.now() - 60_000).toISOString(), items: [], checked: ['a', 'b'], desired };
    const second = await engine.apply({ document: doc('x2', 'y') }, me);
    assert.deepEqual(unchanged(second), ['b'], 'b (same part, converged by the last apply) is left alone; a changed; c has no drift check');
    assert.equal(b.runs, 1);
    const third = await engine.apply({ document: doc('x3', 'y') }, me);
    assert.deepEqual(unchanged(third), ['b'], 'and again after that apply');
  });

  it('not once something else touched the kernel (a drift repair), nor without a drift loop', async () => {
    const running = engine.status().running!;
    const repaired = await engine.repair(running, await engine.compile({ document: store.get(running)!.config }), ['a']);
    assert.ok(repaired?.every((s) => s.ok));
    const runs = b.runs;
    const after = await engine.apply({ document: doc('x4', 'y') }, me);
    assert.deepEqual(unchanged(after), [], 'the repair touched the kernel after the last apply: everything converges');
    assert.equal(b.runs, runs + 1);
    clean = undefined;
    const noLoop = await engine.apply({ document: doc('x5', 'y') }, me);
    assert.deepEqual(unchanged(noLoop), [], 'no drift loop: nothing is left alone');
    clean = { revision: noLoop.revision, state: 'off', checkedAt: new Date().toISOString(), items: [], checked: [], desired: new DesiredStates() };
    assert.deepEqual(unchanged(await engine.apply({ document: doc('x6', 'y') }, me)), [], 'drift loop off: nothing is left alone');
  });
});
