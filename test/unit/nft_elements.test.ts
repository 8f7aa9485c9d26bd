/**
 * Set elements as numbers (src/nft/elements.ts): the compiled side and a
 * kernel dump in the layout the kernel sends it (interval ends flagged,
 * descending, nft's end marker at key 0, no end at the top of the key
 * space) give the same elements; the diff counts and names what differs.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { diffElements, dumpedElements, formatElement, nameElements, portElements, prefixElements } from '../../src/nft/elements.js';
import { parsePrefix } from '../../src/net/address.js';

const p = (s: string) => parsePrefix(s);

describe('nftables set elements', () => {
  it('formats prefixes, ranges, ports and names as nft writes them', () => {
    const v4 = prefixElements('a', 'ipv4_addr', [p('0.0.0.0/24'), p('10.0.1.0/24'), p('255.255.255.0/24')]);
    assert.deepEqual([0, 1, 2].map((i) => formatElement(v4, i)), ['0.0.0.0/24', '10.0.1.0/24', '255.255.255.0/24']);
    const v6 = prefixElements('b', 'ipv6_addr', [p('2001:db8::/32'), p('ffff::/16')]);
    assert.deepEqual([0, 1].map((i) => formatElement(v6, i)), ['2001:db8::/32', 'ffff::/16']);
    const ports = portElements('p', [{ from: 22, to: 22 }, { from: 80, to: 90 }, { from: 60000, to: 65535 }]);
    assert.deepEqual([0, 1, 2].map((i) => formatElement(ports, i)), ['22', '80-90', '60000-65535']);
    const names = nameElements('m', ['wan0', 'lan1']);
    assert.deepEqual([0, 1].map((i) => formatElement(names, i)), ['"lan1"', '"wan0"']);
  });

  it('pairs a dump (descending, end marker at 0, adjacent intervals, open top) into the compiled elements', () => {
    const want = prefixElements('a', 'ipv4_addr', [p('10.0.1.0/24'), p('10.0.2.0/23'), p('255.255.255.0/24')]);
    // what the kernel sent for these (seen on this kernel): key, end flag
    const dump: [number, number][] = [
      [0xffffff00, 0],
      [0x0a000400, 1],
      [0x0a000200, 0],
      [0x0a000200, 1],
      [0x0a000100, 0],
      [0, 1],
    ];
    const have = dumpedElements('a', 'ipv4_addr', true, { keyWords: 1, count: dump.length, keys: Uint32Array.from(dump.map((d) => d[0])), end: Uint8Array.from(dump.map((d) => d[1])) });
    assert.equal(diffElements(want, have), null);
  });

  it('counts and names missing and unexpected elements', () => {
    const want = prefixElements('a', 'ipv4_addr', [p('10.0.0.0/24'), p('10.0.2.0/24'), p('10.0.4.0/24')]);
    const have = prefixElements('a', 'ipv4_addr', [p('10.0.0.0/24'), p('10.0.3.0/24'), p('10.0.4.0/24'), p('10.0.6.0/24')]);
    assert.deepEqual(diffElements(want, have), { missing: 1, unexpected: 2, missingExamples: ['10.0.2.0/24'], unexpectedExamples: ['10.0.3.0/24', '10.0.6.0/24'] });
    assert.equal(diffElements(want, want), null);
  });
});
