import { z } from 'zod';

// Placeholder until this domain defines its section; the key stays the same.
export const frrSchema = z.object({}).strict().default({});
export type frrConfig = z.infer<typeof frrSchema>;
