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
 */
import { readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { Reader } from 'mmdb-lib';

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
  readonly byCountry = new Map<string, CountryPrefixes>();
  readonly databaseType: string;
  readonly buildEpoch: Date;
  /** networks read from the tree */
  networks = 0;

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
      this.networks++;
      if (!cc) return;
      let entry = this.byCountry.get(cc);
      if (!entry) this.byCountry.set(cc, (entry = { v4: [], v6: [] }));
      if (v4) entry.v4.push({ data: Buffer.from(path.subarray(12, 16)), length: depth - 96 });
      else entry.v6.push({ data: Buffer.from(path), length: depth });
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

    if (meta.ipVersion === 4) walk(0, 96, true);
    else walk(0, 0, false);
  }

  /** Opens (and caches, by path and modification time) a database. */
  static open(path: string): GeoIpDatabase {
    const st = statSync(path);
    const key = `${path}:${st.mtimeMs}:${st.size}`;
    let db = cache.get(key);
    if (!db) {
      db = new GeoIpDatabase(path, readFileSync(path));
      cache.clear(); // one database at a time is what a deployment uses
      cache.set(key, db);
    }
    return db;
  }

  prefixes(country: string): CountryPrefixes {
    return this.byCountry.get(country.toUpperCase()) ?? { v4: [], v6: [] };
  }

  has(country: string): boolean {
    return this.byCountry.has(country.toUpperCase());
  }

  countries(): string[] {
    return [...this.byCountry.keys()].sort();
  }
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
