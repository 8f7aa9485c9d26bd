/**
 * PROTOTYPE parity (issue 13): the constant-rule program
 * (bench/trafficgen/const_filter.bpf.c, the rules in frozen .rodata) against
 * the product's generation program on the same random small rule sets and
 * the same packets: verdict per packet, then every rule counter and every
 * ingress verdict counter. Random rule sets from test/lib/fastpath-random.ts
 * (those that fit the prototype's eight atoms), their packets, and frames
 * the rule sets do not steer: fragments, VLAN tags, other protocols, non-IP,
 * truncated. Also: a swap to another rule set replaces the attached program
 * atomically and carries the counters over.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { compileFastpath } from '../../src/fastpath/compile.js';
import { FastpathDataPlane, removePins } from '../../src/fastpath/dataplane.js';
import { fastpathSchema } from '../../src/fastpath/schema.js';
import { VERDICTS } from '../../src/fastpath/layout.js';
import { queryXdp } from '../../src/bpf/index.js';
import { ConstFilter, constConfig, constObjectPath } from '../../bench/harness/constfilter.js';
import { frame } from '../lib/packets.js';
import { missing } from '../lib/skip.js';
import { Lab } from '../lib/netns.js';
import { inNetns } from '../../src/system/netns.js';
import { packetFrame, randomPackets, randomRules, toConfig } from '../lib/fastpath-random.js';

const CAP = { prefixes: 4096, portPrefixes: 1024, rateLimitSources: 1024, blocklist: 1024 };

/** Frames no rule set steers: what the parser decides, and fields only some atoms look at. */
function edgeFrames(): Buffer[] {
  const out = [
    frame({ src: '10.0.0.1', dst: '10.1.0.1', proto: 'udp', sport: 53, dport: 53, fragOffset: 100 }), // later fragment
    frame({ src: '10.0.0.1', dst: '10.1.0.1', proto: 'tcp', sport: 1000, dport: 80, moreFragments: true, tcpFlags: 0x02 }), // first fragment
    frame({ src: '10.0.0.1', dst: '10.1.0.1', proto: 'udp', sport: 1, dport: 2, vlan: [100] }),
    frame({ src: '10.0.0.1', dst: '10.1.0.1', proto: 47, payload: 8 }),
    frame({ src: '2001:db8::1', dst: '2001:db8::2', proto: 'udp', sport: 5, dport: 6, ext: ['hop', 'frag'] }),
  ];
  const arp = Buffer.alloc(60);
  arp.writeUInt16BE(0x0806, 12);
  out.push(arp);
  out.push(frame({ src: '10.0.0.1', dst: '10.1.0.1', proto: 'tcp', sport: 1, dport: 2 }).subarray(0, 30)); // truncated IPv4
  return out;
}

describe('PROTOTYPE constant-rule program: parity with the generation program', { timeout: 300_000, skip: missing('root', { file: constObjectPath() }) }, () => {
  let pinDir: string;
  let dp: FastpathDataPlane;

  before(async () => {
    pinDir = mkdtempSync('/sys/fs/bpf/pt-fastpath-const-');
    dp = await FastpathDataPlane.open({ pinDir, capacity: CAP });
  });
  after(() => {
    dp?.close();
    if (pinDir) removePins(pinDir);
  });

  it('same verdicts and counters on random small rule sets', async () => {
    let sets = 0;
    let packets = 0;
    for (let seed = 1; sets < 24 && seed < 400; seed++) {
      const rules = randomRules(seed, 1 + (seed % 4));
      const fastpath = fastpathSchema.parse({ interfaces: [{ name: 'lo', defaultPolicy: seed % 5 === 0 ? 'drop' : 'pass' }], rules: toConfig(rules), capacity: { ...CAP, rules: 1024 } });
      const c = constConfig(fastpath.rules, [{ name: 'lo', ifindex: 1, defaultPolicy: fastpath.interfaces[0]!.defaultPolicy }]);
      if ('reason' in c) continue; // more than the prototype's eight atoms
      sets++;
      const { desired, issues } = compileFastpath({ fastpath, aliases: new Map() });
      assert.deepEqual(issues, []);
      await dp.apply(desired, () => 1);
      const cf = await ConstFilter.load(c);
      try {
        const rules0 = new Map(dp.ruleCounters().map((x) => [x.name, x.packets]));
        const v0 = dp.verdictCounters().ingress;
        const frames = [...randomPackets(seed, rules, 60).map(packetFrame), ...edgeFrames()];
        for (const data of frames) {
          const want = (await dp.xdp.testRun({ data })).retval;
          const got = (await cf.prog.testRun({ data })).retval;
          assert.equal(got, want, `seed ${seed}: frame ${data.toString('hex').slice(0, 140)}; rules ${JSON.stringify(toConfig(rules))}`);
          packets++;
        }
        for (const x of dp.ruleCounters()) {
          const index = fastpath.rules.findIndex((r) => r.name === x.name);
          assert.equal(cf.rulePackets(index), x.packets - (rules0.get(x.name) ?? 0n), `seed ${seed}: counter of rule ${x.name}`);
        }
        const v1 = dp.verdictCounters().ingress;
        VERDICTS.forEach((v, i) => assert.equal(cf.verdictPackets(i), v1[v].packets - v0[v].packets, `seed ${seed}: verdict counter ${v}`));
      } finally {
        cf.close();
      }
    }
    assert.ok(sets >= 20, `enough rule sets fit the prototype (${sets})`);
    assert.ok(packets > 1000, `packets classified (${packets})`);
  });

  it('refuses what it does not do, with the reason', () => {
    const parse = (rules: unknown[]) => fastpathSchema.parse({ interfaces: [{ name: 'lo' }], rules }).rules;
    const lo = [{ name: 'lo', ifindex: 1, defaultPolicy: 'pass' as const }];
    const r1 = constConfig(parse([{ name: 'rl', action: 'rate-limit', rateLimit: { packetsPerSecond: 10 } }]), lo);
    assert.ok('reason' in r1 && /rate limits/.test(r1.reason));
    const r2 = constConfig(parse([{ name: 'many', source: Array.from({ length: 9 }, (_, i) => `10.0.${i}.0/24`), action: 'drop' }]), lo);
    assert.ok('reason' in r2 && /more than 8 atoms/.test(r2.reason));
    const r3 = constConfig(parse([{ name: 'o', direction: 'out', action: 'drop' }]), lo);
    assert.ok('reason' in r3 && /egress/.test(r3.reason));
  });

  it('a swap replaces the attached program atomically and carries the counters over', { skip: missing('netns') }, async () => {
    const lab = new Lab();
    let a: ConstFilter | undefined;
    let b: ConstFilter | undefined;
    try {
      const ns = await lab.ns('cst');
      const peer = await lab.ns('cstp');
      await lab.veth({ ns, dev: 'c0' }, { ns: peer, dev: 'c1' });
      const idx = await ns.ifindex('c0');
      const rules = (src: string) => fastpathSchema.parse({ rules: [{ name: 'd', source: src, action: 'drop' }] }).rules;
      const ca = constConfig(rules('16.0.0.0/16'), [{ name: 'c0', ifindex: idx, defaultPolicy: 'pass' }]);
      const cb = constConfig(rules('17.0.0.0/16'), [{ name: 'c0', ifindex: idx, defaultPolicy: 'pass' }]);
      assert.ok(!('reason' in ca) && !('reason' in cb));
      a = await ConstFilter.load(ca);
      inNetns(ns.name, () => a!.prog.attachXdp(idx, { mode: 'native' }));
      const hit = frame({ src: '16.0.1.9', dst: '10.0.0.2', proto: 'udp', sport: 1, dport: 9 });
      // test_run classifies as received on lo: count through the counters directly
      await a.prog.testRun({ data: hit, repeat: 3 });
      b = await ConstFilter.load(cb, a);
      assert.equal(b.rulePackets(0), 0n, 'test_run on lo is unmanaged: no rule counted');
      assert.equal(b.verdictPackets(VERDICTS.indexOf('unmanaged')), 3n, 'the verdict counters are the same map');
      // replace only if `a` is the program attached; a stale expectation fails
      inNetns(ns.name, () => b!.prog.attachXdp(idx, { mode: 'native', expected: a!.prog }));
      assert.equal(inNetns(ns.name, () => queryXdp(idx)).progId, b.prog.info.id);
      assert.throws(() => inNetns(ns.name, () => a!.prog.attachXdp(idx, { mode: 'native', expected: a!.prog })));
      assert.equal(inNetns(ns.name, () => queryXdp(idx)).progId, b.prog.info.id);
      b.detach(idx, (fn) => inNetns(ns.name, fn));
    } finally {
      a?.close();
      b?.close();
      await lab.teardown();
    }
  });
});


