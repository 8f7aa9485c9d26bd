/**
 * The firewall through the engine (one transaction across subsystems): a
 * committed rule set, a later revision that fails in another subsystem
 * rolled back to exactly the committed nftables table, and a bad document
 * refused with its path before anything runs.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Engine, ApplyError } from '../../src/apply/engine.js';
import { Store } from '../../src/store/store.js';
import { ConfigError } from '../../src/config/issues.js';
import { formatPlan } from '../../src/apply/plan.js';
import { nftSubsystem, listTable } from '../../src/nft/subsystem.js';
import { missing } from '../lib/skip.js';
import { controlLab, faultSubsystem, type ControlLab } from '../lib/control.js';
import { startServer, connectOnce, type FlowServer } from '../lib/flows.js';
import { domains } from '../../src/domains.js';

const document = (rules: unknown[], description?: string) => ({
  interfaces: [{ name: 'wan0', zone: 'wan', ...(description ? { description } : {}) }],
  aliases: [{ name: 'admins', type: 'network', entries: ['192.0.2.0/24'] }],
  firewall: { zones: [{ name: 'wan', input: 'drop', forward: 'drop' }], rules },
});
const allow = (port: number) => ({ name: `admin-${port}`, direction: 'input', from: 'wan', source: ['admins'], protocol: 'tcp', ports: [port], action: 'accept' });

describe('firewall through the engine', { timeout: 300_000, skip: missing('netns', { cmd: 'nft' }) }, () => {
  let L: ControlLab;
  let store: Store;
  let engine: Engine;
  const servers: FlowServer[] = [];
  const me = { author: 'test', message: 'm' };

  before(async () => {
    L = await controlLab();
    store = Store.open(join(L.stateDir, 'patronus.db'));
    engine = new Engine({ domains, host: L.host, store, subsystems: [nftSubsystem, faultSubsystem()] });
    servers.push(await startServer(L.fw, 'tcp', '0.0.0.0', 2222, 'a'), await startServer(L.fw, 'tcp', '0.0.0.0', 2223, 'b'));
  });
  after(async () => {
    for (const s of servers) s.stop();
    engine?.close();
    store?.close();
    await L?.teardown();
  });

  it('commits a rule set; the kernel enforces it', async () => {
    const plan = formatPlan(await engine.plan({ document: document([allow(2222)]) }));
    console.log(`# ${plan.replace(/\n/g, '\n# ')}`);
    assert.match(plan, /nftables:\n  \+ table inet patronus/);
    const r = await engine.apply({ document: document([allow(2222)]) }, me);
    assert.equal(r.state, 'committed');
    assert.equal((await connectOnce(L.peer, 'tcp', '192.0.2.2', 2222)).server, 'a');
    assert.equal((await connectOnce(L.peer, 'tcp', '192.0.2.2', 2223, 600)).ok, false);
  });

  it('a revision that fails in a later subsystem leaves the committed table in place', async () => {
    const committed = await listTable(L.host);
    await assert.rejects(engine.apply({ document: document([allow(2223)], 'fail') }, me), (e: unknown) => e instanceof ApplyError && /injected failure/.test(e.message));
    assert.equal(await listTable(L.host), committed);
    assert.equal((await connectOnce(L.peer, 'tcp', '192.0.2.2', 2222)).server, 'a');
    assert.equal((await connectOnce(L.peer, 'tcp', '192.0.2.2', 2223, 600)).ok, false);
  });

  it('a bad rule is refused with its path before anything changes', async () => {
    const committed = await listTable(L.host);
    await assert.rejects(
      engine.apply({ document: document([{ ...allow(2223), source: ['nobody'] }]) }, me),
      (e: unknown) => e instanceof ConfigError && /firewall\.rules\[0\]\.source\[0\]: unknown alias "nobody"/.test(e.message),
    );
    assert.equal(await listTable(L.host), committed);
  });
});
