/**
 * The `patronus` CLI as an operator runs it (a child process): --direct on
 * the store and a test namespace, and over REST against a server running in
 * this process. Exit codes: 0 ok, 2 rejected configuration, 1 other errors.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import type { FastifyInstance } from 'fastify';
import { Engine } from '../../src/apply/engine.js';
import { Store } from '../../src/store/store.js';
import { buildServer } from '../../src/api/server.js';
import { createMetrics } from '../../src/metrics/metrics.js';
import { missing } from '../lib/skip.js';
import { controlLab, addresses, type ControlLab } from '../lib/control.js';

const skip = missing('netns');
const cli = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

describe('patronus CLI', { skip }, () => {
  let L: ControlLab;
  const file = (name: string, text: string) => {
    const p = join(L.stateDir, name);
    writeFileSync(p, text);
    return p;
  };
  const direct = (...args: string[]) => execa('node', [cli, '--direct', '--netns', L.fw.name, '--state-dir', join(L.stateDir, 'direct'), ...args], { reject: false });

  before(async () => (L = await controlLab()));
  after(async () => L?.teardown());

  it('validate lists every problem with its path and exits 2', async () => {
    const bad = file('bad.yaml', 'interfaces:\n  - name: wan0\n    addresses: [10.0.0.1/99]\n    mtu: 1\n');
    const r = await direct('validate', bad);
    assert.equal(r.exitCode, 2, r.stderr);
    assert.match(r.stderr, /interfaces\[0\]\.addresses\[0\]: "10\.0\.0\.1\/99": prefix length must be 0-32/);
    assert.match(r.stderr, /interfaces\[0\]\.mtu: /);
    const syntax = await direct('validate', file('syntax.yaml', 'interfaces: [\n'));
    assert.equal(syntax.exitCode, 2);
    assert.match(syntax.stderr, /line \d+, column \d+: invalid YAML/);
  });

  it('--direct: apply, plan, revisions, rollback', async () => {
    const one = file('one.yaml', 'interfaces:\n  - name: wan0\n    zone: wan\n    addresses: [10.50.0.1/24]\nfirewall:\n  enabled: false\n');
    const two = file('two.json', JSON.stringify({ interfaces: [{ name: 'wan0', zone: 'wan', addresses: ['10.60.0.1/24'] }], firewall: { enabled: false } }));
    const a = await direct('apply', one, '-m', 'first');
    assert.equal(a.exitCode, 0, a.stderr);
    assert.match(a.stdout, /revision 1: committed/);
    assert.match(a.stderr, /applying interfaces \(\d+\/\d+\) \.\.\. ok/);
    assert.deepEqual(await addresses(L.fw, 'wan0'), ['10.50.0.1/24', '192.0.2.2/24']);
    const plan = await direct('--json', 'plan', two);
    assert.equal(plan.exitCode, 0, plan.stderr);
    assert.deepEqual(JSON.parse(plan.stdout).summary, { add: 1, remove: 1, change: 0, reload: 0, restart: 0, start: 0, stop: 0 });
    assert.equal((await direct('apply', two, '-m', 'second')).exitCode, 0);
    assert.deepEqual(await addresses(L.fw, 'wan0'), ['10.60.0.1/24', '192.0.2.2/24']);
    const rb = await direct('rollback');
    assert.equal(rb.exitCode, 0, rb.stderr);
    assert.deepEqual(await addresses(L.fw, 'wan0'), ['10.50.0.1/24', '192.0.2.2/24']);
    const revs = JSON.parse((await direct('--json', 'revisions')).stdout) as { id: number; state: string; message: string }[];
    assert.deepEqual(revs.map((r) => [r.id, r.state, r.message]), [
      [3, 'committed', 'rollback to revision 1'],
      [2, 'committed', 'second'],
      [1, 'committed', 'first'],
    ]);
    const table = await direct('revisions');
    assert.match(table.stdout, /^id\s+state\s+created\s+author\s+message\n--/);
  });

  describe('over REST', () => {
    let store: Store;
    let engine: Engine;
    let app: FastifyInstance;
    let base: string;
    let token: string;
    before(async () => {
      store = Store.open(join(L.stateDir, 'rest', 'patronus.db'));
      engine = new Engine({ host: L.host, store });
      await engine.reconcile({ document: { interfaces: [{ name: 'wan0', zone: 'wan' }], firewall: { rules: [{ name: 'allow-ping', direction: 'input', from: 'wan', protocol: 'icmp', action: 'accept' }] } } });
      token = store.addToken('cli');
      app = await buildServer({ engine, store, metrics: createMetrics(engine) });
      await app.listen({ host: '127.0.0.1', port: 0 });
      base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
    });
    after(async () => {
      await app?.close();
      engine?.close();
      store?.close();
    });
    const rest = (...args: string[]) => execa('node', [cli, '--server', base, '--token', token, ...args], { reject: false, env: { PATRONUS_STATE_DIR: join(L.stateDir, 'none') } });

    it('status and rules with counters', async () => {
      await L.peer.exec('ping', ['-c', '2', '-i', '0.05', '-W', '1', '192.0.2.2']);
      const s = await rest('status');
      assert.equal(s.exitCode, 0, s.stderr);
      assert.match(s.stdout, /committed\s+revision 1 by patronus/);
      const r = await rest('--json', 'rules');
      const rules = JSON.parse(r.stdout).rules as { subsystem: string; rule: string; packets: number }[];
      assert.equal(rules.find((x) => x.rule === 'rule:allow-ping')!.packets, 1);
      const human = await rest('rules');
      assert.match(human.stdout, /nftables\s+rule:allow-ping\s+\S+\s+1\s+84 B/);
    });

    it('a rejected config exits 2 with the server\'s issues; a bad token exits 1', async () => {
      const r = await rest('apply', file('bad2.yaml', 'aliases:\n  - { name: a, type: network, entries: [b] }\n  - { name: b, type: network, entries: [a] }\n'));
      assert.equal(r.exitCode, 2, r.stderr);
      assert.match(r.stderr, /aliases\[\d\]\.entries\[0\]: alias cycle/);
      const t = await execa('node', [cli, '--server', base, '--token', 'pat_wrong', 'status'], { reject: false, env: { PATRONUS_STATE_DIR: join(L.stateDir, 'none') } });
      assert.equal(t.exitCode, 1);
      assert.match(t.stderr, /HTTP 401: invalid token/);
      assert.equal(store.count(), 1);
    });
  });
});
