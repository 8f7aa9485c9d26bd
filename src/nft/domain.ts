/** The stateful firewall and NAT (nftables). The domain's descriptor (src/apply/domain.ts). */
import type { Domain } from '../apply/domain.js';
import { firewallSchema } from './schema.js';
import { nftSubsystem } from './subsystem.js';

export const domain: Domain<'firewall', typeof firewallSchema> = {
  name: 'firewall',
  module: import.meta.url,
  section: { key: 'firewall', schema: firewallSchema, describe: 'stateful filtering and NAT (nftables)' },
  subsystems: [{ phase: 'filter', subsystem: nftSubsystem }],
};
