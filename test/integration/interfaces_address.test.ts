/**
 * Issue 11 item 14: changing an interface address within its subnet
 * (10.92.0.1/24 -> 10.92.0.5/24) must leave the interface with the new
 * address. The kernel deletes the secondaries of a subnet with its primary,
 * so "add .5, delete .1" alone leaves no IPv4 address at all.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { interfacesSubsystem, type InterfaceDesired } from '../../src/interfaces/subsystem.js';
import { Host } from '../../src/system/host.js';
import { Lab, type Netns } from '../lib/netns.js';
import { missing } from '../lib/skip.js';

describe('interface addresses changed within their subnet', { timeout: 300_000, skip: missing('netns') }, () => {
  const lab = new Lab();
  let ns: Netns;
  let peer: Netns;
  let host: Host;
  const dir = mkdtempSync(path.join(tmpdir(), 'pt-ifaddr-'));

  before(async () => {
    ns = await lab.ns('gw');
    peer = await lab.ns('peer');
    await lab.veth({ ns, dev: 'e0' }, { ns: peer, dev: 'p0', address: '10.92.0.100/24' });
    host = new Host({ netns: ns.name, stateDir: path.join(dir, 'state') });
  });
  after(async () => {
    await lab.teardown();
    rmSync(dir, { recursive: true, force: true });
  });

  const want = (addresses: string[]): InterfaceDesired[] => [{ name: 'e0', index: 0, addresses }];
  const v4 = async () => {
    const { stdout } = await ns.ip('-j', '-4', 'addr', 'show', 'dev', 'e0');
    return ((JSON.parse(stdout) as { addr_info: { local: string; prefixlen: number; secondary?: boolean }[] }[])[0]?.addr_info ?? []).map((a) => `${a.local}/${a.prefixlen}${a.secondary ? ' secondary' : ''}`);
  };
  const promote = async () => (await ns.exec('sysctl', ['-n', 'net.ipv4.conf.e0.promote_secondaries'])).stdout.trim();
  const reaches = async (from: string) => (await peer.exec('ping', ['-c', '3', '-i', '0.2', '-W', '2', from], { reject: false })).exitCode === 0; // one answer of three

  it('10.92.0.1/24 -> 10.92.0.5/24 leaves 10.92.0.5/24 (and the subnet reachable)', async () => {
    await interfacesSubsystem.apply(want(['10.92.0.1/24']), host);
    assert.deepEqual(await v4(), ['10.92.0.1/24']);
    const plan = await interfacesSubsystem.plan(want(['10.92.0.5/24']), host);
    assert.deepEqual(
      plan.map((c) => `${c.action} ${c.object}`),
      ['add address 10.92.0.5/24 on e0', 'remove address 10.92.0.1/24 on e0'],
    );
    assert.match(plan[1]!.detail ?? '', /10\.92\.0\.5\/24 in the same subnet kept/);
    await interfacesSubsystem.apply(want(['10.92.0.5/24']), host);
    assert.deepEqual(await v4(), ['10.92.0.5/24']);
    assert.equal(await promote(), '0', 'promote_secondaries is set back');
    assert.equal(await reaches('10.92.0.5'), true);
    const routes = (await ns.ip('-4', 'route', 'show', 'dev', 'e0')).stdout;
    assert.match(routes, /10\.92\.0\.0\/24 .*src 10\.92\.0\.5/);
  });

  it('a primary with a secondary: replacing the primary keeps the secondary and the new address', async () => {
    await interfacesSubsystem.apply(want(['10.92.0.5/24', '10.92.0.6/24']), host);
    assert.deepEqual(await v4(), ['10.92.0.5/24', '10.92.0.6/24 secondary']);
    await interfacesSubsystem.apply(want(['10.92.0.6/24', '10.92.0.7/24']), host);
    assert.deepEqual((await v4()).map((a) => a.split(' ')[0]).sort(), ['10.92.0.6/24', '10.92.0.7/24']);
    assert.equal(await promote(), '0');
  });

  it("an address in the subnet set by someone else survives removing Patronus' primary", async () => {
    await interfacesSubsystem.apply(want(['10.92.0.8/24']), host);
    await interfacesSubsystem.apply([{ name: 'e0', index: 0 }], host); // start clean: Patronus owns nothing
    assert.deepEqual(await v4(), []);
    await interfacesSubsystem.apply(want(['10.92.0.9/24']), host);
    await ns.ip('addr', 'add', '10.92.0.50/24', 'dev', 'e0'); // the operator's own, a secondary
    await interfacesSubsystem.apply([{ name: 'e0', index: 0 }], host);
    assert.deepEqual(await v4(), ['10.92.0.50/24']);
  });

  it('teardown removes what Patronus added', async () => {
    await ns.ip('addr', 'flush', 'dev', 'e0');
    await interfacesSubsystem.apply(want(['10.92.0.1/24']), host);
    await interfacesSubsystem.teardown!(host);
    assert.deepEqual(await v4(), []);
  });
});
