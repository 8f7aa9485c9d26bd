/** Traffic shaping (tc). The domain's descriptor (src/apply/domain.ts). */
import type { Domain } from '../../apply/domain.js';
import { qosSchema } from './schema.js';
import { qosSubsystem } from './subsystem.js';

export const domain: Domain<'qos', typeof qosSchema> = {
  name: 'qos',
  module: import.meta.url,
  section: { key: 'qos', schema: qosSchema, describe: 'traffic shaping (tc)' },
  subsystems: [{ phase: 'services', subsystem: qosSubsystem }],
};
