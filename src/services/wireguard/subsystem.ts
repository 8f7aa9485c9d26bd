import type { Subsystem } from '../../apply/subsystem.js';
import type { VpnMetrics } from '../common/vpn-metrics.js';
import { instancePaths, serviceSubsystem } from '../common/service.js';
import { wireguardModule, type WireguardStatus } from './wireguard.js';

const base = serviceSubsystem(wireguardModule);

/** A peer counts as up when its last handshake is at most this old (WireGuard rekeys every 2 minutes). */
const HANDSHAKE_FRESH_S = 180;

/** The `wireguard` section as a Subsystem, with per-peer handshake and transfer metrics. */
export const wireguardSubsystem: Subsystem<Parameters<typeof base.apply>[0], VpnMetrics> = {
  ...base,
  async metrics(host) {
    const paths = instancePaths(host.stateDir, wireguardModule.name);
    const up = await wireguardModule.running(paths, host);
    const st = (await wireguardModule.status!(paths, host)) as WireguardStatus;
    const now = Date.now() / 1000;
    return {
      services: [{ service: 'wireguard', up }],
      vpnTunnels: st.interfaces.flatMap((i) =>
        i.peers.map((p) => ({
          service: 'wireguard' as const,
          tunnel: i.name,
          peer: p.peer || p.publicKey,
          up: p.latestHandshake > 0 && now - p.latestHandshake <= HANDSHAKE_FRESH_S,
          rxBytes: p.rxBytes,
          txBytes: p.txBytes,
          latestHandshake: p.latestHandshake,
        })),
      ),
    };
  },
};
