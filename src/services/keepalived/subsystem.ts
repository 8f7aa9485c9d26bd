/** The ha: section as a Subsystem (keepalived, see module.ts), with VRRP state for /metrics. */
import type { Subsystem, SubsystemMetrics } from '../../apply/subsystem.js';
import { instancePaths, serviceSubsystem } from '../common/service.js';
import { keepalivedModule, readHaStatus, type HaStatus } from './module.js';
import type { KeepalivedModel } from './render.js';
import { existsSync } from 'node:fs';

const base = serviceSubsystem(keepalivedModule);

export const keepalivedSubsystem: Subsystem<{ model: KeepalivedModel | null }> = {
  ...base,
  async metrics(host): Promise<SubsystemMetrics> {
    const paths = instancePaths(host.stateDir, keepalivedModule.name);
    if (!existsSync(paths.file('keepalived.conf'))) return {};
    return haMetrics(readHaStatus(paths));
  },
};

export function haMetrics(st: HaStatus): SubsystemMetrics {
  return {
    services: [{ service: 'keepalived', up: st.pid !== undefined }],
    vrrp: st.instances.map((i) => ({ instance: i.name, state: i.stateCode, transitions: Object.entries(i.transitions).map(([to, count]) => ({ to, count: count! })) })),
  };
}
