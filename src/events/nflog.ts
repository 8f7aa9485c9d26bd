/**
 * nftables log events: rules with a log prefix log to an NFLOG group
 * (firewall.log, src/nft/compile.ts), and this reader binds that group in
 * the firewall's network namespace and publishes every logged packet.
 *
 * Why a netlink reader in-process rather than ulogd2 writing JSON for
 * Patronus to tail: no second daemon to configure, supervise and restart
 * per namespace; no file to rotate, truncate or fill a disk; no parse of a
 * format another project may change; the events arrive with the server's
 * lifetime and its namespace (the socket is opened there). The addon only
 * moves datagrams (NativeNetlinkSocket, its own thread and a bounded queue);
 * the NFLOG messages are built and parsed here.
 *
 * The prefix carries verdict and rule: "pt <verdict> <kind>:<name> <prefix>".
 */
import { NetlinkSocket, codecs } from '../bpf/index.js';
import type { EventHub, NewEvent } from './hub.js';
import { PROTO_NAMES } from './xdp.js';

const NETLINK_NETFILTER = 12;
const NFNL_SUBSYS_ULOG = 4;
const NFULNL_MSG_PACKET = 0;
const NFULNL_MSG_CONFIG = 1;
const NLM_F_REQUEST = 1;
const NLM_F_ACK = 4;
const NLMSG_ERROR = 2;
const NFULA_CFG_CMD = 1;
const NFULA_CFG_MODE = 2;
const NFULA_CFG_TIMEOUT = 3;
const NFULA_CFG_QTHRESH = 4;
const NFULNL_CFG_CMD_BIND = 1;
const NFULNL_COPY_PACKET = 2;
const NFULA = { timestamp: 3, indev: 4, outdev: 5, payload: 9, prefix: 10 } as const;

/** Bytes of each packet copied to us: headers are all we read. */
const COPY_RANGE = 128;

export interface NflogSourceOptions {
  group: number;
  /** runs fn inside the firewall's network namespace (Host.inNetns) */
  inNetns: <T>(fn: () => T) => T;
  linkNames: () => Promise<Map<number, string>>;
}

/** "pt <verdict> <kind>:<name> <prefix>" -> parts; undefined for prefixes Patronus did not write. */
export function parseNflogPrefix(p: string): { verdict: string; kind: string; name: string; prefix: string } | undefined {
  const m = /^pt (\S+) ([a-z]+):(\S+)(?: (.*))?$/.exec(p);
  if (!m) return undefined;
  return { verdict: m[1]!, kind: m[2]!, name: m[3]!, prefix: m[4] ?? '' };
}

export class NflogSource {
  private sock: NetlinkSocket | undefined;
  private seq = 1;
  private readonly acks = new Map<number, (err: number) => void>();
  private links = new Map<number, string>();
  private linksAt = 0;
  private chain: Promise<void> = Promise.resolve();

  constructor(
    private readonly hub: EventHub,
    private readonly opts: NflogSourceOptions,
  ) {}

  /** Binds the group; fails (naming the group) when another reader holds it. */
  async start(): Promise<void> {
    await this.refreshLinks();
    this.sock = this.opts.inNetns(() => new NetlinkSocket(NETLINK_NETFILTER, (records, dropped) => this.onRecords(records, dropped), 4 << 20));
    try {
      const cmd = Buffer.from([NFULNL_CFG_CMD_BIND]);
      const mode = Buffer.alloc(6);
      mode.writeUInt32BE(COPY_RANGE, 0);
      mode[4] = NFULNL_COPY_PACKET;
      const u32be = (n: number) => {
        const b = Buffer.alloc(4);
        b.writeUInt32BE(n);
        return b;
      };
      await this.config([[NFULA_CFG_CMD, cmd]], 'bind');
      // flush within 100 ms or at 32 packets: events reach the log quickly, floods in batches
      await this.config([[NFULA_CFG_MODE, mode], [NFULA_CFG_TIMEOUT, u32be(10)], [NFULA_CFG_QTHRESH, u32be(32)]], 'set the copy mode of');
    } catch (e) {
      this.close();
      throw e;
    }
  }

  private config(attrs: [number, Buffer][], what: string): Promise<void> {
    const seq = this.seq++;
    const msg = nlmsg((NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG, NLM_F_REQUEST | NLM_F_ACK, seq, 0, this.opts.group, attrs);
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.acks.delete(seq);
        reject(new Error(`NFLOG group ${this.opts.group}: no answer from the kernel to ${what}`));
      }, 5000);
      this.acks.set(seq, (err) => {
        clearTimeout(timer);
        if (!err) return resolve();
        const hint = err === 16 ? ' (another NFLOG reader, e.g. ulogd, holds this group: choose another firewall.log.group)' : '';
        reject(new Error(`NFLOG group ${this.opts.group}: cannot ${what} the group: errno ${err}${hint}`));
      });
      this.sock!.send(msg);
    });
  }

  private onRecords(records: Buffer[], dropped: number): void {
    if (dropped) this.hub.readerLost('nft', dropped);
    const events: { ifindex: number; build: () => NewEvent | undefined }[] = [];
    for (const dgram of records) {
      if (dgram.length === 0) {
        this.hub.readerLost('nft', 1); // the socket overflowed (ENOBUFS): some messages are gone
        continue;
      }
      for (const m of messages(dgram)) {
        if (m.type === NLMSG_ERROR) {
          const err = -m.body.readInt32LE(0);
          const seq = m.body.length >= 16 ? m.body.readUInt32LE(4 + 8) : 0;
          this.acks.get(seq)?.(err);
          this.acks.delete(seq);
          continue;
        }
        if (m.type !== ((NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET)) continue;
        const a = attributes(m.body.subarray(4));
        const prefixRaw = a.get(NFULA.prefix);
        const prefix = prefixRaw ? prefixRaw.subarray(0, prefixRaw.indexOf(0) === -1 ? prefixRaw.length : prefixRaw.indexOf(0)).toString() : '';
        const indev = a.get(NFULA.indev)?.readUInt32BE(0) ?? 0;
        const outdev = a.get(NFULA.outdev)?.readUInt32BE(0) ?? 0;
        const ts = a.get(NFULA.timestamp);
        const payload = a.get(NFULA.payload);
        if (!payload) continue;
        const time = ts ? new Date(Number(ts.readBigUInt64BE(0)) * 1000 + Number(ts.readBigUInt64BE(8)) / 1000) : new Date();
        const ifindex = indev || outdev;
        events.push({ ifindex, build: () => this.event(prefix, indev ? 'ingress' : 'egress', ifindex, payload, time) });
      }
    }
    if (!events.length) return;
    this.chain = this.chain
      .then(async () => {
        if (events.some((e) => e.ifindex && !this.links.has(e.ifindex)) && Date.now() - this.linksAt > 200) await this.refreshLinks();
        for (const e of events) {
          const ev = e.build();
          if (ev) this.hub.publish(ev);
        }
      })
      .catch(() => {});
  }

  private event(rawPrefix: string, direction: 'ingress' | 'egress', ifindex: number, pkt: Buffer, time: Date): NewEvent | undefined {
    const p = parseNflogPrefix(rawPrefix);
    const ip = parseIp(pkt);
    if (!ip) return undefined;
    return {
      time: (Number.isFinite(time.getTime()) ? time : new Date()).toISOString(),
      source: 'nft',
      rule: p ? (p.kind === 'rule' ? p.name : `${p.kind}:${p.name}`) : rawPrefix.trim(),
      verdict: p?.verdict ?? 'log',
      iface: this.links.get(ifindex) ?? String(ifindex),
      direction,
      src: ip.src,
      dst: ip.dst,
      proto: PROTO_NAMES[ip.proto] ?? String(ip.proto),
      sport: ip.sport,
      dport: ip.dport,
      sampleRate: 1,
      ...(p ? (p.prefix ? { prefix: p.prefix } : {}) : { prefix: rawPrefix }),
    };
  }

  private async refreshLinks(): Promise<void> {
    this.linksAt = Date.now();
    try {
      this.links = await this.opts.linkNames();
    } catch {
      /* keep the names we had */
    }
  }

  async settled(): Promise<void> {
    await this.chain;
  }

  close(): void {
    this.sock?.close();
    this.sock = undefined;
    for (const [, f] of this.acks) f(-1);
    this.acks.clear();
  }
}

/** nlmsghdr + nfgenmsg (AF_UNSPEC, version 0, res_id = group) + attributes. */
function nlmsg(type: number, flags: number, seq: number, family: number, resId: number, attrs: [number, Buffer][]): Buffer {
  const parts: Buffer[] = [];
  const gen = Buffer.alloc(4);
  gen[0] = family;
  gen.writeUInt16BE(resId, 2);
  parts.push(gen);
  for (const [t, v] of attrs) {
    const h = Buffer.alloc(4);
    h.writeUInt16LE(4 + v.length, 0);
    h.writeUInt16LE(t, 2);
    parts.push(h, v, Buffer.alloc((4 - (v.length % 4)) % 4));
  }
  const body = Buffer.concat(parts);
  const hdr = Buffer.alloc(16);
  hdr.writeUInt32LE(16 + body.length, 0);
  hdr.writeUInt16LE(type, 4);
  hdr.writeUInt16LE(flags, 6);
  hdr.writeUInt32LE(seq, 8);
  return Buffer.concat([hdr, body]);
}

function* messages(buf: Buffer): Generator<{ type: number; body: Buffer }> {
  let off = 0;
  while (off + 16 <= buf.length) {
    const len = buf.readUInt32LE(off);
    if (len < 16 || off + len > buf.length) return;
    yield { type: buf.readUInt16LE(off + 4), body: buf.subarray(off + 16, off + len) };
    off += (len + 3) & ~3;
  }
}

function attributes(buf: Buffer): Map<number, Buffer> {
  const out = new Map<number, Buffer>();
  let off = 0;
  while (off + 4 <= buf.length) {
    const len = buf.readUInt16LE(off);
    if (len < 4 || off + len > buf.length) break;
    out.set(buf.readUInt16LE(off + 2) & 0x3fff, buf.subarray(off + 4, off + len));
    off += (len + 3) & ~3;
  }
  return out;
}

/** Addresses, protocol and ports of an IPv4/IPv6 packet (headers only; IPv6 extension headers are not walked). */
function parseIp(p: Buffer): { src: string; dst: string; proto: number; sport: number; dport: number } | undefined {
  if (p.length < 1) return undefined;
  const v = p[0]! >> 4;
  let proto: number;
  let l4: number;
  let src: string;
  let dst: string;
  let later = false;
  if (v === 4 && p.length >= 20) {
    proto = p[9]!;
    l4 = (p[0]! & 0xf) * 4;
    src = codecs.ipv4.decode(p.subarray(12, 16));
    dst = codecs.ipv4.decode(p.subarray(16, 20));
    later = (p.readUInt16BE(6) & 0x1fff) !== 0;
  } else if (v === 6 && p.length >= 40) {
    proto = p[6]!;
    l4 = 40;
    src = codecs.ipv6.decode(p.subarray(8, 24));
    dst = codecs.ipv6.decode(p.subarray(24, 40));
  } else return undefined;
  let sport = 0;
  let dport = 0;
  if (!later && (proto === 6 || proto === 17 || proto === 132) && p.length >= l4 + 4) {
    sport = p.readUInt16BE(l4);
    dport = p.readUInt16BE(l4 + 2);
  } else if (!later && (proto === 1 || proto === 58) && p.length >= l4 + 2) {
    dport = (p[l4]! << 8) | p[l4 + 1]!;
  }
  return { src, dst, proto, sport, dport };
}
