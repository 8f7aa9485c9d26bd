import { z } from 'zod';

// Placeholder until the control-plane work defines it; the key stays the same.
export const apiSchema = z.object({}).strict().default({});
export type ApiConfig = z.infer<typeof apiSchema>;
