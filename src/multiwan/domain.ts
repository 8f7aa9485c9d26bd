/** Multi-WAN gateways, groups and policy routing. The domain's descriptor (src/apply/domain.ts). */
import type { Domain } from '../apply/domain.js';
import { gatewaysSchema } from './schema.js';
import { multiwanSubsystem } from './subsystem.js';

export const domain: Domain<'gateways', typeof gatewaysSchema> = {
  name: 'gateways',
  module: import.meta.url,
  section: { key: 'gateways', schema: gatewaysSchema, describe: 'multi-WAN gateways, groups and policy routing' },
  subsystems: [{ phase: 'uplinks', subsystem: multiwanSubsystem }],
};
