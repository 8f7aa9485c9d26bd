/**
 * Country -> prefixes from a MaxMind DB (mmdb) file. mmdb-lib reads the
 * metadata and decodes data records; readers only look up single
 * addresses, so expanding a country walks the search tree once, collecting
 * every network with its country code. Both record layouts in the wild are
 * understood: MaxMind's GeoLite2/GeoIP2-Country (`country.iso_code`, with
 * `registered_country.iso_code` as a fallback) and ip-location-db's
 * (`country_code`).
 *
 * IPv6 trees alias the IPv4 space under ::ffff:0:0/96 and 2002::/16 to the
 * node of ::/96; the walk reads IPv4 once, at ::/96, and skips the aliases.
 *
 * Memory: a full database is ~1M networks. They are kept per country in
 * flat typed arrays (IPv4: 5 bytes a network, IPv6: 17; one buffer for all,
 * sized by a first walk that counts), adjacent networks
 * of one country merged into their common prefix as the walk emits them in
 * address order; GeoPrefix objects exist only for the countries a compile
 * asks for, while it runs (a million small Buffers held in the heap made
 * the server's RSS ~270 MB).
 */
import { readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { Reader } from 'mmdb-lib';
import { formatAddress, numberToIpv4 } from '../net/address.js';

const require = createRequire(import.meta.url);
// mmdb-lib's tree walker (record decoding by size) is public in the package but not re-exported.
const makeWalker = (require('mmdb-lib/lib/reader/walker.js') as { default: (db: Buffer, recordSize: number) => { left(o: number): number; right(o: number): number } }).default;

export interface GeoPrefix {
  /** address bytes (4 or 16), host bits clear */
  data: Buffer;
  length: number;
}

export interface CountryPrefixes {
  v4: GeoPrefix[];
  v6: GeoPrefix[];
}

/** What the compiler needs: prefixes of a country (empty lists when unknown). */
export interface CountryResolver {
  prefixes(country: string): CountryPrefixes;
  /** every country code present, for validation messages */
  has(country: string): boolean;
}

export class GeoIpDatabase implements CountryResolver {
  readonly databaseType: string;
  readonly buildEpoch: Date;
  /** networks read from the tree (before merging) */
  networks = 0;
  private readonly byCountry = new Map<string, CompactCountry>();

  private constructor(readonly file: string, db: Buffer) {
    const reader = new Reader<Record<string, unknown>>(db);
    const meta = reader.metadata;
    this.databaseType = meta.databaseType;
    this.buildEpoch = meta.buildEpoch;
    const walker = makeWalker(db, meta.recordSize);
    const nodeCount = meta.nodeCount;
    const nodeBytes = meta.nodeByteSize;
    const codeOf = new Map<number, string | null>();
    const resolve = (reader as unknown as { resolveDataPointer(p: number): unknown }).resolveDataPointer.bind(reader);
    const path = new Uint8Array(16);
    // two walks: the first counts each country's networks, the second writes them into one
    // buffer sized for all (no growing arrays: their garbage stayed in the RSS)
    const counts = new Map<string, { v4: number; v6: number }>();
    const building = new Map<string, CountryBuilder>();
    let counting = true;

    let ipv4Start = 0;
    if (meta.ipVersion === 6) {
      for (let i = 0; i < 96 && ipv4Start < nodeCount; i++) ipv4Start = walker.left(ipv4Start * nodeBytes);
    }

    const emit = (record: number, depth: number, v4: boolean) => {
      let cc = codeOf.get(record);
      if (cc === undefined) {
        cc = countryCode(resolve(record));
        codeOf.set(record, cc);
      }
      if (counting) {
        this.networks++;
        if (!cc) return;
        const n = counts.get(cc) ?? { v4: 0, v6: 0 };
        if (v4) n.v4++;
        else n.v6++;
        counts.set(cc, n);
        return;
      }
      if (!cc) return;
      const entry = building.get(cc)!;
      if (v4) entry.addV4(((path[12]! << 24) | (path[13]! << 16) | (path[14]! << 8) | path[15]!) >>> 0, depth - 96);
      else entry.addV6(path, depth);
    };

    const setBit = (depth: number, on: boolean) => {
      const byte = depth >> 3;
      const mask = 0x80 >> (depth & 7);
      path[byte] = on ? path[byte]! | mask : path[byte]! & ~mask;
    };

    // v4: inside ::/96 of an IPv6 tree (a pure IPv4 tree starts at depth 96)
    const walk = (node: number, depth: number, v4: boolean): void => {
      if (node === nodeCount) return; // no data here
      if (node > nodeCount) return emit(node, depth, v4);
      if (meta.ipVersion === 6 && !v4 && node === ipv4Start && depth > 0) {
        if (depth === 96 && isZeroPrefix(path, 96)) v4 = true;
        else return; // ::ffff:0:0/96, 2002::/16 ...: aliases of the IPv4 subtree
      }
      if (depth >= 128) return;
      const off = node * nodeBytes;
      setBit(depth, false);
      walk(walker.left(off), depth + 1, v4);
      setBit(depth, true);
      walk(walker.right(off), depth + 1, v4);
      setBit(depth, false);
    };

    const walkAll = () => (meta.ipVersion === 4 ? walk(0, 96, true) : walk(0, 0, false));
    walkAll();
    let v4Total = 0;
    let v6Total = 0;
    for (const n of counts.values()) {
      v4Total += n.v4;
      v6Total += n.v6;
    }
    const v4Addr = new Uint32Array(v4Total);
    const v4Len = new Uint8Array(v4Total);
    const v6 = new Uint8Array(v6Total * V6_ENTRY);
    let o4 = 0;
    let o6 = 0;
    for (const [cc, n] of counts) {
      building.set(cc, new CountryBuilder({ v4Addr: v4Addr.subarray(o4, o4 + n.v4), v4Len: v4Len.subarray(o4, o4 + n.v4), v6: v6.subarray(o6 * V6_ENTRY, (o6 + n.v6) * V6_ENTRY) }));
      o4 += n.v4;
      o6 += n.v6;
    }
    counting = false;
    walkAll();
    for (const [cc, b] of building) this.byCountry.set(cc, b.done());
  }

  /** Opens (and caches, by path and modification time) a database. */
  static open(path: string): GeoIpDatabase {
    const st = statSync(path);
    const key = `${path}:${st.mtimeMs}:${st.size}`;
    let db = cache.get(key);
    if (!db) {
      cache.clear(); // one database at a time is what a deployment uses (drop the old one before reading the new)
      db = new GeoIpDatabase(path, readFileSync(path));
      cache.set(key, db);
    }
    return db;
  }

  /** A country's networks, adjacent ones merged, in address order (built on each call: the caller owns them). */
  prefixes(country: string): CountryPrefixes {
    const c = this.byCountry.get(country.toUpperCase());
    if (!c) return { v4: [], v6: [] };
    const v4: GeoPrefix[] = new Array(c.v4Len.length);
    for (let i = 0; i < v4.length; i++) {
      const a = c.v4Addr[i]!;
      v4[i] = { data: Buffer.from([a >>> 24, (a >>> 16) & 255, (a >>> 8) & 255, a & 255]), length: c.v4Len[i]! };
    }
    const v6: GeoPrefix[] = new Array(c.v6.length / V6_ENTRY);
    for (let i = 0; i < v6.length; i++) v6[i] = { data: Buffer.from(c.v6.subarray(i * V6_ENTRY, i * V6_ENTRY + 16)), length: c.v6[i * V6_ENTRY + 16]! };
    return { v4, v6 };
  }

  has(country: string): boolean {
    return this.byCountry.has(country.toUpperCase());
  }

  countries(): string[] {
    return [...this.byCountry.keys()].sort();
  }
}

/** 16 address bytes + 1 length byte */
const V6_ENTRY = 17;

interface CompactCountry {
  v4Addr: Uint32Array;
  v4Len: Uint8Array;
  /** V6_ENTRY bytes per network */
  v6: Uint8Array;
}

/**
 * One country's networks while the tree is walked (in address order). A
 * network whose left sibling is the last one kept replaces it with their
 * parent, repeatedly: /25 + /25 -> /24, then that /24 + the /24 before it ->
 * /23. Networks of one country that only touch without forming a prefix
 * stay apart.
 */
export class CountryBuilder {
  // growable typed arrays, not number[]: no boxed numbers, little garbage while a million networks pass
  private v4Addr: Uint32Array;
  private v4Len: Uint8Array;
  private v4Count = 0;
  private v6: Uint8Array;
  private v6Count = 0;

  /** into: storage sized for the networks to come (it grows when they do not fit) */
  constructor(into: CompactCountry = { v4Addr: new Uint32Array(64), v4Len: new Uint8Array(64), v6: new Uint8Array(V6_ENTRY * 64) }) {
    this.v4Addr = into.v4Addr;
    this.v4Len = into.v4Len;
    this.v6 = into.v6;
  }

  addV4(addr: number, length: number): void {
    while (length > 0 && this.v4Count > 0) {
      const last = this.v4Count - 1;
      const bit = 2 ** (32 - length); // the bit that tells the two halves of the parent apart
      if (this.v4Len[last] !== length || this.v4Addr[last]! + bit !== addr || this.v4Addr[last]! % (bit * 2) !== 0) break;
      this.v4Count--;
      addr -= bit;
      length--;
    }
    if (this.v4Count === this.v4Len.length) {
      const a = new Uint32Array(Math.max(64, this.v4Count * 2));
      a.set(this.v4Addr);
      this.v4Addr = a;
      const l = new Uint8Array(Math.max(64, this.v4Count * 2));
      l.set(this.v4Len);
      this.v4Len = l;
    }
    this.v4Addr[this.v4Count] = addr;
    this.v4Len[this.v4Count] = length;
    this.v4Count++;
  }

  addV6(addr: Uint8Array, length: number): void {
    const cur = new Uint8Array(16);
    cur.set(addr.subarray(0, 16));
    while (length > 0 && this.v6Count > 0) {
      const o = (this.v6Count - 1) * V6_ENTRY;
      if (this.v6[o + 16] !== length || !isLeftSibling(this.v6.subarray(o, o + 16), cur, length)) break;
      this.v6Count--;
      const b = length - 1;
      cur[b >> 3] = cur[b >> 3]! & ~(0x80 >> (b & 7));
      length--;
    }
    if ((this.v6Count + 1) * V6_ENTRY > this.v6.length) {
      const grown = new Uint8Array(Math.max(V6_ENTRY * 64, this.v6.length * 2));
      grown.set(this.v6);
      this.v6 = grown;
    }
    const o = this.v6Count * V6_ENTRY;
    this.v6.set(cur, o);
    this.v6[o + 16] = length;
    this.v6Count++;
  }

  done(): CompactCountry {
    // views, not copies: the database's countries share one buffer
    return { v4Addr: this.v4Addr.subarray(0, this.v4Count), v4Len: this.v4Len.subarray(0, this.v4Count), v6: this.v6.subarray(0, this.v6Count * V6_ENTRY) };
  }

  /** for tests: the merged networks so far */
  list(): { v4: string[]; v6: string[] } {
    const c = this.done();
    return {
      v4: [...c.v4Len].map((l, i) => `${numberToIpv4(c.v4Addr[i]!)}/${l}`),
      v6: Array.from({ length: c.v6.length / V6_ENTRY }, (_, i) => `${formatAddress(c.v6.subarray(i * V6_ENTRY, i * V6_ENTRY + 16))}/${c.v6[i * V6_ENTRY + 16]}`),
    };
  }
}

/** left and right differ only in bit length-1 (0 in left, 1 in right); bits after it are clear in both */
function isLeftSibling(left: Uint8Array, right: Uint8Array, length: number): boolean {
  const b = length - 1;
  const byte = b >> 3;
  const mask = 0x80 >> (b & 7);
  if (left[byte]! & mask || !(right[byte]! & mask)) return false;
  if ((left[byte]! | mask) !== right[byte]) return false;
  for (let i = 0; i < 16; i++) if (i !== byte && left[i] !== right[i]) return false;
  return true;
}

const cache = new Map<string, GeoIpDatabase>();

function isZeroPrefix(path: Uint8Array, bits: number): boolean {
  for (let i = 0; i < bits; i++) if (path[i >> 3]! & (0x80 >> (i & 7))) return false;
  return true;
}

function countryCode(rec: unknown): string | null {
  if (!rec || typeof rec !== 'object') return null;
  const r = rec as { country?: { iso_code?: unknown }; registered_country?: { iso_code?: unknown }; country_code?: unknown };
  const cc = r.country?.iso_code ?? r.country_code ?? r.registered_country?.iso_code;
  return typeof cc === 'string' && /^[A-Za-z]{2}$/.test(cc) ? cc.toUpperCase() : null;
}
