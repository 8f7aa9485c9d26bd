/**
 * `unbound-control stats_noreset` output -> numbers a metrics exporter can
 * publish. Unbound zeroes its counters on every reload, so counters are
 * folded into a saved base before each reload/restart and reported as
 * base + live: they only ever grow (Prometheus counter semantics). Gauges
 * (cache sizes, memory, uptime, request list depth) are reported live.
 */

export interface UnboundStats {
  /** monotonic counters, e.g. "total.num.queries", "num.query.type.A", "num.answer.rcode.NXDOMAIN" */
  counters: Record<string, number>;
  /** point-in-time values, e.g. "mem.cache.rrset", "time.up", "msg.cache.count" */
  gauges: Record<string, number>;
  /** the usual figures, derived from the counters */
  summary: {
    queries: number;
    cacheHits: number;
    cacheMisses: number;
    prefetches: number;
    recursiveReplies: number;
    byType: Record<string, number>;
    byRcode: Record<string, number>;
  };
}

/** Key=value lines -> numbers (per-thread and histogram lines are dropped: totals carry them). */
export function parseStatsText(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of text.split('\n')) {
    const m = /^([A-Za-z0-9_.+-]+)=(-?[0-9.]+(?:e[+-]?\d+)?)$/.exec(line.trim());
    if (!m) continue;
    const key = m[1]!;
    if (/^thread\d+\./.test(key) || key.startsWith('histogram.')) continue;
    out[key] = Number(m[2]);
  }
  return out;
}

export function isCounter(key: string): boolean {
  return (
    key.startsWith('total.num.') ||
    key.startsWith('num.') ||
    key.startsWith('unwanted.') ||
    key === 'total.requestlist.exceeded' ||
    key === 'total.requestlist.overwritten'
  );
}

/** Adds live counters to a saved base (both flat key -> value maps). */
export function foldCounters(base: Record<string, number>, live: Record<string, number>): Record<string, number> {
  const out = { ...base };
  for (const [k, v] of Object.entries(live)) if (isCounter(k)) out[k] = (out[k] ?? 0) + v;
  return out;
}

export function buildStats(base: Record<string, number>, live: Record<string, number>): UnboundStats {
  const counters = foldCounters(base, live);
  const gauges: Record<string, number> = {};
  for (const [k, v] of Object.entries(live)) if (!isCounter(k)) gauges[k] = v;
  const pick = (prefix: string) => {
    const o: Record<string, number> = {};
    for (const [k, v] of Object.entries(counters)) if (k.startsWith(prefix)) o[k.slice(prefix.length)] = v;
    return o;
  };
  return {
    counters,
    gauges,
    summary: {
      queries: counters['total.num.queries'] ?? 0,
      cacheHits: counters['total.num.cachehits'] ?? 0,
      cacheMisses: counters['total.num.cachemiss'] ?? 0,
      prefetches: counters['total.num.prefetch'] ?? 0,
      recursiveReplies: counters['total.num.recursivereplies'] ?? 0,
      byType: pick('num.query.type.'),
      byRcode: pick('num.answer.rcode.'),
    },
  };
}
