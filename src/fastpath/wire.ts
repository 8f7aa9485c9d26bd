/**
 * The fast path's compiled state between threads. A million-prefix rule set
 * is a million LpmEntry objects with two Buffers each: their structured
 * clone takes the receiving thread seconds (measured 4.2 s for 1M), so the
 * compile worker (src/apply/check-worker.ts) sends each field as three flat
 * buffers (prefix bytes, lengths, rule vectors) that are transferred, not
 * copied, and the main thread rebuilds the entries as views into them in
 * slices (src/apply/slices.ts). Everything else in FastpathDesired is small
 * and crosses as a structured clone.
 */
import type { FastpathDesired, LpmEntry } from './compile.js';
import { BITS_BYTES, LPM_FIELDS, fieldDataBytes, type LpmField } from './layout.js';
import { Slicer, TICK_EVERY, reviveBuffers } from '../system/slices.js';

/** One LPM field, columnar. */
interface PackedField {
  count: number;
  /** count * fieldDataBytes(f) */
  data: Uint8Array;
  lengths: Uint8Array;
  /** count * BITS_BYTES */
  bits: Uint8Array;
}

export interface PackedFastpath {
  rest: Omit<FastpathDesired, 'fields'>;
  fields: Record<LpmField, PackedField>;
}

/** In the worker: the desired state as a message and the buffers to transfer with it. */
export function packFastpath(desired: FastpathDesired): { value: PackedFastpath; transfer: ArrayBuffer[] } {
  const { fields, ...rest } = desired;
  const transfer: ArrayBuffer[] = [];
  const packed = {} as Record<LpmField, PackedField>;
  for (const f of LPM_FIELDS) {
    const list = fields[f];
    const db = fieldDataBytes(f);
    const data = new Uint8Array(list.length * db);
    const lengths = new Uint8Array(list.length);
    const bits = new Uint8Array(list.length * BITS_BYTES);
    list.forEach((e, i) => {
      data.set(e.data.length > db ? e.data.subarray(0, db) : e.data, i * db);
      lengths[i] = e.length;
      bits.set(e.bits, i * BITS_BYTES);
    });
    packed[f] = { count: list.length, data, lengths, bits };
    transfer.push(data.buffer as ArrayBuffer, lengths.buffer as ArrayBuffer, bits.buffer as ArrayBuffer);
  }
  return { value: { rest, fields: packed }, transfer };
}

/** On the main thread: the entries back as views into the transferred buffers, a slice at a time. */
export async function unpackFastpath(p: PackedFastpath, slicer = new Slicer()): Promise<FastpathDesired> {
  const fields = {} as Record<LpmField, LpmEntry[]>;
  for (const f of LPM_FIELDS) {
    const { count, data, lengths, bits } = p.fields[f];
    const db = fieldDataBytes(f);
    const d = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    const b = Buffer.from(bits.buffer, bits.byteOffset, bits.byteLength);
    const out: LpmEntry[] = new Array(count);
    for (let i = 0; i < count; i++) {
      if (i % TICK_EVERY === 0) if (slicer.due()) await slicer.pause();
      out[i] = { data: d.subarray(i * db, (i + 1) * db), length: lengths[i]!, bits: b.subarray(i * BITS_BYTES, (i + 1) * BITS_BYTES) };
    }
    fields[f] = out;
  }
  const rest = (await reviveBuffers(p.rest, slicer)) as PackedFastpath['rest'];
  return { ...rest, fields };
}
