import { existsSync } from 'node:fs';
import type { Subsystem } from '../../apply/subsystem.js';
import { instancePaths, serviceSubsystem } from '../common/service.js';
import { radvdService } from './radvd.js';

const base = serviceSubsystem(radvdService);

/** The `ra:` section as a Subsystem (see radvd.ts). */
export const radvdSubsystem: Subsystem<Parameters<typeof base.apply>[0]> = {
  ...base,
  async metrics(host) {
    const paths = instancePaths(host.stateDir, radvdService.name);
    if (!existsSync(paths.dir)) return {};
    return { services: [{ service: 'radvd', up: await radvdService.running(paths, host) }] };
  },
};
