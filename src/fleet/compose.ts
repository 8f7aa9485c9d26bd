/**
 * Desired document of a node = group base + node overlay, deep-merged:
 *   - objects merge key by key, recursively;
 *   - a null in the overlay removes the key;
 *   - arrays whose items are all objects with a string `name` (interfaces,
 *     rules, peers, VRRP instances) merge item by item by name: an overlay
 *     item merges into the base item of the same name, new names are
 *     appended; any other array is replaced as a whole.
 * Pure; the inputs are never modified.
 */
export function compose(base: unknown, overlay: unknown): unknown {
  if (overlay === undefined) return clone(base);
  if (overlay === null) return undefined;
  if (isObject(base) && isObject(overlay)) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(base)) out[k] = clone(v);
    for (const [k, v] of Object.entries(overlay)) {
      if (v === null) delete out[k];
      else out[k] = compose(base[k], v);
    }
    return out;
  }
  if (Array.isArray(base) && Array.isArray(overlay) && named(base) && named(overlay)) {
    const out = base.map((b) => clone(b)) as Record<string, unknown>[];
    for (const o of overlay as Record<string, unknown>[]) {
      const i = out.findIndex((b) => b.name === o.name);
      if (i >= 0) out[i] = compose(out[i], o) as Record<string, unknown>;
      else out.push(clone(o) as Record<string, unknown>);
    }
    return out;
  }
  return clone(overlay);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function named(a: unknown[]): boolean {
  return a.length > 0 && a.every((x) => isObject(x) && typeof x.name === 'string');
}

function clone<T>(v: T): T {
  return v === undefined ? v : (JSON.parse(JSON.stringify(v)) as T);
}
