/**
 * `serve --config FILE` on an empty store while a data plane already runs
 * (the store was lost or the state dir replaced; XDP program, maps and the
 * nftables table are still in the kernel): the first revision is applied
 * directly over what runs. Real traffic during the whole start: a sender in
 * the peer namespace, counted at the receiver; a source the fast path drops
 * and one the firewall drops must get 0 datagrams through, the allowed one
 * must lose none. Before this was fixed, the start converged to the empty
 * configuration first (XDP detached, table removed) and hundreds passed.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Host } from '../../src/system/host.js';
import { Store } from '../../src/store/store.js';
import { missing } from '../lib/skip.js';
import { controlLab, type ControlLab } from '../lib/control.js';
import { UdpReceiver, startUdp, settle, expectAtLeast } from '../lib/udptraffic.js';
import { ServeProcess, kernelState, planChanges, removeServePins, serveHost, writeConfig } from '../lib/fault.js';

const skip = missing('netns', { cmd: 'nft' });
const PORT = 5556;

const document = {
  interfaces: [{ name: 'wan0', zone: 'wan' }],
  // input from wan is dropped unless allowed: .12 is not
  firewall: { rules: [{ name: 'allow-udp', direction: 'input', from: 'wan', protocol: 'udp', source: ['192.0.2.1/32', '192.0.2.11/32'], ports: [PORT], action: 'accept' }] },
  // .11 is allowed by the firewall but dropped by the fast path
  fastpath: { interfaces: [{ name: 'wan0' }], rules: [{ name: 'drop-11', source: '192.0.2.11', protocol: 'udp', action: 'drop' }] },
};

describe('serve --config on an empty store over a running data plane', { timeout: 300_000, skip }, () => {
  let L: ControlLab;
  let host: Host;
  let rx: UdpReceiver;
  const serves: ServeProcess[] = [];

  before(async () => {
    L = await controlLab();
    for (const a of ['192.0.2.11/24', '192.0.2.12/24']) await L.peer.ip('addr', 'add', a, 'dev', 'eth0');
    host = serveHost(L.fw, L.stateDir);
    rx = await UdpReceiver.start(L.fw, '0.0.0.0', PORT);
    await L.peer.exec('ping', ['-c', '3', '-i', '0.2', '-W', '1', '192.0.2.2']);
  });
  after(async () => {
    rx?.stop();
    for (const s of serves) await s.kill9().catch(() => {});
    if (host) removeServePins(host);
    await L?.teardown();
  });

  it('applies the first revision directly: 0 denied datagrams pass, 0 allowed lost', async () => {
    const config = writeConfig(L.stateDir, 'gateway.json', document);
    const first = await ServeProcess.start({ netns: L.fw, stateDir: L.stateDir, config });
    serves.push(first);
    const running = await kernelState(host, L.fw, 'wan0');
    assert.ok(running.xdpProgId && running.nft, 'fast path and firewall run');
    await first.stop();
    // the store is lost; the data plane keeps running
    for (const f of ['patronus.db', 'patronus.db-wal', 'patronus.db-shm']) rmSync(join(L.stateDir, f), { force: true });

    const before = await rx.counts();
    // traffic for as long as the start takes (a fixed 14 s ran out when a loaded machine took longer), then 2 s more
    const sending = startUdp(L.peer, '192.0.2.2', PORT, 300, 180_000, ['192.0.2.1', '192.0.2.11', '192.0.2.12']);
    let sent: Record<string, number>;
    try {
      await new Promise((r) => setTimeout(r, 1000));
      const t0 = Date.now();
      const second = await ServeProcess.start({ netns: L.fw, stateDir: L.stateDir, config });
      serves.push(second);
      console.log(`# serve started and applied the first revision in ${Date.now() - t0} ms under traffic`);
      assert.equal(sending.done, false, 'the sender was still sending when the server had applied its first revision');
      await new Promise((r) => setTimeout(r, 2000));
    } finally {
      sent = await sending.stop();
    }
    const got = await settle(rx, expectAtLeast(before, sent, ['192.0.2.1']));
    const d = (k: string) => (got[k] ?? 0) - (before[k] ?? 0);
    console.log(`# sent ${JSON.stringify(sent)}; received .1 ${d('192.0.2.1')}, .11 ${d('192.0.2.11')}, .12 ${d('192.0.2.12')}`);
    assert.equal(d('192.0.2.11'), 0, 'datagrams the fast path drops got through');
    assert.equal(d('192.0.2.12'), 0, 'datagrams the firewall drops got through');
    assert.equal(d('192.0.2.1'), sent['192.0.2.1'], 'allowed datagrams lost');

    // the kernel is exactly the new first revision, recorded as committed and running
    const after = await kernelState(host, L.fw, 'wan0');
    assert.equal(after.nft, running.nft);
    assert.deepEqual(after.addresses, running.addresses);
    assert.equal(after.xdpProgId, running.xdpProgId, 'the running XDP program was adopted, not replaced');
    assert.deepEqual(await planChanges(host, { document }), []);
    using store = Store.open(join(L.stateDir, 'patronus.db'));
    assert.deepEqual(store.list({ withConfig: false }).map((r) => r.state), ['committed']);
    assert.equal(store.running(), store.current()!.id);
  });
});
