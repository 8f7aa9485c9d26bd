/** Stateful DHCPv6 (Kea). The domain's descriptor (src/apply/domain.ts). */
import type { Domain } from '../../apply/domain.js';
import { dhcp6Schema } from './schema.js';
import { kea6Subsystem } from './subsystem.js';

export const domain: Domain<'dhcp6', typeof dhcp6Schema> = {
  name: 'dhcp6',
  module: import.meta.url,
  section: { key: 'dhcp6', schema: dhcp6Schema, describe: 'stateful DHCPv6 server (Kea) for LANs whose RA sets the M flag' },
  subsystems: [{ phase: 'services', subsystem: kea6Subsystem }],
};
