/**
 * A full disk (a small tmpfs as the state dir, filled up): a store write
 * that fails after the kernel changed leaves the kernel on the committed
 * revision (never a revision stuck "applying" while its rules run), an apply
 * on a full disk changes nothing, and `serve` started on a full disk keeps
 * filtering and serving with its store health degraded. Kernel state (nft
 * table, addresses, XDP program) is compared with the committed revision's,
 * and real UDP traffic checks that a source the committed revision drops
 * stays dropped.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Engine, ApplyError } from '../../src/apply/engine.js';
import { interfacesSubsystem } from '../../src/interfaces/subsystem.js';
import { nftSubsystem } from '../../src/nft/subsystem.js';
import { defineSubsystem, type Subsystem } from '../../src/apply/subsystem.js';
import { Store } from '../../src/store/store.js';
import { Host } from '../../src/system/host.js';
import { missing } from '../lib/skip.js';
import { controlLab, type ControlLab } from '../lib/control.js';
import { UdpReceiver, sendUdp, settle, expectAtLeast } from '../lib/udptraffic.js';
import { ServeProcess, kernelState, planChanges, removeServePins, serveHost, smallTmpfs, writeConfig, type KernelState } from '../lib/fault.js';
import { domains } from '../../src/domains.js';

const skip = missing('netns', { cmd: 'nft' }, { cmd: 'mount' });
const PORT = 5555;

/** fills the state dir's file system in the middle of an apply (after the kernel changed) when told to */
function fillerSubsystem(fill: () => void): Subsystem<string | undefined> {
  return defineSubsystem<string | undefined>({
    name: 'filler',
    compile: (ctx) => ({ desired: ctx.config.interfaces[0]?.description, issues: [] }),
    // a step that changes nothing plan would print: it only fills the disk when told to
    steps: async (d) => [{ changes: [], run: async () => void (d === 'fill the disk' && fill()) }],
  });
}

const firewall = (rules: unknown[]) => ({ rules: [{ name: 'allow-udp', direction: 'input', from: 'wan', protocol: 'udp', ports: [PORT], action: 'accept' }, ...rules] });

describe('disk full during an apply (engine, store write fails after the kernel changed)', { timeout: 300_000, skip }, () => {
  let L: ControlLab;
  let fs: Awaited<ReturnType<typeof smallTmpfs>>;
  let store: Store;
  let engine: Engine;
  let filler: string | undefined;
  const me = { author: 'test', message: 'm' };
  const docA = { interfaces: [{ name: 'wan0', zone: 'wan', addresses: ['10.1.0.1/24'] }], firewall: firewall([]) };
  const docB = {
    interfaces: [{ name: 'wan0', zone: 'wan', addresses: ['10.2.0.1/24'], description: 'fill the disk' }],
    firewall: firewall([{ name: 'allow-all', direction: 'input', from: 'wan', action: 'accept' }]),
  };

  before(async () => {
    L = await controlLab();
    fs = await smallTmpfs(3072);
    const stateDir = join(fs.dir, 'engine');
    mkdirSync(stateDir);
    const host = new Host({ netns: L.fw.name, stateDir, bpfRoot: L.bpfRoot });
    store = Store.open(join(stateDir, 'patronus.db'));
    engine = new Engine({ domains, host, store, subsystems: [interfacesSubsystem, nftSubsystem, fillerSubsystem(() => (filler = fs.fill()))] });
  });
  after(async () => {
    engine?.close();
    store?.close();
    await fs?.umount();
    await L?.teardown();
  });

  it('rolls the kernel back to the committed revision and reports the store error', async () => {
    const a = await engine.apply({ document: docA }, me);
    const committed = await kernelState(engine.host, L.fw, 'wan0');
    let err: unknown;
    try {
      await engine.apply({ document: docB }, me);
    } catch (e) {
      err = e;
    }
    assert.ok(err instanceof ApplyError, String(err));
    console.log(`# ${err.message}`);
    assert.equal(err.report.failedStep, 'store');
    assert.match(err.message, /SQLITE_FULL|disk is full/);
    assert.deepEqual(err.report.rollback!.filter((s) => !s.ok), [], 'every subsystem rolled back');
    assert.equal(err.report.rolledBackTo, a.revision);
    // the kernel is exactly the committed revision again
    assert.deepEqual(await kernelState(engine.host, L.fw, 'wan0'), committed);
    assert.equal(store.current()!.id, a.revision);
    assert.equal(store.running(), a.revision);
    const b = store.get(err.report.revision)!;
    assert.ok(b.state === 'applying' || b.state === 'failed', `revision B is ${b.state}`);
    const health = engine.status().store;
    assert.equal(health.ok, false);
    assert.match(health.error!, /SQLITE_FULL|disk is full|bytes free/);

    // space again: the next apply commits and closes the revision left behind
    fs.unfill(filler!);
    const c = await engine.apply({ document: { ...docA, interfaces: [{ name: 'wan0', zone: 'wan', addresses: ['10.3.0.1/24'] }] } }, me);
    assert.equal(c.state, 'committed');
    assert.ok(['interrupted', 'failed'].includes(store.get(err.report.revision)!.state));
    assert.deepEqual(store.unfinished(), []);
    assert.equal(engine.status().store.ok, true);
  });
});

describe('disk full with a running server (apply and start-up)', { timeout: 300_000, skip }, () => {
  let L: ControlLab;
  let fs: Awaited<ReturnType<typeof smallTmpfs>>;
  let host: Host;
  let stateDir: string;
  let rx: UdpReceiver;
  let serve: ServeProcess | undefined;
  let committed: KernelState;
  const docA = {
    interfaces: [{ name: 'wan0', zone: 'wan' }],
    firewall: firewall([]),
    fastpath: { interfaces: [{ name: 'wan0' }], rules: [{ name: 'drop-11', source: '192.0.2.11', protocol: 'udp', action: 'drop' }] },
  };
  /** drops nothing: what must not get in while the disk is full */
  const docB = { ...docA, fastpath: { interfaces: [{ name: 'wan0' }], rules: [{ name: 'count-udp', protocol: 'udp', action: 'count' }] } };

  /** UDP from the allowed .1 and the dropped .11: everything from .1 arrives, nothing from .11 */
  async function assertFiltering(label: string): Promise<void> {
    const before = await rx.counts();
    const sent = await sendUdp(L.peer, '192.0.2.2', PORT, 200, 700, ['192.0.2.1', '192.0.2.11']);
    const got = await settle(rx, expectAtLeast(before, sent, ['192.0.2.1']));
    const d = (k: string) => (got[k] ?? 0) - (before[k] ?? 0);
    assert.equal(d('192.0.2.11'), 0, `${label}: ${d('192.0.2.11')} of ${sent['192.0.2.11']} datagrams the committed revision drops got through`);
    assert.equal(d('192.0.2.1'), sent['192.0.2.1'], `${label}: allowed datagrams lost`);
  }

  before(async () => {
    L = await controlLab();
    await L.peer.ip('addr', 'add', '192.0.2.11/24', 'dev', 'eth0');
    fs = await smallTmpfs(4096);
    stateDir = join(fs.dir, 'serve');
    host = serveHost(L.fw, stateDir);
    rx = await UdpReceiver.start(L.fw, '0.0.0.0', PORT);
    await L.peer.exec('ping', ['-c', '3', '-i', '0.2', '-W', '1', '192.0.2.2']);
  });
  after(async () => {
    rx?.stop();
    await serve?.kill9().catch(() => {});
    if (host) removeServePins(host);
    await fs?.umount();
    await L?.teardown();
  });

  it('an apply on a full disk changes nothing; the server says its store is degraded', async () => {
    serve = await ServeProcess.start({ netns: L.fw, stateDir, config: writeConfig(L.stateDir, 'a.json', docA) });
    committed = await kernelState(host, L.fw, 'wan0');
    assert.ok(committed.xdpProgId, 'the fast path runs');
    await assertFiltering('revision A');
    const filler = fs.fill();
    const r = await serve.call('POST', '/api/v1/config/apply', { config: docB, message: 'B on a full disk' });
    console.log(`# apply on a full disk: ${r.status} ${r.json.message}`);
    assert.equal(r.status, 500);
    assert.match(r.json.message, /SQLITE_FULL|disk is full|ENOSPC/);
    assert.deepEqual(await kernelState(host, L.fw, 'wan0'), committed, 'the kernel still runs the committed revision');
    await assertFiltering('after the failed apply');
    const st = (await serve.call('GET', '/api/v1/status')).json;
    assert.equal(st.store.ok, false);
    assert.equal(st.running, st.committed.id);
    assert.equal(st.pendingConfirmation, null);
    {
      using store = Store.open(join(stateDir, 'patronus.db'));
      assert.ok(store.list().every((x) => x.state !== 'applying' && x.state !== 'confirming' && (x.state !== 'committed' || x.id === st.committed.id)), JSON.stringify(store.list({ withConfig: false })));
    }
    await serve.stop();
    serve = undefined;

    // start-up on the full disk: keeps filtering and serving, degraded
    serve = await ServeProcess.start({ netns: L.fw, stateDir });
    const st2 = (await serve.call('GET', '/api/v1/status')).json;
    console.log(`# started on a full disk: store ${JSON.stringify(st2.store)}`);
    assert.equal(st2.store.ok, false);
    assert.equal(st2.committed.id, st.committed.id);
    // /healthz tells the truth: degraded (503) with the store's error, not "ok"
    const hz = await fetch(`${serve.base}/healthz`);
    const hzBody = (await hz.json()) as { status: string; store: { ok: boolean; error?: string } };
    assert.equal(hz.status, 503, JSON.stringify(hzBody));
    console.log(`# healthz on a full disk: ${JSON.stringify(hzBody)}`);
    assert.equal(hzBody.status, 'degraded');
    assert.equal(hzBody.store.ok, false);
    assert.deepEqual(await kernelState(host, L.fw, 'wan0'), committed, 'the kernel still runs the committed revision');
    await assertFiltering('after a start on a full disk');

    // room again: B applies and the store is healthy
    fs.unfill(filler);
    const ok = await serve.call('POST', '/api/v1/config/apply', { config: docB, message: 'B' });
    assert.equal(ok.status, 200, JSON.stringify(ok.json));
    assert.deepEqual(await planChanges(host, { document: docB }), []);
    assert.equal((await serve.call('GET', '/api/v1/status')).json.store.ok, true);
  });
});
