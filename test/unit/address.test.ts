/**
 * src/net/address.ts: the one module for IP addresses and prefixes (issue 14).
 * IPv6 is printed compressed everywhere (RFC 5952), never as 8 padded groups.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  addressBytes,
  addressFamily,
  canonicalAddress,
  canonicalAddressWithLength,
  contains,
  formatAddress,
  formatPrefix,
  hasHostBits,
  ipv4Netmask,
  ipv4ToNumber,
  minimalPrefixes,
  numberToIpv4,
  overlaps,
  parseAddressWithLength,
  parseNetwork,
  parsePrefix,
  prefixFromBytes,
  prefixRange,
  reverseName,
} from '../../src/net/address.js';
import { codecs } from '../../src/bpf/index.js';

describe('addresses', () => {
  it('formats IPv6 compressed (RFC 5952), from bytes and from text', () => {
    assert.equal(formatAddress(Buffer.alloc(16)), '::');
    assert.equal(formatPrefix(prefixFromBytes(Buffer.alloc(16), 0)), '::/0');
    assert.equal(canonicalAddress('2001:DB8:0:0:1:0:0:1'), '2001:db8::1:0:0:1');
    assert.equal(canonicalAddress('2001:db8:0:0:0:0:0:1'), '2001:db8::1');
    assert.equal(canonicalAddress('::ffff:1.2.3.4'), '::ffff:102:304');
    assert.equal(codecs.ipv6.decode(codecs.ipv6.encode('fe80:0::1')), 'fe80::1');
    assert.equal(codecs.lpmV6Key.decode(codecs.lpmV6Key.encode(parsePrefix('::/0'))).address, '::');
    assert.equal(canonicalAddressWithLength('2001:DB8:0::1/64'), '2001:db8::1/64');
    assert.equal(canonicalAddressWithLength('not an address'), 'not an address');
  });

  it('converts between text, bytes and numbers', () => {
    assert.deepEqual([...addressBytes('192.0.2.7')], [192, 0, 2, 7]);
    assert.equal(addressBytes('2001:db8::1').length, 16);
    assert.equal(ipv4ToNumber('255.255.255.255'), 0xffffffff);
    assert.equal(numberToIpv4(0xc0000207), '192.0.2.7');
    assert.equal(ipv4Netmask(24), '255.255.255.0');
    assert.equal(ipv4Netmask(0), '0.0.0.0');
    assert.throws(() => addressBytes('10.0.0.256'), /"10\.0\.0\.256" is not an IPv4 or IPv6 address/);
    assert.throws(() => addressBytes('::1', 4), /is not an IPv4 address/);
    assert.equal(addressFamily('010.0.0.1'), 0, 'no octal forms');
  });

  it('names PTR owners', () => {
    assert.equal(reverseName('192.0.2.7'), '7.2.0.192.in-addr.arpa');
    assert.equal(reverseName('2001:db8::1'), `1.${'0.'.repeat(23)}8.b.d.0.1.0.0.2.ip6.arpa`);
  });
});

describe('prefixes', () => {
  it('parses, clears host bits where asked, refuses them for networks', () => {
    assert.deepEqual(parsePrefix('10.1.2.3/8'), { family: 4, address: '10.0.0.0', length: 8 });
    assert.deepEqual(parsePrefix('2001:db8:ffff::1/33'), { family: 6, address: '2001:db8:8000::', length: 33 });
    assert.throws(() => parseNetwork('10.0.0.1/24'), /host bits set: write the network 10\.0\.0\.0\/24/);
    assert.equal(formatPrefix(parseNetwork('2001:DB8::/32')), '2001:db8::/32');
    assert.equal(hasHostBits('10.0.0.1', parsePrefix('10.0.0.1/24')), true);
    assert.equal(hasHostBits('2001:DB8::', parsePrefix('2001:db8::/32')), false);
    for (const bad of ['10.0.0.0/33', '::/129', ' 10.0.0.0/8', 'fe80::1%eth0', '10.0.0.0/8/1', 'x']) assert.throws(() => parsePrefix(bad), RangeError, bad);
  });

  it('reads addresses with an optional length, host bits kept', () => {
    assert.deepEqual(parseAddressWithLength('10.0.0.1/24'), { family: 4, address: '10.0.0.1', length: 24 });
    assert.deepEqual(parseAddressWithLength('2001:db8::1'), { family: 6, address: '2001:db8::1', length: undefined });
    for (const bad of ['10.0.0.1/33', '10.0.0.1/', 'x/24', '10.0.0.1/24/1']) assert.equal(parseAddressWithLength(bad), undefined, bad);
  });

  it('contains, overlaps and ranges', () => {
    assert.equal(contains('10.0.0.0/8', '10.255.0.1'), true);
    assert.equal(contains('10.0.0.1/8', '10.255.0.1'), true, 'an interface address names its network');
    assert.equal(contains('10.0.0.0/8', '11.0.0.1'), false);
    assert.equal(contains('10.0.0.0/8', '::1'), false);
    assert.equal(contains('0.0.0.0/0', '255.255.255.255'), true);
    assert.equal(contains(parsePrefix('2001:db8::/32'), '2001:db8:ffff::1'), true);
    assert.equal(contains('2001:db8::/32', '2001:db9::1'), false);
    assert.equal(contains('not a prefix', '10.0.0.1'), false);
    assert.equal(overlaps(parsePrefix('10.0.0.0/8'), parsePrefix('10.1.0.0/16')), true);
    assert.equal(overlaps(parsePrefix('10.1.0.0/16'), parsePrefix('10.0.0.0/8')), true);
    assert.equal(overlaps(parsePrefix('10.0.0.0/16'), parsePrefix('10.1.0.0/16')), false);
    assert.deepEqual(prefixRange(parsePrefix('10.0.0.0/24')), { first: 0x0a000000, last: 0x0a0000ff });
    assert.deepEqual(prefixRange(parsePrefix('::/127')), { first: 0n, last: 1n });
  });

  it('minimal prefix sets drop covered prefixes', () => {
    const out = minimalPrefixes(['2001:db8:1::/48', '10.1.0.0/16', '::/0', '10.0.0.0/8', '192.168.1.1', '2001:db8::/32'].map(parsePrefix)).map(formatPrefix);
    assert.deepEqual(out, ['10.0.0.0/8', '192.168.1.1/32', '::/0']);
  });
});

describe('parseNetwork: the one-pass IPv4 case', () => {
  it('answers exactly as parsePrefix plus the host-bits check, for valid and invalid text', () => {
    let seed = 7;
    const rnd = (n: number) => {
      seed = (seed * 1103515245 + 12345) >>> 0;
      return seed % n;
    };
    const octet = () => [String(rnd(256)), String(rnd(300)), `0${rnd(10)}`, '0', '255', '256', ''][rnd(7)]!;
    const inputs = ['0.0.0.0/0', '10.0.0.0/8', '10.0.0.1/8', '1.2.3.4', '1.2.3.4/32', '1.2.3.4/33', '1.2.3.0/24', '1.2.3.0/024', '1.2.3.0/08', '01.2.3.0/24', '1.2.3', '1.2.3.4.5', '1.2.3.4/', ' 1.2.3.4', '1.2.3.4 ', '1..3.4', '::1', '2001:db8::/32', '1.2.3.4/2x', '255.255.255.255/32', '192.168.0.0/16'];
    for (let i = 0; i < 5000; i++) {
      const quad = [octet(), octet(), octet(), octet()].join('.');
      inputs.push(rnd(3) === 0 ? quad : `${quad}/${[rnd(33), rnd(40), `0${rnd(10)}`][rnd(3)]}`);
    }
    const outcome = (f: () => unknown) => {
      try {
        return f();
      } catch (e) {
        return `throws: ${(e as Error).message}`;
      }
    };
    for (const text of inputs) {
      const expected = outcome(() => {
        const p = parsePrefix(text);
        const [addr, len] = text.split('/');
        if (len !== undefined && hasHostBits(addr!, p)) throw new RangeError(`"${text}" has host bits set: write the network ${formatPrefix(p)}, or ${addr}/${p.family === 4 ? 32 : 128} for the one address`);
        return p;
      });
      assert.deepEqual(outcome(() => parseNetwork(text)), expected, text);
    }
  });
});
