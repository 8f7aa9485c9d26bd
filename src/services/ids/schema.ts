import { z } from 'zod';

// Placeholder until this domain defines its section; the key stays the same.
export const idsSchema = z.object({}).strict().default({});
export type idsConfig = z.infer<typeof idsSchema>;
