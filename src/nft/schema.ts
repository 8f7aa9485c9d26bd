import { z } from 'zod';

// Placeholder until this domain defines its section; the key stays the same.
export const firewallSchema = z.object({}).strict().default({});
export type firewallConfig = z.infer<typeof firewallSchema>;
