/**
 * Sorted flat tables of the fast path's LPM fields (src/fastpath/table.ts):
 * the merge diff that plan and the generation writer share (pure: two
 * sorted tables in, entry indexes to remove, add and change out), the
 * conversion from the compiler's entries and from a kernel batch read, and
 * the kernel key encoding.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { compileFastpath, type LpmEntry } from '../../src/fastpath/compile.js';
import { BITS_BYTES, V6_HASH_KEY_SIZE, bitList, emptyBits, encodeV6HashKey, fieldKeySize, lpmKey, setBit } from '../../src/fastpath/layout.js';
import { fastpathSchema } from '../../src/fastpath/schema.js';
import { emptyTable, encodeLpmKeys, encodeV6HashKeys, encodeValues, v6HashTable, v6HashTableFromKernel, fastpathTables, lpmEntryAt, lpmRootBits, lpmTable, lpmTableFromKernel, mergeDiff, sameContents, sortedTable, upserts, type FlatTable } from '../../src/fastpath/table.js';

/** A table of 2-byte keys and 1-byte values from [key, value] pairs, in the order given (not sorted). */
function raw(pairs: [number, number][]): FlatTable {
  const keys = new Uint8Array(pairs.length * 2);
  const values: number[] = [];
  const cls = new Uint32Array(pairs.length);
  pairs.forEach(([k, v], i) => {
    keys[i * 2] = k >> 8;
    keys[i * 2 + 1] = k & 255;
    let c = values.indexOf(v);
    if (c < 0) c = values.push(v) - 1;
    cls[i] = c;
  });
  return { count: pairs.length, keyBytes: 2, keys, cls, valueBytes: 1, values: Uint8Array.from(values) };
}

async function diffOf(have: [number, number][], want: [number, number][]): Promise<{ removed: number[]; added: number[]; changed: number[] }> {
  const h = raw(have);
  const w = raw(want);
  const d = await mergeDiff(h, w);
  const keyAt = (t: FlatTable, i: number) => (t.keys[i * 2]! << 8) | t.keys[i * 2 + 1]!;
  return { removed: [...d.removed].map((i) => keyAt(h, i)), added: [...d.added].map((i) => keyAt(w, i)), changed: [...d.changed].map((i) => keyAt(w, i)) };
}

function v4(a: number, length: number, rules: number[]): LpmEntry {
  const data = Buffer.alloc(4);
  data.writeUInt32BE(a >>> 0);
  const bits = emptyBits();
  for (const r of rules) setBit(bits, r);
  return { data, length, bits };
}

describe('fast path tables: merge diff', () => {
  it('empty against empty, empty against some, some against empty', async () => {
    assert.deepEqual(await diffOf([], []), { removed: [], added: [], changed: [] });
    assert.deepEqual(await diffOf([], [[1, 5], [2, 5]]), { removed: [], added: [1, 2], changed: [] });
    assert.deepEqual(await diffOf([[1, 5], [2, 5]], []), { removed: [1, 2], added: [], changed: [] });
  });

  it('identical tables: nothing to write', async () => {
    const pairs: [number, number][] = [[1, 5], [7, 6], [300, 5]];
    assert.deepEqual(await diffOf(pairs, pairs), { removed: [], added: [], changed: [] });
    const t = raw(pairs);
    assert.equal(await sameContents(t, t), true);
  });

  it('every key changed: all removed and all added', async () => {
    assert.deepEqual(await diffOf([[1, 5], [3, 5], [5, 5]], [[2, 5], [4, 5], [6, 5]]), { removed: [1, 3, 5], added: [2, 4, 6], changed: [] });
  });

  it('a value-only change is a change, not a remove and add', async () => {
    assert.deepEqual(await diffOf([[1, 5], [2, 5], [3, 5]], [[1, 5], [2, 9], [3, 5]]), { removed: [], added: [], changed: [2] });
  });

  it('values compare by content, not by class number', async () => {
    // same contents, class numbers swapped between the two tables
    const have = raw([[1, 5], [2, 6]]);
    const want = raw([[0, 6], [1, 5], [2, 6]]);
    assert.deepEqual([...want.values], [6, 5]);
    const d = await mergeDiff(have, want);
    assert.deepEqual([...d.added], [0]);
    assert.deepEqual([...d.changed], []);
    assert.deepEqual([...d.removed], []);
  });

  it('interleaved keys: removed, added, changed, kept', async () => {
    const d = await diffOf(
      [[1, 1], [2, 2], [4, 4], [9, 9], [0x1000, 1]],
      [[0, 1], [2, 2], [4, 5], [8, 8], [0x1000, 1], [0xffff, 3]],
    );
    assert.deepEqual(d, { removed: [1, 9], added: [0, 8, 0xffff], changed: [4] });
    const w = raw([[0, 1], [4, 5]]);
    const ups = upserts(await mergeDiff(raw([[4, 4]]), w));
    assert.deepEqual([...ups], [0, 1], 'added then changed');
  });

  it('duplicate or unsorted keys are refused, naming the side', async () => {
    await assert.rejects(mergeDiff(raw([[1, 1], [1, 2]]), raw([])), /the current contents hold a duplicate or out-of-order key at entry 1/);
    await assert.rejects(mergeDiff(raw([]), raw([[3, 1], [2, 1]])), /the wanted contents hold a duplicate or out-of-order key at entry 1/);
    await assert.rejects(mergeDiff(raw([[5, 1]]), raw([[5, 1], [5, 1]])), /duplicate or out-of-order/);
    await assert.rejects(mergeDiff(raw([]), emptyTable(3, 1)), /cannot diff tables/);
    assert.throws(() => sortedTable(raw([[2, 1], [1, 1], [2, 3]]), 'map x'), /map x: key 0002 appears more than once/);
  });

  it('sortedTable sorts by key bytes (radix), keeping each entry its value', () => {
    const pairs: [number, number][] = [];
    for (let i = 0; i < 2000; i++) pairs.push([(i * 7919) % 65521, i % 7]);
    const t = sortedTable(raw(pairs), 't');
    const want = [...pairs].sort((a, b) => a[0] - b[0]);
    for (let i = 0; i < t.count; i++) {
      assert.equal((t.keys[i * 2]! << 8) | t.keys[i * 2 + 1]!, want[i]![0]);
      assert.equal(t.values[t.cls[i]!], want[i]![1]);
    }
  });
});

describe('fast path tables: LPM fields', () => {
  it('a compiled field becomes a table in its own order, one class per distinct vector', () => {
    const { desired, issues } = compileFastpath({
      fastpath: fastpathSchema.parse({ interfaces: [{ name: 'lo' }], rules: [{ name: 'a', source: ['10.1.0.0/16', '10.0.0.0/8', '192.0.2.0/24'], action: 'drop' }, { name: 'b', source: '10.1.2.0/24', action: 'drop' }] }),
      aliases: new Map(),
    });
    assert.deepEqual(issues, []);
    const t = fastpathTables(desired).fields.src_v4;
    assert.equal(t.count, desired.fields.src_v4.length);
    for (let i = 0; i < t.count; i++) {
      const e = lpmEntryAt('src_v4', t, i);
      const c = desired.fields.src_v4[i]!;
      assert.ok(e.data.equals(c.data.subarray(0, 4)) && e.length === c.length && e.bits.equals(c.bits), `entry ${i}`);
    }
    assert.ok(t.values.length / BITS_BYTES < t.count, 'shared vectors stored once');
    assert.deepEqual(bitList(lpmRootBits('src_v4', t)!).filter((r) => r < 2), [], 'the root holds neither rule');
    const tables = fastpathTables(desired);
    assert.equal(fastpathTables(tables).fields.src_v4, tables.fields.src_v4, 'a table stays as it is');
  });

  it('entries out of order are sorted; the same prefix twice is refused', () => {
    const t = lpmTable('src_v4', [v4(0x0a000000, 8, [1]), v4(0, 0, []), v4(0x0a000000, 16, [1, 2])]);
    assert.deepEqual([...Array(t.count).keys()].map((i) => lpmEntryAt('src_v4', t, i).length), [0, 8, 16]);
    assert.throws(() => lpmTable('src_v4', [v4(0x0a000000, 8, [1]), v4(0x0a000000, 8, [2])]), /map src_v4: key 0a00000008 appears more than once/);
    assert.equal(lpmRootBits('src_v4', lpmTable('src_v4', [v4(0x0a000000, 8, [1])])), undefined);
  });

  it('kernel keys and values: encoded as lpmKey does; read back from a batch into the same table', async () => {
    const entries = [v4(0, 0, []), v4(0x0a000000, 8, [1]), v4(0xc0000200, 24, [1, 3])];
    const t = lpmTable('src_v4', entries);
    const ks = fieldKeySize('src_v4');
    const idx = Uint32Array.from([0, 1, 2]);
    const keys = Buffer.alloc(3 * ks, 0xee);
    const values = Buffer.alloc(3 * BITS_BYTES);
    encodeLpmKeys('src_v4', 1, t, idx, 0, 3, keys);
    encodeValues(t, idx, 0, 3, values);
    entries.forEach((e, i) => {
      assert.ok(keys.subarray(i * ks, (i + 1) * ks).equals(lpmKey('src_v4', 1, e.data, e.length)), `key ${i}`);
      assert.ok(values.subarray(i * BITS_BYTES, (i + 1) * BITS_BYTES).equals(e.bits), `value ${i}`);
    });
    // into buffers at any alignment (words where aligned, bytes otherwise), from a slice of the index list
    for (const at of [1, 2, 3, 4]) {
      const k = Buffer.alloc(at + 2 * ks, 0xee).subarray(at);
      const v = new Uint8Array(new ArrayBuffer(at + 2 * BITS_BYTES), at);
      encodeLpmKeys('src_v4', 1, t, idx, 1, 3, k);
      encodeValues(t, idx, 1, 3, v);
      assert.ok(k.equals(keys.subarray(ks, 3 * ks)), `keys at offset ${at}`);
      assert.ok(Buffer.from(v).equals(values.subarray(BITS_BYTES, 3 * BITS_BYTES)), `values at offset ${at}`);
    }
    // a batch read holds both generations, in the trie's order
    const other = lpmKey('src_v4', 0, Buffer.from([10, 0, 0, 0]), 8);
    const mixed = Buffer.concat([keys.subarray(2 * ks), other, keys.subarray(0, 2 * ks)]);
    const mixedValues = Buffer.concat([values.subarray(2 * BITS_BYTES), emptyBits(), values.subarray(0, 2 * BITS_BYTES)]);
    const back = await lpmTableFromKernel('src_v4', 1, mixed, mixedValues, 4, BITS_BYTES);
    assert.equal(back.count, 3);
    assert.equal(await sameContents(back, t), true);
    const d = await mergeDiff(back, lpmTable('src_v4', [v4(0, 0, []), v4(0x0a000000, 8, [2])]));
    assert.deepEqual([d.removed.length, d.added.length, d.changed.length], [1, 0, 1]);
  });
});

describe('fast path tables: IPv6 hash entries', () => {
  it('sorted by length then bits; kernel keys as encodeV6HashKey; read back per generation and field', async () => {
    const hash = [
      { len: 48, hi: 0x20010db800010000n, cls: 3 },
      { len: 32, hi: 0x20010db800000000n, cls: 2 },
      { len: 48, hi: 0x20010db800020000n, cls: 3 },
    ];
    const t = v6HashTable(hash);
    assert.equal(t.count, 3);
    const idx = Uint32Array.from([0, 1, 2]);
    const keys = Buffer.alloc(3 * V6_HASH_KEY_SIZE);
    const values = Buffer.alloc(12);
    encodeV6HashKeys(3, t, idx, 0, 3, keys);
    encodeValues(t, idx, 0, 3, values);
    const order = [hash[1]!, hash[0]!, hash[2]!];
    order.forEach((h, i) => {
      assert.ok(keys.subarray(i * V6_HASH_KEY_SIZE, (i + 1) * V6_HASH_KEY_SIZE).equals(encodeV6HashKey(3, h.len, h.hi)), `key ${i}`);
      assert.equal(values.readUInt32LE(i * 4), h.cls);
    });
    const other = encodeV6HashKey(1, 32, 0x20010db800000000n);
    const back = await v6HashTableFromKernel(3, Buffer.concat([other, keys]), Buffer.concat([Buffer.from([9, 0, 0, 0]), values]), 4, 4);
    assert.equal(await sameContents(back, t), true);
    assert.throws(() => v6HashTable([hash[0]!, { ...hash[0]!, cls: 4 }]), /appears more than once/);
  });
});
