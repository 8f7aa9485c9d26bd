import { z } from 'zod';

// Placeholder until this domain defines its section; the key stays the same.
export const keaSchema = z.object({}).strict().default({});
export type keaConfig = z.infer<typeof keaSchema>;
