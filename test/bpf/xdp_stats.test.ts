/**
 * xdp_stats under bpf_prog_test_run: crafted frames in, verdicts and
 * per-class counters out.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { BpfObject, BpfProgram, PerCpuMap, codecs, sumPerCpu, XDP } from '../../src/bpf/index.js';
import { frame, rawFrame } from '../lib/packets.js';
import { missing } from '../lib/skip.js';

const CLASSES = ['ipv4', 'ipv6', 'non_ip', 'malformed', 'tcp', 'udp', 'icmp', 'other_l4', 'fragment', 'vlan'] as const;
type Class = (typeof CLASSES)[number];
const datarec = codecs.struct({ packets: codecs.u64, bytes: codecs.u64 });

const v4 = frame({ proto: 'tcp' });
const fixtures: { name: string; data: Buffer; verdict: number; counts: Partial<Record<Class, number>> }[] = [
  { name: 'IPv4 TCP', data: v4, verdict: XDP.PASS, counts: { ipv4: 1, tcp: 1 } },
  { name: 'IPv4 UDP', data: frame({ proto: 'udp' }), verdict: XDP.PASS, counts: { ipv4: 1, udp: 1 } },
  { name: 'IPv4 ICMP', data: frame({ proto: 'icmp' }), verdict: XDP.PASS, counts: { ipv4: 1, icmp: 1 } },
  { name: 'IPv4 GRE (other L4)', data: frame({ proto: 47 }), verdict: XDP.PASS, counts: { ipv4: 1, other_l4: 1 } },
  { name: 'IPv6 UDP', data: frame({ src: '2001:db8::1', dst: '2001:db8::2' }), verdict: XDP.PASS, counts: { ipv6: 1, udp: 1 } },
  { name: 'IPv6 ICMPv6', data: frame({ src: '2001:db8::1', dst: 'fe80::2', proto: 'icmpv6' }), verdict: XDP.PASS, counts: { ipv6: 1, icmp: 1 } },
  {
    name: 'IPv6 TCP behind hop-by-hop and destination options',
    data: frame({ src: '2001:db8::1', dst: '2001:db8::2', proto: 'tcp', ext: ['hop', 'dst'] }),
    verdict: XDP.PASS,
    counts: { ipv6: 1, tcp: 1 },
  },
  {
    name: 'IPv6 with more extension headers than the parser follows',
    data: frame({ src: '2001:db8::1', dst: '2001:db8::2', ext: ['hop', 'dst', 'routing', 'dst', 'dst', 'dst', 'dst'] }),
    verdict: XDP.DROP,
    counts: { malformed: 1 },
  },
  { name: 'IPv4 later fragment', data: frame({ fragOffset: 100 }), verdict: XDP.PASS, counts: { ipv4: 1, fragment: 1, udp: 1 } },
  { name: 'IPv4 first fragment', data: frame({ moreFragments: true }), verdict: XDP.PASS, counts: { ipv4: 1, fragment: 1, udp: 1 } },
  { name: 'VLAN-tagged IPv4', data: frame({ vlan: [100] }), verdict: XDP.PASS, counts: { vlan: 1, ipv4: 1, udp: 1 } },
  { name: 'QinQ IPv6', data: frame({ vlan: [10, 20], src: '2001:db8::1', dst: '2001:db8::2' }), verdict: XDP.PASS, counts: { vlan: 1, ipv6: 1, udp: 1 } },
  { name: 'ARP (non-IP)', data: rawFrame(0x0806), verdict: XDP.PASS, counts: { non_ip: 1 } },
  { name: 'Ethernet header only, IPv4 type', data: rawFrame(0x0800, 0), verdict: XDP.DROP, counts: { malformed: 1 } },
  { name: 'IPv4 truncated inside the IP header', data: v4.subarray(0, 14 + 12), verdict: XDP.DROP, counts: { malformed: 1 } },
  { name: 'IPv4 truncated inside the TCP header', data: v4.subarray(0, 14 + 20 + 10), verdict: XDP.DROP, counts: { malformed: 1 } },
  {
    name: 'IPv4 with IHL below 5',
    data: (() => {
      const f = Buffer.from(v4);
      f[14] = 0x44;
      return f;
    })(),
    verdict: XDP.DROP,
    counts: { malformed: 1 },
  },
  { name: 'IPv6 truncated', data: frame({ src: '2001:db8::1', dst: '2001:db8::2' }).subarray(0, 14 + 30), verdict: XDP.DROP, counts: { malformed: 1 } },
  { name: 'VLAN tag truncated', data: frame({ vlan: [5] }).subarray(0, 16), verdict: XDP.DROP, counts: { malformed: 1 } },
];

describe('xdp_stats under bpf_prog_test_run', { timeout: 300_000, skip: missing('root') }, () => {
  let obj: BpfObject;
  let prog: BpfProgram;
  let stats: PerCpuMap<number, { packets: bigint; bytes: bigint }>;

  before(async () => {
    obj = BpfObject.open('xdp_stats');
    await obj.load();
    prog = obj.program('xdp_stats');
    stats = obj.perCpuMap('stats', codecs.u32, datarec);
  });
  after(() => {
    stats.close();
    prog.close();
    obj.close();
  });

  const read = () => Object.fromEntries(CLASSES.map((c, i) => [c, sumPerCpu(stats.get(i)!)])) as Record<Class, { packets: bigint; bytes: bigint }>;

  for (const f of fixtures) {
    it(f.name, async () => {
      const before = read();
      const r = await prog.testRun({ data: f.data });
      assert.equal(r.retval, f.verdict, `verdict for ${f.name}`);
      const afterCounts = read();
      for (const c of CLASSES) {
        const want = BigInt(f.counts[c] ?? 0);
        assert.equal(afterCounts[c].packets - before[c].packets, want, `${c} packets`);
        assert.equal(afterCounts[c].bytes - before[c].bytes, want * BigInt(f.data.length), `${c} bytes`);
      }
    });
  }

  it('repeat counts every run', async () => {
    const before = read();
    await prog.testRun({ data: frame({ proto: 'tcp' }), repeat: 1000 });
    assert.equal(read().tcp.packets - before.tcp.packets, 1000n);
  });
});
