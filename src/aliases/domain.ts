/** Aliases: named sets the fast path and the firewall refer to (resolved by the document itself: src/config/document.ts). The domain's descriptor (src/apply/domain.ts). */
import type { Domain } from '../apply/domain.js';
import { aliasesSchema } from './aliases.js';

export const domain: Domain<'aliases', typeof aliasesSchema> = {
  name: 'aliases',
  module: import.meta.url,
  section: { key: 'aliases', schema: aliasesSchema, describe: 'named sets of networks, ports and countries' },
};
