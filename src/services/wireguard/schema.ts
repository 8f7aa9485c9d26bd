import { z } from 'zod';

// Placeholder until this domain defines its section; the key stays the same.
export const wireguardSchema = z.object({}).strict().default({});
export type wireguardConfig = z.infer<typeof wireguardSchema>;
