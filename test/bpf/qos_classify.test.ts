/**
 * qos_classify under bpf_prog_test_run: a table compiled from a real config
 * is written into the pinned maps; crafted frames in, verdict (classified or
 * not) and the per-entry hit counters out, which say which rule (and so which
 * class) took each packet.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { BpfProgram } from '../../src/bpf/index.js';
import { validateDocument } from '../../src/domains.js';
import type { CompileContext } from '../../src/apply/subsystem.js';
import { qosSubsystem } from '../../src/services/qos/subsystem.js';
import { ClassifierMaps, encodeTable, loadClassifier, unpinClassifier } from '../../src/services/qos/classifier.js';
import type { ClassifierTable } from '../../src/services/qos/compile.js';
import { frame } from '../lib/packets.js';
import { missing } from '../lib/skip.js';

const UNMATCHED = -1;
const doc = {
  interfaces: [{ name: 'wan0' }],
  aliases: [{ name: 'office', type: 'network', entries: ['10.20.0.0/16', '2001:db8:20::/48'] }],
  qos: {
    interfaces: [
      {
        interface: 'wan0',
        egress: {
          type: 'htb',
          rate: '100mbit',
          defaultClass: 'bulk',
          classes: [
            { name: 'voice', rate: '20mbit' },
            { name: 'web', rate: '20mbit' },
            { name: 'office', rate: '20mbit' },
            { name: 'ping', rate: '1mbit' },
            { name: 'bulk', rate: '30mbit' },
          ],
          rules: [
            { class: 'voice', protocol: 'udp', destinationPort: '10000-20000' }, // entry 0
            { class: 'web', protocol: 'tcp', destinationPort: [80, 443] }, // entries 1, 2
            { class: 'office', source: 'office' }, // entry 3
            { class: 'ping', protocol: 'icmp' }, // entry 4
            { class: 'web', protocol: 'tcp', sourcePort: 8080, family: 'ipv6' }, // entry 5
          ],
        },
      },
    ],
  },
};

const fixtures: { name: string; data: Buffer; entry: number }[] = [
  { name: 'UDP to 15000 -> voice', data: frame({ proto: 'udp', dport: 15000 }), entry: 0 },
  { name: 'UDP to 9999 (below the range) -> default', data: frame({ proto: 'udp', dport: 9999 }), entry: UNMATCHED },
  { name: 'TCP to 443 -> web (second port entry)', data: frame({ proto: 'tcp', dport: 443 }), entry: 2 },
  { name: 'TCP to 443 from the office -> web (first match wins)', data: frame({ proto: 'tcp', src: '10.20.1.1', dport: 443 }), entry: 2 },
  { name: 'UDP from the office (v4) -> office', data: frame({ proto: 'udp', src: '10.20.9.9', dport: 53 }), entry: 3 },
  { name: 'UDP from the office (v6) -> office', data: frame({ proto: 'udp', src: '2001:db8:20::5', dst: '2001:db8::1', dport: 53 }), entry: 3 },
  { name: 'UDP from 10.21.0.1 (outside the alias) -> default', data: frame({ proto: 'udp', src: '10.21.0.1', dport: 53 }), entry: UNMATCHED },
  { name: 'ICMP echo -> ping', data: frame({ proto: 'icmp' }), entry: 4 },
  { name: 'TCP from port 8080 over IPv6 -> web', data: frame({ proto: 'tcp', src: '2001:db8::9', dst: '2001:db8::1', sport: 8080, dport: 5555 }), entry: 5 },
  { name: 'TCP from port 8080 over IPv4 -> default (rule is IPv6 only)', data: frame({ proto: 'tcp', sport: 8080, dport: 5555 }), entry: UNMATCHED },
];

describe('qos_classify under bpf_prog_test_run', { timeout: 300_000, skip: missing('root', { file: '/sys/fs/bpf' }) }, () => {
  let root: string;
  let prog: BpfProgram;
  let maps: ClassifierMaps;
  let table: ClassifierTable;

  before(async () => {
    root = mkdtempSync('/sys/fs/bpf/pt-qos-');
    const v = validateDocument(doc, () => '');
    const ctx: CompileContext = { openings: [], config: v.validated!.config, aliases: v.validated!.aliases, readFile: () => '' };
    const { desired, issues } = qosSubsystem.compile(ctx);
    assert.deepEqual(issues, []);
    table = desired.devices[0]!.classifier!;
    prog = BpfProgram.openPinned(await loadClassifier(root, 'wan0'));
    maps = ClassifierMaps.open(root, 'wan0')!;
    await maps.write(table);
  });
  after(() => {
    maps?.close();
    prog?.close();
    unpinClassifier(root, 'wan0');
    rmSync(root, { recursive: true, force: true });
  });

  it('reads back exactly what was written', async () => {
    assert.deepEqual(await maps.read(), encodeTable(table));
  });

  for (const f of fixtures) {
    it(f.name, async () => {
      const n = table.rules.length;
      const before = maps.hitCounts(n);
      const r = await prog.testRun({ data: f.data });
      const after = maps.hitCounts(n);
      const delta = after.entries.map((e, i) => Number(e.packets - before.entries[i]!.packets));
      const unmatched = Number(after.unmatched.packets - before.unmatched.packets);
      if (f.entry === UNMATCHED) {
        assert.equal(r.retval | 0, -1, 'TC_ACT_UNSPEC: HTB uses its default class');
        assert.equal(unmatched, 1);
        assert.deepEqual(delta, new Array(n).fill(0));
      } else {
        assert.equal(r.retval, 0, 'TC_ACT_OK with tc_classid set');
        assert.equal(unmatched, 0);
        assert.deepEqual(delta, delta.map((_, i) => (i === f.entry ? 1 : 0)), `hit entry ${f.entry}`);
      }
    });
  }

  it('a rewrite with fewer rules drops stale prefixes and entries', async () => {
    await maps.write({ rules: [table.rules[0]!], sets: new Map() });
    const back = await maps.read();
    assert.equal(back.rules.length, 1);
    assert.deepEqual(back.prefixes, []);
    const r = await prog.testRun({ data: frame({ proto: 'udp', src: '10.20.9.9', dport: 53 }) });
    assert.equal(r.retval | 0, -1);
    await maps.write(table);
  });
});
