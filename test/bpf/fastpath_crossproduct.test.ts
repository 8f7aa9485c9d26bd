/**
 * The crossproduct tables against the bit vectors and a reference
 * classifier: random rule sets of 1 to 1024 rules (IPv4 prefixes of every
 * length, overlapping, dense /24 lists, ports and port ranges, protocols,
 * TCP flags, count rules, rules without match fields, some IPv6 and ICMP
 * that take the bit vectors) compiled twice, crossproduct forced on and
 * off, written through the real data plane, and random packets classified
 * by the kernel (bpf_prog_test_run) through each and by the reference. The
 * verdict of every packet and the per-rule counters (which rule's counter
 * slot each packet went to) must agree.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { TC_ACT, XDP } from '../../src/bpf/index.js';
import { compileFastpath, type CrossproductMode } from '../../src/fastpath/compile.js';
import { FastpathDataPlane, removePins } from '../../src/fastpath/dataplane.js';
import { fastpathSchema } from '../../src/fastpath/schema.js';
import { fmtAddr, packetFrame, randomPackets, randomRules, reference, toConfig, xpWalk, type RefPacket, type RefRule } from '../lib/fastpath-random.js';
import { missing } from '../lib/skip.js';

const CAP = { prefixes: 16384, portPrefixes: 8192, rateLimitSources: 1024, blocklist: 1024 };

describe('fast path crossproduct: same verdicts and counters as the bit vectors and the reference', { timeout: 300_000, skip: missing('root') }, () => {
  let pinDir: string;
  let dp: FastpathDataPlane;

  before(async () => {
    pinDir = mkdtempSync('/sys/fs/bpf/pt-fastpath-xp-');
    dp = await FastpathDataPlane.open({ pinDir, capacity: CAP });
  });
  after(() => {
    dp?.close();
    if (pinDir) removePins(pinDir);
  });

  /** Verdicts and counter deltas (by rule position) of the packets through one compiled variant. */
  async function classify(rulesConfig: unknown[], mode: CrossproductMode, packets: RefPacket[]): Promise<{ verdicts: number[]; counters: bigint[]; lookups: string[]; classifier: string; decided: number }> {
    const fastpath = fastpathSchema.parse({ interfaces: [{ name: 'lo', defaultPolicy: 'pass' }], rules: rulesConfig, capacity: { ...CAP, rules: 1024 } });
    const { desired, issues } = compileFastpath({ fastpath, aliases: new Map(), crossproduct: mode });
    assert.deepEqual(issues, []);
    await dp.apply(desired, () => 1);
    const before = dp.ruleCounters();
    const verdicts: number[] = [];
    for (const p of packets) verdicts.push((await dp.xdp.testRun({ data: packetFrame(p) })).retval);
    const after = dp.ruleCounters();
    const counters = after.map((c) => c.packets - (before.find((b) => b.name === c.name)?.packets ?? 0n));
    // how many packets the tables decide (the same walk in TypeScript), so a test cannot pass on fallbacks alone
    const decided = packets.filter((p) => xpWalk(desired, p) !== 'fallback').length;
    return { verdicts, counters, lookups: dp.lookups(), classifier: desired.classifier, decided };
  }

  const sets: [number, number][] = [[11, 1], [12, 7], [13, 40], [14, 65], [15, 150], [16, 400], [17, 1024]];
  let withTables = 0;
  for (const [seed, n] of sets) for (const counts of [true, false]) {
    it(`seed ${seed}: ${n} rules${counts ? '' : ' (count rules made pass rules)'}, 250 packets`, async () => {
      let rules = randomRules(seed, n);
      if (!counts) rules = rules.map((r): RefRule => (r.action === 'count' ? { ...r, action: 'pass' } : r));
      const packets = randomPackets(seed, rules, 250);
      const config = toConfig(rules);
      const xp = await classify(config, 'on', packets);
      const bv = await classify(config, 'off', packets);
      assert.ok(!bv.lookups.includes('crossproduct'), 'off: bit vectors');
      if (xp.lookups.includes('crossproduct')) withTables++;
      else assert.match(xp.classifier, /no crossproduct/, 'on: tables, or the reason why not');
      const want = rules.map(() => 0n);
      packets.forEach((p, i) => {
        const ref = reference(rules, p);
        const verdict = ref.rule < 0 ? XDP.PASS : rules[ref.rule]!.action === 'drop' ? XDP.DROP : XDP.PASS;
        const what = `${p.proto} ${fmtAddr(p.family, p.src)}:${p.sport} -> ${fmtAddr(p.family, p.dst)}:${p.dport} flags ${p.flags} (rule ${ref.rule})`;
        assert.equal(bv.verdicts[i], verdict, `bit vectors: ${what}`);
        assert.equal(xp.verdicts[i], verdict, `crossproduct (${xp.classifier}): ${what}`);
        if (ref.rule >= 0) want[ref.rule]!++;
        for (const c of ref.counted) want[c]!++;
      });
      assert.deepEqual(bv.counters, want, 'bit vectors: per-rule counters');
      assert.deepEqual(xp.counters, want, `crossproduct (${xp.classifier}): per-rule counters`);
      assert.ok(want.some((c) => c > 0n), 'some rule matched');
      if (!counts) assert.ok(xp.decided > packets.length / 2, `the tables decided ${xp.decided} of ${packets.length} packets`);
    });
  }
  it('tc egress: an "out" rule set and an "in" rule set on one interface, through the tables', async () => {
    // the ingress and egress entries get interface classes of their own
    const inRules = randomRules(41, 200).map((r): RefRule => (r.action === 'count' ? { ...r, action: 'pass' } : r));
    const outRules = randomRules(42, 200).map((r): RefRule => ({ ...(r.action === 'count' ? { ...r, action: 'pass' as const } : r), name: `o${r.name}` }));
    const config = [...toConfig(inRules), ...toConfig(outRules).map((r) => ({ ...(r as object), direction: 'out' }))];
    const fastpath = fastpathSchema.parse({ interfaces: [{ name: 'lo', defaultPolicy: 'pass', egress: { enabled: true, defaultPolicy: 'pass' } }], rules: config, capacity: { ...CAP, rules: 1024 } });
    const { desired, issues } = compileFastpath({ fastpath, aliases: new Map(), crossproduct: 'on' });
    assert.deepEqual(issues, []);
    assert.ok(dp && desired.genConfig.xp, desired.classifier);
    await dp.apply(desired, () => 1);
    assert.ok(dp.lookups().includes('crossproduct'));
    const lo = desired.interfaces[0]!;
    let decided = 0;
    for (const p of randomPackets(42, outRules, 200)) {
      const ref = reference(outRules, p);
      const want = ref.rule >= 0 && outRules[ref.rule]!.action === 'drop' ? TC_ACT.SHOT : TC_ACT.OK;
      const got = (await dp.tc.testRun({ data: packetFrame(p) })).retval;
      assert.equal(got, want, `egress ${p.proto} ${fmtAddr(p.family, p.src)}:${p.sport} -> ${fmtAddr(p.family, p.dst)}:${p.dport} (rule ${ref.rule})`);
      const walk = xpWalk(desired, p, lo.egressPolicy.xpClass);
      if (walk !== 'fallback') {
        decided++;
        assert.equal(walk, ref.rule < 0 ? -1 : 200 + ref.rule);
      }
    }
    assert.ok(decided > 100, `the tables decided ${decided} of 200 egress packets`);
  });

  it("the bench's 1024 rules: both addresses first in their groups (the program's short path), settled and not", async () => {
    // bench/harness/rules.ts rules1024: sources, TCP ports, UDP (source, destination port), UDP
    // (destination, source port range), then a drop on 16.0.0.0/16
    const v4 = (s: string) => s.split('.').reduce((a, x) => (a << 8n) | BigInt(x), 0n);
    const rules: RefRule[] = [];
    for (let i = 0; i < 1023; i++) {
      const net: [bigint, number][] = [[v4(`10.${(i >> 8) & 255}.${i & 255}.0`), 24]];
      const name = `r${i}`;
      if (i % 4 === 0) rules.push({ name, family: 4, source: net, action: 'drop' });
      else if (i % 4 === 1) rules.push({ name, family: 4, protocol: ['tcp'], destinationPorts: [1000 + i, 1000 + i], action: 'drop' });
      else if (i % 4 === 2) rules.push({ name, family: 4, source: net, protocol: ['udp'], destinationPorts: [20000 + i, 20000 + i], action: 'pass' });
      else rules.push({ name, family: 4, destination: [[v4(`192.168.${i & 255}.0`), 24]], protocol: ['udp'], sourcePorts: [30000 + i, 30010 + i], action: 'drop' });
    }
    rules.push({ name: 'drop', family: 4, source: [[v4('16.0.0.0'), 16]], action: 'drop' });
    const pkt = (src: string, dst: string, proto: 'tcp' | 'udp', sport: number, dport: number): RefPacket => ({ family: 4, src: v4(src), dst: v4(dst), proto, sport, dport, flags: proto === 'tcp' ? 0x10 : 0 });
    const packets: RefPacket[] = [
      pkt('16.0.1.9', '10.0.0.2', 'udp', 40000, 9), // the bench's frame: both groups settle
      pkt('203.0.113.9', '10.0.0.2', 'udp', 40000, 9), // its miss
      pkt('10.0.2.5', '10.0.0.2', 'udp', 40000, 20002), // (source, destination port) rule r2: the right group does not settle
      pkt('10.0.2.5', '10.0.0.2', 'udp', 40000, 20003), // r2's source, another port: no rule (the right group's second step)
      pkt('16.0.1.9', '192.168.3.7', 'udp', 30005, 9), // (destination, source port) rule r3 ahead of the final drop
      pkt('16.0.1.9', '192.168.3.7', 'udp', 29999, 9), // its destination, a port outside: the final drop
      pkt('10.0.4.1', '192.168.7.1', 'udp', 30010, 20006), // r4 (source) first
      pkt('16.0.1.9', '10.0.0.2', 'tcp', 40000, 1001), // TCP port rule r1
      ...randomPackets(77, rules, 200),
    ];
    const config = toConfig(rules);
    const xp = await classify(config, 'on', packets);
    const bv = await classify(config, 'off', packets);
    assert.ok(xp.lookups.includes('crossproduct'), xp.classifier);
    const fastpath = fastpathSchema.parse({ interfaces: [{ name: 'lo', defaultPolicy: 'pass' }], rules: config, capacity: { ...CAP, rules: 1024 } });
    const udp = compileFastpath({ fastpath, aliases: new Map(), crossproduct: 'on' }).desired.genConfig.xp![1];
    assert.equal(udp.direct & 3, 3, 'UDP: source and destination first in their groups');
    assert.equal(udp.settle & 3, 3, 'UDP: both groups have a second field');
    const want = rules.map(() => 0n);
    packets.forEach((p, i) => {
      const ref = reference(rules, p);
      const verdict = ref.rule < 0 ? XDP.PASS : rules[ref.rule]!.action === 'drop' ? XDP.DROP : XDP.PASS;
      const what = `${p.proto} ${fmtAddr(p.family, p.src)}:${p.sport} -> ${fmtAddr(p.family, p.dst)}:${p.dport} (rule ${ref.rule})`;
      assert.equal(bv.verdicts[i], verdict, `bit vectors: ${what}`);
      assert.equal(xp.verdicts[i], verdict, `crossproduct: ${what}`);
      if (ref.rule >= 0) want[ref.rule]!++;
    });
    assert.equal(reference(rules, packets[2]!).rule, 2);
    assert.equal(reference(rules, packets[4]!).rule, 3);
    assert.equal(reference(rules, packets[5]!).rule, 1023);
    assert.deepEqual(bv.counters, want, 'bit vectors: per-rule counters');
    assert.deepEqual(xp.counters, want, 'crossproduct: per-rule counters');
    assert.ok(xp.decided >= packets.length - 10, `the tables decided ${xp.decided} of ${packets.length} packets`);
  });

  it('most random rule sets got crossproduct tables', () => {
    assert.ok(withTables >= 2 * sets.length - 2, `${withTables} of ${2 * sets.length}`);
  });
});
