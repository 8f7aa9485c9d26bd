/**
 * Routing behind Patronus' own firewall, through the engine: the default
 * firewall drops new connections to the gateway, and FRR's openings (OSPF,
 * IP protocol 89, and BGP 179/tcp, on eth1 only) are what let the
 * adjacency and the session form. The opening rules' counters prove the
 * traffic went through them.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Lab, type Netns } from '../lib/netns.js';
import { missing } from '../lib/skip.js';
import { Host } from '../../src/system/host.js';
import { Engine } from '../../src/apply/engine.js';
import { Store } from '../../src/store/store.js';
import { nftSubsystem } from '../../src/nft/subsystem.js';
import { frrSubsystem } from '../../src/services/frr/subsystem.js';
import { frrBinDir } from '../../src/services/frr/module.js';
import { domains } from '../../src/domains.js';

const skip = missing('netns', { cmd: 'nft' }, { cmd: 'vtysh' }, { file: path.join(frrBinDir(), 'bgpd') });

function doc(n: 1 | 2) {
  const peer = n === 1 ? 2 : 1;
  return {
    interfaces: [{ name: 'eth1', zone: 'lan' }],
    // an empty firewall section: its default drops new connections to the gateway
    firewall: {},
    routing: {
      routerId: `10.255.1.${n}`,
      static: [{ prefix: `192.168.${230 + n}.0/24`, blackhole: true }],
      ospf: { areas: [{ id: 0, interfaces: [{ name: 'eth1', network: 'point-to-point', helloInterval: 1, deadInterval: 3 }, { name: 'lo', passive: true }] }], lsaTimers: { minIntervalMs: 0, minArrivalMs: 0 } },
      bgp: { asn: 65100 + n, neighbors: [{ address: `10.9.1.${peer}`, remoteAs: 65100 + peer, interface: 'eth1', keepalive: 1, hold: 3, connectRetry: 1 }], networks: [`192.168.${230 + n}.0/24`] },
    },
  };
}

describe('routing through the firewall openings', { timeout: 300_000, skip }, () => {
  const lab = new Lab();
  const nodes: { ns: Netns; host: Host; store: Store; engine: Engine }[] = [];
  let dir: string;

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'pt-rfw-'));
    const a = await lab.ns('fa');
    const b = await lab.ns('fb');
    await lab.veth({ ns: a, dev: 'eth1', address: '10.9.1.1/24' }, { ns: b, dev: 'eth1', address: '10.9.1.2/24' });
    for (const [i, ns] of [a, b].entries()) {
      await ns.ip('addr', 'add', `10.255.1.${i + 1}/32`, 'dev', 'lo');
      const host = new Host({ netns: ns.name, stateDir: path.join(dir, ns.name) });
      const store = Store.open(path.join(dir, ns.name, 'patronus.db'));
      nodes.push({ ns, host, store, engine: new Engine({ domains, host, store, subsystems: [nftSubsystem, frrSubsystem] }) });
    }
  });

  after(async () => {
    for (const n of nodes) {
      n.engine.close();
      n.store.close();
      await frrSubsystem.teardown?.(n.host).catch(() => undefined);
      await nftSubsystem.teardown?.(n.host).catch(() => undefined);
    }
    await lab.teardown();
    rmSync(dir, { recursive: true, force: true });
  });

  it('OSPF and BGP form through the default-drop input policy, via their openings on eth1', async () => {
    await Promise.all(nodes.map((n, i) => n.engine.apply({ document: doc((i + 1) as 1 | 2) }, { author: 'test', message: 'routing behind the firewall' })));
    const [, b] = nodes as [(typeof nodes)[0], (typeof nodes)[0]];
    const t0 = Date.now();
    for (;;) {
      const { stdout } = await b.ns.ip('-j', 'route', 'show');
      const routes = JSON.parse(stdout) as { dst: string; protocol?: string }[];
      if (routes.some((r) => r.dst === '10.255.1.1' && r.protocol === 'ospf') && routes.some((r) => r.dst === '192.168.231.0/24' && r.protocol === 'bgp')) break;
      if (Date.now() - t0 > 60_000) throw new Error(`routes did not arrive through the firewall within 60 s: ${stdout}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    console.log(`# OSPF and BGP routes through the firewall in ${Date.now() - t0} ms`);

    const { stdout: ruleset } = await b.ns.nsenter('nft', ['list', 'table', 'inet', 'patronus']);
    assert.match(ruleset, /iifname "eth1" meta l4proto (89|ospf(igp)?) counter packets [1-9]\d* .*frr-ospf/, ruleset);
    // the BGP session's SYN went through the opening of whichever side did not initiate it
    const rulesets = await Promise.all(nodes.map(async (n) => (await n.ns.nsenter('nft', ['list', 'table', 'inet', 'patronus'])).stdout));
    assert.ok(
      rulesets.some((r) => /iifname "eth1" (meta l4proto tcp th|tcp) dport 179 counter packets [1-9]\d* .*frr-tcp-179/.test(r)),
      rulesets.join('\n'),
    );
  });
});
