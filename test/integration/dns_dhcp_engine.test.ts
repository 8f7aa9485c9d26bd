/**
 * DNS and DHCP through the real apply engine, together with the interfaces
 * and nftables subsystems, in a namespace whose firewall drops input by
 * default: the openings the services declare are what lets a client get a
 * lease and resolve names, and a daemon that fails to start rolls the whole
 * revision back (firewall included) with the daemon's log in the error.
 *
 *   client (DHCP) --eth0/lan0-- gw (10.77.0.1, firewall input drop)
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Lab, type Netns } from '../lib/netns.js';
import { missing } from '../lib/skip.js';
import { Host } from '../../src/system/host.js';
import { Store } from '../../src/store/store.js';
import { Engine, ApplyError } from '../../src/apply/engine.js';
import { interfacesSubsystem } from '../../src/interfaces/subsystem.js';
import { nftSubsystem } from '../../src/nft/subsystem.js';
import { unboundSubsystem } from '../../src/services/unbound/subsystem.js';
import { keaSubsystem } from '../../src/services/kea/subsystem.js';
import { domains } from '../../src/domains.js';
import { firstOutput } from '../lib/children.js';

const skip = missing('netns', { cmd: 'nft' }, { cmd: 'unbound' }, { cmd: 'kea-dhcp4' }, { cmd: 'dhclient' }, { cmd: 'dig' });

describe('dns and dhcp through the engine behind a default-drop firewall', { timeout: 300_000, skip }, () => {
  const lab = new Lab();
  let gw: Netns, client: Netns;
  let dir: string;
  let host: Host;
  let store: Store;
  let engine: Engine;
  const me = { author: 'test', message: 'dns+dhcp' };

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'pt-dnsdhcp-engine-'));
    gw = await lab.ns('gw');
    client = await lab.ns('cl');
    await lab.veth({ ns: gw, dev: 'lan0' }, { ns: client, dev: 'eth0' });
    host = new Host({ netns: gw.name, stateDir: path.join(dir, 'state') });
    store = Store.open(path.join(dir, 'patronus.db'));
    engine = new Engine({ domains, host, store, subsystems: [interfacesSubsystem, nftSubsystem, unboundSubsystem, keaSubsystem] });
  });

  after(async () => {
    try {
      engine?.close();
      store?.close();
      for (const s of [keaSubsystem, unboundSubsystem, nftSubsystem]) await s.teardown?.(host).catch(() => undefined);
    } finally {
      await lab.teardown();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  const doc = (dns: Record<string, unknown> = {}) => ({
    interfaces: [{ name: 'lan0', zone: 'lan', addresses: ['10.77.0.1/24'] }],
    firewall: { enabled: true, defaults: { input: 'drop', forward: 'drop' } },
    dns: {
      enabled: true,
      mode: 'recursive',
      dnssec: { enabled: false },
      listen: { interfaces: ['lan0'], addresses: ['127.0.0.1'] },
      records: [{ type: 'A', name: 'gw.lan.example', address: '10.77.0.1' }],
      ...dns,
    },
    dhcp: {
      enabled: true,
      subnets: [{ subnet: '10.77.0.0/24', interface: 'lan0', pools: ['10.77.0.100-10.77.0.120'], router: '10.77.0.1', dnsServers: ['10.77.0.1'], domainName: 'lan.example' }],
    },
  });

  const digShort = async (name: string, port = 53) =>
    (await client.exec('dig', ['+time=2', '+tries=3', '+short', '-p', String(port), '@10.77.0.1', name], { reject: false })).stdout.trim();

  it('a client gets a lease and resolves through the openings', async () => {
    const r = await engine.apply({ document: doc() }, me);
    assert.equal(r.state, 'committed');

    // exactly the declared openings are in the input chain
    const chain = (await gw.exec('nft', ['list', 'chain', 'inet', 'patronus', 'input'])).stdout;
    const openings = chain.split('\n').filter((l) => /opening:/.test(l));
    assert.equal(openings.length, 3, chain);
    assert.ok(openings.some((l) => /iifname "lan0".*udp.*dport 53 .*accept/.test(l)), chain);
    assert.ok(openings.some((l) => /iifname "lan0".*tcp.*dport 53 .*accept/.test(l)), chain);
    assert.ok(openings.some((l) => /iifname "lan0".*udp.*dport 67 .*accept/.test(l)), chain);

    // DHCP: the lease carries the gateway as DNS server
    const f = (ext: string) => path.join(dir, `cl.${ext}`);
    writeFileSync(f('conf'), 'timeout 20;\ninitial-interval 1;\nrequest subnet-mask, routers, domain-name, domain-name-servers;\n');
    writeFileSync(
      f('sh'),
      `#!/bin/sh\nenv | grep -E '^new_' > "${f('env')}.$reason"\ncase "$reason" in BOUND|RENEW|REBIND|REBOOT) ip addr add "$new_ip_address/$new_subnet_mask" dev "$interface" ;; esac\nexit 0\n`,
      { mode: 0o755 },
    );
    await client.nsenter('dhclient', ['-1', '-cf', f('conf'), '-lf', f('leases'), '-pf', f('pid'), '-sf', f('sh'), 'eth0'], { timeout: 30_000 });
    const env = readFileSync(`${f('env')}.BOUND`, 'utf8');
    assert.match(env, /^new_ip_address='?10\.77\.0\.1[0-2]\d'?$/m);
    assert.match(env, /^new_domain_name_servers='?10\.77\.0\.1'?$/m);

    // DNS through the firewall, from the address DHCP gave
    assert.equal(await digShort('gw.lan.example'), '10.77.0.1');

    // the opening is what lets it through: without the udp/53 rule the query is dropped
    const listed = (await gw.exec('nft', ['-a', 'list', 'chain', 'inet', 'patronus', 'input'])).stdout;
    const handle = /opening:unbound-udp-53.*# handle (\d+)/.exec(listed)?.[1];
    assert.ok(handle, listed);
    await gw.exec('nft', ['delete', 'rule', 'inet', 'patronus', 'input', 'handle', handle]);
    assert.notEqual(await digShort('gw.lan.example'), '10.77.0.1');
    // and applying the committed configuration again puts it back
    await engine.apply({ document: doc() }, me);
    assert.equal(await digShort('gw.lan.example'), '10.77.0.1');
  });

  it('a daemon that fails to start rolls the whole revision back, with its log', async () => {
    const committed = store.current()!.id;
    // another process holds the port the new revision moves DNS to
    const squatter = gw.spawn(process.execPath, ['-e', 'require("net").createServer().listen(5399, "10.77.0.1", () => console.log("ok")); setTimeout(() => {}, 60000)']);
    try {
      await firstOutput(squatter, 'a process holding 10.77.0.1:5399');
      let err: unknown;
      try {
        await engine.apply({ document: doc({ listen: { interfaces: ['lan0'], addresses: ['127.0.0.1'], port: 5399 }, records: [{ type: 'A', name: 'gw.lan.example', address: '10.77.0.99' }] }) }, me);
      } catch (e) {
        err = e;
      }
      assert.ok(err instanceof ApplyError, String(err));
      assert.equal(err.report.failedStep, 'unbound');
      assert.match(err.message, /unbound.*(bind|already in use)/is, err.message);
      assert.ok(err.report.rollback!.every((s) => s.ok), JSON.stringify(err.report.rollback));
      assert.equal(store.current()!.id, committed);
    } finally {
      squatter.kill('SIGKILL');
    }
    // the committed revision runs again: old port, old record, old openings
    assert.equal(await digShort('gw.lan.example'), '10.77.0.1');
    const chain = (await gw.exec('nft', ['list', 'chain', 'inet', 'patronus', 'input'])).stdout;
    assert.ok(!/dport 5399/.test(chain), chain);
  });
});
