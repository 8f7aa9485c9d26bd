import type { Subsystem, SubsystemMetrics } from '../../apply/subsystem.js';
import { instancePaths, serviceSubsystem } from '../common/service.js';
import { blocklistCounts, unboundService, unboundStats } from './unbound.js';

const base = serviceSubsystem(unboundService);

/** DNS resolver statistics, monotonic across reloads (patronus_dns_*, declared in domain.ts) */
export interface DnsMetrics extends SubsystemMetrics {
  dns?: {
    queriesByType: Record<string, number>;
    answersByRcode: Record<string, number>;
    cacheHits: number;
    cacheMisses: number;
    /** domains each blocklist loaded (patronus_dns_blocklist_domains) */
    blocklists: { list: string; domains: number }[];
  };
}

/** The `dns:` section as a Subsystem (see unbound.ts), with its query statistics as metrics. */
export const unboundSubsystem: Subsystem<Parameters<typeof base.apply>[0], DnsMetrics> = {
  ...base,
  async metrics(host) {
    const paths = instancePaths(host.stateDir, unboundService.name);
    const up = await unboundService.running(paths, host);
    if (!up) return { services: [{ service: 'unbound', up }] };
    const s = (await unboundStats(paths, host)).summary;
    return {
      services: [{ service: 'unbound', up }],
      dns: {
        queriesByType: s.byType,
        answersByRcode: s.byRcode,
        cacheHits: s.cacheHits,
        cacheMisses: s.cacheMisses,
        blocklists: blocklistCounts(paths).map((b) => ({ list: b.name, domains: b.domains })),
      },
    };
  },
};
