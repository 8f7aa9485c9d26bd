/**
 * Verdict parity: random rule sets (IPv4 and IPv6 prefixes of every length,
 * dense /24 and /48 lists, protocols, port ranges, count rules) compiled and written
 * through the real data plane, and random packets classified by the kernel
 * (bpf_prog_test_run) and by a reference classifier written from the rule
 * semantics alone (first matching rule in order; count rules never decide).
 * Guards every lookup shortcut the program takes (DIR-16-8 chunks and
 * bitmaps, the IPv6 /16 table and per-length hash, port arrays, skipped lookups) against the plain definition.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { XDP } from '../../src/bpf/index.js';
import { compileFastpath } from '../../src/fastpath/compile.js';
import { FastpathDataPlane, removePins } from '../../src/fastpath/dataplane.js';
import { fastpathSchema } from '../../src/fastpath/schema.js';
import { frame } from '../lib/packets.js';
import { missing } from '../lib/skip.js';
import { rng, bits, mask, inPrefix, fmtAddr as fmt } from '../lib/fastpath-random.js';

const CAP = { prefixes: 8192, portPrefixes: 4096, rateLimitSources: 1024, blocklist: 1024 };

interface RefRule {
  name: string;
  family?: 4 | 6;
  source?: [bigint, number][];
  destination?: [bigint, number][];
  protocol?: ('tcp' | 'udp')[];
  sourcePorts?: [number, number];
  destinationPorts?: [number, number];
  action: 'drop' | 'pass' | 'count';
}

interface Packet {
  family: 4 | 6;
  src: bigint;
  dst: bigint;
  proto: 'tcp' | 'udp';
  sport: number;
  dport: number;
}

function randomAddr(f: 4 | 6, r: () => number): bigint {
  const region = BigInt(Math.floor(r() * 3));
  if (f === 4) return (((10n + region) << 24n) | BigInt(Math.floor(r() * 4)) << 16n | BigInt(Math.floor(r() * 2 ** 16))) & 0xffffffffn;
  let a = (0x2001n << 112n) | (0xdb8n << 96n) | (region << 80n) | (BigInt(Math.floor(r() * 4)) << 64n);
  a |= BigInt(Math.floor(r() * 2 ** 32)) << 32n;
  a |= BigInt(Math.floor(r() * 2 ** 32));
  return a;
}

function randomPrefix(f: 4 | 6, r: () => number): [bigint, number] {
  const lens = f === 4 ? [8, 12, 16, 18, 22, 24, 24, 26, 32] : [16, 32, 40, 48, 56, 64, 64, 72, 96, 128];
  const len = lens[Math.floor(r() * lens.length)]!;
  return [randomAddr(f, r) & mask(f, len), len];
}

function randomRules(seed: number, n: number): RefRule[] {
  const r = rng(seed);
  const rules: RefRule[] = [];
  for (let i = 0; i < n; i++) {
    const rule: RefRule = { name: `r${i}`, action: (['drop', 'pass', 'count'] as const)[Math.floor(r() * 3)]! };
    if (r() < 0.8) {
      const f: 4 | 6 = r() < 0.5 ? 4 : 6;
      rule.family = f;
      const k = r() < 0.15 ? 300 : 1 + Math.floor(r() * 3);
      const list = (): [bigint, number][] => {
        if (k === 300 && f === 4) {
          // a dense list of /24s in one /16 (a DIR chunk or bitmap), every other one
          const base = randomAddr(4, r) & 0xffff0000n;
          return Array.from({ length: 128 }, (_, j) => [base | (BigInt(2 * j + (seed & 1)) << 8n), 24] as [bigint, number]);
        }
        if (k === 300) {
          // a dense list of /48s in one /32 (the IPv6 first stage's hash), every other one
          const base = randomAddr(6, r) & (((1n << 32n) - 1n) << 96n);
          return Array.from({ length: 128 }, (_, j) => [base | (BigInt(2 * j + (seed & 1)) << 80n), 48] as [bigint, number]);
        }
        return Array.from({ length: Math.min(k, 5) }, () => randomPrefix(f, r));
      };
      if (r() < 0.7) rule.source = list();
      if (r() < 0.4) rule.destination = list();
      if (!rule.source && !rule.destination) rule.source = list();
    }
    if (r() < 0.5) {
      rule.protocol = r() < 0.5 ? ['tcp'] : r() < 0.5 ? ['udp'] : ['tcp', 'udp'];
      const range = (): [number, number] => {
        const a = Math.floor(r() * 2000);
        return [a, a + Math.floor(r() * 300)];
      };
      if (r() < 0.5) rule.destinationPorts = range();
      if (r() < 0.3) rule.sourcePorts = range();
    }
    rules.push(rule);
  }
  return rules;
}

function matches(rule: RefRule, p: Packet): boolean {
  if (rule.family && rule.family !== p.family) return false;
  if (rule.source && !rule.source.some((x) => inPrefix(p.family, p.src, x))) return false;
  if (rule.destination && !rule.destination.some((x) => inPrefix(p.family, p.dst, x))) return false;
  if (rule.protocol && !rule.protocol.includes(p.proto)) return false;
  if (rule.sourcePorts && (p.sport < rule.sourcePorts[0] || p.sport > rule.sourcePorts[1])) return false;
  if (rule.destinationPorts && (p.dport < rule.destinationPorts[0] || p.dport > rule.destinationPorts[1])) return false;
  return true;
}

/** The reference: first matching rule that is not a count rule; none: the default (pass). */
function reference(rules: RefRule[], p: Packet): number {
  for (const rule of rules) if (rule.action !== 'count' && matches(rule, p)) return rule.action === 'drop' ? XDP.DROP : XDP.PASS;
  return XDP.PASS;
}

function toConfig(rules: RefRule[]): unknown[] {
  return rules.map((x) => ({
    name: x.name,
    action: x.action,
    ...(x.source ? { source: x.source.map(([a, l]) => `${fmt(x.family!, a)}/${l}`) } : {}),
    ...(x.destination ? { destination: x.destination.map(([a, l]) => `${fmt(x.family!, a)}/${l}`) } : {}),
    ...(x.protocol ? { protocol: x.protocol } : {}),
    ...(x.sourcePorts ? { sourcePorts: `${x.sourcePorts[0]}-${x.sourcePorts[1]}` } : {}),
    ...(x.destinationPorts ? { destinationPorts: `${x.destinationPorts[0]}-${x.destinationPorts[1]}` } : {}),
  }));
}

/** Packets: half drawn from inside some rule's prefixes and port ranges, half random. */
function randomPackets(seed: number, rules: RefRule[], n: number): Packet[] {
  const r = rng(seed * 31 + 7);
  const out: Packet[] = [];
  const inside = (f: 4 | 6, list: [bigint, number][] | undefined): bigint => {
    if (!list || r() < 0.3) return randomAddr(f, r);
    const [p, len] = list[Math.floor(r() * list.length)]!;
    const host = f === 4 ? BigInt(Math.floor(r() * 2 ** 32)) : (BigInt(Math.floor(r() * 2 ** 32)) << 32n) | BigInt(Math.floor(r() * 2 ** 32));
    return p | (host & ~mask(f, len) & ((1n << BigInt(bits(f))) - 1n));
  };
  const port = (range: [number, number] | undefined) => (range && r() < 0.7 ? range[0] + Math.floor(r() * (range[1] - range[0] + 1)) : Math.floor(r() * 2400));
  for (let i = 0; i < n; i++) {
    const rule = rules[Math.floor(r() * rules.length)]!;
    const family: 4 | 6 = rule.family ?? (r() < 0.5 ? 4 : 6);
    out.push({
      family,
      src: inside(family, rule.source),
      dst: inside(family, rule.destination),
      proto: rule.protocol ? rule.protocol[Math.floor(r() * rule.protocol.length)]! : r() < 0.5 ? 'tcp' : 'udp',
      sport: port(rule.sourcePorts),
      dport: port(rule.destinationPorts),
    });
  }
  return out;
}

describe('fast path verdict parity with a reference classifier (random rule sets)', { timeout: 300_000, skip: missing('root') }, () => {
  let pinDir: string;
  let dp: FastpathDataPlane;

  before(async () => {
    pinDir = mkdtempSync('/sys/fs/bpf/pt-fastpath-parity-');
    dp = await FastpathDataPlane.open({ pinDir, capacity: CAP });
  });
  after(() => {
    dp?.close();
    if (pinDir) removePins(pinDir);
  });

  for (const [seed, n] of [[1, 12], [2, 40], [3, 90], [4, 200]] as const) {
    it(`seed ${seed}: ${n} rules, 400 packets`, async () => {
      const rules = randomRules(seed, n);
      const fastpath = fastpathSchema.parse({ interfaces: [{ name: 'lo', defaultPolicy: 'pass' }], rules: toConfig(rules), capacity: { ...CAP, rules: 1024 } });
      const { desired, issues } = compileFastpath({ fastpath, aliases: new Map() });
      assert.deepEqual(issues, []);
      await dp.apply(desired, () => 1);
      let drops = 0;
      const before = new Map(dp.ruleCounters().map((c) => [c.name, c.packets]));
      const counted = new Map<string, bigint>();
      for (const p of randomPackets(seed, rules, 400)) {
        // count rules ahead of the deciding rule see the packet
        for (const rule of rules) {
          if (!matches(rule, p)) continue;
          if (rule.action !== 'count') break;
          counted.set(rule.name, (counted.get(rule.name) ?? 0n) + 1n);
        }
        const data = frame({ src: fmt(p.family, p.src), dst: fmt(p.family, p.dst), proto: p.proto, sport: p.sport, dport: p.dport });
        const want = reference(rules, p);
        const got = (await dp.xdp.testRun({ data })).retval;
        assert.equal(got, want, `${p.proto} ${fmt(p.family, p.src)}:${p.sport} -> ${fmt(p.family, p.dst)}:${p.dport} (lookups ${dp.lookups().join(',')})`);
        if (want === XDP.DROP) drops++;
      }
      assert.ok(drops > 0 && drops < 400, `the packets exercise both verdicts (${drops} drops)`);
      for (const c of dp.ruleCounters()) {
        const rule = rules.find((x) => x.name === c.name)!;
        if (rule.action !== 'count') continue;
        assert.equal(c.packets - (before.get(c.name) ?? 0n), counted.get(c.name) ?? 0n, `count rule ${c.name} (position ${c.index})`);
      }
    });
  }
});
