/** ha.conntrackSync as a Subsystem (conntrackd, see module.ts): applied before keepalived, whose notify script drives it. */
import type { Subsystem, SubsystemMetrics } from '../../apply/subsystem.js';
import { instancePaths, serviceSubsystem } from '../common/service.js';
import { conntrackdModule } from './module.js';
import type { ConntrackdModel } from './render.js';
import { existsSync } from 'node:fs';

const base = serviceSubsystem(conntrackdModule);

export const conntrackdSubsystem: Subsystem<{ model: ConntrackdModel | null }> = {
  ...base,
  async metrics(host): Promise<SubsystemMetrics> {
    const paths = instancePaths(host.stateDir, conntrackdModule.name);
    if (!existsSync(paths.file('conntrackd.conf'))) return {};
    return { services: [{ service: 'conntrackd', up: await conntrackdModule.running(paths, host) }] };
  },
};
