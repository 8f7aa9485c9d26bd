/** The XDP/tc fast path. The domain's descriptor (src/apply/domain.ts). */
import type { Domain } from '../apply/domain.js';
import { fastpathSchema } from './schema.js';
import { fastpathSubsystem } from './subsystem.js';

export const domain: Domain<'fastpath', typeof fastpathSchema> = {
  name: 'fastpath',
  module: import.meta.url,
  section: { key: 'fastpath', schema: fastpathSchema, describe: 'stateless XDP/tc filtering' },
  subsystems: [{ phase: 'filter', subsystem: fastpathSubsystem }],
};
