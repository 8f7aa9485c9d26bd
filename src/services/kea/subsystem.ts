import type { Subsystem, SubsystemMetrics } from '../../apply/subsystem.js';
import { instancePaths, serviceSubsystem } from '../common/service.js';
import { keaLeases, keaService } from './kea.js';

const base = serviceSubsystem(keaService);

/** DHCP leases by subnet id and state (patronus_dhcp_leases, declared in domain.ts) */
export interface DhcpMetrics extends SubsystemMetrics {
  dhcp?: { leases: { subnet: number; state: string; count: number }[] };
}

/** The `dhcp:` section as a Subsystem (see kea.ts), with lease counts as metrics. */
export const keaSubsystem: Subsystem<Parameters<typeof base.apply>[0], DhcpMetrics> = {
  ...base,
  async metrics(host) {
    const paths = instancePaths(host.stateDir, keaService.name);
    const up = await keaService.running(paths, host);
    const counts = new Map<string, { subnet: number; state: string; count: number }>();
    for (const l of await keaLeases(paths)) {
      const key = `${l.subnetId}/${l.state}`;
      const c = counts.get(key) ?? { subnet: l.subnetId, state: l.state, count: 0 };
      c.count++;
      counts.set(key, c);
    }
    return { services: [{ service: 'kea-dhcp4', up }], ...(up ? { dhcp: { leases: [...counts.values()] } } : {}) };
  },
};
