/** ACME certificates. The domain's descriptor (src/apply/domain.ts). */
import type { Domain } from '../apply/domain.js';
import { certificatesSchema } from './schema.js';
import { certificatesSubsystem } from './subsystem.js';

export const domain: Domain<'certificates', typeof certificatesSchema> = {
  name: 'certificates',
  module: import.meta.url,
  section: { key: 'certificates', schema: certificatesSchema, describe: 'ACME certificates for the API/console and TLS services, renewed before expiry' },
  subsystems: [{ phase: 'certificates', subsystem: certificatesSubsystem }],
};
