import { z } from 'zod';

/** An interface Patronus manages; other sections refer to it by name. */
export const interfaceSchema = z
  .object({
    name: z.string().regex(/^[A-Za-z0-9_.:-]{1,15}$/, 'must be a Linux interface name (1-15 characters)'),
    zone: z.string().regex(/^[a-z][a-z0-9_]{0,30}$/).default('lan').describe('zone name used by firewall rules (wan, lan, dmz, ...)'),
    description: z.string().max(200).optional(),
  })
  .strict();

export const interfacesSchema = z
  .array(interfaceSchema)
  .default([])
  .superRefine((list, ctx) => {
    const seen = new Set<string>();
    list.forEach((i, n) => {
      if (seen.has(i.name)) ctx.addIssue({ code: 'custom', path: [n, 'name'], message: `interface "${i.name}" is listed twice` });
      seen.add(i.name);
    });
  });

export type InterfaceConfig = z.infer<typeof interfaceSchema>;
