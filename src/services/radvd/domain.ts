/** IPv6 router advertisements (radvd). The domain's descriptor (src/apply/domain.ts). */
import type { Domain } from '../../apply/domain.js';
import { raSchema } from './schema.js';
import { radvdSubsystem } from './subsystem.js';

export const domain: Domain<'ra', typeof raSchema> = {
  name: 'ra',
  module: import.meta.url,
  section: { key: 'ra', schema: raSchema, describe: 'IPv6 router advertisements (radvd): SLAAC prefixes, DNS (RDNSS)' },
  subsystems: [{ phase: 'services', subsystem: radvdSubsystem }],
};
