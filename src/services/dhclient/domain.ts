/** DHCP client on WAN interfaces (interfaces[].addresses: dhcp): no section of its own. The domain's descriptor (src/apply/domain.ts). */
import type { Domain } from '../../apply/domain.js';
import { dhclientSubsystem } from './dhclient.js';

export const domain: Domain<never> = {
  name: 'dhclient',
  module: import.meta.url,
  subsystems: [{ phase: 'uplinks', subsystem: dhclientSubsystem }],
};
