import { z } from 'zod';
import { isIPv4, isIPv6 } from 'node:net';
import { addressTextProblem } from '../bpf/codecs.js';

/** "192.0.2.1/24" or "2001:db8::1/64": an address with its prefix length. */
export const interfaceAddressSchema = z.string().superRefine((text, ctx) => {
  const bad = addressTextProblem(text);
  if (bad) return void ctx.addIssue({ code: 'custom', message: bad });
  const [addr, len, extra] = text.split('/');
  const max = addr && isIPv4(addr) ? 32 : addr && isIPv6(addr) ? 128 : 0;
  if (!max || extra !== undefined) ctx.addIssue({ code: 'custom', message: `"${text}" is not an address with a prefix length (e.g. 192.0.2.1/24)` });
  else if (len === undefined || !/^\d{1,3}$/.test(len) || Number(len) > max) ctx.addIssue({ code: 'custom', message: `"${text}": prefix length must be 0-${max}` });
});

/** An interface Patronus manages; other sections refer to it by name. */
export const interfaceSchema = z
  .object({
    name: z.string().regex(/^[A-Za-z0-9_.:-]{1,15}$/, 'must be a Linux interface name (1-15 characters)').describe('Linux interface name'),
    zone: z.string().regex(/^[a-z][a-z0-9_]{0,30}$/).default('lan').describe('zone name used by firewall rules (wan, lan, dmz, ...)'),
    description: z.string().max(200).optional().describe('free text for operators'),
    addresses: z
      .array(interfaceAddressSchema)
      .optional()
      .describe('addresses Patronus keeps on the interface (it removes only addresses it added itself); omit to leave addressing alone'),
    mtu: z.number().int().min(68).max(65535).optional().describe('MTU to set; the original value comes back when the setting is removed'),
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
