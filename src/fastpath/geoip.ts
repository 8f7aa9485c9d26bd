/**
 * Country -> prefixes from a MaxMind DB (mmdb) file, read through the
 * format's specification (https://maxmind.github.io/MaxMind-DB/) and
 * mmdb-lib's public API only: the search tree's nodes are decoded here
 * (`TreeReader`: 24, 28 or 32-bit records), and the data record a leaf
 * points to is decoded once per distinct record by `Reader.get` on an
 * address inside that network. Both record layouts in the wild are
 * understood: MaxMind's GeoLite2/GeoIP2-Country (`country.iso_code`, with
 * `registered_country.iso_code` as a fallback) and ip-location-db's
 * (`country_code`).
 *
 * IPv6 trees alias the IPv4 space under ::ffff:0:0/96 and 2002::/16 to the
 * node of ::/96; the walk reads IPv4 once, at ::/96, and skips the aliases.
 *
 * Memory: the database stays a file. Opening it walks the tree once for a
 * census (country codes, network count) and keeps nothing per network; a
 * compile asks for the countries it needs (`prepare`), which reads the file
 * and walks the tree once for all of them, keeping only their networks in
 * flat typed arrays (IPv4: 5 bytes a network, IPv6: 17), adjacent networks
 * merged into their common prefix as the walk emits them in address order.
 * Only the last selection is kept (a deployment compiles the same countries
 * again and again: drift checks, plans). A whole database held in the heap,
 * a million small Buffers, made the server's RSS ~270 MB.
 *
 * A selection is made of country sets (`union`): a rule that names several
 * countries matches the union of their networks, and two adjacent networks
 * of *different* countries of one set are merged too. Every country of the
 * database in one rule: 494k IPv4 and 517k IPv6 networks (each country's
 * own merged) become 22k and 60k map entries, the same addresses.
 */
import { readFileSync, statSync } from 'node:fs';
import { Reader } from 'mmdb-lib';
import { formatAddress, numberToIpv4 } from '../net/address.js';

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
  /** the country sets a compile is about to ask for (`union` of each): one pass over the database for all of them */
  prepare?(sets: readonly (readonly string[])[]): void;
  /**
   * The networks of any of these countries (unknown ones ignored), adjacent
   * ones merged also across countries, in address order: the same addresses
   * as every country's `prefixes` together, in fewer networks.
   */
  union?(countries: readonly string[]): CountryPrefixes;
}

/** Search-tree nodes of an mmdb file, decoded per the spec's record sizes. */
export class TreeReader {
  readonly left: (node: number) => number;
  readonly right: (node: number) => number;

  constructor(db: Uint8Array, recordSize: number) {
    const u24 = (o: number) => (db[o]! << 16) | (db[o + 1]! << 8) | db[o + 2]!;
    const u32 = (o: number) => ((db[o]! << 24) | (db[o + 1]! << 16) | (db[o + 2]! << 8) | db[o + 3]!) >>> 0;
    switch (recordSize) {
      case 24: // | <------------- node --------------->| : 3 bytes left, 3 bytes right
        this.left = (n) => u24(n * 6);
        this.right = (n) => u24(n * 6 + 3);
        break;
      case 28: // 3 bytes left, a middle byte whose high nibble is left's top 4 bits and low nibble right's, 3 bytes right
        this.left = (n) => ((db[n * 7 + 3]! & 0xf0) << 20) | u24(n * 7);
        this.right = (n) => ((db[n * 7 + 3]! & 0x0f) << 24) | u24(n * 7 + 4);
        break;
      case 32:
        this.left = (n) => u32(n * 8);
        this.right = (n) => u32(n * 8 + 4);
        break;
      default:
        throw new Error(`unsupported record size ${recordSize} (the MaxMind DB format has 24, 28 and 32)`);
    }
  }
}

export class GeoIpDatabase implements CountryResolver {
  readonly databaseType: string;
  readonly buildEpoch: Date;
  /** networks in the tree (before merging) */
  readonly networks: number;
  private readonly codes: Set<string>;
  /** the last selection: country set (setKey) -> the networks of its countries */
  private selection: { key: string; bySet: Map<string, CompactCountry> } | undefined;

  private constructor(readonly file: string, private readonly version: string) {
    let networks = 0;
    const codes = new Set<string>();
    const meta = this.walk(() => {
      networks++;
    }, (cc) => codes.add(cc));
    this.databaseType = meta.databaseType;
    this.buildEpoch = meta.buildEpoch;
    this.networks = networks;
    this.codes = codes;
  }

  /** Opens (and caches, by path, modification time and size) a database. */
  static open(path: string): GeoIpDatabase {
    const st = statSync(path);
    const key = `${path}:${st.mtimeMs}:${st.size}`;
    let db = cache.get(key);
    if (!db) {
      cache.clear(); // one database at a time is what a deployment uses
      db = new GeoIpDatabase(path, key);
      cache.set(key, db);
    }
    return db;
  }

  /** Reads the networks of these country sets in one pass (kept until other sets are prepared). */
  prepare(sets: readonly (readonly string[])[]): void {
    this.select(sets);
  }

  /** A country's networks, adjacent ones merged, in address order (views of one buffer: copy to keep). */
  prefixes(country: string): CountryPrefixes {
    return this.union([country]);
  }

  /** The networks of any of these countries, adjacent ones merged across them, in address order (views of one buffer: copy to keep). */
  union(countries: readonly string[]): CountryPrefixes {
    const key = this.setKey(countries);
    if (key === '') return { v4: [], v6: [] };
    const c = (this.selection?.bySet.has(key) ? this.selection.bySet : this.select([countries])).get(key);
    if (!c) return { v4: [], v6: [] };
    const v4Bytes = Buffer.alloc(c.v4Len.length * 4);
    const v4: GeoPrefix[] = new Array(c.v4Len.length);
    for (let i = 0; i < v4.length; i++) {
      v4Bytes.writeUInt32BE(c.v4Addr[i]!, i * 4);
      v4[i] = { data: v4Bytes.subarray(i * 4, i * 4 + 4), length: c.v4Len[i]! };
    }
    const v6Bytes = Buffer.from(c.v6.buffer, c.v6.byteOffset, c.v6.byteLength);
    const v6: GeoPrefix[] = new Array(c.v6.length / V6_ENTRY);
    for (let i = 0; i < v6.length; i++) v6[i] = { data: v6Bytes.subarray(i * V6_ENTRY, i * V6_ENTRY + 16), length: c.v6[i * V6_ENTRY + 16]! };
    return { v4, v6 };
  }

  has(country: string): boolean {
    return this.codes.has(country.toUpperCase());
  }

  countries(): string[] {
    return [...this.codes].sort();
  }

  /** A country set's name: its known codes, upper case, sorted, once each ("" for none). */
  private setKey(countries: readonly string[]): string {
    return [...new Set(countries.map((c) => c.toUpperCase()))].filter((c) => this.codes.has(c)).sort().join(',');
  }

  private select(sets: readonly (readonly string[])[]): Map<string, CompactCountry> {
    const keys = [...new Set(sets.map((s) => this.setKey(s)))].filter((k) => k !== '').sort();
    const key = keys.join('|');
    if (this.selection?.key === key) return this.selection.bySet;
    // every set gets its own builder; a country feeds the builders of each set it is in
    const building = new Map(keys.map((k) => [k, new CountryBuilder()]));
    const feeds = new Map<string, CountryBuilder[]>();
    for (const k of keys) for (const cc of k.split(',')) feeds.set(cc, [...(feeds.get(cc) ?? []), building.get(k)!]);
    this.walk(
      (cc, v4, path, depth) => {
        for (const b of feeds.get(cc)!) {
          if (v4) b.addV4(((path[12]! << 24) | (path[13]! << 16) | (path[14]! << 8) | path[15]!) >>> 0, depth - 96);
          else b.addV6(path, depth);
        }
      },
      undefined,
      new Set(feeds.keys()),
    );
    const bySet = new Map([...building].map(([k, b]) => [k, b.done()]));
    this.selection = { key, bySet };
    return bySet;
  }

  /**
   * One depth-first walk of the search tree (address order), the file read
   * for it and dropped after. `emit` gets each network with a country (of
   * `only`, when given); `seen` each distinct country code.
   */
  private walk(emit: (cc: string, v4: boolean, path: Uint8Array, depth: number) => void, seen?: (cc: string) => void, only?: Set<string>): { databaseType: string; buildEpoch: Date } {
    const st = statSync(this.file);
    if (`${this.file}:${st.mtimeMs}:${st.size}` !== this.version) throw new Error(`GeoIP database ${this.file} changed while open; open it again`);
    const db = readFileSync(this.file);
    const reader = new Reader<Record<string, unknown>>(db);
    const meta = reader.metadata;
    const tree = new TreeReader(db, meta.recordSize);
    const nodeCount = meta.nodeCount;
    const v6Tree = meta.ipVersion === 6;
    const path = new Uint8Array(16);
    const codeOf = new Map<number, string | null>();

    let ipv4Start = 0;
    if (v6Tree) for (let i = 0; i < 96 && ipv4Start < nodeCount; i++) ipv4Start = tree.left(ipv4Start);

    const leaf = (record: number, depth: number, v4: boolean) => {
      let cc = codeOf.get(record);
      if (cc === undefined) {
        // the record's data, decoded by the public reader on the network's first address
        cc = countryCode(reader.get(formatAddress(v4 ? path.subarray(12) : path)));
        codeOf.set(record, cc);
        if (cc) seen?.(cc);
      }
      if (cc && (!only || only.has(cc))) emit(cc, v4, path, depth);
    };
    const setBit = (depth: number, on: boolean) => {
      const byte = depth >> 3;
      const mask = 0x80 >> (depth & 7);
      path[byte] = on ? path[byte]! | mask : path[byte]! & ~mask;
    };
    // v4: inside ::/96 of an IPv6 tree (a pure IPv4 tree starts at depth 96)
    const walk = (node: number, depth: number, v4: boolean): void => {
      if (node === nodeCount) return; // no data here
      if (node > nodeCount) return leaf(node, depth, v4);
      if (v6Tree && !v4 && node === ipv4Start && depth > 0) {
        if (depth === 96 && isZeroPrefix(path, 96)) v4 = true;
        else return; // ::ffff:0:0/96, 2002::/16 ...: aliases of the IPv4 subtree
      }
      if (depth >= 128) return;
      setBit(depth, false);
      walk(tree.left(node), depth + 1, v4);
      setBit(depth, true);
      walk(tree.right(node), depth + 1, v4);
      setBit(depth, false);
    };
    if (v6Tree) walk(0, 0, false);
    else walk(0, 96, true);
    return { databaseType: meta.databaseType, buildEpoch: meta.buildEpoch };
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
 * The networks of one country set while the tree is walked (in address
 * order). A network whose left sibling is the last one kept replaces it
 * with their parent, repeatedly: /25 + /25 -> /24, then that /24 + the /24
 * before it -> /23, whichever countries of the set the two halves are from.
 * Networks that only touch without forming a prefix stay apart.
 */
export class CountryBuilder {
  // growable typed arrays, not number[]: no boxed numbers, little garbage while a million networks pass
  private v4Addr: Uint32Array;
  private v4Len: Uint8Array;
  private v4Count = 0;
  private v6: Uint8Array;
  private v6Count = 0;
  private readonly scratch = new Uint8Array(16);

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
    const cur = this.scratch; // copied into v6 below: no array per network
    for (let i = 0; i < 16; i++) cur[i] = addr[i]!;
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
