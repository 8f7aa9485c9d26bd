import { z } from 'zod';
import { addressFamily, addressTextProblem } from '../net/address.js';

/** "192.0.2.1/24" or "2001:db8::1/64": an address with its prefix length. */
export const interfaceAddressSchema = z.string().superRefine((text, ctx) => {
  const bad = addressTextProblem(text);
  if (bad) return void ctx.addIssue({ code: 'custom', message: bad });
  const [addr, len, extra] = text.split('/');
  const family = addr ? addressFamily(addr) : 0;
  const max = family === 4 ? 32 : family === 6 ? 128 : 0;
  if (!max || extra !== undefined) ctx.addIssue({ code: 'custom', message: `"${text}" is not an address with a prefix length (e.g. 192.0.2.1/24)` });
  else if (len === undefined) ctx.addIssue({ code: 'custom', message: `"${text}" needs a prefix length, e.g. ${addr}/${max === 32 ? 24 : 64}` });
  else if (!/^\d{1,3}$/.test(len) || Number(len) > max) ctx.addIssue({ code: 'custom', message: `"${text}": prefix length must be 0-${max}` });
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
    dhcp: z
      .boolean()
      .optional()
      .describe('get the IPv4 address (and the default route, protocol dhcp) by DHCP: Patronus runs dhclient on it; lease changes update address, route and NAT without a new revision. The host\'s resolv.conf is never touched'),
    // interfaces Patronus creates (src/interfaces/links.ts); omitted kind: an interface that exists already
    kind: z
      .enum(['bridge', 'vlan', 'bond', 'pppoe'])
      .optional()
      .describe('create this interface: bridge (ports, stp), vlan (parent, vlanId; needs 8021q), bond (ports, bondMode; needs bonding), pppoe (parent, pppoe; needs ppp). Omitted: the interface exists already'),
    ports: z.array(z.string().regex(/^[A-Za-z0-9_.:-]{1,15}$/, 'must be a Linux interface name')).optional().describe('bridge or bond members (they carry no addresses and belong to this interface\'s zone)'),
    stp: z.boolean().optional().describe('bridge: run the spanning tree protocol (default off)'),
    parent: z.string().regex(/^[A-Za-z0-9_.:-]{1,15}$/, 'must be a Linux interface name').optional().describe('vlan, pppoe: the interface it runs on'),
    vlanId: z.number().int().min(1).max(4094).optional().describe('vlan: the 802.1Q VLAN id'),
    bondMode: z.enum(['balance-rr', 'active-backup', 'balance-xor', 'broadcast', '802.3ad', 'balance-tlb', 'balance-alb']).optional().describe('bond: bonding mode (default active-backup)'),
    pppoe: z
      .object({
        username: z.string().regex(/^[\x21-\x7e]{1,128}$/, 'printable ASCII without spaces').describe('PPP user name'),
        passwordFile: z.string().min(1).describe('file holding the PPP password (read at apply, never stored in the document)'),
        serviceName: z.string().regex(/^[\x21-\x7e]{1,64}$/).optional().describe('PPPoE service name to ask for'),
      })
      .strict()
      .optional()
      .describe('pppoe: credentials'),
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
