import type { Subsystem } from '../../apply/subsystem.js';
import type { VpnMetrics } from '../common/vpn-metrics.js';
import { instancePaths, serviceSubsystem } from '../common/service.js';
import { openvpnModule, type OpenvpnStatus } from './openvpn.js';

const base = serviceSubsystem(openvpnModule);

/** The `openvpn` section as a Subsystem, with per-client tunnel metrics. */
export const openvpnSubsystem: Subsystem<Parameters<typeof base.apply>[0], VpnMetrics> = {
  ...base,
  async metrics(host) {
    const paths = instancePaths(host.stateDir, openvpnModule.name);
    const up = await openvpnModule.running(paths, host);
    const st = (await openvpnModule.status!(paths, host)) as OpenvpnStatus;
    return {
      services: [{ service: 'openvpn', up }],
      vpnTunnels: st.instances.flatMap((i) =>
        i.kind === 'server'
          ? (i.clients ?? []).map((c) => ({ service: 'openvpn' as const, tunnel: i.name, peer: c.commonName, up: true, rxBytes: c.rxBytes, txBytes: c.txBytes }))
          : [{ service: 'openvpn' as const, tunnel: i.name, peer: 'server', up: i.state === 'CONNECTED', rxBytes: i.rxBytes ?? 0, txBytes: i.txBytes ?? 0 }],
      ),
    };
  },
};
