import type { Subsystem } from '../../apply/subsystem.js';
import type { VpnMetrics } from '../common/vpn-metrics.js';
import { instancePaths, serviceSubsystem } from '../common/service.js';
import { ipsecModule, type IpsecStatus } from './ipsec.js';

const base = serviceSubsystem(ipsecModule);

/** The `ipsec` section as a Subsystem, with per-CHILD_SA tunnel metrics. */
export const ipsecSubsystem: Subsystem<Parameters<typeof base.apply>[0], VpnMetrics> = {
  ...base,
  async metrics(host) {
    const paths = instancePaths(host.stateDir, ipsecModule.name);
    const up = await ipsecModule.running(paths, host);
    if (!up) return { services: [{ service: 'ipsec', up }] };
    const st = (await ipsecModule.status!(paths, host)) as IpsecStatus;
    return {
      services: [{ service: 'ipsec', up }],
      vpnTunnels: st.sas.flatMap((sa) =>
        sa.children.map((c) => ({
          service: 'ipsec' as const,
          tunnel: `${sa.connection}/${c.name}`,
          peer: sa.remoteId || sa.remoteHost,
          up: sa.state === 'ESTABLISHED' && c.state === 'INSTALLED',
          rxBytes: c.bytesIn,
          txBytes: c.bytesOut,
        })),
      ),
    };
  },
};
