/**
 * IP addresses and prefixes: the one module that parses, formats and does
 * prefix math on them (issue 14). Everything else (BPF key codecs, nftables,
 * daemons' config files, schemas, plan output) goes through here, so an
 * address is refused, canonicalised and printed the same way everywhere:
 * IPv6 always compressed (RFC 5952: "2001:db8::1", "::/0"), IPv4 as a dotted
 * quad.
 *
 * Validation is node's own (`net.isIP`: strict dotted quads, no octal or
 * short forms); IPv6 bytes and RFC 5952 text come from ipaddr.js. IPv4 is
 * handled on plain numbers because a 1M-entry alias is parsed in one go.
 */
import { isIP } from 'node:net';
import ipaddr from 'ipaddr.js';

export type Family = 4 | 6;

export interface Prefix {
  family: Family;
  /** address with host bits cleared */
  address: string;
  length: number;
}

/** 4 or 6 for a valid address, 0 otherwise (node's rules). */
export function addressFamily(text: string): 0 | Family {
  return isIP(text) as 0 | Family;
}

export function isIPv4(text: string): boolean {
  return isIP(text) === 4;
}

export function isIPv6(text: string): boolean {
  return isIP(text) === 6;
}

/** Any valid address, or one of the given family. */
export function isAddress(text: string, family?: Family): boolean {
  const f = isIP(text);
  return family === undefined ? f !== 0 : f === family;
}

/**
 * The family of an address or prefix text that validation has already
 * accepted ("2001:db8::/32" -> 6, "10.0.0.1" -> 4): IPv6 text always holds a
 * colon, a dotted quad never does. For unchecked text use addressFamily.
 */
export function familyOf(text: string): Family {
  return text.includes(':') ? 6 : 4;
}

/** An address with its prefix length: a bare address gets its host length ("192.0.2.1" -> "192.0.2.1/32", "2001:db8::1" -> "2001:db8::1/128"); text with a length comes back as it is. */
export function withHostLength(text: string): string {
  return text.includes('/') ? text : `${text}/${familyOf(text) === 4 ? 32 : 128}`;
}

/**
 * What is wrong with the text of an address or prefix before it is parsed,
 * the same everywhere (docs/configuration-input.md): surrounding whitespace or
 * a line break is refused, not trimmed; an IPv6 zone index (`%eth0`) is
 * refused, since an address in a rule, alias or prefix matches on every link.
 */
export function addressTextProblem(text: string): string | undefined {
  if (/^\s|\s$/.test(text)) return `${JSON.stringify(text)} has leading or trailing whitespace or a line break: write the address without it`;
  if (text.includes('%')) return `"${text}" has an IPv6 zone index (%${text.split('%')[1]!.split('/')[0]}): zone indexes are refused in configured addresses and prefixes (on an interface the interface is the zone; in a rule or alias it would be dropped and the address match on every link); remove it`;
  return undefined;
}

// ---------- addresses ----------

/** An IPv4 address as an unsigned 32-bit number (no validation: callers pass a valid address). */
export function ipv4ToNumber(text: string): number {
  let n = 0;
  let octet = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 46) {
      n = n * 256 + octet;
      octet = 0;
    } else octet = octet * 10 + (c - 48);
  }
  return n * 256 + octet;
}

export function numberToIpv4(n: number): string {
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

/** Network-order bytes of an address (4 or 16). Throws RangeError naming the text when it is not one. */
export function addressBytes(text: string, family?: Family): Buffer {
  const f = isIP(text);
  if (f === 0 || (family !== undefined && f !== family)) throw new RangeError(`"${text}" is not an ${family ? `IPv${family}` : 'IPv4 or IPv6'} address`);
  if (f === 4) {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(ipv4ToNumber(text));
    return b;
  }
  return Buffer.from(ipaddr.IPv6.parse(text).toByteArray());
}

/** The text of 4 or 16 network-order bytes; IPv6 compressed (RFC 5952). */
export function formatAddress(bytes: Uint8Array): string {
  if (bytes.length === 4) return `${bytes[0]}.${bytes[1]}.${bytes[2]}.${bytes[3]}`;
  if (bytes.length !== 16) throw new RangeError(`an address has 4 or 16 bytes, not ${bytes.length}`);
  return ipaddr.fromByteArray(Array.from(bytes)).toString();
}

/** The canonical text of an address ("2001:DB8:0::1" -> "2001:db8::1"). */
export function canonicalAddress(text: string): string {
  return formatAddress(addressBytes(text));
}

/** An address as an unsigned integer (32 or 128 bits), for ordering and range math. */
export function addressToBigInt(text: string): bigint {
  return BigInt(`0x${addressBytes(text).toString('hex')}`);
}

/** The DNS name a PTR record for this address lives at ("4.3.2.1.in-addr.arpa", nibbles for IPv6). */
export function reverseName(address: string): string {
  const b = addressBytes(address);
  if (b.length === 4) return `${[...b].reverse().join('.')}.in-addr.arpa`;
  return `${b.toString('hex').split('').reverse().join('.')}.ip6.arpa`;
}

// ---------- prefixes ----------

const OCTET = '(25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)';
const V4_PREFIX = new RegExp(`^${OCTET}\\.${OCTET}\\.${OCTET}\\.${OCTET}(?:/(\\d{1,2}))?$`);

/**
 * Parses "10.0.0.0/8", "2001:db8::/32" or a bare address (a host prefix).
 * Host bits are cleared (for callers that derive a network from an
 * interface address); configuration fields that name a network use
 * parseNetwork, which refuses them.
 */
export function parsePrefix(text: string): Prefix {
  const bad = addressTextProblem(text);
  if (bad) throw new RangeError(bad);
  // the common case on plain numbers (a 1M-entry alias is parsed in one go)
  const m = V4_PREFIX.exec(text);
  if (m && (m[5] === undefined || Number(m[5]) <= 32)) {
    const length = m[5] === undefined ? 32 : Number(m[5]);
    const n = ((Number(m[1]) << 24) | (Number(m[2]) << 16) | (Number(m[3]) << 8) | Number(m[4])) >>> 0;
    return { family: 4, length, address: numberToIpv4(n & ipv4Mask(length)) };
  }
  const [addr, len, extra] = text.split('/');
  if (extra !== undefined || !addr) throw new RangeError(`"${text}" is not a prefix`);
  const family = isIP(addr) as 0 | Family;
  if (!family) throw new RangeError(`"${text}" is not a valid IPv4 or IPv6 prefix`);
  const max = family === 4 ? 32 : 128;
  if (len !== undefined && !/^\d{1,3}$/.test(len)) throw new RangeError(`"${text}": prefix length must be 0-${max}`);
  const length = len === undefined ? max : Number(len);
  if (length > max) throw new RangeError(`"${text}": prefix length must be 0-${max}`);
  const raw = addressBytes(addr);
  maskBytes(raw, length);
  return { family, length, address: formatAddress(raw) };
}

/**
 * A network as written in configuration: like parsePrefix, but host bits
 * below the prefix length are an error ("10.0.0.1/24" is ambiguous: the
 * network 10.0.0.0/24 or the host 10.0.0.1/32?), never silently cleared.
 */
export function parseNetwork(text: string): Prefix {
  const fast = plainV4Network(text);
  if (fast) return fast;
  const p = parsePrefix(text);
  const [addr, len] = text.split('/');
  if (len !== undefined && hasHostBits(addr!, p)) {
    throw new RangeError(`"${text}" has host bits set: write the network ${formatPrefix(p)}, or ${addr}/${p.family === 4 ? 32 : 128} for the one address`);
  }
  return p;
}

/**
 * parseNetwork's common case in one pass over the characters: a canonical
 * dotted quad (no leading zeros, octets <= 255) with an optional /0-32 and
 * no host bits, whose address text is then already canonical (no string
 * built; a 1M-entry alias is parsed in one go). Anything else (IPv6,
 * whitespace, host bits, errors) is undefined: the full parser decides.
 */
function plainV4Network(text: string): Prefix | undefined {
  const n = text.length;
  let value = 0;
  let octet = 0;
  let digits = 0;
  let dots = 0;
  let i = 0;
  for (; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c >= 48 && c <= 57) {
      if (digits === 1 && octet === 0) return undefined; // a leading zero
      octet = octet * 10 + (c - 48);
      if (++digits > 3 || octet > 255) return undefined;
    } else if (c === 46 /* . */) {
      if (digits === 0 || ++dots > 3) return undefined;
      value = value * 256 + octet;
      octet = 0;
      digits = 0;
    } else break;
  }
  if (digits === 0 || dots !== 3) return undefined;
  value = value * 256 + octet;
  if (i === n) return { family: 4, length: 32, address: text };
  if (text.charCodeAt(i) !== 47 /* / */ || n - i < 2 || n - i > 3) return undefined;
  let length = 0;
  for (let j = i + 1; j < n; j++) {
    const c = text.charCodeAt(j);
    if (c < 48 || c > 57) return undefined;
    length = length * 10 + (c - 48);
  }
  if (length > 32) return undefined;
  if (length < 32 && value % 2 ** (32 - length) !== 0) return undefined; // host bits: the full parser says so
  return { family: 4, length, address: text.slice(0, i) };
}

/** Whether an address has bits set below the prefix's length (p: parsePrefix of that address with a length). */
export function hasHostBits(address: string, p: Prefix): boolean {
  // dotted quads parsed by parsePrefix are canonical: equal text means no host bits
  return p.family === 4 ? address !== p.address : !addressBytes(address).equals(prefixBytes(p));
}

/** "2001:db8::/32": canonical text of a prefix. */
export function formatPrefix(p: Prefix): string {
  return `${p.address}/${p.length}`;
}

/** Network-order bytes of a prefix's address. */
export function prefixBytes(p: Prefix): Buffer {
  return addressBytes(p.address, p.family);
}

/** A prefix from network-order bytes and a length (host bits cleared). */
export function prefixFromBytes(bytes: Uint8Array, length: number): Prefix {
  const raw = Buffer.from(bytes);
  maskBytes(raw, length);
  return { family: raw.length === 4 ? 4 : 6, length, address: formatAddress(raw) };
}

/**
 * An address with an optional prefix length, host bits kept ("192.0.2.1/24",
 * "2001:db8::1"): the form interface addresses and virtual addresses take.
 * undefined when the text is not one.
 */
export function parseAddressWithLength(text: string): { family: Family; address: string; length: number | undefined } | undefined {
  const [address, len, extra] = text.split('/');
  if (extra !== undefined || !address) return undefined;
  const family = isIP(address) as 0 | Family;
  if (!family) return undefined;
  if (len === undefined) return { family, address, length: undefined };
  if (!/^\d{1,3}$/.test(len) || Number(len) > (family === 4 ? 32 : 128)) return undefined;
  return { family, address, length: Number(len) };
}

/** "2001:DB8:0::1/64" -> "2001:db8::1/64": the address canonical, the length kept (text that is no such address comes back as it is). */
export function canonicalAddressWithLength(text: string): string {
  const a = parseAddressWithLength(text);
  if (!a) return text;
  const address = canonicalAddress(a.address);
  return a.length === undefined ? address : `${address}/${a.length}`;
}

/** Whether the network holds the address (false for another family or text that is no address). */
export function contains(network: Prefix | string, address: string): boolean {
  let net: Prefix;
  try {
    net = typeof network === 'string' ? parsePrefix(network) : network;
  } catch {
    return false;
  }
  if (isIP(address) !== net.family) return false;
  if (net.family === 4) {
    const mask = ipv4Mask(net.length);
    return ((ipv4ToNumber(address) & mask) >>> 0) === ((ipv4ToNumber(net.address) & mask) >>> 0);
  }
  const a = addressBytes(address);
  maskBytes(a, net.length);
  return a.equals(prefixBytes(net));
}

/** Whether two prefixes share any address (prefixes are nested or disjoint). */
export function overlaps(a: Prefix, b: Prefix): boolean {
  if (a.family !== b.family) return false;
  return a.length <= b.length ? contains(a, b.address) : contains(b, a.address);
}

/** First and last address of a prefix as integers (plain numbers for IPv4, exact below 2^53). */
export function prefixRange(p: Prefix & { family: 4 }): { first: number; last: number };
export function prefixRange(p: Prefix): { first: number; last: number } | { first: bigint; last: bigint };
export function prefixRange(p: Prefix): { first: number; last: number } | { first: bigint; last: bigint } {
  if (p.family === 4) {
    const first = ipv4ToNumber(p.address);
    return { first, last: first + 2 ** (32 - p.length) - 1 };
  }
  const first = addressToBigInt(p.address);
  return { first, last: first + (1n << BigInt(128 - p.length)) - 1n };
}

/**
 * Drops prefixes covered by another in the list; the result is sorted by
 * family, then address. Sort + one sweep, O(n log n): two prefixes are either
 * nested or disjoint, so after sorting by (address, length) a prefix is
 * covered by some kept prefix exactly when it lies inside the last one kept.
 */
export function minimalPrefixes(list: readonly Prefix[]): Prefix[] {
  const v4: Prefix[] = [];
  const v6: Prefix[] = [];
  for (const p of list) (p.family === 4 ? v4 : v6).push(p);
  return sweep(v4).concat(sweep(v6));
}

function sweep(list: readonly Prefix[]): Prefix[] {
  const keyed = list.map((p) => ({ p, range: prefixRange(p) }));
  keyed.sort((a, b) => (a.range.first < b.range.first ? -1 : a.range.first > b.range.first ? 1 : a.p.length - b.p.length));
  const out: Prefix[] = [];
  let end: number | bigint | undefined;
  for (const { p, range } of keyed) {
    if (end !== undefined && range.first <= end) continue;
    end = range.last;
    out.push(p);
  }
  return out;
}

/** "255.255.255.0" for 24. */
export function ipv4Netmask(length: number): string {
  return numberToIpv4(ipv4Mask(length));
}

function ipv4Mask(length: number): number {
  return length === 0 ? 0 : (0xffffffff << (32 - length)) >>> 0;
}

function maskBytes(b: Buffer, length: number): void {
  for (let i = 0; i < b.length; i++) {
    const bits = Math.max(0, Math.min(8, length - 8 * i));
    b[i] = b[i]! & ((0xff << (8 - bits)) & 0xff);
  }
}
