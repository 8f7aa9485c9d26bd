/**
 * GeoIP expansion: a GeoLite2-shaped fixture written with
 * libmaxmind-db-writer-perl in each of the format's record sizes (24, 28,
 * 32 bits; country.iso_code, registered_country fallback, IPv4 aliased into
 * the IPv6 tree) and the real-size CC0 database from npm
 * (country_code layout), cross-checked against mmdb-lib's own lookups.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execaSync } from 'execa';
import { Reader } from 'mmdb-lib';
import { CountryBuilder, GeoIpDatabase, TreeReader } from '../../src/fastpath/geoip.js';
import { missing } from '../lib/skip.js';

const WRITER = fileURLToPath(new URL('../../../test/fixtures/geoip/write-country-mmdb.pl', import.meta.url));
const GEO_DB = fileURLToPath(new URL('../../../node_modules/@ip-location-db/geo-whois-asn-country-mmdb/geo-whois-asn-country.mmdb', import.meta.url));
const perlWriter = execaSync('perl', ['-MMaxMind::DB::Writer::Tree', '-e', '1'], { reject: false }).exitCode === 0;

const fmt4 = (p: { data: Buffer; length: number }) => `${[...p.data].join('.')}/${p.length}`;

describe('GeoIP country expansion', () => {
  // the spec's three node layouts (24, 28 and 32-bit records); the writer is MaxMind's own
  for (const recordSize of [24, 28, 32]) {
    it(`reads a GeoLite2-Country layout with ${recordSize}-bit records, skips the IPv4 aliases, falls back to registered_country`, { skip: perlWriter ? undefined : 'needs libmaxmind-db-writer-perl' }, () => {
      const dir = mkdtempSync(join(tmpdir(), 'pt-geo-'));
      try {
        const file = join(dir, 'country.mmdb');
        execaSync('perl', [WRITER, file, String(recordSize)]);
        const db = GeoIpDatabase.open(file);
        const reader = new Reader<Record<string, unknown>>(readFileSync(file));
        assert.equal(reader.metadata.recordSize, recordSize);
        assert.equal(db.databaseType, 'GeoLite2-Country');
        assert.deepEqual(db.countries(), ['DE', 'FR', 'NL']);
        assert.deepEqual(db.prefixes('de').v4.map(fmt4), ['5.1.0.0/16', '5.2.0.0/17']);
        assert.deepEqual(db.prefixes('DE').v6.map((p) => `${p.data.subarray(0, 4).toString('hex')}/${p.length}`), ['2a0104f8/32']);
        assert.deepEqual(db.prefixes('FR').v4.map(fmt4), ['5.3.0.0/24']);
        assert.deepEqual(db.prefixes('FR').v6.map((p) => `${p.data.subarray(0, 4).toString('hex')}/${p.length}`), ['2a010e00/26']);
        assert.deepEqual(db.prefixes('NL').v4.map(fmt4), ['5.4.4.0/22']);
        // a country set: its countries' networks in address order (unknown codes ignored)
        assert.deepEqual(db.union(['fr', 'DE', 'XX', 'de']).v4.map(fmt4), ['5.1.0.0/16', '5.2.0.0/17', '5.3.0.0/24']);
        assert.deepEqual(db.union(['XX']), { v4: [], v6: [] });
        // each network once: ::ffff:0:0/96 and 2002::/16 alias the IPv4 tree
        assert.equal(db.networks, 6);
        assert.equal(db.has('US'), false);
        assert.deepEqual(db.prefixes('US'), { v4: [], v6: [] });
        // the tree decoded here agrees with the reader's own search (root node's records, then a lookup's path)
        const tree = new TreeReader(readFileSync(file), recordSize);
        let node = 0;
        for (let bit = 0; bit < 96; bit++) node = tree.left(node); // ::/96, where IPv4 lives
        for (const b of [0, 0, 0, 0, 0, 1, 0, 1]) node = b ? tree.right(node) : tree.left(node); // 5.x: 00000101
        assert.ok(node < reader.metadata.nodeCount, 'inside the tree at 5.0.0.0/8');
        assert.equal(reader.getWithPrefixLength('5.1.2.3')[1], 16);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }

  it('decodes node records as the spec lays them out, also the 28-bit middle nibbles and values above 2^24', () => {
    // node 1 of each buffer holds left 0x0abcdef1 / right 0x0fedcba9 (28 bits), or their 24/32-bit forms
    const n24 = Buffer.from('000000000000' + 'bcdef1' + 'edcba9', 'hex');
    const t24 = new TreeReader(n24, 24);
    assert.deepEqual([t24.left(1), t24.right(1)], [0xbcdef1, 0xedcba9]);
    // 28: left's low 24 bits, a byte with left's top nibble (a) and right's (f), right's low 24 bits
    const n28 = Buffer.from('00000000000000' + 'bcdef1' + 'af' + 'edcba9', 'hex');
    const t28 = new TreeReader(n28, 28);
    assert.deepEqual([t28.left(1), t28.right(1)], [0x0abcdef1, 0x0fedcba9]);
    const n32 = Buffer.from('0000000000000000' + 'fabcdef1' + '8fedcba9', 'hex');
    const t32 = new TreeReader(n32, 32);
    assert.deepEqual([t32.left(1), t32.right(1)], [0xfabcdef1, 0x8fedcba9], 'unsigned');
    assert.throws(() => new TreeReader(n24, 20), /unsupported record size 20 \(the MaxMind DB format has 24, 28 and 32\)/);
  });

  it('expands the real-size country_code database consistently with single-address lookups', { skip: missing({ file: GEO_DB }) }, () => {
    const db = GeoIpDatabase.open(GEO_DB);
    assert.ok(db.networks > 500_000, `networks: ${db.networks}`);
    assert.ok(db.countries().length > 200);
    const reader = new Reader<Record<string, unknown>>(readFileSync(GEO_DB));
    for (const cc of ['NZ', 'DE', 'BR', 'JP']) {
      const p = db.prefixes(cc);
      assert.ok(p.v4.length > 100 && p.v6.length > 100, `${cc}: ${p.v4.length} v4, ${p.v6.length} v6`);
      for (let i = 0; i < p.v4.length; i += Math.ceil(p.v4.length / 50)) {
        const net = p.v4[i]!;
        const [rec, len] = reader.getWithPrefixLength([...net.data].join('.'));
        assert.equal((rec as { country_code?: string } | null)?.country_code, cc, fmt4(net));
        // merged: the network is the reader's or a merge of it with its neighbours of the same country
        assert.ok(len >= net.length, `${fmt4(net)}: the reader's prefix length ${len}`);
        const lastAddr = (net.data.readUInt32BE(0) + 2 ** (32 - net.length) - 1) >>> 0;
        const last = [lastAddr >>> 24, (lastAddr >>> 16) & 255, (lastAddr >>> 8) & 255, lastAddr & 255].join('.');
        assert.equal((reader.get(last) as { country_code?: string } | null)?.country_code, cc, `${fmt4(net)}: its last address ${last}`);
      }
      for (let i = 0; i < p.v6.length; i += Math.ceil(p.v6.length / 50)) {
        const net = p.v6[i]!;
        const addr = net.data.toString('hex').replace(/(.{4})(?!$)/g, '$1:');
        const [rec, len] = reader.getWithPrefixLength(addr);
        assert.equal((rec as { country_code?: string } | null)?.country_code, cc, addr);
        assert.ok(len >= net.length, `${addr}/${net.length}: the reader's prefix length ${len}`);
      }
    }
    // merged: no two consecutive networks of a country are the halves of one prefix
    const nz = db.prefixes('NZ').v4;
    for (let i = 1; i < nz.length; i++) {
      const [a, b] = [nz[i - 1]!, nz[i]!];
      const siblings = a.length === b.length && a.data.readUInt32BE(0) + 2 ** (32 - a.length) === b.data.readUInt32BE(0) && a.data.readUInt32BE(0) % 2 ** (33 - a.length) === 0;
      assert.ok(!siblings, `${fmt4(a)} and ${fmt4(b)} should have been merged`);
    }
  });

  it('a country set is the union of its countries\' networks, merged across countries: the same addresses in fewer networks', { skip: missing({ file: GEO_DB }) }, () => {
    const db = GeoIpDatabase.open(GEO_DB);
    const neighbours = ['DE', 'FR', 'NL', 'BE', 'AT', 'CH', 'PL', 'CZ', 'LU'];
    const all = db.countries();
    // one walk for every single country and both sets
    db.prepare([...all.map((cc) => [cc]), neighbours, all]);
    /** a prefix list as sorted, coalesced [start, end) address intervals */
    const intervals = (lists: { data: Buffer; length: number }[][], bits: number): [bigint, bigint][] => {
      const iv: [bigint, bigint][] = [];
      for (const list of lists) for (const p of list) {
        const start = BigInt(`0x${p.data.toString('hex')}`);
        iv.push([start, start + (1n << BigInt(bits - p.length))]);
      }
      iv.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
      const out: [bigint, bigint][] = [];
      for (const [s, e] of iv) {
        const last = out.at(-1);
        assert.ok(!last || s >= last[1], `overlapping networks at ${s.toString(16)}`);
        if (last && s === last[1]) last[1] = e;
        else out.push([s, e]);
      }
      return out;
    };
    for (const set of [neighbours, all]) {
      const union = db.union(set);
      const each = set.map((cc) => db.prefixes(cc));
      const count = (f: 'v4' | 'v6') => each.reduce((n, p) => n + p[f].length, 0);
      for (const [f, bits] of [['v4', 32], ['v6', 128]] as const) {
        assert.deepEqual(intervals([union[f]], bits), intervals(each.map((p) => p[f]), bits), `${set.length} countries, ${f}: the same addresses`);
        assert.ok(union[f].length < count(f), `${set.length} countries, ${f}: ${union[f].length} networks, ${count(f)} before merging across countries`);
        // merged: no two consecutive networks are the halves of one prefix
        for (let i = 1; i < union[f].length; i++) {
          const [a, b] = [union[f][i - 1]!, union[f][i]!];
          const size = 1n << BigInt(bits - a.length);
          const start = BigInt(`0x${a.data.toString('hex')}`);
          assert.ok(!(a.length === b.length && start % (2n * size) === 0n && start + size === BigInt(`0x${b.data.toString('hex')}`)), `${f} ${i}: siblings left apart`);
        }
      }
      if (set === all) assert.ok(union.v4.length + union.v6.length < 150_000, `every country: ${union.v4.length} + ${union.v6.length} networks (${count('v4')} + ${count('v6')} per country)`);
    }
  });

  it('merges adjacent networks of one country into their common prefix, as they arrive in address order', () => {
    const b = new CountryBuilder();
    const v4 = (s: string) => s.split('.').reduce((n, x) => n * 256 + Number(x), 0);
    b.addV4(v4('10.0.0.0'), 24);
    b.addV4(v4('10.0.1.0'), 25);
    b.addV4(v4('10.0.1.128'), 25); // /25 + /25 -> 10.0.1.0/24, then + 10.0.0.0/24 -> /23
    b.addV4(v4('10.0.3.0'), 24); // touches 10.0.2.0/24? no: 10.0.2.0/24 is absent, stays apart
    b.addV4(v4('10.0.4.0'), 24); // adjacent to 10.0.3.0/24 but not its sibling (3 and 4 have different parents)
    b.addV4(v4('10.0.5.0'), 24); // sibling of 10.0.4.0/24 -> 10.0.4.0/23
    b.addV4(v4('255.255.255.254'), 32);
    b.addV4(v4('255.255.255.255'), 32);
    const v6 = (hex: string) => Uint8Array.from(Buffer.from(hex.padEnd(32, '0'), 'hex'));
    b.addV6(v6('2a0104f8'), 32);
    b.addV6(v6('2a0104f9'), 32); // -> 2a0104f8::/31
    b.addV6(v6('2a0104fa'), 32); // right after, not a sibling of the /31
    assert.deepEqual(b.list(), {
      v4: ['10.0.0.0/23', '10.0.3.0/24', '10.0.4.0/23', '255.255.255.254/31'],
      v6: ['2a01:4f8::/31', '2a01:4fa::/32'],
    });
  });
});
