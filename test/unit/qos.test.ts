/**
 * QoS compile: config in, tc plan and classifier table out; bad config gives
 * path-qualified issues.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { validateDocument } from '../../src/domains.js';
import { formatIssue } from '../../src/config/issues.js';
import type { CompileContext } from '../../src/apply/subsystem.js';
import { qosSubsystem } from '../../src/services/qos/subsystem.js';
import { ifbName, type QosDesired } from '../../src/services/qos/compile.js';
import { encodeTable } from '../../src/services/qos/classifier.js';
import { parseClasses, parseTcRate, sameRate } from '../../src/services/qos/tc.js';
import { parseRate } from '../../src/services/qos/schema.js';

function compile(doc: unknown): { desired?: QosDesired; issues: string[] } {
  const v = validateDocument(doc, () => {
    throw new Error('no files');
  });
  if (!v.validated) return { issues: v.issues.map(formatIssue) };
  const ctx: CompileContext = { openings: [], config: v.validated.config, aliases: v.validated.aliases, readFile: () => '' };
  const r = qosSubsystem.compile(ctx);
  return { desired: r.desired, issues: r.issues.map(formatIssue) };
}

const base = {
  interfaces: [{ name: 'wan0', zone: 'wan' }],
  aliases: [
    { name: 'voip_peers', type: 'network', entries: ['192.0.2.0/24', '2001:db8:5::/48'] },
    { name: 'sip', type: 'port', entries: ['5060', '5061'] },
  ],
};

describe('qos compile', () => {
  it('builds an HTB tree with fixed handles, leaf queues and a classifier table', () => {
    const { desired, issues } = compile({
      ...base,
      qos: {
        interfaces: [
          {
            interface: 'wan0',
            egress: {
              type: 'htb',
              rate: '100mbit',
              defaultClass: 'bulk',
              classes: [
                { name: 'interactive', rate: '30%', priority: 0 },
                { name: 'voice', parent: 'interactive', rate: '10mbit', ceil: '20mbit', priority: 0 },
                { name: 'ssh', parent: 'interactive', rate: '5mbit', leaf: { type: 'bfifo', limit: '64kb' } },
                { name: 'bulk', rate: 70_000_000, ceil: '90mbit' },
              ],
              rules: [
                { class: 'voice', protocol: 'udp', destination: 'voip_peers', destinationPort: 'sip' },
                { class: 'ssh', protocol: 'tcp', destinationPort: [22, '2222-2223'] },
              ],
            },
          },
        ],
      },
    });
    assert.deepEqual(issues, []);
    const [d] = desired!.devices;
    assert.equal(d!.device, 'wan0');
    assert.deepEqual(d!.root, { kind: 'htb', rate: 100_000_000, defaultMinor: 0x13 });
    assert.deepEqual(
      d!.classes.map((c) => [c.classid, c.parent, c.rate, c.ceil, c.prio]),
      [
        ['1:10', '1:1', 30_000_000, 100_000_000, 0],
        ['1:13', '1:1', 70_000_000, 90_000_000, 4],
        ['1:11', '1:10', 10_000_000, 20_000_000, 0],
        ['1:12', '1:10', 5_000_000, 100_000_000, 4],
      ],
    );
    // the inner class "interactive" has no leaf queue
    assert.deepEqual(d!.leaves.map((l) => [l.parent, l.handle, l.kind, ...l.args]), [
      ['1:11', '111:', 'pfifo', 'limit', '1000'],
      ['1:12', '112:', 'bfifo', 'limit', '65536'],
      ['1:13', '113:', 'pfifo', 'limit', '1000'],
    ]);
    const t = encodeTable(d!.classifier!);
    // sip alias has two ports: two entries for rule 0; rule 1 has two ranges
    assert.deepEqual(
      t.rules.map((r) => [r.classid.toString(16), r.proto, r.family, r.dst_set, r.dport_lo, r.dport_hi]),
      [
        ['11', 17, 0, 1, 5060, 5060],
        ['11', 17, 0, 1, 5061, 5061],
        ['12', 6, 0, 0, 22, 22],
        ['12', 6, 0, 0, 2222, 2223],
      ],
    );
    assert.deepEqual(t.prefixes.map((p) => `${p.set} ${p.prefix.address}/${p.prefix.length}`), ['1 192.0.2.0/24', '1 2001:db8:5::/48']);
  });

  it('ingress goes to an IFB device; tbf gets a burst of 10 ms of its rate', () => {
    const { desired, issues } = compile({ ...base, qos: { interfaces: [{ interface: 'wan0', ingress: { type: 'tbf', rate: '80mbit' } }] } });
    assert.deepEqual(issues, []);
    assert.deepEqual(desired!.devices[0], {
      device: 'ifbwan0',
      ingressOf: 'wan0',
      path: ['qos', 'interfaces', 0, 'ingress'],
      root: { kind: 'tbf', rate: 80_000_000, burst: 100_000, latencyMs: 50 },
      classes: [],
      leaves: [],
      classifier: null,
    });
    assert.equal(ifbName('averyverylongif').length, 15);
  });

  it('rejects bad config with path-qualified issues', () => {
    const schema = compile({ ...base, qos: { interfaces: [{ interface: 'wan0', egress: { type: 'htb', rate: 'fast', defaultClass: 'x', classes: [{ name: 'x', rate: '10mbit', leaf: { type: 'sfq' } }] } }] } });
    assert.ok(schema.issues.some((i) => i.startsWith('qos.interfaces[0].egress.rate: must be a rate')), schema.issues.join('\n'));
    assert.ok(schema.issues.some((i) => i.startsWith('qos.interfaces[0].egress.classes[0].leaf.type')), schema.issues.join('\n'));

    const { issues } = compile({
      ...base,
      qos: {
        interfaces: [
          {
            interface: 'lan9',
            egress: {
              type: 'htb',
              rate: '10mbit',
              defaultClass: 'top',
              classes: [
                { name: 'top', rate: '8mbit' },
                { name: 'a', parent: 'top', rate: '6mbit', ceil: '4mbit' },
                { name: 'b', parent: 'top', rate: '6mbit', ceil: '20mbit' },
              ],
              rules: [
                { class: 'nosuch', protocol: 'tcp' },
                { class: 'a', protocol: 'icmp', destinationPort: 80 },
                { class: 'a', source: 'sip' },
                { class: 'b', source: ['10.0.0.0/8', 'not_an_alias'] },
              ],
            },
          },
        ],
      },
    });
    const want = [
      'qos.interfaces[0].interface: interface "lan9" is not listed under interfaces',
      'qos.interfaces[0].egress.classes[1].ceil: ceiling 4000000bit is below the class\'s rate 6000000bit',
      'qos.interfaces[0].egress.classes[2].ceil: 20000000bit is above the direction\'s rate (10000000bit)',
      'qos.interfaces[0].egress.classes[0]: the rates of the children of "top" add up to 12000000bit, above its rate 8000000bit',
      'qos.interfaces[0].egress.defaultClass: class "top" has child classes; only leaf classes take packets',
      'qos.interfaces[0].egress.rules[0].class: no class named "nosuch"',
      'qos.interfaces[0].egress.rules[1].destinationPort: ports need protocol tcp or udp',
      'qos.interfaces[0].egress.rules[2].source: alias "sip" is a port alias, not a network',
      'qos.interfaces[0].egress.rules[3].source[1]: unknown alias "not_an_alias"',
    ];
    for (const w of want) assert.ok(issues.includes(w), `missing issue: ${w}\ngot:\n${issues.join('\n')}`);
  });

  it('reads tc rates and HTB class lines', () => {
    assert.equal(parseRate('1.5gbit'), 1_500_000_000);
    assert.equal(parseRate('10mbps'), 80_000_000);
    assert.equal(parseRate('ten'), undefined);
    assert.equal(parseTcRate('1234Kbit'), 1_234_000);
    assert.ok(sameRate(1_234_567, 1_234_000));
    assert.ok(!sameRate(1_000_000, 1_100_000));
    const cls = parseClasses(
      'class htb 1:1 root rate 1500Kbit ceil 1500Kbit burst 1599b cburst 1599b \n Sent 1200 bytes 3 pkt (dropped 1, overlimits 2 requeues 0) \nclass htb 1:10 parent 1:1 leaf 110: prio 0 rate 333328bit ceil 1234Kbit burst 1599b cburst 1599b \n',
    );
    assert.deepEqual(cls, [
      { classid: '1:1', parent: 'root', rate: 1_500_000, ceil: 1_500_000, sentBytes: 1200, sentPackets: 3, dropped: 1, overlimits: 2 },
      { classid: '1:10', parent: '1:1', leaf: '110:', prio: 0, rate: 333_328, ceil: 1_234_000 },
    ]);
  });
});
