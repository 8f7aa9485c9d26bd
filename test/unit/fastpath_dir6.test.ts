/**
 * The IPv6 first stage (src/fastpath/compile.ts buildDir6): for every
 * address, the /16 table and the per-length hash must give the vector of the
 * longest matching prefix, or send the lookup to the trie (prefixes longer
 * than /64); checked against a naive longest-prefix match. Too many lengths
 * or vectors leave the field to the trie; the compiler switches the lookup on
 * only when the stage is built.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { buildDir6, compileFastpath, mask64, resolveDir6, type LpmEntry } from '../../src/fastpath/compile.js';
import { DIR_TRIE, FEAT, V6_CLASSES, V6_LENGTHS, emptyBits, setBit } from '../../src/fastpath/layout.js';
import { fastpathSchema } from '../../src/fastpath/schema.js';

const ALL = (1n << 128n) - 1n;
const mask128 = (len: number) => (len === 0 ? 0n : (ALL << BigInt(128 - len)) & ALL);

function bytes(a: bigint): Buffer {
  const b = Buffer.alloc(16);
  b.writeBigUInt64BE(a >> 64n, 0);
  b.writeBigUInt64BE(a & ((1n << 64n) - 1n), 8);
  return b;
}

function entry(a: bigint, length: number, rule: number): LpmEntry {
  const bits = emptyBits();
  setBit(bits, rule);
  return { data: bytes(a & mask128(length)), length, bits };
}

function lpm(entries: LpmEntry[], addr: bigint): LpmEntry | undefined {
  let best: LpmEntry | undefined;
  for (const e of entries) {
    const p = (e.data.readBigUInt64BE(0) << 64n) | e.data.readBigUInt64BE(8);
    if ((addr & mask128(e.length)) === p && (!best || e.length > best.length)) best = e;
  }
  return best;
}

let seed = 11;
const rnd = () => {
  seed = (seed * 1103515245 + 12345) >>> 0;
  return BigInt(seed);
};
const rnd128 = () => (rnd() << 96n) | (rnd() << 64n) | (rnd() << 32n) | rnd();

function unique(entries: LpmEntry[]): LpmEntry[] {
  const seen = new Set<string>();
  return entries.filter((e) => {
    const k = `${e.data.toString('hex')}/${e.length}`;
    return !seen.has(k) && seen.add(k);
  });
}

describe('IPv6 first stage (/16 table + per-length hash)', () => {
  it('agrees with longest-prefix match, and defers to the trie where a prefix is longer than /64', () => {
    // addresses in a few /16s so prefixes nest
    const tops = [0x2001n, 0x2a00n, 0xfd00n];
    const addr = () => (tops[Number(rnd() % 3n)]! << 112n) | (rnd128() & ((1n << 112n) - 1n) & ~((rnd() % 2n) * ((1n << 100n) - 1n)));
    const lens = [8, 16, 32, 48, 48, 56, 64, 96, 128];
    const entries: LpmEntry[] = [entry(0n, 0, 0)];
    for (let i = 0; i < 300; i++) entries.push(entry(addr(), lens[i % lens.length]!, 1 + (i % 50)));
    // a nested chain: /16 ⊃ /32 ⊃ /48 ⊃ /64 ⊃ /128
    const chain = 0x2001_0db8_0001_0002_0000_0000_0000_0001n;
    for (const [len, r] of [[16, 51], [32, 52], [48, 53], [64, 54], [128, 55]] as const) entries.push(entry(chain, len, r));
    const list = unique(entries);
    const d = buildDir6(list)!;
    assert.ok(d, 'built');
    assert.deepEqual(d.lengths, [64, 56, 48, 32], 'lengths in (16, 64], longest first; /96 and /128 mark their /64');
    const probes: bigint[] = [chain, chain ^ 1n, chain ^ (1n << 64n), chain ^ (1n << 80n), chain ^ (1n << 100n)];
    for (let i = 0; i < 3000; i++) probes.push(addr());
    for (const e of list) probes.push(((e.data.readBigUInt64BE(0) << 64n) | e.data.readBigUInt64BE(8)) | (rnd128() & ~mask128(e.length)));
    let viaTrie = 0;
    for (const a of probes) {
      const want = lpm(list, a)!;
      const c = resolveDir6(d, bytes(a));
      if (c === DIR_TRIE) {
        // only where some prefix longer than /64 shares the address's /64
        viaTrie++;
        const hi = a >> 64n;
        assert.ok(list.some((e) => e.length > 64 && e.data.readBigUInt64BE(0) === (hi & mask64(64))), `trie for ${a.toString(16)} without a longer prefix in its /64`);
        continue;
      }
      assert.deepEqual(d.classes[c], want.bits, `address ${a.toString(16)}: class ${c}, want the /${want.length} vector`);
    }
    assert.ok(viaTrie > 0, 'some probes reach the trie');
  });

  it('leaves a field to the trie beyond its lengths or classes, and without a zero-length entry', () => {
    const many = [entry(0n, 0, 0)];
    for (let l = 17; l <= 17 + V6_LENGTHS; l++) many.push(entry(0x2001n << 112n, l, 1));
    assert.equal(buildDir6(many), undefined, `${V6_LENGTHS + 1} lengths`);
    assert.ok(buildDir6(many.slice(0, V6_LENGTHS + 1)), `${V6_LENGTHS} lengths`);
    const classes = [entry(0n, 0, 0)];
    for (let i = 0; i <= V6_CLASSES; i++) {
      const bits = emptyBits();
      setBit(bits, i % 512);
      setBit(bits, 512 + (i >> 9));
      classes.push({ data: bytes((0x2001n << 112n) | (BigInt(i) << 64n)), length: 64, bits });
    }
    assert.equal(buildDir6(classes), undefined, `${V6_CLASSES + 2} vectors`);
    assert.equal(buildDir6([entry(0x2001n << 112n, 32, 1)]), undefined);
  });

  it('is switched on by the compiler for IPv6 address fields, with the lengths in gen_config', () => {
    const fastpath = fastpathSchema.parse({
      interfaces: [{ name: 'lo' }],
      rules: [
        { name: 'a', source: ['2001:db8::/32', '2001:db8:1::/48'], action: 'drop' },
        { name: 'b', destination: '2a00::/16', action: 'drop' },
      ],
    });
    const { desired, issues } = compileFastpath({ fastpath, aliases: new Map() });
    assert.deepEqual(issues, []);
    assert.ok(desired.genConfig.features & FEAT.src_v6_dir);
    assert.ok(desired.genConfig.features & FEAT.dst_v6_dir);
    assert.deepEqual(desired.genConfig.v6Len, [[48, 32], []]);
    assert.equal(desired.dir6.dst_v6!.hash.length, 0, 'a /16 needs no hash entry');
  });
});
