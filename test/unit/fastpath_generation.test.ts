/**
 * The data plane's per-generation derivations (src/fastpath/generation.ts),
 * pure: DIR-16-8 chunks of two classes packed as bitmaps must resolve every
 * address to the class the chunk gave; the constrained vectors name exactly
 * the rules that constrain each field.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { buildDir4, compileFastpath, type LpmEntry } from '../../src/fastpath/compile.js';
import { assignIfaceSlots, assignRuleSlots, changedIndexes, changedVectors, constrainedVectors, packDir4, resolveDir4 } from '../../src/fastpath/generation.js';
import { DIR4_CHUNKS, DIR_BITMAP, DIR_CHUNK, DIR_TRIE, MATCH_FIELDS, bitList, emptyBits, setBit } from '../../src/fastpath/layout.js';
import { fastpathSchema } from '../../src/fastpath/schema.js';
import { fastpathTables } from '../../src/fastpath/table.js';

function entry(a: number, length: number, rule: number): LpmEntry {
  const data = Buffer.alloc(4);
  data.writeUInt32BE((length === 0 ? 0 : (a >>> (32 - length)) << (32 - length)) >>> 0);
  const bits = emptyBits();
  setBit(bits, rule);
  return { data, length, bits };
}

describe('DIR-16-8 bitmaps', () => {
  it('a list of /24s packs every /16 into a bitmap that resolves like its chunk', () => {
    const entries: LpmEntry[] = [entry(0, 0, 0)];
    for (let i = 0; i < 20_000; i += 2) entries.push(entry(((16 << 24) + i * 256) >>> 0, 24, 1));
    const d = buildDir4(entries)!;
    const p = packDir4(d);
    assert.equal(p.bitmaps.size, d.chunks.length, 'every chunk holds two classes');
    for (let a = 16 << 24; a < (16 << 24) + 20_000 * 256; a += 97) {
      const hi = a >>> 16;
      assert.equal(p.dir16[hi]! & DIR_BITMAP, DIR_BITMAP);
      const want = d.chunks[d.dir16[hi]! & (DIR4_CHUNKS - 1)]![(a >>> 8) & 255]!;
      assert.equal(resolveDir4(p, [a >>> 24, (a >>> 16) & 255, (a >>> 8) & 255, a & 255]), want, `address ${a}`);
    }
  });

  it('a chunk of three classes stays a chunk; a class and a trie mark become a bitmap', () => {
    const entries: LpmEntry[] = [entry(0, 0, 0), entry(0x0a000100, 24, 1), entry(0x0a000200, 24, 2), entry(0x0c000205, 32, 3)];
    const d = buildDir4(entries)!;
    const p = packDir4(d);
    assert.ok((p.dir16[0x0a00]! & DIR_CHUNK) !== 0, '10.0/16: root, rule 1, rule 2');
    assert.equal(p.dir16[0x0c00]! & DIR_BITMAP, DIR_BITMAP, '12.0/16: root and a trie mark');
    assert.equal(resolveDir4(p, [12, 0, 2, 9]), DIR_TRIE, 'the /24 holding the /32 goes to the trie');
    assert.equal(resolveDir4(p, [12, 0, 3, 9]), d.dir16[0x0b00], 'the rest of 12.0/16: the root class');
    for (const third of [0, 1, 2, 3, 255]) assert.equal(resolveDir4(p, [10, 0, third, 1]), d.chunks[d.dir16[0x0a00]! & (DIR4_CHUNKS - 1)]![third]);
  });
});

describe('constrained vectors', () => {
  it('name the rules that constrain each field, no others', () => {
    const { desired, issues } = compileFastpath({
      fastpath: fastpathSchema.parse({
        interfaces: [{ name: 'lo' }],
        rules: [
          { name: 'src', source: '10.0.0.0/8', action: 'drop' },
          { name: 'any', action: 'pass' },
          { name: 'dns', protocol: 'udp', destinationPorts: 53, action: 'drop' },
          { name: 'v6dst', destination: '2001:db8::/32', action: 'drop' },
          { name: 'wide', source: '0.0.0.0/0', action: 'drop' },
        ],
      }),
      aliases: new Map(),
    });
    assert.deepEqual(issues, []);
    const c = constrainedVectors(fastpathTables(desired));
    const of = (f: (typeof MATCH_FIELDS)[number]) => bitList(c[MATCH_FIELDS.indexOf(f)]!).filter((r) => r < 5);
    assert.deepEqual(of('src_v4'), [0], 'the /8; not the /0, which holds every address');
    assert.deepEqual(of('dst_v4'), [3], 'an IPv6 destination never matches an IPv4 one');
    assert.deepEqual(of('src_v6'), [0, 4], 'IPv4 sources never match an IPv6 one');
    assert.deepEqual(of('dst_v6'), [3]);
    assert.deepEqual(of('sport'), [2], 'the protocol rides in the port key');
    assert.deepEqual(of('dport'), [2]);
    assert.deepEqual(of('flags'), []);
  });
});

describe('generation writer diffs', () => {
  it('array and vector tables: only changed positions; everything the first time', () => {
    assert.deepEqual([...changedIndexes(undefined, new Uint32Array([5, 6]))], [0, 1]);
    assert.deepEqual([...changedIndexes(new Uint32Array([5, 6, 7]), new Uint32Array([5, 0, 7]))], [1]);
    assert.deepEqual(changedVectors(undefined, [Buffer.from([1])]), [0]);
    assert.deepEqual(changedVectors([Buffer.from([1]), Buffer.from([2])], [Buffer.from([1]), Buffer.from([3]), Buffer.from([4])]), [1, 2]);
  });
});

describe('generation writer slot assignment', () => {
  it('rules keep their counter slots by name; new rules take the lowest free slots', () => {
    const active = new Map([
      ['a', 0],
      ['b', 1],
      ['c', 3],
    ]);
    const { slots, fresh } = assignRuleSlots(['c', 'x', 'a', 'y', 'z'], active);
    assert.deepEqual(slots, [3, 2, 0, 4, 5], 'x and y fill the gap and the end; b\'s slot 1 stays with the active generation');
    assert.deepEqual(fresh, [1, 3, 4]);
    assert.deepEqual(assignRuleSlots([], active), { slots: [], fresh: [] });
    assert.deepEqual(assignRuleSlots(['a', 'b'], new Map()), { slots: [0, 1], fresh: [0, 1] });
  });

  it('interfaces keep their slots while configured; new ones avoid every active slot; a bound', () => {
    const active = new Map([
      [7, 0],
      [9, 2],
    ]);
    const slots = assignIfaceSlots([9, 11, 9, 12], active);
    assert.deepEqual([...slots], [
      [9, 2],
      [11, 1],
      [12, 3],
    ]);
    assert.throws(() => assignIfaceSlots([1, 2, 3], new Map([[5, 0]]), 3), /more than 3 interfaces/);
    assert.equal(assignIfaceSlots([1, 2], new Map([[5, 0]]), 3).size, 2);
  });
});
