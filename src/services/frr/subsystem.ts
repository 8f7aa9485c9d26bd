/**
 * The routing: section as a Subsystem (FRR, see module.ts), with its live
 * state for /metrics: daemons up, BGP peers, OSPF neighbors, route counts.
 */
import type { Subsystem, SubsystemMetrics } from '../../apply/subsystem.js';
import { instancePaths, serviceSubsystem } from '../common/service.js';
import { daemonPid } from '../common/daemon.js';
import { frrModule, FRR_DAEMONS, wantedDaemons } from './module.js';
import type { FrrStatus } from './status.js';
import type { FrrModel } from './compile.js';
import path from 'node:path';

const base = serviceSubsystem(frrModule);

/** FRR's own series: BGP peers, OSPF neighbors, route counts (declared in ../../routing/domain.ts). */
export interface FrrMetrics extends SubsystemMetrics {
  /** one per BGP peer and address family (patronus_bgp_peer_established, patronus_bgp_peer_prefixes_{received,sent}) */
  bgpPeers?: { peer: string; afi: string; established: boolean; prefixesReceived: number; prefixesSent: number }[];
  /** one per OSPF neighbor (patronus_ospf_neighbor_full) */
  ospfNeighbors?: { routerId: string; interface: string; full: boolean }[];
  /** routes per family, protocol and table (patronus_routes) */
  routes?: { family: 'ipv4' | 'ipv6'; protocol: string; table: 'rib' | 'fib'; count: number }[];
}

export const frrSubsystem: Subsystem<{ model: FrrModel | null }, FrrMetrics> = {
  ...base,
  async metrics(host): Promise<FrrMetrics> {
    const paths = instancePaths(host.stateDir, frrModule.name);
    const wanted = wantedDaemons(paths);
    if (!wanted) return {};
    const services = FRR_DAEMONS.filter((d) => wanted.includes(d)).map((d) => ({ service: `frr-${d}`, up: daemonPid(path.join(paths.runDir, `${d}.pid`), d) !== undefined }));
    if (!services.some((s) => s.up)) return { services };
    return { services, ...frrMetrics(await frrModule.status!(paths, host) as FrrStatus) };
  },
};

export function frrMetrics(st: FrrStatus): FrrMetrics {
  const routes: NonNullable<FrrMetrics['routes']> = [];
  for (const family of ['ipv4', 'ipv6'] as const) {
    for (const [protocol, c] of Object.entries(st.routes[family].byProtocol)) {
      routes.push({ family, protocol, table: 'rib', count: c.rib }, { family, protocol, table: 'fib', count: c.fib });
    }
  }
  return {
    bgpPeers: (st.bgp?.peers ?? []).map((p) => ({ peer: p.address, afi: p.afi, established: p.established, prefixesReceived: p.prefixesReceived, prefixesSent: p.prefixesSent })),
    ospfNeighbors: (st.ospf?.neighbors ?? []).map((n) => ({ routerId: n.routerId, interface: n.interface, full: n.full })),
    routes,
  };
}
