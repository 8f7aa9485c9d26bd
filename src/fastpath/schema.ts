import { z } from 'zod';

// Placeholder until this domain defines its section; the key stays the same.
export const fastpathSchema = z.object({}).strict().default({});
export type fastpathConfig = z.infer<typeof fastpathSchema>;
