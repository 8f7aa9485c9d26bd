/**
 * Records that arrive on a native reader thread (BPF ring buffer, netlink
 * socket), handed over in batches. The native side bounds its queue towards
 * JS: when this process falls behind, records are dropped there and counted
 * (`dropped`), never buffered without limit.
 */
import { addon } from './addon.js';
import type { NativeMap, NativeNetlinkSocket, NativeRingReader } from './native.js';

export type RecordHandler = (records: Buffer[], dropped: number) => void;

/** Splits a native batch ([u32 length][bytes, padded to 4]...) into records (views, no copies). */
export function splitRecords(batch: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let off = 0;
  while (off + 4 <= batch.length) {
    const n = batch.readUInt32LE(off);
    out.push(batch.subarray(off + 4, off + 4 + n));
    off += 4 + ((n + 3) & ~3);
  }
  return out;
}

/** What both native readers share: unref, close (idempotent), dispose. */
abstract class NativeReader<H extends { unref(): void; close(): void }> implements Disposable {
  protected handle: H | undefined;

  /** The callback the native side calls: records until close(), nothing after. */
  protected deliver(onRecords: RecordHandler): (batch: Buffer, dropped: number) => void {
    return (batch, dropped) => {
      if (this.handle) onRecords(splitRecords(batch), dropped);
    };
  }

  /** Lets the process exit while the reader waits. */
  unref(): this {
    this.handle?.unref();
    return this;
  }

  close(): void {
    const h = this.handle;
    this.handle = undefined;
    h?.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** Reads a BPF ring buffer map until closed. One reader per ring: readers share its consumer position. */
export class RingBufferReader extends NativeReader<NativeRingReader> {
  constructor(map: NativeMap, onRecords: RecordHandler) {
    super();
    this.handle = new (addon().NativeRingReader)(map, this.deliver(onRecords));
  }
}

/** A netlink socket: send() messages built in JS; everything received arrives as records. */
export class NetlinkSocket extends NativeReader<NativeNetlinkSocket> {
  /** Opens in the calling thread's network namespace (wrap in inNetns for another). */
  constructor(protocol: number, onRecords: RecordHandler, rcvbufBytes?: number) {
    super();
    const Ctor = addon().NativeNetlinkSocket;
    const cb = this.deliver(onRecords);
    this.handle = rcvbufBytes ? new Ctor(protocol, cb, rcvbufBytes) : new Ctor(protocol, cb);
  }

  send(message: Buffer): void {
    if (!this.handle) throw new Error('netlink socket is closed');
    this.handle.send(message);
  }
}
