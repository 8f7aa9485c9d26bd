import { z } from 'zod';

// Placeholder until this domain defines its section; the key stays the same.
export const ipsecSchema = z.object({}).strict().default({});
export type ipsecConfig = z.infer<typeof ipsecSchema>;
