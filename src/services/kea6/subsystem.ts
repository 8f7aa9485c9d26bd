import { existsSync } from 'node:fs';
import type { Subsystem } from '../../apply/subsystem.js';
import { instancePaths, serviceSubsystem } from '../common/service.js';
import { kea6Service } from './kea6.js';

const base = serviceSubsystem(kea6Service);

/** The `dhcp6:` section as a Subsystem (see kea6.ts). */
export const kea6Subsystem: Subsystem<Parameters<typeof base.apply>[0]> = {
  ...base,
  async metrics(host) {
    const paths = instancePaths(host.stateDir, kea6Service.name);
    if (!existsSync(paths.dir)) return {};
    return { services: [{ service: 'kea-dhcp6', up: await kea6Service.running(paths, host) }] };
  },
};
