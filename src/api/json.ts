/**
 * Makes a value JSON-serialisable without losing what it says: bigint ->
 * number (exact up to 2^53, else a decimal string), Map -> object (or an
 * array of entries for non-string keys), Set -> array, Buffer -> hex, Date ->
 * ISO text. Subsystem status objects are free-form; REST must never answer
 * 500 "Do not know how to serialize a BigInt" because one of them grew a
 * counter.
 */
export function jsonSafe(value: unknown, seen = new WeakSet<object>()): unknown {
  switch (typeof value) {
    case 'bigint':
      return value <= BigInt(Number.MAX_SAFE_INTEGER) && value >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(value) : value.toString();
    case 'function':
    case 'symbol':
      return undefined;
    case 'object': {
      if (value === null) return null;
      if (seen.has(value)) return '[circular]';
      if (value instanceof Date) return value.toISOString();
      if (Buffer.isBuffer(value) || value instanceof Uint8Array) return Buffer.from(value as Uint8Array).toString('hex');
      seen.add(value);
      try {
        if (Array.isArray(value)) return value.map((v) => jsonSafe(v, seen) ?? null);
        if (value instanceof Set) return [...value].map((v) => jsonSafe(v, seen) ?? null);
        if (value instanceof Map) {
          const entries = [...value.entries()];
          if (entries.every(([k]) => typeof k === 'string' || typeof k === 'number')) return Object.fromEntries(entries.map(([k, v]) => [String(k), jsonSafe(v, seen)]));
          return entries.map(([k, v]) => [jsonSafe(k, seen), jsonSafe(v, seen)]);
        }
        const out: Record<string, unknown> = {};
        for (const [k, v] of Object.entries(value)) {
          const x = jsonSafe(v, seen);
          if (x !== undefined) out[k] = x;
        }
        return out;
      } finally {
        seen.delete(value);
      }
    }
    default:
      return value;
  }
}
