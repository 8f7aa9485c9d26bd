/** The DNS resolver (Unbound): the section, its subsystem and the patronus_dns_* series. The domain's descriptor (src/apply/domain.ts). */
import type { Domain } from '../../apply/domain.js';
import { unboundSchema } from './schema.js';
import { unboundSubsystem, type DnsMetrics } from './subsystem.js';

export const domain: Domain<'dns', typeof unboundSchema> = {
  name: 'dns',
  module: import.meta.url,
  section: { key: 'dns', schema: unboundSchema, describe: 'DNS resolver (Unbound)' },
  subsystems: [{ phase: 'services', subsystem: unboundSubsystem }],
  metrics({ counter, gauge }) {
    counter<'type', DnsMetrics>('patronus_dns_queries_total', 'DNS queries received, by query type', ['type'], (c, s) => {
      for (const { m } of s) for (const [type, n] of Object.entries(m.dns?.queriesByType ?? {})) c.inc({ type }, n);
    });
    counter<'rcode', DnsMetrics>('patronus_dns_answers_total', 'DNS answers sent, by response code', ['rcode'], (c, s) => {
      for (const { m } of s) for (const [rcode, n] of Object.entries(m.dns?.answersByRcode ?? {})) c.inc({ rcode }, n);
    });
    counter<never, DnsMetrics>('patronus_dns_cache_hits_total', 'DNS queries answered from the cache', [], (c, s) => {
      for (const { m } of s) if (m.dns) c.inc(m.dns.cacheHits);
    });
    counter<never, DnsMetrics>('patronus_dns_cache_misses_total', 'DNS queries that needed resolution', [], (c, s) => {
      for (const { m } of s) if (m.dns) c.inc(m.dns.cacheMisses);
    });
    gauge<'list', DnsMetrics>('patronus_dns_blocklist_domains', 'Domains a DNS blocklist loaded', ['list'], (g, s) => {
      for (const { m } of s) for (const b of m.dns?.blocklists ?? []) g.set({ list: b.list }, b.domains);
    });
  },
};
