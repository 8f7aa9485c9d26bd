/**
 * Routing: the `routing` section (static routes in the kernel, forwarding,
 * FRR's OSPF/BGP), its three subsystems and FRR's series. The domain's
 * descriptor (src/apply/domain.ts).
 */
import type { Domain } from '../apply/domain.js';
import { frrSchema } from '../services/frr/schema.js';
import { frrSubsystem, type FrrMetrics } from '../services/frr/subsystem.js';
import { routesSubsystem } from './routes.js';
import { sysctlSubsystem } from './sysctl.js';

export const domain: Domain<'routing', typeof frrSchema> = {
  name: 'routing',
  module: import.meta.url,
  section: { key: 'routing', schema: frrSchema, describe: 'dynamic routing (FRR)' },
  subsystems: [
    { phase: 'addresses', subsystem: routesSubsystem },
    // forwarding goes on only once the firewall is in place
    { phase: 'forwarding', subsystem: sysctlSubsystem },
    { phase: 'routing', subsystem: frrSubsystem },
  ],
  metrics({ gauge }) {
    gauge<'peer' | 'afi', FrrMetrics>('patronus_bgp_peer_established', 'Whether a BGP session is established (1) or not (0)', ['peer', 'afi'], (g, s) => {
      for (const { m } of s) for (const p of m.bgpPeers ?? []) g.set({ peer: p.peer, afi: p.afi }, p.established ? 1 : 0);
    });
    gauge<'peer' | 'afi', FrrMetrics>('patronus_bgp_peer_prefixes_received', 'Prefixes accepted from a BGP peer', ['peer', 'afi'], (g, s) => {
      for (const { m } of s) for (const p of m.bgpPeers ?? []) g.set({ peer: p.peer, afi: p.afi }, p.prefixesReceived);
    });
    gauge<'peer' | 'afi', FrrMetrics>('patronus_bgp_peer_prefixes_sent', 'Prefixes announced to a BGP peer', ['peer', 'afi'], (g, s) => {
      for (const { m } of s) for (const p of m.bgpPeers ?? []) g.set({ peer: p.peer, afi: p.afi }, p.prefixesSent);
    });
    gauge<'router_id' | 'interface', FrrMetrics>('patronus_ospf_neighbor_full', 'Whether an OSPF adjacency is Full (1) or not (0)', ['router_id', 'interface'], (g, s) => {
      for (const { m } of s) for (const n of m.ospfNeighbors ?? []) g.set({ router_id: n.routerId, interface: n.interface }, n.full ? 1 : 0);
    });
    gauge<'family' | 'protocol' | 'table', FrrMetrics>('patronus_routes', 'Routes in the routing daemon, by family, protocol and table (rib: known, fib: installed in the kernel)', ['family', 'protocol', 'table'], (g, s) => {
      for (const { m } of s) for (const r of m.routes ?? []) g.set({ family: r.family, protocol: r.protocol, table: r.table }, r.count);
    });
  },
};
