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

/** Reads a BPF ring buffer map until closed. One reader per ring: readers share its consumer position. */
export class RingBufferReader implements Disposable {
  private handle: NativeRingReader | undefined;

  constructor(map: NativeMap, onRecords: RecordHandler) {
    this.handle = new (addon().NativeRingReader)(map, (batch, dropped) => {
      if (this.handle) onRecords(splitRecords(batch), dropped);
    });
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

/** A netlink socket: send() messages built in JS; everything received arrives as records. */
export class NetlinkSocket implements Disposable {
  private handle: NativeNetlinkSocket | undefined;

  /** Opens in the calling thread's network namespace (wrap in inNetns for another). */
  constructor(protocol: number, onRecords: RecordHandler, rcvbufBytes?: number) {
    const cb = (batch: Buffer, dropped: number) => {
      if (this.handle) onRecords(splitRecords(batch), dropped);
    };
    const Ctor = addon().NativeNetlinkSocket;
    this.handle = rcvbufBytes ? new Ctor(protocol, cb, rcvbufBytes) : new Ctor(protocol, cb);
  }

  send(message: Buffer): void {
    if (!this.handle) throw new Error('netlink socket is closed');
    this.handle.send(message);
  }

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
