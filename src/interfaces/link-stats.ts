/**
 * Interface counters over rtnetlink (an RTM_GETLINK dump in the namespace),
 * for /metrics: what `ip -s -j link show` prints, without a process per
 * scrape (the spawn alone cost the server's main thread ~10 ms a scrape).
 *
 * Message layout (include/uapi/linux/rtnetlink.h, if_link.h): nlmsghdr,
 * ifinfomsg (family u8, pad u8, type u16, index s32, flags u32, change u32),
 * attributes: IFLA_IFNAME, IFLA_OPERSTATE (u8), IFLA_STATS64 (struct
 * rtnl_link_stats64: rx_packets, tx_packets, rx_bytes, tx_bytes, ... u64 in
 * host order).
 */
import { netlinkExchange } from '../net/netlink.js';

const NETLINK_ROUTE = 0;
const RTM_NEWLINK = 16;
const RTM_GETLINK = 18;
const NLM_F_REQUEST = 0x1;
const NLM_F_DUMP = 0x300;
const IFLA_IFNAME = 3;
const IFLA_OPERSTATE = 16;
const IFLA_STATS64 = 23;
const IFF_UP = 0x1;
const IF_OPER_UP = 6;

export interface LinkStats {
  ifname: string;
  ifindex: number;
  /** administratively up (IFF_UP) or operationally up, as `ip` shows "UP" */
  up: boolean;
  rxPackets: number;
  rxBytes: number;
  txPackets: number;
  txBytes: number;
}

/** Every link of the namespace that has 64-bit statistics, in ifindex order. */
export async function readLinkStats(inNetns: <T>(fn: () => T) => T): Promise<LinkStats[]> {
  const req = Buffer.alloc(16 + 16);
  req.writeUInt32LE(req.length, 0);
  req.writeUInt16LE(RTM_GETLINK, 4);
  req.writeUInt16LE(NLM_F_REQUEST | NLM_F_DUMP, 6);
  req.writeUInt32LE(1, 8);
  // ifinfomsg all zero: every family, every link
  const msgs = (await netlinkExchange(inNetns, NETLINK_ROUTE, req, true)) ?? [];
  const out: LinkStats[] = [];
  for (const m of msgs) {
    const l = parseLink(m);
    if (l) out.push(l);
  }
  return out;
}

/** Pure: one RTM_NEWLINK message -> the link's counters (undefined: another message, or no IFLA_STATS64). */
export function parseLink(m: Buffer): LinkStats | undefined {
  if (m.length < 32 || m.readUInt16LE(4) !== RTM_NEWLINK) return undefined;
  const ifindex = m.readInt32LE(20);
  const flags = m.readUInt32LE(24);
  let ifname = '';
  let oper = 0;
  let stats: number | undefined;
  let off = 32;
  while (off + 4 <= m.length) {
    const len = m.readUInt16LE(off);
    if (len < 4 || off + len > m.length) break;
    const t = m.readUInt16LE(off + 2) & 0x3fff;
    if (t === IFLA_IFNAME) {
      const z = m.indexOf(0, off + 4);
      ifname = m.toString('utf8', off + 4, z >= 0 && z < off + len ? z : off + len);
    } else if (t === IFLA_OPERSTATE && len >= 5) oper = m[off + 4]!;
    else if (t === IFLA_STATS64 && len >= 4 + 32) stats = off + 4;
    off += (len + 3) & ~3;
  }
  if (stats === undefined) return undefined;
  const u64 = (at: number) => Number(m.readBigUInt64LE(at));
  return { ifname, ifindex, up: (flags & IFF_UP) !== 0 || oper === IF_OPER_UP, rxPackets: u64(stats), txPackets: u64(stats + 8), rxBytes: u64(stats + 16), txBytes: u64(stats + 24) };
}
