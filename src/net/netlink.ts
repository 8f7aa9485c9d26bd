/**
 * One netlink request and its whole answer, in a network namespace: what
 * the read-only netlink readers share (nftables rules and generation,
 * src/nft/netlink.ts; interface statistics, src/interfaces/link-stats.ts).
 * The socket is opened for the request and closed with its answer.
 */
import { NetlinkSocket } from '../bpf/index.js';

const NLM_F_DUMP_INTR = 0x10;
const NLMSG_ERROR = 2;
const NLMSG_DONE = 3;

/** The netlink answer could not be read completely (records dropped, an error message): callers fall back to a command. */
export class NetlinkError extends Error {
  override name = 'NetlinkError';
}

/**
 * Sends one request and collects every message of the answer until
 * NLMSG_DONE (a dump) or the first reply/ack. Rejects on a netlink error
 * other than ENOENT (resolves null then: no such table), on dropped
 * records, or after timeoutMs.
 */
export async function netlinkExchange(inNetns: <T>(fn: () => T) => T, protocol: number, msg: Buffer, dump: boolean, timeoutMs = 10_000): Promise<Buffer[] | null> {
  return new Promise<Buffer[] | null>((resolve, reject) => {
    const out: Buffer[] = [];
    let settled = false;
    let sock: NetlinkSocket | undefined;
    const finish = (err: Error | undefined, value?: Buffer[] | null) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock?.close();
      if (err) reject(err);
      else resolve(value ?? null);
    };
    const timer = setTimeout(() => finish(new NetlinkError(`no complete netlink answer within ${timeoutMs} ms`)), timeoutMs);
    try {
      sock = inNetns(
        () =>
          new NetlinkSocket(protocol, (records, dropped) => {
            if (settled) return;
            if (dropped > 0) return finish(new NetlinkError(`${dropped} netlink records dropped`));
            for (const r of records) {
              if (r.length === 0) return finish(new NetlinkError('the kernel dropped netlink messages (ENOBUFS)'));
              let off = 0;
              while (off + 16 <= r.length) {
                const len = r.readUInt32LE(off);
                if (len < 16 || off + len > r.length) return finish(new NetlinkError('truncated netlink message'));
                const type = r.readUInt16LE(off + 4);
                // the ruleset changed while the kernel dumped it: this answer mixes two generations
                if (r.readUInt16LE(off + 6) & NLM_F_DUMP_INTR) return finish(new NetlinkError('the dumped objects changed during the dump (NLM_F_DUMP_INTR)'));
                const m = r.subarray(off, off + len);
                off += (len + 3) & ~3;
                if (type === NLMSG_DONE) return finish(undefined, out);
                if (type === NLMSG_ERROR) {
                  const errno = -m.readInt32LE(16);
                  if (errno === 0 && !dump) return finish(undefined, out); // ack
                  if (errno === 2) return finish(undefined, null); // ENOENT
                  return finish(new NetlinkError(`netlink error ${errno}`));
                }
                out.push(m);
                if (!dump) return finish(undefined, out);
              }
            }
          }),
      );
      sock.send(msg);
    } catch (e) {
      finish(e as Error);
    }
  });
}

