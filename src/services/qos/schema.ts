import { z } from 'zod';

// Placeholder until this domain defines its section; the key stays the same.
export const qosSchema = z.object({}).strict().default({});
export type qosConfig = z.infer<typeof qosSchema>;
