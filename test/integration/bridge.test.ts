/**
 * A managed LAN bridge through the engine, with real traffic:
 *
 *   c1 (10.62.1.10, web server) --lp1--\
 *                                       lanbr (10.62.1.1/24) gw --wan0-- out (203.0.113.2)
 *   c2 (10.62.1.11)             --lp2--/
 *
 * br_netfilter is on (every namespace here starts with it), so bridged frames
 * cross the inet forward chain as lanbr -> lanbr; the firewall's default
 * forward policy is drop. Port forward wan0:8080 -> 10.62.1.10:80 with
 * hairpin, tried from the outside, from c2, and from its own target c1.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Lab, type Netns } from '../lib/netns.js';
import { missing } from '../lib/skip.js';
import { startServer, connectOnce, type FlowServer } from '../lib/flows.js';
import { Host } from '../../src/system/host.js';
import { Engine } from '../../src/apply/engine.js';
import { Store } from '../../src/store/store.js';
import { ConfigError, formatIssue } from '../../src/config/issues.js';
import { formatPlan } from '../../src/apply/plan.js';
import { linksSubsystem, probeLinkKind } from '../../src/interfaces/links.js';
import { interfacesSubsystem } from '../../src/interfaces/subsystem.js';
import { routesSubsystem } from '../../src/routing/routes.js';
import { sysctlSubsystem } from '../../src/routing/sysctl.js';
import { nftSubsystem } from '../../src/nft/subsystem.js';
import { domains } from '../../src/domains.js';

const bridge = (extra: Record<string, unknown> = {}) => ({ name: 'lanbr', kind: 'bridge', zone: 'lan', ports: ['lp1', 'lp2'], addresses: ['10.62.1.1/24'], ...extra });
const wan = { name: 'wan0', zone: 'wan', addresses: ['203.0.113.1/24'] };
const firewall = {
  // default forward drop for both zones: only the bridge rule lets LAN <-> LAN through
  zones: [
    { name: 'lan', input: 'accept' },
    { name: 'wan', input: 'drop' },
  ],
  portForwards: [{ name: 'web', interface: 'wan0', protocol: 'tcp', port: 8080, target: '10.62.1.10', targetPort: 80 }],
  outboundNat: [{ name: 'lan-out', interface: 'wan0', source: ['10.62.1.0/24'] }],
};

describe('a managed LAN bridge: LAN <-> LAN under default-drop, hairpin from the target, bad input', { timeout: 300_000, skip: missing('netns', { cmd: 'nft' }) }, () => {
  const lab = new Lab();
  let c1: Netns, c2: Netns, gw: Netns, out: Netns;
  let host: Host;
  let stateDir: string;
  let store: Store;
  let engine: Engine;
  const servers: FlowServer[] = [];
  const me = { author: 'test', message: 'bridge' };
  const link = async (dev: string) => (JSON.parse((await gw.ip('-d', '-j', 'link', 'show', 'dev', dev)).stdout) as { master?: string; flags: string[]; linkinfo?: { info_kind?: string; info_data?: { stp_state?: number }; info_slave_data?: { hairpin?: boolean } } }[])[0]!;
  const counter = async (key: string) => (await nftSubsystem.readCounters(host)).find((c) => c.key === key)?.packets ?? 0;

  before(async () => {
    stateDir = mkdtempSync(join(tmpdir(), 'pt-bridge-'));
    [c1, c2, gw, out] = [await lab.ns('c1'), await lab.ns('c2'), await lab.ns('gw'), await lab.ns('out')];
    await lab.veth({ ns: c1, dev: 'eth0', address: '10.62.1.10/24' }, { ns: gw, dev: 'lp1' });
    await lab.veth({ ns: c2, dev: 'eth0', address: '10.62.1.11/24' }, { ns: gw, dev: 'lp2' });
    await lab.veth({ ns: gw, dev: 'wan0' }, { ns: out, dev: 'eth0', address: '203.0.113.2/24' });
    for (const c of [c1, c2]) await c.ip('route', 'add', 'default', 'via', '10.62.1.1');
    host = new Host({ netns: gw.name, stateDir });
    store = Store.open(join(stateDir, 'patronus.db'));
    engine = new Engine({ domains, host, store, subsystems: [linksSubsystem, interfacesSubsystem, routesSubsystem, nftSubsystem, sysctlSubsystem] });
    servers.push(await startServer(c1, 'tcp', '0.0.0.0', 80, 'c1'));
    servers.push(await startServer(c1, 'tcp', '0.0.0.0', 81, 'c1-81'));
  });

  after(async () => {
    for (const s of servers) s.stop();
    engine?.close();
    store?.close();
    await lab.teardown();
    rmSync(stateDir, { recursive: true, force: true });
  });

  it('creates the bridge with its ports (plan first); bridged LAN <-> LAN passes the default-drop forward policy', async () => {
    const doc = { interfaces: [bridge(), wan], firewall };
    const plan = formatPlan(await engine.plan({ document: doc }));
    console.log(`# ${plan.replace(/\n/g, '\n# ')}`);
    assert.match(plan, /\+ bridge lanbr  \(stp off\)/);
    assert.match(plan, /\+ port lp1 of bridge lanbr/);
    assert.match(plan, /\+ address 10\.62\.1\.1\/24 on lanbr/);
    assert.match(plan, /~ port lp1 hairpin  \(off -> on/);
    await engine.apply({ document: doc }, me);
    const br = await link('lanbr');
    assert.equal(br.linkinfo?.info_kind, 'bridge');
    assert.equal(br.linkinfo?.info_data?.stp_state, 0);
    for (const p of ['lp1', 'lp2']) assert.equal((await link(p)).master, 'lanbr');
    assert.equal((await gw.nsenter('sysctl', ['-n', 'net.bridge.bridge-nf-call-iptables'])).stdout.trim(), '1', 'br_netfilter sends bridged frames through the firewall');
    const before = await counter('builtin:bridge-lanbr');
    const r = await connectOnce(c2, 'tcp', '10.62.1.10', 81, 3000);
    assert.ok(r.ok, r.line);
    assert.equal(r.peer, '10.62.1.11', 'bridged, not routed or translated');
    assert.ok((await counter('builtin:bridge-lanbr')) > before, 'it crossed the forward chain as lanbr -> lanbr, through the bridge rule');
    assert.deepEqual((await engine.plan({ document: doc })).subsystems.flatMap((s) => s.changes), []);
  });

  it('the port forward works from outside, from another LAN host, and from its own target (hairpin on a bridge)', async () => {
    const outside = await connectOnce(out, 'tcp', '203.0.113.1', 8080, 3000);
    assert.ok(outside.ok, outside.line);
    assert.equal(outside.peer, '203.0.113.2');
    const fromLan = await connectOnce(c2, 'tcp', '203.0.113.1', 8080, 3000);
    assert.ok(fromLan.ok, fromLan.line);
    assert.equal(fromLan.peer, '10.62.1.1', 'hairpin: masqueraded to the bridge address');
    const fromTarget = await connectOnce(c1, 'tcp', '203.0.113.1', 8080, 3000);
    assert.ok(fromTarget.ok, `the target reaches itself through its own port forward: ${fromTarget.line}`);
    assert.equal(fromTarget.server, 'c1');
    assert.equal(fromTarget.peer, '10.62.1.1');
    assert.equal((await link('lp1')).linkinfo?.info_slave_data?.hairpin, true);
  });

  it('STP on is a change in place; LAN traffic still flows', async () => {
    await engine.apply({ document: { interfaces: [bridge({ stp: true }), wan], firewall } }, me);
    assert.equal((await link('lanbr')).linkinfo?.info_data?.stp_state, 1);
    await engine.apply({ document: { interfaces: [bridge(), wan], firewall } }, me);
    assert.equal((await link('lanbr')).linkinfo?.info_data?.stp_state, 0);
    assert.ok((await connectOnce(c2, 'tcp', '10.62.1.10', 81, 3000)).ok);
  });

  it('bad input: a VLAN this kernel cannot make, a bridge port that is another zone\'s interface; nothing changes', async () => {
    const revisions = store.list().length;
    const links = (await gw.ip('-j', 'link', 'show')).stdout;
    const vlanLacks = await probeLinkKind(host, 'vlan');
    console.log(`# 802.1Q VLANs on this kernel: ${vlanLacks ? `missing (${vlanLacks})` : 'available'}`);
    const bad = {
      interfaces: [bridge({ ports: ['lp1', 'lp2', 'wan0'] }), wan, { name: 'wan0.7', kind: 'vlan', zone: 'wan', parent: 'wan0', vlanId: 7 }],
      firewall,
    };
    const err = await engine.apply({ document: bad }, me).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(err instanceof ConfigError, String(err));
    const text = err.issues.map(formatIssue).join('\n');
    console.log(`# ${text.replace(/\n/g, '\n# ')}`);
    assert.match(text, /^interfaces\[0\]\.ports\[2\]: "wan0" is an interface of zone "wan" \(interfaces\[1\]\): a port carries its bridge's zone \("lan"\)/m);
    // the zone error is found by compile; the kernel probe runs on a document that compiles
    const vlanOnly = { interfaces: [bridge(), wan, { name: 'wan0.7', kind: 'vlan', zone: 'wan', parent: 'wan0', vlanId: 7 }], firewall };
    if (vlanLacks) {
      await assert.rejects(engine.apply({ document: vlanOnly }, me), (e: unknown) => {
        assert.ok(e instanceof ConfigError);
        assert.match(e.issues.map(formatIssue).join('\n'), /^interfaces\[2\]\.kind: the kernel lacks 802\.1Q VLANs \(8021q\)/m);
        return true;
      });
      assert.equal(store.list().length, revisions, 'no revision recorded');
      assert.equal((await gw.ip('-j', 'link', 'show')).stdout, links, 'no link changed');
    } else {
      await engine.apply({ document: vlanOnly }, me);
      assert.equal((await link('wan0.7')).linkinfo?.info_kind, 'vlan');
      await engine.apply({ document: { interfaces: [bridge(), wan], firewall } }, me);
    }
  });

  it('a bridge the document no longer names is deleted and its ports released', async () => {
    await engine.apply({ document: { interfaces: [wan], firewall: { outboundNat: firewall.outboundNat } } }, me);
    const r = await gw.ip('-j', 'link', 'show', 'dev', 'lanbr').then(
      () => 'present',
      () => 'gone',
    );
    assert.equal(r, 'gone');
    for (const p of ['lp1', 'lp2']) assert.equal((await link(p)).master, undefined);
  });
});
