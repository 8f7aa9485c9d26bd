/**
 * Smoke test of the benchmark's traffic generator and receiver-side
 * counting (not a benchmark: no figure is asserted): frames the generator
 * sends arrive at the receiving namespace and are counted there, all of
 * them delivered to UDP with no filter, all of them dropped with the bench's
 * XDP drop-everything program, and the prepared frames carry the requested
 * share of matching sources through a real LPM filter.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { projectRoot } from '../../src/bpf/addon.js';
import { Topology, diff, TX_DEV, RX_DEV, DST4, DST6 } from '../../bench/harness/topology.js';
import { TrafficGen } from '../../bench/harness/trafficgen.js';
import { XdpLpmPath } from '../../bench/harness/paths.js';
import { frameTable, ruleSet } from '../../bench/harness/workload.js';
import { missing } from '../lib/skip.js';

const tool = path.join(projectRoot(), 'bench/trafficgen/build/patronus-trafficgen');
const skip = missing('netns', { cmd: 'ethtool' }, { cmd: 'nsenter' }) ?? (existsSync(tool) ? undefined : `needs ${tool} (make -C bench/trafficgen)`);

describe('bench traffic generator and receiver counting', { skip, timeout: 180_000 }, () => {
  let topo: Topology;
  let gen: TrafficGen;
  let lpm: XdpLpmPath;
  const COUNT = 65536;

  before(async () => {
    topo = await Topology.create();
    gen = await TrafficGen.create(topo.sender, TX_DEV);
    lpm = await XdpLpmPath.create({ receiver: topo.receiver, dev: RX_DEV, ifindex: topo.rxIfindex });
  });
  after(async () => {
    await lpm?.close();
    await gen?.close();
    await topo?.teardown();
  });

  const ep = () => ({ srcMac: topo.txMac, dstMac: topo.rxMac, dst4: DST4, dst6: DST6 });
  /**
   * The counters since c0 once the receiver's NAPI poll has taken everything the sender handed over and UDP
   * delivery stands still (at most 10 s): the poll runs after the generator returns when a loaded machine
   * defers it to ksoftirqd, and read at once the receiver lagged. The assertions stay exact.
   */
  const settledDiff = async (c0: Awaited<ReturnType<Topology['counters']>>) => {
    let prev = diff(c0, await topo.counters());
    for (const end = Date.now() + 10_000; Date.now() < end; ) {
      await new Promise((r) => setTimeout(r, 50));
      const cur = diff(c0, await topo.counters());
      if (cur.rx >= cur.xmit && cur.rx === prev.rx && cur.delivered === prev.delivered) return cur;
      prev = cur;
    }
    return prev;
  };

  it('delivers every generated IPv4 and IPv6 frame to the receiver when nothing filters', async () => {
    for (const family of [4, 6] as const) {
      const frames = frameTable(ruleSet(family, 10), 1024, 0, ep());
      const c0 = await topo.counters();
      const g = await gen.run(frames, { count: COUNT });
      const d = await settledDiff(c0);
      assert.equal(g.sent, COUNT);
      assert.equal(d.xmit + d.xmitErrors, COUNT, `IPv${family}: sending veth`);
      assert.equal(d.rx, d.xmit, `IPv${family}: receiver took what the sender handed over`);
      assert.ok(d.rx > COUNT * 0.9, `IPv${family}: receiver took ${d.rx} of ${COUNT}`);
      assert.equal(d.delivered, d.rx, `IPv${family}: every frame reached UDP at the receiver`);
    }
  });

  it('counts drops at the receiver: drop-everything and a 25 % matching mix', async () => {
    await lpm.install({ family: 4, prefixes: ['0.0.0.0/0'] });
    let c0 = await topo.counters();
    let drops0 = await lpm.drops();
    await gen.run(frameTable(ruleSet(4, 10), 1024, 0, ep()), { count: COUNT });
    let d = await settledDiff(c0);
    assert.ok(d.rx > 0);
    assert.equal(d.delivered, 0);
    assert.equal((await lpm.drops()) - drops0, d.rx);

    const rules = ruleSet(4, 100);
    await lpm.install(rules);
    const frames = frameTable(rules, 1024, 0.25, ep());
    assert.equal(frames.matching, 256);
    c0 = await topo.counters();
    drops0 = await lpm.drops();
    await gen.run(frames, { count: COUNT });
    d = await settledDiff(c0);
    const dropped = d.rx - d.delivered;
    assert.equal((await lpm.drops()) - drops0, dropped);
    // the generator cycles the table: exactly a quarter when nothing was refused
    if (d.xmitErrors === 0) assert.equal(dropped, COUNT / 4);
    else assert.ok(Math.abs(dropped / d.rx - 0.25) < 0.02, `${dropped} of ${d.rx}`);
    await lpm.remove();
  });
});
