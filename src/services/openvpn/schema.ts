import { z } from 'zod';

// Placeholder until this domain defines its section; the key stays the same.
export const openvpnSchema = z.object({}).strict().default({});
export type openvpnConfig = z.infer<typeof openvpnSchema>;
