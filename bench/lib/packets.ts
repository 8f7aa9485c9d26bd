/**
 * Frame builder for BPF fixtures and traffic generation: Ethernet (with
 * optional 802.1Q tags), IPv4/IPv6 (with optional extension headers and
 * fragments), TCP/UDP/ICMP/ICMPv6, correct checksums.
 */
import { codecs } from '../../src/bpf/index.js';
import { addressBytes } from '../../src/net/address.js';

export interface FrameSpec {
  src?: string;
  dst?: string;
  proto?: 'tcp' | 'udp' | 'icmp' | 'icmpv6' | number;
  sport?: number;
  dport?: number;
  tcpFlags?: number;
  icmpType?: number;
  icmpCode?: number;
  vlan?: number[];
  payload?: Buffer | number;
  srcMac?: string;
  dstMac?: string;
  ttl?: number;
  /** IPv4: fragment offset in 8-byte units and the more-fragments flag */
  fragOffset?: number;
  moreFragments?: boolean;
  /** IPv6 extension headers before the transport header */
  ext?: ('hop' | 'dst' | 'routing' | 'frag')[];
}

export const TCP = { FIN: 0x01, SYN: 0x02, RST: 0x04, PSH: 0x08, ACK: 0x10, URG: 0x20 } as const;

const PROTO = { tcp: 6, udp: 17, icmp: 1, icmpv6: 58 } as const;

function macBytes(mac: string): Buffer {
  return Buffer.from(mac.split(':').map((x) => parseInt(x, 16)));
}

export function checksum(...parts: Buffer[]): number {
  let sum = 0;
  for (const b of parts) {
    for (let i = 0; i + 1 < b.length; i += 2) sum += b.readUInt16BE(i);
    if (b.length % 2) sum += b[b.length - 1]! << 8;
  }
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return ~sum & 0xffff;
}

function l4(spec: FrameSpec, proto: number, payload: Buffer, pseudo: (len: number) => Buffer): Buffer {
  let h: Buffer;
  if (proto === 6) {
    h = Buffer.alloc(20);
    h.writeUInt16BE(spec.sport ?? 40000, 0);
    h.writeUInt16BE(spec.dport ?? 80, 2);
    h.writeUInt32BE(1, 4);
    h.writeUInt8(5 << 4, 12);
    h.writeUInt8(spec.tcpFlags ?? TCP.SYN, 13);
    h.writeUInt16BE(65535, 14);
  } else if (proto === 17) {
    h = Buffer.alloc(8);
    h.writeUInt16BE(spec.sport ?? 40000, 0);
    h.writeUInt16BE(spec.dport ?? 53, 2);
    h.writeUInt16BE(8 + payload.length, 4);
  } else if (proto === 1 || proto === 58) {
    h = Buffer.alloc(8);
    h.writeUInt8(spec.icmpType ?? (proto === 1 ? 8 : 128), 0);
    h.writeUInt8(spec.icmpCode ?? 0, 1);
    h.writeUInt16BE(0x1234, 4);
    h.writeUInt16BE(1, 6);
  } else {
    return payload;
  }
  const seg = Buffer.concat([h, payload]);
  const csumOff = proto === 6 ? 16 : proto === 17 ? 6 : 2;
  const ps = proto === 1 ? Buffer.alloc(0) : pseudo(seg.length);
  let c = checksum(ps, seg);
  if (proto === 17 && c === 0) c = 0xffff;
  seg.writeUInt16BE(c, csumOff);
  return seg;
}

/** Builds a complete Ethernet frame. */
export function frame(spec: FrameSpec = {}): Buffer {
  const src = spec.src ?? '10.0.0.1';
  const dst = spec.dst ?? '10.0.0.2';
  const v6 = src.includes(':');
  const protoNum = typeof spec.proto === 'number' ? spec.proto : PROTO[spec.proto ?? 'udp'];
  const payload = Buffer.isBuffer(spec.payload) ? spec.payload : Buffer.alloc(spec.payload ?? 18, 0xab);
  const sb = v6 ? addressBytes(src) : codecs.ipv4.encode(src);
  const db = v6 ? addressBytes(dst) : codecs.ipv4.encode(dst);

  const later = (spec.fragOffset ?? 0) > 0;
  let l3: Buffer;
  if (!v6) {
    const seg = later ? payload : l4(spec, protoNum, payload, (len) => {
      const p = Buffer.alloc(12);
      sb.copy(p, 0);
      db.copy(p, 4);
      p.writeUInt8(protoNum, 9);
      p.writeUInt16BE(len, 10);
      return p;
    });
    const ip = Buffer.alloc(20);
    ip.writeUInt8(0x45, 0);
    ip.writeUInt16BE(20 + seg.length, 2);
    ip.writeUInt16BE(0x1234, 4);
    ip.writeUInt16BE(((spec.moreFragments ? 1 : 0) << 13) | (spec.fragOffset ?? 0), 6);
    ip.writeUInt8(spec.ttl ?? 64, 8);
    ip.writeUInt8(protoNum, 9);
    sb.copy(ip, 12);
    db.copy(ip, 16);
    ip.writeUInt16BE(checksum(ip), 10);
    l3 = Buffer.concat([ip, seg]);
  } else {
    const exts = spec.ext ?? [];
    if ((spec.fragOffset !== undefined || spec.moreFragments) && !exts.includes('frag')) exts.push('frag');
    const seg = later ? payload : l4(spec, protoNum, payload, (len) => {
      const p = Buffer.alloc(40);
      sb.copy(p, 0);
      db.copy(p, 16);
      p.writeUInt32BE(len, 32);
      p.writeUInt8(protoNum, 39);
      return p;
    });
    const codes = { hop: 0, routing: 43, frag: 44, dst: 60 } as const;
    const extBufs: Buffer[] = [];
    exts.forEach((e, i) => {
      const next = i + 1 < exts.length ? codes[exts[i + 1]!] : protoNum;
      const b = Buffer.alloc(8);
      b.writeUInt8(next, 0);
      if (e === 'frag') b.writeUInt16BE(((spec.fragOffset ?? 0) << 3) | (spec.moreFragments ? 1 : 0), 2);
      else b.writeUInt8(0, 1); // hdrlen 0 -> 8 bytes, padded options
      if (e === 'routing') b.writeUInt8(0, 3);
      if (e === 'hop' || e === 'dst') b.writeUInt8(1, 2); // PadN option
      if (e === 'hop' || e === 'dst') b.writeUInt8(4, 3);
      extBufs.push(b);
    });
    const body = Buffer.concat([...extBufs, seg]);
    const ip = Buffer.alloc(40);
    ip.writeUInt32BE(0x60000000, 0);
    ip.writeUInt16BE(body.length, 4);
    ip.writeUInt8(exts.length ? codes[exts[0]!] : protoNum, 6);
    ip.writeUInt8(spec.ttl ?? 64, 7);
    sb.copy(ip, 8);
    db.copy(ip, 24);
    l3 = Buffer.concat([ip, body]);
  }

  const tags = spec.vlan ?? [];
  const eth = Buffer.alloc(12);
  macBytes(spec.dstMac ?? '02:00:00:00:00:02').copy(eth, 0);
  macBytes(spec.srcMac ?? '02:00:00:00:00:01').copy(eth, 6);
  const parts: Buffer[] = [eth];
  for (const id of tags) {
    const t = Buffer.alloc(4);
    t.writeUInt16BE(0x8100, 0);
    t.writeUInt16BE(id & 0x0fff, 2);
    parts.push(t);
  }
  const et = Buffer.alloc(2);
  et.writeUInt16BE(v6 ? 0x86dd : 0x0800, 0);
  parts.push(et, l3);
  return Buffer.concat(parts);
}

/** A frame with an arbitrary EtherType (ARP-like, non-IP). */
export function rawFrame(ethertype: number, body: Buffer | number = 28): Buffer {
  const b = Buffer.alloc(14);
  macBytes('ff:ff:ff:ff:ff:ff').copy(b, 0);
  macBytes('02:00:00:00:00:01').copy(b, 6);
  b.writeUInt16BE(ethertype, 12);
  return Buffer.concat([b, Buffer.isBuffer(body) ? body : Buffer.alloc(body)]);
}
