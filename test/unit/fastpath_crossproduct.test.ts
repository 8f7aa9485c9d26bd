/**
 * The crossproduct tables (src/fastpath/crossproduct.ts) walked as the
 * program walks them (test/lib/fastpath-random.ts xpWalk) against a
 * reference classifier, on random rule sets of 1 to 1024 rules; the cap and
 * the modes. The kernel's own walk is checked in
 * test/bpf/fastpath_crossproduct.test.ts.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { compileFastpath, type CrossproductMode } from '../../src/fastpath/compile.js';
import { buildCrossproduct } from '../../src/fastpath/crossproduct.js';
import { FEAT } from '../../src/fastpath/layout.js';
import { fastpathSchema } from '../../src/fastpath/schema.js';
import { rules1024 } from '../../bench/harness/rules.js';
import { randomPackets, randomRules, reference, toConfig, xpWalk, type RefRule } from '../lib/fastpath-random.js';

const CAP = { prefixes: 16384, portPrefixes: 8192, rateLimitSources: 1024, blocklist: 1024, rules: 1024 };

function compile(rules: unknown[], crossproduct: CrossproductMode, interfaces: unknown[] = [{ name: 'lo', defaultPolicy: 'pass' }]) {
  const fastpath = fastpathSchema.parse({ interfaces, rules, capacity: CAP });
  const { desired, issues } = compileFastpath({ fastpath, aliases: new Map(), crossproduct });
  assert.deepEqual(issues, []);
  return desired;
}

describe('fast path crossproduct tables', () => {
  for (const [seed, n] of [[21, 1], [22, 5], [23, 30], [24, 64], [25, 100], [26, 300], [27, 700], [28, 1024], [29, 1024]] as const) {
    for (const counts of [true, false]) {
      it(`seed ${seed}: ${n} rules${counts ? '' : ', count rules made pass rules'}: the walk gives the reference's first match`, () => {
        let rules = randomRules(seed, n);
        if (!counts) rules = rules.map((r): RefRule => (r.action === 'count' ? { ...r, action: 'pass' } : r));
        const d = compile(toConfig(rules), 'on');
        assert.ok(d.genConfig.features & FEAT.crossproduct, d.classifier);
        let decided = 0;
        let eligible = 0;
        const packets = randomPackets(seed, rules, 1500);
        for (const p of packets) {
          const got = xpWalk(d, p);
          if (p.family === 4 && p.proto !== 'icmp') eligible++;
          if (got === 'fallback') continue;
          decided++;
          const ref = reference(rules, p);
          assert.equal(ref.counted.length, 0, 'the tables decide only where no count rule comes first');
          assert.equal(got, ref.rule, `${p.proto} ${p.src}:${p.sport} -> ${p.dst}:${p.dport} flags ${p.flags}`);
        }
        // without count rules only addresses the trie answers (prefixes longer than /24) fall back
        if (!counts) assert.ok(decided > eligible * 0.6, `the tables decided ${decided} of ${eligible} IPv4 TCP/UDP packets`);
      });
    }
  }

  it("the bench's 1024-rule set: small tables, two groups for UDP, first matches as the reference", () => {
    const cfg = rules1024('16.0.0.0/16', 'drop');
    const d = compile(cfg, 'auto');
    assert.match(d.classifier, /^crossproduct: \d+ cells/);
    assert.ok(d.xp!.cells.length < 1_000_000, d.classifier);
    const ip = (s: string) => s.split('.').reduce((a, b) => (a << 8n) | BigInt(b), 0n);
    const rules: RefRule[] = cfg.map((c) => ({
      name: c.name,
      action: c.action as 'drop' | 'pass',
      ...(c.source ? { family: 4 as const, source: [[ip((c.source as string).split('/')[0]!), Number((c.source as string).split('/')[1])]] as [bigint, number][] } : {}),
      ...(c.destination ? { family: 4 as const, destination: [[ip((c.destination as string).split('/')[0]!), Number((c.destination as string).split('/')[1])]] as [bigint, number][] } : {}),
      ...(c.protocol ? { protocol: [c.protocol as 'tcp' | 'udp'] } : {}),
      ...(c.destinationPorts !== undefined ? { destinationPorts: [Number(c.destinationPorts), Number(c.destinationPorts)] as [number, number] } : {}),
      ...(c.sourcePorts !== undefined ? { sourcePorts: (c.sourcePorts as string).split('-').map(Number) as [number, number] } : {}),
    }));
    for (const p of randomPackets(5, rules, 3000)) {
      const got = xpWalk(d, p);
      if (p.family === 4 && p.proto !== 'icmp') assert.notEqual(got, 'fallback');
      if (got !== 'fallback') assert.equal(got, reference(rules, p).rule);
    }
  });

  it('modes: auto keeps one-word rule sets on the bit vectors; off never builds tables', () => {
    const small = toConfig(randomRules(31, 20));
    assert.ok(!(compile(small, 'auto').genConfig.features & FEAT.crossproduct));
    assert.ok(compile(small, 'on').genConfig.features & FEAT.crossproduct);
    const big = toConfig(randomRules(32, 200));
    assert.ok(compile(big, 'auto').genConfig.features & FEAT.crossproduct);
    const off = compile(big, 'off');
    assert.ok(!(off.genConfig.features & FEAT.crossproduct));
    assert.equal(off.xp, undefined);
    assert.match(off.classifier, /crossproduct off/);
  });

  it('tables beyond the cap: the bit vectors, with the reason', () => {
    const d = compile(toConfig(randomRules(33, 300)), 'off');
    const entries = d.interfaces.map((i) => i.ingress.bits);
    const input = { rules: d.rules.length, features: d.genConfig.features, base4: d.genConfig.base[0], count: d.countRules, dir4: d.dir4, ports: d.ports, tcpFlags: d.tcpFlags, ifaceBits: entries };
    const ok = buildCrossproduct(input);
    assert.ok(!('reason' in ok));
    const capped = buildCrossproduct(input, 300);
    assert.ok('reason' in capped);
    assert.match(capped.reason, /more than 300 cells/);
  });

  it('interfaces and directions with different rules get their own classes', () => {
    const rules = [
      ...toConfig(randomRules(34, 80)),
      { name: 'only-b', interfaces: ['b'], protocol: 'udp', destinationPorts: 53, action: 'drop' },
      { name: 'out', direction: 'out', interfaces: ['a'], protocol: 'tcp', destinationPorts: 25, action: 'drop' },
    ];
    const d = compile(rules, 'on', [
      { name: 'a', defaultPolicy: 'pass', egress: { enabled: true, defaultPolicy: 'pass' } },
      { name: 'b', defaultPolicy: 'drop' },
    ]);
    assert.ok(d.genConfig.features & FEAT.crossproduct, d.classifier);
    const [a, b] = d.interfaces;
    const classes = new Set([a!.ingress.xpClass, a!.egressPolicy.xpClass, b!.ingress.xpClass]);
    assert.equal(classes.size, 3);
    const p = { family: 4 as const, src: 0x0b000001n, dst: 0x0c000001n, proto: 'udp' as const, sport: 40000, dport: 53, flags: 0 };
    const refB = reference(randomRules(34, 80), p);
    const gotB = xpWalk(d, p, b!.ingress.xpClass);
    if (gotB !== 'fallback') assert.equal(gotB, refB.rule >= 0 ? refB.rule : 80);
    const gotA = xpWalk(d, p, a!.ingress.xpClass);
    if (gotA !== 'fallback') assert.equal(gotA, refB.rule);
  });
});
