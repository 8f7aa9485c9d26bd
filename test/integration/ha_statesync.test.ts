/**
 * Connection-state sync for a VRRP pair (ha.conntrackSync -> conntrackd
 * FT-FW, committed by keepalived's notify script): two routers with
 * Patronus' stateful firewall (new TCP that is not a SYN is dropped), a LAN
 * and a WAN virtual address in one sync group, a dedicated sync link, a
 * client on the LAN and a server on the WAN side. A TCP stream through the
 * virtual addresses keeps flowing, without a reset, through a failover to
 * the secondary and a failback to the primary. A control run without
 * conntrackSync shows what the test guards against: the stream stalls on
 * the secondary, whose firewall drops the unknown mid-stream packets.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Lab, type Netns } from '../lib/netns.js';
import { missing } from '../lib/skip.js';
import { TcpStream } from '../lib/tcpstream.js';
import { Host } from '../../src/system/host.js';
import { Engine } from '../../src/apply/engine.js';
import { Store } from '../../src/store/store.js';
import { nftSubsystem } from '../../src/nft/subsystem.js';
import { keepalivedSubsystem } from '../../src/services/keepalived/subsystem.js';
import { conntrackdSubsystem } from '../../src/services/conntrackd/subsystem.js';
import { readConntrackdStatus } from '../../src/services/conntrackd/module.js';
import { instancePaths } from '../../src/services/common/service.js';
import { domains } from '../../src/domains.js';

const skip = missing('netns', { cmd: 'keepalived' }, { cmd: 'conntrackd' }, { cmd: 'nft' });
const LAN_VIP = '10.20.0.254';
const WAN_VIP = '10.30.0.254';
const SERVER = '10.30.0.100';

function doc(n: 1 | 2, conntrackSync: boolean) {
  return {
    interfaces: [
      { name: 'eth0', zone: 'lan' },
      { name: 'eth1', zone: 'wan' },
      { name: 'sync0', zone: 'sync' },
    ],
    // lan may forward anywhere; wan and sync: default drop (replies pass as established)
    firewall: { zones: [{ name: 'lan', input: 'accept', forward: 'accept' }] },
    ha: {
      role: n === 1 ? 'primary' : 'secondary',
      nodeName: `fw${n}`,
      instances: [
        { name: 'LAN', interface: 'eth0', virtualRouterId: 51, advertInterval: 0.1, virtualAddresses: [`${LAN_VIP}/24`] },
        { name: 'WAN', interface: 'eth1', virtualRouterId: 52, advertInterval: 0.1, virtualAddresses: [`${WAN_VIP}/24`] },
      ],
      groups: [{ name: 'ROUTER', instances: ['LAN', 'WAN'] }],
      ...(conntrackSync ? { conntrackSync: { interface: 'sync0', localAddress: `10.40.0.${n}`, peerAddress: `10.40.0.${3 - n}` } } : {}),
    },
  };
}

async function hasAddress(ns: Netns, dev: string, addr: string): Promise<boolean> {
  const { stdout } = await ns.ip('-j', 'addr', 'show', 'dev', dev);
  return (JSON.parse(stdout) as { addr_info: { local: string }[] }[])[0]!.addr_info.some((a) => a.local === addr);
}

async function waitUntil(what: string, check: () => Promise<boolean>, timeoutMs = 30_000): Promise<number> {
  const t0 = Date.now();
  for (;;) {
    if (await check()) return Date.now() - t0;
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function newNotSynDrops(ns: Netns): Promise<number> {
  const { stdout } = await ns.exec('nft', ['list', 'chain', 'inet', 'patronus', 'forward']);
  return Number(/counter packets (\d+) bytes \d+ drop comment "[^"]*builtin:forward-new-not-syn"/.exec(stdout)?.[1] ?? 0);
}

describe('conntrack state sync across a VRRP failover', { timeout: 300_000, skip }, () => {
  const lab = new Lab();
  let sw: Netns, n1: Netns, n2: Netns, cl: Netns, srv: Netns;
  let dir: string;
  const nodes: { ns: Netns; host: Host; store: Store; engine: Engine }[] = [];

  before(async () => {
    sw = await lab.ns('hsw');
    n1 = await lab.ns('hn1');
    n2 = await lab.ns('hn2');
    cl = await lab.ns('hcl');
    srv = await lab.ns('hsrv');
    for (const br of ['br0', 'br1']) {
      await sw.ip('link', 'add', br, 'type', 'bridge');
      await sw.ip('link', 'set', br, 'up');
    }
    const ports: [Netns, string, string, string, string][] = [
      [n1, 'eth0', '10.20.0.1/24', 'l1', 'br0'],
      [n2, 'eth0', '10.20.0.2/24', 'l2', 'br0'],
      [cl, 'eth0', '10.20.0.100/24', 'l3', 'br0'],
      [n1, 'eth1', '10.30.0.1/24', 'w1', 'br1'],
      [n2, 'eth1', '10.30.0.2/24', 'w2', 'br1'],
      [srv, 'eth0', `${SERVER}/24`, 'w3', 'br1'],
    ];
    for (const [ns, dev, address, p, br] of ports) {
      await lab.veth({ ns, dev, address }, { ns: sw, dev: p });
      await sw.ip('link', 'set', p, 'master', br);
    }
    // the dedicated sync link
    await lab.veth({ ns: n1, dev: 'sync0', address: '10.40.0.1/30' }, { ns: n2, dev: 'sync0', address: '10.40.0.2/30' });
    await cl.ip('route', 'add', 'default', 'via', LAN_VIP);
    await srv.ip('route', 'add', '10.20.0.0/24', 'via', WAN_VIP);
    dir = mkdtempSync(path.join(os.tmpdir(), 'pt-hasync-'));
    for (const ns of [n1, n2]) {
      await ns.sysctl('net.ipv4.ip_forward', '1');
      const host = new Host({ netns: ns.name, stateDir: path.join(dir, ns.name) });
      const store = Store.open(path.join(host.stateDir, 'patronus.db'));
      nodes.push({ ns, host, store, engine: new Engine({ domains, host, store, subsystems: [nftSubsystem, conntrackdSubsystem, keepalivedSubsystem] }) });
    }
  });

  after(async () => {
    for (const n of nodes) {
      for (const s of [keepalivedSubsystem, conntrackdSubsystem, nftSubsystem]) await s.teardown?.(n.host).catch((e) => console.error(`# teardown ${s.name} ${n.host.where}: ${e}`));
      n.engine.close();
      n.store.close();
    }
    await lab.teardown();
    rmSync(dir, { recursive: true, force: true });
  });

  async function applyBoth(conntrackSync: boolean): Promise<void> {
    // secondary first, so the primary's election finds it
    for (const i of [1, 0] as const) {
      const r = await nodes[i]!.engine.apply({ document: doc(i === 0 ? 1 : 2, conntrackSync) }, { author: 'test', message: `conntrackSync ${conntrackSync}` });
      assert.equal(r.state, 'committed');
    }
    await waitUntil('both VIPs on the primary', async () => (await hasAddress(n1, 'eth0', LAN_VIP)) && (await hasAddress(n1, 'eth1', WAN_VIP)) && !(await hasAddress(n2, 'eth0', LAN_VIP)));
  }

  /**
   * failover (primary's LAN link down), some seconds on the secondary, failback; the stream's numbers around both.
   * flows: wait (generously) for the stream to move on after each switch, rather than asserting a rate or a stall time.
   */
  async function failoverAndBack(stream: TcpStream, onSecondaryMs: number, flows: boolean) {
    await waitUntil('the stream to flow', async () => stream.bytes > 1_000_000);
    const tDown = Date.now();
    await n1.ip('link', 'set', 'eth0', 'down');
    const vipMs = await waitUntil('both VIPs on the secondary', async () => (await hasAddress(n2, 'eth0', LAN_VIP)) && (await hasAddress(n2, 'eth1', WAN_VIP)));
    if (flows) await waitUntil('the stream to flow on through the secondary (1 MB after the VIPs moved)', async () => stream.bytes > stream.bytesAt(tDown + vipMs) + 1_000_000, 60_000);
    await sleep(onSecondaryMs);
    const tUp = Date.now();
    const onSecondary = { vipMs, stallMs: stream.longestStall(tDown, tUp), bytes: stream.bytesAt(tUp) - stream.bytesAt(tDown + vipMs), lastSecondBytes: stream.bytesAt(tUp) - stream.bytesAt(tUp - 1000) };
    await n1.ip('link', 'set', 'eth0', 'up');
    const backMs = await waitUntil('both VIPs back on the primary', async () => (await hasAddress(n1, 'eth0', LAN_VIP)) && (await hasAddress(n1, 'eth1', WAN_VIP)) && !(await hasAddress(n2, 'eth0', LAN_VIP)));
    if (flows) await waitUntil('the stream to flow on through the primary again (1 MB after the VIPs moved back)', async () => stream.bytes > stream.bytesAt(tUp + backMs) + 1_000_000, 60_000);
    await sleep(onSecondaryMs);
    const tEnd = Date.now();
    const back = { vipMs: backMs, stallMs: stream.longestStall(tUp, tEnd), lastSecondBytes: stream.bytesAt(tEnd) - stream.bytesAt(tEnd - 1000) };
    return { onSecondary, back };
  }

  it('with conntrackSync: a TCP stream through the VIPs survives failover and failback', async () => {
    await applyBoth(true);
    for (const n of nodes) assert.equal(((await conntrackdSubsystem.status!(n.host)) as { running: boolean }).running, true, `conntrackd runs on ${n.ns.name}`);
    const stream = await TcpStream.start(cl, srv, SERVER, 5201);
    try {
      // the primary forwards the stream, the secondary holds its state in conntrackd's external cache
      await waitUntil("the connection in the secondary's external cache", async () => ((await readConntrackdStatus(instancePaths(nodes[1]!.host.stateDir, 'conntrackd'), nodes[1]!.host)).external ?? 0) >= 1);
      const drops0 = await newNotSynDrops(n2);
      const r = await failoverAndBack(stream, 3000, true);
      const drops = (await newNotSynDrops(n2)) - drops0;
      console.log(
        `# with conntrackd: failover VIPs moved in ${r.onSecondary.vipMs} ms, stream stalled at most ${r.onSecondary.stallMs} ms, ${(r.onSecondary.bytes / 1e6).toFixed(1)} MB on the secondary ` +
          `(${(r.onSecondary.lastSecondBytes / 1e6).toFixed(2)} MB in its last second); failback VIPs in ${r.back.vipMs} ms, stall ${r.back.stallMs} ms, ` +
          `${(r.back.lastSecondBytes / 1e6).toFixed(2)} MB in the last second; secondary's new-not-syn drops: ${drops}`,
      );
      // it flowed on through both switches (failoverAndBack waited for that); stall times are figures, not asserted (a loaded machine)
      assert.deepEqual(stream.failures, [], 'no reset, no close');
    } finally {
      stream.stop();
    }
  });

  it('a sync interface or address this node does not have is refused before anything runs', async () => {
    const bad = doc(1, true) as any;
    bad.ha.conntrackSync.localAddress = '10.40.0.9';
    await assert.rejects(nodes[0]!.engine.apply({ document: bad }, { author: 'test', message: 'bad' }), /ha\.conntrackSync\.localAddress: 10\.40\.0\.9 is not an address of sync0/);
    bad.ha.conntrackSync.interface = 'nope0';
    await assert.rejects(nodes[0]!.engine.apply({ document: bad }, { author: 'test', message: 'bad' }), /ha\.conntrackSync\.interface: interface nope0 does not exist/);
    assert.equal(((await conntrackdSubsystem.status!(nodes[0]!.host)) as { running: boolean }).running, true, 'the running conntrackd was not touched');
  });

  it('without conntrackSync (control): the secondary drops the stream it has no state for', async () => {
    await applyBoth(false);
    for (const n of nodes) assert.equal(((await conntrackdSubsystem.status!(n.host)) as { running: boolean }).running, false, `conntrackd stopped on ${n.ns.name}`);
    const stream = await TcpStream.start(cl, srv, SERVER, 5202);
    try {
      const drops0 = await newNotSynDrops(n2);
      const r = await failoverAndBack(stream, 3000, false);
      const drops = (await newNotSynDrops(n2)) - drops0;
      console.log(`# without conntrackd: on the secondary the stream stalled ${r.onSecondary.stallMs} ms (${r.onSecondary.bytes} bytes), its new-not-syn drops: ${drops}`);
      assert.ok(r.onSecondary.lastSecondBytes === 0, 'no bytes through a secondary without state');
      assert.ok(drops > 0, "the secondary's firewall dropped the mid-stream packets");
    } finally {
      stream.stop();
    }
  });
});
