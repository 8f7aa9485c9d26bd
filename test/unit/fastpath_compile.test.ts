/**
 * The pure fast-path compiler: config in, map contents and path-qualified
 * issues out.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { resolveAliases } from '../../src/aliases/aliases.js';
import { formatIssue } from '../../src/config/issues.js';
import { validateDocument } from '../../src/domains.js';
import { compileFastpath, parseTcpFlags, rangeToPrefixes } from '../../src/fastpath/compile.js';
import { bitList } from '../../src/fastpath/layout.js';
import { fastpathSchema } from '../../src/fastpath/schema.js';
import type { CountryResolver } from '../../src/fastpath/geoip.js';

const aliases = resolveAliases(
  [
    { name: 'nets', type: 'network', entries: ['10.0.0.0/8', '2001:db8::/32'], files: [] },
    { name: 'web', type: 'port', entries: ['80', '443'], files: [] },
  ],
  () => '',
).table;

const compile = (fastpath: unknown, geoip?: CountryResolver) => compileFastpath({ fastpath: fastpathSchema.parse(fastpath), aliases, ...(geoip ? { geoip } : {}) });
const lo = [{ name: 'eth0' }];

describe('fast-path compiler', () => {
  it('gives each prefix the rules of every containing prefix and of unconstrained rules', () => {
    const { desired, issues } = compile({
      interfaces: lo,
      rules: [
        { name: 'a', source: '10.1.0.0/16', action: 'drop' },
        { name: 'b', source: 'nets', action: 'pass' },
        { name: 'c', protocol: 'tcp', action: 'count' },
      ],
    });
    assert.deepEqual(issues, []);
    const v4 = new Map(desired.fields.src_v4.map((e) => [`${[...e.data].join('.')}/${e.length}`, bitList(e.bits)]));
    assert.deepEqual(v4.get('0.0.0.0/0'), [2]); // c has no source
    assert.deepEqual(v4.get('10.0.0.0/8'), [1, 2]);
    assert.deepEqual(v4.get('10.1.0.0/16'), [0, 1, 2]);
    const v6 = desired.fields.src_v6.map((e) => [e.length, bitList(e.bits)]);
    assert.deepEqual(v6, [
      [0, [2]],
      [32, [1, 2]],
    ]);
    // protocol: only c constrains it; a and b are on the wildcard
    const dport = new Map(desired.fields.dport.map((e) => [`${e.data[0]}/${e.length}`, bitList(e.bits)]));
    assert.deepEqual(dport.get('0/0'), [0, 1]);
    assert.deepEqual(dport.get('6/8'), [0, 1, 2]);
    assert.deepEqual(bitList(desired.countRules), [2]);
  });

  it('splits port ranges into aligned prefixes', () => {
    assert.deepEqual(rangeToPrefixes(0, 65535), [{ start: 0, length: 0 }]);
    assert.deepEqual(rangeToPrefixes(80, 80), [{ start: 80, length: 16 }]);
    assert.deepEqual(rangeToPrefixes(8000, 8100), [
      { start: 8000, length: 10 },
      { start: 8064, length: 11 },
      { start: 8096, length: 14 },
      { start: 8100, length: 16 },
    ]);
    const covered = rangeToPrefixes(1024, 65535).reduce((n, b) => n + 2 ** (16 - b.length), 0);
    assert.equal(covered, 65535 - 1024 + 1);
  });

  it('parses TCP flag matches', () => {
    assert.deepEqual(parseTcpFlags('syn,!ack'), { value: 0x02, mask: 0x12 });
    const { desired } = compile({ interfaces: lo, rules: [{ name: 's', protocol: 'tcp', tcpFlags: 'syn,!ack', action: 'drop' }] });
    assert.deepEqual(bitList(desired.tcpFlags[0x02]!), [0]);
    assert.deepEqual(bitList(desired.tcpFlags[0x12]!), []);
    assert.deepEqual(bitList(desired.tcpFlags[256]!), [], 'unknown flags (fragments) never match a flags rule');
  });

  it('reports bad references with document paths', () => {
    const { issues } = compile({
      interfaces: lo,
      rules: [
        { name: 'x', source: ['10.0.0.0/8', 'nope'], action: 'drop' },
        { name: 'y', interfaces: ['eth9'], action: 'drop' },
        { name: 'z', protocol: 'tcp', destinationPorts: ['web', 'nets'], action: 'drop' },
        { name: 'w', countries: ['DE'], action: 'drop' },
        { name: 'v', direction: 'out', interfaces: ['eth0'], action: 'drop' },
      ],
    });
    const text = issues.map(formatIssue);
    assert.ok(text.includes('fastpath.rules[0].source[1]: unknown alias "nope"'), text.join('\n'));
    assert.ok(text.includes('fastpath.rules[1].interfaces[0]: "eth9" is not a fastpath interface (fastpath.interfaces)'), text.join('\n'));
    assert.ok(text.includes('fastpath.rules[2].destinationPorts[1]: alias "nets" is a network alias, not a port alias'), text.join('\n'));
    assert.ok(text.includes('fastpath.rules[3].countries[0]: country DE needs a GeoIP database (fastpath.geoip.database)'), text.join('\n'));
    assert.ok(text.some((t) => t.startsWith('fastpath.rules[4].interfaces[0]: interface "eth0" does not have egress.enabled')), text.join('\n'));
  });

  it('fails validation, not apply, when a rule set exceeds capacity', () => {
    const many = Array.from({ length: 40 }, (_, i) => `10.${i}.0.0/16`);
    const { issues } = compile({
      interfaces: lo,
      rules: [
        { name: 'a', source: many, action: 'drop' },
        { name: 'b', action: 'pass' },
        { name: 'c', action: 'pass' },
      ],
      capacity: { prefixes: 32, rules: 2 },
    });
    const text = issues.map(formatIssue);
    assert.ok(text.includes('fastpath.rules: 3 rules exceed the capacity of 2 (fastpath.capacity.rules, at most 1024)'), text.join('\n'));
    assert.ok(text.some((t) => t.startsWith('fastpath.capacity.prefixes: source IPv4 needs 41 map entries, more than the capacity of 32 (most from fastpath.rules[0]: 40)')), text.join('\n'));
  });

  it('expands countries through the resolver into both families', () => {
    const geo: CountryResolver = {
      has: (c) => c === 'NZ',
      prefixes: () => ({ v4: [{ data: Buffer.from([1, 2, 3, 0]), length: 24 }], v6: [{ data: Buffer.alloc(16, 0x20), length: 32 }] }),
    };
    const { desired, issues } = compile({ interfaces: lo, rules: [{ name: 'k', countries: ['nz'], action: 'drop' }, { name: 'q', countries: ['QQ'], action: 'drop' }] }, geo);
    assert.deepEqual(issues.map(formatIssue), ['fastpath.rules[1].countries[0]: country QQ is not in the GeoIP database']);
    assert.deepEqual(desired.fields.src_v4.map((e) => e.length), [0, 24]);
    assert.deepEqual(bitList(desired.fields.src_v4[1]!.bits), [0]);
    assert.deepEqual(desired.fields.src_v6.map((e) => e.length), [0, 32]);
  });

  it('a rule\'s countries on one side are one set: one union per rule and side, prepared in one pass', () => {
    const calls: string[] = [];
    const net = (a: number, length: number) => ({ data: Buffer.from([a, 0, 0, 0]), length });
    const geo: CountryResolver = {
      has: (c) => ['NZ', 'AU', 'FJ'].includes(c),
      prefixes: () => assert.fail('per-country prefixes asked for although the resolver has union()'),
      prepare: (sets) => calls.push(`prepare ${sets.map((s) => [...s].sort().join(',')).join(' | ')}`),
      union: (ccs) => {
        calls.push(`union ${[...ccs].sort().join(',')}`);
        return { v4: ccs.length > 1 ? [net(1, 8)] : [net(2, 8)], v6: [] };
      },
    };
    const { desired, issues } = compile({ interfaces: lo, rules: [{ name: 'k', countries: ['nz', 'AU', 'nz'], destinationCountries: ['FJ'], action: 'drop' }, { name: 'm', countries: ['au', 'nz'], action: 'count' }] }, geo);
    assert.deepEqual(issues, []);
    assert.deepEqual(calls, ['prepare AU,NZ | FJ | AU,NZ', 'union AU,NZ', 'union FJ', 'union AU,NZ']);
    assert.deepEqual(desired.fields.src_v4.map((e) => `${e.length} ${bitList(e.bits).join(',')}`), ['0 ', '8 0,1']);
    assert.deepEqual(desired.fields.dst_v4.map((e) => `${e.length} ${bitList(e.bits).join(',')}`), ['0 1', '8 0,1']);
  });

  it('schema: rule checks carry their paths through the document', () => {
    const { issues } = validateDocument(
      {
        fastpath: {
          rules: [
            { name: 'a', destinationPorts: 80, action: 'drop' },
            { name: 'a', action: 'rate-limit' },
            { name: 'c', protocol: 'udp', tcpFlags: 'syn', action: 'drop' },
          ],
        },
      },
      () => '',
    );
    const text = issues.map(formatIssue);
    assert.ok(text.includes('fastpath.rules[0].destinationPorts: ports need protocol tcp, udp or sctp (each listed protocol must have ports)'), text.join('\n'));
    assert.ok(text.includes('fastpath.rules[1].rateLimit: action rate-limit needs rateLimit'), text.join('\n'));
    assert.ok(text.includes('fastpath.rules[2].tcpFlags: tcpFlags needs protocol tcp'), text.join('\n'));
    assert.ok(text.includes('fastpath.rules[1].name: rule name "a" is used twice'), text.join('\n'));
  });
});
