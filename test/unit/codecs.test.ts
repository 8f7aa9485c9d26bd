import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { codecs } from '../../src/bpf/index.js';
import { parsePrefix } from '../../src/net/address.js';

describe('codecs', () => {
  it('lays out structs with C alignment', () => {
    const s = codecs.struct({ a: codecs.u8, b: codecs.u32, c: codecs.u64, d: codecs.u16 });
    assert.equal(s.offsets.b, 4);
    assert.equal(s.offsets.c, 8);
    assert.equal(s.offsets.d, 16);
    assert.equal(s.size, 24);
    assert.deepEqual(s.decode(s.encode({ a: 1, b: 2, c: 3n, d: 4 })), { a: 1, b: 2, c: 3n, d: 4 });
  });

  it('parses and normalises prefixes', () => {
    assert.deepEqual(parsePrefix('10.1.2.3/8'), { family: 4, address: '10.0.0.0', length: 8 });
    assert.deepEqual(parsePrefix('2001:db8:ffff::1/33'), { family: 6, address: '2001:db8:8000::', length: 33 });
    assert.deepEqual(parsePrefix('::ffff:1.2.3.4'), { family: 6, address: '::ffff:102:304', length: 128 });
    for (const bad of ['10.0.0.300/24', '10.0.0.0/33', '2001:db8::/129', 'foo', '10.0.0.0/8/9', '10.0.0.0/-1']) {
      assert.throws(() => parsePrefix(bad), RangeError, bad);
    }
  });

  it('encodes LPM keys', () => {
    const k = codecs.lpmV4Key.encode(parsePrefix('192.168.1.0/24'));
    assert.deepEqual([...k], [24, 0, 0, 0, 192, 168, 1, 0]);
    const k6 = codecs.lpmV6Key.encode(parsePrefix('2001:db8::/32'));
    assert.equal(k6.length, 20);
    assert.equal(k6.readUInt16BE(4), 0x2001);
    assert.deepEqual(codecs.lpmV6Key.decode(k6), { family: 6, address: '2001:db8::', length: 32 });
    assert.throws(() => codecs.lpmV4Key.encode(parsePrefix('::/0')), /not an IPv4 prefix/);
  });

  it('round-trips IPv6 text', () => {
    for (const a of ['::', '::1', '2001:db8::1', 'fe80::1:2:3:4', '1:2:3:4:5:6:7:8', '2001:0:0:1::1']) {
      assert.equal(codecs.ipv6.decode(codecs.ipv6.encode(a)), a);
    }
  });
});
