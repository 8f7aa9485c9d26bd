import { z } from 'zod';

// Placeholder until this domain defines its section; the key stays the same.
export const unboundSchema = z.object({}).strict().default({});
export type unboundConfig = z.infer<typeof unboundSchema>;
