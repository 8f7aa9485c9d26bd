/**
 * Long loops on the main thread (a million map entries to encode, compare or
 * decode) give the event loop a turn every few milliseconds, so /healthz,
 * the API and signals are answered while they run. Every few hundred
 * iterations: `if (slicer.due()) await slicer.pause();` — the check is
 * synchronous, so a short loop never yields (an `await` alone would: a
 * batch map call must reach the kernel before a close() that follows it).
 */
export class Slicer {
  private since = performance.now();
  constructor(private readonly sliceMs = 10) {}

  /** The current slice has run `sliceMs` or longer. */
  due(): boolean {
    return performance.now() - this.since >= this.sliceMs;
  }

  /** Lets the event loop run (setImmediate), then starts a new slice. */
  async pause(): Promise<void> {
    await new Promise((r) => setImmediate(r));
    this.since = performance.now();
  }
}

/** How many iterations between two due() checks (a check reads the clock). */
export const TICK_EVERY = 1024;

/**
 * A structured clone (worker messages) turns Buffers into plain Uint8Arrays:
 * makes them Buffers again (views, no copy), in place, in slices.
 */
export async function reviveBuffers(v: unknown, slicer: Slicer, n = { count: 0 }): Promise<unknown> {
  if (++n.count % TICK_EVERY === 0) if (slicer.due()) await slicer.pause();
  if (v instanceof Uint8Array) return Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  if (!v || typeof v !== 'object' || ArrayBuffer.isView(v)) return v;
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) v[i] = await reviveBuffers(v[i], slicer, n);
    return v;
  }
  if (v instanceof Map) {
    for (const [k, x] of v) v.set(k, await reviveBuffers(x, slicer, n));
    return v;
  }
  if (v instanceof Set || v instanceof Date || v instanceof RegExp) return v;
  const o = v as Record<string, unknown>;
  for (const k of Object.keys(o)) o[k] = await reviveBuffers(o[k], slicer, n);
  return o;
}

