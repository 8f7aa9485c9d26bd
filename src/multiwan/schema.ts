import { z } from 'zod';

// Placeholder until this domain defines its section; the key stays the same.
export const gatewaysSchema = z.object({}).strict().default({});
export type gatewaysConfig = z.infer<typeof gatewaysSchema>;
