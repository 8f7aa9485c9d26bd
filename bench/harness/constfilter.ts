/**
 * PROTOTYPE (issue 13, bench only): Patronus' ingress filter for small rule
 * sets with the rules compiled into the program as load-time constants
 * (bench/trafficgen/const_filter.bpf.c): the rule set is written into the
 * object's .rodata before load, libbpf freezes it, and the verifier removes
 * every branch the constants decide. No map lookup for the rule set.
 *
 * constConfig() expands a rule list into atoms (one source prefix, one
 * destination prefix, one protocol, one port range per port field each) and
 * refuses what the program does not do (rate limits, drop events, egress,
 * aliases, countries, more than CONST_MAX_ATOMS atoms); encodeConstConfig()
 * lays them out as `struct const_config`. ConstFilter loads a program per
 * rule set and replaces the attached one atomically (XDP_FLAGS_REPLACE),
 * carrying the counter maps over (bpf_map__reuse_fd).
 */
import path from 'node:path';
import { BpfObject, BpfProgram, PerCpuMap, codecs, detachXdp } from '../../src/bpf/index.js';
import { projectRoot } from '../../src/bpf/addon.js';
import { prefixBytes, type Prefix } from '../../src/net/address.js';
import { resolveNetworkRef, resolvePortRef } from '../../src/aliases/aliases.js';
import { parseTcpFlags } from '../../src/fastpath/compile.js';
import type { FastpathConfig } from '../../src/fastpath/schema.js';
import { inNetns } from '../../src/system/netns.js';
import type { RuleSet } from './workload.js';

export const CONST_MAX_ATOMS = 8;
export const CONST_MAX_IFACES = 4;
const ATOM_SIZE = 88;
const CONFIG_SIZE = 40 + CONST_MAX_ATOMS * ATOM_SIZE;

const CF = { proto: 1, src: 2, dst: 4, sport: 8, dport: 16, flags: 32 } as const;
const ACT = { pass: 0, drop: 1, count: 3 } as const;
const PROTO_NUM: Record<string, number> = { tcp: 6, udp: 17, icmp: 1, icmpv6: 58, sctp: 132, gre: 47, esp: 50, ah: 51 };

export interface ConstAtom {
  rule: number;
  counterSlot: number;
  action: keyof typeof ACT;
  ifaces: number;
  family: 0 | 4 | 6;
  proto?: number;
  src?: Prefix;
  dst?: Prefix;
  sport?: [number, number];
  dport?: [number, number];
  flags?: { value: number; mask: number };
}

export interface ConstConfig {
  ifaces: { ifindex: number; defaultPolicy: 'pass' | 'drop' }[];
  atoms: ConstAtom[];
}

export interface ConstInterface {
  name: string;
  ifindex: number;
  defaultPolicy: 'pass' | 'drop';
}

/** The atoms of a rule list, or why the constant program cannot run it. counterSlot: the rule's index unless given. */
export function constConfig(rules: FastpathConfig['rules'], interfaces: ConstInterface[], counterSlot: (index: number) => number = (i) => i): ConstConfig | { reason: string } {
  if (interfaces.length === 0 || interfaces.length > CONST_MAX_IFACES) return { reason: `${interfaces.length} interfaces (1 to ${CONST_MAX_IFACES})` };
  const atoms: ConstAtom[] = [];
  const none = new Map();
  for (const [index, r] of rules.entries()) {
    if (r.action === 'rate-limit') return { reason: `rule ${r.name}: rate limits need the generation program` };
    if (r.log) return { reason: `rule ${r.name}: drop events need the generation program` };
    if (r.direction === 'out') return { reason: `rule ${r.name}: egress rules need the generation program` };
    if (r.countries?.length || r.destinationCountries?.length) return { reason: `rule ${r.name}: countries need the generation program` };
    let ifaces = 0;
    for (const n of r.interfaces.length ? r.interfaces : interfaces.map((i) => i.name)) {
      const i = interfaces.findIndex((x) => x.name === n);
      if (i < 0) return { reason: `rule ${r.name}: interface ${n} is not a fastpath interface` };
      ifaces |= 1 << i;
    }
    const nets = (v: string | string[] | undefined): (Prefix | undefined)[] => {
      if (v === undefined) return [undefined];
      return (Array.isArray(v) ? v : [v]).flatMap((ref) => resolveNetworkRef(ref, none).prefixes);
    };
    const ports = (v: FastpathConfig['rules'][number]['sourcePorts']): ([number, number] | undefined)[] => {
      if (v === undefined) return [undefined];
      return (Array.isArray(v) ? v : [v]).flatMap((ref) => resolvePortRef(ref, none)).map((p) => [p.from, p.to] as [number, number]);
    };
    const protos = r.protocol === undefined ? [undefined] : (Array.isArray(r.protocol) ? r.protocol : [r.protocol]).map((p) => (typeof p === 'number' ? p : PROTO_NUM[p]!));
    let dports = ports(r.destinationPorts);
    if (r.icmpType !== undefined) {
      const t = r.icmpType << 8;
      dports = [r.icmpCode !== undefined ? [t | r.icmpCode, t | r.icmpCode] : [t, t | 0xff]];
    }
    const flags = r.tcpFlags === undefined ? undefined : parseTcpFlags(r.tcpFlags);
    for (const proto of new Set(protos))
      for (const src of nets(r.source))
        for (const dst of nets(r.destination)) {
          if (src && dst && src.family !== dst.family) continue; // never matches
          for (const sport of ports(r.sourcePorts))
            for (const dport of dports) {
              atoms.push({ rule: index, counterSlot: counterSlot(index), action: r.action as keyof typeof ACT, ifaces, family: src?.family ?? dst?.family ?? 0, proto, src, dst, sport, dport, flags });
              if (atoms.length > CONST_MAX_ATOMS) return { reason: `more than ${CONST_MAX_ATOMS} atoms (prefix x port combinations)` };
            }
        }
  }
  return { ifaces: interfaces.map((i) => ({ ifindex: i.ifindex, defaultPolicy: i.defaultPolicy })), atoms };
}

function maskOf(p: Prefix): Buffer {
  const m = Buffer.alloc(p.family === 4 ? 4 : 16);
  for (let i = 0; i < p.length; i++) m[i >> 3]! |= 0x80 >> (i & 7);
  return m;
}

/** `struct const_config` (const_filter.bpf.c), little-endian host. */
export function encodeConstConfig(c: ConstConfig): Buffer {
  const b = Buffer.alloc(CONFIG_SIZE);
  b.writeUInt32LE(c.atoms.length, 0);
  b.writeUInt32LE(c.ifaces.length, 4);
  c.ifaces.forEach((i, n) => {
    b.writeUInt32LE(i.ifindex, 8 + 4 * n);
    b.writeUInt32LE(i.defaultPolicy === 'drop' ? ACT.drop : ACT.pass, 24 + 4 * n);
  });
  c.atoms.forEach((a, n) => {
    const o = 40 + n * ATOM_SIZE;
    let fields = 0;
    b[o] = a.family;
    if (a.proto !== undefined) {
      fields |= CF.proto;
      b[o + 1] = a.proto;
    }
    b[o + 2] = ACT[a.action];
    b[o + 4] = a.ifaces;
    if (a.flags) {
      fields |= CF.flags;
      b[o + 5] = a.flags.value;
      b[o + 6] = a.flags.mask;
    }
    b.writeUInt16LE(a.rule, o + 8);
    b.writeUInt16LE(a.counterSlot, o + 10);
    if (a.sport) {
      fields |= CF.sport;
      b.writeUInt16LE(a.sport[0], o + 12);
      b.writeUInt16LE(a.sport[1], o + 14);
    }
    if (a.dport) {
      fields |= CF.dport;
      b.writeUInt16LE(a.dport[0], o + 16);
      b.writeUInt16LE(a.dport[1], o + 18);
    }
    // the address bytes as the packet holds them: the program compares loads of the same bytes
    if (a.src) {
      fields |= CF.src;
      prefixBytes(a.src).copy(b, o + 24);
      maskOf(a.src).copy(b, o + 40);
    }
    if (a.dst) {
      fields |= CF.dst;
      prefixBytes(a.dst).copy(b, o + 56);
      maskOf(a.dst).copy(b, o + 72);
    }
    b[o + 3] = fields;
  });
  return b;
}

export const constObjectPath = () => path.join(projectRoot(), 'bench/trafficgen/build/const_filter.bpf.o');

/** One loaded constant program, and the counter maps it shares with its predecessor. */
export class ConstFilter {
  private constructor(
    private readonly obj: BpfObject,
    readonly prog: BpfProgram,
    readonly verdicts: PerCpuMap<number, Buffer>,
    readonly rules: PerCpuMap<number, Buffer>,
  ) {}

  /** Loads the program for `config`; with `previous`, its counters and blocklist maps are reused (carried across the swap). */
  static async load(config: ConstConfig, previous?: ConstFilter, program: 'xdp_const' | 'xdp_floor' = 'xdp_const'): Promise<ConstFilter> {
    const obj = BpfObject.open(constObjectPath());
    try {
      obj.setMapInitialValue('.rodata', encodeConstConfig(config));
      const info = previous?.obj.maps() ?? [];
      const shared = ['rule_stats', 'verdict_stats', 'block_active', 'block_v4', 'block_v6'].flatMap((m) => {
        const i = info.find((x) => x.name === m);
        return i && previous ? [[m, previous.obj.map(m, codecs.bytes(i.keySize), codecs.bytes(i.valueSize))] as const] : [];
      });
      try {
        for (const [m, h] of shared) obj.reuseMap(m, h);
        await obj.load();
      } finally {
        for (const [, h] of shared) h.close();
      }
      return new ConstFilter(obj, obj.program(program), obj.perCpuMap('verdict_stats', codecs.u32, codecs.bytes(16)), obj.perCpuMap('rule_stats', codecs.u32, codecs.bytes(24)));
    } catch (e) {
      obj.close();
      throw e;
    }
  }

  /** Packets counted under a verdict (filter_common.h's enum filter_verdict, ingress). */
  verdictPackets(verdict: number): bigint {
    return (this.verdicts.get(verdict) ?? []).reduce((a, v) => a + v.readBigUInt64LE(0), 0n);
  }

  rulePackets(slot: number): bigint {
    return (this.rules.get(slot) ?? []).reduce((a, v) => a + v.readBigUInt64LE(0), 0n);
  }

  detach(ifindex: number, inNs: <T>(fn: () => T) => T = (fn) => fn()): void {
    inNs(() => detachXdp(ifindex, 'native', this.prog));
  }

  close(): void {
    this.verdicts.close();
    this.rules.close();
    this.prog.close();
    this.obj.close();
  }
}

/**
 * The prototype as a bench path (`--paths xdp-const`): each install loads a
 * program with the rule set as constants and swaps it in atomically
 * (XDP_FLAGS_REPLACE against the attached one), carrying the counters over.
 * `floor` instead: the floor program (read the Ethernet header, drop IPv4),
 * the least any XDP program costs on this path.
 */
export class XdpConstPath {
  readonly id: string;
  readonly label: string;
  private cur?: ConstFilter;
  private attached = false;

  constructor(
    private readonly ctx: { receiver: { name: string }; dev: string; ifindex: number },
    private readonly floor = false,
  ) {
    this.id = floor ? 'xdp-floor' : 'xdp-const';
    this.label = floor ? 'XDP, floor: read the Ethernet header, drop' : 'XDP, PROTOTYPE: Patronus rules as load-time constants';
  }

  private inNs<T>(fn: () => T): T {
    return inNetns(this.ctx.receiver.name, fn);
  }

  async installRules(rules: FastpathConfig['rules']): Promise<number> {
    const t0 = performance.now();
    const c = constConfig(rules, [{ name: this.ctx.dev, ifindex: this.ctx.ifindex, defaultPolicy: 'pass' }]);
    if ('reason' in c) throw new Error(`${this.id}: ${c.reason}`);
    const next = await ConstFilter.load(c, this.cur, this.floor ? 'xdp_floor' : 'xdp_const');
    const prev = this.cur;
    try {
      // atomic: replaces exactly the program attached now, or fails
      this.inNs(() => next.prog.attachXdp(this.ctx.ifindex, { mode: 'native', ...(this.attached && prev ? { expected: prev.prog } : {}) }));
    } catch (e) {
      next.close();
      throw e;
    }
    this.cur = next;
    this.attached = true;
    prev?.close();
    return (performance.now() - t0) / 1000;
  }

  install(rules: RuleSet): Promise<number> {
    return this.installRules(rules.prefixes.length ? [{ name: 'bench-drop', source: rules.prefixes, action: 'drop', direction: 'in', interfaces: [] }] : []);
  }

  swap(rules: RuleSet): Promise<number> {
    return this.install(rules);
  }

  unsupported(rules: RuleSet): string | undefined {
    if (rules.prefixes.length > CONST_MAX_ATOMS) return `more than ${CONST_MAX_ATOMS} prefixes (prototype: small rule sets only)`;
    if (this.floor && (rules.family !== 4 || rules.prefixes.length !== 1)) return 'the floor drops every IPv4 frame: one-prefix IPv4 scenarios only';
    return undefined;
  }

  /** rule drops (the floor counts nothing) */
  async drops(): Promise<number> {
    return this.cur && !this.floor ? Number(this.cur.verdictPackets(1)) : NaN;
  }

  async classifierNs(frame: Buffer, repeat: number): Promise<number> {
    if (!this.cur) throw new Error(`${this.id}: nothing installed`);
    return (await this.cur.prog.testRun({ data: frame, repeat })).duration;
  }

  async remove(): Promise<void> {
    if (this.cur && this.attached) this.cur.detach(this.ctx.ifindex, (fn) => this.inNs(fn));
    this.attached = false;
    this.cur?.close();
    this.cur = undefined;
  }

  async close(): Promise<void> {
    await this.remove();
  }
}
