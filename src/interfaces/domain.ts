/** Interfaces: links (bridges, VLANs, bonds, PPPoE) and their addresses. The domain's descriptor (src/apply/domain.ts). */
import type { Domain } from '../apply/domain.js';
import { interfacesSchema } from './schema.js';
import { linksSubsystem } from './links.js';
import { interfacesSubsystem } from './subsystem.js';

export const domain: Domain<'interfaces', typeof interfacesSchema> = {
  name: 'interfaces',
  module: import.meta.url,
  section: { key: 'interfaces', schema: interfacesSchema, describe: 'interfaces Patronus manages' },
  subsystems: [{ phase: 'links', subsystem: linksSubsystem }, { phase: 'addresses', subsystem: interfacesSubsystem }],
};
