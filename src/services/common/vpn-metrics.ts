/**
 * The VPN tunnel series WireGuard, OpenVPN and IPsec fill together
 * (patronus_vpn_tunnel_up, patronus_vpn_{receive,transmit}_bytes_total,
 * patronus_vpn_latest_handshake_seconds): WireGuard peers (tunnel =
 * interface), OpenVPN clients (tunnel = server or client instance), IPsec
 * CHILD_SAs (tunnel = connection/child).
 */
import type { SubsystemMetrics } from '../../apply/subsystem.js';
import type { DomainSeries } from '../../metrics/series.js';

export interface VpnTunnel {
  service: 'wireguard' | 'openvpn' | 'ipsec';
  tunnel: string;
  peer: string;
  up: boolean;
  rxBytes: number;
  txBytes: number;
  latestHandshake?: number;
}

export interface VpnMetrics extends SubsystemMetrics {
  vpnTunnels?: VpnTunnel[];
}

/** Declares the VPN series for one domain's subsystems (each VPN domain calls it; the series are shared). */
export function vpnSeries(series: DomainSeries): void {
  const tunnel = (t: VpnTunnel) => ({ service: t.service, tunnel: t.tunnel, peer: t.peer });
  series.gauge<'service' | 'tunnel' | 'peer', VpnMetrics>('patronus_vpn_tunnel_up', 'Whether a VPN tunnel or peer is up (WireGuard: handshake in the last 3 minutes)', ['service', 'tunnel', 'peer'], (g, s) => {
    for (const { m } of s) for (const t of m.vpnTunnels ?? []) g.set(tunnel(t), t.up ? 1 : 0);
  });
  series.counter<'service' | 'tunnel' | 'peer', VpnMetrics>('patronus_vpn_receive_bytes_total', 'Bytes received through a VPN tunnel, by service, tunnel and peer', ['service', 'tunnel', 'peer'], (c, s) => {
    for (const { m } of s) for (const t of m.vpnTunnels ?? []) c.inc(tunnel(t), t.rxBytes);
  });
  series.counter<'service' | 'tunnel' | 'peer', VpnMetrics>('patronus_vpn_transmit_bytes_total', 'Bytes sent through a VPN tunnel, by service, tunnel and peer', ['service', 'tunnel', 'peer'], (c, s) => {
    for (const { m } of s) for (const t of m.vpnTunnels ?? []) c.inc(tunnel(t), t.txBytes);
  });
  series.gauge<'service' | 'tunnel' | 'peer', VpnMetrics>('patronus_vpn_latest_handshake_seconds', 'Unix time of the latest WireGuard handshake with a peer (0: never)', ['service', 'tunnel', 'peer'], (g, s) => {
    for (const { m } of s) for (const t of m.vpnTunnels ?? []) if (t.latestHandshake !== undefined) g.set(tunnel(t), t.latestHandshake);
  });
}
