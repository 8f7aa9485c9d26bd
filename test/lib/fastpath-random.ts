/**
 * Random fast-path rule sets and packets with a reference classifier written
 * from the rule semantics alone (first matching rule in order; count rules
 * count and never decide). IPv4-heavy, for the crossproduct tables: prefixes
 * of every length clustered so they nest and overlap, dense /24 lists,
 * protocols (TCP, UDP, both, ICMP, none), port ranges and single ports, TCP
 * flags, count rules, rules with no match field at all.
 */
import { frame } from './packets.js';
import type { FastpathDesired } from '../../src/fastpath/compile.js';
import { packDir4, resolveDir4 } from '../../src/fastpath/generation.js';
import { DIR4_CLASSES, FEAT, FILTER_MAX_RULES, XP_MAX_STATE, XP_NONE, XP_SETTLED } from '../../src/fastpath/layout.js';

export interface RefRule {
  name: string;
  family?: 4 | 6;
  source?: [bigint, number][];
  destination?: [bigint, number][];
  protocol?: ('tcp' | 'udp' | 'icmp')[];
  sourcePorts?: [number, number];
  destinationPorts?: [number, number];
  /** value/mask over the TCP flags byte */
  tcpFlags?: { text: string; value: number; mask: number };
  action: 'drop' | 'pass' | 'count';
}

export interface RefPacket {
  family: 4 | 6;
  src: bigint;
  dst: bigint;
  proto: 'tcp' | 'udp' | 'icmp';
  sport: number;
  dport: number;
  flags: number;
}

export function rng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const bits = (f: 4 | 6) => (f === 4 ? 32 : 128);
export const mask = (f: 4 | 6, len: number) => (len === 0 ? 0n : ((1n << BigInt(len)) - 1n) << BigInt(bits(f) - len));
export const inPrefix = (f: 4 | 6, a: bigint, [p, len]: [bigint, number]) => (a & mask(f, len)) === p;

export function fmtAddr(f: 4 | 6, a: bigint): string {
  if (f === 4) return [24n, 16n, 8n, 0n].map((s) => String((a >> s) & 255n)).join('.');
  return Array.from({ length: 8 }, (_, i) => ((a >> BigInt(112 - 16 * i)) & 0xffffn).toString(16)).join(':');
}

function randomAddr(f: 4 | 6, r: () => number): bigint {
  const region = BigInt(Math.floor(r() * 3));
  if (f === 4) return (((10n + region) << 24n) | (BigInt(Math.floor(r() * 4)) << 16n) | BigInt(Math.floor(r() * 2 ** 16))) & 0xffffffffn;
  return (0x2001n << 112n) | (0xdb8n << 96n) | (region << 80n) | (BigInt(Math.floor(r() * 2 ** 32)) << 32n) | BigInt(Math.floor(r() * 2 ** 32));
}

function randomPrefix(f: 4 | 6, r: () => number): [bigint, number] {
  const lens = f === 4 ? [8, 12, 16, 18, 22, 24, 24, 24, 26, 32] : [16, 32, 48, 64, 96];
  const len = lens[Math.floor(r() * lens.length)]!;
  return [randomAddr(f, r) & mask(f, len), len];
}

const FLAGS: [string, number, number][] = [
  ['syn,!ack', 0x02, 0x12],
  ['ack', 0x10, 0x10],
  ['rst', 0x04, 0x04],
];

export function randomRules(seed: number, n: number): RefRule[] {
  const r = rng(seed);
  const rules: RefRule[] = [];
  for (let i = 0; i < n; i++) {
    const x = r();
    const rule: RefRule = { name: `r${i}`, action: x < 0.1 ? 'count' : x < 0.6 ? 'drop' : 'pass' };
    if (r() < 0.75) {
      const f: 4 | 6 = r() < 0.9 ? 4 : 6;
      rule.family = f;
      const list = (): [bigint, number][] => {
        if (f === 4 && r() < 0.08) {
          const base = randomAddr(4, r) & 0xffff0000n;
          return Array.from({ length: 64 }, (_, j) => [base | (BigInt(2 * j + (seed & 1)) << 8n), 24] as [bigint, number]);
        }
        return Array.from({ length: 1 + Math.floor(r() * 3) }, () => randomPrefix(f, r));
      };
      if (r() < 0.7) rule.source = list();
      if (r() < 0.4) rule.destination = list();
      if (!rule.source && !rule.destination) rule.destination = list();
    }
    const p = r();
    if (p < 0.6) {
      rule.protocol = p < 0.25 ? ['tcp'] : p < 0.5 ? ['udp'] : p < 0.55 ? ['tcp', 'udp'] : ['icmp'];
      if (rule.protocol[0] !== 'icmp') {
        const range = (): [number, number] => {
          const a = Math.floor(r() * 2000);
          return r() < 0.4 ? [a, a] : [a, a + Math.floor(r() * 300)];
        };
        if (r() < 0.6) rule.destinationPorts = range();
        if (r() < 0.3) rule.sourcePorts = range();
      }
      if (rule.protocol.length === 1 && rule.protocol[0] === 'tcp' && r() < 0.25) {
        const [text, value, m] = FLAGS[Math.floor(r() * FLAGS.length)]!;
        rule.tcpFlags = { text, value, mask: m };
      }
    }
    rules.push(rule);
  }
  return rules;
}

export function matches(rule: RefRule, p: RefPacket): boolean {
  if (rule.family && rule.family !== p.family) return false;
  if (rule.source && !rule.source.some((x) => inPrefix(p.family, p.src, x))) return false;
  if (rule.destination && !rule.destination.some((x) => inPrefix(p.family, p.dst, x))) return false;
  if (rule.protocol) {
    const proto = p.proto === 'icmp' && p.family === 6 ? 'icmpv6' : p.proto;
    if (!rule.protocol.includes(proto as 'icmp')) return false;
  }
  if (rule.sourcePorts && (p.proto === 'icmp' || p.sport < rule.sourcePorts[0] || p.sport > rule.sourcePorts[1])) return false;
  if (rule.destinationPorts && (p.proto === 'icmp' || p.dport < rule.destinationPorts[0] || p.dport > rule.destinationPorts[1])) return false;
  if (rule.tcpFlags && (p.proto !== 'tcp' || (p.flags & rule.tcpFlags.mask) !== rule.tcpFlags.value)) return false;
  return true;
}

/** The deciding rule's index (-1: none, the default) and the count rules ahead of it. */
export function reference(rules: RefRule[], p: RefPacket): { rule: number; counted: number[] } {
  const counted: number[] = [];
  for (let i = 0; i < rules.length; i++) {
    const rule = rules[i]!;
    if (!matches(rule, p)) continue;
    if (rule.action === 'count') {
      counted.push(i);
      continue;
    }
    return { rule: i, counted };
  }
  return { rule: -1, counted };
}

export function toConfig(rules: RefRule[]): unknown[] {
  return rules.map((x) => ({
    name: x.name,
    action: x.action,
    ...(x.source ? { source: x.source.map(([a, l]) => `${fmtAddr(x.family!, a)}/${l}`) } : {}),
    ...(x.destination ? { destination: x.destination.map(([a, l]) => `${fmtAddr(x.family!, a)}/${l}`) } : {}),
    ...(x.protocol ? { protocol: x.protocol } : {}),
    ...(x.sourcePorts ? { sourcePorts: `${x.sourcePorts[0]}-${x.sourcePorts[1]}` } : {}),
    ...(x.destinationPorts ? { destinationPorts: `${x.destinationPorts[0]}-${x.destinationPorts[1]}` } : {}),
    ...(x.tcpFlags ? { tcpFlags: x.tcpFlags.text } : {}),
  }));
}

/** Packets: most drawn from inside some rule's prefixes and ports, the rest random; mostly IPv4 TCP/UDP. */
export function randomPackets(seed: number, rules: RefRule[], n: number): RefPacket[] {
  const r = rng(seed * 31 + 7);
  const out: RefPacket[] = [];
  const inside = (f: 4 | 6, list: [bigint, number][] | undefined): bigint => {
    if (!list || r() < 0.3) return randomAddr(f, r);
    const [p, len] = list[Math.floor(r() * list.length)]!;
    const host = f === 4 ? BigInt(Math.floor(r() * 2 ** 32)) : (BigInt(Math.floor(r() * 2 ** 32)) << 32n) | BigInt(Math.floor(r() * 2 ** 32));
    return p | (host & ~mask(f, len) & ((1n << BigInt(bits(f))) - 1n));
  };
  const port = (range: [number, number] | undefined) => (range && r() < 0.7 ? range[0] + Math.floor(r() * (range[1] - range[0] + 1)) : Math.floor(r() * 2400));
  for (let i = 0; i < n; i++) {
    const rule = rules[Math.floor(r() * rules.length)]!;
    const family: 4 | 6 = rule.family ?? (r() < 0.9 ? 4 : 6);
    const proto = rule.protocol ? rule.protocol[Math.floor(r() * rule.protocol.length)]! : r() < 0.05 ? 'icmp' : r() < 0.5 ? 'tcp' : 'udp';
    const flags = rule.tcpFlags && r() < 0.6 ? rule.tcpFlags.value : [0x02, 0x10, 0x12, 0x04, 0x18][Math.floor(r() * 5)]!;
    out.push({ family, src: inside(family, rule.source), dst: inside(family, rule.destination), proto, sport: port(rule.sourcePorts), dport: port(rule.destinationPorts), flags });
  }
  return out;
}

export function packetFrame(p: RefPacket): Buffer {
  const src = fmtAddr(p.family, p.src);
  const dst = fmtAddr(p.family, p.dst);
  if (p.proto === 'icmp') return frame({ src, dst, proto: p.family === 4 ? 'icmp' : 'icmpv6', icmpType: 8, icmpCode: 0 });
  return frame({ src, dst, proto: p.proto, sport: p.sport, dport: p.dport, ...(p.proto === 'tcp' ? { tcpFlags: p.flags } : {}) });
}

/**
 * The crossproduct walk of the program (filter_prog.h classify_xp) in
 * TypeScript: the deciding rule's index, -1 for none, or 'fallback' where
 * the program takes the bit vectors.
 */
const PACKED = new WeakMap<object, ReturnType<typeof packDir4>>();

export function xpWalk(d: FastpathDesired, p: RefPacket, ifaceClass = d.interfaces[0]?.ingress.xpClass ?? 0): number | 'fallback' {
  const gc = d.genConfig;
  if (!d.xp || !gc.xp || !(gc.features & FEAT.crossproduct)) return 'fallback';
  if (p.family !== 4 || p.proto === 'icmp') return 'fallback';
  const udp = p.proto === 'udp' ? 1 : 0;
  const ch = gc.xp[udp];
  const used = ch.left | ch.right;
  const cell = (i: number) => (i < d.xp!.cells.length ? d.xp!.cells[i]! : 0);
  let l = ifaceClass;
  let r = 0;
  let ls = 0;
  let rs = 0;
  const wants = (f: number) => (used & (1 << f)) !== 0 && !(ch.left & (1 << f) ? ls : rs);
  const step = (f: number, c: number) => {
    let s = 0;
    if (ch.direct & (1 << f)) {
      // the program reads the chain's settle bitmap (the soff cells say the same)
      if (ch.settle & (1 << f)) s = ch.settleClasses?.[ch.left & (1 << f) ? 0 : 1].includes(c) ? 1 : 0;
    } else {
      c = cell(ch.off[f]! + (ch.left & (1 << f) ? l : r) * ch.n[f]! + c);
      s = c & XP_SETTLED;
      c &= ~XP_SETTLED;
    }
    if (ch.left & (1 << f)) {
      l = c;
      ls = s;
    } else {
      r = c;
      rs = s;
    }
  };
  const addr = (a: bigint) => [Number((a >> 24n) & 255n), Number((a >> 16n) & 255n), Number((a >> 8n) & 255n), Number(a & 255n)] as [number, number, number, number];
  for (const [f, field, a] of [[0, 'src_v4', p.src], [1, 'dst_v4', p.dst]] as const) {
    if (!wants(f)) continue;
    const dir = d.dir4[field]!;
    let packed = PACKED.get(dir);
    if (!packed) PACKED.set(dir, (packed = packDir4(dir)));
    const c = resolveDir4(packed, addr(a));
    if (c >= DIR4_CLASSES) return 'fallback';
    step(f, c);
  }
  for (const [f, field, port] of [[2, 'sport', p.sport], [3, 'dport', p.dport]] as const) {
    if (!wants(f)) continue;
    step(f, d.ports[field]![udp ? 'udp' : 'tcp'][port]!);
  }
  if (wants(4)) step(4, cell(p.flags));
  if (l >= XP_MAX_STATE || r >= XP_MAX_STATE) return 'fallback';
  const res = cell(ch.finalOff + l * ch.rightStates + r);
  if (res === XP_NONE) return -1;
  if (res >= FILTER_MAX_RULES) return 'fallback';
  return res;
}
