/**
 * Key/value codecs: callers speak in numbers, addresses and objects; only
 * these functions know the byte layout the BPF C structs use (host byte
 * order for integers, network order for addresses, C alignment).
 */
import { isIPv4, isIPv6 } from 'node:net';

export interface Codec<T> {
  readonly size: number;
  /** natural alignment, for struct layout */
  readonly align: number;
  encode(value: T, into?: Buffer, offset?: number): Buffer;
  decode(buf: Buffer, offset?: number): T;
}

function scalar<T>(size: number, write: (b: Buffer, v: T, o: number) => void, read: (b: Buffer, o: number) => T): Codec<T> {
  return {
    size,
    align: size,
    encode(v, into = Buffer.alloc(size), o = 0) {
      write(into, v, o);
      return into;
    },
    decode: (b, o = 0) => read(b, o),
  };
}

export const u8 = scalar<number>(1, (b, v, o) => b.writeUInt8(v, o), (b, o) => b.readUInt8(o));
export const u16 = scalar<number>(2, (b, v, o) => b.writeUInt16LE(v, o), (b, o) => b.readUInt16LE(o));
export const u32 = scalar<number>(4, (b, v, o) => b.writeUInt32LE(v >>> 0, o), (b, o) => b.readUInt32LE(o));
export const u64 = scalar<bigint>(8, (b, v, o) => b.writeBigUInt64LE(v, o), (b, o) => b.readBigUInt64LE(o));
/** big-endian 16-bit (a port as it sits in a header) */
export const be16 = scalar<number>(2, (b, v, o) => b.writeUInt16BE(v, o), (b, o) => b.readUInt16BE(o));

/** Fixed-size raw bytes. */
export function bytes(size: number): Codec<Buffer> {
  return {
    size,
    align: 1,
    encode(v, into = Buffer.alloc(size), o = 0) {
      if (v.length !== size) throw new RangeError(`expected ${size} bytes, got ${v.length}`);
      v.copy(into, o);
      return into;
    },
    decode: (b, o = 0) => Buffer.from(b.subarray(o, o + size)),
  };
}

type Fields = Record<string, Codec<any>>;
type StructOf<F extends Fields> = { [K in keyof F]: F[K] extends Codec<infer T> ? T : never };

/** A C struct from ordered fields, laid out with natural alignment and tail padding. */
export function struct<F extends Fields>(fields: F): Codec<StructOf<F>> & { offsets: Record<keyof F, number> } {
  const offsets = {} as Record<keyof F, number>;
  let off = 0;
  let align = 1;
  for (const [name, c] of Object.entries(fields)) {
    off = Math.ceil(off / c.align) * c.align;
    offsets[name as keyof F] = off;
    off += c.size;
    align = Math.max(align, c.align);
  }
  const size = Math.ceil(off / align) * align;
  return {
    size,
    align,
    offsets,
    encode(v, into = Buffer.alloc(size), o = 0) {
      for (const [name, c] of Object.entries(fields)) c.encode((v as any)[name], into, o + offsets[name as keyof F]);
      return into;
    },
    decode(b, o = 0) {
      const out: any = {};
      for (const [name, c] of Object.entries(fields)) out[name] = c.decode(b, o + offsets[name as keyof F]);
      return out;
    },
  };
}

/** IPv4 address as 4 network-order bytes. */
export const ipv4 = {
  size: 4,
  align: 1,
  encode(v: string, into = Buffer.alloc(4), o = 0) {
    if (!isIPv4(v)) throw new RangeError(`"${v}" is not an IPv4 address`);
    v.split('.').forEach((p, i) => into.writeUInt8(Number(p), o + i));
    return into;
  },
  decode: (b: Buffer, o = 0) => [0, 1, 2, 3].map((i) => b[o + i]).join('.'),
} satisfies Codec<string>;

/** IPv6 address as 16 network-order bytes. */
export const ipv6 = {
  size: 16,
  align: 1,
  encode(v: string, into = Buffer.alloc(16), o = 0) {
    ipv6Bytes(v).copy(into, o);
    return into;
  },
  decode(b: Buffer, o = 0) {
    const groups: string[] = [];
    for (let i = 0; i < 8; i++) groups.push(b.readUInt16BE(o + 2 * i).toString(16));
    return compressIPv6(groups);
  },
} satisfies Codec<string>;

export function ipv6Bytes(v: string): Buffer {
  if (!isIPv6(v)) throw new RangeError(`"${v}" is not an IPv6 address`);
  let s = v;
  const out = Buffer.alloc(16);
  // an embedded IPv4 tail (::ffff:1.2.3.4) becomes two groups
  const v4 = s.match(/(\d+\.\d+\.\d+\.\d+)$/);
  if (v4) {
    const b = ipv4.encode(v4[1]!);
    s = s.slice(0, -v4[1]!.length) + `${b.readUInt16BE(0).toString(16)}:${b.readUInt16BE(2).toString(16)}`;
  }
  const [head, tail] = s.includes('::') ? s.split('::') : [s, undefined];
  const h = head ? head.split(':') : [];
  const t = tail !== undefined && tail !== '' ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), 2 * i));
  return out;
}

function compressIPv6(groups: string[]): string {
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== '0') {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (best < 0) return groups.join(':');
  return `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLen).join(':')}`;
}

export interface Prefix {
  family: 4 | 6;
  /** address with host bits cleared */
  address: string;
  length: number;
}

const OCTET = '(25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)';
const V4_PREFIX = new RegExp(`^${OCTET}\\.${OCTET}\\.${OCTET}\\.${OCTET}(?:/(\\d{1,2}))?$`);

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

/**
 * Parses "10.0.0.0/8", "2001:db8::/32" or a bare address (a host prefix).
 * Host bits are cleared (for callers that derive a network from an
 * interface address); configuration fields that name a network use
 * parseNetwork, which refuses them.
 */
export function parsePrefix(text: string): Prefix {
  const bad = addressTextProblem(text);
  if (bad) throw new RangeError(bad);
  // the common case, without encode/decode round trips (a 1M-entry alias is parsed in one go)
  const m = V4_PREFIX.exec(text);
  if (m && (m[5] === undefined || Number(m[5]) <= 32)) {
    const length = m[5] === undefined ? 32 : Number(m[5]);
    const n = ((Number(m[1]) << 24) | (Number(m[2]) << 16) | (Number(m[3]) << 8) | Number(m[4])) >>> 0;
    const net = length === 0 ? 0 : (n & ((0xffffffff << (32 - length)) >>> 0)) >>> 0;
    return { family: 4, length, address: `${net >>> 24}.${(net >>> 16) & 255}.${(net >>> 8) & 255}.${net & 255}` };
  }
  const [addr, len, extra] = text.split('/');
  if (extra !== undefined || !addr) throw new RangeError(`"${text}" is not a prefix`);
  const family = isIPv4(addr) ? 4 : isIPv6(addr) ? 6 : 0;
  if (!family) throw new RangeError(`"${text}" is not a valid IPv4 or IPv6 prefix`);
  const max = family === 4 ? 32 : 128;
  if (len !== undefined && !/^\d{1,3}$/.test(len)) throw new RangeError(`"${text}": prefix length must be 0-${max}`);
  const length = len === undefined ? max : Number(len);
  if (length > max) throw new RangeError(`"${text}": prefix length must be 0-${max}`);
  const raw = family === 4 ? ipv4.encode(addr) : ipv6Bytes(addr);
  maskBytes(raw, length);
  return { family, length, address: family === 4 ? ipv4.decode(raw) : ipv6.decode(raw) };
}

/**
 * A network as written in configuration: like parsePrefix, but host bits
 * below the prefix length are an error ("10.0.0.1/24" is ambiguous: the
 * network 10.0.0.0/24 or the host 10.0.0.1/32?), never silently cleared.
 */
export function parseNetwork(text: string): Prefix {
  const p = parsePrefix(text);
  const [addr, len] = text.split('/');
  if (len !== undefined) {
    // dotted quads parsed by parsePrefix are canonical: equal text means no host bits
    const same = p.family === 4 ? addr === p.address : ipv6Bytes(addr!).equals(prefixBytes(p));
    if (!same) throw new RangeError(`"${text}" has host bits set: write the network ${formatPrefix(p)}, or ${addr}/${p.family === 4 ? 32 : 128} for the one address`);
  }
  return p;
}

export function prefixBytes(p: Prefix): Buffer {
  return p.family === 4 ? ipv4.encode(p.address) : ipv6Bytes(p.address);
}

export function formatPrefix(p: Prefix): string {
  return `${p.address}/${p.length}`;
}

function maskBytes(b: Buffer, length: number): void {
  for (let i = 0; i < b.length; i++) {
    const bits = Math.max(0, Math.min(8, length - 8 * i));
    b[i] = b[i]! & ((0xff << (8 - bits)) & 0xff);
  }
}

/** LPM trie key: u32 prefix length followed by the address bytes. */
export function lpmKey(family: 4 | 6): Codec<Prefix> {
  const alen = family === 4 ? 4 : 16;
  return {
    size: 4 + alen,
    align: 4,
    encode(p, into = Buffer.alloc(4 + alen), o = 0) {
      if (p.family !== family) throw new RangeError(`${formatPrefix(p)} is not an IPv${family} prefix`);
      into.writeUInt32LE(p.length, o);
      prefixBytes(p).copy(into, o + 4);
      return into;
    },
    decode(b, o = 0) {
      const length = b.readUInt32LE(o);
      const raw = b.subarray(o + 4, o + 4 + alen);
      return { family, length, address: family === 4 ? ipv4.decode(raw) : ipv6.decode(raw) };
    },
  };
}

export const lpmV4Key = lpmKey(4);
export const lpmV6Key = lpmKey(6);

/** Encode many values into one contiguous buffer (for batch operations). */
export function encodeMany<T>(codec: Codec<T>, values: readonly T[], stride = codec.size): Buffer {
  const out = Buffer.alloc(stride * values.length);
  values.forEach((v, i) => codec.encode(v, out, i * stride));
  return out;
}
