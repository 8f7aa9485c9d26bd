import { z } from 'zod';

// Placeholder until this domain defines its section; the key stays the same.
export const keepalivedSchema = z.object({}).strict().default({});
export type keepalivedConfig = z.infer<typeof keepalivedSchema>;
