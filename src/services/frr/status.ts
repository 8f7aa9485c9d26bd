/**
 * FRR state read through vtysh's JSON output, flattened into the structure
 * the metrics endpoint exports (one sample per peer / neighbor / protocol):
 *
 *   patronus_bgp_peer_established{peer,afi}          1/0
 *   patronus_bgp_peer_prefixes_{received,sent}{peer,afi}  n
 *   patronus_ospf_neighbor_full{router_id,interface}  1/0
 *   patronus_routes{family,protocol,table="rib|fib"}  n
 * (declared in src/routing/domain.ts)
 */
import type { Host } from '../../system/host.js';
import type { FrrDaemon } from './compile.js';

export interface BgpPeerStatus {
  address: string;
  /** "ipv4Unicast" / "ipv6Unicast" */
  afi: string;
  remoteAs: number;
  state: string;
  established: boolean;
  prefixesReceived: number;
  prefixesSent: number;
  uptimeMs: number;
}

export interface OspfNeighborStatus {
  routerId: string;
  address: string;
  interface: string;
  /** e.g. "Full/DR", "Full/-", "Init/-" */
  state: string;
  full: boolean;
}

export interface RouteCounts {
  total: { rib: number; fib: number };
  /** per protocol: connected, kernel, static, ospf, bgp... */
  byProtocol: Record<string, { rib: number; fib: number }>;
}

export interface FrrStatus {
  daemons: Partial<Record<FrrDaemon, number>>;
  bgp?: { asn: number; routerId: string; peers: BgpPeerStatus[] };
  ospf?: { routerId: string; neighbors: OspfNeighborStatus[] };
  routes: { ipv4: RouteCounts; ipv6: RouteCounts };
  /** queries that failed (a daemon busy or restarting): the rest is still reported */
  errors: string[];
}

export async function readFrrStatus(host: Host, vtySocketDir: string, running: readonly FrrDaemon[], pidOf: (d: FrrDaemon) => number | undefined): Promise<FrrStatus> {
  const errors: string[] = [];
  const show = async (cmd: string): Promise<any> => {
    const r = await host.run('vtysh', ['--vty_socket', vtySocketDir, '-c', cmd], { reject: false, timeout: 10_000 });
    if (r.exitCode !== 0) {
      errors.push(`${cmd}: exit ${r.exitCode} ${(r.stderr || r.stdout).trim()}`);
      return undefined;
    }
    try {
      return JSON.parse(r.stdout || '{}');
    } catch {
      errors.push(`${cmd}: not JSON: ${r.stdout.slice(0, 200)}`);
      return undefined;
    }
  };

  const daemons: FrrStatus['daemons'] = {};
  for (const d of running) daemons[d] = pidOf(d);

  const status: FrrStatus = { daemons, routes: { ipv4: emptyCounts(), ipv6: emptyCounts() }, errors };
  if (running.includes('zebra')) {
    status.routes.ipv4 = routeCounts(await show('show ip route summary json'));
    status.routes.ipv6 = routeCounts(await show('show ipv6 route summary json'));
  }
  if (running.includes('bgpd')) status.bgp = bgpPeers(await show('show bgp summary json'));
  if (running.includes('ospfd')) {
    const [ospf, nbrs] = [await show('show ip ospf json'), await show('show ip ospf neighbor json')];
    status.ospf = { routerId: String(ospf?.routerId ?? ''), neighbors: ospfNeighbors(nbrs) };
  }
  return status;
}

/** `show ip route summary json`: {routes: [{type, rib, fib}], routesTotal, routesTotalFib} */
export function routeCounts(j: any): RouteCounts {
  const out = emptyCounts();
  if (!j) return out;
  for (const r of (j.routes ?? []) as { type?: string; rib?: number; fib?: number }[]) {
    if (!r.type) continue;
    // FRR splits BGP into ebgp/ibgp here; one "bgp" series is what dashboards want
    const type = r.type === 'ebgp' || r.type === 'ibgp' ? 'bgp' : r.type;
    const cur = (out.byProtocol[type] ??= { rib: 0, fib: 0 });
    cur.rib += r.rib ?? 0;
    cur.fib += r.fib ?? 0;
  }
  out.total = { rib: Number(j.routesTotal ?? 0), fib: Number(j.routesTotalFib ?? 0) };
  return out;
}

/** `show bgp summary json`: {ipv4Unicast: {as, routerId, peers: {ADDR: {...}}}, ipv6Unicast: ...} */
export function bgpPeers(j: any): FrrStatus['bgp'] {
  const out = { asn: 0, routerId: '', peers: [] as BgpPeerStatus[] };
  if (!j || typeof j !== 'object') return out;
  for (const [afi, v] of Object.entries(j as Record<string, any>)) {
    if (!v || typeof v !== 'object' || !v.peers) continue;
    out.asn ||= Number(v.as ?? 0);
    out.routerId ||= String(v.routerId ?? '');
    for (const [address, p] of Object.entries(v.peers as Record<string, any>)) {
      out.peers.push({
        address,
        afi,
        remoteAs: Number(p.remoteAs ?? 0),
        state: String(p.state ?? 'unknown'),
        established: p.state === 'Established',
        prefixesReceived: Number(p.pfxRcd ?? p.prefixReceivedCount ?? 0),
        prefixesSent: Number(p.pfxSnt ?? 0),
        uptimeMs: Number(p.peerUptimeMsec ?? 0),
      });
    }
  }
  return out;
}

/** `show ip ospf neighbor json`: {neighbors: {RID: [{nbrState|state, ifaceAddress|address, ifaceName}]}} */
export function ospfNeighbors(j: any): OspfNeighborStatus[] {
  const out: OspfNeighborStatus[] = [];
  for (const [routerId, list] of Object.entries((j?.neighbors ?? {}) as Record<string, any>)) {
    for (const n of Array.isArray(list) ? list : [list]) {
      const state = String(n.nbrState ?? n.state ?? 'unknown');
      out.push({
        routerId,
        address: String(n.ifaceAddress ?? n.address ?? ''),
        interface: String(n.ifaceName ?? '').split(':')[0]!,
        state,
        full: state.startsWith('Full'),
      });
    }
  }
  return out;
}

function emptyCounts(): RouteCounts {
  return { total: { rib: 0, fib: 0 }, byProtocol: {} };
}
