/**
 * Key/value codecs: callers speak in numbers, addresses and objects; only
 * these functions know the byte layout the BPF C structs use (host byte
 * order for integers, network order for addresses, C alignment).
 */
import { addressBytes, formatAddress, formatPrefix, prefixBytes, prefixFromBytes, type Prefix } from '../net/address.js';

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

/** An address as network-order bytes (4 or 16); decoded IPv6 is compressed. */
function addressCodec(family: 4 | 6): Codec<string> {
  const size = family === 4 ? 4 : 16;
  return {
    size,
    align: 1,
    encode(v: string, into = Buffer.alloc(size), o = 0) {
      addressBytes(v, family).copy(into, o);
      return into;
    },
    decode: (b: Buffer, o = 0) => formatAddress(b.subarray(o, o + size)),
  };
}

export const ipv4 = addressCodec(4);
export const ipv6 = addressCodec(6);

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
      return prefixFromBytes(b.subarray(o + 4, o + 4 + alen), b.readUInt32LE(o));
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
