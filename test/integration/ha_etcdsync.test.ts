/**
 * HA configuration sync through etcd (ha.sync.transport: etcd): a 1-member
 * etcd on loopback, two nodes (engines in their own namespaces, linked by a
 * veth). A firewall change on the primary reaches the secondary's kernel
 * (nft) as a revision by ha-sync; a tampered document in the key is refused
 * and recorded; with etcd stopped both keep their rulesets and the primary
 * still applies; once etcd is back the secondary converges.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Lab, type Netns } from '../lib/netns.js';
import { missing } from '../lib/skip.js';
import { EtcdCluster } from '../lib/etcd.js';
import { Host } from '../../src/system/host.js';
import { Engine } from '../../src/apply/engine.js';
import { Store } from '../../src/store/store.js';
import { nftSubsystem } from '../../src/nft/subsystem.js';
import { keepalivedSubsystem } from '../../src/services/keepalived/subsystem.js';
import { HaEtcdSync } from '../../src/ha/etcd-sync.js';
import { etcdClient } from '../../src/fleet/connect.js';
import { buildServer } from '../../src/api/server.js';
import { createMetrics } from '../../src/metrics/metrics.js';
import { domains } from '../../src/domains.js';

const skip = missing('netns', { cmd: 'etcd' }, { cmd: 'nft' });

async function waitUntil(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 30_000): Promise<void> {
  const t0 = Date.now();
  for (;;) {
    if (await check()) return;
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('HA sync through etcd', { timeout: 300_000, skip }, () => {
  const lab = new Lab();
  let etcd: EtcdCluster;
  let dir: string;
  const nodes: { ns: Netns; host: Host; store: Store; engine: Engine; sync: HaEtcdSync }[] = [];

  function doc(n: 0 | 1, rules: string[]) {
    return {
      interfaces: [{ name: 'eth0', zone: 'lan' }],
      firewall: { rules: rules.map((name) => ({ name, direction: 'input', from: 'lan', protocol: 'icmp', action: 'accept' })) },
      ha: { role: n === 0 ? 'primary' : 'secondary', sync: { transport: 'etcd', etcd: { url: etcd.fleetUrl, pair: 'fw' }, intervalSeconds: 5 } },
    };
  }
  const ruleset = async (i: number) => (await nodes[i]!.ns.exec('nft', ['list', 'ruleset'])).stdout;
  // the kernel has a synced rule before the store commits its revision: wait for both
  const committedWith = async (i: number, rule: string, without?: string) => {
    const cur = nodes[i]!.store.current();
    const names: string[] = ((cur?.config as any)?.firewall?.rules ?? []).map((r: { name: string }) => r.name);
    if (!names.includes(rule) || (without !== undefined && names.includes(without))) return false;
    const r = await ruleset(i);
    return r.includes(rule) && (without === undefined || !r.includes(without));
  };

  before(async () => {
    etcd = await EtcdCluster.start({ members: 1 });
    const n1 = await lab.ns('he1');
    const n2 = await lab.ns('he2');
    await lab.veth({ ns: n1, dev: 'eth0', address: '10.50.0.1/24' }, { ns: n2, dev: 'eth0', address: '10.50.0.2/24' });
    dir = mkdtempSync(path.join(os.tmpdir(), 'pt-haetcd-'));
    for (const ns of [n1, n2]) {
      const host = new Host({ netns: ns.name, stateDir: path.join(dir, ns.name) });
      const store = Store.open(path.join(host.stateDir, 'patronus.db'));
      const engine = new Engine({ domains, host, store, subsystems: [nftSubsystem, keepalivedSubsystem] });
      nodes.push({ ns, host, store, engine, sync: new HaEtcdSync(store, { retryMs: 500 }) });
    }
  });

  after(async () => {
    for (const n of nodes) {
      await n.sync.detach().catch(() => undefined);
      for (const s of [keepalivedSubsystem, nftSubsystem]) await s.teardown?.(n.host).catch((e) => console.error(`# teardown ${s.name} ${n.host.where}: ${e}`));
      n.engine.close();
      n.store.close();
    }
    await lab.teardown();
    await etcd?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('a primary change reaches the secondary; etcd down changes nothing; the secondary converges when it is back', async () => {
    // each node's own document first (the secondary says role: secondary once)
    assert.equal((await nodes[1]!.engine.apply({ document: doc(1, []) }, { author: 'test', message: 'secondary' })).state, 'committed');
    assert.equal((await nodes[0]!.engine.apply({ document: doc(0, ['ping-a']) }, { author: 'test', message: 'primary' })).state, 'committed');
    for (const n of nodes) n.sync.attach(n.engine);

    await waitUntil('ping-a committed on the secondary', () => committedWith(1, 'ping-a'));
    const synced = nodes[1]!.store.current()!;
    assert.equal(synced.author, 'ha-sync');
    assert.match(synced.message, /^ha-sync: primary revision \d+ sha256:[0-9a-f]{64}$/);
    assert.equal((synced.config as any).ha.role, 'secondary', "the secondary's local ha fields stay");

    // a change on the primary
    assert.equal((await nodes[0]!.engine.apply({ document: doc(0, ['ping-a', 'ping-b']) }, { author: 'test', message: 'b' })).state, 'committed');
    await waitUntil('ping-b committed on the secondary', () => committedWith(1, 'ping-b'));
    const inSyncRev = nodes[1]!.store.current()!.id;
    // nothing applied when the hash equals what runs (a re-read after intervalSeconds)
    await waitUntil('a secondary report in sync', () => nodes[1]!.sync.status()?.inSync === true && !nodes[1]!.sync.status()?.applied);
    assert.equal(nodes[1]!.store.current()!.id, inSyncRev);

    // a tampered document in the key is refused and recorded, then the primary writes its own again
    const c = etcdClient({ url: etcd.fleetUrl });
    try {
      const pub = JSON.parse((await c.get('/patronus/ha/fw/document').string())!);
      pub.part.firewall.rules.push({ name: 'evil', direction: 'input', from: 'lan', action: 'accept' });
      await c.put('/patronus/ha/fw/document').value(JSON.stringify(pub));
    } finally {
      c.close();
    }
    await waitUntil('the secondary to refuse the tampered document', () => /refused primary revision \d+: its content hashes to/.test(nodes[1]!.sync.status()?.error ?? ''));
    assert.equal(nodes[1]!.store.current()!.id, inSyncRev, 'nothing applied');
    assert.ok(!(await ruleset(1)).includes('evil'));
    await waitUntil('the primary to republish (secondary in sync again)', () => nodes[1]!.sync.status()?.inSync === true, 20_000);

    // etcd stopped: both keep filtering, the primary still applies
    await etcd.kill('m1');
    const revs = nodes.map((n) => n.store.current()!.id);
    assert.equal((await nodes[0]!.engine.apply({ document: doc(0, ['ping-a', 'ping-c']) }, { author: 'test', message: 'c' })).state, 'committed');
    await waitUntil('the primary to report etcd unreachable', () => !!nodes[0]!.sync.status()?.error);
    await waitUntil('the secondary to report etcd unreachable', () => !!nodes[1]!.sync.status()?.error, 40_000);
    assert.equal(nodes[1]!.store.current()!.id, revs[1], 'the secondary runs the same revision');
    const r1 = await ruleset(1);
    assert.ok(r1.includes('ping-a') && r1.includes('ping-b'), 'the secondary keeps filtering with its rules');
    assert.ok((await ruleset(0)).includes('ping-c'));

    // etcd back: the secondary converges
    await etcd.restart('m1');
    await waitUntil('ping-c committed on the secondary', () => committedWith(1, 'ping-c', 'ping-b'), 40_000);
    // what operators see: the secondary's last sync report on its API
    const app = await buildServer({ engine: nodes[1]!.engine, store: nodes[1]!.store, metrics: createMetrics(nodes[1]!.engine, { processMetrics: false }), haEtcdSync: nodes[1]!.sync });
    try {
      const res = await app.inject({ method: 'GET', url: '/api/v1/ha/sync', headers: { authorization: `Bearer ${nodes[1]!.store.addToken('viewer')}` } });
      assert.equal(res.statusCode, 200, res.body);
      assert.equal(res.json().role, 'secondary');
      assert.equal(res.json().key, '/patronus/ha/fw/document');
    } finally {
      await app.close();
    }
    console.log(`# secondary revisions: ${nodes[1]!.store.list({}).length}, last by ${nodes[1]!.store.current()!.author}`);
  });

  it('transport etcd without etcd settings is refused with a path', async () => {
    const bad = { ha: { role: 'primary', sync: { transport: 'etcd' } } };
    await assert.rejects(nodes[0]!.engine.apply({ document: bad }, { author: 'test', message: 'bad' }), /ha\.sync\.etcd/);
  });
});
