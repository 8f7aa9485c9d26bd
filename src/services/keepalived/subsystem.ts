/** The ha: section as a Subsystem (keepalived, see module.ts), with VRRP state for /metrics. */
import type { Subsystem, SubsystemMetrics } from '../../apply/subsystem.js';
import { instancePaths, serviceSubsystem } from '../common/service.js';
import { keepalivedModule, readHaStatus, type HaStatus } from './module.js';
import type { KeepalivedModel } from './render.js';
import { existsSync } from 'node:fs';

const base = serviceSubsystem(keepalivedModule);

/** keepalived's own series: state per VRRP instance, 0 init 1 backup 2 master 3 fault 4 stop (patronus_vrrp_state), transitions (patronus_vrrp_transitions_total) */
export interface HaMetrics extends SubsystemMetrics {
  vrrp?: { instance: string; state: number; transitions: { to: string; count: number }[] }[];
}

export const keepalivedSubsystem: Subsystem<{ model: KeepalivedModel | null }, HaMetrics> = {
  ...base,
  async metrics(host): Promise<HaMetrics> {
    const paths = instancePaths(host.stateDir, keepalivedModule.name);
    if (!existsSync(paths.file('keepalived.conf'))) return {};
    return haMetrics(readHaStatus(paths));
  },
};

export function haMetrics(st: HaStatus): HaMetrics {
  return {
    services: [{ service: 'keepalived', up: st.pid !== undefined }],
    vrrp: st.instances.map((i) => ({ instance: i.name, state: i.stateCode, transitions: Object.entries(i.transitions).map(([to, count]) => ({ to, count: count! })) })),
  };
}
