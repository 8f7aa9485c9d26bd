/**
 * The engine against the real kernel in a test namespace: apply, plan,
 * failure mid-apply with rollback, commit-confirm timeout, rollback,
 * start-up reconciliation. The interfaces subsystem changes real addresses
 * and MTU; a test-only subsystem injects the failure.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Engine, ApplyError, ConflictError } from '../../src/apply/engine.js';
import { interfacesSubsystem } from '../../src/interfaces/subsystem.js';
import { defineSubsystem } from '../../src/apply/subsystem.js';
import { ConfigError } from '../../src/config/issues.js';
import { Store } from '../../src/store/store.js';
import { formatPlan } from '../../src/apply/plan.js';
import { missing } from '../lib/skip.js';
import { controlLab, addresses, mtu, faultSubsystem, doc, type ControlLab } from '../lib/control.js';
import { domains } from '../../src/domains.js';

const skip = missing('netns');

describe('engine', { timeout: 300_000, skip }, () => {
  let L: ControlLab;
  let store: Store;
  let engine: Engine;
  const me = { author: 'test', message: 'm' };

  before(async () => {
    L = await controlLab();
    store = Store.open(join(L.stateDir, 'patronus.db'));
    engine = new Engine({ domains, host: L.host, store, subsystems: [interfacesSubsystem, faultSubsystem()] });
  });
  after(async () => {
    engine?.close();
    store?.close();
    await L?.teardown();
  });

  it('applies a revision and the kernel follows', async () => {
    const plan = await engine.plan({ document: doc(['10.1.0.1/24', '2001:db8:1::1/64']) });
    assert.deepEqual(plan.summary.add, 2);
    assert.match(formatPlan(plan), /interfaces:\n  \+ address 10\.1\.0\.1\/24 on wan0/);
    const r = await engine.apply({ document: doc(['10.1.0.1/24', '2001:db8:1::1/64']) }, me);
    assert.equal(r.state, 'committed');
    assert.deepEqual(await addresses(L.fw, 'wan0'), ['10.1.0.1/24', '192.0.2.2/24', '2001:db8:1::1/64'].sort());
    assert.equal(store.current()!.id, r.revision);
    // applying again changes nothing
    assert.equal(formatPlan(await engine.plan({ document: doc(['10.1.0.1/24', '2001:db8:1::1/64']) })), 'No changes: the running system matches the configuration.');
  });

  it('rejects a bad document with every issue and changes nothing', async () => {
    const before = store.count();
    await assert.rejects(
      engine.apply({ text: 'interfaces:\n  - name: wan0\n    addresses: ["10.0.0.300/24"]\n    mtu: 9\n' }, me),
      (e: unknown) => e instanceof ConfigError && e.issues.length === 2 && /interfaces\[0\]\.addresses\[0\]/.test(e.message) && /interfaces\[0\]\.mtu/.test(e.message),
    );
    await assert.rejects(engine.apply({ document: { interfaces: [{ name: 'nosuch0', addresses: ['10.9.9.9/24'] }] } }, me), /interfaces\[0\]\.name: interface "nosuch0" does not exist/);
    assert.equal(store.count(), before);
    assert.deepEqual(await addresses(L.fw, 'wan0'), ['10.1.0.1/24', '192.0.2.2/24', '2001:db8:1::1/64'].sort());
  });

  it('a failing step mid-apply rolls every touched subsystem back and names the step', async () => {
    const mtuBefore = await mtu(L.fw, 'wan0');
    const committed = store.current()!.id;
    let err: unknown;
    try {
      await engine.apply({ document: doc(['10.2.0.1/24'], { mtu: 1400, description: 'fail' }) }, me);
    } catch (e) {
      err = e;
    }
    assert.ok(err instanceof ApplyError, String(err));
    assert.equal(err.report.failedStep, 'fault');
    assert.match(err.message, /failed at step "fault": injected failure; rolled back to revision/);
    assert.deepEqual(err.report.rollback!.map((s) => [s.subsystem, s.ok]), [['fault', true], ['interfaces', true]]);
    // the interfaces step had succeeded; its changes are undone
    assert.deepEqual(await addresses(L.fw, 'wan0'), ['10.1.0.1/24', '192.0.2.2/24', '2001:db8:1::1/64'].sort());
    assert.equal(await mtu(L.fw, 'wan0'), mtuBefore);
    assert.equal(store.get(err.report.revision)!.state, 'failed');
    assert.equal(store.current()!.id, committed);
  });

  it('an unconfirmed revision rolls back by itself', async () => {
    const committed = store.current()!.id;
    // 4 s: the checks below (addresses, MTU, the conflicting apply) must run before the deadline; with 0.8 s
    // a loaded machine could pass it first, and the conflicting apply of an empty document then went through
    const r = await engine.apply({ document: doc(['10.3.0.1/24'], { mtu: 1300 }) }, { ...me, confirmWithin: 4 });
    assert.equal(r.state, 'confirming');
    assert.deepEqual(await addresses(L.fw, 'wan0'), ['10.3.0.1/24', '192.0.2.2/24']);
    assert.equal(await mtu(L.fw, 'wan0'), 1300);
    await assert.rejects(engine.apply({ document: doc([]) }, me), ConflictError);
    assert.ok(Date.now() < Date.parse(store.get(r.revision)!.confirmDeadline!), 'the checks above ran before the deadline');
    // waits while the revision is confirming: false once the deadline rolled it back
    assert.equal(await engine.waitForConfirmation(r.revision, 50), false);
    await waitFor(async () => (store.get(r.revision)!.result as { rollback?: unknown }).rollback !== undefined, 4000 + 30_000);
    assert.deepEqual(await addresses(L.fw, 'wan0'), ['10.1.0.1/24', '192.0.2.2/24', '2001:db8:1::1/64'].sort());
    assert.equal(await mtu(L.fw, 'wan0'), 1500);
    const rev = store.get(r.revision)!;
    assert.equal(rev.state, 'rolled_back');
    assert.match((rev.result as { error: string }).error, /not confirmed within 4 s/);
    assert.equal(store.current()!.id, committed);
  });

  it('a confirmed revision stays', async () => {
    const r = await engine.apply({ document: doc(['10.4.0.1/24']) }, { ...me, confirmWithin: 30 });
    const rev = await engine.confirm();
    assert.equal(rev.id, r.revision);
    assert.equal(rev.state, 'committed');
    assert.equal(store.current()!.id, r.revision);
    await assert.rejects(engine.confirm(), /no revision awaits confirmation/);
    assert.deepEqual(await addresses(L.fw, 'wan0'), ['10.4.0.1/24', '192.0.2.2/24']);
  });

  it('rollback goes back to the previous committed revision as a new revision', async () => {
    const r = await engine.rollback({ author: 'test' });
    assert.equal(r.state, 'committed');
    assert.match(store.get(r.revision)!.message, /^rollback to revision 1$/);
    assert.deepEqual(await addresses(L.fw, 'wan0'), ['10.1.0.1/24', '192.0.2.2/24', '2001:db8:1::1/64'].sort());
  });

  it('reconcile on start restores drifted kernel state and closes unfinished revisions', async () => {
    await L.fw.ip('addr', 'del', '10.1.0.1/24', 'dev', 'wan0');
    const stale = store.createRevision({ author: 'x', message: 'left applying', config: doc(['10.5.0.1/24']) });
    const fresh = new Engine({ domains, host: L.host, store, subsystems: [interfacesSubsystem, faultSubsystem()], lockPath: join(L.stateDir, 'apply2.lock') });
    try {
      const out = await fresh.reconcile();
      assert.equal(out.error, undefined);
      assert.equal(out.revision, store.current()!.id);
    } finally {
      fresh.close();
    }
    assert.equal(store.get(stale.id)!.state, 'interrupted');
    assert.deepEqual(await addresses(L.fw, 'wan0'), ['10.1.0.1/24', '192.0.2.2/24', '2001:db8:1::1/64'].sort());
  });

  it('one apply at a time, also across engines (processes) sharing a store', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let entered!: () => void;
    const inside = new Promise<void>((r) => (entered = r));
    const slow = defineSubsystem<null>({ name: 'gate', compile: () => ({ desired: null, issues: [] }), steps: async () => [{ changes: [], run: async () => (entered(), await gate) }] });
    const a = new Engine({ domains, host: L.host, store, subsystems: [interfacesSubsystem, slow] });
    const b = new Engine({ domains, host: L.host, store, subsystems: [interfacesSubsystem] });
    try {
      const first = a.apply({ document: doc(['10.1.0.1/24', '2001:db8:1::1/64'], { description: 'gated' }) }, me);
      await inside;
      await assert.rejects(a.apply({ document: doc([]) }, me), /another apply is in progress/);
      await assert.rejects(b.apply({ document: doc([]) }, me), /another Patronus process is applying a configuration/);
      release();
      assert.equal((await first).state, 'committed');
      assert.equal((await b.apply({ document: doc(['10.1.0.1/24', '2001:db8:1::1/64']) }, me)).state, 'committed');
    } finally {
      release();
      a.close();
      b.close();
    }
  });

  it('an identical document is "No changes": no revision recorded, the kernel untouched', async () => {
    const committed = store.current()!;
    const before = store.count();
    const r = await engine.apply({ document: committed.config }, me);
    assert.equal(r.unchanged, true);
    assert.equal(r.revision, committed.id);
    assert.deepEqual(r.steps, [], 'no subsystem applied');
    assert.equal(store.count(), before);
    // the same document with its keys in another order is the same document
    const reverseKeys = (v: unknown): unknown =>
      Array.isArray(v) ? v.map(reverseKeys) : v && typeof v === 'object' ? Object.fromEntries(Object.entries(v).reverse().map(([k, x]) => [k, reverseKeys(x)])) : v;
    const reordered = reverseKeys(committed.config);
    assert.notEqual(JSON.stringify(reordered), JSON.stringify(committed.config));
    assert.equal((await engine.apply({ document: reordered }, me)).unchanged, true);
    // drift: the same document now has something to do, so it is a real apply (and repairs the kernel)
    const [first] = (committed.config as { interfaces: { addresses: string[] }[] }).interfaces[0]!.addresses;
    await L.fw.ip('addr', 'del', first!, 'dev', 'wan0');
    const repaired = await engine.apply({ document: committed.config }, me);
    assert.equal(repaired.unchanged, undefined);
    assert.equal(repaired.state, 'committed');
    assert.equal(store.count(), before + 1);
    assert.ok((await addresses(L.fw, 'wan0')).includes(first!));
  });

  it('status reads the running revision from the store, whichever process applied', async () => {
    const other = new Engine({ domains, host: L.host, store, subsystems: [interfacesSubsystem], lockPath: join(L.stateDir, 'apply.lock') });
    try {
      const r = await other.apply({ document: doc(['10.1.0.1/24', '2001:db8:1::1/64'], { description: 'from another process' }) }, me);
      assert.equal(engine.status().running, r.revision);
      assert.equal(engine.status().store.ok, true);
    } finally {
      other.close();
    }
  });

  it('removing the section removes only what Patronus added', async () => {
    await L.fw.ip('addr', 'add', '10.77.0.1/24', 'dev', 'wan0'); // someone else's address
    await engine.apply({ document: { interfaces: [{ name: 'wan0' }] } }, me);
    assert.deepEqual(await addresses(L.fw, 'wan0'), ['10.77.0.1/24', '192.0.2.2/24']);
  });

  it('a deadline nobody enforced (its process died, no guard) is rolled back by the next apply instead of 409 forever', async () => {
    const committed = store.current()!.id;
    const dead = new Engine({ domains, host: L.host, store, subsystems: [interfacesSubsystem, faultSubsystem()], confirmGuard: false });
    const r = await dead.apply({ document: doc(['10.6.0.1/24']) }, { ...me, confirmWithin: 0.3 });
    dead.close(); // its timer dies with it, like a process killed -9
    await new Promise((res) => setTimeout(res, 500));
    assert.equal(store.get(r.revision)!.state, 'confirming', 'nobody rolled it back');
    const next = await engine.apply({ document: doc(['10.4.0.1/24'], { description: 'after the dead deadline' }) }, me);
    assert.equal(next.state, 'committed');
    assert.equal(store.get(r.revision)!.state, 'rolled_back');
    assert.match((store.get(r.revision)!.result as { error: string }).error, /rolled back late/);
    assert.equal(store.committedBefore(next.revision)!.id, committed);
    assert.deepEqual(await addresses(L.fw, 'wan0'), ['10.4.0.1/24', '10.77.0.1/24', '192.0.2.2/24']);
  });
});

async function waitFor(cond: () => Promise<boolean>, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 50));
  }
}
