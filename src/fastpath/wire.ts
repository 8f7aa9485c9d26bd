/**
 * The fast path's compiled state between threads. A million-prefix rule set
 * is, per LPM field, a sorted flat table (src/fastpath/table.ts: sort keys,
 * a class id per entry, the distinct rule vectors): the compile worker
 * (src/apply/check-worker.ts) transfers those typed arrays, not copies them,
 * and the main thread uses them as they arrive: nothing is rebuilt per
 * entry (the rebuilt entry objects and their garbage collection held the
 * main thread for hundreds of ms at 1M). Everything else in the desired
 * state is small and crosses as a structured clone.
 */
import { LPM_FIELDS, type LpmField } from './layout.js';
import { Slicer, reviveBuffers } from '../system/slices.js';
import type { FastpathTables, FlatTable } from './table.js';

export interface PackedFastpath {
  rest: Omit<FastpathTables, 'fields'>;
  fields: Record<LpmField, FlatTable>;
}

/** In the worker: the desired state as a message and the buffers to transfer with it (the tables' own: unusable here afterwards). */
export function packFastpath(desired: FastpathTables): { value: PackedFastpath; transfer: ArrayBuffer[] } {
  const { fields, ...rest } = desired;
  const transfer = new Set<ArrayBuffer>();
  const tables = [...LPM_FIELDS.map((f) => fields[f]), ...[rest.dir6.src_v6?.hash, rest.dir6.dst_v6?.hash].filter((t) => t !== undefined)];
  for (const t of tables) for (const a of [t.keys, t.cls, t.values]) transfer.add(a.buffer as ArrayBuffer);
  return { value: { rest, fields }, transfer: [...transfer] };
}

/** On the main thread: the tables as they arrived; the small rest's Buffers revived (views), a slice at a time. */
export async function unpackFastpath(p: PackedFastpath, slicer = new Slicer()): Promise<FastpathTables> {
  const rest = (await reviveBuffers(p.rest, slicer)) as PackedFastpath['rest'];
  return { ...rest, fields: p.fields };
}
